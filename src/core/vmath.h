/* expf, 8 at a time, with the bits of the C library's expf: glibc 2.36's (sysdeps/ieee754/flt-32/
 * e_expf.c, the variant its x86-64 ifunc picks on CPUs with FMA, whose FMAs are written out here)
 * for every input in (-103.9, 88.7); other inputs (overflow, underflow to 0, NaN) go to expf
 * itself. Checked over every float of that range against expf (and in tests/test_train.c on a
 * sample), so element-wise ops that use it keep the results they had with the scalar call.
 * Only where the compiler targets AVX2 with FMA (then the library runs its FMA variant too);
 * elsewhere gd_expf_n is the plain loop. */
#ifndef GD_VMATH_H
#define GD_VMATH_H
#include <math.h>
#include <stdint.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GD_VEXPF 1

/* 2^(i/32) as doubles, minus i << 47 (glibc's __exp2f_data.tab) */
static const uint64_t gd_exp2f_tab[32] __attribute__((aligned(64))) = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull,
};

static inline __m256d gd_expf_core4(__m256d xd) {
    const __m256d inv = _mm256_set1_pd(0x1.71547652b82fep+0 * 32), shift = _mm256_set1_pd(0x1.8p+52);
    const __m256d c0 = _mm256_set1_pd(0x1.c6af84b912394p-5 / 32 / 32 / 32),
                  c1 = _mm256_set1_pd(0x1.ebfce50fac4f3p-3 / 32 / 32), c2 = _mm256_set1_pd(0x1.62e42ff0c52d6p-1 / 32);
    __m256d kd = _mm256_fmadd_pd(inv, xd, shift); /* z = InvLn2N x rounded to an integer, in the low bits */
    __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, shift);
    __m256d r = _mm256_fmsub_pd(inv, xd, kd); /* z - kd, z unrounded */
    __m256i t = _mm256_i64gather_epi64((const long long *)gd_exp2f_tab, _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8);
    __m256d s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64(ki, 47)));
    __m256d z = _mm256_fmadd_pd(c0, r, c1), r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(c2, r, _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_mul_pd(y, s);
}

#ifdef __AVX512F__
#define GD_VEXPF16 1
/* the same with 8 lanes, the table looked up by permutes instead of a gather */
static inline __m512d gd_expf_core8(__m512d xd) {
    const __m512d inv = _mm512_set1_pd(0x1.71547652b82fep+0 * 32), shift = _mm512_set1_pd(0x1.8p+52);
    const __m512d c0 = _mm512_set1_pd(0x1.c6af84b912394p-5 / 32 / 32 / 32),
                  c1 = _mm512_set1_pd(0x1.ebfce50fac4f3p-3 / 32 / 32), c2 = _mm512_set1_pd(0x1.62e42ff0c52d6p-1 / 32);
    const __m512i t0 = _mm512_load_si512(gd_exp2f_tab), t1 = _mm512_load_si512(gd_exp2f_tab + 8),
                  t2 = _mm512_load_si512(gd_exp2f_tab + 16), t3 = _mm512_load_si512(gd_exp2f_tab + 24);
    __m512d kd = _mm512_fmadd_pd(inv, xd, shift);
    __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    __m512d r = _mm512_fmsub_pd(inv, xd, kd);
    __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1), hi = _mm512_permutex2var_epi64(t2, ki, t3); /* ki & 15 */
    __m512i t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
    __m512d s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64(ki, 47)));
    __m512d z = _mm512_fmadd_pd(c0, r, c1), r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(c2, r, _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    return _mm512_mul_pd(y, s);
}

/* expf of 16 floats */
static inline __m512 gd_expf16(__m512 x) {
    __m256 lo = _mm512_cvtpd_ps(gd_expf_core8(_mm512_cvtps_pd(_mm512_castps512_ps256(x))));
    __m256 hi = _mm512_cvtpd_ps(gd_expf_core8(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))));
    __m512 y = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
    __mmask16 in = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-103.9f), _CMP_GT_OQ) & _mm512_cmp_ps_mask(x, _mm512_set1_ps(88.7f), _CMP_LT_OQ);
    if (in != 0xffff) {
        float xs[16], ys[16];
        _mm512_storeu_ps(xs, x);
        _mm512_storeu_ps(ys, y);
        for (int i = 0; i < 16; i++)
            if (!(in >> i & 1)) ys[i] = expf(xs[i]);
        y = _mm512_loadu_ps(ys);
    }
    return y;
}
#endif

/* expf of 8 floats */
static inline __m256 gd_expf8(__m256 x) {
    __m128 lo = _mm256_cvtpd_ps(gd_expf_core4(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
    __m128 hi = _mm256_cvtpd_ps(gd_expf_core4(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
    __m256 y = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
    /* outside (-103.9, 88.7), NaN included: the library */
    __m256 in = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-103.9f), _CMP_GT_OQ),
                              _mm256_cmp_ps(x, _mm256_set1_ps(88.7f), _CMP_LT_OQ));
    int m = _mm256_movemask_ps(in);
    if (m != 0xff) {
        float xs[8], ys[8];
        _mm256_storeu_ps(xs, x);
        _mm256_storeu_ps(ys, y);
        for (int i = 0; i < 8; i++)
            if (!(m >> i & 1)) ys[i] = expf(xs[i]);
        y = _mm256_loadu_ps(ys);
    }
    return y;
}
#endif

/* sum of x[0..n) / dot product of a and b, in double and in a fixed order: 8 interleaved partial
 * sums (element i into partial i % 8), combined in a fixed tree. A reduction's result then
 * depends only on its data, never on threads, and the partials overlap their latencies. */
static inline double gd_sum_f64(const float *x, int64_t n) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += (double)x[i + j];
    for (int j = 0; i < n; i++, j++) a[j] += (double)x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline double gd_dot_f64(const float *x, const float *y, int64_t n) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += (double)x[i + j] * (double)y[i + j];
    for (int j = 0; i < n; i++, j++) a[j] += (double)x[i] * (double)y[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* y[i] = expf(x[i]) */
static inline void gd_expf_n(const float *x, float *y, int64_t n) {
    int64_t i = 0;
#ifdef GD_VEXPF16
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gd_expf16(_mm512_loadu_ps(x + i)));
#endif
#ifdef GD_VEXPF
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gd_expf8(_mm256_loadu_ps(x + i)));
#endif
    for (; i < n; i++) y[i] = expf(x[i]);
}
#endif
