/* conv2d (im2col + sgemm, or Winograd) forward, and linear, forward and backward; the conv2d
 * backward is in ops_conv_grad.c. GEMMs are always single-threaded OpenBLAS calls made from
 * inside a parallel region (see gd_sgemm_tiled). */
#include "core/conv_internal.h"

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

conv_geom gd_conv_geom(const gd_tensor *t) {
    const gd_tensor *x = t->src[0], *w = t->src[1];
    conv_geom g = {x->ne[0], x->ne[1], x->ne[2], x->ne[3], w->ne[0], w->ne[2], w->ne[3], t->ne[2], t->ne[3], 0, 0,
                   t->ip[0], t->ip[1], t->ip[2]};
    g.OHW = g.OH * g.OW;
    g.CKK = g.C * g.KH * g.KW;
    return g;
}

int gd_conv_direct(const conv_geom *g) { return g->KH == 1 && g->KW == 1 && g->S == 1 && g->PH == 0 && g->PW == 0; }

int gd_conv_3x3_same(const conv_geom *g) {
    return g->KH == 3 && g->KW == 3 && g->S == 1 && g->PH == 1 && g->PW == 1;
}

/* 3x3 "same" convolutions (nearly all of ADM's FLOPs) go through Winograd F(2x2,3x3), forward
 * and input gradient; GD_NO_WINOGRAD=1 selects im2col + GEMM for comparison. */
int gd_conv_winograd(const conv_geom *g) {
    static int off = -1;
    if (off < 0) off = getenv("GD_NO_WINOGRAD") != NULL;
    return !off && gd_conv_3x3_same(g) && gd_winograd_worth(g->N, g->H, g->W);
}

/* Forward, im2col or direct: a sample per thread (each with its own im2col slice) when the batch
 * has two or more and the slices are small; else one sample after the other, each parallel inside.
 * Either way every sample goes through the same tile GEMMs, so the bits are the same. */
#define FWD_SLICE_MAX (4 << 20)

static size_t fwd_slice(const conv_geom *g) { return gd_conv_direct(g) ? 0 : gd_pad16((size_t)(g->CKK * g->OHW)); }

static int fwd_sample_parallel(const conv_geom *g, int team) {
    return team > 1 && g->N >= 2 && fwd_slice(g) <= FWD_SLICE_MAX;
}

size_t gd_work_conv2d(gd_tensor *t, int backward) {
    conv_geom g = gd_conv_geom(t);
    int team = gd_planned_threads();
    t->ip[3] = team; /* what the scratch is sized for (gd_conv_team) */
    size_t w = gd_conv_direct(&g) ? 0 : (size_t)(g.CKK * g.OHW);
    if (gd_conv_winograd(&g)) w = gd_winograd_work_team(g.N, g.C, g.O, g.H, g.W, team);
    else if (fwd_sample_parallel(&g, team) && (size_t)team * fwd_slice(&g) > w) w = (size_t)team * fwd_slice(&g);
    if (!backward) t->flags &= ~GD_FLAG_PLANNED_BF16; /* the plan asks without, then (maybe) with a backward */
    /* a W8A8 weight runs int8 (without memory for its packing, fp32 on its dequantized values) */
    t->flags &= ~GD_FLAG_PLANNED_S8;
    const gd_tensor *wl = gd_conv_weight_leaf(t);
    if (wl->quant && !(wl->flags & GD_FLAG_NEEDS_GRAD) && !gd_conv_s8_plan(t, &g)) {
        t->flags |= GD_FLAG_PLANNED_S8;
        size_t ws = gd_conv_s8_work(&g, team);
        if (ws > w) w = ws;
    }
    if (gd_get_precision() == GD_PRECISION_BF16 && !(t->src[1]->flags & GD_FLAG_NEEDS_GRAD)) {
        if (gd_conv_bf16_plan(t, &g, backward)) {
            t->flags &= ~GD_FLAG_PLANNED_BF16; /* no memory for the packed weights: fp32 */
        } else {
            t->flags |= GD_FLAG_PLANNED_BF16;
            size_t wf = gd_conv_bf16_work(&g, team, backward);
            if (wf > w) w = wf;
        }
    }
    if (backward) {
        size_t wb = gd_conv_grad_work(&g, team);
        if (wb > w) w = wb;
    }
    return w;
}

double gd_flops_conv2d(const gd_tensor *t) {
    conv_geom g = gd_conv_geom(t);
    return 2.0 * (double)g.N * (double)g.O * (double)g.OHW * (double)g.CKK;
}

/* One row r = (c*KH + ky)*KW + kx of im2col for one sample. */
static void im2col_row(const conv_geom *g, const float *x, int64_t r, float *dst) {
    int64_t c = r / (g->KH * g->KW), ky = (r / g->KW) % g->KH, kx = r % g->KW;
    const float *xc = x + c * g->H * g->W;
#ifdef GD_AVX512
    if (g->S == 1) { /* each output row a masked, shifted copy of an input row (zeros outside) */
        for (int64_t oy = 0; oy < g->OH; oy++) {
            int64_t iy = oy - g->PH + ky;
            float *d = dst + oy * g->OW;
            const float *xr = xc + iy * g->W;
            for (int64_t o0 = 0; o0 < g->OW; o0 += 16) {
                __mmask16 st = gd_first_lanes(g->OW - o0), ld = iy < 0 || iy >= g->H ? 0 : st & gd_lane_mask(o0 - g->PW + kx, g->W);
                _mm512_mask_storeu_ps(d + o0, st, _mm512_maskz_loadu_ps(ld, xr + o0 - g->PW + kx));
            }
        }
        return;
    }
#endif
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

/* col[(c*KH + ky)*KW + kx][oy*OW + ox] = x[c][oy*S - PH + ky][ox*S - PW + kx] for one sample */
static void im2col(const conv_geom *g, const float *x, float *col) {
#pragma omp parallel for
    for (int64_t r = 0; r < g->CKK; r++) im2col_row(g, x, r, col + r * g->OHW);
}

#ifdef GD_AVX512
/* Stride 1 with the output as large as the input ("same" padding): row (c, ky, kx) of im2col is
 * the channel's flat image shifted by (ky - PH) * W + kx - PW, with the positions whose source
 * falls outside zeroed. The masks of those positions, 16 output positions per chunk, for each
 * (ky, kx): m[(ky * KW + kx) * nch + q]. */
static int flat_ok(const conv_geom *g) { return g->S == 1 && g->OH == g->H && g->OW == g->W && g->KH * g->KW <= 49; }

static void flat_masks(const conv_geom *g, int64_t nch, __mmask16 *m) {
    /* walks the output positions with row/column counters: a division per lane cost more than the
     * copy itself for one channel (measured: 45% of an int8 forward, which takes im2col per channel) */
    for (int64_t ky = 0; ky < g->KH; ky++)
        for (int64_t kx = 0; kx < g->KW; kx++) {
            __mmask16 *mk = m + (ky * g->KW + kx) * nch;
            int64_t oy = 0, ox = 0;
            for (int64_t q = 0; q < nch; q++) {
                unsigned bits = 0;
                for (int l = 0; l < 16; l++) {
                    int64_t iy = oy + ky - g->PH, ix = ox + kx - g->PW;
                    if (q * 16 + l < g->OHW && iy >= 0 && iy < g->H && ix >= 0 && ix < g->W) bits |= 1u << l;
                    if (++ox == g->OW) ox = 0, oy++;
                }
                mk[q] = (__mmask16)bits;
            }
        }
}
#endif

void gd_im2col_serial(const conv_geom *g, const float *x, float *col, int64_t ld) {
#ifdef GD_AVX512
    if (flat_ok(g)) {
        int64_t nch = (g->OHW + 15) / 16, KK = g->KH * g->KW;
        __mmask16 m[KK * nch];
        flat_masks(g, nch, m);
        for (int64_t r = 0; r < g->CKK; r++) {
            int64_t c = r / KK, k = r % KK, ky = k / g->KW, kx = k % g->KW, off = (ky - g->PH) * g->W + kx - g->PW;
            const float *xc = x + c * g->H * g->W + off;
            float *d = col + r * ld;
            for (int64_t q = 0; q < nch; q++)
                _mm512_mask_storeu_ps(d + q * 16, gd_first_lanes(g->OHW - q * 16), _mm512_maskz_loadu_ps(m[k * nch + q], xc + q * 16));
        }
        return;
    }
#endif
    for (int64_t r = 0; r < g->CKK; r++) im2col_row(g, x, r, col + r * ld);
}

void gd_im2col_team(const conv_geom *g, const float *x, float *col) {
    int nt = omp_get_num_threads(), id = gd_thread_id();
    int64_t c0 = g->C * id / nt, c1 = g->C * (id + 1) / nt;
    conv_geom part = *g;
    part.C = c1 - c0, part.CKK = part.C * g->KH * g->KW;
    if (part.C > 0) gd_im2col_serial(&part, x + c0 * g->H * g->W, col + c0 * g->KH * g->KW * g->OHW, g->OHW);
#pragma omp barrier
}

void gd_col2im_serial(const conv_geom *g, const float *col, int64_t ld, float *dx) {
#ifdef GD_AVX512
    if (flat_ok(g)) {
        /* (ky, kx) in order, each adding one shifted plane: every element takes its contributions
         * in the (ky, kx) order of the loop below */
        int64_t nch = (g->OHW + 15) / 16, KK = g->KH * g->KW;
        __mmask16 m[KK * nch];
        flat_masks(g, nch, m);
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t k = 0; k < KK; k++) {
                int64_t ky = k / g->KW, kx = k % g->KW, off = (ky - g->PH) * g->W + kx - g->PW;
                float *xc = dx + c * g->H * g->W + off;
                const float *src = col + (c * KK + k) * ld;
                for (int64_t q = 0; q < nch; q++) {
                    __mmask16 mk = m[k * nch + q];
                    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, xc + q * 16), _mm512_maskz_loadu_ps(mk, src + q * 16));
                    _mm512_mask_storeu_ps(xc + q * 16, mk, v);
                }
            }
        return;
    }
    if (g->S == 1) {
        /* by input rows: each element takes its contributions in (ky, kx) order, as in the loop
         * below (with stride 1 each (ky, kx) adds at most one value to an element) */
        for (int64_t c = 0; c < g->C; c++) {
            float *xc = dx + c * g->H * g->W;
            for (int64_t iy = 0; iy < g->H; iy++)
                for (int64_t i0 = 0; i0 < g->W; i0 += 16) {
                    __mmask16 st = gd_first_lanes(g->W - i0);
                    __m512 acc = _mm512_maskz_loadu_ps(st, xc + iy * g->W + i0);
                    for (int64_t ky = 0; ky < g->KH; ky++) {
                        int64_t oy = iy + g->PH - ky;
                        if (oy < 0 || oy >= g->OH) continue;
                        for (int64_t kx = 0; kx < g->KW; kx++) {
                            const float *src = col + ((c * g->KH + ky) * g->KW + kx) * ld + oy * g->OW;
                            int64_t o0 = i0 + g->PW - kx; /* the column of lane 0 */
                            __mmask16 m = st & gd_lane_mask(o0, g->OW);
                            acc = _mm512_mask_add_ps(acc, m, acc, _mm512_maskz_loadu_ps(m, src + o0));
                        }
                    }
                    _mm512_mask_storeu_ps(xc + iy * g->W + i0, st, acc);
                }
        }
        return;
    }
#endif
    for (int64_t c = 0; c < g->C; c++) {
        float *xc = dx + c * g->H * g->W;
        for (int64_t ky = 0; ky < g->KH; ky++)
            for (int64_t kx = 0; kx < g->KW; kx++) {
                const float *src = col + ((c * g->KH + ky) * g->KW + kx) * ld;
                for (int64_t oy = 0; oy < g->OH; oy++) {
                    int64_t iy = oy * g->S - g->PH + ky;
                    if (iy < 0 || iy >= g->H) continue;
                    float *xr = xc + iy * g->W;
                    const float *sr = src + oy * g->OW;
                    if (g->S == 1) {
                        int64_t ox0 = g->PW - kx > 0 ? g->PW - kx : 0, ox1 = g->W + g->PW - kx;
                        if (ox1 > g->OW) ox1 = g->OW;
                        for (int64_t ox = ox0; ox < ox1; ox++) xr[ox - g->PW + kx] += sr[ox];
                    } else {
                        for (int64_t ox = 0; ox < g->OW; ox++) {
                            int64_t ix = ox * g->S - g->PW + kx;
                            if (ix >= 0 && ix < g->W) xr[ix] += sr[ox];
                        }
                    }
                }
            }
    }
}

/* One sample's output: the tile GEMMs of gd_sgemm_tiled one after the other, then the bias. */
static void fwd_sample(const conv_geom *g, const float *w, const float *B, const float *b, float *out) {
    int64_t tm = (g->O + TILE_M - 1) / TILE_M, tn = (g->OHW + TILE_N - 1) / TILE_N;
    for (int64_t t = 0; t < tm * tn; t++) {
        int64_t m0 = t / tn * TILE_M, n0 = t % tn * TILE_N;
        int64_t mt = g->O - m0 < TILE_M ? g->O - m0 : TILE_M, nt = g->OHW - n0 < TILE_N ? g->OHW - n0 : TILE_N;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mt, (int)nt, (int)g->CKK, 1.0f, w + m0 * g->CKK,
                    (int)g->CKK, B + n0, (int)g->OHW, 0.0f, out + m0 * g->OHW + n0, (int)g->OHW);
    }
    if (b)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t i = 0; i < g->OHW; i++) out[o * g->OHW + i] += b[o];
}

void gd_fwd_conv2d(gd_tensor *t, float *work) {
    conv_geom g = gd_conv_geom(t);
    const float *x = F32(t->src[0]), *w = F32(t->src[1]);
    const float *b = t->src[2] ? F32(t->src[2]) : NULL;
    float *y = F32(t);
    int team = gd_conv_team(t);
    if (gd_conv_s8(t)) {
        gd_conv_s8_fwd(t, &g, x, b, y, work, team);
        return;
    }
    if (gd_conv_bf16(t)) {
        gd_conv_bf16_fwd(t, &g, x, w, b, y, work, team);
        return;
    }
    if (gd_conv_winograd(&g)) {
        gd_winograd_conv3x3_team(x, g.N, g.C, g.H, g.W, w, 0, g.O, b, y, 0, work, team);
        return;
    }
    if (fwd_sample_parallel(&g, team)) {
        size_t sl = fwd_slice(&g);
#pragma omp parallel num_threads(team)
        {
            float *col = work + (size_t)gd_thread_id() * sl;
#pragma omp for schedule(dynamic)
            for (int64_t n = 0; n < g.N; n++) {
                const float *B = x + n * g.C * g.H * g.W;
                if (!gd_conv_direct(&g)) {
                    gd_im2col_serial(&g, B, col, g.OHW);
                    B = col;
                }
                fwd_sample(&g, w, B, b, y + n * g.O * g.OHW);
            }
        }
        return;
    }
    for (int64_t n = 0; n < g.N; n++) {
        const float *B = x + n * g.C * g.H * g.W;
        if (!gd_conv_direct(&g)) {
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
