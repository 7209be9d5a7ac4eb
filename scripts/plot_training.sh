#!/bin/sh
# Plots from the training logs (gnuplot, Debian's gnuplot-nox):
#   docs/images/loss_diffusion.png       loss, MSE and vb of runs/fashion_diffusion/log.jsonl
#   docs/images/classifier_accuracy.png  test accuracy by timestep, CE vs ECT, from
#                                        runs/fashion_classifier_{ce,ect}/eval.jsonl (ddpm-train --eval)
set -eu
cd "$(dirname "$0")/.."
command -v gnuplot >/dev/null || { echo "plot_training.sh: apt-get install gnuplot-nox" >&2; exit 2; }
mkdir -p docs/images
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
col() { # FILE KEY... -> whitespace columns
    f=$1; shift
    while IFS= read -r line; do
        out=
        for k in "$@"; do
            v=$(printf '%s\n' "$line" | sed -n "s/.*\"$k\": \([-0-9.e+]*\).*/\1/p")
            out="$out ${v:-nan}"
        done
        echo "$out"
    done < "$f"
}
if [ -f runs/fashion_diffusion/log.jsonl ]; then
    col runs/fashion_diffusion/log.jsonl step loss mse vb > "$tmp/loss.dat"
    gnuplot <<EOF
set terminal png size 800,450
set termoption noenhanced
set output "docs/images/loss_diffusion.png"
set title "Fashion-MNIST diffusion model: training loss (mean of each 50 steps)"
set xlabel "step"; set ylabel "loss"; set logscale y; set grid
plot "$tmp/loss.dat" using 1:2 with lines title "loss = mse + vb", \
     "$tmp/loss.dat" using 1:3 with lines title "mse (epsilon)", \
     "$tmp/loss.dat" using 1:4 with lines title "vb (0.001 L_vlb, bits/dim)"
EOF
fi
if [ -f runs/fashion_classifier_ce/eval.jsonl ] && [ -f runs/fashion_classifier_ect/eval.jsonl ]; then
    col runs/fashion_classifier_ce/eval.jsonl t accuracy > "$tmp/ce.dat"
    col runs/fashion_classifier_ect/eval.jsonl t accuracy > "$tmp/ect.dat"
    gnuplot <<EOF
set terminal png size 800,450
set termoption noenhanced
set output "docs/images/classifier_accuracy.png"
set title "Noise-aware classifiers: Fashion-MNIST test accuracy of x_t by timestep"
set xlabel "timestep t (of 1000, cosine schedule)"; set ylabel "top-1 accuracy"; set grid; set yrange [0:1]
plot "$tmp/ce.dat" using 1:2 with linespoints title "cross-entropy", \
     "$tmp/ect.dat" using 1:2 with linespoints title "ECT (lambda 0.1)"
EOF
fi
ls -la docs/images
