/* conv2d backward: input, weight and bias gradients in one parallel region per op.
 *
 * Determinism. The weight gradient is a sum over the batch: it is split into G groups of
 * consecutive samples (G and the groups depend only on the batch size and the layer's shape),
 * each group's partial sum is accumulated by one thread at a time in a fixed order, and the
 * partials are added in group order. Which thread runs which group never matters, so the result is
 * the same for any thread count and schedule. Inside a group, chunks of S samples (S from the
 * layer's shape) are laid side by side as one wide GEMM operand: one GEMM per chunk instead of one
 * per sample, deep enough for OpenBLAS's kernels even at 7x7. 3x3 "same" convolutions take the
 * weight gradient in the Winograd domain, dU[k] = sum_tiles dM[k] V[k]^T with V the forward's input
 * transform and dM the output transform's adjoint applied to dy, then dw = G^T dU G: 16 products
 * per tile and (o, c) instead of 36 per 2x2 outputs.
 *
 * The input gradient of a sample is computed exactly as the forward computes a sample (the same
 * GEMM tiles or Winograd chunks, one sample at a time), so it does not depend on the batch or the
 * thread count, and classifier guidance (which needs only it) gives the same bits as before.
 * The bias gradient is a per-channel double sum in a fixed order (gd_sum_f64 per sample, samples in
 * order). */
#include "core/conv_internal.h"
#include "core/vmath.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define TILE_M 64 /* as gd_sgemm_tiled: the input gradient's tiles */
#define TILE_N 512
#define CHUNK_COLS 192         /* a chunk takes whole samples until its GEMMs are this deep */
#define MAX_GROUPS 8           /* partial weight-gradient sums, reduced in group order */
#define WINO_DW_MIN_TILES 32   /* 3x3 same: Winograd weight gradient from this many tiles per sample
                                  (measured: im2col is faster at 7x7, Winograd at 14x14 and up) */
#define TEAM_SCRATCH (32 << 20) /* floats of per-thread scratch a team may hold in all */

typedef struct {
    int wino_dw, wino_dx, direct;
    int64_t P;       /* columns per sample: tiles (Winograd weight gradient) or OHW */
    int64_t S;       /* samples per chunk */
    int64_t pcw;     /* Winograd weight gradient with S == 1: tiles per chunk (<= P) */
    int64_t nc;      /* GEMM depth of one chunk */
    int64_t chunks, groups;
    int64_t pcx;     /* Winograd input gradient: tiles per chunk */
    size_t part;     /* floats of one group's partial sum */
    size_t udx;      /* floats of the input gradient's filter transform */
    size_t slice;    /* floats of one thread's scratch */
} bwd_plan;

static bwd_plan make_plan(const conv_geom *g) {
    bwd_plan p;
    memset(&p, 0, sizeof p);
    p.direct = gd_conv_direct(g);
    p.wino_dx = gd_conv_winograd(g);
    int64_t tiles = ((g->H + 1) / 2) * ((g->W + 1) / 2);
    p.wino_dw = gd_conv_3x3_same(g) && tiles >= WINO_DW_MIN_TILES && (p.wino_dx || getenv("GD_NO_WINOGRAD") == NULL);
    p.P = p.wino_dw ? tiles : g->OHW;
    p.S = p.P >= CHUNK_COLS ? 1 : (CHUNK_COLS + p.P - 1) / p.P;
    if (p.S > g->N) p.S = g->N;
    if (p.S < 1) p.S = 1;
    p.pcw = p.wino_dw ? gd_wino_chunk_tiles(g->C, g->O, p.P) : p.P;
    p.nc = p.S > 1 ? p.S * p.P : p.pcw;
    p.chunks = (g->N + p.S - 1) / p.S;
    p.groups = p.chunks < MAX_GROUPS ? p.chunks : MAX_GROUPS;
    p.part = gd_pad16((size_t)(p.wino_dw ? 16 * g->O * g->C : g->O * g->CKK));
    size_t sw = p.wino_dw ? (size_t)(16 * (g->C + g->O) * p.nc)
                          : (size_t)((p.direct && p.S == 1 ? 0 : g->CKK) + (p.S > 1 ? g->O : 0)) * (size_t)p.nc;
    size_t sx = 0;
    if (p.wino_dx) {
        int64_t tx = ((g->H + 1) / 2) * ((g->W + 1) / 2);
        p.pcx = gd_wino_chunk_tiles(g->O, g->C, tx);
        p.udx = gd_pad16((size_t)(16 * g->O * g->C));
        sx = (size_t)(16 * (g->C + g->O) * p.pcx);
    } else if (!p.direct) {
        sx = (size_t)(g->CKK * g->OHW);
    }
    p.slice = gd_pad16(sw > sx ? sw : sx);
    return p;
}

/* The team the scratch holds slices for: at most `team`, within TEAM_SCRATCH. */
static int scratch_team(const bwd_plan *p, int team) {
    int64_t fit = p->slice ? (int64_t)(TEAM_SCRATCH / p->slice) : team;
    if (fit < 1) fit = 1;
    return fit < team ? (int)fit : team;
}

size_t gd_conv_grad_work(const conv_geom *g, int team) {
    bwd_plan p = make_plan(g);
    return p.udx + (size_t)p.groups * p.part + (size_t)scratch_team(&p, team) * p.slice;
}

/* ---- one chunk's weight-gradient contribution, into a group's partial (beta 0 starts it) ---- */

static void dw_chunk_wino(const conv_geom *g, const bwd_plan *p, const float *x, const float *dy, int64_t n0,
                          int64_t ns, int64_t p0, int64_t np, float *part, float beta, float *scr) {
    int64_t nc = ns * np, HW = g->H * g->W;
    float *V = scr, *dM = scr + 16 * g->C * nc;
    for (int64_t s = 0; s < ns; s++) {
        gd_wino_input_tf(x + (n0 + s) * g->C * HW, g->C, g->H, g->W, p0, np, V, nc, s * np);
        gd_wino_output_tf_adjoint(dy + (n0 + s) * g->O * HW, g->O, g->H, g->W, p0, np, dM, nc, s * np);
    }
    for (int k = 0; k < 16; k++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->O, (int)g->C, (int)nc, 1.0f, dM + k * g->O * nc,
                    (int)nc, V + k * g->C * nc, (int)nc, beta, part + k * g->O * g->C, (int)g->C);
}

static void dw_chunk_im2col(const conv_geom *g, const bwd_plan *p, const float *x, const float *dy, int64_t n0,
                            int64_t ns, float *part, float beta, float *scr) {
    int64_t nc = ns * g->OHW, CHW = g->C * g->H * g->W;
    const float *B = x + n0 * CHW, *A = dy + n0 * g->O * g->OHW;
    float *col = scr;
    if (!(p->direct && ns == 1)) {
        for (int64_t s = 0; s < ns; s++) gd_im2col_serial(g, x + (n0 + s) * CHW, col + s * g->OHW, nc);
        B = col;
    }
    if (ns > 1) {
        float *dyc = col + g->CKK * nc;
        for (int64_t s = 0; s < ns; s++)
            for (int64_t o = 0; o < g->O; o++)
                memcpy(dyc + o * nc + s * g->OHW, dy + ((n0 + s) * g->O + o) * g->OHW, sizeof(float) * (size_t)g->OHW);
        A = dyc;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->O, (int)g->CKK, (int)nc, 1.0f, A, (int)nc, B, (int)nc,
                beta, part, (int)g->CKK);
}

/* ---- one sample's input gradient, as the forward computes a sample ---- */

static void dx_sample(const conv_geom *g, const bwd_plan *p, const float *w, const float *Udx, const float *dyn,
                      float *dxn, float *scr) {
    if (p->wino_dx) {
        gd_wino_conv_sample(dyn, g->O, g->H, g->W, Udx, g->C, NULL, dxn, 1, scr, scr + 16 * g->O * p->pcx);
        return;
    }
    /* the tiles of gd_sgemm_tiled(1, 0, CKK, OHW, O, w, CKK, dy, OHW, beta, C, OHW), in order */
    float *C = p->direct ? dxn : scr;
    float beta = p->direct ? 1.0f : 0.0f;
    int64_t M = g->CKK, N = g->OHW, tm = (M + TILE_M - 1) / TILE_M, tn = (N + TILE_N - 1) / TILE_N;
    for (int64_t t = 0; t < tm * tn; t++) {
        int64_t m0 = t / tn * TILE_M, n0 = t % tn * TILE_N;
        int64_t mt = M - m0 < TILE_M ? M - m0 : TILE_M, nt = N - n0 < TILE_N ? N - n0 : TILE_N;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)mt, (int)nt, (int)g->O, 1.0f, w + m0, (int)g->CKK,
                    dyn + n0, (int)N, beta, C + m0 * N + n0, (int)N);
    }
    if (!p->direct) gd_col2im_serial(g, scr, g->OHW, dxn);
}

/* The input gradient one sample after the other, each parallel inside (the team's scratch could
 * not hold a slice per thread): the same tiles, so the same bits. */
static void dx_serial_samples(const conv_geom *g, const bwd_plan *p, const float *w, const float *dy, float *dx,
                              float *work) {
    if (p->wino_dx) {
        gd_winograd_conv3x3_team(dy, g->N, g->O, g->H, g->W, w, 1, g->C, NULL, dx, 1, work, 1);
        return;
    }
    int64_t CHW = g->C * g->H * g->W;
    for (int64_t n = 0; n < g->N; n++) {
        const float *dyn = dy + n * g->O * g->OHW;
        if (p->direct) {
            gd_sgemm_tiled(1, 0, g->CKK, g->OHW, g->O, w, g->CKK, dyn, g->OHW, 1.0f, dx + n * CHW, g->OHW);
        } else {
            gd_sgemm_tiled(1, 0, g->CKK, g->OHW, g->O, w, g->CKK, dyn, g->OHW, 0.0f, work, g->OHW);
            /* each thread its share of the channels in one call (the masks once, not per channel) */
#pragma omp parallel
            {
                int nt = omp_get_num_threads(), id = gd_thread_id();
                int64_t c0 = g->C * id / nt, c1 = g->C * (id + 1) / nt;
                conv_geom part = *g;
                part.C = c1 - c0, part.CKK = part.C * g->KH * g->KW;
                if (part.C > 0)
                    gd_col2im_serial(&part, work + c0 * g->KH * g->KW * g->OHW, g->OHW, dx + n * CHW + c0 * g->H * g->W);
            }
        }
    }
}

/* chunk k of group gi: [k0, k1) */
static void group_chunks(const bwd_plan *p, int64_t gi, int64_t *k0, int64_t *k1) {
    *k0 = gi * p->chunks / p->groups;
    *k1 = (gi + 1) * p->chunks / p->groups;
}

void gd_bwd_conv2d(gd_tensor *t, float *work) {
    conv_geom g = gd_conv_geom(t);
    bwd_plan p = make_plan(&g);
    gd_tensor *X = t->src[0], *Wt = t->src[1], *Bt = t->src[2];
    const float *x = F32(X), *w = F32(Wt), *dy = t->grad;
    float *dx = X->grad, *dw = Wt->grad, *db = Bt ? Bt->grad : NULL;
    int team = gd_conv_team(t), steam = scratch_team(&p, team);
    /* bf16 (an inference mode): the input gradient alone, as guidance asks for it */
    if (dx && !dw && !db && gd_conv_bf16(t) && !gd_conv_bf16_dx(t, &g, w, dy, dx, work, team)) return;
    float *Udx = work, *parts = work + p.udx, *scr0 = parts + (size_t)p.groups * p.part;
    /* a slice per thread, or the input gradient apart when the scratch holds too few slices */
    int dx_apart = dx && steam < team && team > 1;
    if (dx_apart) { /* before the weight gradient: the Winograd path's scratch overlaps the partials */
        dx_serial_samples(&g, &p, w, dy, dx, p.wino_dx ? work : scr0);
        dx = NULL;
    }
    if (!dx && !dw && !db) return;
    int64_t HW = g.H * g.W, CHW = g.C * HW;
#pragma omp parallel num_threads(steam)
    {
        float *scr = scr0 + (size_t)gd_thread_id() * p.slice;
        if (dx && p.wino_dx) gd_wino_filter_tf_for(w, 1, g.C, g.O, Udx);
        if (db) {
#pragma omp for nowait
            for (int64_t o = 0; o < g.O; o++) {
                double s = 0;
                for (int64_t n = 0; n < g.N; n++) s += gd_sum_f64(dy + (n * g.O + o) * g.OHW, g.OHW);
                db[o] += (float)s;
            }
        }
        /* one work list: the weight-gradient groups first (the longer items), then the samples'
         * input gradients, so that no thread waits between the two */
        int64_t nw = dw ? p.groups : 0, nx = dx ? g.N : 0;
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < nw + nx; item++) {
            if (item >= nw) {
                int64_t n = item - nw;
                dx_sample(&g, &p, w, Udx, dy + n * g.O * g.OHW, dx + n * CHW, scr);
                continue;
            }
            int64_t gi = item, k0, k1;
            group_chunks(&p, gi, &k0, &k1);
            float *part = parts + (size_t)gi * p.part, beta = 0.0f;
            for (int64_t k = k0; k < k1; k++) {
                int64_t n0 = k * p.S, ns = g.N - n0 < p.S ? g.N - n0 : p.S;
                if (!p.wino_dw) {
                    dw_chunk_im2col(&g, &p, x, dy, n0, ns, part, beta, scr);
                    beta = 1.0f;
                    continue;
                }
                for (int64_t p0 = 0; p0 < p.P; p0 += p.pcw) { /* several tile chunks only when S == 1 */
                    int64_t np = p.P - p0 < p.pcw ? p.P - p0 : p.pcw;
                    dw_chunk_wino(&g, &p, x, dy, n0, ns, p0, np, part, beta, scr);
                    beta = 1.0f;
                }
            }
        }
        if (dw) {
            /* the partials, added in group order */
            int64_t G = p.groups;
            if (p.wino_dw) {
                int64_t OC = g.O * g.C;
#pragma omp for
                for (int64_t i = 0; i < 16 * OC; i++) {
                    float s = parts[i];
                    for (int64_t gi = 1; gi < G; gi++) s += parts[(size_t)gi * p.part + (size_t)i];
                    parts[i] = s;
                }
                gd_wino_filter_tf_adjoint_for(parts, g.O, g.C, dw);
            } else {
#pragma omp for
                for (int64_t i = 0; i < g.O * g.CKK; i++) {
                    float s = parts[i];
                    for (int64_t gi = 1; gi < G; gi++) s += parts[(size_t)gi * p.part + (size_t)i];
                    dw[i] += s;
                }
            }
        }
    }
}
