#!/bin/sh
# FID and accuracy against the number of model evaluations (NFE) for the fast solvers on the default
# Fashion-MNIST models:
#   solver {ddim, dpm++2m, dpm++3m, unipc} x guidance {none, EDS (ECT classifier), classifier-free}
#   x NFE {5 8 10 15 20 25 50}, N samples per cell (N_MID at NFE 10 and 20), and DDPM-250 per guidance
#   as the reference line (DDPM_N samples).
# Guidance scales are the guidance table's best DDIM-25 scales (docs/guidance-table.md: EDS-ECT 1,
# CFG 1.5); set EDS_SCALE / CFG_SCALE to change them. Sample i has seed 1000+i and class i mod 10 in
# every cell. Scores by ddpm-eval (evaluator space, as the guidance table); the FID spread over
# QUARTERS disjoint slices of each N_MID cell says how much of a difference is sampling noise.
# Every cell is cached in $OUT (default runs/solvers) in parts of PART samples: rerunning resumes.
#   scripts/solver_table.sh [sample|eval|report|all]   (default all)
# Sizes: N (1000), N_MID (2000), DDPM_N (2000), NFES, SOLVERS, GUIDES, PART (500), THREADS (all
# cores), QUARTERS (4), OUT, DOCS. Writes $DOCS/solvers.md and, with gnuplot, the FID and accuracy
# plots $DOCS/images/solvers_{fid,accuracy}.png; with scripts/time_to_quality.sh's table, when it has run.
set -eu
cd "$(dirname "$0")/.."
. scripts/solver_cells.sh
PART=${PART:-500}
STAGE=${1:-all}
case $STAGE in sample | eval | report | all) ;; *) echo "solver_table.sh: unknown stage '$STAGE' (sample, eval, report, all)" >&2; exit 2 ;; esac
mkdir -p "$OUT/parts"
. scripts/table_lib.sh
[ -x "$BIN/ddpm-sample" ] && [ -x "$BIN/ddpm-eval" ] && [ -x "$BIN/ddpm-npz" ] || make
[ -f "$REF" ] || make ref

fail() {
    echo "solver_table.sh: $1 failed" >&2
    kill -TERM $$ 2>/dev/null
    exit 1
}



# one cell: parts of PART samples (each cached), merged, then scored; everything skipped when there.
cell() { # solver guide nfe
    n=$(cellsize "$1" "$3")
    name="$1-$2-$3-$n"
    if [ "$STAGE" != eval ] && [ ! -f "$OUT/$name.npz" ]; then
        first=0 inputs=""
        while [ "$first" -lt "$n" ]; do
            count=$((n - first))
            [ "$count" -gt "$PART" ] && count=$PART
            part="$OUT/parts/$1-$2-$3-$first+$count.npz"
            if [ ! -f "$part" ]; then
                echo "== sample $name: [$first, $((first + count)))" >&2
                # shellcheck disable=SC2046
                "$BIN/ddpm-sample" -q -t "$T" --seed 1000 --first-index "$first" -n "$count" -b 50 \
                    --class 0,1,2,3,4,5,6,7,8,9 --sampler "$1" --steps "$3" $(gflags "$2") \
                    --npz "$part" -o "${part%.npz}.png" || fail "sampling $name"
                rm -f "${part%.npz}.png" "${part%.npz}.png.json"
            fi
            inputs="$inputs $part"
            first=$((first + count))
        done
        # shellcheck disable=SC2086
        "$BIN/ddpm-npz" merge -o "$OUT/$name.npz" $inputs >/dev/null || fail "merging $name"
    fi
    if [ "$STAGE" != sample ] && [ -f "$OUT/$name.npz" ] && [ ! -s "$OUT/$name.json" ]; then
        "$BIN/ddpm-eval" -q -t "$T" --json --evaluator "$EVALUATOR" --ref "$REF" "$OUT/$name.npz" >"$OUT/$name.json.tmp" ||
            fail "scoring $name"
        mv "$OUT/$name.json.tmp" "$OUT/$name.json"
    fi
}

spread() { # name n -> "mean ± sd" of the FIDs of QUARTERS disjoint slices
    slice_spread "$1" "$2" | awk '{ printf "%s ± %s", $1, $2 }'
}

run_cells() {
    for g in $GUIDES; do
        cell ddpm "$g" 250
        for nfe in $NFES; do
            for s in $SOLVERS; do cell "$s" "$g" "$nfe"; done
        done
    done
}

report() {
    docs=${DOCS:-docs}
    mkdir -p "$docs/images"
    dat="$OUT/solvers.dat"
    : >"$dat"
    {
        echo "# Fast solvers: FID and accuracy against NFE, Fashion-MNIST default models"
        echo
        echo "Made by \`scripts/solver_table.sh\` ($(date -u +%Y-%m-%d); N=$N, N_MID=$N_MID at NFE 10 and 20, DDPM_N=$DDPM_N)."
        echo "Scores by \`ddpm-eval\` in the evaluator's feature space against the Fashion-MNIST test set (compare rows"
        echo "with each other). Guidance at the guidance table's best DDIM-25 scales: EDS with the ECT classifier s=$EDS_SCALE,"
        echo "classifier-free w=$CFG_SCALE. Solvers on their defaults (logSNR grid for 28x28, clipped x0, UniPC bh2 order 2)."
        echo "The spread column: mean ± sd of the FIDs of $QUARTERS disjoint slices of the cell."
        for g in $GUIDES; do
            echo
            echo "## guidance: $g"
            echo
            echo "| solver | NFE | FID | precision | recall | accuracy | samples | FID spread |"
            echo "|---|---|---|---|---|---|---|---|"
            for s in ddpm $SOLVERS; do
                list=$NFES
                [ "$s" = ddpm ] && list=250
                for nfe in $list; do
                    n=$(cellsize "$s" "$nfe")
                    f="$OUT/$s-$g-$nfe-$n.json"
                    [ -s "$f" ] || continue
                    sp=""
                    [ "$n" -ge $((QUARTERS * 2)) ] && [ "$n" != "$N" ] && sp=$(spread "$s-$g-$nfe-$n" "$n")
                    printf '| %s | %s | %.3f | %.3f | %.3f | %.3f | %s | %s |\n' "$s" "$nfe" "$(field "$f" fid)" \
                        "$(field "$f" precision)" "$(field "$f" recall)" "$(field "$f" accuracy)" "$n" "$sp"
                    echo "$g $s $nfe $(field "$f" fid) $(field "$f" accuracy)" >>"$dat"
                done
            done
        done
        if [ -s "$OUT/time_to_quality.md" ]; then
            echo
            cat "$OUT/time_to_quality.md"
        fi
    } >"$docs/solvers.md.tmp"
    mv "$docs/solvers.md.tmp" "$docs/solvers.md"
    echo "wrote $docs/solvers.md" >&2
    command -v gnuplot >/dev/null || { echo "solver_table.sh: no gnuplot, plots skipped" >&2; return 0; }
    for what in fid accuracy; do
        col=4
        [ "$what" = accuracy ] && col=5
        plot=""
        for g in $GUIDES; do
            for s in $SOLVERS; do
                plot="$plot${plot:+, }'$dat' using (strcol(1) eq '$g' && strcol(2) eq '$s' ? \$3 : 1/0):$col with linespoints title '$s, $g'"
            done
        done
        gnuplot -e "set terminal png size 900,600; set output '$docs/images/solvers_$what.png'; set logscale x; \
            set xlabel 'model evaluations (NFE)'; set ylabel '$what'; set key outside; plot $plot" ||
            echo "solver_table.sh: gnuplot failed for $what" >&2
    done
}

case $STAGE in
    sample | eval) run_cells ;;
    report) report ;;
    all) run_cells && report ;;
esac
