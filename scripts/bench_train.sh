#!/bin/sh
# Training speed, C vs PyTorch, side by side: for each run config, ROUNDS interleaved rounds of
# `ddpm-train --bench STEPS` then `scripts/bench_torch.py --mode train` (same network, batch, loss,
# optimizer and threads), one line per round and the median of the per-round ratios.
#   scripts/bench_train.sh [THREADS] [ROUNDS] [STEPS] [CONFIG...]
# Default configs: the diffusion and ECT classifier recipes in configs/. With GD_PROFILE=1 the C side
# also prints seconds per op kind for each pass (stderr).
set -eu
cd "$(dirname "$0")/.."
T=${1:-2}
R=${2:-3}
S=${3:-10}
[ $# -gt 3 ] && shift 3 || set --
[ $# -gt 0 ] || set -- configs/train_fashion_diffusion.json configs/train_fashion_classifier_ect.json
PY=${PYTHON:-/usr/bin/python3}
BIN=${BUILD:-build}/ddpm-train
[ -x "$BIN" ] || { echo "bench_train.sh: build first (make)" >&2; exit 2; }
"$PY" -c "import torch" 2>/dev/null || { echo "bench_train.sh: $PY has no torch (apt-get install python3-torch)" >&2; exit 2; }
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }

printf '%-44s %5s %10s %10s %12s %8s\n' config round "C s/step" "torch s" "C samples/s" ratio
for cfg in "$@"; do
    B=$(sed -n 's/.*"batch_size": *\([0-9]*\).*/\1/p' "$cfg")
    [ -n "$B" ] || { echo "bench_train.sh: $cfg has no batch_size" >&2; exit 2; }
    ratios=
    r=1
    while [ "$r" -le "$R" ]; do
        c=$("$BIN" -c "$cfg" --bench "$S" -t "$T")
        p=$("$PY" scripts/bench_torch.py --config "$cfg" --mode train --batch "$B" --threads "$T" --repeat "$S")
        cs=$(echo "$c" | field median_s); ps=$(echo "$p" | field median_s); sps=$(echo "$c" | field samples_per_s)
        ratio=$(awk "BEGIN{printf \"%.2f\", $ps / $cs}")
        printf '%-44s %5s %10.3f %10.3f %12.1f %7sx\n' "$cfg" "$r" "$cs" "$ps" "$sps" "$ratio"
        ratios="$ratios $ratio"
        r=$((r + 1))
    done
    med=$(printf '%s\n' $ratios | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    printf '%-44s %5s %10s %10s %12s %7sx\n' "$cfg" median "" "" "" "$med"
done
echo "threads: $T, rounds: $R, steps per timing: $S, $(nproc) cores; torch $("$PY" -c 'import torch; print(torch.__version__)')"
