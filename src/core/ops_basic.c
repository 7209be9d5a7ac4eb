/* Element-wise, broadcast, layout and small reduction ops (forward and backward). */
#include "core/gd_internal.h"
#include "core/vmath.h"

#include <math.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#define PAR_MIN 32768 /* below this many elements, threads cost more than they save */

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            gd_ctx_fail(ctx, __VA_ARGS__);                                                         \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

/* ---- view / convert ---- */

gd_tensor *gd_reshape(gd_ctx *ctx, gd_tensor *x, int ndim, const int64_t *ne) {
    if (!x) return NULL;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= ne[i];
    REQUIRE(n == gd_nelements(x), "reshape of '%s': %lld elements into %lld", x->name, (long long)gd_nelements(x),
            (long long)n);
    REQUIRE(gd_is_contiguous(x), "reshape of non-contiguous '%s'", x->name);
    gd_tensor *t = gd_new_op(ctx, GD_OP_VIEW, ndim, ne, x, NULL, NULL);
    if (t) t->dtype = x->dtype;
    return t;
}

void gd_fwd_view(gd_tensor *t, float *work) { (void)t; (void)work; }
void gd_bwd_view(gd_tensor *t, float *work) { (void)t; (void)work; } /* grad shares the source's */

gd_tensor *gd_convert_f32(gd_ctx *ctx, gd_tensor *x) {
    if (!x || x->dtype == GD_F32) return x;
    REQUIRE(x->dtype == GD_F16 || x->dtype == GD_BF16, "'%s': only f16/bf16 convert to f32", x->name);
    gd_tensor *t = gd_new_op(ctx, GD_OP_CONVERT, x->ndim, x->ne, x, NULL, NULL);
    if (t) gd_set_name(t, "%s", x->name);
    return t;
}

/* Half-precision weights are widened every time their op runs (a released 256x256 model: 0.6G
 * values per sampling step), so this runs at memory speed: F16C's exact conversion 8 at a time,
 * and bf16 as a shift the compiler vectorises. */
void gd_fwd_convert(gd_tensor *t, float *work) {
    (void)work;
    const uint16_t *s = t->src[0]->data;
    float *d = F32(t);
    int64_t n = gd_nelements(t);
    if (t->src[0]->dtype == GD_BF16) {
        uint32_t *du = (uint32_t *)d;
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) du[i] = (uint32_t)s[i] << 16;
        return;
    }
#ifdef __F16C__
    int64_t nv = n / 8 * 8;
#pragma omp parallel for if (nv > PAR_MIN)
    for (int64_t i = 0; i < nv; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (int64_t i = nv; i < n; i++) d[i] = gd_f16_to_f32(s[i]);
#else
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) d[i] = gd_f16_to_f32(s[i]);
#endif
}

/* Half-precision leaves are storage, not trainable state: their gradient stops here. */
void gd_bwd_convert(gd_tensor *t, float *work) { (void)t; (void)work; }

/* ---- SiLU / scale ---- */

gd_tensor *gd_silu(gd_ctx *ctx, gd_tensor *x) {
    if (!x) return NULL;
    return gd_new_op(ctx, GD_OP_SILU, x->ndim, x->ne, x, NULL, NULL);
}

/* Element-wise loops run in blocks of EW_BLOCK elements (a multiple of 8), so each thread takes
 * whole vectors; an element's arithmetic never depends on the block it falls in. */
#define EW_BLOCK 4096

static void silu_fwd_range(const float *x, float *y, int64_t i0, int64_t i1) {
    int64_t i = i0;
#ifdef GD_VEXPF16
    const __m512 one16 = _mm512_set1_ps(1.0f);
    for (; i + 16 <= i1; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 e = gd_expf16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u))));
        _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(one16, e)));
    }
#endif
#ifdef GD_VEXPF
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = gd_expf8(_mm256_xor_ps(v, sign)); /* expf(-x) */
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
#endif
    for (; i < i1; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

void gd_fwd_silu(gd_tensor *t, float *work) {
    (void)work;
    const float *x = F32(t->src[0]);
    float *y = F32(t);
    int64_t n = gd_nelements(t), nb = (n + EW_BLOCK - 1) / EW_BLOCK;
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t b = 0; b < nb; b++) silu_fwd_range(x, y, b * EW_BLOCK, b * EW_BLOCK + EW_BLOCK < n ? b * EW_BLOCK + EW_BLOCK : n);
}

static void silu_bwd_range(const float *x, const float *dy, float *dx, int64_t i0, int64_t i1) {
    int64_t i = i0;
#ifdef GD_VEXPF16
    const __m512 one16 = _mm512_set1_ps(1.0f);
    for (; i + 16 <= i1; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 e = gd_expf16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u))));
        __m512 s = _mm512_div_ps(one16, _mm512_add_ps(one16, e));
        __m512 g = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(dy + i), s),
                                 _mm512_add_ps(one16, _mm512_mul_ps(v, _mm512_sub_ps(one16, s))));
        _mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_loadu_ps(dx + i), g));
    }
#endif
#ifdef GD_VEXPF
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, gd_expf8(_mm256_xor_ps(v, sign))));
        /* dy * s * (1 + x * (1 - s)), left to right as the scalar expression */
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + i), s),
                                 _mm256_add_ps(one, _mm256_mul_ps(v, _mm256_sub_ps(one, s))));
        _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), g));
    }
#endif
    for (; i < i1; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void gd_bwd_silu(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *a = t->src[0];
    if (!a->grad) return;
    int64_t n = gd_nelements(t), nb = (n + EW_BLOCK - 1) / EW_BLOCK;
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t b = 0; b < nb; b++)
        silu_bwd_range(F32(a), t->grad, a->grad, b * EW_BLOCK, b * EW_BLOCK + EW_BLOCK < n ? b * EW_BLOCK + EW_BLOCK : n);
}

gd_tensor *gd_scale(gd_ctx *ctx, gd_tensor *x, float s) {
    if (!x) return NULL;
    gd_tensor *t = gd_new_op(ctx, GD_OP_SCALE, x->ndim, x->ne, x, NULL, NULL);
    if (t) t->fp[0] = s;
    return t;
}

void gd_fwd_scale(gd_tensor *t, float *work) {
    (void)work;
    const float *x = F32(t->src[0]);
    float *y = F32(t), s = t->fp[0];
    int64_t n = gd_nelements(t);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s;
}

void gd_bwd_scale(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *a = t->src[0];
    if (!a->grad) return;
    int64_t n = gd_nelements(t);
    for (int64_t i = 0; i < n; i++) a->grad[i] += t->grad[i] * t->fp[0];
}

/* ---- broadcast add / mul (numpy rules: shapes aligned at the trailing dimension) ---- */

typedef struct {
    int64_t ne[4], bs[4]; /* a's shape padded to 4-D, b's strides with 0 on broadcast dims */
} bcast;

static int make_bcast(const gd_tensor *a, const gd_tensor *b, bcast *bc) {
    if (b->ndim > a->ndim) return -1;
    int64_t bne[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; i++) bc->ne[i] = 1;
    for (int i = 0; i < a->ndim; i++) bc->ne[4 - a->ndim + i] = a->ne[i];
    for (int i = 0; i < b->ndim; i++) bne[4 - b->ndim + i] = b->ne[i];
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
        if (bne[i] != 1 && bne[i] != bc->ne[i]) return -1;
        bc->bs[i] = bne[i] == 1 ? 0 : s;
        s *= bne[i];
    }
    return 0;
}

static gd_tensor *binary(gd_ctx *ctx, gd_op op, gd_tensor *a, gd_tensor *b) {
    if (!a || !b) return NULL;
    b = gd_convert_f32(ctx, b);
    bcast bc;
    REQUIRE(a->dtype == GD_F32 && make_bcast(a, b, &bc) == 0, "%s: shape of '%s' does not broadcast to '%s'",
            op == GD_OP_ADD ? "add" : "mul", b->name, a->name);
    return gd_new_op(ctx, op, a->ndim, a->ne, a, b, NULL);
}

gd_tensor *gd_add(gd_ctx *ctx, gd_tensor *a, gd_tensor *b) { return binary(ctx, GD_OP_ADD, a, b); }
gd_tensor *gd_mul(gd_ctx *ctx, gd_tensor *a, gd_tensor *b) { return binary(ctx, GD_OP_MUL, a, b); }

static void binary_fwd(gd_tensor *t, int mul) {
    const float *a = F32(t->src[0]), *b = F32(t->src[1]);
    float *y = F32(t);
    int64_t n = gd_nelements(t);
    if (gd_nelements(t->src[1]) == n) {
#pragma omp parallel for if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = mul ? a[i] * b[i] : a[i] + b[i];
        return;
    }
    bcast bc;
    make_bcast(t->src[0], t->src[1], &bc);
    int64_t outer = bc.ne[0] * bc.ne[1] * bc.ne[2], in = bc.ne[3];
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        int64_t i2 = o % bc.ne[2], i1 = (o / bc.ne[2]) % bc.ne[1], i0 = o / (bc.ne[2] * bc.ne[1]);
        const float *bb = b + i0 * bc.bs[0] + i1 * bc.bs[1] + i2 * bc.bs[2];
        const float *aa = a + o * in;
        float *yy = y + o * in;
        for (int64_t i = 0; i < in; i++) {
            float v = bb[i * bc.bs[3]];
            yy[i] = mul ? aa[i] * v : aa[i] + v;
        }
    }
}

static void binary_bwd(gd_tensor *t, int mul) {
    gd_tensor *A = t->src[0], *B = t->src[1];
    const float *dy = t->grad, *a = F32(A), *b = F32(B);
    int64_t n = gd_nelements(t);
    bcast bc;
    make_bcast(A, B, &bc);
    int64_t in = bc.ne[3], outer = n / (in ? in : 1);
    if (A->grad && gd_nelements(B) == n) {
#pragma omp parallel for if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) A->grad[i] += mul ? dy[i] * b[i] : dy[i];
    } else if (A->grad) {
#pragma omp parallel for if (n > PAR_MIN)
        for (int64_t o = 0; o < outer; o++) {
            int64_t i2 = o % bc.ne[2], i1 = (o / bc.ne[2]) % bc.ne[1], i0 = o / (bc.ne[2] * bc.ne[1]);
            const float *bb = b + i0 * bc.bs[0] + i1 * bc.bs[1] + i2 * bc.bs[2];
            for (int64_t i = 0; i < in; i++)
                A->grad[o * in + i] += mul ? dy[o * in + i] * bb[i * bc.bs[3]] : dy[o * in + i];
        }
    }
    if (B->grad && gd_nelements(B) == n) { /* no broadcast: element-wise, as for a */
#pragma omp parallel for if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) B->grad[i] += mul ? dy[i] * a[i] : dy[i];
    } else if (B->grad) {
        /* Reduction into b: serial, so the sum order (and result) does not depend on threads. */
        for (int64_t o = 0; o < outer; o++) {
            int64_t i2 = o % bc.ne[2], i1 = (o / bc.ne[2]) % bc.ne[1], i0 = o / (bc.ne[2] * bc.ne[1]);
            float *db = B->grad + i0 * bc.bs[0] + i1 * bc.bs[1] + i2 * bc.bs[2];
            for (int64_t i = 0; i < in; i++) db[i * bc.bs[3]] += mul ? dy[o * in + i] * a[o * in + i] : dy[o * in + i];
        }
    }
}

void gd_fwd_add(gd_tensor *t, float *work) { (void)work; binary_fwd(t, 0); }
void gd_bwd_add(gd_tensor *t, float *work) { (void)work; binary_bwd(t, 0); }
void gd_fwd_mul(gd_tensor *t, float *work) { (void)work; binary_fwd(t, 1); }
void gd_bwd_mul(gd_tensor *t, float *work) { (void)work; binary_bwd(t, 1); }

/* ---- FiLM: h * (1 + scale) + shift ---- */

gd_tensor *gd_scale_shift(gd_ctx *ctx, gd_tensor *h, gd_tensor *e) {
    if (!h || !e) return NULL;
    REQUIRE(h->ndim >= 2 && e->ndim == 2 && e->ne[0] == h->ne[0] && e->ne[1] == 2 * h->ne[1],
            "scale_shift: emb '%s' must be [N, 2C] for '%s'", e->name, h->name);
    return gd_new_op(ctx, GD_OP_SCALE_SHIFT, h->ndim, h->ne, h, e, NULL);
}

void gd_fwd_scale_shift(gd_tensor *t, float *work) {
    (void)work;
    const float *h = F32(t->src[0]), *e = F32(t->src[1]);
    float *y = F32(t);
    int64_t N = t->ne[0], C = t->ne[1], S = gd_nelements(t) / (N * C);
#pragma omp parallel for if (N * C * S > PAR_MIN)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t n = nc / C, c = nc % C;
        float sc = 1.0f + e[n * 2 * C + c], sh = e[n * 2 * C + C + c];
        for (int64_t s = 0; s < S; s++) y[nc * S + s] = h[nc * S + s] * sc + sh;
    }
}

void gd_bwd_scale_shift(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *H = t->src[0], *E = t->src[1];
    const float *h = F32(H), *e = F32(E), *dy = t->grad;
    int64_t N = t->ne[0], C = t->ne[1], S = gd_nelements(t) / (N * C);
    /* the scale and shift gradients in a fixed order (gd_dot_f64, gd_sum_f64) */
#pragma omp parallel for if (N * C * S > PAR_MIN)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t n = nc / C, c = nc % C;
        float sc = 1.0f + e[n * 2 * C + c];
        const float *g = dy + nc * S;
        if (H->grad) {
            float *hg = H->grad + nc * S;
            for (int64_t s = 0; s < S; s++) hg[s] += g[s] * sc;
        }
        if (E->grad) {
            E->grad[n * 2 * C + c] += (float)gd_dot_f64(g, h + nc * S, S);
            E->grad[n * 2 * C + C + c] += (float)gd_sum_f64(g, S);
        }
    }
}

/* ---- concat ---- */

gd_tensor *gd_concat(gd_ctx *ctx, gd_tensor *a, gd_tensor *b, int dim) {
    if (!a || !b) return NULL;
    REQUIRE(a->ndim == b->ndim && dim >= 0 && dim < a->ndim, "concat: rank mismatch '%s' / '%s'", a->name, b->name);
    int64_t ne[GD_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        REQUIRE(i == dim || a->ne[i] == b->ne[i], "concat: '%s' and '%s' differ in dim %d", a->name, b->name, i);
        ne[i] = a->ne[i] + (i == dim ? b->ne[i] : 0);
    }
    gd_tensor *t = gd_new_op(ctx, GD_OP_CONCAT, a->ndim, ne, a, b, NULL);
    if (t) t->ip[0] = dim;
    return t;
}

static void concat_sizes(const gd_tensor *t, int64_t *outer, int64_t *ia, int64_t *ib) {
    int d = t->ip[0];
    *outer = 1;
    for (int i = 0; i < d; i++) *outer *= t->ne[i];
    *ia = gd_nelements(t->src[0]) / *outer;
    *ib = gd_nelements(t->src[1]) / *outer;
}

void gd_fwd_concat(gd_tensor *t, float *work) {
    (void)work;
    int64_t outer, ia, ib;
    concat_sizes(t, &outer, &ia, &ib);
    const float *a = F32(t->src[0]), *b = F32(t->src[1]);
    float *y = F32(t);
    for (int64_t o = 0; o < outer; o++) {
        memcpy(y + o * (ia + ib), a + o * ia, sizeof(float) * (size_t)ia);
        memcpy(y + o * (ia + ib) + ia, b + o * ib, sizeof(float) * (size_t)ib);
    }
}

void gd_bwd_concat(gd_tensor *t, float *work) {
    (void)work;
    int64_t outer, ia, ib;
    concat_sizes(t, &outer, &ia, &ib);
    float *da = t->src[0]->grad, *db = t->src[1]->grad;
    for (int64_t o = 0; o < outer; o++) {
        const float *g = t->grad + o * (ia + ib);
        if (da)
            for (int64_t i = 0; i < ia; i++) da[o * ia + i] += g[i];
        if (db)
            for (int64_t i = 0; i < ib; i++) db[o * ib + i] += g[ia + i];
    }
}

/* ---- mean over trailing dims / select / gather ---- */

gd_tensor *gd_mean(gd_ctx *ctx, gd_tensor *x, int dim) {
    if (!x) return NULL;
    REQUIRE(dim >= 0 && dim < x->ndim, "mean: bad dim %d for '%s'", dim, x->name);
    int64_t ne[GD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ne[i] = i < dim ? x->ne[i] : 1;
    return gd_new_op(ctx, GD_OP_MEAN, x->ndim, ne, x, NULL, NULL);
}

void gd_fwd_mean(gd_tensor *t, float *work) {
    (void)work;
    int64_t outer = gd_nelements(t), in = gd_nelements(t->src[0]) / outer;
    const float *x = F32(t->src[0]);
    for (int64_t o = 0; o < outer; o++) {
        double s = 0;
        for (int64_t i = 0; i < in; i++) s += x[o * in + i];
        F32(t)[o] = (float)(s / (double)in);
    }
}

void gd_bwd_mean(gd_tensor *t, float *work) {
    (void)work;
    float *dx = t->src[0]->grad;
    if (!dx) return;
    int64_t outer = gd_nelements(t), in = gd_nelements(t->src[0]) / outer;
    for (int64_t o = 0; o < outer; o++) {
        float g = t->grad[o] / (float)in;
        for (int64_t i = 0; i < in; i++) dx[o * in + i] += g;
    }
}

gd_tensor *gd_select(gd_ctx *ctx, gd_tensor *x, int dim, int64_t index) {
    if (!x) return NULL;
    REQUIRE(x->ndim >= 2 && dim >= 0 && dim < x->ndim && index >= 0 && index < x->ne[dim],
            "select: index %lld of dim %d out of range for '%s'", (long long)index, dim, x->name);
    int64_t ne[GD_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != dim) ne[k++] = x->ne[i];
    gd_tensor *t = gd_new_op(ctx, GD_OP_SELECT, x->ndim - 1, ne, x, NULL, NULL);
    if (t) {
        t->ip[0] = dim;
        t->ip[1] = (int32_t)index;
    }
    return t;
}

static void select_sizes(const gd_tensor *t, int64_t *outer, int64_t *mid, int64_t *in) {
    const gd_tensor *x = t->src[0];
    *outer = *in = 1;
    for (int i = 0; i < t->ip[0]; i++) *outer *= x->ne[i];
    for (int i = t->ip[0] + 1; i < x->ndim; i++) *in *= x->ne[i];
    *mid = x->ne[t->ip[0]];
}

void gd_fwd_select(gd_tensor *t, float *work) {
    (void)work;
    int64_t outer, mid, in;
    select_sizes(t, &outer, &mid, &in);
    for (int64_t o = 0; o < outer; o++)
        memcpy(F32(t) + o * in, F32(t->src[0]) + (o * mid + t->ip[1]) * in, sizeof(float) * (size_t)in);
}

void gd_bwd_select(gd_tensor *t, float *work) {
    (void)work;
    float *dx = t->src[0]->grad;
    if (!dx) return;
    int64_t outer, mid, in;
    select_sizes(t, &outer, &mid, &in);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < in; i++) dx[(o * mid + t->ip[1]) * in + i] += t->grad[o * in + i];
}

gd_tensor *gd_gather(gd_ctx *ctx, gd_tensor *x, gd_tensor *idx) {
    if (!x || !idx) return NULL;
    REQUIRE(x->ndim == 2 && idx->ndim == 1 && idx->ne[0] == x->ne[0] && idx->dtype == GD_I32,
            "gather: need x [N,K] and i32 idx [N] ('%s', '%s')", x->name, idx->name);
    return gd_new_op(ctx, GD_OP_GATHER, 1, idx->ne, x, idx, NULL);
}

/* Out-of-range labels give NaN rather than reading outside x; front ends validate them first. */
void gd_fwd_gather(gd_tensor *t, float *work) {
    (void)work;
    const int32_t *idx = t->src[1]->data;
    int64_t K = t->src[0]->ne[1];
    for (int64_t n = 0; n < t->ne[0]; n++)
        F32(t)[n] = idx[n] >= 0 && idx[n] < K ? F32(t->src[0])[n * K + idx[n]] : NAN;
}

void gd_bwd_gather(gd_tensor *t, float *work) {
    (void)work;
    float *dx = t->src[0]->grad;
    if (!dx) return;
    const int32_t *idx = t->src[1]->data;
    int64_t K = t->src[0]->ne[1];
    for (int64_t n = 0; n < t->ne[0]; n++)
        if (idx[n] >= 0 && idx[n] < K) dx[n * K + idx[n]] += t->grad[n];
}

/* ---- softmax / log-softmax over the last dimension ---- */

static gd_tensor *softmax_op(gd_ctx *ctx, gd_tensor *x, gd_op op) {
    if (!x) return NULL;
    return gd_new_op(ctx, op, x->ndim, x->ne, x, NULL, NULL);
}
gd_tensor *gd_softmax(gd_ctx *ctx, gd_tensor *x) { return softmax_op(ctx, x, GD_OP_SOFTMAX); }
gd_tensor *gd_log_softmax(gd_ctx *ctx, gd_tensor *x) { return softmax_op(ctx, x, GD_OP_LOG_SOFTMAX); }

static void softmax_rows(gd_tensor *t, int log_out) {
    int64_t K = t->ne[t->ndim - 1], rows = gd_nelements(t) / K;
    const float *x = F32(t->src[0]);
    float *y = F32(t);
#pragma omp parallel for if (rows * K > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * K;
        float *yr = y + r * K;
        float m = xr[0];
        for (int64_t k = 1; k < K; k++) m = xr[k] > m ? xr[k] : m;
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += exp((double)xr[k] - m);
        if (log_out) {
            double ls = log(s);
            for (int64_t k = 0; k < K; k++) yr[k] = (float)((double)xr[k] - m - ls);
        } else {
            for (int64_t k = 0; k < K; k++) yr[k] = (float)(exp((double)xr[k] - m) / s);
        }
    }
}

double gd_logits_entropy(const float *z, int K, double *lse_out) {
    double m = z[0], s = 0, h = 0;
    for (int c = 1; c < K; c++) m = z[c] > m ? z[c] : m;
    for (int c = 0; c < K; c++) s += exp(z[c] - m);
    const double lse = m + log(s);
    for (int c = 0; c < K; c++) {
        double lp = z[c] - lse;
        h -= exp(lp) * lp;
    }
    if (lse_out) *lse_out = lse;
    return h;
}

void gd_fwd_softmax(gd_tensor *t, float *work) { (void)work; softmax_rows(t, 0); }
void gd_fwd_log_softmax(gd_tensor *t, float *work) { (void)work; softmax_rows(t, 1); }

void gd_bwd_softmax(gd_tensor *t, float *work) {
    (void)work;
    float *dx = t->src[0]->grad;
    if (!dx) return;
    int64_t K = t->ne[t->ndim - 1], rows = gd_nelements(t) / K;
    const float *y = F32(t), *dy = t->grad;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += (double)dy[r * K + k] * y[r * K + k];
        for (int64_t k = 0; k < K; k++) dx[r * K + k] += y[r * K + k] * (float)(dy[r * K + k] - s);
    }
}

void gd_bwd_log_softmax(gd_tensor *t, float *work) {
    (void)work;
    float *dx = t->src[0]->grad;
    if (!dx) return;
    int64_t K = t->ne[t->ndim - 1], rows = gd_nelements(t) / K;
    const float *y = F32(t), *dy = t->grad;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += dy[r * K + k];
        for (int64_t k = 0; k < K; k++) dx[r * K + k] += dy[r * K + k] - expf(y[r * K + k]) * (float)s;
    }
}

/* ---- sinusoidal timestep embedding ---- */

gd_tensor *gd_timestep_embedding(gd_ctx *ctx, gd_tensor *t, int dim, float max_period) {
    if (!t) return NULL;
    REQUIRE(t->ndim == 1 && t->dtype == GD_F32 && dim >= 2, "timestep_embedding: t must be f32 [N]");
    int64_t ne[2] = {t->ne[0], dim};
    gd_tensor *y = gd_new_op(ctx, GD_OP_TIMESTEP_EMB, 2, ne, t, NULL, NULL);
    if (y) y->fp[0] = max_period;
    return y;
}

/* Frequencies as PyTorch computes them: exp(float(-ln P) * arange(half, f32) / half), all in f32. */
static float ts_freq(int i, int half, float max_period) {
    float c = (float)(-log((double)max_period));
    return expf(c * (float)i / (float)half);
}

void gd_fwd_timestep_emb(gd_tensor *t, float *work) {
    (void)work;
    int64_t N = t->ne[0], dim = t->ne[1];
    int half = (int)(dim / 2);
    const float *ts = F32(t->src[0]);
    for (int64_t n = 0; n < N; n++) {
        float *y = F32(t) + n * dim;
        for (int i = 0; i < half; i++) {
            float a = ts[n] * ts_freq(i, half, t->fp[0]);
            y[i] = cosf(a);
            y[half + i] = sinf(a);
        }
        if (dim % 2) y[dim - 1] = 0.0f;
    }
}

void gd_bwd_timestep_emb(gd_tensor *t, float *work) {
    (void)work;
    float *dt = t->src[0]->grad;
    if (!dt) return;
    int64_t N = t->ne[0], dim = t->ne[1];
    int half = (int)(dim / 2);
    const float *ts = F32(t->src[0]);
    for (int64_t n = 0; n < N; n++) {
        const float *g = t->grad + n * dim;
        double s = 0;
        for (int i = 0; i < half; i++) {
            float f = ts_freq(i, half, t->fp[0]), a = ts[n] * f;
            s += (double)g[i] * -sinf(a) * f + (double)g[half + i] * cosf(a) * f;
        }
        dt[n] += (float)s;
    }
}

/* ---- embedding lookup ---- */

gd_tensor *gd_embedding(gd_ctx *ctx, gd_tensor *w, gd_tensor *idx) {
    if (!w || !idx) return NULL;
    w = gd_convert_f32(ctx, w);
    REQUIRE(w && w->ndim == 2 && idx->ndim == 1 && idx->dtype == GD_I32, "embedding: need w [K,D] and i32 idx [N]");
    int64_t ne[2] = {idx->ne[0], w->ne[1]};
    return gd_new_op(ctx, GD_OP_EMBEDDING, 2, ne, w, idx, NULL);
}

void gd_fwd_embedding(gd_tensor *t, float *work) {
    (void)work;
    const int32_t *idx = t->src[1]->data;
    int64_t K = t->src[0]->ne[0], D = t->ne[1];
    for (int64_t n = 0; n < t->ne[0]; n++) {
        if (idx[n] >= 0 && idx[n] < K)
            memcpy(F32(t) + n * D, F32(t->src[0]) + idx[n] * D, sizeof(float) * (size_t)D);
        else
            for (int64_t d = 0; d < D; d++) F32(t)[n * D + d] = NAN;
    }
}

void gd_bwd_embedding(gd_tensor *t, float *work) {
    (void)work;
    float *dw = t->src[0]->grad;
    if (!dw) return;
    const int32_t *idx = t->src[1]->data;
    int64_t K = t->src[0]->ne[0], D = t->ne[1];
    for (int64_t n = 0; n < t->ne[0]; n++)
        if (idx[n] >= 0 && idx[n] < K)
            for (int64_t d = 0; d < D; d++) dw[idx[n] * D + d] += t->grad[n * D + d];
}
