#!/bin/sh
# Trains the default Fashion-MNIST models with ddpm-train and copies them into models/:
#   models/fashion_diffusion.safetensors       ADM U-Net, hybrid loss, null class (configs/train_fashion_diffusion.json)
#   models/fashion_classifier_ce.safetensors   noise-aware classifier, cross-entropy
#   models/fashion_classifier_ect.safetensors  noise-aware classifier, ECT (lambda 0.1)
#   models/fashion_evaluator.safetensors       clean-image classifier for ddpm-eval (features, accuracy)
# Needs Debian's dataset-fashion-mnist. Every run checkpoints to runs/NAME/ and this script resumes
# them, so it can be stopped (Ctrl-C) and started again at any time.
#   scripts/train_fashion.sh [THREADS]
set -eu
cd "$(dirname "$0")/.."
T=${1:-$(nproc)}
BIN=${BUILD:-build}
[ -x "$BIN/ddpm-train" ] || make
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "train_fashion.sh: install Debian's dataset-fashion-mnist first" >&2; exit 2; }
mkdir -p models
total=$(date +%s)
for run in diffusion classifier_ce classifier_ect evaluator; do
    cfg=configs/train_fashion_$run.json
    echo "== $run ($cfg)" >&2
    start=$(date +%s)
    "$BIN/ddpm-train" -c "$cfg" -t "$T" --resume
    echo "== $run: $(( $(date +%s) - start )) s this invocation" >&2
    cp "runs/fashion_$run/model.safetensors" "models/fashion_$run.safetensors"
done
echo "== all runs: $(( $(date +%s) - total )) s this invocation" >&2
