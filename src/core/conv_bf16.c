/* The conv2d forward in bf16 (gd_set_precision(GD_PRECISION_BF16)): the same algorithms as the
 * fp32 forward (Winograd F(2x2,3x3) for 3x3 "same" layers, else im2col or the direct 1x1 GEMM),
 * with their GEMMs on gemm_bf16.c: the weights (for Winograd, their transforms) rounded to bf16
 * and packed once, at the first compute, into the op's cache (t->cache, allocated by the plan:
 * packing them on every call cost a quarter of ADM-64's batch-1 forward, measured); activations
 * rounded as the GEMM packs them; fp32 accumulation, transforms, bias and everything outside the
 * GEMMs in fp32. The weights must not change in place after that first compute (a new plan
 * repacks them); bf16 is an inference mode. A backward (classifier guidance) computes the input
 * gradient the same way, from its own packing of the weights; weight gradients stay fp32.
 * A GEMM's element is summed the same way whatever the M and N tiling (gemm_bf16.c blocks only
 * K, from 0), and every sample takes the same GEMMs whatever its batch, so results do not depend
 * on the thread count or the batch, as in fp32. */
#include "core/conv_internal.h"
#include "core/gemm_bf16.h"

#include <stdlib.h>

#define TILE_M (8 * GD_BF16_MR) /* rows of a GEMM tile when one sample is split over threads */
#define TILE_N 512

static gd_precision g_precision = GD_PRECISION_F32;

int gd_set_precision(gd_precision p) {
    if (p == GD_PRECISION_BF16 && !gd_bf16_native()) {
        g_precision = GD_PRECISION_F32;
        return -1;
    }
    g_precision = p;
    return 0;
}

gd_precision gd_get_precision(void) { return g_precision; }

const char *gd_precision_kernels(void) {
    if (g_precision == GD_PRECISION_BF16) return "bf16: AVX512-BF16 VDPBF16PS GEMMs (conv2d forward and input gradient, attention forward and backward), fp32 accumulation";
    return gd_bf16_native() ? "fp32: OpenBLAS sgemm (this CPU also has AVX512-BF16 for --precision bf16)"
                            : "fp32: OpenBLAS sgemm (no AVX512-BF16 on this CPU)";
}

static size_t halves(size_t n16) { return gd_pad16((n16 + 1) / 2); } /* uint16 count -> floats */

/* ---- Winograd ---- */

static size_t wino_slice(const conv_geom *g, int64_t pc) {
    return gd_pad16((size_t)(16 * g->C * pc + 16 * g->O * pc)) + halves(gd_bf16_work_size(pc, g->C));
}

static int wino_sample_parallel(const conv_geom *g, int team) { return team > 1 && g->N >= team; }

static size_t wino_work(const conv_geom *g, int team) {
    int64_t P = ((g->H + 1) / 2) * ((g->W + 1) / 2), pc = gd_wino_chunk_tiles(g->C, g->O, P);
    return (size_t)team * wino_slice(g, pc);
}

/* the 16 transformed planes, each packed: in floats, and what packing them needs as scratch (U) */
static size_t wino_cache(const conv_geom *g) { return 16 * halves(gd_bf16_packed_size(g->O, g->C)); }
static size_t wino_pack_scratch(const conv_geom *g) { return gd_pad16((size_t)(16 * g->O * g->C)); }

/* flip: the input gradient's filters (g is then the swapped geometry, see dx_geom) */
static void wino_pack(const conv_geom *g, const float *w, int flip, uint16_t *Ub, float *U, int team) {
    const size_t psz = halves(gd_bf16_packed_size(g->O, g->C)) * 2;
#pragma omp parallel num_threads(team)
    {
        gd_wino_filter_tf_for(w, flip, g->O, g->C, U);
#pragma omp for
        for (int k = 0; k < 16; k++) gd_bf16_pack_a(U + k * g->O * g->C, g->C, g->O, g->C, Ub + k * psz);
    }
}

static void wino_fwd(const conv_geom *g, const float *x, const uint16_t *Ub, const float *b, float *y, int accumulate, float *work,
                     int team) {
    const int64_t C = g->C, O = g->O, H = g->H, W = g->W, P = ((H + 1) / 2) * ((W + 1) / 2);
    const int64_t pc = gd_wino_chunk_tiles(C, O, P);
    const size_t psz = halves(gd_bf16_packed_size(O, C)) * 2; /* uint16 per packed plane */
    float *slices = work;
    const size_t sl = wino_slice(g, pc);
    const int by_sample = wino_sample_parallel(g, team);
#pragma omp parallel num_threads(team)
    {
        float *V = slices + (size_t)gd_thread_id() * sl, *M = V + 16 * C * pc;
        uint16_t *bw = (uint16_t *)(M + 16 * O * pc);
        if (by_sample) {
#pragma omp for schedule(dynamic)
            for (int64_t n = 0; n < g->N; n++)
                for (int64_t p0 = 0; p0 < P; p0 += pc) {
                    int64_t np = P - p0 < pc ? P - p0 : pc;
                    gd_wino_input_tf(x + n * C * H * W, C, H, W, p0, np, V, np, 0);
                    for (int k = 0; k < 16; k++)
                        gd_gemm_bf16(O, np, C, Ub + k * psz, V + k * C * np, np, 0.0f, M + k * O * np, np, bw);
                    gd_wino_output_tf(M, np, 0, O, H, W, p0, np, b, y + n * O * H * W, accumulate);
                }
        } else {
            /* one chunk at a time over the whole team: its tiles split for the transforms, its
             * 16 GEMMs a thread each; the chunk's V and M live in thread 0's slice */
            float *V0 = slices, *M0 = V0 + 16 * C * pc;
            int nt = omp_get_num_threads(), id = gd_thread_id();
            for (int64_t n = 0; n < g->N; n++)
                for (int64_t p0 = 0; p0 < P; p0 += pc) {
                    int64_t np = P - p0 < pc ? P - p0 : pc, s0 = np * id / nt, s1 = np * (id + 1) / nt;
                    if (s1 > s0) gd_wino_input_tf(x + n * C * H * W, C, H, W, p0 + s0, s1 - s0, V0, np, s0);
#pragma omp barrier
#pragma omp for schedule(dynamic)
                    for (int k = 0; k < 16; k++)
                        gd_gemm_bf16(O, np, C, Ub + k * psz, V0 + k * C * np, np, 0.0f, M0 + k * O * np, np, bw);
                    if (s1 > s0) gd_wino_output_tf(M0, np, s0, O, H, W, p0 + s0, s1 - s0, b, y + n * O * H * W, accumulate);
#pragma omp barrier
                }
        }
    }
}

/* ---- im2col / direct ---- */

static size_t col_floats(const conv_geom *g) { return gd_conv_direct(g) ? 0 : gd_pad16((size_t)(g->CKK * g->OHW)); }

#define SAMPLE_SLICE_MAX (4 << 20)
static int gemm_sample_parallel(const conv_geom *g, int team) {
    return team > 1 && g->N >= 2 && col_floats(g) <= SAMPLE_SLICE_MAX;
}

static size_t gemm_work(const conv_geom *g, int team) {
    size_t bw = halves(gd_bf16_work_size(TILE_N, g->CKK));
    if (gemm_sample_parallel(g, team)) return (size_t)team * (col_floats(g) + halves(gd_bf16_work_size(g->OHW, g->CKK)));
    return col_floats(g) + (size_t)team * bw;
}

static size_t gemm_cache(const conv_geom *g) { return halves(gd_bf16_packed_size(g->O, g->CKK)); }

static void gemm_pack(const conv_geom *g, const float *w, uint16_t *Ap, int team) {
    const int64_t panels = (g->O + GD_BF16_MR - 1) / GD_BF16_MR, Kp = (g->CKK + 1) & ~(int64_t)1;
#pragma omp parallel for num_threads(team)
    for (int64_t p = 0; p < panels; p++) {
        int64_t m0 = p * GD_BF16_MR, mr = g->O - m0 < GD_BF16_MR ? g->O - m0 : GD_BF16_MR;
        gd_bf16_pack_a(w + m0 * g->CKK, g->CKK, mr, g->CKK, Ap + m0 * Kp);
    }
}

static void add_bias(const conv_geom *g, const float *b, float *out) {
    if (b)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t i = 0; i < g->OHW; i++) out[o * g->OHW + i] += b[o];
}

static void gemm_fwd(const conv_geom *g, const float *x, const uint16_t *Ap, const float *b, float *y, float *work, int team) {
    const int64_t CHW = g->C * g->H * g->W, Kp = (g->CKK + 1) & ~(int64_t)1;
    if (gemm_sample_parallel(g, team)) {
        const size_t sl = col_floats(g) + halves(gd_bf16_work_size(g->OHW, g->CKK));
#pragma omp parallel num_threads(team)
        {
            float *col = work + (size_t)gd_thread_id() * sl;
            uint16_t *bw = (uint16_t *)(col + col_floats(g));
#pragma omp for schedule(dynamic)
            for (int64_t n = 0; n < g->N; n++) {
                const float *B = x + n * CHW;
                if (!gd_conv_direct(g)) {
                    gd_im2col_serial(g, B, col, g->OHW);
                    B = col;
                }
                float *out = y + n * g->O * g->OHW;
                gd_gemm_bf16(g->O, g->OHW, g->CKK, Ap, B, g->OHW, 0.0f, out, g->OHW, bw);
                add_bias(g, b, out);
            }
        }
        return;
    }
    float *col = work;
    uint16_t *bws = (uint16_t *)(work + col_floats(g));
    const size_t bsl = halves(gd_bf16_work_size(TILE_N, g->CKK)) * 2;
    const int64_t tm = (g->O + TILE_M - 1) / TILE_M, tn = (g->OHW + TILE_N - 1) / TILE_N;
#pragma omp parallel num_threads(team)
    {
        uint16_t *bw = bws + (size_t)gd_thread_id() * bsl;
        for (int64_t n = 0; n < g->N; n++) {
            const float *B = x + n * CHW;
            if (!gd_conv_direct(g)) {
                /* one call per channel recomputed the masks per channel (3.6 % of a bf16 classifier
                 * gradient, perf) */
                gd_im2col_team(g, B, col);
                B = col;
            }
            float *out = y + n * g->O * g->OHW;
#pragma omp for schedule(dynamic)
            for (int64_t t = 0; t < tm * tn; t++) {
                int64_t m0 = t / tn * TILE_M, n0 = t % tn * TILE_N;
                int64_t mt = g->O - m0 < TILE_M ? g->O - m0 : TILE_M, nt = g->OHW - n0 < TILE_N ? g->OHW - n0 : TILE_N;
                gd_gemm_bf16(mt, nt, g->CKK, Ap + m0 * Kp, B + n0, g->OHW, 0.0f, out + m0 * g->OHW + n0, g->OHW, bw);
            }
#pragma omp for
            for (int64_t o = 0; o < g->O; o++)
                if (b)
                    for (int64_t i = 0; i < g->OHW; i++) out[o * g->OHW + i] += b[o];
        }
    }
}

/* ---- the input gradient (classifier guidance): dx += conv^T(dy), weights packed once too ---- */

/* Winograd: the forward's algorithm on dy with O and C swapped and the filters flipped */
static conv_geom dx_geom(const conv_geom *g) {
    conv_geom d = *g;
    d.C = g->O, d.O = g->C;
    return d;
}

/* im2col / direct: col (CKK x OHW) = w^T dy per sample, then col2im; direct: dx += w^T dy */
static size_t dx_gemm_work(const conv_geom *g, int team) {
    size_t col = gd_conv_direct(g) ? 0 : gd_pad16((size_t)(g->CKK * g->OHW));
    return (size_t)team * (col + halves(gd_bf16_work_size(g->OHW, g->O)));
}

static void dx_gemm(const conv_geom *g, const uint16_t *Ap, const float *dy, float *dx, float *work, int team) {
    const size_t col_f = gd_conv_direct(g) ? 0 : gd_pad16((size_t)(g->CKK * g->OHW));
    const size_t sl = col_f + halves(gd_bf16_work_size(g->OHW, g->O));
    const int64_t CHW = g->C * g->H * g->W;
#pragma omp parallel num_threads(team)
    {
        float *col = work + (size_t)gd_thread_id() * sl;
        uint16_t *bw = (uint16_t *)(col + col_f);
#pragma omp for schedule(dynamic)
        for (int64_t n = 0; n < g->N; n++) {
            const float *dyn = dy + n * g->O * g->OHW;
            if (gd_conv_direct(g)) {
                gd_gemm_bf16(g->CKK, g->OHW, g->O, Ap, dyn, g->OHW, 1.0f, dx + n * CHW, g->OHW, bw);
            } else {
                gd_gemm_bf16(g->CKK, g->OHW, g->O, Ap, dyn, g->OHW, 0.0f, col, g->OHW, bw);
                gd_col2im_serial(g, col, g->OHW, dx + n * CHW);
            }
        }
    }
}

static size_t fwd_cache(const conv_geom *g) { return gd_conv_winograd(g) ? wino_cache(g) : gemm_cache(g); }
static size_t dx_cache(const conv_geom *g) {
    if (gd_conv_winograd(g)) {
        conv_geom d = dx_geom(g);
        return wino_cache(&d);
    }
    return halves(gd_bf16_packed_size(g->CKK, g->O));
}

/* Not for trained weights: the packing would go stale after each optimizer step (the plan skips
 * weights flagged for gradients; this also catches one converted from f16 whose source is). */
int gd_conv_bf16(const gd_tensor *t) { return (t->flags & GD_FLAG_PLANNED_BF16) && !t->src[1]->grad; }

/* Scratch of the forward (and the input gradient); packing the weights borrows the same scratch. */
size_t gd_conv_bf16_work(const conv_geom *g, int team, int backward) {
    size_t w;
    if (!gd_conv_winograd(g)) {
        w = gemm_work(g, team);
        if (backward && dx_gemm_work(g, team) > w) w = dx_gemm_work(g, team);
        return w;
    }
    conv_geom d = dx_geom(g);
    w = wino_work(g, team);
    size_t p = wino_pack_scratch(g);
    if (p > w) w = p;
    if (backward && wino_work(&d, team) > w) w = wino_work(&d, team);
    return w;
}

/* The cache: the forward's packing, and with a backward the input gradient's after it. */
int gd_conv_bf16_plan(gd_tensor *t, const conv_geom *g, int backward) {
    size_t floats = fwd_cache(g) + (backward ? dx_cache(g) : 0);
    if (t->cache && t->cache_floats >= floats) return 0; /* planned again (another graph of its context) */
    free(t->cache);
    t->cache = aligned_alloc(64, sizeof(float) * gd_pad16(floats));
    t->cache_of = NULL;
    t->cache_floats = t->cache ? floats : 0;
    return t->cache ? 0 : -1;
}

static void pack_all(gd_tensor *t, const conv_geom *g, const float *w, float *work, int team) {
    const int wino = gd_conv_winograd(g);
    if (wino) wino_pack(g, w, 0, t->cache, work, team);
    else gemm_pack(g, w, t->cache, team);
    if (t->cache_floats >= fwd_cache(g) + dx_cache(g)) {
        uint16_t *dxp = (uint16_t *)((float *)t->cache + fwd_cache(g));
        if (wino) {
            conv_geom d = dx_geom(g);
            wino_pack(&d, w, 1, dxp, work, team);
        } else {
            const int64_t panels = (g->CKK + GD_BF16_MR - 1) / GD_BF16_MR, Kp = (g->O + 1) & ~(int64_t)1;
#pragma omp parallel for num_threads(team)
            for (int64_t p = 0; p < panels; p++) {
                int64_t m0 = p * GD_BF16_MR, mr = g->CKK - m0 < GD_BF16_MR ? g->CKK - m0 : GD_BF16_MR;
                gd_bf16_pack_at(w + m0, g->CKK, mr, g->O, dxp + m0 * Kp);
            }
        }
    }
    t->cache_of = w;
}

void gd_conv_bf16_fwd(gd_tensor *t, const conv_geom *g, const float *x, const float *w, const float *b, float *y, float *work,
                      int team) {
    if (t->cache_of != w) pack_all(t, g, w, work, team);
    if (gd_conv_winograd(g)) wino_fwd(g, x, t->cache, b, y, 0, work, team);
    else gemm_fwd(g, x, t->cache, b, y, work, team);
}

int gd_conv_bf16_dx(gd_tensor *t, const conv_geom *g, const float *w, const float *dy, float *dx, float *work, int team) {
    if (t->cache_floats < fwd_cache(g) + dx_cache(g)) return -1; /* planned without a backward */
    if (t->cache_of != w) pack_all(t, g, w, work, team);
    const uint16_t *dxp = (const uint16_t *)((const float *)t->cache + fwd_cache(g));
    if (gd_conv_winograd(g)) {
        conv_geom d = dx_geom(g);
        wino_fwd(&d, dy, dxp, NULL, dx, 1, work, team);
    } else {
        dx_gemm(g, dxp, dy, dx, work, team);
    }
    return 0;
}
