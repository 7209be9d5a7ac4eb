/* The bottom layer: error formatting and atomic output files, shared by every layer above (the
 * I/O layer needs nothing of the tensor core for them).
 *
 * The library's one error convention: a call that can fail returns 0 / -1 (or a pointer / NULL)
 * and writes one line of text into the caller's `char *err, size_t errlen` (err may be NULL).
 * Nothing is kept in global or thread-local state, so two pipelines in one process never see
 * each other's messages, and a front end decides alone how a message reaches the user. */
#ifndef GD_UTIL_H
#define GD_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Formats into err (may be NULL) and folds it onto one line. */
void gd_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Atomic output files: gd_atomic_open creates "<path>.tmp.<pid>" (*tmp_out gets its malloc()ed
 * name); gd_atomic_commit with ok != 0 flushes, fsyncs, closes and renames it onto path, and with
 * ok == 0 (or when any of that fails) closes and removes it. So a failed or interrupted write
 * leaves nothing behind and never a half-written file under the final name. commit writes err
 * only when it detects the failure itself (ok != 0 on entry), frees tmp, returns 0 or -1. */
FILE *gd_atomic_open(const char *path, char **tmp_out, char *err, size_t errlen);
int gd_atomic_commit(FILE *f, char *tmp, const char *path, int ok, char *err, size_t errlen);

/* What a killed writer left beside path: removes "<path>.tmp.<pid>" (and "<path>.tmp.<pid>.tmp.<pid>",
 * a temporary of a temporary) whose process is gone (kill(pid, 0) fails with ESRCH). Only regular
 * files of this user are removed, never a name keep (may be NULL) returns nonzero for. With
 * glob != 0 the last component of path is an fnmatch(3) pattern ("DIR/sample_*.png"). Returns the
 * number of files removed. */
int gd_atomic_remove_stale(const char *path, int glob, int (*keep)(const char *path, void *ctx), void *ctx);

/* Maps a regular file read-only (the weight readers view tensors in place). Returns 0 with *map
 * and *len set, or -1 with err. An empty file gives *map = NULL, *len = 0 and succeeds, so callers
 * state their own minimum size; gd_unmap_file(NULL, 0) does nothing. */
int gd_map_file(const char *path, void **map, size_t *len, char *err, size_t errlen);
void gd_unmap_file(void *map, size_t len);

/* The k-th smallest of v[0..n) (0-based, Hoare selection), reordering v so that every element
 * after index k is >= it; allocates nothing. */
double gd_select_kth(double *v, int64_t n, int64_t k);

/* 1 when v[0, n) holds no NaN or Inf (src/util/finite.c). */
int gd_all_finite(const float *v, int64_t n);

/* Named deterministic values (src/util/rand_named.c): u = splitmix64(fnv1a64(name) + i * golden)
 * >> 40, times 2^-24, in [0, 1) and exact in float; fill writes float(lo + (hi - lo) u) for
 * i = 0..n-1. tests/reference/inception.py computes the same numbers. */
uint64_t gd_fnv1a64(const char *s);
double gd_rand_named_u(uint64_t name_hash, uint64_t i);
void gd_rand_named_fill(const char *name, float *dst, int64_t n, double lo, double hi);

/* SHA-256 (src/util/sha256.c): init, update any number of times, final gives the 32-byte digest;
 * gd_sha256_hex writes it as sha256sum prints it (64 lowercase hex digits and a NUL).
 * gd_sha256_file hashes a whole file: 0, or -1 with err when it cannot be opened or read. */
typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t fill;
} gd_sha256_ctx;
void gd_sha256_init(gd_sha256_ctx *c);
void gd_sha256_update(gd_sha256_ctx *c, const void *data, size_t n);
void gd_sha256_final(gd_sha256_ctx *c, uint8_t out[32]);
void gd_sha256_hex(const uint8_t digest[32], char hex[65]);
int gd_sha256_file(const char *path, char hex[65], char *err, size_t errlen);
#endif
