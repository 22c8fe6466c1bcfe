#!/usr/bin/env bash
# Restarts of two builds from one kept snapshot, in turn (issue 12, point 3).
#
#   bench/snapshots/restarts.sh ARCHIVE RUNS EOD_A EOD_B [-- EOD_RUN_FLAGS...]
#
# Publishes ARCHIVE (with ARCHIVE.prices.csv) to fresh topics, runs EOD_A live with
# `--snapshots` until it has caught up and stored a snapshot of everything, kills it with
# SIGKILL, and keeps its snapshot directory and SQLite books. Then RUNS times each, EOD_A and
# EOD_B in turn, restarts `eod run --until-caught-up -- -w 2` on a fresh copy of both and prints
# "BUILD views-caught-up-s elapsed-s peak-RSS-KB minor-faults user-s sys-s" (the last four from
# /usr/bin/time); every restart must print the positions of a run from
# offset 0. Flags after `--` go to every `eod run` (e.g. --no-books: the restarts then write
# no books). Needs a broker (scripts/kafka.sh start; scripts/kafka.sh env) and /usr/bin/time
# (Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/snapshots/live.sh
: "${EOD_KAFKA_BROKERS:?start a broker: scripts/kafka.sh start; export \$(scripts/kafka.sh env)}"
archive="$1" runs="$2" eod_a="$3" eod_b="$4"
shift 4
[ "${1:-}" = "--" ] && shift
flags=("$@")
work="$(mktemp -d)"
trap 'kill -9 "${live_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
prefix="restarts$(date +%s)"
publish_to_fresh_topics "$eod_a" "$prefix" "$archive"
"$eod_a" run "${topics[@]}" --group-id "$prefix-zero" --until-caught-up --serve 127.0.0.1:0 \
    --no-books --output "$work/zero.json" -- -w 2 >/dev/null 2>&1

kept="$work/kept"
mkdir -p "$kept"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$eod_a" run "${topics[@]}" --group-id "$prefix-snap" --serve "127.0.0.1:$port" \
    --snapshots "$kept/snapshots" --snapshot-interval-s 5 --books="sqlite:$kept/books.sqlite" \
    -- -w 2 >"$work/live.out" 2>&1 &
live_pid=$!
wait_for_a_snapshot_of_everything "$port"
kill -9 "$live_pid"
wait "$live_pid" 2>/dev/null || true
echo "kept: $(find "$kept/snapshots" -name '*.part' | wc -l) parts"

restart() {
    local eod="$1" copy="$work/restart"
    rm -rf "$copy"
    cp -r "$kept" "$copy"
    local books=(--books="sqlite:$copy/books.sqlite")
    [[ " ${flags[*]-} " == *" --no-books "* ]] && books=()
    /usr/bin/time -f '%M %R %U %S' -o "$work/time.out" \
        "$eod" run "${topics[@]}" --group-id "$prefix-snap" --until-caught-up --serve 127.0.0.1:0 \
        --snapshots "$copy/snapshots" --snapshot-interval-s 5 ${books[@]+"${books[@]}"} \
        --output "$copy/positions.json" ${flags[@]+"${flags[@]}"} -- -w 2 >"$work/restart.out" 2>&1
    python3 - "$work/zero.json" "$copy/positions.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for x in (a, b):
    x["as_of"].pop("time", None)
sys.exit(0 if a == b else "positions differ")
PY
    printf '%s %s %s %s\n' "$(basename "$eod")" \
        "$(awk '/^views caught up/ {print $4}' "$work/restart.out")" \
        "$(awk '/^elapsed/ {print $2}' "$work/restart.out")" "$(cat "$work/time.out")"
}
for _ in $(seq "$runs"); do
    restart "$eod_a"
    restart "$eod_b"
done
