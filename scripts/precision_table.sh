#!/bin/sh
# What lower precision costs in quality on the default Fashion-MNIST models: FID and accuracy of
# EDS with the ECT classifier (DDIM-25, and a fast solver) at fp32, bf16 (--precision bf16) and W8A8
# (both models quantized by ddpm-quantize, its defaults), BEST_N samples per cell, with the FID of
# QUARTERS disjoint slices as the noise, and seconds per sample (the time stage: TIME_N samples per
# cell, timed alone; run it on a quiet machine).
# Sample i has seed 1000+i and class i mod 10 in every cell, as in the guidance table: its fp32
# DDIM-25 cell of the same scale holds the same samples and is reused when $GUIDANCE has it.
#   scripts/precision_table.sh [sample|time|report|all]   (default all)
# Sizes and settings: BEST_N (2000), PART (500), QUARTERS (4), TIME_N (100), EDS_SCALE (the guidance
# table's best EDS-ECT scale), FAST ("dpm++2m 15": solver and NFE; "none" for DDIM-25 alone),
# QUANT_FLAGS (more ddpm-quantize flags), THREADS, OUT (runs/precision), GUIDANCE (runs/guidance),
# DOCS (docs).
# Every cell is cached in $OUT in parts: rerunning resumes.
set -eu
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}
OUT=${OUT:-runs/precision}
BEST_N=${BEST_N:-2000}
PART=${PART:-500}
TIME_N=${TIME_N:-100}
GUIDANCE=${GUIDANCE:-runs/guidance}
QUARTERS=${QUARTERS:-4}
EDS_SCALE=${EDS_SCALE:-1}
FAST=${FAST:-"dpm++2m 15"}
T=${THREADS:-$(nproc)}
STAGE=${1:-all}
UNET=models/fashion_diffusion.safetensors
ECT=models/fashion_classifier_ect.safetensors
REF=${REF:-$BIN/fashion_test_ref.safetensors}
EVALUATOR=${EVALUATOR:-models/fashion_evaluator.safetensors}
case $STAGE in sample | time | report | all) ;; *) echo "precision_table.sh: unknown stage '$STAGE' (sample, time, report, all)" >&2; exit 2 ;; esac
mkdir -p "$OUT/parts"
. scripts/table_lib.sh
[ -x "$BIN/ddpm-sample" ] && [ -x "$BIN/ddpm-eval" ] && [ -x "$BIN/ddpm-npz" ] && [ -x "$BIN/ddpm-quantize" ] || make
[ -f "$REF" ] || make ref

fail() {
    echo "precision_table.sh: $1 failed" >&2
    kill -TERM $$ 2>/dev/null
    exit 1
}

# the W8A8 models, once (calibration on the fp32 model's own DDIM chains)
Q_UNET=$OUT/fashion_diffusion.w8a8.safetensors
Q_ECT=$OUT/fashion_classifier_ect.w8a8.safetensors
quantize() {
    [ -f "$Q_UNET" ] && [ -f "$Q_ECT" ] && return 0
    echo "== ddpm-quantize (default calibration)" >&2
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$BIN/ddpm-quantize" -q -t "$T" -m "$UNET" -c "$ECT" -o "$Q_UNET" --classifier-output "$Q_ECT" ${QUANT_FLAGS:-} ||
        fail "ddpm-quantize"
    echo $(($(date +%s) - start)) >"$OUT/quantize_seconds"
}

pflags() { # precision -> model flags
    case $1 in
        fp32) echo "-m $UNET --classifier $ECT" ;;
        bf16) echo "-m $UNET --classifier $ECT --precision bf16" ;;
        w8a8) echo "-m $Q_UNET --classifier $Q_ECT" ;;
    esac
}

# one cell: parts of PART samples (each cached and timed), merged, scored
cell() { # precision sampler nfe
    name="$1-$2-$3-$BEST_N"
    reuse="$GUIDANCE/cond-eds_ect-$EDS_SCALE-ddim-$BEST_N.npz"
    [ "$1-$2-$3" = fp32-ddim-25 ] && [ -f "$reuse" ] && [ ! -f "$OUT/$name.npz" ] && cp "$reuse" "$OUT/$name.npz"
    if [ ! -f "$OUT/$name.npz" ]; then
        first=0 inputs=""
        while [ "$first" -lt "$BEST_N" ]; do
            count=$((BEST_N - first))
            [ "$count" -gt "$PART" ] && count=$PART
            part="$OUT/parts/$1-$2-$3-$first+$count.npz"
            if [ ! -f "$part" ]; then
                echo "== sample $name: [$first, $((first + count)))" >&2
                # shellcheck disable=SC2046
                "$BIN/ddpm-sample" -q -t "$T" --seed 1000 --first-index "$first" -n "$count" -b 50 \
                    --class 0,1,2,3,4,5,6,7,8,9 --sampler "$2" --steps "$3" --guidance entropy --scale "$EDS_SCALE" \
                    $(pflags "$1") --npz "$part.tmp.npz" -o "${part%.npz}.png" || fail "sampling $name"
                rm -f "${part%.npz}.png" "${part%.npz}.png.json"
                mv "$part.tmp.npz" "$part"
            fi
            inputs="$inputs $part"
            first=$((first + count))
        done
        # shellcheck disable=SC2086
        "$BIN/ddpm-npz" merge -o "$OUT/$name.npz" $inputs >/dev/null || fail "merging $name"
    fi
    if [ ! -s "$OUT/$name.json" ]; then
        "$BIN/ddpm-eval" -q -t "$T" --json --evaluator "$EVALUATOR" --ref "$REF" "$OUT/$name.npz" >"$OUT/$name.json.tmp" ||
            fail "scoring $name"
        mv "$OUT/$name.json.tmp" "$OUT/$name.json"
    fi
}

# wall seconds per sample of TIME_N samples of a cell's settings, alone on the machine
timing() { # precision sampler nfe
    f="$OUT/$1-$2-$3-$BEST_N.seconds"
    [ -s "$f" ] && return 0
    echo "== time $1 $2 $3: $TIME_N samples" >&2
    start=$(date +%s.%N)
    # shellcheck disable=SC2046
    "$BIN/ddpm-sample" -q -t "$T" --seed 1000 -n "$TIME_N" -b 50 --class 0,1,2,3,4,5,6,7,8,9 --sampler "$2" --steps "$3" \
        --guidance entropy --scale "$EDS_SCALE" $(pflags "$1") --npz "$OUT/time.npz" -o "$OUT/time.png" || fail "timing $1 $2 $3"
    awk "BEGIN { printf \"%.4f\n\", ($(date +%s.%N) - $start) / $TIME_N }" >"$f"
    rm -f "$OUT/time.npz" "$OUT/time.png" "$OUT/time.png.json"
}

samplers() { echo "ddim:25"; [ "$FAST" = none ] || echo "$FAST" | tr ' ' ':'; }
runs() { # stage function
    quantize
    for sn in $(samplers); do
        for p in fp32 bf16 w8a8; do "$1" "$p" "${sn%%:*}" "${sn#*:}"; done
    done
}

report() {
    docs=${DOCS:-docs}
    f="$docs/precision-table.md"
    {
        echo "# What bf16 and W8A8 cost in quality: Fashion-MNIST default models"
        echo
        echo "Made by \`scripts/precision_table.sh\` ($(date -u +%Y-%m-%d), BEST_N=$BEST_N). EDS with the ECT"
        echo "classifier at scale $EDS_SCALE (the guidance table's best DDIM-25 scale), target classes cycling 0..9, sample i"
        echo "with seed 1000+i in every cell, so the cells differ only in arithmetic. Scores by \`ddpm-eval\` in the"
        echo "evaluator's feature space against the Fashion-MNIST test set (compare rows with each other). The slices"
        echo "column: mean ± sd of the FIDs of $QUARTERS disjoint slices of $((BEST_N / QUARTERS)), the sampling noise of a"
        echo "slice (that of the whole cell is about half of it). Seconds per sample: $TIME_N samples of the cell's settings"
        echo "timed alone ($T threads, batch 50, model loading included)."
        echo
        echo "- **fp32**: the reference arithmetic."
        echo "- **bf16**: \`--precision bf16\`: the convolutions' GEMMs, the attention products and the classifier's input"
        echo "  gradient on bf16 inputs with fp32 accumulation; everything else fp32."
        echo "- **W8A8**: \`ddpm-quantize -m $UNET -c $ECT\` (1024 NDTC calibration inputs, L_2.4 range search;"
        [ -f "$OUT/quantize_seconds" ] && echo "  $(cat "$OUT/quantize_seconds") s for both models on this machine)."
        [ -f "$OUT/quantize_seconds" ] || echo "  default settings)."
        echo "  Int8 in both models: every conv and attention qkv / proj_out but the first conv and the output head;"
        echo "  the attention products, norms and embeddings float; the classifier's gradient fp32 on the dequantized"
        echo "  weights."
        echo
        echo "| sampler | precision | FID | ΔFID vs fp32 | precision (k-NN) | recall | accuracy | slices: FID mean ± sd | s / sample |"
        echo "|---|---|---|---|---|---|---|---|---|"
        for sn in $(samplers); do
            set -- "${sn%%:*}" "${sn#*:}"
            base="$OUT/fp32-$1-$2-$BEST_N.json"
            for p in fp32 bf16 w8a8; do
                j="$OUT/$p-$1-$2-$BEST_N.json"
                [ -s "$j" ] || continue
                d=""
                [ -s "$base" ] && d=$(awk "BEGIN { printf \"%+.1f %%\", 100 * ($(field "$j" fid) / $(field "$base" fid) - 1) }")
                sp=$(slice_spread "$p-$1-$2-$BEST_N" "$BEST_N" | awk '{ printf "%s ± %s", $1, $2 }')
                printf '| %s %s | %s | %.3f | %s | %.3f | %.3f | %.3f | %s | %s |\n' "$1" "$2" "$p" "$(field "$j" fid)" "$d" \
                    "$(field "$j" precision)" "$(field "$j" recall)" "$(field "$j" accuracy)" "$sp" \
                    "$(cat "$OUT/$p-$1-$2-$BEST_N.seconds" 2>/dev/null)"
            done
        done
    } >"$f.tmp"
    mv "$f.tmp" "$f"
    echo "wrote $f" >&2
}

case $STAGE in
    sample) runs cell ;;
    time) runs timing ;;
    report) report ;;
    all) runs cell; runs timing; report ;;
esac
