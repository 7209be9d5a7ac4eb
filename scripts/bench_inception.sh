#!/bin/sh
# The FID Inception-v3 forward, C against PyTorch, side by side: the same batch and threads,
# ROUNDS interleaved rounds (C then PyTorch), each the median of REPEAT timed runs after a warm-up;
# prints every round and the median of the per-round speed ratios.
#   scripts/bench_inception.sh [BATCH] [THREADS] [ROUNDS] [REPEAT]
# The PyTorch side is tests/reference/inception.py's FIDInception (pytorch-fid's module layout;
# pytorch-fid itself is not packaged in Debian): scripts/bench_inception.py.
set -eu
cd "$(dirname "$0")/.."
B=${1:-8}
T=${2:-2}
N=${3:-5}
R=${4:-3}
PY=${PYTHON:-/usr/bin/python3}
BIN=${BUILD:-build}/ddpm-bench
[ -x "$BIN" ] || { echo "bench_inception.sh: build first (make)" >&2; exit 2; }
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
printf '%-6s %10s %10s %9s %9s %8s\n' round "C s" "torch s" "C img/s" "torch/s" ratio
ratios=""
i=1
while [ "$i" -le "$N" ]; do
    c=$("$BIN" --mode inception --batch "$B" -t "$T" --repeat "$R")
    p=$("$PY" scripts/bench_inception.py --batch "$B" --threads "$T" --repeat "$R")
    cs=$(echo "$c" | field median_s); ps=$(echo "$p" | field median_s)
    r=$(awk "BEGIN{print $ps / $cs}")
    ratios="$ratios $r"
    printf '%-6s %10.3f %10.3f %9.2f %9.2f %7.2fx\n' "$i" "$cs" "$ps" "$(awk "BEGIN{print $B / $cs}")" "$(awk "BEGIN{print $B / $ps}")" "$r"
    i=$((i + 1))
done
med=$(echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "median speed-up (PyTorch s / C s): ${med}x; batch $B, threads $T, $N rounds x $R runs; load $(cut -d' ' -f1-3 /proc/loadavg)"
