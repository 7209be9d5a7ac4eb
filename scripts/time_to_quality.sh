#!/bin/sh
# Time to quality (the solver issue's item 6), from the cells scripts/solver_table.sh scored:
#   1. for each guidance and solver, the smallest NFE whose FID is within the noise of DDPM-250's:
#      FID <= FID(DDPM-250, same first n samples) + 2 sd, sd the DDPM cell's slice spread scaled
#      to n samples (sd_slice * sqrt(slice size / n));
#   2. seconds per sample of that setting on the default models (ddpm-sample, TIMED samples in
#      batches of 50, THREADS threads, median of ROUNDS runs), and of DDPM-250;
#   3. the same NFE on ADM-64 and ADM-256 with random weights, from ddpm-bench's per-pass medians:
#      seconds per sample = NFE x (U-Net forward + classifier forward and input gradient for EDS,
#      two U-Net rows for classifier-free guidance), batch 1, and the ratio to DDPM-250 (250 passes).
# Writes $OUT/time_to_quality.md, which solver_table.sh's report includes in docs/solvers.md.
#   scripts/time_to_quality.sh            (after solver_table.sh sample/eval)
# Sizes: OUT (runs/solvers), TIMED (100), ROUNDS (3), THREADS (all cores), ADM ("adm64 adm256"; empty: none),
# and solver_table.sh's N, N_MID, DDPM_N, NFES, SOLVERS, GUIDES, EDS_SCALE, CFG_SCALE, QUARTERS.
set -eu
cd "$(dirname "$0")/.."
. scripts/solver_cells.sh
TIMED=${TIMED:-100}
ROUNDS=${ROUNDS:-3}
ADM=${ADM-"adm64 adm256"}
[ "$#" -eq 0 ] || { echo "time_to_quality.sh: no arguments (sizes come from the environment)" >&2; exit 2; }
for v in TIMED ROUNDS N N_MID DDPM_N QUARTERS; do
    eval "x=\$$v"
    case $x in '' | *[!0-9]* | 0*) echo "time_to_quality.sh: $v must be a positive integer, not '$x'" >&2; exit 2 ;; esac
done
. scripts/table_lib.sh
[ -x "$BIN/ddpm-sample" ] && [ -x "$BIN/ddpm-eval" ] && [ -x "$BIN/ddpm-npz" ] && [ -x "$BIN/ddpm-bench" ] || make
mkdir -p "$OUT/parts" "$OUT/time"

# called inside command substitutions too: stop the whole script, not just the subshell
fail() {
    echo "time_to_quality.sh: $1 failed" >&2
    kill -TERM $$ 2>/dev/null
    exit 1
}



# FID of the first n samples of the DDPM-250 cell of guide g (the whole cell's when n is its size)
ddpm_fid() { # guide n
    name="ddpm-$1-250-$DDPM_N"
    if [ "$2" = "$DDPM_N" ]; then field "$OUT/$name.json" fid; return; fi
    q="$OUT/parts/$name-first-$2"
    if [ ! -s "$q.json" ]; then
        "$BIN/ddpm-npz" slice -o "$q.npz" --first 0 --count "$2" "$OUT/$name.npz" >/dev/null &&
            "$BIN/ddpm-eval" -q -t "$T" --no-pr --json --evaluator "$EVALUATOR" --ref "$REF" "$q.npz" >"$q.json.tmp" ||
            fail "scoring the first $2 samples of $name"
        mv "$q.json.tmp" "$q.json"
        rm -f "$q.npz"
    fi
    field "$q.json" fid
}

# median seconds per sample of one setting on the default models (cached)
per_sample() { # solver guide nfe
    f="$OUT/time/$1-$2-$3-$TIMED-t$T"
    if [ ! -s "$f" ]; then
        r=0
        while [ $r -lt "$ROUNDS" ]; do
            s=$(date +%s.%N)
            # shellcheck disable=SC2046
            "$BIN/ddpm-sample" -q -t "$T" --seed 1000 -n "$TIMED" -b 50 --class 0,1,2,3,4,5,6,7,8,9 --sampler "$1" \
                --steps "$3" $(gflags "$2") --npz "$OUT/time/scratch.npz" -o "$OUT/time/scratch.png" || fail "timing $1 $2 $3"
            e=$(date +%s.%N)
            awk "BEGIN { printf \"%.6f\\n\", ($e - $s) / $TIMED }"
            r=$((r + 1))
        done | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' >"$f.tmp"
        mv "$f.tmp" "$f"
        rm -f "$OUT/time/scratch.npz" "$OUT/time/scratch.png" "$OUT/time/scratch.png.json"
    fi
    cat "$f"
}

# median seconds of one ddpm-bench pass, batch 1 (cached)
pass() { # config mode
    f="$OUT/time/bench-$1-$2-t$T"
    if [ ! -s "$f" ]; then
        "$BIN/ddpm-bench" -c "configs/$1.json" --mode "$2" --batch 1 -t "$T" --repeat "$ROUNDS" | field_stdin median_s >"$f.tmp" ||
            fail "ddpm-bench $1 $2"
        mv "$f.tmp" "$f"
    fi
    cat "$f"
}
# seconds of one model evaluation of guide g on ADM config a
adm_pass() { # config guide
    case $2 in
        eds) awk "BEGIN { print $(pass "$1" unet) + $(pass "${1}_classifier" classifier) }" ;;
        cfg) awk "BEGIN { print 2 * $(pass "$1" unet) }" ;;
        *) pass "$1" unet ;;
    esac
}
field_stdin() { grep -o "\"$1\": [-0-9.e+]*" | head -1 | cut -d' ' -f2; }

md="$OUT/time_to_quality.md"
{
    echo "## Time to quality"
    echo
    echo "Made by \`scripts/time_to_quality.sh\` ($(date -u +%Y-%m-%d), $T threads, $(nproc) cores). For each solver, the smallest NFE"
    echo "whose FID is within the noise of DDPM-250's: FID <= FID(DDPM-250 on the same first n samples) + 2 sd, sd the"
    echo "DDPM-250 cell's slice spread scaled to n samples. Seconds per sample: ddpm-sample on the default models, $TIMED"
    echo "samples in batches of 50, median of $ROUNDS runs. ADM columns: that NFE times ddpm-bench's batch-1 pass (U-Net"
    echo "forward, plus the classifier's forward and input gradient for EDS, two U-Net rows for classifier-free"
    echo "guidance), random weights; DDPM-250 is 250 such passes."
    for g in $GUIDES; do
        dn="ddpm-$g-250-$DDPM_N"
        [ -s "$OUT/$dn.json" ] || continue
        sp=$(slice_spread "$dn" "$DDPM_N")
        sd=$(echo "$sp" | cut -d' ' -f2)
        d_s=$(per_sample ddpm "$g" 250)
        echo
        printf "### guidance: %s (DDPM-250: FID %.3f, slice sd %s over %s slices)\n" "$g" "$(field "$OUT/$dn.json" fid)" "$sd" "$QUARTERS"
        echo
        printf '| solver | NFE | FID | DDPM-250 FID, same n | bound | s/sample | vs DDPM-250 |'
        for a in $ADM; do printf ' %s s/sample | %s vs DDPM-250 |' "$a" "$a"; done
        echo
        printf '|---|---|---|---|---|---|---|'
        for a in $ADM; do printf -- '---|---|'; done
        echo
        for s in $SOLVERS; do
            hit=""
            for nfe in $NFES; do
                n=$(cellsize "$s" "$nfe")
                f="$OUT/$s-$g-$nfe-$n.json"
                [ -s "$f" ] || continue
                ref=$(ddpm_fid "$g" "$n")
                bound=$(awk "BEGIN { printf \"%.4f\", $ref + 2 * $sd * sqrt(($DDPM_N / $QUARTERS) / $n) }")
                if awk "BEGIN { exit !($(field "$f" fid) <= $bound) }"; then
                    hit="$nfe $n $(field "$f" fid) $ref $bound"
                    break
                fi
            done
            if [ -z "$hit" ]; then
                echo "| $s | none of $NFES scored | | | | | |"
                continue
            fi
            # shellcheck disable=SC2086
            set -- $hit
            ps=$(per_sample "$s" "$g" "$1")
            printf '| %s | %s | %.3f | %.3f | %.3f | %.4f | %.1fx faster |' "$s" "$1" "$3" "$4" "$5" "$ps" "$(awk "BEGIN { print $d_s / $ps }")"
            for a in $ADM; do
                p=$(adm_pass "$a" "$g")
                printf ' %.1f | %.1fx faster |' "$(awk "BEGIN { print $1 * $p }")" "$(awk "BEGIN { print 250 / $1 }")"
            done
            echo
        done
        printf '| ddpm | 250 | %.3f | | | %.4f | 1x |' "$(field "$OUT/$dn.json" fid)" "$d_s"
        for a in $ADM; do
            printf ' %.1f | 1x |' "$(awk "BEGIN { print 250 * $(adm_pass "$a" "$g") }")"
        done
        echo
    done
} >"$md.tmp"
mv "$md.tmp" "$md"
echo "wrote $md" >&2
