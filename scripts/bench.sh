#!/bin/sh
# C vs PyTorch, side by side in one run, same thread count, random weights.
#   scripts/bench.sh [THREADS] [REPEAT]     (make bench)
# Each case runs the C build then the PyTorch reference (tests/reference/adm.py) alternately,
# REPEAT timed runs each after one warm-up, and prints medians, the speed ratio and the C side's
# effective GFLOP/s (forward FLOPs / time; x2 for classifier forward + input gradient).
set -eu
cd "$(dirname "$0")/.."
T=${1:-2}
R=${2:-5}
PY=${PYTHON:-/usr/bin/python3}
BIN=${BUILD:-build}/ddpm-bench
[ -x "$BIN" ] || { echo "bench.sh: build first (make)" >&2; exit 2; }
"$PY" -c "import torch" 2>/dev/null || { echo "bench.sh: $PY has no torch (apt-get install python3-torch)" >&2; exit 2; }

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }

printf '%-34s %6s %10s %10s %8s %9s\n' case batch "C s" "torch s" "speedup" "C GFLOP/s"
run() { # label config preset mode batch
    c=$("$BIN" -c "configs/$2" --mode "$4" --batch "$5" -t "$T" --repeat "$R")
    p=$("$PY" scripts/bench_torch.py --config "$3" --mode "$4" --batch "$5" --threads "$T" --repeat "$R")
    cs=$(echo "$c" | field median_s); ps=$(echo "$p" | field median_s); gf=$(echo "$c" | field gflops)
    printf '%-34s %6s %10.3f %10.3f %7.2fx %9.1f\n' "$1" "$5" "$cs" "$ps" "$(awk "BEGIN{print $ps / $cs}")" "$gf"
}
run "ADM-64 U-Net forward" adm64.json adm64 unet 1
run "ADM-64 U-Net forward" adm64.json adm64 unet 4
run "ADM-64 classifier fwd+grad" adm64_classifier.json adm64cls classifier 1
run "small 28x28 U-Net forward" small28.json small28 unet 16
run "small 28x28 classifier fwd+grad" small28_classifier.json small28cls classifier 16
echo "threads: $T, repeats: $R, $(nproc) cores; torch $("$PY" -c 'import torch; print(torch.__version__)')"
