#!/usr/bin/env bash
# Peers side by side (issue 11, target 6): eod on the raw FIX beside DuckDB and Polars (batch)
# and Pathway (static and streaming) over the same trade events pre-parsed to CSV, in one run.
#
#     bench/peers/run.sh [MESSAGES [WORKERS]]        # defaults: 1000000 messages, 2 workers
#
# Installs the engines into target/peers-venv from PyPI (requirements.txt), builds eod and the
# exporter, generates an archive, and prints wall time and peak RSS of every run; it fails if
# any engine disagrees with eod on a position's net_qty or trade count.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
messages=${1:-1000000}
workers=${2:-2}
work=$root/target/peers
venv=$root/target/peers-venv
cd "$root"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/peers/requirements.txt
cargo build --release --locked -p eod -p eod-bench

eod=$root/target/release/eod
rm -rf "$work"
mkdir -p "$work"
"$eod" generate --out "$work/arch" --messages "$messages"
target/release/eod-bench-export --archive "$work/arch" --out "$work/events.csv"

replay="$eod replay --archive $work/arch --prices $work/arch.prices.csv --output {positions} --quiet"
"$venv/bin/python" bench/peers/peers.py compare --events "$work/events.csv" --work "$work" \
    --eod "eod-no-books=$replay --dead-letters $work/d1.jsonl --no-books -- -w $workers" \
    --eod "eod-books-sqlite=$replay --dead-letters $work/d2.jsonl --books sqlite:$work/books.sqlite -- -w $workers" \
    --eod "eod-no-books-250=$replay --dead-letters $work/d3.jsonl --no-books --epoch-messages 250 -- -w $workers" \
    --eod "eod-books-250=$replay --dead-letters $work/d4.jsonl --books sqlite:$work/books-250.sqlite --epoch-messages 250 -- -w $workers"
