#!/usr/bin/env bash
# Restart after kill -9 with snapshots against a replay from offset 0 (issue 12, point 3).
#
#   bench/snapshots/run.sh ARCHIVE [KILL_AFTER_S] [-- EOD_RUN_FLAGS...]
#
# Publishes ARCHIVE (from `eod generate`, with ARCHIVE.prices.csv beside it) to fresh topics,
# then times two `eod run --until-caught-up -- -w 2` runs that must print identical positions
# (each also prints when its views held everything, before the books finished writing):
#   1. from offset 0, no snapshots;
#   2. after a live `eod run --snapshots` is killed with SIGKILL KILL_AFTER_S seconds after it starts
#      (default: once it has caught up and stored a snapshot of everything), then restarted:
#      it restores the newest complete snapshot and reads the tail.
# Needs a broker (scripts/kafka.sh start; scripts/kafka.sh env). EOD is the binary (default
# target/release/eod). Flags after `--` go to every `eod run` (default: --no-books); with
# BOOKS=sqlite the runs write SQLite books instead (the restart into the killed run's store).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/snapshots/live.sh
EOD="${EOD:-target/release/eod}"
: "${EOD_KAFKA_BROKERS:?start a broker: scripts/kafka.sh start; export \$(scripts/kafka.sh env)}"
archive="$1"
shift
kill_after=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    kill_after="$1"
    shift
fi
[ "${1:-}" = "--" ] && shift
run_flags=("$@")
work="$(mktemp -d)"
if [ ${#run_flags[@]} -eq 0 ] && [ "${BOOKS:-}" != sqlite ]; then
    run_flags=(--no-books)
fi
# The books store of a consumer group (empty without BOOKS=sqlite).
books_of() {
    if [ "${BOOKS:-}" = sqlite ]; then echo "--books=sqlite:$work/$1.sqlite"; fi
}
trap 'kill -9 "${live_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
prefix="snap$(date +%s)"
publish_to_fresh_topics "$EOD" "$prefix" "$archive"

# One `eod run --until-caught-up` in consumer group $2: prints its wall time; positions to
# $work/$1.json.
timed_run() {
    local name="$1" group="$2"
    shift 2
    local start end
    start=$(date +%s.%N)
    "$EOD" run "${topics[@]}" --group-id "$group" --until-caught-up --serve 127.0.0.1:0 \
        --output "$work/$name.json" $(books_of "$group") "$@" ${run_flags[@]+"${run_flags[@]}"} \
        -- -w 2 >"$work/$name.out" 2>&1
    end=$(date +%s.%N)
    printf '%-28s %6.2f s  (%s)  %s\n' "$name" "$(echo "$end - $start" | bc)" \
        "$(grep -E '^views caught up' "$work/$name.out" | sed 's/  */ /g' || true)" \
        "$(grep -E '^snapshot ' "$work/$name.out" | sed 's/  */ /g' || true)"
}
same_positions() {
    python3 - "$work/$1.json" "$work/$2.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for x in (a, b):
    x["as_of"].pop("time", None)
sys.exit(0 if a == b else "positions differ")
PY
}

timed_run from-zero "$prefix-zero"

snapshots="$work/snapshots"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$EOD" run "${topics[@]}" --group-id "$prefix-snap" --serve "127.0.0.1:$port" \
    --snapshots "$snapshots" --snapshot-interval-s 5 $(books_of "$prefix-snap") \
    ${run_flags[@]+"${run_flags[@]}"} -- -w 2 \
    >"$work/live.out" 2>&1 &
live_pid=$!
started=$(date +%s.%N)
if [ -n "$kill_after" ]; then
    sleep "$kill_after"
else
    wait_for_a_snapshot_of_everything "$port"
fi
kill -9 "$live_pid"
wait "$live_pid" 2>/dev/null || true
echo "live run killed after $(echo "$(date +%s.%N) - $started" | bc | cut -c1-5) s;" \
    "parts stored: $(find "$snapshots" -name '*.part' | wc -l)"
timed_run restart-from-snapshot "$prefix-snap" --snapshots "$snapshots" \
    --snapshot-interval-s 5
same_positions from-zero restart-from-snapshot && echo "positions identical"
if [ "${BOOKS:-}" = sqlite ]; then
    # Every row as the from-zero run wrote it, once (the write time aside).
    python3 - "$work/$prefix-zero.sqlite" "$work/$prefix-snap.sqlite" <<'PY'
import hashlib, sqlite3, sys
def digest(path):
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(trades)") if r[1] != "updated_at"]
    h, n = hashlib.sha256(), 0
    for row in db.execute(f"SELECT {', '.join(columns)} FROM trades ORDER BY exec_id"):
        h.update(repr(row).encode())
        n += 1
    return n, h.hexdigest()[:16]
a, b = digest(sys.argv[1]), digest(sys.argv[2])
print(f"books: {a[0]} rows {a[1]} from zero, {b[0]} rows {b[1]} after the restart")
sys.exit(0 if a == b else "books differ")
PY
fi
