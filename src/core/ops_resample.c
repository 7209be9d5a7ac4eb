/* Resampling: nearest 2x upsample, 2x2 average pool, bilinear resize (align_corners=False). */
#include "core/gd_internal.h"

#include <math.h>

static gd_tensor *resample_op(gd_ctx *ctx, gd_op op, gd_tensor *x, int64_t oh, int64_t ow, const char *what) {
    if (!x) return NULL;
    if (x->ndim != 4 || oh < 1 || ow < 1) {
        gd_ctx_fail(ctx, "%s: '%s' must be [N,C,H,W] with a non-empty result", what, x->name);
        return NULL;
    }
    int64_t ne[4] = {x->ne[0], x->ne[1], oh, ow};
    return gd_new_op(ctx, op, 4, ne, x, NULL, NULL);
}

gd_tensor *gd_upsample2x(gd_ctx *ctx, gd_tensor *x) {
    return x ? resample_op(ctx, GD_OP_UPSAMPLE2X, x, 2 * x->ne[2], 2 * x->ne[3], "upsample2x") : NULL;
}

/* AvgPool2d(2, 2) floors odd sizes, as PyTorch does. */
gd_tensor *gd_avgpool2x(gd_ctx *ctx, gd_tensor *x) {
    return x ? resample_op(ctx, GD_OP_AVGPOOL2X, x, x->ne[2] / 2, x->ne[3] / 2, "avgpool2x") : NULL;
}

gd_tensor *gd_bilinear(gd_ctx *ctx, gd_tensor *x, int64_t oh, int64_t ow) {
    return resample_op(ctx, GD_OP_BILINEAR, x, oh, ow, "bilinear");
}

void gd_fwd_upsample2x(gd_tensor *t, float *work) {
    (void)work;
    const gd_tensor *X = t->src[0];
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3];
    const float *x = F32(X);
    float *y = F32(t);
#pragma omp parallel for if (NC * H * W > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t iy = 0; iy < 2 * H; iy++)
            for (int64_t ix = 0; ix < 2 * W; ix++) y[(p * 2 * H + iy) * 2 * W + ix] = x[(p * H + iy / 2) * W + ix / 2];
}

void gd_bwd_upsample2x(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3];
#pragma omp parallel for if (NC * H * W > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                const float *g = t->grad + (p * 2 * H + 2 * y) * 2 * W + 2 * x;
                X->grad[(p * H + y) * W + x] += g[0] + g[1] + g[2 * W] + g[2 * W + 1];
            }
}

void gd_fwd_avgpool2x(gd_tensor *t, float *work) {
    (void)work;
    const gd_tensor *X = t->src[0];
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
    const float *x = F32(X);
    float *y = F32(t);
#pragma omp parallel for if (NC * H * W > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                const float *s = x + (p * H + 2 * oy) * W + 2 * ox;
                y[(p * OH + oy) * OW + ox] = (s[0] + s[1] + s[W] + s[W + 1]) * 0.25f;
            }
}

void gd_bwd_avgpool2x(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
#pragma omp parallel for if (NC * H * W > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                float g = t->grad[(p * OH + oy) * OW + ox] * 0.25f;
                float *d = X->grad + (p * H + 2 * oy) * W + 2 * ox;
                d[0] += g;
                d[1] += g;
                d[W] += g;
                d[W + 1] += g;
            }
}

/* PyTorch's source index for align_corners=False: (dst + 0.5) * in/out - 0.5, clamped at 0. */
static void bilinear_index(int64_t dst, int64_t in, int64_t out, int64_t *i0, int64_t *i1, float *lam) {
    float scale = (float)in / (float)out;
    float src = ((float)dst + 0.5f) * scale - 0.5f;
    if (src < 0) src = 0;
    *i0 = (int64_t)src;
    if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *lam = src - (float)*i0;
}

void gd_fwd_bilinear(gd_tensor *t, float *work) {
    (void)work;
    const gd_tensor *X = t->src[0];
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
    const float *x = F32(X);
    float *y = F32(t);
#pragma omp parallel for if (NC * OH * OW > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0, y1, x0, x1;
            float ly, lx;
            bilinear_index(oy, H, OH, &y0, &y1, &ly);
            for (int64_t ox = 0; ox < OW; ox++) {
                bilinear_index(ox, W, OW, &x0, &x1, &lx);
                const float *r0 = x + (p * H + y0) * W, *r1 = x + (p * H + y1) * W;
                y[(p * OH + oy) * OW + ox] = (1 - ly) * ((1 - lx) * r0[x0] + lx * r0[x1]) +
                                             ly * ((1 - lx) * r1[x0] + lx * r1[x1]);
            }
        }
}

void gd_bwd_bilinear(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
#pragma omp parallel for if (NC * OH * OW > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0, y1, x0, x1;
            float ly, lx;
            bilinear_index(oy, H, OH, &y0, &y1, &ly);
            for (int64_t ox = 0; ox < OW; ox++) {
                bilinear_index(ox, W, OW, &x0, &x1, &lx);
                float g = t->grad[(p * OH + oy) * OW + ox];
                float *r0 = X->grad + (p * H + y0) * W, *r1 = X->grad + (p * H + y1) * W;
                r0[x0] += (1 - ly) * (1 - lx) * g;
                r0[x1] += (1 - ly) * lx * g;
                r1[x0] += ly * (1 - lx) * g;
                r1[x1] += ly * lx * g;
            }
        }
}
