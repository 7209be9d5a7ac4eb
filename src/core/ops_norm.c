/* GroupNorm: statistics per (sample, group) over its channels and all positions, biased
 * variance, accumulated in double (PyTorch semantics, GroupNorm32 computes in fp32). */
#include "core/gd_internal.h"

#include <math.h>

gd_tensor *gd_group_norm(gd_ctx *ctx, gd_tensor *x, gd_tensor *gamma, gd_tensor *beta, int groups, float eps) {
    if (!x || !gamma || !beta) return NULL;
    gamma = gd_convert_f32(ctx, gamma);
    beta = gd_convert_f32(ctx, beta);
    if (!gamma || !beta) return NULL;
    if (x->ndim < 2 || groups < 1 || x->ne[1] % groups || gamma->ndim != 1 || gamma->ne[0] != x->ne[1] ||
        beta->ndim != 1 || beta->ne[0] != x->ne[1]) {
        gd_ctx_fail(ctx, "group_norm: '%s' with %lld channels, %d groups, weight '%s' [%lld]", x->name,
                    (long long)x->ne[1], groups, gamma->name, (long long)gamma->ne[0]);
        return NULL;
    }
    gd_tensor *t = gd_new_op(ctx, GD_OP_GROUP_NORM, x->ndim, x->ne, x, gamma, beta);
    if (t) {
        t->ip[0] = groups;
        t->fp[0] = eps;
    }
    return t;
}

typedef struct {
    int64_t N, C, G, CG, S;
} gn_geom;

static gn_geom geom(const gd_tensor *t) {
    gn_geom g = {t->ne[0], t->ne[1], t->ip[0], 0, gd_nelements(t) / (t->ne[0] * t->ne[1])};
    g.CG = g.C / g.G;
    return g;
}

/* Mean and 1/std of K groups of m values each, in double, every group summed in its own order
 * (first to last, as one sequential sum): the sums of different groups are interleaved only to
 * overlap their latencies, which leaves each result as the one-group loop computes it. */
#define GN_K 8

#ifdef __AVX512F__
#include <immintrin.h>
#define GN_AVX512 1
/* in[j][0..7] (8 floats of stream j at one offset) -> out[k] lane j = in[j][k], widened to double:
 * element k of all 8 streams, one vector per k */
static inline void transpose8(const float *const *in, int64_t off, __m512d out[8]) {
    __m256 r[8], t[8], u[8];
    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(in[j] + off);
    for (int j = 0; j < 8; j += 2) {
        t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 8; j += 4) {
        u[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
        u[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xee);
        u[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
        u[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xee);
    }
    /* u[0..3]: rows 0-3 columns {0,1,2,3 | 4,5,6,7} in halves; u[4..7]: rows 4-7 */
    for (int k = 0; k < 4; k++) {
        __m256 lo = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20), hi = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
        out[k] = _mm512_cvtps_pd(lo);
        out[k + 4] = _mm512_cvtps_pd(hi);
    }
}
#endif

static void stats_k(const float *const x[GN_K], int64_t m, double eps, double mean[GN_K], double rstd[GN_K]) {
    double s[GN_K] = {0}, ss[GN_K] = {0}, mu[GN_K];
    int64_t i = 0;
#ifdef GN_AVX512
    /* lanes = groups; the elements of a block go in one after the other */
    __m512d vs = _mm512_setzero_pd();
    for (; i + 8 <= m; i += 8) {
        __m512d c[8];
        transpose8(x, i, c);
        for (int k = 0; k < 8; k++) vs = _mm512_add_pd(vs, c[k]);
    }
    _mm512_storeu_pd(s, vs);
#endif
    for (int64_t i1 = i; i1 < m; i1++)
        for (int j = 0; j < GN_K; j++) s[j] += x[j][i1];
    for (int j = 0; j < GN_K; j++) mu[j] = s[j] / (double)m;
    i = 0;
#ifdef GN_AVX512
    __m512d vss = _mm512_setzero_pd(), vmu = _mm512_loadu_pd(mu);
    for (; i + 8 <= m; i += 8) {
        __m512d c[8];
        transpose8(x, i, c);
        for (int k = 0; k < 8; k++) {
            __m512d d = _mm512_sub_pd(c[k], vmu);
            vss = _mm512_add_pd(vss, _mm512_mul_pd(d, d));
        }
    }
    _mm512_storeu_pd(ss, vss);
#endif
    for (int64_t i1 = i; i1 < m; i1++)
        for (int j = 0; j < GN_K; j++) {
            double d = x[j][i1] - mu[j];
            ss[j] += d * d;
        }
    for (int j = 0; j < GN_K; j++) {
        mean[j] = mu[j];
        rstd[j] = 1.0 / sqrt(ss[j] / (double)m + eps);
    }
}

void gd_fwd_group_norm(gd_tensor *t, float *work) {
    (void)work;
    gn_geom g = geom(t);
    const float *x = F32(t->src[0]), *ga = F32(t->src[1]), *be = F32(t->src[2]);
    float *y = F32(t);
    int64_t m = g.CG * g.S, NG = g.N * g.G, nb = (NG + GN_K - 1) / GN_K;
#pragma omp parallel for schedule(dynamic) if (NG * m > 32768)
    for (int64_t blk = 0; blk < nb; blk++) {
        const float *xs[GN_K];
        double mu[GN_K], rs[GN_K];
        for (int j = 0; j < GN_K; j++) { /* past the end: repeat the last group, results unused */
            int64_t ng = blk * GN_K + j < NG ? blk * GN_K + j : NG - 1;
            xs[j] = x + ng * m;
        }
        stats_k(xs, m, t->fp[0], mu, rs);
        for (int j = 0; j < GN_K && blk * GN_K + j < NG; j++) {
            int64_t ng = blk * GN_K + j, base = ng * m, c0 = (ng % g.G) * g.CG;
            for (int64_t c = 0; c < g.CG; c++) {
                float a = (float)rs[j] * ga[c0 + c], b = be[c0 + c] - (float)(mu[j] * rs[j]) * ga[c0 + c];
                const float *xc = x + base + c * g.S;
                float *yc = y + base + c * g.S;
                for (int64_t s = 0; s < g.S; s++) yc[s] = xc[s] * a + b;
            }
        }
    }
}

/* Backward scratch: the per-(sample, channel) dgamma and dbeta sums, in double, reduced over the
 * samples in sample order after the parallel sweep (so any thread count gives the same bits). */
size_t gd_work_group_norm(gd_tensor *t, int backward) {
    if (!backward) return 0;
    return (size_t)(2 * t->ne[0] * t->ne[1]) * (sizeof(double) / sizeof(float));
}

/* GN_K (sample, group) pairs at a time, flattened as the forward's blocks (lanes = pairs, so a
 * batch of one fills every lane): per channel the dgamma and dbeta sums, and the two sums the
 * input gradient needs, each summed in the one-pair loop's order. */
void gd_bwd_group_norm(gd_tensor *t, float *work) {
    gn_geom g = geom(t);
    gd_tensor *X = t->src[0], *Ga = t->src[1], *Be = t->src[2];
    const float *x = F32(X), *ga = F32(Ga), *dy = t->grad;
    int64_t m = g.CG * g.S, NG = g.N * g.G, nb = (NG + GN_K - 1) / GN_K;
    double *pga = (double *)work, *pbe = pga + g.N * g.C; /* [N][C] each */
#pragma omp parallel for schedule(dynamic)
    for (int64_t blk = 0; blk < nb; blk++) {
        int kb = NG - blk * GN_K < GN_K ? (int)(NG - blk * GN_K) : GN_K;
        const float *xs[GN_K], *ds[GN_K];
        int64_t c0[GN_K];
        double mu[GN_K], rs[GN_K], sg[GN_K] = {0}, sgx[GN_K] = {0};
        for (int j = 0; j < GN_K; j++) { /* lanes past kb repeat the last pair, unused */
            int64_t ng = blk * GN_K + (j < kb ? j : kb - 1);
            xs[j] = x + ng * m;
            ds[j] = dy + ng * m;
            c0[j] = (ng % g.G) * g.CG;
        }
        stats_k(xs, m, t->fp[0], mu, rs);
#ifdef GN_AVX512
        const __m512d vmu = _mm512_loadu_pd(mu), vrs = _mm512_loadu_pd(rs);
        __m512d vsg = _mm512_setzero_pd(), vsgx = _mm512_setzero_pd();
#endif
        for (int64_t c = 0; c < g.CG; c++) {
            double dga[GN_K] = {0}, dbe[GN_K] = {0}, gc[GN_K];
            for (int j = 0; j < GN_K; j++) gc[j] = ga[c0[j] + c];
            int64_t s = 0;
#ifdef GN_AVX512
            const __m512d vgc = _mm512_loadu_pd(gc);
            __m512d vdga = _mm512_setzero_pd(), vdbe = _mm512_setzero_pd();
            for (; s + 8 <= g.S; s += 8) {
                __m512d xv[8], dv[8];
                transpose8(xs, c * g.S + s, xv);
                transpose8(ds, c * g.S + s, dv);
                for (int k = 0; k < 8; k++) {
                    __m512d xh = _mm512_mul_pd(_mm512_sub_pd(xv[k], vmu), vrs), d = dv[k], dg = _mm512_mul_pd(d, vgc);
                    vdga = _mm512_add_pd(vdga, _mm512_mul_pd(d, xh));
                    vdbe = _mm512_add_pd(vdbe, d);
                    vsg = _mm512_add_pd(vsg, dg);
                    vsgx = _mm512_add_pd(vsgx, _mm512_mul_pd(dg, xh));
                }
            }
            _mm512_storeu_pd(dga, vdga);
            _mm512_storeu_pd(dbe, vdbe);
            if (s < g.S) {
                _mm512_storeu_pd(sg, vsg);
                _mm512_storeu_pd(sgx, vsgx);
            }
#endif
            for (int64_t s1 = s; s1 < g.S; s1++)
                for (int j = 0; j < GN_K; j++) {
                    int64_t i = c * g.S + s1;
                    double xh = (xs[j][i] - mu[j]) * rs[j], d = ds[j][i];
                    dga[j] += d * xh;
                    dbe[j] += d;
                    sg[j] += d * gc[j];
                    sgx[j] += d * gc[j] * xh;
                }
#ifdef GN_AVX512
            if (s < g.S) {
                vsg = _mm512_loadu_pd(sg);
                vsgx = _mm512_loadu_pd(sgx);
            }
#endif
            for (int j = 0; j < kb; j++) {
                int64_t n = (blk * GN_K + j) / g.G;
                pga[n * g.C + c0[j] + c] = dga[j];
                pbe[n * g.C + c0[j] + c] = dbe[j];
            }
        }
#ifdef GN_AVX512
        _mm512_storeu_pd(sg, vsg);
        _mm512_storeu_pd(sgx, vsgx);
#endif
        if (!X->grad) continue;
        for (int j = 0; j < kb; j++) {
            double mg = sg[j] / (double)m, mgx = sgx[j] / (double)m;
            const float *xj = xs[j], *dj = ds[j];
            float *gx = X->grad + (xs[j] - x);
            for (int64_t c = 0; c < g.CG; c++) {
                double gcj = ga[c0[j] + c];
                for (int64_t s = 0; s < g.S; s++) {
                    int64_t i = c * g.S + s;
                    double xh = (xj[i] - mu[j]) * rs[j];
                    gx[i] += (float)(rs[j] * ((double)dj[i] * gcj - mg - xh * mgx));
                }
            }
        }
    }
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t c = 0; c < g.C; c++) {
            if (Ga->grad) Ga->grad[c] += (float)pga[n * g.C + c];
            if (Be->grad) Be->grad[c] += (float)pbe[n * g.C + c];
        }
}
