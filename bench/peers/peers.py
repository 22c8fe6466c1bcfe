"""Peers side by side: DuckDB, Polars and Pathway over the trade events eod parsed, beside eod
on the raw FIX. Each engine runs in a process of its own, so that its wall time and peak RSS
are its own (`os.wait4`). Every engine writes `trader,symbol,net_qty,trades` for the live
executions; the driver checks they all agree with eod's positions.

The live executions: fills and corrections whose ExecID no bust or correction targets (the
simulator only busts or corrects executions it sent before, so every chain reaches a fill).

    python peers.py compare --events E.csv --work DIR --eod 'NAME=eod replay ... --output {positions}' ...
    python peers.py engine NAME E.csv OUT.csv          (one engine; what `compare` runs)
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time

COMMIT_ROWS = 250


def duckdb_batch(events, out):
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"""
        CREATE TABLE ev AS SELECT * FROM read_csv('{events}', header = true, columns = {{
            'kind': 'VARCHAR', 'exec_id': 'VARCHAR', 'target': 'VARCHAR', 'trader': 'VARCHAR',
            'symbol': 'VARCHAR', 'qty': 'BIGINT', 'price': 'DECIMAL(18, 8)'}});
        COPY (
            SELECT trader, symbol, sum(qty) AS net_qty, count(*) AS trades
            FROM ev
            WHERE kind <> 'bust'
              AND exec_id NOT IN (SELECT target FROM ev WHERE kind <> 'fill')
            GROUP BY trader, symbol
        ) TO '{out}' (HEADER, DELIMITER ',');
        """
    )


def polars_batch(events, out):
    import polars as pl

    ev = pl.read_csv(
        events,
        schema={
            "kind": pl.String, "exec_id": pl.String, "target": pl.String,
            "trader": pl.String, "symbol": pl.String, "qty": pl.Int64,
            "price": pl.Decimal(18, 8),
        },
    )
    killed = ev.filter(pl.col("kind") != "fill").select(pl.col("target").alias("exec_id"))
    live = ev.filter(pl.col("kind") != "bust").join(killed, on="exec_id", how="anti")
    live.group_by("trader", "symbol").agg(
        net_qty=pl.col("qty").sum(), trades=pl.len()
    ).write_csv(out)


def pathway_static(events, out):
    import pathway as pw

    class Events(pw.Schema):
        kind: str
        exec_id: str
        target: str | None
        trader: str | None
        symbol: str | None
        qty: int | None
        price: str | None

    ev = pw.io.csv.read(events, schema=Events, mode="static")
    executions = (
        ev.filter(pw.this.kind != "bust")
        .select(
            pw.this.exec_id,
            trader=pw.unwrap(pw.this.trader),
            symbol=pw.unwrap(pw.this.symbol),
            qty=pw.unwrap(pw.this.qty),
        )
        .with_id_from(pw.this.exec_id)
    )
    killed = (
        ev.filter(pw.this.kind != "fill")
        .groupby(pw.this.target)
        .reduce(pw.this.target)
        .with_id_from(pw.this.target)
    )
    live = executions.difference(killed)
    positions = live.groupby(pw.this.trader, pw.this.symbol).reduce(
        pw.this.trader,
        pw.this.symbol,
        net_qty=pw.reducers.sum(pw.this.qty),
        trades=pw.reducers.count(),
    )
    pw.debug.table_to_pandas(positions).to_csv(out, index=False)


def pathway_streaming(events, out):
    """The live executions arrive as a change stream, COMMIT_ROWS events per commit: a fill
    inserts, a bust deletes its target, a correction deletes its target and inserts itself."""
    import pathway as pw

    class Live(pw.Schema):
        exec_id: str = pw.column_definition(primary_key=True)
        trader: str
        symbol: str
        qty: int

    class Feed(pw.io.python.ConnectorSubject):
        def __init__(self):
            super().__init__(session_type="upsert")

        def run(self):
            live = {}
            with open(events, newline="") as f:
                for n, row in enumerate(csv.DictReader(f), start=1):
                    if row["kind"] != "fill":
                        gone = live.pop(row["target"], None)
                        if gone is not None:
                            self.delete(**gone)
                    if row["kind"] != "bust":
                        execution = dict(
                            exec_id=row["exec_id"], trader=row["trader"],
                            symbol=row["symbol"], qty=int(row["qty"]),
                        )
                        live[execution["exec_id"]] = execution
                        self.next(**execution)
                    if n % COMMIT_ROWS == 0:
                        self.commit()
            self.commit()

    live = pw.io.python.read(Feed(), schema=Live, autocommit_duration_ms=None)
    positions = live.groupby(pw.this.trader, pw.this.symbol).reduce(
        pw.this.trader,
        pw.this.symbol,
        net_qty=pw.reducers.sum(pw.this.qty),
        trades=pw.reducers.count(),
    )
    current = {}

    def on_change(key, row, time, is_addition):
        if is_addition:
            current[key] = row
        elif current.get(key) == row:
            del current[key]

    pw.io.subscribe(positions, on_change=on_change)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trader", "symbol", "net_qty", "trades"])
        for row in current.values():
            w.writerow([row["trader"], row["symbol"], row["net_qty"], row["trades"]])


ENGINES = {
    "duckdb": duckdb_batch,
    "polars": polars_batch,
    "pathway-static": pathway_static,
    "pathway-streaming": pathway_streaming,
}


def timed(command):
    """Wall seconds and peak RSS (bytes) of one child process, which must succeed."""
    started = time.monotonic()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({status}): {' '.join(command)}")
    return wall, usage.ru_maxrss * 1024


def read_positions(path):
    with open(path, newline="") as f:
        return {
            (r["trader"], r["symbol"]): (int(r["net_qty"]), int(r["trades"]))
            for r in csv.DictReader(f)
        }


def read_eod_positions(path):
    """eod's positions JSON, reduced to what the peers compute."""
    with open(path) as f:
        view = json.load(f)
    return {
        (p["trader"], p["symbol"]): (int(p["net_qty"]), int(p["trades"]))
        for p in view["positions"]
    }


def compare(args):
    rows = []
    expected = None
    for spec in args.eod:
        name, _, command = spec.partition("=")
        positions = os.path.join(args.work, f"{name}.json")
        wall, rss = timed(shlex.split(command.replace("{positions}", positions)))
        got = read_eod_positions(positions)
        if expected is None:
            expected = got
        elif got != expected:
            sys.exit(f"{name} disagrees with the first eod run")
        rows.append((name, wall, rss))
    for name in args.engines.split(","):
        out = os.path.join(args.work, f"{name}.csv")
        wall, rss = timed([sys.executable, __file__, "engine", name, args.events, out])
        got = read_positions(out)
        if got != expected:
            differing = sorted(set(got.items()) ^ set(expected.items()))[:5]
            sys.exit(f"{name} disagrees with eod: {differing}")
        rows.append((name, wall, rss))
    trades = sum(t for _, t in expected.values())
    print(f"{len(expected)} positions, {trades} live trades: every run agrees on every net_qty and trade count")
    base = rows[0][1]
    print(f"{'run':<28}{'wall s':>8}{'peak RSS MB':>13}{'wall / ' + rows[0][0]:>24}")
    for name, wall, rss in rows:
        print(f"{name:<28}{wall:>8.2f}{rss / 1e6:>13.0f}{wall / base:>24.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    engine = sub.add_parser("engine")
    engine.add_argument("name", choices=sorted(ENGINES))
    engine.add_argument("events")
    engine.add_argument("out")
    cmp = sub.add_parser("compare")
    cmp.add_argument("--events", required=True)
    cmp.add_argument(
        "--eod", action="append", required=True,
        help="NAME=COMMAND, an eod run writing its positions JSON to {positions}; the first is the base",
    )
    cmp.add_argument("--work", required=True)
    cmp.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    if args.command == "engine":
        ENGINES[args.name](args.events, args.out)
    else:
        compare(args)


if __name__ == "__main__":
    main()
