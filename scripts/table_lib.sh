# Shared by scripts/guidance_table.sh and scripts/solver_table.sh (sourced; they set BIN, OUT, T,
# EVALUATOR, REF, QUARTERS and define fail).

field() { # file key -> number (the first, top-level occurrence; per_class repeats some keys)
    grep -o "\"$2\": [-0-9.e+]*" "$1" | head -1 | cut -d' ' -f2
}

# The FID spread of cell $OUT/NAME.npz of N samples: cut into QUARTERS disjoint slices, each scored
# alone (cached in $OUT/parts) -> "mean sd" of the slices' FIDs; nothing when there is no cell.
slice_spread() { # name n
    _name=$1 _size=$(($2 / QUARTERS)) _k=0
    [ "$QUARTERS" -ge 2 ] && [ "$_size" -ge 2 ] && [ -f "$OUT/$_name.npz" ] || return 0
    while [ $_k -lt "$QUARTERS" ]; do
        _q="$OUT/parts/$_name-slice-$((_k * _size))+$_size"
        if [ ! -s "$_q.json" ]; then
            "$BIN/ddpm-npz" slice -o "$_q.npz" --first $((_k * _size)) --count "$_size" "$OUT/$_name.npz" >/dev/null &&
                "$BIN/ddpm-eval" -q -t "$T" --no-pr --json --evaluator "$EVALUATOR" --ref "$REF" "$_q.npz" >"$_q.json.tmp" ||
                fail "scoring slice $_k of $_name"
            mv "$_q.json.tmp" "$_q.json"
            rm -f "$_q.npz"
        fi
        field "$_q.json" fid
        _k=$((_k + 1))
    done | awk '{ s += $1; ss += $1 * $1; n++ } END { if (n > 1) v = (ss - s * s / n) / (n - 1); printf "%.3f %.3f\n", s / n, sqrt(v > 0 ? v : 0) }'
}
