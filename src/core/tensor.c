/* Contexts (and their first op error), tensor headers, dtype conversion and the thread setting. */
#include "core/gd_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

const char *gd_ctx_error(const gd_ctx *ctx) { return ctx ? ctx->err : "no context"; }

void gd_ctx_fail(gd_ctx *ctx, const char *fmt, ...) {
    if (!ctx || ctx->err[0]) return; /* keep the first: later ones are usually its consequences */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    for (char *p = ctx->err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

gd_ctx *gd_ctx_new(int max_tensors) {
    gd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->tensors = calloc((size_t)max_tensors, sizeof *ctx->tensors);
    if (!ctx->tensors) { free(ctx); return NULL; }
    ctx->cap = max_tensors;
    return ctx;
}

void gd_ctx_free(gd_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < ctx->n; i++) free(ctx->tensors[i].cache);
    free(ctx->tensors);
    free(ctx);
}

size_t gd_dtype_size(gd_dtype dt) {
    switch (dt) {
    case GD_F32: case GD_I32: return 4;
    case GD_F16: case GD_BF16: return 2;
    }
    return 4;
}

gd_tensor *gd_new_tensor(gd_ctx *ctx, gd_dtype dt, int ndim, const int64_t *ne) {
    if (ctx->n >= ctx->cap) {
        gd_ctx_fail(ctx, "the network is too large: more than %d tensors in one graph", ctx->cap);
        return NULL;
    }
    if (ndim < 1 || ndim > GD_MAX_DIMS) {
        gd_ctx_fail(ctx, "tensor rank %d out of range", ndim);
        return NULL;
    }
    gd_tensor *t = &ctx->tensors[ctx->n++];
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->ne[i] = ne[i];
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) { t->nb[i] = s; s *= ne[i]; }
    t->last_use = -1;
    return t;
}

gd_tensor *gd_new_4d(gd_ctx *ctx, gd_dtype dt, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    int64_t ne[4] = {n0, n1, n2, n3};
    return gd_new_tensor(ctx, dt, 4, ne);
}
gd_tensor *gd_new_2d(gd_ctx *ctx, gd_dtype dt, int64_t n0, int64_t n1) {
    int64_t ne[2] = {n0, n1};
    return gd_new_tensor(ctx, dt, 2, ne);
}
gd_tensor *gd_new_1d(gd_ctx *ctx, gd_dtype dt, int64_t n0) { return gd_new_tensor(ctx, dt, 1, &n0); }

void gd_set_name(gd_tensor *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
}

int64_t gd_nelements(const gd_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

int gd_is_contiguous(const gd_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->ne[i] != 1 && t->nb[i] != s) return 0;
        s *= t->ne[i];
    }
    return 1;
}

gd_tensor *gd_new_op(gd_ctx *ctx, gd_op op, int ndim, const int64_t *ne, gd_tensor *a, gd_tensor *b,
                     gd_tensor *c) {
    if (!ctx) return NULL;
    gd_tensor *t = gd_new_tensor(ctx, GD_F32, ndim, ne);
    if (!t) return NULL;
    t->op = op;
    t->src[0] = a;
    t->src[1] = b;
    t->src[2] = c;
    return t;
}

/* ---- half-precision conversion (round to nearest even, as torch's .half()/.bfloat16()) ---- */

float gd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t gd_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = 1u << (shift - 1), rest = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | r);
}

float gd_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t gd_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- threads ---- */

static int g_threads = 0;

void gd_set_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    /* OpenBLAS's OpenMP build follows omp_get_max_threads(), and runs single-threaded inside an
     * active parallel region. Every GEMM of ours is issued from inside one (see ops_conv.c), since
     * OpenBLAS's own threading changes per-element results with the thread count. */
    openblas_set_num_threads(n);
}

int gd_get_threads(void) {
    if (g_threads > 0) return g_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

double gd_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *gd_build_info(void) {
    static char buf[256];
    const char *simd =
#if defined(__AVX512F__)
        "AVX512";
#elif defined(__AVX2__)
        "AVX2";
#elif defined(__AVX__)
        "AVX";
#elif defined(__SSE2__)
        "SSE2";
#else
        "scalar";
#endif
    snprintf(buf, sizeof buf, "BLAS: %s; OpenMP: %s; SIMD (compiler): %s; threads: %d",
             openblas_get_config(),
#ifdef _OPENMP
             "yes",
#else
             "no",
#endif
             simd, gd_get_threads());
    return buf;
}
