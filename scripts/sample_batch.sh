#!/bin/sh
# Generates N samples in resumable shards and merges them into one guided-diffusion .npz.
#
#   scripts/sample_batch.sh -n 50000 -d OUTDIR [--shard-size 1000] [--shard I/K] [--seed S] -- [ddpm-sample options]
#
# Shard j holds samples [j*size, (j+1)*size) and is written atomically to OUTDIR/shard_NNNNN.npz by
# ddpm-sample --first-index, so sample i always has seed S+i whatever the sharding: a killed run
# restarts at the first missing shard with nothing lost or duplicated. --shard I/K makes this
# process take shards j with j % K == I, so K processes (or machines sharing OUTDIR) split one run.
# When every shard exists, they are merged in order into OUTDIR/samples_<N>.npz.
set -eu
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}
N= DIR= SIZE=1000 SHARD=0/1 SEED=0
die() { echo "sample_batch.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N=$2; shift 2 ;;
        -d) DIR=$2; shift 2 ;;
        --shard-size) SIZE=$2; shift 2 ;;
        --shard) SHARD=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (ddpm-sample options go after --)" ;;
    esac
done
case "$N" in ''|*[!0-9]*) die "-n must be a positive integer" ;; esac
case "$SIZE" in ''|*[!0-9]*) die "--shard-size must be a positive integer" ;; esac
case "$SEED" in ''|*[!0-9]*) die "--seed must be a non-negative integer" ;; esac
[ "$N" -gt 0 ] && [ "$SIZE" -gt 0 ] || die "-n and --shard-size must be positive"
[ -n "$DIR" ] || die "-d OUTDIR is required"
I=${SHARD%/*} K=${SHARD#*/}
case "$I$K" in *[!0-9]*|'') die "--shard wants I/K" ;; esac
[ "$K" -gt 0 ] && [ "$I" -lt "$K" ] || die "--shard $SHARD: need 0 <= I < K"
for a in "$@"; do
    case "$a" in -n|--num-samples|--seed|--first-index|--npz|-o|--output|--rng) die "'$a' is set by the script" ;; esac
done
mkdir -p "$DIR"
SHARDS=$(( (N + SIZE - 1) / SIZE ))
j=$I
while [ "$j" -lt "$SHARDS" ]; do
    out=$(printf '%s/shard_%05d.npz' "$DIR" "$j")
    first=$((j * SIZE))
    count=$((N - first < SIZE ? N - first : SIZE))
    if [ -f "$out" ]; then
        echo "shard $j/$SHARDS: done" >&2
    else
        echo "shard $j/$SHARDS: samples $first..$((first + count - 1))" >&2
        "$BIN/ddpm-sample" "$@" -n "$count" --seed "$SEED" --first-index "$first" --npz "$out" \
            -o "${out%.npz}.png"
    fi
    j=$((j + K))
done
# Merge once every shard (from any process) is there.
missing=0 list=
j=0
while [ "$j" -lt "$SHARDS" ]; do
    f=$(printf '%s/shard_%05d.npz' "$DIR" "$j")
    if [ -f "$f" ]; then list="$list $f"; else missing=$((missing + 1)); fi
    j=$((j + 1))
done
if [ "$missing" -gt 0 ]; then
    echo "sample_batch.sh: $missing of $SHARDS shards still missing (other processes?); rerun to merge" >&2
    exit 0
fi
# shellcheck disable=SC2086
"$BIN/ddpm-npz" merge -o "$DIR/samples_$N.npz" $list
