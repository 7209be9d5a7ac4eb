/* int8 GEMM for W8A8 inference: C = dequant(A q(B)), A the int8 weights (M x K) packed once, B fp32
 * activations (K x N) quantized to u8 per tensor (scale, zero point) while they are packed, the
 * products summed in int32 over the whole K and dequantized per row of C in one fmaf. On CPUs with
 * AVX512-VNNI the products run on VPDPBUSD (four u8 x s8 products per int32 lane per
 * instruction); elsewhere a scalar loop does the same integer sums. Integer sums are exact, so
 * both paths give the same bits for any shape. Internal to the core layer.
 *
 * Range: |A| <= 127 (the quantizer's weights; -128 also works) and q <= 255 keep every partial sum
 * of K products within 32385 K in magnitude, exact in int32 for K <= 66000 (conv layers here:
 * K = C_in KH KW <= ~7000). */
#ifndef GD_GEMM_S8_H
#define GD_GEMM_S8_H
#include <stddef.h>
#include <stdint.h>

/* rows of A per packed panel (the micro-kernel's rows) and columns of B per micro-kernel */
#define GD_S8_MR 12
#define GD_S8_NR 32

/* 1 when this CPU runs the AVX512-VNNI kernel (avx512vnni and avx512bw; checked once at run time) */
int gd_s8_native(void);

/* bytes of A (M x K int8) packed: panels of MR rows, K padded to a multiple of 4 and rows to MR
 * with zeros, layout [panel][k/4][MR][4]; panel p starts at byte p * MR * Kp (Kp = K rounded up to
 * 4), so a caller splitting M at a multiple of MR offsets Ap by m0 * Kp */
size_t gd_s8_packed_size(int64_t M, int64_t K);
/* packs A (row m at A + m * lda) and writes rowsum[m] = sum_k A[m, k] (M entries), which the
 * GEMM needs to take the zero point back out */
void gd_s8_pack_a(const int8_t *A, int64_t lda, int64_t M, int64_t K, int8_t *Ap, int32_t *rowsum);

/* bytes of scratch gd_gemm_s8 needs for up to N columns, K deep (the packed B block); enough for
 * any smaller N as well */
size_t gd_s8_work_size(int64_t N, int64_t K);

/* B (K x N, row stride ldb) is quantized as it is packed:
 *   q[k, n] = clamp(rint(B[k * ldb + n] * inv_scale) + zp, 0, 255)
 * (one fp32 multiply, then round half to even; NaN counts as 0, so gives clamp(zp)). Then
 *   C[m * ldc + n] = fmaf((float)(acc[m][n] - zp * rowsum[m]), row_scale[m], bias ? bias[m] : 0)
 *                    (+ the old C[m * ldc + n] when accumulate != 0)
 * with acc[m][n] = sum_k A[m, k] q[k, n] in int32 over the whole K and the int32 -> float
 * conversion rounding to nearest even. Columns of C past N are not touched. Single-threaded (the
 * callers split M or N); work holds gd_s8_work_size(N, K) bytes. */
void gd_gemm_s8(int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const float *B, int64_t ldb,
                float inv_scale, int zp, const float *row_scale, const float *bias, int accumulate, float *C, int64_t ldc,
                void *work);
/* the same without the VNNI kernel (tests: both paths give the same bits) */
void gd_gemm_s8_scalar(int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const float *B, int64_t ldb,
                       float inv_scale, int zp, const float *row_scale, const float *bias, int accumulate, float *C,
                       int64_t ldc, void *work);

/* B quantized and packed whole, once, for several calls of gd_gemm_s8_packed (a conv splits C
 * over threads in tiles of rows and columns; gd_gemm_s8 would quantize and pack B again for each
 * tile of rows). Bytes for N columns K deep: */
size_t gd_s8_packed_b_size(int64_t N, int64_t K);
/* quantizes columns [n0, n0 + nc) of B (n0 a multiple of GD_S8_NR), as gd_gemm_s8 does, into
 * their place in the whole packed B at Bp; threads may pack disjoint column ranges at once */
void gd_s8_pack_b(const float *B, int64_t ldb, int64_t K, int64_t n0, int64_t nc, float inv_scale, int zp, uint8_t *Bp);
/* gd_gemm_s8 for columns [n0, n0 + N) of the packed B (n0 a multiple of GD_S8_NR): the same
 * bits as gd_gemm_s8 on those columns of the float B; C points at column n0's output */
void gd_gemm_s8_packed(int64_t M, int64_t N, int64_t K, const int8_t *Ap, const int32_t *rowsum, const uint8_t *Bp, int64_t n0,
                       int zp, const float *row_scale, const float *bias, int accumulate, float *C, int64_t ldc);

/* gd_s8_pack_b of the im2col of a stride-1 conv whose output has its input's size (2 PH = KH - 1,
 * 2 PW = KW - 1), read from the input x (C planes of H x W, C KH KW = K rows) without the float
 * columns: the same bytes. Only with the VNNI kernel and W a multiple of 16 (gd_s8_im2col_ok);
 * -1 (nothing written) where it does not apply, 0 when packed. */
int gd_s8_im2col_ok(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t PH, int64_t PW);
int gd_s8_pack_b_im2col(const float *x, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t PH, int64_t PW, int64_t K, int64_t n0,
                        int64_t nc, float inv_scale, int zp, uint8_t *Bp);

/* the quantizer alone: dst[i] = q of x[i] as above */
void gd_s8_quantize_u8(const float *x, int64_t n, float inv_scale, int zp, uint8_t *dst);

#endif
