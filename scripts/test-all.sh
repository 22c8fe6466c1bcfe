#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, starts what it needs on
# 127.0.0.1, runs everything, and stops it again. `.ci/run` calls exactly this.
#
#   scripts/test-all.sh            everything
#   EOD_FUZZ_SECONDS=0 scripts/test-all.sh   skip the fuzz run
#
# Needs: Rust, Java 17 and Maven (Kafka's jars come from Maven Central), make and a C/C++
# compiler (librdkafka, SQLite and QuickFIX are built from source), Python 3 with venv, Go
# (the compose linter), root or installed Debian packages (postgresql-15, redis-server,
# chromium, chromium-driver, prometheus). cargo-fuzz is installed on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

# A clean build gains nothing from incremental caches; they only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }
# Exports every NAME=value line a service script's `env` prints.
export_env() { while read -r setting; do export "$setting"; done < <("$1" env); }
started=$(date +%s)

step "build prerequisites (Debian): OpenSSL headers for librdkafka's TLS"
if ! dpkg -s libssl-dev >/dev/null 2>&1 || ! command -v pkg-config >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi

step "format"
cargo fmt --all --check

step "clippy (deny warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "services: Apache Kafka (KRaft) on 127.0.0.1"
export EOD_KAFKA_DIR="${EOD_KAFKA_DIR:-$PWD/target/test-services/kafka}"
export EOD_KAFKA_PORT="${EOD_KAFKA_PORT:-19192}"
scripts/kafka.sh stop
rm -rf "$EOD_KAFKA_DIR/data"
trap 'scripts/kafka.sh stop || true; scripts/postgres.sh stop || true; scripts/redis.sh stop || true; scripts/s3.sh stop || true; scripts/jaeger.sh stop || true; scripts/schema-registry.sh stop || true' EXIT
scripts/kafka.sh start
# Also the broker's second listener: SASL_SSL with a private CA (the secured-cluster test).
export_env scripts/kafka.sh
echo "EOD_KAFKA_BROKERS=$EOD_KAFKA_BROKERS"

step "services: PostgreSQL 15 on 127.0.0.1 (the books)"
export EOD_POSTGRES_DIR="${EOD_POSTGRES_DIR:-$PWD/target/test-services/postgres}"
export EOD_POSTGRES_PORT="${EOD_POSTGRES_PORT:-15432}"
scripts/postgres.sh stop
rm -rf "$EOD_POSTGRES_DIR"
scripts/postgres.sh start
export_env scripts/postgres.sh
echo "EOD_POSTGRES_URL=$EOD_POSTGRES_URL"

step "services: Redis 7 on 127.0.0.1 (the speed path)"
export EOD_REDIS_DIR="${EOD_REDIS_DIR:-$PWD/target/test-services/redis}"
export EOD_REDIS_PORT="${EOD_REDIS_PORT:-16379}"
scripts/redis.sh stop
rm -rf "$EOD_REDIS_DIR"
scripts/redis.sh start
export_env scripts/redis.sh
echo "EOD_REDIS_URL=$EOD_REDIS_URL"

step "services: SeaweedFS (S3) on 127.0.0.1 (the archive)"
export EOD_S3_DIR="${EOD_S3_DIR:-$PWD/target/test-services/s3}"
export EOD_S3_VENV="${EOD_S3_VENV:-$PWD/target/test-services/seaweedfs-venv}"
scripts/s3.sh stop
rm -rf "$EOD_S3_DIR"
scripts/s3.sh start
# Only the URL: each S3 test starts a server of its own (it stops it mid-run) and hands its
# endpoint and credentials to the processes it spawns.
export "$(scripts/s3.sh env | grep '^EOD_S3_URL=')"
echo "EOD_S3_URL=$EOD_S3_URL"

step "services: Jaeger v2 on 127.0.0.1 (OTLP trace export)"
export EOD_JAEGER_DIR="${EOD_JAEGER_DIR:-$PWD/target/test-services/jaeger}"
scripts/jaeger.sh stop
scripts/jaeger.sh start
export_env scripts/jaeger.sh

step "services: Apicurio Registry on 127.0.0.1 (Confluent-compatible Schema Registry)"
export EOD_SCHEMA_REGISTRY_DIR="${EOD_SCHEMA_REGISTRY_DIR:-$PWD/target/test-services/schema-registry}"
scripts/schema-registry.sh stop
scripts/schema-registry.sh start
export_env scripts/schema-registry.sh

step "QuickFIX (a real FIX engine as initiator), Python venv"
export EOD_QUICKFIX_VENV="${EOD_QUICKFIX_VENV:-$PWD/target/test-services/quickfix-venv}"
# QuickFIX's Python bindings build from PyPI's sdist: about 3.5 min on 2 cores the first time.
scripts/pip-venv.sh "$EOD_QUICKFIX_VENV" quickfix==1.16.0
export EOD_QUICKFIX_PYTHON="$EOD_QUICKFIX_VENV/bin/python"

step "headless Chromium and Selenium (the dashboard's browser test)"
export EOD_BROWSER_VENV="${EOD_BROWSER_VENV:-$PWD/target/test-services/browser-venv}"
scripts/browser-venv.sh "$EOD_BROWSER_VENV"
export EOD_BROWSER_PYTHON="$EOD_BROWSER_VENV/bin/python"

step "docker/ lint (hadolint, compose-go, promtool)"
scripts/lint-docker.sh
# The same Debian package's server scrapes a live demo in a test.
EOD_PROMETHEUS="$(command -v prometheus)"
export EOD_PROMETHEUS

step "unit, property and integration tests (real Kafka, PostgreSQL, Redis, S3, Jaeger, Schema Registry, QuickFIX, Chromium)"
cargo test --workspace --locked

step "fuzz the FIX codec"
scripts/fuzz.sh "${EOD_FUZZ_SECONDS:-60}"

step "done in $(( $(date +%s) - started )) s"
