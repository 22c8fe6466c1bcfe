#!/usr/bin/env bash
# `eod check` against a local deployment (issue 13).
#
#   bench/check/run.sh NAME [EOD_CHECK_FLAGS...]
#
# Creates fresh topics NAME.*, starts a FIX-session gateway (counterparty EODCHECK, archive in
# a directory, 1 s segments) and one `eod run -- -w 2` with PostgreSQL books and Redis, waits
# until it is ready, runs `eod check` with the flags given (default: every scenario with its
# defaults) and stops both. The verdicts are printed; check.json is in the work directory.
# Needs the broker, PostgreSQL and Redis of the full test command (scripts/kafka.sh start,
# scripts/postgres.sh start, scripts/redis.sh start; export what their `env` prints). EOD is
# the binary (default target/release/eod); RUN_FLAGS are added to `eod run`'s flags.
set -euo pipefail
cd "$(dirname "$0")/../.."
EOD="$(realpath "${EOD:-target/release/eod}")"
: "${EOD_KAFKA_BROKERS:?start a broker: scripts/kafka.sh start; export \$(scripts/kafka.sh env)}"
: "${EOD_POSTGRES_URL:?start PostgreSQL: scripts/postgres.sh start; export \$(scripts/postgres.sh env)}"
: "${EOD_REDIS_URL:?start Redis: scripts/redis.sh start; export \$(scripts/redis.sh env)}"
name="$1"
shift
work="$(mktemp -d)"
cd "$work"
mkdir empty
topics=(--trades-topic "$name.trades" --dlq-topic "$name.dlq" --prices-topic "$name.prices"
    --reference-topic "$name.ref" --brokers "$EOD_KAFKA_BROKERS")
"$EOD" ingest --archive empty --create-topics "${topics[@]}" > /dev/null
"$EOD" ingest --listen 127.0.0.1:19878 --spool spool --archive-to archive \
    --trading-date "$(date -u +%Y%m%d)" --fix-session --session-dir sessions \
    --counterparty EODCHECK --segment-seconds 1 "${topics[@]}" > gateway.out 2> gateway.log &
gateway=$!
"$EOD" run --serve 127.0.0.1:18080 --books "$EOD_POSTGRES_URL" --redis "$EOD_REDIS_URL" \
    --group-id "$name" "${topics[@]}" ${RUN_FLAGS:-} -- -w 2 > run.out 2> run.log &
run=$!
trap 'kill $gateway $run 2> /dev/null || true' EXIT
for _ in $(seq 1 150); do
    curl -sf 127.0.0.1:18080/health/ready > /dev/null && break
    sleep 0.2
done
status=0
"$EOD" check --gateway 127.0.0.1:19878 --views 127.0.0.1:18080 --books "$EOD_POSTGRES_URL" \
    --redis "$EOD_REDIS_URL" --archive-to archive "${topics[@]}" --report "$work/report" "$@" \
    || status=$?
echo "work directory  $work"
exit $status
