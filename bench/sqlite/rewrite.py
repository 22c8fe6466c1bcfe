#!/usr/bin/env python3
"""SQLite alone on a day's books: rewrites a finished books file into fresh books, in
transactions of a given size, once per page size, and prints the time of each.

    python3 bench/sqlite/rewrite.py BOOKS.sqlite --rows-per-transaction 50000 --page-sizes 4096 65536

The books file is any one an `eod replay --books sqlite:PATH` wrote. The fresh books take the
books' own schema (migration 2) and the writer's settings (WAL, synchronous FULL, a 32 MiB
page cache), and each transaction upserts the next rows in the order the replay wrote them, as
`INSERT .. SELECT .. ON CONFLICT (exec_id) DO UPDATE`: SQLite's B-tree, WAL and checkpoint work
for the same rows, without eod's binding. This is Python's SQLite, not the one eod builds in:
compare the page sizes with each other, not with eod's writer.
"""

import argparse
import os
import sqlite3
import time
from pathlib import Path

MIGRATION = Path(__file__).resolve().parents[2] / "sinks/migrations/sqlite/0002_checks_as_comparisons.sql"


def trades_schema() -> str:
    """The `trades` table and its index as migration 2 leaves them."""
    sql = MIGRATION.read_text()
    table = sql[sql.index("CREATE TABLE trades_rebuilt") : sql.index("INSERT INTO trades_rebuilt")]
    table = table.replace("trades_rebuilt", "trades").rstrip().rstrip(";")
    return table + ";\nCREATE INDEX trades_trader_symbol ON trades (trader_id, symbol);"


def columns(connection: sqlite3.Connection) -> list[str]:
    return [row[1] for row in connection.execute("PRAGMA table_info(trades)")]


def rewrite(source: Path, target: Path, page_size: int, per_transaction: int, autocheckpoint: int | None) -> float:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    books = sqlite3.connect(target, isolation_level=None)
    books.execute(f"PRAGMA page_size = {page_size}")
    books.execute("PRAGMA journal_mode = WAL")
    books.execute("PRAGMA synchronous = FULL")
    books.execute("PRAGMA cache_size = -32768")
    if autocheckpoint is not None:
        books.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")
    books.executescript(trades_schema())
    books.execute("ATTACH ? AS source", (str(source),))
    names = columns(books)
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    listed = ", ".join(names)
    (last,) = books.execute("SELECT max(rowid) FROM source.trades").fetchone()
    started = time.perf_counter()
    for low in range(0, last or 0, per_transaction):
        books.execute("BEGIN")
        # `WHERE .. AND true`: SQLite's parser needs a WHERE before an upsert's ON CONFLICT.
        books.execute(
            f"INSERT INTO trades ({listed}) SELECT {listed} FROM source.trades "
            f"WHERE rowid > ? AND rowid <= ? AND true ON CONFLICT (exec_id) DO UPDATE SET {updates}",
            (low, low + per_transaction),
        )
        books.execute("COMMIT")
    elapsed = time.perf_counter() - started
    books.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("books", type=Path, help="a books file an eod replay wrote")
    parser.add_argument("--rows-per-transaction", type=int, default=50_000)
    parser.add_argument("--page-sizes", type=int, nargs="+", default=[4096, 65536])
    parser.add_argument("--wal-autocheckpoint", type=int, help="pages (SQLite's default: 1000)")
    parser.add_argument("--rounds", type=int, default=1, help="each page size this many times, in turn")
    parser.add_argument("--work", type=Path, default=Path("/tmp"), help="where the fresh books go")
    args = parser.parse_args()
    (rows,) = sqlite3.connect(args.books).execute("SELECT count(*) FROM trades").fetchone()
    print(f"{rows} rows, {args.rows_per_transaction} per transaction, SQLite {sqlite3.sqlite_version}")
    for _ in range(args.rounds):
        for page_size in args.page_sizes:
            target = args.work / f"rewrite-{page_size}-{os.getpid()}.sqlite"
            seconds = rewrite(args.books, target, page_size, args.rows_per_transaction, args.wal_autocheckpoint)
            size = target.stat().st_size
            print(f"page size {page_size:6d}: {seconds:6.2f} s, {size / 2**20:6.1f} MiB")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
