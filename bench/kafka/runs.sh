#!/usr/bin/env bash
# Target 3 (issue 11) over several runs: `eod-bench-kafka` N times in a row, each with its bare
# Kafka baseline (a process of its own, just before the pipeline), then every run's figures
# against its own baseline and their medians, and in how many runs each goal held.
#
#   bench/kafka/runs.sh N [EOD_BENCH_KAFKA_FLAGS...]
#
# One run's fill-to-view p50 swung from 10.9 to 17.7 ms between two runs in a row on the 2-core
# box of bench/RESULTS.md (2026-12-07), its bare baseline's far less: a goal read from one run
# says little. The goals: p50 at most the baseline's p50 + 10 ms, p99 at most 2x the
# baseline's, and (with --burst) p95 at most 100 ms. Flags default to `--rate 50000 --seconds 8
# --workers 2` with SQLite books in a temporary directory; in flags given, `@RUN@` is replaced by
# the run's number (a books file per run: `--books sqlite:/tmp/b-@RUN@.sqlite`). Needs a broker:
# EOD_KAFKA_BROKERS (scripts/kafka.sh start; export $(scripts/kafka.sh env)). BENCH is the
# binary (default target/release/eod-bench-kafka).
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH="${BENCH:-target/release/eod-bench-kafka}"
: "${EOD_KAFKA_BROKERS:?start a broker: scripts/kafka.sh start; export \$(scripts/kafka.sh env)}"
runs="${1:?usage: bench/kafka/runs.sh N [EOD_BENCH_KAFKA_FLAGS...]}"
shift
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags=("$@")
[ ${#flags[@]} -eq 0 ] && flags=(--rate 50000 --seconds 8 --workers 2 --books "sqlite:$work/books-@RUN@.sqlite")

for run in $(seq 1 "$runs"); do
    if ! "$BENCH" "${flags[@]//@RUN@/$run}" >"$work/run-$run.txt"; then
        # What the failed run said, before the trap removes it.
        cat "$work/run-$run.txt"
        echo "run $run failed" >&2
        exit 1
    fi
    grep -E '^(fill-to-view|baseline:|ratio to)' "$work/run-$run.txt" | sed "s/^/run $run: /"
done

mode=rate
for flag in "${flags[@]}"; do
    case "$flag" in
        --burst) mode=burst ;;
        --flat-out) mode=flat-out ;;
    esac
done
python3 - "$work" "$runs" "$mode" <<'PY'
import re, statistics, sys
work, runs, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def figure(text, line_start, name):
    line = next((l for l in text.splitlines() if l.startswith(line_start)), None)
    if line is None:
        return None
    found = re.search(rf"\b{name} ([0-9.]+)", line)
    return float(found.group(1)) if found else None

rows = []
for run in range(1, runs + 1):
    text = open(f"{work}/run-{run}.txt").read()
    p50, p95, p99 = (figure(text, "fill-to-view", n) for n in ("p50", "p95", "p99"))
    bare = {n: figure(text, "baseline:", n) for n in ("p50", "p95", "p99")}
    throughput = figure(text, "ratio to", "throughput")
    rows.append((p50, p95, p99, bare["p50"], bare["p99"], throughput))

print()
print("run  p50 ms  p95 ms  p99 ms  bare p50  bare p99  p50-bare  p99/bare  throughput/bare")
for i, (p50, p95, p99, b50, b99, thr) in enumerate(rows, 1):
    if None in (p50, p95, p99, b50, b99):
        print(f"{i:3d}  (no latency figures: --no-baseline?)")
        continue
    # A flat-out baseline measures no latency (its figures are 0).
    ratio = f"{p99 / b99:8.1f}x" if b99 > 0 else "       -"
    print(f"{i:3d} {p50:7.2f} {p95:7.2f} {p99:7.2f} {b50:9.2f} {b99:9.2f} {p50 - b50:+9.2f} {ratio} {thr or 0:8.2f}x")
full = [r for r in rows if None not in r[:5] and r[4] > 0]
met = lambda holds: f"met in {sum(holds)} of {len(holds)}"
if full and mode == "rate":
    over = [p50 - b50 for p50, _, _, b50, _, _ in full]
    ratio = [p99 / b99 for _, _, p99, _, b99, _ in full]
    print(f"median   p50 - bare p50 {statistics.median(over):+.2f} ms (goal +10 ms: {met([o <= 10 for o in over])})"
          f"   p99 / bare p99 {statistics.median(ratio):.1f}x (goal 2x: {met([r <= 2 for r in ratio])})")
if full and mode == "burst":
    p95s = [p95 for _, p95, _, _, _, _ in full]
    print(f"median   p95 {statistics.median(p95s):.1f} ms (goal 100 ms: {met([p <= 100 for p in p95s])})")
throughputs = [r[5] for r in rows if r[5] is not None]
if throughputs and mode == "flat-out":
    print(f"median   throughput / bare {statistics.median(throughputs):.2f}x (goal 0.6x: {met([t >= 0.6 for t in throughputs])})")
PY
