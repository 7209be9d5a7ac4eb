/* What the conv2d forward (ops_conv.c), its backward (ops_conv_grad.c) and Winograd
 * (ops_winograd.c) share: geometry, im2col, scratch slices per thread, the Winograd transforms. */
#ifndef GD_CONV_INTERNAL_H
#define GD_CONV_INTERNAL_H
#include "core/gd_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* KH x KW kernels (Inception's 1x7 and 7x1 among them) with per-axis padding PH, PW */
typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW, OHW, CKK, S, PH, PW;
} conv_geom;

conv_geom gd_conv_geom(const gd_tensor *t);
int gd_conv_direct(const conv_geom *g);   /* 1x1, stride 1, no padding: the input is the GEMM operand */
int gd_conv_winograd(const conv_geom *g); /* the forward takes Winograd F(2x2,3x3) */
int gd_conv_3x3_same(const conv_geom *g); /* 3x3, stride 1, pad 1 (any size) */

/* The bf16 forward (conv_bf16.c): whether the op was planned for it, its scratch, its cache of
 * packed weights (allocated by the plan: 0, or -1 out of memory), the forward. */
int gd_conv_bf16(const gd_tensor *t);
size_t gd_conv_bf16_work(const conv_geom *g, int team, int backward);
int gd_conv_bf16_plan(gd_tensor *t, const conv_geom *g, int backward);
void gd_conv_bf16_fwd(gd_tensor *t, const conv_geom *g, const float *x, const float *w, const float *b, float *y, float *work,
                      int team);
/* dx += the input gradient in bf16 (an op planned with its backward); -1 when it was not */
int gd_conv_bf16_dx(gd_tensor *t, const conv_geom *g, const float *w, const float *dy, float *dx, float *work, int team);

/* The int8 forward of a W8A8 weight leaf (conv_s8.c): whether the op was planned for it, its
 * scratch, the packed weights in the leaf's cache (allocated by the plan: 0, or -1), the forward. */
int gd_conv_s8(const gd_tensor *t);
/* the leaf behind a conv's weight, through views (a Conv1d weight reshaped for conv2d): the one
 * that carries gd_quant and the packed cache */
gd_tensor *gd_conv_weight_leaf(const gd_tensor *t);
size_t gd_conv_s8_work(const conv_geom *g, int team);
int gd_conv_s8_plan(gd_tensor *t, const conv_geom *g);
void gd_conv_s8_fwd(gd_tensor *t, const conv_geom *g, const float *x, const float *b, float *y, float *work, int team);

/* The backward's scratch (ops_conv_grad.c) for a team of `team` threads. */
size_t gd_conv_grad_work(const conv_geom *g, int team);

/* col[(c*KH + ky)*KW + kx][ld-strided column oy*OW + ox] = x[c][oy*S - PH + ky][ox*S - PW + kx] for
 * one sample, serially (the caller owns the thread) */
void gd_im2col_serial(const conv_geom *g, const float *x, float *col, int64_t ld);
/* inside a parallel region: this thread's share of the channels of one sample's im2col (ld = OHW),
 * in one call so the masks are computed once per thread, not per channel; then a barrier */
void gd_im2col_team(const conv_geom *g, const float *x, float *col);
/* dx[c] += col2im(col) for one sample, col rows ld apart, serially */
void gd_col2im_serial(const conv_geom *g, const float *col, int64_t ld, float *dx);

/* The team a conv op was planned for: its scratch holds one slice per thread of it (t->ip[3],
 * recorded by gd_work_conv2d), and no region of the op runs wider. Which thread does which
 * sample never changes a result: each sample's (or sample group's) arithmetic is fixed. */
static inline int gd_conv_team(const gd_tensor *t) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return t->ip[3] > 0 && t->ip[3] < n ? t->ip[3] : n < 1 ? 1 : n;
#else
    (void)t;
    return 1;
#endif
}
static inline int gd_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static inline int gd_planned_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
#ifdef __AVX512F__
#include <immintrin.h>
#define GD_AVX512 1
/* lanes l with 0 <= start + l < n */
static inline __mmask16 gd_lane_mask(int64_t start, int64_t n) {
    __m512i pos = _mm512_add_epi32(_mm512_set1_epi32((int)start),
                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    return _mm512_cmpge_epi32_mask(pos, _mm512_setzero_si512()) & _mm512_cmplt_epi32_mask(pos, _mm512_set1_epi32((int)n));
}
/* the first min(k, 16) lanes */
static inline __mmask16 gd_first_lanes(int64_t k) { return k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << k) - 1); }
#endif

/* floats rounded up to a 64-byte multiple, so every slice starts cache-line aligned */
static inline size_t gd_pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- Winograd F(2x2, 3x3) pieces (ops_winograd.c) ----
 * Tiles: th x tw = ceil(H/2) x ceil(W/2) per sample, numbered row-major. Transformed data are
 * 16 planes of rows: plane k, row r at base[(k * rows + r) * ld + col]. */
int64_t gd_wino_chunk_tiles(int64_t C, int64_t O, int64_t P);
/* U[k][o][c] (plane k: O rows of C) = G w[o][c] G^T; flip: w is [C][O][3][3] used transposed and
 * rotated (the input gradient's filter). Parallel over (o, c) inside the caller's region (omp for). */
void gd_wino_filter_tf_for(const float *w, int flip, int64_t O, int64_t C, float *U);
/* V[k][c][col0 + p] = (B^T d B)[k] of tiles p0..p0+np-1 of one sample x [C,H,W], serially. */
void gd_wino_input_tf(const float *x, int64_t C, int64_t H, int64_t W, int64_t p0, int64_t np, float *V,
                      int64_t ld, int64_t col0);
/* y[o] (=, or += when accumulate) A^T m A + bias for tiles p0..p0+np-1 (cropped at odd edges);
 * M planes of O rows, columns col0.., ld apart; serially. */
void gd_wino_output_tf(const float *M, int64_t ld, int64_t col0, int64_t O, int64_t H, int64_t W, int64_t p0,
                       int64_t np, const float *bias, float *y, int accumulate);
/* The adjoint of gd_wino_output_tf: dM[k][o][col0 + p] = (A dY A^T)[k] of dy's tiles (zero past
 * odd edges); serially. */
void gd_wino_output_tf_adjoint(const float *dy, int64_t O, int64_t H, int64_t W, int64_t p0, int64_t np, float *dM,
                               int64_t ld, int64_t col0);
/* dw[o][c] += G^T dU[o][c] G, dU in U's layout; parallel over (o, c) (omp for, in a region). */
void gd_wino_filter_tf_adjoint_for(const float *dU, int64_t O, int64_t C, float *dw);
/* gd_winograd_conv3x3 (gd_internal.h) for a planned team: its scratch is gd_winograd_work_team's. */
size_t gd_winograd_work_team(int64_t N, int64_t C, int64_t O, int64_t H, int64_t W, int team);
void gd_winograd_conv3x3_team(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const float *w, int flip,
                              int64_t O, const float *bias, float *y, int accumulate, float *work, int team);
/* One sample of the Winograd convolution (see gd_winograd_conv3x3), serially, with V and M
 * scratch of 16*C*pc and 16*O*pc floats. */
void gd_wino_conv_sample(const float *x, int64_t C, int64_t H, int64_t W, const float *U, int64_t O,
                         const float *bias, float *y, int accumulate, float *V, float *M);
#endif
