/* The conv2d forward of a W8A8 weight leaf (gd_quant, set by the model loader for a file that
 * ddpm-quantize wrote): im2col (or the 1x1 direct operand) in fp32, quantized to u8 per tensor as
 * it is packed, times the int8 weights on gemm_s8.c (VNNI), int32 sums dequantized per output
 * channel with the bias added in the GEMM's epilogue. A sample split over threads is packed once
 * for all its tiles, and a stride-1 same-size conv of width a multiple of 16 is packed from the
 * input itself, without the float im2col (gd_s8_pack_b_im2col: the same bytes). Winograd is not used: its transforms would
 * multiply the quantization error (the transformed inputs span 4x the range per tile), so the
 * 3x3 layers take im2col here and pay 2.25x the multiplies for 4x the throughput per multiply.
 * The weights are packed once, at the first compute, into the weight leaf's cache (with each
 * row's sum for the zero-point correction and each row's combined scale). Integer sums are exact,
 * so any tiling or thread count gives the same bits. */
#include "core/conv_internal.h"
#include "core/gemm_s8.h"

#include <stdlib.h>
#include <string.h>

#define TILE_M (8 * GD_S8_MR) /* rows of a GEMM tile when one sample is split over threads */
#define TILE_N 512

static size_t pad64(size_t n) { return (n + 63) & ~(size_t)63; }
static int64_t k4(int64_t k) { return (k + 3) & ~(int64_t)3; }

/* the leaf's cache: packed weights | rowsum [O] int32 | row scale [O] float */
static size_t cache_bytes(const conv_geom *g) { return pad64(gd_s8_packed_size(g->O, g->CKK)) + pad64(8 * (size_t)g->O); }

/* the tiled path packs a "same" stride-1 conv's B straight from the input (gemm_s8.h) */
static int fused(const conv_geom *g) { return g->S == 1 && !gd_conv_direct(g) && gd_s8_im2col_ok(g->H, g->W, g->KH, g->KW, g->PH, g->PW); }

static size_t col_floats(const conv_geom *g) { return gd_conv_direct(g) ? 0 : gd_pad16((size_t)(g->CKK * g->OHW)); }
static size_t floats_of(size_t bytes) { return gd_pad16((bytes + 3) / 4); }

#define SAMPLE_SLICE_MAX (4 << 20)
static int sample_parallel(const conv_geom *g, int team) { return team > 1 && g->N >= 2 && col_floats(g) <= SAMPLE_SLICE_MAX; }

const char *gd_s8_kernels(void) {
    return gd_s8_native() ? "AVX512-VNNI VPDPBUSD, u8 x s8, int32 accumulation" : "scalar int8 (no AVX512-VNNI on this CPU)";
}

gd_tensor *gd_conv_weight_leaf(const gd_tensor *t) {
    gd_tensor *w = t->src[1];
    while (w->op == GD_OP_VIEW) w = w->src[0];
    return w;
}

int gd_conv_s8(const gd_tensor *t) {
    const gd_tensor *w = gd_conv_weight_leaf(t);
    return (t->flags & GD_FLAG_PLANNED_S8) && w->quant && !w->grad;
}

/* the tiled path: the fp32 columns and B quantized and packed once per sample for all tiles */
static size_t packed_floats(const conv_geom *g) { return floats_of(gd_s8_packed_b_size(g->OHW, g->CKK)); }

size_t gd_conv_s8_work(const conv_geom *g, int team) {
    if (sample_parallel(g, team)) return (size_t)team * (col_floats(g) + floats_of(gd_s8_work_size(g->OHW, g->CKK)));
    return (fused(g) ? 0 : col_floats(g)) + packed_floats(g);
}

int gd_conv_s8_plan(gd_tensor *t, const conv_geom *g) {
    gd_tensor *w = gd_conv_weight_leaf(t);
    size_t floats = floats_of(cache_bytes(g));
    if (w->cache && w->cache_floats >= floats) return 0;
    free(w->cache);
    w->cache = aligned_alloc(64, sizeof(float) * floats);
    w->cache_of = NULL;
    w->cache_floats = w->cache ? floats : 0;
    return w->cache ? 0 : -1;
}

static void pack(gd_tensor *w, const conv_geom *g) {
    const gd_quant *q = w->quant;
    int8_t *Ap = w->cache;
    int32_t *rowsum = (int32_t *)((char *)w->cache + pad64(gd_s8_packed_size(g->O, g->CKK)));
    float *rs = (float *)(rowsum + g->O);
    gd_s8_pack_a(q->w, g->CKK, g->O, g->CKK, Ap, rowsum);
    for (int64_t o = 0; o < g->O; o++) rs[o] = q->w_scale[o] * q->a_scale;
    w->cache_of = q->w;
}

void gd_conv_s8_fwd(gd_tensor *t, const conv_geom *g, const float *x, const float *b, float *y, float *work, int team) {
    gd_tensor *w = gd_conv_weight_leaf(t);
    if (w->cache_of != w->quant->w) pack(w, g);
    const int8_t *Ap = w->cache;
    const int32_t *rowsum = (const int32_t *)((const char *)w->cache + pad64(gd_s8_packed_size(g->O, g->CKK)));
    const float *rs = (const float *)(rowsum + g->O);
    const float inv = 1.0f / w->quant->a_scale;
    const int zp = w->quant->a_zero;
    const int64_t CHW = g->C * g->H * g->W, Kp = k4(g->CKK);
    if (sample_parallel(g, team)) {
        const size_t sl = col_floats(g) + floats_of(gd_s8_work_size(g->OHW, g->CKK));
#pragma omp parallel num_threads(team)
        {
            float *col = work + (size_t)gd_thread_id() * sl;
            void *bw = col + col_floats(g);
#pragma omp for schedule(dynamic)
            for (int64_t n = 0; n < g->N; n++) {
                const float *B = x + n * CHW;
                if (!gd_conv_direct(g)) {
                    gd_im2col_serial(g, B, col, g->OHW);
                    B = col;
                }
                gd_gemm_s8(g->O, g->OHW, g->CKK, Ap, rowsum, B, g->OHW, inv, zp, rs, b, 0, y + n * g->O * g->OHW, g->OHW, bw);
            }
        }
        return;
    }
    const int fuse = fused(g);
    float *col = work;
    uint8_t *Bp = (uint8_t *)(work + (fuse ? 0 : col_floats(g)));
    const int64_t tm = (g->O + TILE_M - 1) / TILE_M, tn = (g->OHW + TILE_N - 1) / TILE_N;
    const int64_t panels = (g->OHW + GD_S8_NR - 1) / GD_S8_NR;
#pragma omp parallel num_threads(team)
    {
        const int nt = omp_get_num_threads(), id = gd_thread_id();
        const int64_t j0 = panels * id / nt, j1 = panels * (id + 1) / nt;
        for (int64_t n = 0; n < g->N; n++) {
            const float *B = x + n * CHW;
            int64_t c0 = j0 * GD_S8_NR, c1 = j1 * GD_S8_NR < g->OHW ? j1 * GD_S8_NR : g->OHW;
            if (fuse) {
                gd_s8_pack_b_im2col(B, g->H, g->W, g->KH, g->KW, g->PH, g->PW, g->CKK, c0, c1 - c0, inv, zp, Bp);
            } else {
                if (!gd_conv_direct(g)) {
                    gd_im2col_team(g, B, col);
                    B = col;
                }
                gd_s8_pack_b(B, g->OHW, g->CKK, c0, c1 - c0, inv, zp, Bp);
            }
#pragma omp barrier
            float *out = y + n * g->O * g->OHW;
#pragma omp for schedule(dynamic)
            for (int64_t k = 0; k < tm * tn; k++) {
                int64_t m0 = k / tn * TILE_M, n0 = k % tn * TILE_N;
                int64_t mt = g->O - m0 < TILE_M ? g->O - m0 : TILE_M, nt2 = g->OHW - n0 < TILE_N ? g->OHW - n0 : TILE_N;
                gd_gemm_s8_packed(mt, nt2, g->CKK, Ap + m0 * Kp, rowsum + m0, Bp, n0, zp, rs + m0, b ? b + m0 : NULL, 0,
                                  out + m0 * g->OHW + n0, g->OHW);
            }
        }
    }
}
