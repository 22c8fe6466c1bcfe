#!/usr/bin/env bash
# A short coverage-guided fuzz run of the FIX codec (libFuzzer through cargo-fuzz).
# Stable Rust: `--sanitizer none` needs no nightly; the target's own assertions are the oracle.
#   scripts/fuzz.sh [SECONDS]     (0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if [ "$seconds" = "0" ]; then echo "fuzz: skipped"; exit 0; fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked --version 0.13.1
fi
corpus="target/fuzz-corpus/fix_stream"
mkdir -p "$corpus"
cd sources
cargo fuzz run --sanitizer none fix_stream "../$corpus" fuzz/seeds -- \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
