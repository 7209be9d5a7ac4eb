/* Winograd F(2x2, 3x3) for 3x3 stride-1 pad-1 convolutions: 16 multiplies per 2x2 outputs
 * instead of 36. The transforms use only 0, +-1 and +-1/2, so results stay within a few ulps of
 * direct convolution (the op tests compare against naive loops in double). The 16 GEMMs of a
 * tile chunk run in parallel, one single-threaded GEMM per thread. */
#include "core/gd_internal.h"

#include <cblas.h>
#include <string.h>

/* Tiles per chunk are chosen so the transformed input and output stay near this many floats. */
#define WINO_CHUNK_FLOATS (8 << 20)

static int64_t chunk_tiles(int64_t C, int64_t O, int64_t P) {
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

size_t gd_winograd_work(int64_t N, int64_t C, int64_t O, int64_t H, int64_t W) {
    (void)N;
    int64_t P = ((H + 1) / 2) * ((W + 1) / 2), pc = chunk_tiles(C, O, P);
    return (size_t)(16 * O * C + 16 * C * pc + 16 * O * pc);
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

/* y [N,O,H,W] (=, or += when accumulate) conv3x3(x [N,C,H,W], w, pad 1) + bias.
 * w is [O,C,3,3]; with flip it is a forward weight [C,O,3,3] used transposed and rotated, which
 * turns this into the input gradient of that forward convolution. */
void gd_winograd_conv3x3(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const float *w, int flip,
                         int64_t O, const float *bias, float *y, int accumulate, float *work) {
    /* Tiles are chunked within each sample, never across samples, so every GEMM a sample takes
     * part in has the same shape whatever the batch: its result is then batch-independent. */
    int64_t th = (H + 1) / 2, tw = (W + 1) / 2, tpi = th * tw, P = tpi, pc = chunk_tiles(C, O, tpi);
    float *U = work, *V = U + 16 * O * C, *M = V + 16 * C * pc;
#pragma omp parallel for collapse(2) if (O * C > 64)
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++)
            filter_tf(flip ? w + (c * O + o) * 9 : w + (o * C + c) * 9, flip, U + o * C + c, O * C);

    for (int64_t n = 0; n < N; n++, x += C * H * W, y += O * H * W)
    for (int64_t p0 = 0; p0 < P; p0 += pc) {
        int64_t np = P - p0 < pc ? P - p0 : pc;
        /* V[k][c][p] = (B^T d B)[k] for the 4x4 input patch of tile p. Work goes by tile rows:
         * four zero-padded input rows are staged once, so the inner loop over tiles has no
         * bounds checks and writes each of the 16 streams contiguously. */
        int64_t r0 = p0 / tw, r1 = (p0 + np + tw - 1) / tw; /* global tile rows touched */
#pragma omp parallel for collapse(2)
        for (int64_t c = 0; c < C; c++) {
            for (int64_t gr = r0; gr < r1; gr++) {
                int64_t ty = gr, wp = 2 * tw + 2;
                float rows[4][wp];
                const float *xc = x + c * H * W;
                for (int i = 0; i < 4; i++) {
                    int64_t iy = 2 * ty - 1 + i;
                    rows[i][0] = 0.0f;
                    for (int64_t j = 1; j < wp; j++) rows[i][j] = iy >= 0 && iy < H && j - 1 < W ? xc[iy * W + j - 1] : 0.0f;
                }
                int64_t ta = gr * tw < p0 ? p0 - gr * tw : 0, tb = gr * tw + tw > p0 + np ? p0 + np - gr * tw : tw;
                float *v = V + c * np + gr * tw - p0;
                int64_t ld = C * np;
                for (int64_t tx = ta; tx < tb; tx++) {
                    float t[4][4];
                    for (int j = 0; j < 4; j++) {
                        float d0 = rows[0][2 * tx + j], d1 = rows[1][2 * tx + j], d2 = rows[2][2 * tx + j],
                              d3 = rows[3][2 * tx + j];
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
            }
        }
#pragma omp parallel for schedule(dynamic)
        for (int k = 0; k < 16; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)O, (int)np, (int)C, 1.0f, U + k * O * C,
                        (int)C, V + k * C * np, (int)np, 0.0f, M + k * O * np, (int)np);
        /* y = A^T m A per tile, cropped at odd edges */
#pragma omp parallel for
        for (int64_t o = 0; o < O; o++) {
            float b = bias ? bias[o] : 0.0f;
            for (int64_t p = 0; p < np; p++) {
                int64_t gp = p0 + p, ty = gp / tw, tx = gp % tw;
                const float *m = M + o * np + p;
                int64_t ld = O * np;
                float r[2][4];
                for (int j = 0; j < 4; j++) {
                    float m0 = m[(0 * 4 + j) * ld], m1 = m[(1 * 4 + j) * ld], m2 = m[(2 * 4 + j) * ld],
                          m3 = m[(3 * 4 + j) * ld];
                    r[0][j] = m0 + m1 + m2;
                    r[1][j] = m1 - m2 - m3;
                }
                float *yo = y + o * H * W;
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
        }
    }
}
