/* int8 GEMM, u8 x s8 -> int32, dequantized to fp32. See gemm_s8.h.
 *
 * Layout (BLIS-style): A is packed once into panels of MR rows, four k of a row adjacent,
 * [panel][k/4][MR][4]; B is quantized and packed per call, all of K by NC columns at a time, into
 * panels of NR columns, [panel][k/4][NR][4], so one zmm holds 16 columns' four k-bytes. One
 * VPDPBUSD then multiplies them (the unsigned operand) by a broadcast four bytes of an A row (the
 * signed one) and adds the four products to each column's int32 lane. A micro-kernel runs a whole
 * MR x NR tile over the whole K in its 24 accumulators, so the sums never leave int32 and are
 * converted once; K is not blocked, NC shrinks with K instead so that the packed B block stays in
 * L2 while every A panel streams past it. sum_k A q - zp rowsum is sum_k A (q - zp), the
 * product of A and the dequantized B without a 9-bit operand. The scalar path does the same
 * integer sums (modulo 2^32, as the lanes wrap, though within the header's bound nothing wraps)
 * and the same fmaf epilogue, so both give the same bits; the two quantizers differ in method but
 * not in result (tests/test_gemm_s8.c). */
#include "core/gemm_s8.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GD_S8_X86 1
#endif

#define MR GD_S8_MR
#define NR GD_S8_NR
/* bytes of packed B per block: half of the 1 MB L2 (Zen 4), the rest for the A panel streaming
 * through, C's rows and the fp32 B being read */
#define B_BLOCK_BYTES (448 << 10)
#define NC_MAX 2048 /* columns per block for small K, where the bound above would allow more */

static int64_t k4(int64_t k) { return (k + 3) & ~(int64_t)3; }

/* columns of B per block */
static int64_t block_cols(int64_t K) {
    int64_t Kp = k4(K);
    if (Kp == 0) return NC_MAX;
    int64_t nc = B_BLOCK_BYTES / (Kp * NR) * NR;
    return nc < NR ? NR : nc > NC_MAX ? NC_MAX : nc;
}

/* the definition: double holds rint(y) + zp exactly wherever it matters, so any zp works here */
static inline uint8_t quant1(float x, float inv_scale, int zp) {
    float y = x * inv_scale;
    double v = (y == y ? (double)nearbyintf(y) : 0.0) + (double)zp;
    return v <= 0.0 ? 0 : v >= 255.0 ? 255 : (uint8_t)v;
}

int gd_s8_native(void) {
#ifdef GD_S8_X86
    static int native = -1;
    if (native < 0) {
        __builtin_cpu_init();
        native = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") ? 1 : 0;
    }
    return native;
#else
    return 0;
#endif
}

size_t gd_s8_packed_size(int64_t M, int64_t K) { return (size_t)((M + MR - 1) / MR * MR) * (size_t)k4(K); }

void gd_s8_pack_a(const int8_t *A, int64_t lda, int64_t M, int64_t K, int8_t *Ap, int32_t *rowsum) {
    const int64_t Kp = k4(K), panels = (M + MR - 1) / MR;
    for (int64_t p = 0; p < panels; p++)
        for (int64_t q = 0; q < Kp / 4; q++)
            for (int64_t r = 0; r < MR; r++) {
                int64_t m = p * MR + r;
                int8_t *d = Ap + ((p * (Kp / 4) + q) * MR + r) * 4;
                for (int i = 0; i < 4; i++) d[i] = m < M && 4 * q + i < K ? A[m * lda + 4 * q + i] : 0;
            }
    for (int64_t m = 0; m < M; m++) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++) s += A[m * lda + k];
        rowsum[m] = s;
    }
}

size_t gd_s8_work_size(int64_t N, int64_t K) {
    int64_t nc = block_cols(K), np = (N + NR - 1) / NR * NR;
    return (size_t)k4(K) * (size_t)(np < nc ? np : nc);
}

/* all of K and columns n0..n0+nc of B into NR-column panels; padding (k >= K, columns past nc)
 * is the quantized 0.0, as the vector path's zeroed loads give */
static void pack_b_scalar(const float *B, int64_t ldb, int64_t K, int64_t n0, int64_t nc, float inv, int zp, uint8_t *Bp) {
    const int64_t nq = k4(K) / 4;
    const uint8_t pad = quant1(0.0f, inv, zp);
    for (int64_t j = 0; j < (nc + NR - 1) / NR; j++)
        for (int64_t q = 0; q < nq; q++)
            for (int64_t c = 0; c < NR; c++) {
                int64_t n = j * NR + c;
                uint8_t *d = Bp + ((j * nq + q) * NR + c) * 4;
                for (int i = 0; i < 4; i++) {
                    int64_t k = 4 * q + i;
                    d[i] = k < K && n < nc ? quant1(B[k * ldb + n0 + n], inv, zp) : pad;
                }
            }
}

/* one MR x NR tile of C over nq groups of four k */
static void kernel_scalar(int64_t nq, const int8_t *a, const uint8_t *b, float *C, int64_t ldc, int64_t mr, int64_t nr,
                          const int32_t *rowsum, const float *rs, const float *bias, int zp, int accumulate) {
    uint32_t acc[MR][NR]; /* unsigned: the sum modulo 2^32, as the vector lanes wrap */
    memset(acc, 0, sizeof acc);
    for (int64_t q = 0; q < nq; q++)
        for (int r = 0; r < MR; r++) {
            const int8_t *ar = a + (q * MR + r) * 4;
            for (int c = 0; c < NR; c++) {
                const uint8_t *bc = b + (q * NR + c) * 4;
                acc[r][c] += (uint32_t)(ar[0] * bc[0] + ar[1] * bc[1] + ar[2] * bc[2] + ar[3] * bc[3]);
            }
        }
    for (int64_t r = 0; r < mr; r++)
        for (int64_t c = 0; c < nr; c++) {
            float *d = C + r * ldc + c;
            float v = fmaf((float)(int32_t)(acc[r][c] - (uint32_t)zp * (uint32_t)rowsum[r]), rs[r], bias ? bias[r] : 0.0f);
            *d = accumulate ? v + *d : v;
        }
}

#ifdef GD_S8_X86
#define S8_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* 16 of B quantized to int32 in [INT_MIN, 2^24] + zp; the packs' saturation does the clamp. NaN
 * lanes are zeroed before the zero point, as the definition has it; the min keeps large values
 * from converting to INT_MIN (cvtps2dq's out-of-range answer) */
S8_TARGET static inline __m512i quant16(__m512 x, __m512 inv, __m512i vzp) {
    const __m512 hi = _mm512_set1_ps(16777216.0f);
    __m512 y = _mm512_mul_ps(x, inv);
    __mmask16 ok = _mm512_cmp_ps_mask(y, y, _CMP_ORD_Q);
    return _mm512_add_epi32(_mm512_maskz_cvtps_epi32(ok, _mm512_min_ps(y, hi)), vzp);
}

/* the first lim of 16 lanes (none for lim <= 0) */
static inline __mmask16 lanes(int64_t lim) { return lim >= 16 ? (__mmask16)0xffff : lim <= 0 ? 0 : (__mmask16)((1u << lim) - 1); }

/* four rows' 16 quantized columns to the panel layout: after the packs each 128-bit lane holds
 * four columns as [r0 x4, r1 x4, r2 x4, r3 x4]; the shuffle transposes it to the columns' four
 * k-bytes */
S8_TARGET static inline void store_group(const __m512i v[4], uint8_t *d) {
    const __m512i tr = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    __m512i w = _mm512_packus_epi16(_mm512_packs_epi32(v[0], v[1]), _mm512_packs_epi32(v[2], v[3]));
    _mm512_storeu_si512(d, _mm512_shuffle_epi8(w, tr));
}

/* zp in [0, 255]: INT_MIN + zp does not wrap */
S8_TARGET static void pack_b_native(const float *B, int64_t ldb, int64_t K, int64_t n0, int64_t nc, float inv, int zp,
                                    uint8_t *Bp) {
    const int64_t nq = k4(K) / 4, panels = (nc + NR - 1) / NR;
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vzp = _mm512_set1_epi32(zp);
    /* k outer, so that B is read along its rows */
    for (int64_t q = 0; q < nq; q++) {
        int64_t k = 4 * q;
        const float *rows[4];
        for (int i = 0; i < 4; i++) rows[i] = k + i < K ? B + (k + i) * ldb + n0 : NULL;
        for (int64_t j = 0; j < panels; j++) {
            uint8_t *d = Bp + (j * nq + q) * NR * 4;
            for (int h = 0; h < NR / 16; h++) {
                int64_t n = j * NR + h * 16;
                __mmask16 m = lanes(nc - n);
                __m512i v[4];
                for (int i = 0; i < 4; i++)
                    v[i] = quant16(rows[i] ? _mm512_maskz_loadu_ps(m, rows[i] + n) : _mm512_setzero_ps(), vinv, vzp);
                store_group(v, d + h * 64);
            }
        }
    }
}

/* pack_b_native with B the im2col of a stride-1 conv whose output is its input's size, read
 * from the input itself: W a multiple of 16 puts each 16 columns in one output row, so a column
 * group of a row k = (c, ky, kx) is one masked load of input row oy + ky - PH at x offset
 * kx - PW, its out-of-image lanes zero as im2col's padding is. The same bytes as im2col then
 * pack_b_native, without writing and reading back the float columns. */
S8_TARGET static void pack_b_im2col_native(const float *x, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t PH,
                                           int64_t PW, int64_t K, int64_t n0, int64_t nc, float inv, int zp, uint8_t *Bp) {
    const int64_t nq = k4(K) / 4, panels = (nc + NR - 1) / NR, KK = KH * KW;
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vzp = _mm512_set1_epi32(zp);
    for (int64_t q = 0; q < nq; q++) {
        const float *plane[4];
        int64_t dy[4], dx[4];
        for (int i = 0; i < 4; i++) {
            int64_t k = 4 * q + i;
            plane[i] = k < K ? x + k / KK * H * W : NULL;
            dy[i] = k % KK / KW - PH, dx[i] = k % KW - PW;
        }
        int64_t oy = n0 / W, ox = n0 % W;
        for (int64_t j = 0; j < panels; j++) {
            uint8_t *d = Bp + (j * nq + q) * NR * 4;
            for (int h = 0; h < NR / 16; h++, ox += 16) {
                if (ox >= W) ox = 0, oy++;
                __mmask16 m = lanes(nc - (j * NR + h * 16));
                __m512i v[4];
                for (int i = 0; i < 4; i++) {
                    int64_t iy = oy + dy[i], ix = ox + dx[i];
                    __mmask16 mi = 0;
                    if (plane[i] && iy >= 0 && iy < H) {
                        /* the lanes inside the row: [-ix, W - ix) */
                        mi = m & lanes(W - ix) & (__mmask16)~lanes(-ix);
                    }
                    v[i] = quant16(mi ? _mm512_maskz_loadu_ps(mi, plane[i] + iy * W + ix) : _mm512_setzero_ps(), vinv, vzp);
                }
                store_group(v, d + h * 64);
            }
        }
    }
}

typedef int32_t i32_alias __attribute__((may_alias, aligned(1)));

/* GCC 12 spills most of the 24 accumulators when they are __m512i (the intrinsic's casts to and
 * from v16si defeat the register allocator): keep them v16si and call its builtin */
#if defined(__clang__)
#define DPBUSD(acc, u, s) ((__v16si)_mm512_dpbusd_epi32((__m512i)(acc), (__m512i)(u), (__m512i)(s)))
#else
#define DPBUSD(acc, u, s) __builtin_ia32_vpdpbusd_v16si(acc, u, s)
#endif

S8_TARGET static void kernel_native(int64_t nq, const int8_t *a, const uint8_t *b, float *C, int64_t ldc, int64_t mr,
                                    int64_t nr, const int32_t *rowsum, const float *rs, const float *bias, int zp,
                                    int accumulate) {
    __v16si acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = (__v16si)_mm512_setzero_si512();
    for (int64_t q = 0; q < nq; q++) {
        __v16si b0 = (__v16si)_mm512_loadu_si512(b + q * NR * 4), b1 = (__v16si)_mm512_loadu_si512(b + q * NR * 4 + 64);
        const i32_alias *ap = (const i32_alias *)(a + q * MR * 4);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __v16si av = (__v16si)_mm512_set1_epi32(ap[r]);
            acc[r][0] = DPBUSD(acc[r][0], b0, av);
            acc[r][1] = DPBUSD(acc[r][1], b1, av);
        }
    }
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    for (int r = 0; r < mr; r++) {
        float *d = C + r * ldc;
        const __m512 s = _mm512_set1_ps(rs[r]), o = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        /* the zero point's share, subtracted modulo 2^32 as the scalar path does */
        const __m512i z = _mm512_set1_epi32((int32_t)((uint32_t)zp * (uint32_t)rowsum[r]));
        __m512 f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32((__m512i)acc[r][0], z)), s, o),
               f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32((__m512i)acc[r][1], z)), s, o);
        if (accumulate) f0 = _mm512_add_ps(f0, _mm512_maskz_loadu_ps(m0, d)), f1 = _mm512_add_ps(f1, _mm512_maskz_loadu_ps(m1, d + 16));
        _mm512_mask_storeu_ps(d, m0, f0);
        _mm512_mask_storeu_ps(d + 16, m1, f1);
    }
}

S8_TARGET static void quantize_native(const float *x, int64_t n, float inv, int zp, uint8_t *dst) {
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vzp = _mm512_set1_epi32(zp), zero = _mm512_setzero_si512();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i v = _mm512_max_epi32(quant16(_mm512_maskz_loadu_ps(m, x + i), vinv, vzp), zero);
        _mm512_mask_cvtusepi32_storeu_epi8(dst + i, m, v); /* unsigned saturation: the clamp at 255 */
    }
}
#endif

void gd_s8_quantize_u8(const float *x, int64_t n, float inv_scale, int zp, uint8_t *dst) {
#ifdef GD_S8_X86
    if (gd_s8_native() && zp >= 0 && zp <= 255) {
        quantize_native(x, n, inv_scale, zp, dst);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = quant1(x[i], inv_scale, zp);
}

/* the tiles of C for a packed B block of nc columns: every A panel past each NR-column panel */
static void tiles(int native, int64_t M, int64_t nc, int64_t K, const int8_t *Ap, const int32_t *rowsum, const uint8_t *Bp,
                  int zp, const float *rs, const float *bias, int accumulate, float *C, int64_t ldc) {
    const int64_t Kp = k4(K), nq = Kp / 4, panels = (M + MR - 1) / MR;
    for (int64_t p = 0; p < panels; p++) {
        const int8_t *a = Ap + p * MR * Kp;
        int64_t m0 = p * MR, mr = M - m0 < MR ? M - m0 : MR;
        for (int64_t j = 0; j < (nc + NR - 1) / NR; j++) {
            int64_t nr = nc - j * NR < NR ? nc - j * NR : NR;
            float *c = C + m0 * ldc + j * NR;
            const uint8_t *b = Bp + j * nq * NR * 4;
            const float *bi = bias ? bias + m0 : NULL;
#ifdef GD_S8_X86
            if (native) kernel_native(nq, a, b, c, ldc, mr, nr, rowsum + m0, rs + m0, bi, zp, accumulate);
            else
#endif
                kernel_scalar(nq, a, b, c, ldc, mr, nr, rowsum + m0, rs + m0, bi, zp, accumulate);
        }
    }
}

static void pack_b(int native, const float *B, int64_t ldb, int64_t K, int64_t n0, int64_t nc, float inv, int zp, uint8_t *Bp) {
#ifdef GD_S8_X86
    if (native && zp >= 0 && zp <= 255) {
        pack_b_native(B, ldb, K, n0, nc, inv, zp, Bp);
        return;
    }
#endif
    (void)native;
    pack_b_scalar(B, ldb, K, n0, nc, inv, zp, Bp);
}

static void gemm(int native, int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const float *B,
                 int64_t ldb, float inv, int zp, const float *rs, const float *bias, int accumulate, float *C, int64_t ldc,
                 uint8_t *Bp) {
    const int64_t ncb = block_cols(K);
    if (M <= 0 || N <= 0) return;
    for (int64_t n0 = 0; n0 < N; n0 += ncb) {
        int64_t nc = N - n0 < ncb ? N - n0 : ncb;
        pack_b(native, B, ldb, K, n0, nc, inv, zp, Bp);
        tiles(native, M, nc, K, Ap, rowsum, Bp, zp, rs, bias, accumulate, C + n0, ldc);
    }
}

size_t gd_s8_packed_b_size(int64_t N, int64_t K) { return (size_t)((N + NR - 1) / NR * NR) * (size_t)k4(K); }

void gd_s8_pack_b(const float *B, int64_t ldb, int64_t K, int64_t n0, int64_t nc, float inv_scale, int zp, uint8_t *Bp) {
    if (nc > 0) pack_b(gd_s8_native(), B, ldb, K, n0, nc, inv_scale, zp, Bp + (n0 / NR) * NR * k4(K));
}

int gd_s8_im2col_ok(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t PH, int64_t PW) {
    /* same size out as in at stride 1: OH = H + 2 PH - KH + 1 = H */
    return gd_s8_native() && W % 16 == 0 && 2 * PH == KH - 1 && 2 * PW == KW - 1 && PW < 16 && H > 0;
}

int gd_s8_pack_b_im2col(const float *x, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t PH, int64_t PW, int64_t K, int64_t n0,
                        int64_t nc, float inv_scale, int zp, uint8_t *Bp) {
    if (!gd_s8_im2col_ok(H, W, KH, KW, PH, PW) || zp < 0 || zp > 255 || n0 % NR) return -1;
#ifdef GD_S8_X86
    if (nc > 0) pack_b_im2col_native(x, H, W, KH, KW, PH, PW, K, n0, nc, inv_scale, zp, Bp + (n0 / NR) * NR * k4(K));
    return 0;
#else
    (void)x, (void)K, (void)nc, (void)inv_scale, (void)Bp;
    return -1;
#endif
}

/* the same column blocks as gemm(), so that a block of the packed B stays in L2 while the A
 * panels pass it */
void gd_gemm_s8_packed(int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const uint8_t *Bp, int64_t n0,
                       int zp, const float *row_scale, const float *bias, int accumulate, float *C, int64_t ldc) {
    const int native = gd_s8_native();
    const int64_t ncb = block_cols(K), Kp = k4(K);
    if (M <= 0 || N <= 0) return;
    for (int64_t n = 0; n < N; n += ncb) {
        int64_t nc = N - n < ncb ? N - n : ncb;
        tiles(native, M, nc, K, Ap, rowsum, Bp + (n0 + n) / NR * NR * Kp, zp, row_scale, bias, accumulate, C + n, ldc);
    }
}

void gd_gemm_s8(int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const float *B, int64_t ldb,
                float inv_scale, int zp, const float *row_scale, const float *bias, int accumulate, float *C, int64_t ldc,
                void *work) {
    gemm(gd_s8_native(), M, N, K, Ap, rowsum, B, ldb, inv_scale, zp, row_scale, bias, accumulate, C, ldc, work);
}

/* the portable path, for the test that both give the same bits */
void gd_gemm_s8_scalar(int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const float *B, int64_t ldb,
                       float inv_scale, int zp, const float *row_scale, const float *bias, int accumulate, float *C,
                       int64_t ldc, void *work) {
    gemm(0, M, N, K, Ap, rowsum, B, ldb, inv_scale, zp, row_scale, bias, accumulate, C, ldc, work);
}
