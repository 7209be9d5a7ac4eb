#!/bin/sh
# The training curve of the diffusion model: FID and accuracy (ddpm-eval, evaluator space, against the
# Fashion-MNIST test set) of every EMA snapshot in RUN/snapshots (ddpm-train's snapshot_every), on a
# fixed sample set: N samples (default 500) with DDIM-25, unguided, seeds 1000+i, classes cycling
# 0..9; the conditional row and the unconditional (null class) row (FID only: its samples follow no
# label, so accuracy against the cycled classes would be chance).
# Each snapshot's scores are cached in RUN/curve/; rerunning scores only the new snapshots, so it can
# run beside the training. Writes RUN/curve.tsv and, with gnuplot, docs/images/training_curve.png.
#   scripts/train_curve.sh [RUN]       (default runs/fashion_diffusion)
# Env: N, THREADS (default 1: leaves a core to the training), EVALUATOR, REF, BUILD.
set -eu
cd "$(dirname "$0")/.."
RUN=${1:-runs/fashion_diffusion}
N=${N:-500}
T=${THREADS:-1}
BIN=${BUILD:-build}
REF=${REF:-$BIN/fashion_test_ref.safetensors}
EVALUATOR=${EVALUATOR:-models/fashion_evaluator.safetensors}
[ -d "$RUN/snapshots" ] || { echo "train_curve.sh: no $RUN/snapshots (set snapshot_every in the run config)" >&2; exit 2; }
[ -x "$BIN/ddpm-sample" ] && [ -x "$BIN/ddpm-eval" ] || make
[ -f "$REF" ] || make ref
. scripts/table_lib.sh
mkdir -p "$RUN/curve"
for snap in "$RUN"/snapshots/step_*.safetensors; do
    [ -f "$snap" ] || continue
    step=$(basename "$snap" .safetensors); step=${step#step_}
    for row in cond uncond; do
        out="$RUN/curve/$step-$row-$N"
        [ -s "$out.json" ] && continue
        extra=
        [ "$row" = uncond ] && extra=--uncond
        echo "== $snap: $row, $N samples" >&2
        # shellcheck disable=SC2086
        "$BIN/ddpm-sample" -q -t "$T" -m "$snap" --seed 1000 -n "$N" -b 50 --class 0,1,2,3,4,5,6,7,8,9 \
            --sampler ddim --steps 25 --guidance none $extra --npz "$out.tmp.npz" -o "$out.png"
        "$BIN/ddpm-eval" -q -t "$T" --no-pr --json --evaluator "$EVALUATOR" --ref "$REF" "$out.tmp.npz" > "$out.json.tmp"
        mv "$out.json.tmp" "$out.json"
        rm -f "$out.tmp.npz"
    done
done
{
    printf 'step\tfid_cond\taccuracy_cond\tfid_uncond\n'
    for f in "$RUN"/curve/*-cond-"$N".json; do
        [ -f "$f" ] || continue
        step=$(basename "$f"); step=${step%%-*}
        u="$RUN/curve/$step-uncond-$N.json"
        printf '%d\t%s\t%s\t%s\n' "$(echo "$step" | sed "s/^0*//; s/^$/0/")" "$(field "$f" fid)" "$(field "$f" accuracy)" \
            "$( [ -s "$u" ] && field "$u" fid || echo nan)"
    done
} > "$RUN/curve.tsv"
cat "$RUN/curve.tsv"
command -v gnuplot >/dev/null || exit 0
mkdir -p docs/images
gnuplot <<GP
set terminal png size 800,450
set termoption noenhanced
set output "docs/images/training_curve.png"
set title "Fashion-MNIST diffusion model: DDIM-25, unguided, $N samples per point"
set xlabel "training step (batch 32)"; set ylabel "FID (evaluator space)"; set y2label "accuracy"
set ytics nomirror; set y2tics; set y2range [0:1]; set grid; set key top center
plot "$RUN/curve.tsv" using 1:2 skip 1 with linespoints title "FID, conditional", \
     "$RUN/curve.tsv" using 1:4 skip 1 with linespoints title "FID, null class", \
     "$RUN/curve.tsv" using 1:3 skip 1 axes x1y2 with linespoints dt 2 title "accuracy, conditional"
GP
echo "docs/images/training_curve.png" >&2
