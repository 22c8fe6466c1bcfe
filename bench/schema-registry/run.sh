#!/usr/bin/env bash
# What the Confluent wire format costs: one pass on fresh topics, `eod ingest` of an archive and
# `eod run --until-caught-up`, plain or with --schema-registry. Pair the two with farm-bench:
#   source <(scripts/kafka.sh env | sed 's/^/export /'); scripts/schema-registry.sh start
#   export "$(scripts/schema-registry.sh env)"
#   target/release/eod generate --out /tmp/arch500k --messages 500000
#   farm-bench -n 6 --timeout 400 --vs 'bench/schema-registry/run.sh plain /tmp/arch500k' \
#       -- bench/schema-registry/run.sh registry /tmp/arch500k
# Each phase's seconds are appended to /tmp/bench_sr.times; the positions to /tmp/pos-MODE.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
archive="${2:?usage: run.sh plain|registry ARCHIVE}"
n=$(date +%s%N)
t=(--trades-topic b$n.raw --dlq-topic b$n.dlq --prices-topic b$n.prices --reference-topic b$n.ref)
extra=()
[ "$1" = registry ] && extra=(--schema-registry "$EOD_TEST_SCHEMA_REGISTRY_URL")
s=$(date +%s.%N)
./target/release/eod ingest --archive "$archive" --prices "$archive.prices.csv" --create-topics --brokers "$EOD_KAFKA_BROKERS" "${t[@]}" "${extra[@]}" >/dev/null
m=$(date +%s.%N)
./target/release/eod run --brokers "$EOD_KAFKA_BROKERS" "${t[@]}" "${extra[@]}" --group-id g$n --until-caught-up --no-books --serve 127.0.0.1:0 --output /tmp/pos-$1.json -- -w 2 >/dev/null 2>/tmp/run-$1.log
e=$(date +%s.%N)
echo "$1 ingest $(echo "$m - $s" | bc) run $(echo "$e - $m" | bc)" >> /tmp/bench_sr.times
