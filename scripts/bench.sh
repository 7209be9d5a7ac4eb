#!/bin/sh
# C vs PyTorch, side by side in one run, same thread count, random weights.
#   scripts/bench.sh [THREADS] [REPEAT]     (make bench)
# Each case runs the C build then the PyTorch reference (tests/reference/adm.py) alternately,
# REPEAT timed runs each after one warm-up, and prints medians, the speed ratio and the C side's
# effective GFLOP/s at fp32 (forward FLOPs / time; x2 for classifier forward + input gradient).
set -eu
cd "$(dirname "$0")/.."
T=${1:-2}
R=${2:-5}
PY=${PYTHON:-/usr/bin/python3}
BIN=${BUILD:-build}/ddpm-bench
[ -x "$BIN" ] || { echo "bench.sh: build first (make)" >&2; exit 2; }
"$PY" -c "import torch" 2>/dev/null || { echo "bench.sh: $PY has no torch (apt-get install python3-torch)" >&2; exit 2; }

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }

# PRECISIONS="fp32 bf16" (default): the C build at each, PyTorch at fp32 and under its bf16 autocast;
# each ratio is PyTorch's time over C's at the same precision.
PRECISIONS=${PRECISIONS:-fp32 bf16}
# W8A8=1 (default): also the C build with its convolutions int8 (ddpm-bench --precision w8a8), against
# PyTorch fp32 (the target's reference; PyTorch has no int8 CPU path for these networks)
W8A8=${W8A8:-1}
printf '%-34s %5s' case batch
for p in $PRECISIONS; do printf ' %9s %9s %7s' "C $p" "torch $p" ratio; done
# each as its int8 convolutions alone (w8a8: the rest fp32) and with the rest in bf16 (w8a8+bf16:
# what ddpm-sample --precision bf16 runs on a ddpm-quantize model)
W8A8_MODES=${W8A8_MODES:-w8a8 w8a8+bf16}
if [ "$W8A8" = 1 ]; then for q in $W8A8_MODES; do printf ' %9s %7s' "C $q" "vs t32"; done; fi
printf ' %9s\n' "C GFLOP/s"
run() { # label config preset mode batch
    printf '%-34s %5s' "$1" "$5"; t32=
    for p in $PRECISIONS; do
        c=$("$BIN" -c "configs/$2" --mode "$4" --batch "$5" -t "$T" --repeat "$R" --precision "$p")
        t=$("$PY" scripts/bench_torch.py --config "$3" --mode "$4" --batch "$5" --threads "$T" --repeat "$R" --precision "$p")
        cs=$(echo "$c" | field median_s); ps=$(echo "$t" | field median_s)
        [ "$p" = fp32 ] && gf=$(echo "$c" | field gflops) && t32=$ps
        printf ' %9.3f %9.3f %6.2fx' "$cs" "$ps" "$(awk "BEGIN{print $ps / $cs}")"
    done
    if [ "$W8A8" = 1 ]; then
        [ -n "${t32:-}" ] || t32=$("$PY" scripts/bench_torch.py --config "$3" --mode "$4" --batch "$5" --threads "$T" --repeat "$R" | field median_s)
        for q in $W8A8_MODES; do
            c=$("$BIN" -c "configs/$2" --mode "$4" --batch "$5" -t "$T" --repeat "$R" --precision "$q")
            cs=$(echo "$c" | field median_s)
            printf ' %9.3f %6.2fx' "$cs" "$(awk "BEGIN{print $t32 / $cs}")"
        done
    fi
    printf ' %9.1f\n' "${gf:-0}"
}
run "ADM-64 U-Net forward" adm64.json adm64 unet 1
run "ADM-64 U-Net forward" adm64.json adm64 unet 4
run "ADM-64 classifier fwd+grad" adm64_classifier.json adm64cls classifier 1
run "small 28x28 U-Net forward" small28.json small28 unet 16
run "small 28x28 classifier fwd+grad" small28_classifier.json small28cls classifier 16
echo "threads: $T, repeats: $R, $(nproc) cores; torch $("$PY" -c 'import torch; print(torch.__version__)')"
