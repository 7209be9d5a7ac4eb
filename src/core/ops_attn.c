/* Multi-head QKV attention over [N, 3C, T], both of ADM's channel orders. The attention matrix
 * is never stored: backward recomputes it per head, so a backward graph costs T*T floats of
 * scratch, not N*H*T*T of saved state. */
#include "core/gd_internal.h"
#include "core/gemm_bf16.h"
#include "core/vmath.h"

#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Heads (and samples) run in parallel, one single-threaded GEMM chain per thread: small token
 * counts (7x7, 14x14) give a threaded GEMM too little work. The plan reserves one scratch slice
 * per thread it saw; compute never uses more threads than that. */
static int slices(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

gd_tensor *gd_attention(gd_ctx *ctx, gd_tensor *qkv, int heads, int new_order) {
    if (!qkv) return NULL;
    if (qkv->ndim != 3 || qkv->ne[1] % 3) {
        gd_ctx_fail(ctx, "attention: the input must be [N, 3C, T] (query, key and value channels)");
        return NULL;
    }
    if (heads < 1 || qkv->ne[1] % (3 * heads)) { /* configs are checked for this (gd_config_parse) */
        gd_ctx_fail(ctx, "attention: %lld channels do not split into %d heads", (long long)(qkv->ne[1] / 3), heads);
        return NULL;
    }
    int64_t ne[3] = {qkv->ne[0], qkv->ne[1] / 3, qkv->ne[2]};
    gd_tensor *t = gd_new_op(ctx, GD_OP_ATTENTION, 3, ne, qkv, NULL, NULL);
    if (t) {
        t->ip[0] = heads;
        t->ip[1] = new_order;
    }
    return t;
}

/* --precision bf16: both products on the bf16 kernel (q^T and v packed per head, w transposed
 * for the second), softmax in fp32; the backward likewise (head_bwd_bf16). Per-thread scratch
 * beyond the two T x T matrices: */
static size_t bf16_extra(int64_t T, int64_t d) {
    size_t wk = gd_bf16_work_size(T, d) > gd_bf16_work_size(T, T) ? gd_bf16_work_size(T, d) : gd_bf16_work_size(T, T);
    return (gd_bf16_packed_size(T, d) + gd_bf16_packed_size(d, T) + wk + 3) / 2 + 16;
}

static size_t slice_floats(const gd_tensor *t) {
    size_t T = (size_t)t->ne[2];
    return 2 * T * T + ((t->flags & GD_FLAG_PLANNED_BF16) ? bf16_extra(t->ne[2], t->ne[1] / t->ip[0]) : 0);
}

size_t gd_work_attention(gd_tensor *t, int backward) {
    (void)backward;
    t->ip[2] = slices(); /* the thread count this scratch is sized for */
    t->flags &= ~GD_FLAG_PLANNED_BF16;
    if (gd_get_precision() == GD_PRECISION_BF16) t->flags |= GD_FLAG_PLANNED_BF16;
    return (size_t)t->ip[2] * slice_floats(t);
}

double gd_flops_attention(const gd_tensor *t) {
    /* q.k and w.v: 2 * (2 * C * T * T) per sample */
    return 4.0 * (double)t->ne[0] * (double)t->ne[1] * (double)t->ne[2] * (double)t->ne[2];
}

typedef struct {
    int64_t N, C, T, H, d;
    float s2; /* (d^-1/4)^2 applied to q.k */
} attn_geom;

static attn_geom geom(const gd_tensor *t) {
    attn_geom g = {t->ne[0], t->ne[1], t->ne[2], t->ip[0], t->ne[1] / t->ip[0], 0};
    float s = 1.0f / sqrtf(sqrtf((float)g.d));
    g.s2 = s * s;
    return g;
}

/* Offsets (in channels) of q, k, v of head h inside the 3C block. */
static void qkv_offsets(const attn_geom *g, int new_order, int64_t h, int64_t off[3]) {
    for (int p = 0; p < 3; p++)
        off[p] = new_order ? p * g->C + h * g->d : h * 3 * g->d + p * g->d;
}

/* softmax of each row of the T x T scores, in place */
static void softmax_rows(float *w, int64_t T) {
    for (int64_t r = 0; r < T; r++) {
        float *row = w + r * T, m = row[0];
        for (int64_t s = 1; s < T; s++)
            m = row[s] > m ? row[s] : m;
        for (int64_t s = 0; s < T; s++) row[s] -= m;
        gd_expf_n(row, row, T); /* the bits of expf, 16 at a time */
        float sum = 0;
        for (int64_t s = 0; s < T; s++) sum += row[s];
        float inv = 1.0f / sum;
        for (int64_t s = 0; s < T; s++)
            row[s] *= inv;
    }
}

/* w = softmax_s(s2 * q^T k) for one head; rows of w are queries. */
static void attn_weights(const attn_geom *g, const float *q, const float *k, float *w) {
    int T = (int)g->T, d = (int)g->d;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, T, d, g->s2, q, T, k, T, 0.0f, w, T);
    softmax_rows(w, g->T);
}

/* Never fewer than the planned team, even with one head to run: inside an active parallel region
 * OpenBLAS stays single-threaded, so results do not depend on the thread count. */
static int nthreads(const gd_tensor *t) { return slices() < t->ip[2] ? slices() : t->ip[2]; }

/* This thread's scratch: w (T*T floats), then dw or, in bf16, w^T and the packed operands. */
static float *thread_slice(float *work, const gd_tensor *t) {
#ifdef _OPENMP
    return work + (size_t)omp_get_thread_num() * slice_floats(t);
#else
    (void)t;
    return work;
#endif
}

/* One head in bf16. Computed transposed, w^T = softmax over each column of s2 k^T q, so that
 * both GEMMs take their big operand (w^T) as the row-major B the kernel packs vectorised and no
 * T x T matrix is ever transposed (a first version transposed w: slower than fp32). The column
 * softmax runs row by row over w^T, each column's max and sum in the same s order as the fp32
 * rows. Then a = v w^T. */
static void head_bf16(const attn_geom *g, const float *q, const float *k, const float *v, float *wt, float *a) {
    const int64_t T = g->T, d = g->d;
    float *mx = wt + T * T, *sum = mx + T;
    uint16_t *kp = (uint16_t *)(wt + 2 * T * T), *vp = kp + gd_bf16_packed_size(T, d), *bw = vp + gd_bf16_packed_size(d, T);
    gd_bf16_pack_at(k, T, T, d, kp);
    gd_gemm_bf16(T, T, d, kp, q, T, 0.0f, wt, T, bw);
    for (int64_t t = 0; t < T; t++) mx[t] = wt[t] * g->s2, sum[t] = 0;
    for (int64_t s = 0; s < T; s++) {
        float *row = wt + s * T;
        for (int64_t t = 0; t < T; t++) {
            row[t] *= g->s2; /* the fp32 path scales inside its GEMM */
            mx[t] = row[t] > mx[t] ? row[t] : mx[t];
        }
    }
    for (int64_t s = 0; s < T; s++) {
        float *row = wt + s * T;
        for (int64_t t = 0; t < T; t++) row[t] -= mx[t];
        gd_expf_n(row, row, T);
        for (int64_t t = 0; t < T; t++) sum[t] += row[t];
    }
    for (int64_t t = 0; t < T; t++) sum[t] = 1.0f / sum[t];
    for (int64_t s = 0; s < T; s++)
        for (int64_t t = 0; t < T; t++) wt[s * T + t] *= sum[t];
    gd_bf16_pack_a(v, T, d, T, vp);
    gd_gemm_bf16(d, T, T, vp, wt, T, 0.0f, a, T, bw);
}

void gd_fwd_attention(gd_tensor *t, float *work) {
    attn_geom g = geom(t);
    int T = (int)g.T, d = (int)g.d;
#pragma omp parallel for num_threads(nthreads(t)) schedule(dynamic)
    for (int64_t nh = 0; nh < g.N * g.H; nh++) {
        int64_t n = nh / g.H, h = nh % g.H, off[3];
        float *w = thread_slice(work, t);
        qkv_offsets(&g, t->ip[1], h, off);
        const float *base = F32(t->src[0]) + n * 3 * g.C * g.T;
        const float *q = base + off[0] * g.T, *k = base + off[1] * g.T, *v = base + off[2] * g.T;
        float *a = F32(t) + (n * g.C + h * g.d) * g.T;
        if (t->flags & GD_FLAG_PLANNED_BF16) {
            head_bf16(&g, q, k, v, w, a);
            continue;
        }
        attn_weights(&g, q, k, w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, T, T, 1.0f, v, T, w, T, 0.0f, a, T);
    }
}

/* The backward of one head in bf16: w recomputed untransposed (rows are queries, as fp32), so
 * that dv = da w and dk = q dl take w and dl as the kernel's row-major B. dq = k dl^T would need
 * dl transposed; it stays on fp32 sgemm, which reads the transpose for free. The softmax VJP and
 * the s2 scale (folded into dl) are fp32. Scratch as head_bf16: w, dw, then two packed operands. */
static void head_bwd_bf16(const attn_geom *g, const float *q, const float *k, const float *v, const float *da,
                          float *w, float *gq, float *gk, float *gv) {
    const int64_t T = g->T, d = g->d;
    float *dw = w + T * T;
    uint16_t *p1 = (uint16_t *)(w + 2 * T * T), *p2 = p1 + gd_bf16_packed_size(T, d), *bw = p2 + gd_bf16_packed_size(d, T);
    gd_bf16_pack_at(q, T, T, d, p1);
    gd_gemm_bf16(T, T, d, p1, k, T, 0.0f, w, T, bw);
    for (int64_t i = 0; i < T * T; i++) w[i] *= g->s2; /* the fp32 path scales inside its GEMM */
    softmax_rows(w, T);
    gd_bf16_pack_a(da, T, d, T, p2);
    gd_gemm_bf16(d, T, T, p2, w, T, 1.0f, gv, T, bw);
    gd_bf16_pack_at(da, T, T, d, p1);
    gd_gemm_bf16(T, T, d, p1, v, T, 0.0f, dw, T, bw);
    for (int64_t r = 0; r < T; r++) {
        float *wr = w + r * T, *dr = dw + r * T;
        float s = (float)gd_dot_f64(dr, wr, T);
        for (int64_t c = 0; c < T; c++) dr[c] = g->s2 * (wr[c] * (dr[c] - s));
    }
    gd_bf16_pack_a(q, T, d, T, p2);
    gd_gemm_bf16(d, T, T, p2, dw, T, 1.0f, gk, T, bw);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d, (int)T, (int)T, 1.0f, k, (int)T, dw, (int)T, 1.0f, gq, (int)T);
}

void gd_bwd_attention(gd_tensor *t, float *work) {
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    attn_geom g = geom(t);
    int T = (int)g.T, d = (int)g.d;
#pragma omp parallel for num_threads(nthreads(t)) schedule(dynamic)
    for (int64_t nh = 0; nh < g.N * g.H; nh++) {
        int64_t n = nh / g.H, h = nh % g.H, off[3];
        float *w = thread_slice(work, t);
        float *dw = w + g.T * g.T;
        qkv_offsets(&g, t->ip[1], h, off);
        const float *base = F32(X) + n * 3 * g.C * g.T;
        float *gbase = X->grad + n * 3 * g.C * g.T;
        const float *q = base + off[0] * g.T, *k = base + off[1] * g.T, *v = base + off[2] * g.T;
        const float *da = t->grad + (n * g.C + h * g.d) * g.T;
        if (t->flags & GD_FLAG_PLANNED_BF16) {
            head_bwd_bf16(&g, q, k, v, da, w, gbase + off[0] * g.T, gbase + off[1] * g.T, gbase + off[2] * g.T);
            continue;
        }
        attn_weights(&g, q, k, w);
        /* dv = da . w ; dw = da^T . v */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, T, T, 1.0f, da, T, w, T, 1.0f, gbase + off[2] * g.T,
                    T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, T, d, 1.0f, da, T, v, T, 0.0f, dw, T);
        /* softmax VJP in place: dl = w * (dw - sum_s dw * w) */
        for (int64_t r = 0; r < g.T; r++) {
            float *wr = w + r * g.T, *dr = dw + r * g.T;
            double s = 0;
            for (int64_t c = 0; c < g.T; c++)
                s += (double)dr[c] * wr[c];
            for (int64_t c = 0; c < g.T; c++)
                dr[c] = wr[c] * (dr[c] - (float)s);
        }
        /* dq = s2 * k . dl^T ; dk = s2 * q . dl */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, T, T, g.s2, k, T, dw, T, 1.0f, gbase + off[0] * g.T, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, T, T, g.s2, q, T, dw, T, 1.0f, gbase + off[1] * g.T,
                    T);
    }
}
