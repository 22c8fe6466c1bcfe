#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, starts what it needs on
# 127.0.0.1, runs everything, and stops it again. `.ci/run` calls exactly this.
#
#   scripts/test-all.sh            everything
#   EOD_FUZZ_SECONDS=0 scripts/test-all.sh   skip the fuzz run
#
# Needs: Rust, Java 17 and Maven (Kafka's jars come from Maven Central), make and a C compiler
# (librdkafka is built from source). cargo-fuzz is installed on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "format"
cargo fmt --all --check

step "clippy (deny warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "services: Apache Kafka (KRaft) on 127.0.0.1"
export EOD_KAFKA_DIR="${EOD_KAFKA_DIR:-$PWD/target/test-services/kafka}"
export EOD_KAFKA_PORT="${EOD_KAFKA_PORT:-19192}"
scripts/kafka.sh stop
rm -rf "$EOD_KAFKA_DIR/data"
trap 'scripts/kafka.sh stop || true' EXIT
scripts/kafka.sh start
export EOD_KAFKA_BROKERS="127.0.0.1:$EOD_KAFKA_PORT"
echo "EOD_KAFKA_BROKERS=$EOD_KAFKA_BROKERS"

step "unit, property and integration tests (real broker)"
cargo test --workspace --locked

step "fuzz the FIX codec"
scripts/fuzz.sh "${EOD_FUZZ_SECONDS:-60}"

step "done in $(( $(date +%s) - started )) s"
