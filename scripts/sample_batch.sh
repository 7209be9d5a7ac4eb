#!/bin/sh
# Generates N samples in resumable shards and merges them into one guided-diffusion .npz.
#
#   scripts/sample_batch.sh -n N -d OUTDIR [--shard-size 1000] [--shard I/K] [--seed S] -- [ddpm-sample options]
#
# Shard j holds samples [j*size, (j+1)*size) and is written atomically to OUTDIR/shard_NNNNN.npz by
# ddpm-sample --first-index, so sample i always has seed S+i whatever the sharding: a killed run
# restarts at the first missing shard with nothing lost or duplicated. OUTDIR/manifest.txt records
# the run (N, seed, shard size, the options after --, the sha256 of the model files they name, each
# shard's range and, once written, its sha256; OUTDIR/shard_NNNNN.sha256 until the merge): a rerun
# with other settings is refused. --shard I/K makes this process take the shards j with j % K == I;
# without it I and K come from the launcher (SLURM_ARRAY_TASK_ID/_COUNT/_MIN, times the rank of
# OMPI_COMM_WORLD_RANK/_SIZE, PMI_RANK/_SIZE, RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS), and
# ddpm-sample's -t from its CPU allotment (SLURM_CPUS_PER_TASK, else nproc / ranks on the node)
# unless -t or OMP_NUM_THREADS is given. Whichever process finds every shard finished checks them
# (ddpm-npz verify OUTDIR/manifest.txt) and merges them into OUTDIR/samples_<N>.npz; concurrent
# merges write the same bytes and rename them into place. Paths are relative to the repository root.
set -eu
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}
case "$BIN" in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
MAGIC='sample_batch.sh manifest 1'
NL='
'
# Temporaries carry host and pid: processes on several machines may share OUTDIR.
TAG=$(uname -n 2>/dev/null || echo host).$$
TMPS=
trap 'for t in $TMPS; do rm -f -- "$DIR/$t"; done' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
die() { printf 'sample_batch.sh: %s' "$*" | tr '\n\r\t' '   ' >&2; echo >&2; exit 2; }

# canon VAR WHAT VALUE MAX: VAR=VALUE as plain digits in [0, MAX], compared as strings so no
# value overflows the shell's arithmetic; leading zeros go (sh would read 010 as octal).
canon() {
    case "$3" in ''|*[!0-9]*) die "$2 must be a non-negative integer, not '$3'" ;; esac
    _v=${3#"${3%%[!0]*}"}
    _v=${_v:-0}
    if [ ${#_v} -gt ${#4} ] || { [ ${#_v} -eq ${#4} ] && expr "x$_v" \> "x$4" >/dev/null; }; then
        die "$2 $3 is too large (at most $4)"
    fi
    eval "$1=\$_v"
}

N= DIR= SIZE=1000 SHARD= SEED=0
while [ $# -gt 0 ]; do
    case "$1" in
        -n|-d|--shard-size|--shard|--seed) [ $# -ge 2 ] || die "$1 needs a value" ;;
    esac
    case "$1" in
        -n) N=$2; shift 2 ;;
        -d) DIR=$2; shift 2 ;;
        --shard-size) SIZE=$2; shift 2 ;;
        --shard) SHARD=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$SELF"; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (ddpm-sample options go after --)" ;;
    esac
done
[ -n "$N" ] || die "-n N (the number of samples) is required"
[ -n "$DIR" ] || die "-d OUTDIR is required"
DIR=${DIR%"${DIR##*[!/]}"} # no trailing slashes in the names printed
DIR=${DIR:-/}
case "$DIR" in -*) DIR=./$DIR ;; esac # not an option to cd, mkdir or ln
canon N -n "$N" 2000000000       # ddpm-sample's --first-index range
canon SIZE --shard-size "$SIZE" 10000000
canon SEED --seed "$SEED" 18446744073709551615
[ "$N" -gt 0 ] || die "-n must be at least 1"
[ "$SIZE" -gt 0 ] || die "--shard-size must be at least 1"
SHARDS=$(( (N + SIZE - 1) / SIZE ))
# One merge takes every shard's name as an argument (about 24 bytes each, under ARG_MAX).
[ "$SHARDS" -le 50000 ] || die "-n $N --shard-size $SIZE makes $SHARDS shards, more than 50000; use a larger --shard-size"
for a in "$@"; do
    case "$a" in
        *"$NL"*) die "a ddpm-sample option holds a newline" ;;
        -n|--num-samples|--num-samples=*|--seed|--seed=*|--first-index|--first-index=*|--npz|--npz=*|-o|--output|--output=*|--rng|--rng=*)
            die "'$a' is set by the script (-n and --seed go before --)" ;;
    esac
done
[ -x "$BIN/ddpm-sample" ] && [ -x "$BIN/ddpm-npz" ] || die "no $BIN/ddpm-sample and ddpm-npz (run make, or set BUILD)"
if command -v sha256sum >/dev/null 2>&1; then SHA=sha256sum
elif command -v shasum >/dev/null 2>&1; then SHA='shasum -a 256'
else die "needs sha256sum (coreutils) or shasum"; fi
sha() { $SHA < "$1" | { read -r _h _; printf '%s' "$_h"; }; }

# ---- this process's shards: --shard, else the launcher's environment ----

# envint VAR NAME [HINT]: VAR=$NAME, which the launcher must have set to an integer
envint() {
    eval "_e=\${$2-}"
    case "$_e" in ''|*[!0-9]*) die "$2='$_e' from the launcher is not a non-negative integer${3-" (or give --shard I/K)"}" ;; esac
    canon "$1" "$2" "$_e" 1000000000
}

# A Slurm array (outer) of launcher ranks (inner): process AI*RK+RI of AK*RK. Among the ranks the
# innermost launcher wins: mpirun or torchrun started inside a Slurm step inherit its SLURM_PROCID.
from_env() {
    AI=0 AK=1 RI=0 RK=1 SRC=
    if [ -n "${SLURM_ARRAY_TASK_ID-}" ]; then
        [ -n "${SLURM_ARRAY_TASK_COUNT-}" ] || die "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (or give --shard I/K)"
        envint id SLURM_ARRAY_TASK_ID
        envint AK SLURM_ARRAY_TASK_COUNT
        min=0 step=1
        [ -z "${SLURM_ARRAY_TASK_MIN-}" ] || envint min SLURM_ARRAY_TASK_MIN
        [ -z "${SLURM_ARRAY_TASK_STEP-}" ] || envint step SLURM_ARRAY_TASK_STEP
        [ "$AK" -gt 0 ] && [ "$step" -gt 0 ] || die "SLURM_ARRAY_TASK_COUNT=$AK, SLURM_ARRAY_TASK_STEP=$step: need at least 1"
        if [ "$id" -lt "$min" ] || [ $(( (id - min) % step )) -ne 0 ] || [ $(( (id - min) / step )) -ge "$AK" ]; then
            die "SLURM_ARRAY_TASK_ID=$id is not one of the $AK tasks from SLURM_ARRAY_TASK_MIN=$min in steps of $step (submit --array=0-$((AK - 1)), or give --shard I/K)"
        fi
        AI=$(( (id - min) / step ))
        SRC="SLURM_ARRAY_TASK_ID=$id (task $AI of SLURM_ARRAY_TASK_COUNT=$AK)"
    fi
    for pair in OMPI_COMM_WORLD_RANK:OMPI_COMM_WORLD_SIZE PMI_RANK:PMI_SIZE RANK:WORLD_SIZE SLURM_PROCID:SLURM_NTASKS; do
        r=${pair%:*} s=${pair#*:}
        eval "rv=\${$r-} sv=\${$s-}"
        [ -n "$rv" ] && [ -n "$sv" ] || continue
        envint RI "$r"
        envint RK "$s"
        [ "$RK" -gt 0 ] || die "$s=0 from the launcher: need at least 1"
        [ "$RI" -lt "$RK" ] || die "$r=$RI is not below $s=$RK"
        SRC="${SRC:+$SRC times }$r=$RI of $s=$RK"
        break
    done
    [ -n "$SRC" ] || return 1
    I=$((AI * RK + RI)) K=$((AK * RK))
}

SRC=
if [ -n "$SHARD" ]; then
    case "$SHARD" in *[!0-9/]*|*/*/*|/*|*/) die "--shard wants I/K, not '$SHARD'" ;; */*) ;; *) die "--shard wants I/K, not '$SHARD'" ;; esac
    canon I "--shard's I" "${SHARD%%/*}" 1000000000
    canon K "--shard's K" "${SHARD#*/}" 1000000000
    [ "$K" -gt 0 ] && [ "$I" -lt "$K" ] || die "--shard $SHARD: need 0 <= I < K"
elif ! from_env; then
    I=0 K=1 SRC=
fi

# Threads: what the launcher gives this process, unless the user chose.
T= TSRC=
for a in "$@"; do case "$a" in -t|--threads|--threads=*) TSRC="$a after --" ;; esac; done
if [ -z "$TSRC" ] && [ -n "${OMP_NUM_THREADS-}" ]; then TSRC="OMP_NUM_THREADS=$OMP_NUM_THREADS"; fi
if [ -z "$TSRC" ] && [ -n "${SLURM_CPUS_PER_TASK-}" ]; then
    envint T SLURM_CPUS_PER_TASK " (or give -t N after --)"
    [ "$T" -gt 0 ] || die "SLURM_CPUS_PER_TASK=0 from the launcher: need at least 1"
    TSRC="SLURM_CPUS_PER_TASK"
elif [ -z "$TSRC" ]; then
    T=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
    canon T nproc "$T" 1000000
    TSRC="nproc=$T"
    for v in OMPI_COMM_WORLD_LOCAL_SIZE MPI_LOCALNRANKS LOCAL_WORLD_SIZE SLURM_NTASKS_PER_NODE; do
        eval "lv=\${$v-}"
        [ -n "$lv" ] || continue
        envint nloc "$v" " (or give -t N after --)"
        [ "$nloc" -gt 0 ] || die "$v=0 from the launcher: need at least 1"
        T=$((T / nloc))
        TSRC="$TSRC / $v=$nloc"
        break
    done
    [ "$T" -ge 1 ] || T=1
fi
[ -z "$T" ] || [ "$T" -le 1024 ] || T=1024 # ddpm-sample's limit
[ -z "$SRC" ] || echo "sample_batch.sh: --shard $I/$K from $SRC; threads: ${T:+-t $T from }$TSRC" >&2

# ---- the run folder and its manifest ----

[ ! -e "$DIR" ] || [ -d "$DIR" ] || die "-d '$DIR' is not a folder"
msg=$(mkdir -p -- "$DIR" 2>&1) || die "-d '$DIR': cannot create the folder (${msg##*: })"
M=$DIR/manifest.txt
NEW=.manifest.$TAG
TMPS="$NEW .samples_$N.$TAG.npz"
( : > "$DIR/$NEW" ) 2>/dev/null || die "-d '$DIR': cannot write there"
name_of() { _p=0000$1; [ ${#1} -ge 5 ] && _p=$1 || _p=${_p#"${_p%?????}"}; NAME=shard_$_p; }

# Every argument that names a file (PATH of PATH@LO:HI, V of --flag=V), and the default models
# ddpm-sample falls back on; one a line. Files are known by content: a retrained model has the
# same size, and a copy staged to each node's scratch a new mtime.
model_files() {
    _m= _c= _g= _prev=
    for a in "$@"; do
        case "$a" in -m|--model|--model=*|--preset|--preset=*|--base-npz|--base-npz=*) _m=1 ;; esac
        case "$a" in --classifier|--classifier=*|--preset|--preset=*) _c=1 ;; esac
        [ "$_prev" != --guidance ] || _g=$a
        case "$a" in --guidance=*) _g=${a#*=} ;; esac
        _v=${a#*=}
        for p in "$a" "${a%@*}" "$_v" "${_v%@*}"; do
            if [ -f "$p" ]; then printf '%s\n' "$p"; break; fi
        done
        _prev=$a
    done
    [ -n "$_m" ] || [ ! -f models/fashion_diffusion.safetensors ] || echo models/fashion_diffusion.safetensors
    case "$_g" in *classifier*|*entropy*) [ -n "$_c" ] || [ ! -f models/fashion_classifier_ce.safetensors ] || echo models/fashion_classifier_ce.safetensors ;; esac
}

write_header() {
    printf '%s\nn %s\nseed %s\nshard_size %s\nshards %s\n' "$MAGIC" "$N" "$SEED" "$SIZE" "$SHARDS"
    for a in "$@"; do printf 'arg %s\n' "$a"; done
    _files=$(model_files "$@" | awk '!seen[$0]++')
    while IFS= read -r p; do
        [ -n "$p" ] || continue
        [ -r "$p" ] || die "'$p' is not readable"
        _h=$(sha "$p")
        [ ${#_h} -eq 64 ] || die "cannot compute the sha256 of '$p'"
        printf 'file %s %s\n' "$_h" "$p"
    done <<EOF_FILES
$_files
EOF_FILES
    j=0
    while [ "$j" -lt "$SHARDS" ]; do
        name_of "$j"
        first=$((j * SIZE))
        printf 'shard %s %s - %s.npz\n' "$first" $((N - first < SIZE ? N - first : SIZE)) "$NAME"
        j=$((j + 1))
    done
}

# What a rerun must match: all but the shards' sha256 and the options that do not change the
# images (-t, -b, -q, -v; README: the same bytes whatever the batch size and threads).
IMAGE_ARGS='skip { skip = 0; next }
$0 == "-t" || $0 == "--threads" || $0 == "-b" || $0 == "--batch-size" { skip = 1; next }
/^--(threads|batch-size)=/ || $0 == "-q" || $0 == "--quiet" || $0 == "-v" || $0 == "--verbose" { next }
{ print }'
norm() { sed -e '/^arg /d' -e 's/^\(shard [0-9]* [0-9]*\) [0-9a-f]\{64\} /\1 - /' "$1"; sed -n 's/^arg //p' "$1" | awk "$IMAGE_ARGS"; }
val() { sed -n "s/^$1 //p" "$2"; }

# Names what differs between the run in DIR and this one, or returns.
check_manifest() {
    [ "$(sed -n 1p "$M")" = "$MAGIC" ] || die "'$M' is not a sample_batch.sh manifest; use another -d"
    [ "$(norm "$M")" != "$(norm "$DIR/$NEW")" ] || return 0
    hint="use another -d"
    ls "$DIR"/shard_*.sha256 >/dev/null 2>&1 || hint="no shard is finished there: delete '$M' to start over, or use another -d"
    for kf in n:-n seed:--seed shard_size:--shard-size; do
        old=$(val "${kf%%:*}" "$M") now=$(val "${kf%%:*}" "$DIR/$NEW")
        [ "$old" = "$now" ] || die "'$DIR' holds a run with ${kf#*:} $old, not $now: rerun it with ${kf#*:} $old, or $hint"
    done
    old=$(val arg "$M" | awk "$IMAGE_ARGS") now=$(val arg "$DIR/$NEW" | awk "$IMAGE_ARGS")
    [ "$old" = "$now" ] || die "'$DIR' holds a run with other ddpm-sample options: '$old' there, '$now' now; $hint"
    old=$( { val file "$M" | sed 's/^/old /'; val file "$DIR/$NEW" | sed 's/^/new /'; } | awk '
        { p = substr($0, length($1) + length($2) + 3) }
        $1 == "old" { was[p] = $2; next }
        !(p in was) { if (!said++) print "\"" p "\" was no input of the run there"; next }
        was[p] != $2 { if (!said++) print "\"" p "\" has changed since the run there began (sha256 " substr(was[p], 1, 12) "... then, " substr($2, 1, 12) "... now)" }
        { delete was[p] }
        END { for (p in was) if (!said++) print "\"" p "\", an input of the run there, is not one now" }')
    die "'$DIR' holds another run than this: ${old:-its manifest '$M' differs (edited?)}; $hint"
}

write_header "$@" > "$DIR/$NEW"
if ln -- "$DIR/$NEW" "$M" 2>/dev/null; then
    : # the first process here: its manifest is the run's
elif [ -f "$M" ]; then
    check_manifest
else
    mv -f -- "$DIR/$NEW" "$M" # no hard links on this file system
fi
rm -f -- "$DIR/$NEW"
[ -z "$T" ] || set -- "$@" -t "$T"

# ---- the shards: finished when both the .npz and its .sha256 are there ----

j=$I
while [ "$j" -lt "$SHARDS" ]; do
    name_of "$j"
    out=$DIR/$NAME.npz side=$DIR/$NAME.sha256
    first=$((j * SIZE))
    count=$((N - first < SIZE ? N - first : SIZE))
    if [ -f "$out" ] && [ -f "$side" ]; then
        echo "shard $j/$SHARDS: done" >&2
    else
        rm -f -- "$side"
        echo "shard $j/$SHARDS: samples $first..$((first + count - 1))" >&2
        "$BIN/ddpm-sample" "$@" -n "$count" --seed "$SEED" --first-index "$first" --npz "$out" -o "$DIR/$NAME.png"
        TMPS="$TMPS $NAME.sha256.$TAG"
        printf '%s  %s\n' "$(sha "$out")" "$NAME.npz" > "$side.$TAG"
        mv -f -- "$side.$TAG" "$side"
    fi
    j=$((j + K))
done

missing=0 j=0
while [ "$j" -lt "$SHARDS" ]; do
    name_of "$j"
    [ -f "$DIR/$NAME.npz" ] && [ -f "$DIR/$NAME.sha256" ] || missing=$((missing + 1))
    j=$((j + 1))
done
if [ "$missing" -gt 0 ]; then
    echo "sample_batch.sh: $missing of $SHARDS shards still missing (other processes?); rerun to merge" >&2
    exit 0
fi

# ---- every shard is there: record their sha256, verify, merge ----
# Concurrent mergers write the same manifest and the same merged bytes, each under its own
# temporary name, and rename them into place: either one's result is the whole result.

{
    grep -v '^shard ' "$M"
    j=0
    while [ "$j" -lt "$SHARDS" ]; do
        name_of "$j"
        h=
        read -r h _ < "$DIR/$NAME.sha256" || :
        case "$h" in *[!0-9a-f]*|'') h=bad ;; esac
        [ ${#h} -eq 64 ] || die "'$DIR/$NAME.sha256' holds no sha256; delete it and $NAME.npz, and rerun to sample that shard again"
        first=$((j * SIZE))
        printf 'shard %s %s %s %s.npz\n' "$first" $((N - first < SIZE ? N - first : SIZE)) "$h" "$NAME"
        j=$((j + 1))
    done
} > "$DIR/$NEW"
mv -f -- "$DIR/$NEW" "$M"
if ! msg=$("$BIN/ddpm-npz" verify "$M" 2>&1 >/dev/null); then
    die "not merging: ${msg#ddpm-npz: } (delete a bad shard's .npz and rerun to sample it again)"
fi
out=.samples_$N.$TAG.npz
msg=$(
    cd "$DIR"
    set -f
    IFS=$NL
    # shellcheck disable=SC2046
    set -- $(awk -v k="$SHARDS" 'BEGIN { for (j = 0; j < k; j++) printf "shard_%05d.npz\n", j }')
    "$BIN/ddpm-npz" merge -o "$out" "$@"
)
mv -f -- "$DIR/$out" "$DIR/samples_$N.npz"
echo "$DIR/samples_$N.npz${msg#"$out"} (the $SHARDS shards verified against $M)"
