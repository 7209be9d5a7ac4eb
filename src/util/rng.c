/* PyTorch-compatible CPU random numbers (torch 1.13's CPUGeneratorImpl), bit for bit.
 *
 * Engine: at::mt19937, i.e. the standard 32-bit Mersenne Twister. manual_seed(s) keeps only the low
 * 32 bits of s (state[0] = s & 0xffffffff, state[j] = 1812433253 * (state[j-1] ^ state[j-1] >> 30) + j)
 * and clears the cached Box-Muller values. random() is one engine output; random64() is
 * (first << 32) | second.
 *
 * torch.randn(n), float32, contiguous (at::native normal_kernel):
 *  - n >= 16 (normal_fill_AVX2; torch's dispatcher picks the AVX2 kernel on x86-64 machines that have
 *    AVX2): every element first gets a uniform u = (random() & 0xffffff) * 2^-24; then each block of
 *    16 [i, i+16) is transformed with lanes j and j+8 paired (u1 = 1 - d[j], u2 = d[j+8]):
 *        radius = sqrt(-2 * log(u1)), theta = (float)(2 pi) * u2,
 *        d[j] = radius * cos(theta), d[j+8] = radius * sin(theta)
 *    where log, sin and cos are avx_mathfun.h's log256_ps and sincos256_ps (Cephes polynomials in
 *    float, not libm), and the result is stored as fma(n, std = 1, mean = 0). torch is built with
 *    GCC in GNU C++ mode (-ffp-contract=fast), so GCC fused some of avx_mathfun's mul/add pairs into
 *    FMAs; the fused pairs (read off libtorch_cpu.so's disassembly and matching what GCC 12 does to
 *    the same source) are written out explicitly below, so this file gives the same bits whatever
 *    the contraction setting it is compiled with. If n % 16 != 0 the
 *    last 16 elements [n-16, n) are refilled with 16 fresh uniforms (overwriting normals already
 *    computed there) and transformed again. The engine therefore advances n (+16 if n % 16) steps.
 *  - n < 16: one at::normal_distribution<double> per element, in order: if a cached value is held
 *    it is returned (and cleared); otherwise u1 = uniform double (random64() & (2^53 - 1)) * 2^-53,
 *    u2 = another, r = sqrt(-2 log(1 - u2)), theta = 2 pi u1, the cache keeps r sin(theta) and
 *    r cos(theta) is returned; the double is then cast to float. The cache survives between calls
 *    (only manual_seed clears it); the n >= 16 path neither reads nor clears it.
 *
 * torch.randint(0, high, (n,)) (int64): per element, random() % high when high < 2^32, otherwise
 * random64() % high.
 *
 * Without AVX2+FMA at compile time (or with -DGD_RNG_SCALAR) a scalar emulation of the same lane
 * arithmetic is used (fmaf for the fused steps); it gives the same bits. */
#include "gd_rng.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && !defined(GD_RNG_SCALAR)
#include <immintrin.h>
#define GD_RNG_AVX2 1
#endif

/* ---- mt19937 ------------------------------------------------------------------------------ */

#define MT_N 624
#define MT_M 397
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu
#define MT_MATRIX 0x9908b0dfu

void gd_rng_seed(gd_rng *r, uint64_t seed) {
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < MT_N; j++) r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + (uint32_t)j;
    r->idx = MT_N;
    r->has_next_normal = 0;
    r->next_normal = 0.0;
}

static void mt_twist(uint32_t *mt) {
    int k;
    for (k = 0; k < MT_N - MT_M; k++) {
        uint32_t y = (mt[k] & MT_UPPER) | (mt[k + 1] & MT_LOWER);
        mt[k] = mt[k + MT_M] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX : 0u);
    }
    for (; k < MT_N - 1; k++) {
        uint32_t y = (mt[k] & MT_UPPER) | (mt[k + 1] & MT_LOWER);
        mt[k] = mt[k + (MT_M - MT_N)] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX : 0u);
    }
    uint32_t y = (mt[MT_N - 1] & MT_UPPER) | (mt[0] & MT_LOWER);
    mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX : 0u);
}

static inline uint32_t mt_temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint32_t gd_rng_u32(gd_rng *r) {
    if (r->idx >= MT_N) {
        mt_twist(r->mt);
        r->idx = 0;
    }
    return mt_temper(r->mt[r->idx++]);
}

static inline uint64_t rng_u64(gd_rng *r) {
    uint64_t hi = gd_rng_u32(r);
    uint64_t lo = gd_rng_u32(r);
    return (hi << 32) | lo;
}

/* n uniforms in [0, 1) with 24 random bits each, as at::uniform_real_distribution<float>(0, 1). */
static void fill_uniform_f32(gd_rng *r, float *out, int64_t n) {
    int64_t i = 0;
    while (i < n) {
        if (r->idx >= MT_N) {
            mt_twist(r->mt);
            r->idx = 0;
        }
        int64_t m = MT_N - r->idx;
        if (m > n - i) m = n - i;
        const uint32_t *s = r->mt + r->idx;
        for (int64_t k = 0; k < m; k++) out[i + k] = (float)(mt_temper(s[k]) & 0xffffffu) * 0x1p-24f;
        r->idx += (int)m;
        i += m;
    }
}

/* ---- normal_fill_16 (torch's normal_fill_16_AVX2 with avx_mathfun.h) ----------------------- */

/* avx_mathfun.h constants */
#define C_SQRTHF 0.707106781186547524f
#define C_LOG_P0 7.0376836292E-2f
#define C_LOG_P1 -1.1514610310E-1f
#define C_LOG_P2 1.1676998740E-1f
#define C_LOG_P3 -1.2420140846E-1f
#define C_LOG_P4 +1.4249322787E-1f
#define C_LOG_P5 -1.6668057665E-1f
#define C_LOG_P6 +2.0000714765E-1f
#define C_LOG_P7 -2.4999993993E-1f
#define C_LOG_P8 +3.3333331174E-1f
#define C_LOG_Q1 -2.12194440e-4f
#define C_LOG_Q2 0.693359375f
#define C_FOPI 1.27323954473516f
#define C_MDP1 -0.78515625f
#define C_MDP2 -2.4187564849853515625e-4f
#define C_MDP3 -3.77489497744594108e-8f
#define C_SINCOF_P0 -1.9515295891E-4f
#define C_SINCOF_P1 8.3321608736E-3f
#define C_SINCOF_P2 -1.6666654611E-1f
#define C_COSCOF_P0 2.443315711809948E-005f
#define C_COSCOF_P1 -1.388731625493765E-003f
#define C_COSCOF_P2 4.166664568298827E-002f
#define C_TWO_PI ((float)(2.0 * 3.14159265358979323846))

#ifdef GD_RNG_AVX2

/* log256_ps from avx_mathfun.h */
static inline __m256 log256_ps(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 invalid_mask = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LE_OS);
    x = _mm256_max_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x00800000)));
    __m256i imm0 = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
    x = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(~0x7f800000)));
    x = _mm256_or_ps(x, _mm256_set1_ps(0.5f));
    imm0 = _mm256_sub_epi32(imm0, _mm256_set1_epi32(0x7f));
    __m256 e = _mm256_cvtepi32_ps(imm0);
    e = _mm256_add_ps(e, one);
    __m256 mask = _mm256_cmp_ps(x, _mm256_set1_ps(C_SQRTHF), _CMP_LT_OS);
    __m256 tmp = _mm256_and_ps(x, mask);
    x = _mm256_sub_ps(x, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
    x = _mm256_add_ps(x, tmp);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(C_LOG_P0);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P1));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P2));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P3));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P4));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P5));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P6));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P7));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(C_LOG_P8));
    y = _mm256_mul_ps(y, x);
    tmp = _mm256_mul_ps(e, _mm256_set1_ps(C_LOG_Q1));
    y = _mm256_fmadd_ps(y, z, tmp);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    x = _mm256_add_ps(x, y);
    x = _mm256_fmadd_ps(e, _mm256_set1_ps(C_LOG_Q2), x);
    return _mm256_or_ps(x, invalid_mask);
}

/* sincos256_ps from avx_mathfun.h (AVX2 integer variant) */
static inline void sincos256_ps(__m256 x, __m256 *s, __m256 *c) {
    __m256 sign_bit_sin = x;
    x = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
    sign_bit_sin = _mm256_and_ps(sign_bit_sin, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
    __m256 y = _mm256_mul_ps(x, _mm256_set1_ps(C_FOPI));
    __m256i imm2 = _mm256_cvttps_epi32(y);
    imm2 = _mm256_add_epi32(imm2, _mm256_set1_epi32(1));
    imm2 = _mm256_and_si256(imm2, _mm256_set1_epi32(~1));
    y = _mm256_cvtepi32_ps(imm2);
    __m256i imm4 = imm2;
    __m256i imm0 = _mm256_and_si256(imm2, _mm256_set1_epi32(4));
    imm0 = _mm256_slli_epi32(imm0, 29);
    imm2 = _mm256_and_si256(imm2, _mm256_set1_epi32(2));
    imm2 = _mm256_cmpeq_epi32(imm2, _mm256_setzero_si256());
    __m256 swap_sign_bit_sin = _mm256_castsi256_ps(imm0);
    __m256 poly_mask = _mm256_castsi256_ps(imm2);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(C_MDP1), x);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(C_MDP2), x);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(C_MDP3), x);
    imm4 = _mm256_sub_epi32(imm4, _mm256_set1_epi32(2));
    imm4 = _mm256_andnot_si256(imm4, _mm256_set1_epi32(4));
    imm4 = _mm256_slli_epi32(imm4, 29);
    __m256 sign_bit_cos = _mm256_castsi256_ps(imm4);
    sign_bit_sin = _mm256_xor_ps(sign_bit_sin, swap_sign_bit_sin);
    __m256 z = _mm256_mul_ps(x, x);
    y = _mm256_set1_ps(C_COSCOF_P0);
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(C_COSCOF_P1));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(C_COSCOF_P2));
    y = _mm256_mul_ps(y, z);
    __m256 tmp = _mm256_mul_ps(z, _mm256_set1_ps(0.5f));
    y = _mm256_fmsub_ps(y, z, tmp);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256 y2 = _mm256_set1_ps(C_SINCOF_P0);
    y2 = _mm256_fmadd_ps(y2, z, _mm256_set1_ps(C_SINCOF_P1));
    y2 = _mm256_fmadd_ps(y2, z, _mm256_set1_ps(C_SINCOF_P2));
    y2 = _mm256_mul_ps(y2, z);
    y2 = _mm256_fmadd_ps(y2, x, x);
    __m256 xmm1, xmm2, xmm3;
    xmm3 = poly_mask;
    __m256 ysin2 = _mm256_and_ps(xmm3, y2);
    __m256 ysin1 = _mm256_andnot_ps(xmm3, y);
    y2 = _mm256_sub_ps(y2, ysin2);
    y = _mm256_sub_ps(y, ysin1);
    xmm1 = _mm256_add_ps(ysin1, ysin2);
    xmm2 = _mm256_add_ps(y, y2);
    *s = _mm256_xor_ps(xmm1, sign_bit_sin);
    *c = _mm256_xor_ps(xmm2, sign_bit_cos);
}

static inline void normal_fill_16(float *data) {
    const __m256 one = _mm256_set1_ps(1.0f), minus_two = _mm256_set1_ps(-2.0f);
    const __m256 two_pi = _mm256_set1_ps(C_TWO_PI), std_v = _mm256_set1_ps(1.0f), mean_v = _mm256_setzero_ps();
    const __m256 u1 = _mm256_sub_ps(one, _mm256_loadu_ps(data));
    const __m256 u2 = _mm256_loadu_ps(data + 8);
    const __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(minus_two, log256_ps(u1)));
    const __m256 theta = _mm256_mul_ps(two_pi, u2);
    __m256 sintheta, costheta;
    sincos256_ps(theta, &sintheta, &costheta);
    const __m256 n1 = _mm256_mul_ps(radius, costheta);
    const __m256 n2 = _mm256_mul_ps(radius, sintheta);
    _mm256_storeu_ps(data, _mm256_fmadd_ps(n1, std_v, mean_v));
    _mm256_storeu_ps(data + 8, _mm256_fmadd_ps(n2, std_v, mean_v));
}

#else /* portable scalar emulation of the same float operations, lane by lane */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Only called with x in (0, 1]. */
static inline float log_ps1(float x) {
    if (x < 0x1p-126f) x = 0x1p-126f; /* _mm256_max_ps with min_norm_pos */
    int32_t imm0 = (int32_t)(f2u(x) >> 23) - 0x7f;
    x = u2f((f2u(x) & ~0x7f800000u) | f2u(0.5f));
    float e = (float)imm0 + 1.0f;
    float tmp = 0.0f;
    if (x < C_SQRTHF) {
        tmp = x;
        e = e - 1.0f;
    } else {
        e = e - 0.0f;
    }
    x = x - 1.0f;
    x = x + tmp;
    float z = x * x;
    float y = C_LOG_P0;
    y = fmaf(y, x, C_LOG_P1);
    y = fmaf(y, x, C_LOG_P2);
    y = fmaf(y, x, C_LOG_P3);
    y = fmaf(y, x, C_LOG_P4);
    y = fmaf(y, x, C_LOG_P5);
    y = fmaf(y, x, C_LOG_P6);
    y = fmaf(y, x, C_LOG_P7);
    y = fmaf(y, x, C_LOG_P8);
    y = y * x;
    tmp = e * C_LOG_Q1;
    y = fmaf(y, z, tmp);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, C_LOG_Q2, x);
    return x;
}

/* Only called with x = 2 pi u, u in [0, 1), so x >= 0 and the integer part fits. */
static inline void sincos_ps1(float x, float *s, float *c) {
    uint32_t sign_bit_sin = f2u(x) & 0x80000000u;
    x = u2f(f2u(x) & 0x7fffffffu);
    float y = x * C_FOPI;
    int32_t imm2 = (int32_t)y;
    imm2 = (imm2 + 1) & ~1;
    y = (float)imm2;
    int32_t imm4 = imm2;
    uint32_t swap_sign_bit_sin = (uint32_t)(imm2 & 4) << 29;
    int poly_mask = (imm2 & 2) == 0;
    x = fmaf(y, C_MDP1, x);
    x = fmaf(y, C_MDP2, x);
    x = fmaf(y, C_MDP3, x);
    uint32_t sign_bit_cos = (uint32_t)(~(imm4 - 2) & 4) << 29;
    sign_bit_sin ^= swap_sign_bit_sin;
    float z = x * x;
    y = C_COSCOF_P0;
    y = fmaf(y, z, C_COSCOF_P1);
    y = fmaf(y, z, C_COSCOF_P2);
    y = y * z;
    float tmp = z * 0.5f;
    y = fmaf(y, z, -tmp);
    y = y + 1.0f;
    float y2 = C_SINCOF_P0;
    y2 = fmaf(y2, z, C_SINCOF_P1);
    y2 = fmaf(y2, z, C_SINCOF_P2);
    y2 = y2 * z;
    y2 = fmaf(y2, x, x);
    /* the masked subtract/add blend of the original: selected value + (+0) */
    float ysin2 = poly_mask ? y2 : 0.0f, ysin1 = poly_mask ? 0.0f : y;
    y2 = y2 - ysin2;
    y = y - ysin1;
    float xmm1 = ysin1 + ysin2, xmm2 = y + y2;
    *s = u2f(f2u(xmm1) ^ sign_bit_sin);
    *c = u2f(f2u(xmm2) ^ sign_bit_cos);
}

static inline void normal_fill_16(float *data) {
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - data[j], u2 = data[j + 8];
        const float radius = sqrtf(-2.0f * log_ps1(u1));
        const float theta = C_TWO_PI * u2;
        float s, c;
        sincos_ps1(theta, &s, &c);
        const float n1 = radius * c, n2 = radius * s;
        data[j] = n1 + 0.0f; /* fma(n, 1, 0): exact, but -0 becomes +0 */
        data[j + 8] = n2 + 0.0f;
    }
}
#endif

/* ---- public ------------------------------------------------------------------------------- */

void gd_rng_randn(gd_rng *r, float *out, int64_t n) {
    if (n <= 0) return;
    if (n >= 16) {
        fill_uniform_f32(r, out, n);
        for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
        if (n % 16 != 0) {
            fill_uniform_f32(r, out + n - 16, 16);
            normal_fill_16(out + n - 16);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double v;
        if (r->has_next_normal) {
            r->has_next_normal = 0;
            v = r->next_normal;
        } else {
            const double u1 = (double)(rng_u64(r) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
            const double u2 = (double)(rng_u64(r) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
            const double rad = sqrt(-2.0 * log(1.0 - u2));
            const double theta = 2.0 * 3.14159265358979323846 * u1;
            r->next_normal = rad * sin(theta);
            r->has_next_normal = 1;
            v = rad * cos(theta);
        }
        out[i] = (float)(v * 1.0 + 0.0);
    }
}

void gd_rng_randint(gd_rng *r, int64_t high, int64_t *out, int64_t n) {
    if (high <= 0) { /* torch raises "random_ expects 'from' to be less than 'to'"; draw nothing */
        for (int64_t i = 0; i < n; i++) out[i] = 0;
        return;
    }
    const uint64_t range = (uint64_t)high;
    for (int64_t i = 0; i < n; i++) {
        if (range >= (UINT64_C(1) << 32))
            out[i] = (int64_t)(rng_u64(r) % range);
        else
            out[i] = (int64_t)(gd_rng_u32(r) % range);
    }
}
