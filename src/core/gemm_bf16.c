/* bf16 GEMM, fp32 accumulation. See gemm_bf16.h.
 *
 * Layout (BLIS-style): A is packed once into panels of MR rows, each K pair (k, k+1) of a row
 * adjacent, [panel][k/2][MR][2]; B is packed per call, KC rows by NC columns at a time, into
 * panels of NR columns, [panel][k/2][NR][2], rounding to bf16 as it goes. One VDPBF16PS then
 * multiplies a broadcast A pair into 16 columns' pairs. A KC block's products are summed in
 * registers from zero and added to C, so C holds the sum of the blocks in k order; the scalar path
 * below does exactly the same arithmetic (VDPBF16PS adds the odd product, then the even one, each
 * rounded to fp32; bf16 x bf16 is exact in fp32), so both paths give the same bits up to
 * denormals, which the instruction flushes. */
#include "core/gemm_bf16.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GD_BF16_X86 1
#endif

#define MR GD_BF16_MR
#define NR GD_BF16_NR
#define KC 384 /* rows of B per block: KC x NC bf16 stays in L2 */
#define NC 256 /* columns of B per block */

static int64_t even(int64_t k) { return (k + 1) & ~(int64_t)1; }

/* flushes denormals to signed zero as VCVTNE2PS2BF16 does, so both paths pack the same bits */
static uint16_t round_daz(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7f800000u) == 0) v.u &= 0x80000000u;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u); /* as gd_f32_to_bf16, inlined */
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

static inline float widen(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

int gd_bf16_native(void) {
#ifdef GD_BF16_X86
    static int native = -1;
    if (native < 0) {
        __builtin_cpu_init();
        native = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") ? 1 : 0;
    }
    return native;
#else
    return 0;
#endif
}

size_t gd_bf16_packed_size(int64_t M, int64_t K) { return (size_t)((M + MR - 1) / MR * MR) * (size_t)even(K); }

/* element (m, k) at A[m * sm + k * sk] */
static void pack_strided(const float *A, int64_t sm, int64_t sk, int64_t M, int64_t K, uint16_t *Ap) {
    const int64_t Kp = even(K), panels = (M + MR - 1) / MR;
    for (int64_t p = 0; p < panels; p++)
        for (int64_t q = 0; q < Kp / 2; q++)
            for (int64_t r = 0; r < MR; r++) {
                int64_t m = p * MR + r, k = 2 * q;
                uint16_t *d = Ap + ((p * (Kp / 2) + q) * MR + r) * 2;
                d[0] = m < M ? round_daz(A[m * sm + k * sk]) : 0;
                d[1] = m < M && k + 1 < K ? round_daz(A[m * sm + (k + 1) * sk]) : 0;
            }
}

#ifdef GD_BF16_X86
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* The packs below round with VCVTNE(2)PS2BF16, as pack_b_native: the bits of round_daz. The
 * attention packs its T x d operands on every head (4 % of a bf16 classifier gradient, scalar). */

/* A row-major: 16 k of one row -> 8 pairs, which go to 8 consecutive [k/2] slots of its row */
BF16_TARGET static void pack_a_native(const float *A, int64_t lda, int64_t M, int64_t K, uint16_t *Ap) {
    const int64_t Kp = even(K), panels = (M + MR - 1) / MR;
    for (int64_t p = 0; p < panels; p++) {
        uint32_t *dst = (uint32_t *)(Ap + p * (Kp / 2) * MR * 2);
        for (int64_t k0 = 0; k0 < Kp; k0 += 16) {
            int64_t lim = K - k0, nq = (Kp - k0 < 16 ? Kp - k0 : 16) / 2;
            __mmask16 m = lim >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << lim) - 1);
            uint32_t pairs[MR][8];
            for (int r = 0; r < MR; r++) {
                int64_t row = p * MR + r;
                __m512 v = row < M ? _mm512_maskz_loadu_ps(m, A + row * lda + k0) : _mm512_setzero_ps();
                _mm256_storeu_si256((__m256i *)pairs[r], (__m256i)_mm512_cvtneps_pbh(v));
            }
            for (int64_t q = 0; q < nq; q++)
                for (int r = 0; r < MR; r++) dst[(k0 / 2 + q) * MR + r] = pairs[r][q];
        }
    }
}

/* A given transposed: rows k and k+1 of At hold the panel's MR rows side by side */
BF16_TARGET static void pack_at_native(const float *At, int64_t lda, int64_t M, int64_t K, uint16_t *Ap) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
                                         19, 3, 18, 2, 17, 1, 16, 0);
    const int64_t Kp = even(K), panels = (M + MR - 1) / MR;
    for (int64_t p = 0; p < panels; p++) {
        int64_t m0 = p * MR, lim = M - m0;
        __mmask16 m = lim >= MR ? (__mmask16)((1u << MR) - 1) : (__mmask16)((1u << lim) - 1);
        for (int64_t q = 0; q < Kp / 2; q++) {
            int64_t k = 2 * q;
            __m512 r0 = _mm512_maskz_loadu_ps(m, At + k * lda + m0);
            __m512 r1 = k + 1 < K ? _mm512_maskz_loadu_ps(m, At + (k + 1) * lda + m0) : _mm512_setzero_ps();
            __m512i v = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(r1, r0));
            _mm512_mask_storeu_epi16(Ap + (p * (Kp / 2) + q) * MR * 2, (__mmask32)((1ull << (2 * MR)) - 1), v);
        }
    }
}
#endif

void gd_bf16_pack_a(const float *A, int64_t lda, int64_t M, int64_t K, uint16_t *Ap) {
#ifdef GD_BF16_X86
    if (gd_bf16_native()) {
        pack_a_native(A, lda, M, K, Ap);
        return;
    }
#endif
    pack_strided(A, lda, 1, M, K, Ap);
}

void gd_bf16_pack_at(const float *At, int64_t lda, int64_t M, int64_t K, uint16_t *Ap) {
#ifdef GD_BF16_X86
    if (gd_bf16_native()) {
        pack_at_native(At, lda, M, K, Ap);
        return;
    }
#endif
    pack_strided(At, 1, lda, M, K, Ap);
}

size_t gd_bf16_work_size(int64_t N, int64_t K) {
    int64_t nc = N < NC ? N : NC, kc = even(K) < KC ? even(K) : KC;
    return (size_t)((nc + NR - 1) / NR * NR) * (size_t)kc;
}

/* rows k0..k0+kc (kc even) and columns n0..n0+nc of B into NR-column panels of pairs */
static void pack_b_scalar(const float *B, int64_t ldb, int64_t K, int64_t N, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                          uint16_t *Bp) {
    for (int64_t j = 0; j < (nc + NR - 1) / NR; j++)
        for (int64_t q = 0; q < kc / 2; q++)
            for (int64_t c = 0; c < NR; c++) {
                int64_t k = k0 + 2 * q, n = n0 + j * NR + c;
                uint16_t *d = Bp + ((j * (kc / 2) + q) * NR + c) * 2;
                int ok = n < n0 + nc && n < N;
                d[0] = ok && k < K ? round_daz(B[k * ldb + n]) : 0;
                d[1] = ok && k + 1 < K ? round_daz(B[(k + 1) * ldb + n]) : 0;
            }
}

/* one MR x NR block of C from kc/2 pairs: C = acc (first, beta 0), beta C + acc (first), or C + acc */
static void kernel_scalar(int64_t nq, const uint16_t *a, const uint16_t *b, float *C, int64_t ldc, int64_t mr, int64_t nr,
                          int first, float beta) {
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t q = 0; q < nq; q++)
        for (int r = 0; r < MR; r++) {
            float a0 = widen(a[(q * MR + r) * 2]), a1 = widen(a[(q * MR + r) * 2 + 1]);
            for (int c = 0; c < NR; c++) {
                float s = acc[r][c] + a1 * widen(b[(q * NR + c) * 2 + 1]);
                acc[r][c] = s + a0 * widen(b[(q * NR + c) * 2]);
            }
        }
    for (int64_t r = 0; r < mr; r++)
        for (int64_t c = 0; c < nr; c++) {
            float *d = C + r * ldc + c;
            *d = !first ? *d + acc[r][c] : beta == 0.0f ? acc[r][c] : beta * *d + acc[r][c];
        }
}

#ifdef GD_BF16_X86
BF16_TARGET static void pack_b_native(const float *B, int64_t ldb, int64_t K, int64_t N, int64_t k0, int64_t kc, int64_t n0,
                                      int64_t nc, uint16_t *Bp) {
    /* pairs (row k, row k+1) of 16 columns: cvtne2ps gives [bf16(r0) x16, bf16(r1) x16]; the
     * permutation interleaves them */
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
                                         19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t j = 0; j < (nc + NR - 1) / NR; j++)
        for (int64_t q = 0; q < kc / 2; q++) {
            int64_t k = k0 + 2 * q;
            uint16_t *d = Bp + (j * (kc / 2) + q) * NR * 2;
            for (int h = 0; h < NR / 16; h++) {
                int64_t n = n0 + j * NR + h * 16, lim = (n0 + nc < N ? n0 + nc : N) - n;
                __mmask16 m = lim >= 16 ? (__mmask16)0xffff : lim <= 0 ? 0 : (__mmask16)((1u << lim) - 1);
                __m512 r0 = k < K ? _mm512_maskz_loadu_ps(m, B + k * ldb + n) : _mm512_setzero_ps();
                __m512 r1 = k + 1 < K ? _mm512_maskz_loadu_ps(m, B + (k + 1) * ldb + n) : _mm512_setzero_ps();
                __m512i v = (__m512i)_mm512_cvtne2ps_pbh(r1, r0);
                _mm512_storeu_si512(d + h * 32, _mm512_permutexvar_epi16(idx, v));
            }
        }
}

BF16_TARGET static void kernel_native(int64_t nq, const uint16_t *a, const uint16_t *b, float *C, int64_t ldc, int64_t mr,
                                      int64_t nr, int first, float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t q = 0; q < nq; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + q * NR * 2), b1 = (__m512bh)_mm512_loadu_si512(b + q * NR * 2 + 32);
        const int32_t *ap = (const int32_t *)(a + q * MR * 2);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32(ap[r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    const __m512 vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *d = C + r * ldc;
        __m512 s0 = acc[r][0], s1 = acc[r][1];
        if (!first || beta != 0.0f) {
            __m512 c0 = _mm512_maskz_loadu_ps(m0, d), c1 = _mm512_maskz_loadu_ps(m1, d + 16);
            if (first) c0 = _mm512_mul_ps(vb, c0), c1 = _mm512_mul_ps(vb, c1);
            s0 = _mm512_add_ps(c0, s0), s1 = _mm512_add_ps(c1, s1);
        }
        _mm512_mask_storeu_ps(d, m0, s0);
        _mm512_mask_storeu_ps(d + 16, m1, s1);
    }
}
#endif

static void gemm(int native, int64_t M, int64_t N, int64_t K, const uint16_t *Ap, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc, uint16_t *Bp) {
    const int64_t Kp = even(K), panels = (M + MR - 1) / MR;
    if (K == 0) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) C[m * ldc + n] = beta == 0.0f ? 0.0f : beta * C[m * ldc + n];
        return;
    }
    for (int64_t n0 = 0; n0 < N; n0 += NC) {
        int64_t nc = N - n0 < NC ? N - n0 : NC;
        for (int64_t k0 = 0; k0 < Kp; k0 += KC) {
            int64_t kc = Kp - k0 < KC ? Kp - k0 : KC;
#ifdef GD_BF16_X86
            if (native) pack_b_native(B, ldb, K, N, k0, kc, n0, nc, Bp);
            else
#endif
                pack_b_scalar(B, ldb, K, N, k0, kc, n0, nc, Bp);
            for (int64_t p = 0; p < panels; p++) {
                const uint16_t *a = Ap + (p * (Kp / 2) + k0 / 2) * MR * 2;
                int64_t mr = M - p * MR < MR ? M - p * MR : MR;
                for (int64_t j = 0; j < (nc + NR - 1) / NR; j++) {
                    int64_t nr = nc - j * NR < NR ? nc - j * NR : NR;
                    float *c = C + p * MR * ldc + n0 + j * NR;
                    const uint16_t *b = Bp + j * (kc / 2) * NR * 2;
#ifdef GD_BF16_X86
                    if (native) kernel_native(kc / 2, a, b, c, ldc, mr, nr, k0 == 0, beta);
                    else
#endif
                        kernel_scalar(kc / 2, a, b, c, ldc, mr, nr, k0 == 0, beta);
                }
            }
        }
    }
}

void gd_gemm_bf16(int64_t M, int64_t N, int64_t K, const uint16_t *Ap, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, uint16_t *work) {
    gemm(gd_bf16_native(), M, N, K, Ap, B, ldb, beta, C, ldc, work);
}

/* the portable path, for the test that both give the same bits */
void gd_gemm_bf16_scalar(int64_t M, int64_t N, int64_t K, const uint16_t *Ap, const float *B, int64_t ldb, float beta, float *C,
                         int64_t ldc, uint16_t *work) {
    gemm(0, M, N, K, Ap, B, ldb, beta, C, ldc, work);
}
