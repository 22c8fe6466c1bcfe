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
log="$(pwd)/target/fuzz-fix_stream.log"
cd sources/fix
# libFuzzer prints a line per coverage event: keep it in a log, show the end of it.
if cargo fuzz run --sanitizer none fix_stream "../../$corpus" fuzz/seeds -- \
     -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss)' "$log" || tail -5 "$log"
  echo "fuzz: no crash in ${seconds}s (log: $log)"
else
  tail -60 "$log"
  echo "fuzz: FAILED, see $log and sources/fix/fuzz/artifacts/" >&2
  exit 1
fi
