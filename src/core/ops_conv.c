/* conv2d (im2col + sgemm) and linear, forward and backward. sgemm is called from serial code
 * and threads itself; the copy loops around it use OpenMP. */
#include "core/gd_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            gd_ctx_fail(ctx, __VA_ARGS__);                                                         \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

/* GEMMs run as fixed-size tiles, one OpenBLAS call per tile, always from inside a parallel region
 * (so OpenBLAS itself stays single-threaded, even for a single tile): its per-element results
 * change with its thread count and with the matrix shape, so this is what makes a sample's image
 * independent of -t and of the batch it runs in (one GEMM per sample, tiles that depend only on
 * the layer's shape). */
#define TILE_M 64
#define TILE_N 512

/* C = op(A) op(B) + beta C, op = transpose when the flag is set; A is [M,K] (or [K,M]), B is
 * [K,N] (or [N,K]). */
void gd_sgemm_tiled(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    int64_t tm = (M + TILE_M - 1) / TILE_M, tn = (N + TILE_N - 1) / TILE_N;
#pragma omp parallel for schedule(dynamic)
    for (int64_t t = 0; t < tm * tn; t++) {
        int64_t m0 = t / tn * TILE_M, n0 = t % tn * TILE_N;
        int64_t mt = M - m0 < TILE_M ? M - m0 : TILE_M, nt = N - n0 < TILE_N ? N - n0 : TILE_N;
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)mt,
                    (int)nt, (int)K, 1.0f, trans_a ? A + m0 : A + m0 * lda, (int)lda, trans_b ? B + n0 * ldb : B + n0,
                    (int)ldb, beta, C + m0 * ldc + n0, (int)ldc);
    }
}

gd_tensor *gd_conv2d(gd_ctx *ctx, gd_tensor *x, gd_tensor *w, gd_tensor *b, int stride, int pad) {
    return gd_conv2d_ex(ctx, x, w, b, stride, pad, pad);
}

gd_tensor *gd_conv2d_ex(gd_ctx *ctx, gd_tensor *x, gd_tensor *w, gd_tensor *b, int stride, int pad_h, int pad_w) {
    if (!x || !w) return NULL;
    w = gd_convert_f32(ctx, w);
    b = gd_convert_f32(ctx, b);
    if (!w) return NULL;
    REQUIRE(x->ndim == 4 && w->ndim == 4 && w->ne[1] == x->ne[1] && stride >= 1 && pad_h >= 0 && pad_w >= 0,
            "conv2d: weight '%s' [%lld,%lld,%lld,%lld] does not fit input '%s' with %lld channels", w->name,
            (long long)w->ne[0], (long long)w->ne[1], (long long)w->ne[2], (long long)w->ne[3], x->name,
            (long long)x->ne[1]);
    REQUIRE(!b || (b->ndim == 1 && b->ne[0] == w->ne[0]), "conv2d: bias '%s' must be [%lld]", b ? b->name : "",
            (long long)w->ne[0]);
    int64_t oh = (x->ne[2] + 2 * pad_h - w->ne[2]) / stride + 1, ow = (x->ne[3] + 2 * pad_w - w->ne[3]) / stride + 1;
    REQUIRE(x->ne[2] + 2 * pad_h >= w->ne[2] && x->ne[3] + 2 * pad_w >= w->ne[3],
            "conv2d: input '%s' smaller than the kernel", x->name);
    int64_t ne[4] = {x->ne[0], w->ne[0], oh, ow};
    gd_tensor *t = gd_new_op(ctx, GD_OP_CONV2D, 4, ne, x, w, b);
    if (t) {
        t->ip[0] = stride;
        t->ip[1] = pad_h;
        t->ip[2] = pad_w;
    }
    return t;
}

/* KH x KW kernels (Inception's 1x7 and 7x1 among them) with per-axis padding PH, PW */
typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW, OHW, CKK, S, PH, PW;
} conv_geom;

static conv_geom geom(const gd_tensor *t) {
    const gd_tensor *x = t->src[0], *w = t->src[1];
    conv_geom g = {x->ne[0], x->ne[1], x->ne[2], x->ne[3], w->ne[0], w->ne[2], w->ne[3], t->ne[2], t->ne[3], 0, 0,
                   t->ip[0], t->ip[1], t->ip[2]};
    g.OHW = g.OH * g.OW;
    g.CKK = g.C * g.KH * g.KW;
    return g;
}

static int direct(const conv_geom *g) { return g->KH == 1 && g->KW == 1 && g->S == 1 && g->PH == 0 && g->PW == 0; }

/* 3x3 "same" convolutions (nearly all of ADM's FLOPs) go through Winograd F(2x2,3x3), forward
 * and input gradient; GD_NO_WINOGRAD=1 selects im2col + GEMM for comparison. */
static int winograd(const conv_geom *g) {
    static int off = -1;
    if (off < 0) off = getenv("GD_NO_WINOGRAD") != NULL;
    return !off && g->KH == 3 && g->KW == 3 && g->S == 1 && g->PH == 1 && g->PW == 1 && gd_winograd_worth(g->N, g->H, g->W);
}

size_t gd_work_conv2d(gd_tensor *t, int backward) {
    conv_geom g = geom(t);
    size_t w = direct(&g) ? 0 : (size_t)(g.CKK * g.OHW);
    if (winograd(&g)) {
        size_t wf = gd_winograd_work(g.N, g.C, g.O, g.H, g.W), wb = gd_winograd_work(g.N, g.O, g.C, g.H, g.W);
        if (!backward) return wf;
        if (wb > w) w = wb;
    }
    return w;
}

double gd_flops_conv2d(const gd_tensor *t) {
    conv_geom g = geom(t);
    return 2.0 * (double)g.N * (double)g.O * (double)g.OHW * (double)g.CKK;
}

/* col[(c*KH + ky)*KW + kx][oy*OW + ox] = x[c][oy*S - PH + ky][ox*S - PW + kx] for one sample */
static void im2col(const conv_geom *g, const float *x, float *col) {
#pragma omp parallel for
    for (int64_t r = 0; r < g->CKK; r++) {
        int64_t c = r / (g->KH * g->KW), ky = (r / g->KW) % g->KH, kx = r % g->KW;
        const float *xc = x + c * g->H * g->W;
        float *dst = col + r * g->OHW;
        for (int64_t oy = 0; oy < g->OH; oy++) {
            int64_t iy = oy * g->S - g->PH + ky;
            float *d = dst + oy * g->OW;
            if (iy < 0 || iy >= g->H) {
                memset(d, 0, sizeof(float) * (size_t)g->OW);
                continue;
            }
            const float *xr = xc + iy * g->W;
            if (g->S == 1) {
                int64_t ox0 = g->PW - kx > 0 ? g->PW - kx : 0, ox1 = g->W + g->PW - kx;
                if (ox1 > g->OW) ox1 = g->OW;
                for (int64_t ox = 0; ox < ox0; ox++) d[ox] = 0;
                if (ox1 > ox0) memcpy(d + ox0, xr + ox0 - g->PW + kx, sizeof(float) * (size_t)(ox1 - ox0));
                for (int64_t ox = ox1 > ox0 ? ox1 : ox0; ox < g->OW; ox++) d[ox] = 0;
            } else {
                for (int64_t ox = 0; ox < g->OW; ox++) {
                    int64_t ix = ox * g->S - g->PW + kx;
                    d[ox] = ix >= 0 && ix < g->W ? xr[ix] : 0.0f;
                }
            }
        }
    }
}

/* dx[c] += col2im(dcol) for one sample; parallel over channels, each owning its rows of dcol. */
static void col2im(const conv_geom *g, const float *col, float *dx) {
#pragma omp parallel for
    for (int64_t c = 0; c < g->C; c++) {
        float *xc = dx + c * g->H * g->W;
        for (int64_t ky = 0; ky < g->KH; ky++)
            for (int64_t kx = 0; kx < g->KW; kx++) {
                const float *src = col + ((c * g->KH + ky) * g->KW + kx) * g->OHW;
                for (int64_t oy = 0; oy < g->OH; oy++) {
                    int64_t iy = oy * g->S - g->PH + ky;
                    if (iy < 0 || iy >= g->H) continue;
                    for (int64_t ox = 0; ox < g->OW; ox++) {
                        int64_t ix = ox * g->S - g->PW + kx;
                        if (ix >= 0 && ix < g->W) xc[iy * g->W + ix] += src[oy * g->OW + ox];
                    }
                }
            }
    }
}

void gd_fwd_conv2d(gd_tensor *t, float *work) {
    conv_geom g = geom(t);
    const float *x = F32(t->src[0]), *w = F32(t->src[1]);
    const float *b = t->src[2] ? F32(t->src[2]) : NULL;
    float *y = F32(t);
    if (winograd(&g)) {
        gd_winograd_conv3x3(x, g.N, g.C, g.H, g.W, w, 0, g.O, b, y, 0, work);
        return;
    }
    for (int64_t n = 0; n < g.N; n++) {
        const float *B = x + n * g.C * g.H * g.W;
        if (!direct(&g)) {
            im2col(&g, B, work);
            B = work;
        }
        float *out = y + n * g.O * g.OHW;
        gd_sgemm_tiled(0, 0, g.O, g.OHW, g.CKK, w, g.CKK, B, g.OHW, 0.0f, out, g.OHW);
        if (b) {
#pragma omp parallel for if (g.O * g.OHW > 32768)
            for (int64_t o = 0; o < g.O; o++)
                for (int64_t i = 0; i < g.OHW; i++) out[o * g.OHW + i] += b[o];
        }
    }
}

void gd_bwd_conv2d(gd_tensor *t, float *work) {
    conv_geom g = geom(t);
    gd_tensor *X = t->src[0], *Wt = t->src[1], *Bt = t->src[2];
    const float *x = F32(X), *w = F32(Wt), *dy = t->grad;
    if (Bt && Bt->grad) {
        for (int64_t o = 0; o < g.O; o++) {
            double s = 0;
            for (int64_t n = 0; n < g.N; n++)
                for (int64_t i = 0; i < g.OHW; i++) s += dy[(n * g.O + o) * g.OHW + i];
            Bt->grad[o] += (float)s;
        }
    }
    float *dx = X->grad;
    if (dx && winograd(&g)) {
        /* dx = conv3x3(dy, rotated w^T): the same "same" convolution with roles swapped. */
        gd_winograd_conv3x3(dy, g.N, g.O, g.H, g.W, w, 1, g.C, NULL, dx, 1, work);
        dx = NULL;
    }
    for (int64_t n = 0; n < g.N && (dx || Wt->grad); n++) {
        const float *dyn = dy + n * g.O * g.OHW, *xn = x + n * g.C * g.H * g.W;
        if (Wt->grad) {
            const float *B = xn;
            if (!direct(&g)) {
                im2col(&g, xn, work);
                B = work;
            }
            gd_sgemm_tiled(0, 1, g.O, g.CKK, g.OHW, dyn, g.OHW, B, g.OHW, 1.0f, Wt->grad, g.CKK);
        }
        if (dx) {
            float *dxn = dx + n * g.C * g.H * g.W;
            if (direct(&g)) {
                gd_sgemm_tiled(1, 0, g.CKK, g.OHW, g.O, w, g.CKK, dyn, g.OHW, 1.0f, dxn, g.OHW);
            } else {
                gd_sgemm_tiled(1, 0, g.CKK, g.OHW, g.O, w, g.CKK, dyn, g.OHW, 0.0f, work, g.OHW);
                col2im(&g, work, dxn);
            }
        }
    }
}

/* ---- linear over the last dimension ---- */

gd_tensor *gd_linear(gd_ctx *ctx, gd_tensor *x, gd_tensor *w, gd_tensor *b) {
    if (!x || !w) return NULL;
    w = gd_convert_f32(ctx, w);
    b = gd_convert_f32(ctx, b);
    if (!w) return NULL;
    int64_t in = x->ne[x->ndim - 1];
    REQUIRE((w->ndim == 2 || (w->ndim == 3 && w->ne[2] == 1)) && w->ne[1] == in,
            "linear: weight '%s' does not take %lld inputs from '%s'", w->name, (long long)in, x->name);
    REQUIRE(!b || (b->ndim == 1 && b->ne[0] == w->ne[0]), "linear: bias '%s' must be [%lld]", b ? b->name : "",
            (long long)w->ne[0]);
    int64_t ne[GD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ne[i] = x->ne[i];
    ne[x->ndim - 1] = w->ne[0];
    return gd_new_op(ctx, GD_OP_LINEAR, x->ndim, ne, x, w, b);
}

double gd_flops_linear(const gd_tensor *t) {
    return 2.0 * (double)gd_nelements(t) * (double)t->src[1]->ne[1];
}

/* Few rows (the timestep-embedding MLPs: one row per sample) run as explicit dot products, one
 * output feature per iteration: each row's result is then independent of how many rows there are,
 * so a sample's image does not depend on its batch. BLAS may pick different kernels (and
 * summation orders) for different row counts. */
#define LINEAR_DOT_ROWS 64

void gd_fwd_linear(gd_tensor *t, float *work) {
    (void)work;
    int64_t out = t->ne[t->ndim - 1], in = t->src[1]->ne[1], rows = gd_nelements(t) / out;
    float *y = F32(t);
    const float *b = t->src[2] ? F32(t->src[2]) : NULL;
    if (rows <= LINEAR_DOT_ROWS) {
        const float *x = F32(t->src[0]), *w = F32(t->src[1]);
#pragma omp parallel for if (out * in > 65536)
        for (int64_t o = 0; o < out; o++) {
            const float *wo = w + o * in;
            for (int64_t r = 0; r < rows; r++) {
                const float *xr = x + r * in;
                float acc[8] = {0};
                int64_t i = 0;
                for (; i + 8 <= in; i += 8)
                    for (int j = 0; j < 8; j++) acc[j] += xr[i + j] * wo[i + j];
                float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
                for (; i < in; i++) s += xr[i] * wo[i];
                y[r * out + o] = s + (b ? b[o] : 0.0f);
            }
        }
        return;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) y[r * out + o] = b ? b[o] : 0.0f;
    gd_sgemm_tiled(0, 1, rows, out, in, F32(t->src[0]), in, F32(t->src[1]), in, 1.0f, y, out);
}

void gd_bwd_linear(gd_tensor *t, float *work) {
    (void)work;
    gd_tensor *X = t->src[0], *Wt = t->src[1], *Bt = t->src[2];
    int64_t out = t->ne[t->ndim - 1], in = Wt->ne[1], rows = gd_nelements(t) / out;
    if (X->grad) gd_sgemm_tiled(0, 0, rows, in, out, t->grad, out, F32(Wt), in, 1.0f, X->grad, in);
    if (Wt->grad) gd_sgemm_tiled(1, 0, out, in, rows, t->grad, out, F32(X), in, 1.0f, Wt->grad, in);
    if (Bt && Bt->grad)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++) s += t->grad[r * out + o];
            Bt->grad[o] += (float)s;
        }
}
