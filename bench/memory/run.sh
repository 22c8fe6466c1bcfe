#!/usr/bin/env bash
# Memory over a day (issue 11, target 5): one long-running `eod run` with books on, fed through
# Kafka in steps, its resident memory read once it has caught up and gone idle after each step.
#
#   bench/memory/run.sh ARCHIVE... [-- EOD_RUN_FLAGS...]
#
# Each ARCHIVE (from `eod generate`, with ARCHIVE.prices.csv beside it) is published to fresh
# topics with `eod ingest`; after each one the script waits until `eod run` has been idle for
# 3 s (under a third of a core) and has returned the burst's free memory to the system (`eod run`
# does that itself once quiet: --trim-memory-after-ms), then prints the trades the views hold
# and VmRSS / VmHWM of the process, and from the second ARCHIVE on, the bytes each fill added
# since the first step. Needs a broker:
# EOD_KAFKA_BROKERS (scripts/kafka.sh start; scripts/kafka.sh env). EOD is the binary
# (default target/release/eod). Flags after `--` go to `eod run` (default: SQLite books in a
# temporary directory, 2 workers).
set -euo pipefail
cd "$(dirname "$0")/../.."
EOD="${EOD:-target/release/eod}"
: "${EOD_KAFKA_BROKERS:?start a broker: scripts/kafka.sh start; export \$(scripts/kafka.sh env)}"

archives=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    archives+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
work="$(mktemp -d)"
trap 'kill "$run_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
run_flags=("$@")
[ ${#run_flags[@]} -eq 0 ] && run_flags=(--books "sqlite:$work/books.sqlite")

prefix="mem$(date +%s)"
topics=(--trades-topic "$prefix.raw" --dlq-topic "$prefix.dlq" --prices-topic "$prefix.prices"
    --reference-topic "$prefix.ref")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# Waits until the process has used under a third of a core for 3 s: caught up, books written,
# idle (an idle `eod run` still polls: about 16% of a core with 2 workers).
settle() {
    local before after
    before=$(cpu_ticks "$1")
    while sleep 3; after=$(cpu_ticks "$1"); [ $((after - before)) -gt $((3 * $(getconf CLK_TCK) / 3)) ]; do
        before=$after
    done
}
# The process's trims after a burst so far (eod_memory_trims_total).
trims() {
    curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 == "eod_memory_trims_total" {print $2}'
}
# Live fills the views hold: the firm view's trade count.
trades_in_views() {
    curl -sf "http://127.0.0.1:$port/v1/pnl/firm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["firm"]["trades"])'
}

first=1
for archive in "${archives[@]}"; do
    create=()
    [ $first = 1 ] && create=(--create-topics)
    "$EOD" ingest --archive "$archive" --prices "$archive.prices.csv" --brokers "$EOD_KAFKA_BROKERS" \
        "${topics[@]}" "${create[@]}" | grep -E '^(delivered|elapsed)'
    if [ $first = 1 ]; then
        "$EOD" run --brokers "$EOD_KAFKA_BROKERS" "${topics[@]}" --group-id "$prefix" \
            --serve "127.0.0.1:$port" "${run_flags[@]}" -- -w 2 >"$work/run.log" 2>&1 &
        run_pid=$!
        first=0
    fi
    start=$(date +%s.%N)
    trims_before=$(trims || echo 0)
    settle "$run_pid"
    kill -0 "$run_pid" || { cat "$work/run.log"; exit 1; }
    # The trim follows 2 s of quiet; settling takes at least 3 s, but the look is cheap.
    for _ in $(seq 20); do
        [ "$(trims || echo 0)" != "${trims_before:-0}" ] && break
        sleep 0.5
    done
    trades=$(trades_in_views)
    rss=$(kb "$run_pid" VmRSS)
    echo "after $archive: idle after $(echo "$(date +%s.%N) - $start" | bc) s;" \
        "trades $trades; VmRSS $rss kB; VmHWM $(kb "$run_pid" VmHWM) kB"
    curl -sf "http://127.0.0.1:$port/metrics" | awk '
        $1 == "eod_memory_trims_total" {n = $2}
        $1 == "eod_memory_released_bytes_total" {mb = $2 / 1048576}
        $1 == "eod_memory_trim_seconds_sum" {s = $2}
        END {printf "  memory trims so far: %d, %.0f MB returned in %.3f s\n", n, mb, s}'
    # Target 5's figure: what each fill added since the first step, which holds the process's
    # fixed costs (the runtime, the SQLite cache, the consumers' buffers).
    if [ -z "${first_trades:-}" ]; then
        first_trades=$trades first_rss=$rss
    elif [ "$trades" -gt "$first_trades" ]; then
        per_fill() { echo "$(( ($2 - $1) * 1024 / (trades - first_trades) ))"; }
        echo "  bytes per added fill since the first step: $(per_fill "$first_rss" "$rss")"
    fi
done
