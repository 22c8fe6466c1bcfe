#!/usr/bin/env bash
# Fill-to-view latency of a two-process cluster (`eod run -n 2`), fed live: `eod simulate`
# sends FIX at a steady rate to an `eod ingest --listen` gateway, which publishes to fresh
# topics; two `eod run` processes (one worker each) read them. When the simulator is done,
# both processes are stopped (Ctrl-C) and each prints its fill-to-view percentiles for the
# trades it read.
#
#   bench/cluster/run.sh [RATE] [MESSAGES]          # default 300 msg/s, 9000 messages
#
# Needs a broker: EOD_KAFKA_BROKERS (scripts/kafka.sh start; export $(scripts/kafka.sh env)).
# EOD is the binary (default target/release/eod): set it to two builds in turn to compare.
set -euo pipefail
set -m # background jobs keep SIGINT, which stops `eod run` with its summary
cd "$(dirname "$0")/../.."
EOD="${EOD:-target/release/eod}"
rate="${1:-300}"
messages="${2:-9000}"
: "${EOD_KAFKA_BROKERS:?start a broker: scripts/kafka.sh start; export \$(scripts/kafka.sh env)}"
export EOD_KAFKA_BROKERS

prefix="cluster$(date +%s%N)"
export EOD_TRADES_TOPIC="$prefix.trades" EOD_DLQ_TOPIC="$prefix.dlq"
export EOD_PRICES_TOPIC="$prefix.prices" EOD_REFERENCE_TOPIC="$prefix.reference"
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

gateway_port="$(free_port)"
"$EOD" ingest --listen "127.0.0.1:$gateway_port" --spool "$work/spool" --archive-to "$work/archive" \
    --create-topics --connections 1 > "$work/gateway.out" 2> "$work/gateway.err" &
gateway=$!
pids+=("$gateway")
sleep 3
printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$(free_port)" "$(free_port)" > "$work/hosts"
runs=()
for process in 0 1; do
    "$EOD" run --serve "127.0.0.1:$(free_port)" --group-id "$prefix" \
        -- -w 1 -n 2 -p "$process" -h "$work/hosts" > "$work/p$process.out" 2> "$work/p$process.err" &
    runs+=("$!")
    pids+=("$!")
done
sleep 5
"$EOD" simulate --to "127.0.0.1:$gateway_port" --messages "$messages" --rate "$rate" \
    --burst-multiplier 1 > "$work/simulate.out" 2> "$work/simulate.err"
sleep 3
kill -INT "${runs[@]}"
wait "${runs[@]}"
wait "$gateway"
echo "eod cluster benchmark ($rate msg/s, $messages messages, 2 processes of 1 worker)"
for process in 0 1; do
    echo "process $process: $(grep -h '^fill-to-view' "$work/p$process.out")"
done
