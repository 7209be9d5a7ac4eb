/* bf16 GEMM with fp32 accumulation (the --precision bf16 mode): C = A B (+ beta C), A the weights
 * packed once in bf16, B fp32 activations rounded to bf16 (nearest even) while they are packed, C
 * fp32. On CPUs with AVX512-BF16 the products run on VDPBF16PS (two bf16 products per fp32 lane
 * per instruction); elsewhere a scalar loop with the same rounding of the inputs gives the same
 * products, summed in a different order. Internal to the core layer. */
#ifndef GD_GEMM_BF16_H
#define GD_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>

#include "gd_tensor.h"

/* rows of A per packed panel (the micro-kernel's rows) and columns of B per micro-kernel */
#define GD_BF16_MR 12
#define GD_BF16_NR 32

/* The rounding is gd_f32_to_bf16 (gd_tensor.h): nearest even, NaN kept quiet. */

/* 1 when this CPU runs the AVX512-BF16 kernel (checked once at run time) */
int gd_bf16_native(void);

/* uint16 elements of A (M x K) packed: panels of MR rows, K padded to even, rows padded to MR */
size_t gd_bf16_packed_size(int64_t M, int64_t K);
void gd_bf16_pack_a(const float *A, int64_t lda, int64_t M, int64_t K, uint16_t *Ap);
/* the same for A given transposed: element (m, k) at At[k * lda + m] */
void gd_bf16_pack_at(const float *At, int64_t lda, int64_t M, int64_t K, uint16_t *Ap);

/* uint16 elements of scratch gd_gemm_bf16 needs for N columns, K deep */
size_t gd_bf16_work_size(int64_t N, int64_t K);

/* C (M x N, row stride ldc) = Ap B + beta C, B (K x N, row stride ldb) fp32. Single-threaded (the
 * callers split the work); work holds gd_bf16_work_size(N, K) elements. */
void gd_gemm_bf16(int64_t M, int64_t N, int64_t K, const uint16_t *Ap, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, uint16_t *work);
/* the same without the AVX512-BF16 kernel (tests: both paths give the same bits) */
void gd_gemm_bf16_scalar(int64_t M, int64_t N, int64_t K, const uint16_t *Ap, const float *B, int64_t ldb, float beta, float *C,
                         int64_t ldc, uint16_t *work);

#endif
