/* ReLU, k x k pooling (max, or average that excludes the padding) and cropping, as Inception needs
 * them. */
#include "core/gd_internal.h"

#include <float.h>
#include <string.h>

gd_tensor *gd_relu(gd_ctx *ctx, gd_tensor *x) {
    return x ? gd_new_op(ctx, GD_OP_RELU, x->ndim, x->ne, x, NULL, NULL) : NULL;
}

void gd_fwd_relu(gd_tensor *t, float *work) {
    (void)work;
    const float *x = F32(t->src[0]);
    float *y = F32(t);
    int64_t n = gd_nelements(t);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void gd_bwd_relu(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    const float *x = F32(X);
    int64_t n = gd_nelements(t);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        if (x[i] > 0.0f) X->grad[i] += t->grad[i];
}

gd_tensor *gd_pool2d(gd_ctx *ctx, gd_tensor *x, gd_pool kind, int k, int stride, int pad) {
    if (!x) return NULL;
    if (x->ndim != 4 || k < 1 || stride < 1 || pad < 0 || 2 * pad >= k + (k == 1) ||
        (kind != GD_POOL_MAX && kind != GD_POOL_AVG_EXCL_PAD)) {
        gd_ctx_fail(ctx, "pool2d: '%s' must be [N,C,H,W] with k >= 1, stride >= 1, 0 <= pad < k/2", x->name);
        return NULL;
    }
    if (x->ne[2] + 2 * pad < k || x->ne[3] + 2 * pad < k) {
        gd_ctx_fail(ctx, "pool2d: input '%s' smaller than the window", x->name);
        return NULL;
    }
    int64_t ne[4] = {x->ne[0], x->ne[1], (x->ne[2] + 2 * pad - k) / stride + 1, (x->ne[3] + 2 * pad - k) / stride + 1};
    gd_tensor *t = gd_new_op(ctx, GD_OP_POOL2D, 4, ne, x, NULL, NULL);
    if (t) {
        t->ip[0] = kind;
        t->ip[1] = k;
        t->ip[2] = stride;
        t->ip[3] = pad;
    }
    return t;
}

/* The window of output (oy, ox) clipped to the input: rows [y0, y1), columns [x0, x1). pad < k/2
 * keeps every window non-empty. */
typedef struct {
    int64_t y0, y1, x0, x1;
} window;

static window win(const gd_tensor *t, int64_t H, int64_t W, int64_t oy, int64_t ox) {
    int64_t k = t->ip[1], s = t->ip[2], p = t->ip[3];
    window w = {oy * s - p, oy * s - p + k, ox * s - p, ox * s - p + k};
    if (w.y0 < 0) w.y0 = 0;
    if (w.x0 < 0) w.x0 = 0;
    if (w.y1 > H) w.y1 = H;
    if (w.x1 > W) w.x1 = W;
    return w;
}

/* One output position the plain way: the window clipped, cells summed row by row, left to right. */
static float pool_at(const gd_tensor *t, const float *xp, int64_t H, int64_t W, int64_t oy, int64_t ox, int avg) {
    window w = win(t, H, W, oy, ox);
    if (avg) {
        /* TF's AvgPool SAME (PyTorch count_include_pad=False): divide by the cells inside */
        float s = 0.0f;
        for (int64_t iy = w.y0; iy < w.y1; iy++)
            for (int64_t ix = w.x0; ix < w.x1; ix++) s += xp[iy * W + ix];
        return s / (float)((w.y1 - w.y0) * (w.x1 - w.x0));
    }
    float r = -FLT_MAX;
    for (int64_t iy = w.y0; iy < w.y1; iy++)
        for (int64_t ix = w.x0; ix < w.x1; ix++)
            if (xp[iy * W + ix] > r) r = xp[iy * W + ix];
    return r;
}

/* Columns whose windows lie inside the row run as vectors across ox, each output accumulating its
 * cells in pool_at's order (row by row, left to right), so the bits are pool_at's; the few edge
 * columns take pool_at itself. This was 17 % of the Inception forward as a per-output loop. */
#define POOL_CHUNK 64
static void pool_row(const gd_tensor *t, const float *xp, int64_t H, int64_t W, int64_t OW, int64_t oy, int avg, float *y) {
    const int64_t k = t->ip[1], st = t->ip[2], pad = t->ip[3];
    int64_t lo = (pad + st - 1) / st, hi = W - k + pad >= 0 ? (W - k + pad) / st + 1 : 0; /* interior: [lo, hi) */
    if (hi > OW) hi = OW;
    if (lo > hi) lo = hi;
    for (int64_t ox = 0; ox < lo; ox++) y[ox] = pool_at(t, xp, H, W, oy, ox, avg);
    for (int64_t ox = hi; ox < OW; ox++) y[ox] = pool_at(t, xp, H, W, oy, ox, avg);
    window w = win(t, H, W, oy, lo);
    const float cells = (float)((w.y1 - w.y0) * k);
    for (int64_t c0 = lo; c0 < hi; c0 += POOL_CHUNK) {
        const int64_t n = hi - c0 < POOL_CHUNK ? hi - c0 : POOL_CHUNK;
        float acc[POOL_CHUNK];
        for (int64_t j = 0; j < n; j++) acc[j] = avg ? 0.0f : -FLT_MAX;
        for (int64_t iy = w.y0; iy < w.y1; iy++)
            for (int64_t kx = 0; kx < k; kx++) {
                const float *r = xp + iy * W + c0 * st - pad + kx;
                if (avg && st == 1) /* the unit stride spelled out, so that it vectorises */
                    for (int64_t j = 0; j < n; j++) acc[j] += r[j];
                else if (avg)
                    for (int64_t j = 0; j < n; j++) acc[j] += r[j * st];
                else if (st == 1)
                    for (int64_t j = 0; j < n; j++) acc[j] = r[j] > acc[j] ? r[j] : acc[j];
                else
                    for (int64_t j = 0; j < n; j++) acc[j] = r[j * st] > acc[j] ? r[j * st] : acc[j];
            }
        if (avg)
            for (int64_t j = 0; j < n; j++) y[c0 + j] = acc[j] / cells;
        else
            memcpy(y + c0, acc, sizeof(float) * (size_t)n);
    }
}

void gd_fwd_pool2d(gd_tensor *t, float *work) {
    (void)work;
    const gd_tensor *X = t->src[0];
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
    const float *x = F32(X);
    float *y = F32(t);
    int avg = t->ip[0] == GD_POOL_AVG_EXCL_PAD;
#pragma omp parallel for if (NC * OH * OW > 8192)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t oy = 0; oy < OH; oy++) pool_row(t, x + p * H * W, H, W, OW, oy, avg, y + (p * OH + oy) * OW);
}

/* Serial over the output positions of one plane (windows overlap), parallel over planes. Max pool
 * routes the gradient to the first maximum of the window, as PyTorch does. */
void gd_bwd_pool2d(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
    const float *x = F32(X);
    int avg = t->ip[0] == GD_POOL_AVG_EXCL_PAD;
#pragma omp parallel for if (NC * OH * OW > 8192)
    for (int64_t p = 0; p < NC; p++) {
        const float *xp = x + p * H * W;
        float *gx = X->grad + p * H * W;
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                window w = win(t, H, W, oy, ox);
                float g = t->grad[(p * OH + oy) * OW + ox];
                if (avg) {
                    g /= (float)((w.y1 - w.y0) * (w.x1 - w.x0));
                    for (int64_t iy = w.y0; iy < w.y1; iy++)
                        for (int64_t ix = w.x0; ix < w.x1; ix++) gx[iy * W + ix] += g;
                } else {
                    int64_t best = w.y0 * W + w.x0;
                    for (int64_t iy = w.y0; iy < w.y1; iy++)
                        for (int64_t ix = w.x0; ix < w.x1; ix++)
                            if (xp[iy * W + ix] > xp[best]) best = iy * W + ix;
                    gx[best] += g;
                }
            }
    }
}

gd_tensor *gd_crop2d(gd_ctx *ctx, gd_tensor *x, int top, int left, int64_t h, int64_t w) {
    if (!x) return NULL;
    if (x->ndim != 4 || top < 0 || left < 0 || h < 1 || w < 1 || top + h > x->ne[2] || left + w > x->ne[3]) {
        gd_ctx_fail(ctx, "crop2d: a %lldx%lld window at (%d, %d) does not fit in '%s'", (long long)h, (long long)w, top, left,
                    x->name);
        return NULL;
    }
    int64_t ne[4] = {x->ne[0], x->ne[1], h, w};
    gd_tensor *t = gd_new_op(ctx, GD_OP_CROP2D, 4, ne, x, NULL, NULL);
    if (t) t->ip[0] = top, t->ip[1] = left;
    return t;
}

void gd_fwd_crop2d(gd_tensor *t, float *work) {
    (void)work;
    const gd_tensor *X = t->src[0];
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
    const float *x = F32(X);
    float *y = F32(t);
#pragma omp parallel for if (NC * OH * OW > 65536)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t r = 0; r < OH; r++)
            memcpy(y + (p * OH + r) * OW, x + (p * H + r + t->ip[0]) * W + t->ip[1], sizeof(float) * (size_t)OW);
}

void gd_bwd_crop2d(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0];
    if (!X->grad) return;
    int64_t NC = t->ne[0] * t->ne[1], H = X->ne[2], W = X->ne[3], OH = t->ne[2], OW = t->ne[3];
#pragma omp parallel for if (NC * OH * OW > 65536)
    for (int64_t p = 0; p < NC; p++)
        for (int64_t r = 0; r < OH; r++)
            for (int64_t c = 0; c < OW; c++) X->grad[(p * H + r + t->ip[0]) * W + t->ip[1] + c] += t->grad[(p * OH + r) * OW + c];
}
