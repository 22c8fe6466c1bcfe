#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, starts what it needs on
# 127.0.0.1, runs everything, and stops it again. `.ci/run` calls exactly this.
#
#   scripts/test-all.sh            everything
#   EOD_FUZZ_SECONDS=0 scripts/test-all.sh   skip the fuzz run
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "format"
cargo fmt --all --check

step "clippy (deny warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit, property and integration tests"
cargo test --workspace --locked

step "fuzz the FIX codec"
scripts/fuzz.sh "${EOD_FUZZ_SECONDS:-60}"

step "done in $(( $(date +%s) - started )) s"
