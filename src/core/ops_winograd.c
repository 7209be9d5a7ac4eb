/* Winograd F(2x2, 3x3) for 3x3 stride-1 pad-1 convolutions: 16 multiplies per 2x2 outputs
 * instead of 36. The transforms use only 0, +-1 and +-1/2, so results stay within a few ulps of
 * direct convolution (the op tests compare against naive loops in double). Here: the transforms
 * (and their adjoints, for the weight gradient in ops_conv_grad.c), one sample's convolution, and
 * the whole-batch convolution, which runs a sample per thread when the batch is large enough and
 * otherwise parallelises inside each sample (the 16 GEMMs of a tile chunk in parallel, one
 * single-threaded GEMM per thread). Both do the same arithmetic, so the same bits. */
#include "core/conv_internal.h"

#include <cblas.h>
#include <string.h>

/* Tiles per chunk are chosen so the transformed input and output stay near this many floats. */
#define WINO_CHUNK_FLOATS (8 << 20)
/* A sample per thread when each thread's V and M scratch stays under this many floats. */
#define WINO_SAMPLE_PAR_FLOATS (4 << 20)

int64_t gd_wino_chunk_tiles(int64_t C, int64_t O, int64_t P) {
    int64_t pc = WINO_CHUNK_FLOATS / (16 * (C + O));
    if (pc < 256) pc = 256;
    return pc < P ? pc : P;
}

/* The filter transform reads every weight and writes 16/9 as much, each run; it pays off only
 * when enough tiles share it (measured on ADM-64: slower than im2col at 16x16 and 8x8, batch 1).
 * Decided per sample, not per batch, so a sample's arithmetic (and image) does not depend on the
 * batch it runs in. */
int gd_winograd_worth(int64_t N, int64_t H, int64_t W) {
    (void)N;
    return ((H + 1) / 2) * ((W + 1) / 2) >= 128;
}

static size_t slice_floats(int64_t C, int64_t O, int64_t pc) { return gd_pad16((size_t)(16 * C * pc + 16 * O * pc)); }

/* A sample per thread: worth it with at least two samples, and affordable when each thread's
 * chunk scratch is small (big images keep the one shared chunk buffer). */
static int sample_parallel(int64_t N, int64_t C, int64_t O, int64_t H, int64_t W, int team) {
    int64_t P = ((H + 1) / 2) * ((W + 1) / 2), pc = gd_wino_chunk_tiles(C, O, P);
    return team > 1 && N >= 2 && slice_floats(C, O, pc) <= WINO_SAMPLE_PAR_FLOATS;
}

size_t gd_winograd_work_team(int64_t N, int64_t C, int64_t O, int64_t H, int64_t W, int team) {
    int64_t P = ((H + 1) / 2) * ((W + 1) / 2), pc = gd_wino_chunk_tiles(C, O, P);
    size_t u = gd_pad16((size_t)(16 * O * C)), one = slice_floats(C, O, pc);
    return u + (sample_parallel(N, C, O, H, W, team) ? (size_t)team * one : one);
}

size_t gd_winograd_work(int64_t N, int64_t C, int64_t O, int64_t H, int64_t W) {
    return gd_winograd_work_team(N, C, O, H, W, 1);
}

/* u = G g G^T for one 3x3 kernel g (row-major), written with stride `ld` between the 16 terms. */
static void filter_tf(const float *g, int flip, float *u, int64_t ld) {
    float k[9], t[4][3];
    for (int i = 0; i < 9; i++) k[i] = flip ? g[8 - i] : g[i];
    for (int c = 0; c < 3; c++) {
        t[0][c] = k[c];
        t[1][c] = 0.5f * (k[c] + k[3 + c] + k[6 + c]);
        t[2][c] = 0.5f * (k[c] - k[3 + c] + k[6 + c]);
        t[3][c] = k[6 + c];
    }
    for (int r = 0; r < 4; r++) {
        u[(r * 4 + 0) * ld] = t[r][0];
        u[(r * 4 + 1) * ld] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
        u[(r * 4 + 2) * ld] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
        u[(r * 4 + 3) * ld] = t[r][2];
    }
}

void gd_wino_filter_tf_for(const float *w, int flip, int64_t O, int64_t C, float *U) {
#pragma omp for collapse(2)
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++)
            filter_tf(flip ? w + (c * O + o) * 9 : w + (o * C + c) * 9, flip, U + o * C + c, O * C);
}

/* dg += G^T du G for one kernel (the adjoint of filter_tf without flip), du's terms ld apart. */
static void filter_tf_adjoint(const float *du, int64_t ld, float *dg) {
    float d[4][4], t[3][4];
    for (int r = 0; r < 4; r++)
        for (int s = 0; s < 4; s++) d[r][s] = du[(r * 4 + s) * ld];
    for (int s = 0; s < 4; s++) {
        t[0][s] = d[0][s] + 0.5f * (d[1][s] + d[2][s]);
        t[1][s] = 0.5f * (d[1][s] - d[2][s]);
        t[2][s] = 0.5f * (d[1][s] + d[2][s]) + d[3][s];
    }
    for (int a = 0; a < 3; a++) {
        dg[a * 3 + 0] += t[a][0] + 0.5f * (t[a][1] + t[a][2]);
        dg[a * 3 + 1] += 0.5f * (t[a][1] - t[a][2]);
        dg[a * 3 + 2] += 0.5f * (t[a][1] + t[a][2]) + t[a][3];
    }
}

void gd_wino_filter_tf_adjoint_for(const float *dU, int64_t O, int64_t C, float *dw) {
#pragma omp for
    for (int64_t oc = 0; oc < O * C; oc++) filter_tf_adjoint(dU + oc, O * C, dw + oc * 9);
}

/* ---- the data transforms, by runs of tiles in one tile row ----
 * Each has a portable per-tile version and, where the compiler targets AVX-512, one that takes 16
 * tiles per vector (masked at the row's end, so short rows of 14, 7 or 4 tiles still fill one
 * vector). The vector versions evaluate the same float expressions on the same operands, in the
 * same order, as the per-tile ones: the same bits (tests/test_train.c compares them). */

#ifdef GD_AVX512
#define WINO_AVX512 1
#define lane_mask gd_lane_mask
#define first_lanes gd_first_lanes
/* x[start + 2l] (even) and x[start + 2l + 1] (odd) for l = 0..15, zero outside [0, n) */
static inline void deinterleave(const float *x, int64_t start, int64_t n, __m512 *ev, __m512 *od) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 lo = _mm512_maskz_loadu_ps(lane_mask(start, n), x + start);
    __m512 hi = _mm512_maskz_loadu_ps(lane_mask(start + 16, n), x + start + 16);
    *ev = _mm512_permutex2var_ps(lo, ie, hi);
    *od = _mm512_permutex2var_ps(lo, io, hi);
}
/* -a, as the scalar unary minus (the sign bit flipped, zeros included) */
static inline __m512 neg(__m512 a) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32((int)0x80000000u)));
}
/* lanes 1..15 of a, then b's lane 0 */
static inline __m512 next_lane(__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(b), _mm512_castps_si512(a), 1));
}
#endif

/* V[k][c][p] = (B^T d B)[k] for the 4x4 input patches of tiles [ta, tb) of tile row gr of one
 * channel: tile t covers input columns 2t-1 .. 2t+2 of rows 2gr-1 .. 2gr+2 (zero outside).
 * v points at tile 0 of the row in plane 0; planes are ld apart. */
static void input_tf_row(const float *xc, int64_t H, int64_t W, int64_t tw, int64_t gr, int64_t ta, int64_t tb,
                         float *v, int64_t ld) {
#ifdef WINO_AVX512
    (void)tw;
    for (int64_t t0 = ta; t0 < tb; t0 += 16) {
        __mmask16 st = first_lanes(tb - t0);
        __m512 e[4], o[4], e1[4], o1[4]; /* columns 2t-1, 2t, 2t+1, 2t+2 of each of the four rows */
        for (int i = 0; i < 4; i++) {
            int64_t iy = 2 * gr - 1 + i;
            if (iy < 0 || iy >= H) {
                e[i] = o[i] = e1[i] = o1[i] = _mm512_setzero_ps();
                continue;
            }
            const float *xr = xc + iy * W;
            int64_t c0 = 2 * t0 - 1;
            __m512 ext;
            deinterleave(xr, c0, W, &e[i], &o[i]);
            deinterleave(xr, c0 + 32, W, &ext, &o1[i]); /* lane 0: columns 2(t0+16)-1, 2(t0+16) */
            e1[i] = next_lane(e[i], ext);
            o1[i] = next_lane(o[i], o1[i]);
        }
        __m512 ce[4], co[4], ce1[4], co1[4];
#define COLPASS(d, r)                        \
        r[0] = _mm512_sub_ps(d[0], d[2]);    \
        r[1] = _mm512_add_ps(d[1], d[2]);    \
        r[2] = _mm512_sub_ps(d[2], d[1]);    \
        r[3] = _mm512_sub_ps(d[1], d[3]);
        COLPASS(e, ce) COLPASS(o, co) COLPASS(e1, ce1) COLPASS(o1, co1)
#undef COLPASS
        for (int r = 0; r < 4; r++) {
            float *vr = v + (r * 4) * ld + t0;
            _mm512_mask_storeu_ps(vr, st, _mm512_sub_ps(ce[r], ce1[r]));
            _mm512_mask_storeu_ps(vr + ld, st, _mm512_add_ps(co[r], ce1[r]));
            _mm512_mask_storeu_ps(vr + 2 * ld, st, _mm512_sub_ps(ce1[r], co[r]));
            _mm512_mask_storeu_ps(vr + 3 * ld, st, _mm512_sub_ps(co[r], co1[r]));
        }
    }
#else
    /* four zero-padded input rows staged once: no bounds checks in the loop over tiles */
    int64_t wp = 2 * tw + 2;
    float rows[4][wp];
    for (int i = 0; i < 4; i++) {
        int64_t iy = 2 * gr - 1 + i;
        rows[i][0] = 0.0f;
        for (int64_t j = 1; j < wp; j++) rows[i][j] = iy >= 0 && iy < H && j - 1 < W ? xc[iy * W + j - 1] : 0.0f;
    }
    for (int64_t tx = ta; tx < tb; tx++) {
        float t[4][4];
        for (int j = 0; j < 4; j++) {
            float d0 = rows[0][2 * tx + j], d1 = rows[1][2 * tx + j], d2 = rows[2][2 * tx + j], d3 = rows[3][2 * tx + j];
            t[0][j] = d0 - d2;
            t[1][j] = d1 + d2;
            t[2][j] = d2 - d1;
            t[3][j] = d1 - d3;
        }
        for (int i = 0; i < 4; i++) {
            v[(i * 4 + 0) * ld + tx] = t[i][0] - t[i][2];
            v[(i * 4 + 1) * ld + tx] = t[i][1] + t[i][2];
            v[(i * 4 + 2) * ld + tx] = t[i][2] - t[i][1];
            v[(i * 4 + 3) * ld + tx] = t[i][1] - t[i][3];
        }
    }
#endif
}

/* the tiles of global tile row gr that fall in [p0, p0 + np): [ta, tb) */
static void row_span(int64_t gr, int64_t tw, int64_t p0, int64_t np, int64_t *ta, int64_t *tb) {
    *ta = gr * tw < p0 ? p0 - gr * tw : 0;
    *tb = gr * tw + tw > p0 + np ? p0 + np - gr * tw : tw;
}

void gd_wino_input_tf(const float *x, int64_t C, int64_t H, int64_t W, int64_t p0, int64_t np, float *V,
                      int64_t ld, int64_t col0) {
    int64_t tw = (W + 1) / 2, r0 = p0 / tw, r1 = (p0 + np + tw - 1) / tw;
    for (int64_t c = 0; c < C; c++)
        for (int64_t gr = r0; gr < r1; gr++) {
            int64_t ta, tb;
            row_span(gr, tw, p0, np, &ta, &tb);
            input_tf_row(x + c * H * W, H, W, tw, gr, ta, tb, V + c * ld + col0 + gr * tw - p0, C * ld);
        }
}

/* y = A^T m A + b for output channel o, tiles [p0, p0 + np) (cropped at odd edges); m planes
 * are pl apart, tile p of the chunk at column col0 + p. */
static void output_tf_channel(const float *M, int64_t ld, int64_t col0, int64_t O, int64_t o, int64_t H, int64_t W,
                              int64_t p0, int64_t np, float b, float *yo, int accumulate) {
    int64_t tw = (W + 1) / 2, pl = O * ld;
    const float *m = M + o * ld + col0;
#ifdef WINO_AVX512
    const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 vb = _mm512_set1_ps(b);
    for (int64_t p = 0; p < np;) {
        int64_t gp = p0 + p, ty = gp / tw, tx0 = gp % tw, len = tw - tx0 < np - p ? tw - tx0 : np - p;
        for (int64_t q = 0; q < len; q += 16) {
            __mmask16 st = first_lanes(len - q);
            __m512 r[2][4];
            for (int j = 0; j < 4; j++) {
                const float *mj = m + j * pl + p + q;
                __m512 m0 = _mm512_maskz_loadu_ps(st, mj), m1 = _mm512_maskz_loadu_ps(st, mj + 4 * pl),
                       m2 = _mm512_maskz_loadu_ps(st, mj + 8 * pl), m3 = _mm512_maskz_loadu_ps(st, mj + 12 * pl);
                r[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                r[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            int64_t c0 = 2 * (tx0 + q), cend = 2 * (tx0 + q) + 2 * (len - q < 16 ? len - q : 16);
            if (cend > W) cend = W;
            __mmask16 klo = lane_mask(0, cend - c0), khi = lane_mask(16, cend - c0); /* columns c0 + l < cend */
            for (int i = 0; i < 2; i++) {
                int64_t oy = 2 * ty + i;
                if (oy >= H) break;
                __m512 v0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r[i][0], r[i][1]), r[i][2]), vb);
                __m512 v1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r[i][1], r[i][2]), r[i][3]), vb);
                __m512 lo = _mm512_permutex2var_ps(v0, ilo, v1), hi = _mm512_permutex2var_ps(v0, ihi, v1);
                float *yr = yo + oy * W + c0;
                if (accumulate) {
                    lo = _mm512_add_ps(_mm512_maskz_loadu_ps(klo, yr), lo);
                    hi = _mm512_add_ps(_mm512_maskz_loadu_ps(khi, yr + 16), hi);
                }
                _mm512_mask_storeu_ps(yr, klo, lo);
                _mm512_mask_storeu_ps(yr + 16, khi, hi);
            }
        }
        p += len;
    }
#else
    for (int64_t p = 0; p < np; p++) {
        int64_t gp = p0 + p, ty = gp / tw, tx = gp % tw;
        const float *mp = m + p;
        float r[2][4];
        for (int j = 0; j < 4; j++) {
            float m0 = mp[(0 * 4 + j) * pl], m1 = mp[(1 * 4 + j) * pl], m2 = mp[(2 * 4 + j) * pl], m3 = mp[(3 * 4 + j) * pl];
            r[0][j] = m0 + m1 + m2;
            r[1][j] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2; i++) {
            int64_t oy = 2 * ty + i;
            if (oy >= H) break;
            float v0 = r[i][0] + r[i][1] + r[i][2] + b, v1 = r[i][1] - r[i][2] - r[i][3] + b;
            int64_t ox = 2 * tx;
            if (accumulate) {
                yo[oy * W + ox] += v0;
                if (ox + 1 < W) yo[oy * W + ox + 1] += v1;
            } else {
                yo[oy * W + ox] = v0;
                if (ox + 1 < W) yo[oy * W + ox + 1] = v1;
            }
        }
    }
#endif
}

void gd_wino_output_tf(const float *M, int64_t ld, int64_t col0, int64_t O, int64_t H, int64_t W, int64_t p0,
                       int64_t np, const float *bias, float *y, int accumulate) {
    for (int64_t o = 0; o < O; o++)
        output_tf_channel(M, ld, col0, O, o, H, W, p0, np, bias ? bias[o] : 0.0f, y + o * H * W, accumulate);
}

/* dM = A dY A^T per tile: t = dY A^T (2x4) by rows, A^T = [1 1 1 0; 0 1 -1 -1], then A t. */
void gd_wino_output_tf_adjoint(const float *dy, int64_t O, int64_t H, int64_t W, int64_t p0, int64_t np, float *dM,
                               int64_t ld, int64_t col0) {
    int64_t tw = (W + 1) / 2, pl = O * ld;
    for (int64_t o = 0; o < O; o++) {
        const float *d = dy + o * H * W;
        float *m = dM + o * ld + col0;
#ifdef WINO_AVX512
        for (int64_t p = 0; p < np;) {
            int64_t gp = p0 + p, ty = gp / tw, tx0 = gp % tw, len = tw - tx0 < np - p ? tw - tx0 : np - p;
            for (int64_t q = 0; q < len; q += 16) {
                __mmask16 st = first_lanes(len - q);
                int64_t c0 = 2 * (tx0 + q);
                __m512 a[2], bb[2];
                for (int i = 0; i < 2; i++) {
                    if (2 * ty + i >= H) {
                        a[i] = bb[i] = _mm512_setzero_ps();
                        continue;
                    }
                    deinterleave(d + (2 * ty + i) * W, c0, W, &a[i], &bb[i]);
                }
                __m512 t0[4] = {a[0], _mm512_add_ps(a[0], bb[0]), _mm512_sub_ps(a[0], bb[0]), neg(bb[0])};
                __m512 t1[4] = {a[1], _mm512_add_ps(a[1], bb[1]), _mm512_sub_ps(a[1], bb[1]), neg(bb[1])};
                for (int j = 0; j < 4; j++) {
                    float *mj = m + j * pl + p + q;
                    _mm512_mask_storeu_ps(mj, st, t0[j]);
                    _mm512_mask_storeu_ps(mj + 4 * pl, st, _mm512_add_ps(t0[j], t1[j]));
                    _mm512_mask_storeu_ps(mj + 8 * pl, st, _mm512_sub_ps(t0[j], t1[j]));
                    _mm512_mask_storeu_ps(mj + 12 * pl, st, neg(t1[j]));
                }
            }
            p += len;
        }
#else
        for (int64_t p = 0; p < np; p++) {
            int64_t gp = p0 + p, ty = gp / tw, tx = gp % tw, oy = 2 * ty, ox = 2 * tx;
            int rx = ox + 1 < W, ry = oy + 1 < H;
            float d00 = d[oy * W + ox], d01 = rx ? d[oy * W + ox + 1] : 0.0f;
            float d10 = ry ? d[(oy + 1) * W + ox] : 0.0f, d11 = rx && ry ? d[(oy + 1) * W + ox + 1] : 0.0f;
            float t0[4] = {d00, d00 + d01, d00 - d01, -d01}, t1[4] = {d10, d10 + d11, d10 - d11, -d11};
            for (int j = 0; j < 4; j++) {
                m[(0 * 4 + j) * pl + p] = t0[j];
                m[(1 * 4 + j) * pl + p] = t0[j] + t1[j];
                m[(2 * 4 + j) * pl + p] = t0[j] - t1[j];
                m[(3 * 4 + j) * pl + p] = -t1[j];
            }
        }
#endif
    }
}

/* The 16 GEMMs of one chunk: M[k] = U[k] V[k] (O x np, C deep), single-threaded each. */
static void chunk_gemm(const float *U, const float *V, float *M, int64_t O, int64_t C, int64_t np, int k) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)O, (int)np, (int)C, 1.0f, U + k * O * C, (int)C,
                V + k * C * np, (int)np, 0.0f, M + k * O * np, (int)np);
}

void gd_wino_conv_sample(const float *x, int64_t C, int64_t H, int64_t W, const float *U, int64_t O,
                         const float *bias, float *y, int accumulate, float *V, float *M) {
    int64_t P = ((H + 1) / 2) * ((W + 1) / 2), pc = gd_wino_chunk_tiles(C, O, P);
    for (int64_t p0 = 0; p0 < P; p0 += pc) {
        int64_t np = P - p0 < pc ? P - p0 : pc;
        gd_wino_input_tf(x, C, H, W, p0, np, V, np, 0);
        for (int k = 0; k < 16; k++) chunk_gemm(U, V, M, O, C, np, k);
        gd_wino_output_tf(M, np, 0, O, H, W, p0, np, bias, y, accumulate);
    }
}

/* y [N,O,H,W] (=, or += when accumulate) conv3x3(x [N,C,H,W], w, pad 1) + bias.
 * w is [O,C,3,3]; with flip it is a forward weight [C,O,3,3] used transposed and rotated, which
 * turns this into the input gradient of that forward convolution. `team`: the threads the work
 * was planned for (gd_winograd_work_team). */
void gd_winograd_conv3x3_team(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const float *w, int flip,
                              int64_t O, const float *bias, float *y, int accumulate, float *work, int team) {
    /* Tiles are chunked within each sample, never across samples, so every GEMM a sample takes
     * part in has the same shape whatever the batch: its result is then batch-independent. */
    int64_t th = (H + 1) / 2, tw = (W + 1) / 2, tpi = th * tw, P = tpi, pc = gd_wino_chunk_tiles(C, O, tpi);
    float *U = work, *V = U + gd_pad16((size_t)(16 * O * C)), *M = V + 16 * C * pc;
    if (sample_parallel(N, C, O, H, W, team)) {
        size_t sl = slice_floats(C, O, pc);
#pragma omp parallel num_threads(team)
        {
            gd_wino_filter_tf_for(w, flip, O, C, U);
            float *Vt = V + (size_t)gd_thread_id() * sl, *Mt = Vt + 16 * C * pc;
#pragma omp for schedule(dynamic)
            for (int64_t n = 0; n < N; n++)
                gd_wino_conv_sample(x + n * C * H * W, C, H, W, U, O, bias, y + n * O * H * W, accumulate, Vt, Mt);
        }
        return;
    }
#pragma omp parallel if (O * C > 64)
    gd_wino_filter_tf_for(w, flip, O, C, U);

    for (int64_t n = 0; n < N; n++, x += C * H * W, y += O * H * W)
    for (int64_t p0 = 0; p0 < P; p0 += pc) {
        int64_t np = P - p0 < pc ? P - p0 : pc;
        int64_t r0 = p0 / tw, r1 = (p0 + np + tw - 1) / tw; /* global tile rows touched */
#pragma omp parallel for collapse(2)
        for (int64_t c = 0; c < C; c++)
            for (int64_t gr = r0; gr < r1; gr++) {
                int64_t ta, tb;
                row_span(gr, tw, p0, np, &ta, &tb);
                input_tf_row(x + c * H * W, H, W, tw, gr, ta, tb, V + c * np + gr * tw - p0, C * np);
            }
#pragma omp parallel for schedule(dynamic)
        for (int k = 0; k < 16; k++) chunk_gemm(U, V, M, O, C, np, k);
#pragma omp parallel for
        for (int64_t o = 0; o < O; o++)
            output_tf_channel(M, np, 0, O, o, H, W, p0, np, bias ? bias[o] : 0.0f, y + o * H * W, accumulate);
    }
}

void gd_winograd_conv3x3(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const float *w, int flip,
                         int64_t O, const float *bias, float *y, int accumulate, float *work) {
    gd_winograd_conv3x3_team(x, N, C, H, W, w, flip, O, bias, y, accumulate, work, 1);
}
