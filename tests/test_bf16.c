/* The bf16 GEMM (--precision bf16) against exact references: the rounding against its definition,
 * the products against a double-precision GEMM of the bf16-rounded inputs, and the AVX512-BF16
 * kernel against the scalar path bit for bit. */
#include "core/gemm_bf16.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}
static float uniform(uint64_t *s) { return (float)((double)lcg(s) / 9007199254740992.0 * 2.0 - 1.0); }

/* round to nearest even by its definition: the two bf16 neighbours, the nearer, ties to the even one */
static uint16_t round_ref(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t lo = v.u & 0xffff0000u, hi = lo + 0x10000u;
    union { uint32_t u; float f; } a = {lo}, b = {hi};
    double dl = fabs((double)f - (double)a.f), dh = fabs((double)f - (double)b.f);
    if (dl < dh) return (uint16_t)(lo >> 16);
    if (dh < dl) return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

static void test_round(void) {
    uint64_t s = 1;
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        union { uint32_t u; float f; } v = {(uint32_t)lcg(&s)};
        if ((v.u & 0x7f800000u) == 0x7f800000u || (v.u & 0x7f800000u) == 0) continue; /* inf/nan/denormal: below */
        if ((v.u & 0x7f800000u) >= 0x7f000000u) continue; /* rounding up to inf: the reference's hi overflows */
        if (gd_bf16_round(v.f) != round_ref(v.f)) bad++;
    }
    CHECK(bad == 0, "%d of the random floats rounded wrongly", bad);
    /* ties: 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7; 1 + 3 * 2^-8 between 1 + 2^-7 (odd) and 1 + 2^-6 */
    CHECK(gd_bf16_round(1.00390625f) == 0x3f80, "tie to even (down) gave %04x", gd_bf16_round(1.00390625f));
    CHECK(gd_bf16_round(1.01171875f) == 0x3f82, "tie to even (up) gave %04x", gd_bf16_round(1.01171875f));
    CHECK(gd_bf16_round(3.40282347e38f) == 0x7f80, "the largest float rounds to inf, gave %04x", gd_bf16_round(3.40282347e38f));
    CHECK(gd_bf16_round(-0.0f) == 0x8000, "-0");
    union { uint32_t u; float f; } nan = {0x7fc00001u}, snan = {0x7f800001u};
    CHECK((gd_bf16_round(nan.f) & 0x7fc0) == 0x7fc0 && (gd_bf16_round(snan.f) & 0x7fc0) == 0x7fc0, "NaN stays (quiet) NaN");
}

/* one case: C = A B + beta C0 against the double GEMM of the rounded inputs; both paths, same bits */
static void gemm_case(int64_t M, int64_t N, int64_t K, int64_t ldb, int64_t ldc, float beta, uint64_t seed) {
    uint64_t s = seed;
    float *A = malloc(sizeof(float) * (size_t)(M * K + 1)), *B = malloc(sizeof(float) * (size_t)(K * ldb + 1));
    float *C0 = malloc(sizeof(float) * (size_t)(M * ldc + 1)), *C1 = malloc(sizeof(float) * (size_t)(M * ldc + 1)),
          *C2 = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    for (int64_t i = 0; i < M * K; i++) A[i] = uniform(&s);
    for (int64_t i = 0; i < K * ldb; i++) B[i] = uniform(&s) * 3.0f;
    for (int64_t i = 0; i < M * ldc; i++) C0[i] = uniform(&s);
    if (beta == 0.0f)
        for (int64_t i = 0; i < M * ldc; i++) C0[i] = NAN; /* beta 0 must not read C */
    memcpy(C1, C0, sizeof(float) * (size_t)(M * ldc));
    memcpy(C2, C0, sizeof(float) * (size_t)(M * ldc));
    uint16_t *Ap = malloc(sizeof(uint16_t) * gd_bf16_packed_size(M, K) + 2), *w = malloc(sizeof(uint16_t) * gd_bf16_work_size(N, K) + 2);
    gd_bf16_pack_a(A, K, M, K, Ap);
    gd_gemm_bf16(M, N, K, Ap, B, ldb, beta, C1, ldc, w);
    gd_gemm_bf16_scalar(M, N, K, Ap, B, ldb, beta, C2, ldc, w);
    double worst = 0;
    int64_t differ = 0, untouched = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < ldc; n++) {
            float got = C1[m * ldc + n];
            if (memcmp(&got, &C2[m * ldc + n], sizeof got)) differ++;
            if (n >= N) { /* beyond the N columns: left alone */
                if (memcmp(&got, &C0[m * ldc + n], sizeof got)) untouched++;
                continue;
            }
            double ref = beta == 0.0f ? 0.0 : (double)beta * C0[m * ldc + n], mag = fabs(ref);
            for (int64_t k = 0; k < K; k++) {
                double p = (double)gd_bf16_to_f32(gd_bf16_round(A[m * K + k])) * gd_bf16_to_f32(gd_bf16_round(B[k * ldb + n]));
                ref += p, mag += fabs(p);
            }
            double e = fabs((double)got - ref) / (mag > 0 ? mag : 1);
            if (!(e <= worst)) worst = e;
        }
    /* fp32 sums of K terms: each addition rounds by at most 2^-24 of the running magnitude */
    double bound = (double)(K + 2) * 6e-8;
    CHECK(worst <= bound, "%lldx%lldx%lld beta %g: max error %.3g of sum|a b| (bound %.3g)", (long long)M, (long long)N,
          (long long)K, beta, worst, bound);
    CHECK(differ == 0, "%lldx%lldx%lld: native and scalar paths differ in %lld elements", (long long)M, (long long)N, (long long)K,
          (long long)differ);
    CHECK(untouched == 0, "%lld elements beyond column N were written", (long long)untouched);
    free(A), free(B), free(C0), free(C1), free(C2), free(Ap), free(w);
}

static void test_gemm(void) {
    printf("    AVX512-BF16 kernel: %s\n", gd_bf16_native() ? "yes" : "no (scalar path only)");
    gemm_case(1, 1, 1, 1, 1, 0.0f, 1);
    gemm_case(12, 32, 2, 32, 32, 0.0f, 2);
    gemm_case(13, 33, 7, 40, 35, 0.0f, 3);       /* partial panels, odd K, strides */
    gemm_case(50, 300, 385, 300, 301, 1.0f, 4);  /* K blocks (384 + 1), N blocks (256 + 44), accumulate */
    gemm_case(64, 64, 1000, 64, 64, 0.5f, 5);    /* beta scaling */
    gemm_case(192, 100, 1728, 100, 100, 0.0f, 6); /* a conv layer's shape: Cout x HW x Cin 3 3 */
    gemm_case(5, 7, 0, 7, 7, 2.0f, 7);           /* K = 0: C = beta C */
}

GD_TEST_TABLE(gd_tests_bf16) = {
    {"bf16: fp32 -> bf16 rounds to nearest even (random floats, ties, overflow, NaN)", test_round},
    {"bf16: GEMM against a double GEMM of the rounded inputs; AVX512-BF16 = scalar bit for bit", test_gemm},
    {NULL, NULL},
};
