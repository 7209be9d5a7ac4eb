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

static void stats(const float *x, int64_t m, double eps, double *mean, double *rstd) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < m; i++) s += x[i];
    double mu = s / (double)m;
    for (int64_t i = 0; i < m; i++) {
        double d = x[i] - mu;
        ss += d * d;
    }
    *mean = mu;
    *rstd = 1.0 / sqrt(ss / (double)m + eps);
}

void gd_fwd_group_norm(gd_tensor *t, float *work) {
    (void)work;
    gn_geom g = geom(t);
    const float *x = F32(t->src[0]), *ga = F32(t->src[1]), *be = F32(t->src[2]);
    float *y = F32(t);
#pragma omp parallel for
    for (int64_t ng = 0; ng < g.N * g.G; ng++) {
        int64_t base = ng * g.CG * g.S, c0 = (ng % g.G) * g.CG;
        double mu, rs;
        stats(x + base, g.CG * g.S, t->fp[0], &mu, &rs);
        for (int64_t c = 0; c < g.CG; c++) {
            float a = (float)rs * ga[c0 + c], b = be[c0 + c] - (float)(mu * rs) * ga[c0 + c];
            const float *xc = x + base + c * g.S;
            float *yc = y + base + c * g.S;
            for (int64_t s = 0; s < g.S; s++) yc[s] = xc[s] * a + b;
        }
    }
}

void gd_bwd_group_norm(gd_tensor *t, float *work) {
    (void)work;
    gn_geom g = geom(t);
    gd_tensor *X = t->src[0], *Ga = t->src[1], *Be = t->src[2];
    const float *x = F32(X), *ga = F32(Ga), *dy = t->grad;
    int64_t m = g.CG * g.S;
    /* Parallel over groups: each owns its channels of dgamma/dbeta, so no two threads share a sum. */
#pragma omp parallel for
    for (int64_t gi = 0; gi < g.G; gi++) {
        for (int64_t n = 0; n < g.N; n++) {
            int64_t base = (n * g.G + gi) * m, c0 = gi * g.CG;
            double mu, rs, sg = 0, sgx = 0;
            stats(x + base, m, t->fp[0], &mu, &rs);
            for (int64_t c = 0; c < g.CG; c++) {
                double dga = 0, dbe = 0;
                for (int64_t s = 0; s < g.S; s++) {
                    int64_t i = base + c * g.S + s;
                    double xh = (x[i] - mu) * rs, d = dy[i];
                    dga += d * xh;
                    dbe += d;
                    sg += d * ga[c0 + c];
                    sgx += d * ga[c0 + c] * xh;
                }
                if (Ga->grad) Ga->grad[c0 + c] += (float)dga;
                if (Be->grad) Be->grad[c0 + c] += (float)dbe;
            }
            if (!X->grad) continue;
            double mg = sg / (double)m, mgx = sgx / (double)m;
            for (int64_t c = 0; c < g.CG; c++)
                for (int64_t s = 0; s < g.S; s++) {
                    int64_t i = base + c * g.S + s;
                    double xh = (x[i] - mu) * rs;
                    X->grad[i] += (float)(rs * ((double)dy[i] * ga[c0 + c] - mg - xh * mgx));
                }
        }
    }
}
