#!/bin/sh
# Run every benchmark in BUILD/bench one after another (never in parallel:
# they measure time) and keep a copy of the tables in BUILD/bench.md.
B=${1:-build}
out="$B/bench.md"
: > "$out"
echo "# mmkit benchmarks, $(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs" | tee -a "$out"
for b in "$B"/bench/*; do
    [ -x "$b" ] || continue
    "$b" | tee -a "$out" || { echo "benchmark $b failed" >&2; exit 1; }
done
echo
echo "tables saved in $out"
