/* The manifest scripts/sample_batch.sh keeps in each run folder (OUTDIR/manifest.txt), and the
 * check `ddpm-npz verify` makes of it before the shards are merged.
 *
 * One record a line; the first line is the magic, a value runs to the end of its line (so names
 * and arguments may hold spaces; none holds a newline):
 *   sample_batch.sh manifest 1
 *   n N                          samples in the run: [0, N)
 *   seed S                       base seed; sample i has seed S+i
 *   shard_size SIZE              samples per shard (the last may hold fewer)
 *   shards K                     how many shard lines follow
 *   arg A                        each ddpm-sample argument given after --, in order
 *   file SHA256 PATH             each model file those arguments name, by content
 *   shard FIRST COUNT SHA256 NAME  samples [FIRST, FIRST+COUNT) in NAME (relative to the manifest's
 *                                folder); SHA256 is '-' until the shard is written
 * ddpm-sample's record of each shard (NAME with .npz replaced by .png.json, from -o NAME.png) says
 * which first index, sample count and seed it was sampled with. */
#ifndef GD_NPZ_VERIFY_H
#define GD_NPZ_VERIFY_H
#include <stddef.h>

#define GD_BATCH_MANIFEST_MAGIC "sample_batch.sh manifest 1"

/* Checks the manifest at path: the shard ranges tile [0, N) exactly (in order, no gap, no
 * overlap, K of them), and every shard exists, has the recorded SHA-256, holds COUNT images and was
 * sampled from first index FIRST with COUNT samples and seed S (its .png.json record). Returns 0
 * with *n and *shards set (either may be NULL), or -1 with one line in err naming the line or the
 * shard at fault. */
int gd_batch_manifest_verify(const char *path, long long *n, long *shards, char *err, size_t errlen);
#endif
