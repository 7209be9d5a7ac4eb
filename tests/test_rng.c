/* Tests for src/util/rng.c: PyTorch CPU generator reproduction, compared bit for bit with
 * tests/fixtures/rng.safetensors (written by tests/reference/gen_rng_fixtures.py with torch 1.13,
 * AVX2 kernels). Paths are relative to the project root (the runner's cwd). */
#include "gd_rng.h"
#include "gd_safetensors.h"
#include "test.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RNG_FIXTURE "tests/fixtures/rng.safetensors"

static const uint64_t SEEDS[] = {0, 1, 42, (UINT64_C(1) << 32) + 5, 123456789};
static const int64_t SIZES[] = {1, 3, 15, 16, 17, 31, 32, 100, 3 * 16 * 16, 1 * 28 * 28 * 4};
#define NSEEDS ((int)(sizeof SEEDS / sizeof *SEEDS))
#define NSIZES ((int)(sizeof SIZES / sizeof *SIZES))

static gd_st_file *open_fixture(void) {
    char err[512];
    gd_st_file *f = gd_st_open(RNG_FIXTURE, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    return f;
}

/* Compares n generated floats with the fixture tensor bit for bit; returns the number that match
 * (-1 if the tensor is missing or has the wrong type/size). */
static int64_t cmp_f32(const gd_st_file *f, const char *name, const float *got, int64_t n) {
    const gd_st_tensor *t = gd_st_find(f, name);
    CHECK(t != NULL, "fixture tensor %s missing", name);
    if (!t) return -1;
    CHECK(t->dtype == GD_ST_F32 && t->numel == n, "%s: dtype %s numel %" PRId64 ", want F32 %" PRId64, name,
          gd_st_dtype_name(t->dtype), t->numel, n);
    if (t->dtype != GD_ST_F32 || t->numel != n) return -1;
    int64_t same = 0, first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, (const char *)t->data + 4 * i, 4);
        memcpy(&b, got + i, 4);
        if (a == b)
            same++;
        else if (first_bad < 0)
            first_bad = i;
    }
    if (same != n) {
        float ref;
        memcpy(&ref, (const char *)t->data + 4 * first_bad, 4);
        CHECK(same == n, "%s: %" PRId64 "/%" PRId64 " bit-identical; first mismatch [%" PRId64 "] got %.9g want %.9g",
              name, same, n, first_bad, got[first_bad], ref);
    }
    return same;
}

static int64_t cmp_i64(const gd_st_file *f, const char *name, const int64_t *got, int64_t n) {
    const gd_st_tensor *t = gd_st_find(f, name);
    CHECK(t != NULL, "fixture tensor %s missing", name);
    if (!t) return -1;
    CHECK(t->dtype == GD_ST_I64 && t->numel == n, "%s: dtype %s numel %" PRId64 ", want I64 %" PRId64, name,
          gd_st_dtype_name(t->dtype), t->numel, n);
    if (t->dtype != GD_ST_I64 || t->numel != n) return -1;
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t ref;
        memcpy(&ref, (const char *)t->data + 8 * i, 8);
        if (ref == got[i])
            same++;
        else
            CHECK(ref == got[i], "%s[%" PRId64 "]: got %" PRId64 " want %" PRId64, name, i, got[i], ref);
    }
    return same;
}

static void test_rng_randn_fixtures(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    float *buf = malloc(sizeof(float) * 28 * 28 * 4);
    int64_t total = 0, matched = 0;
    int tensors = 0, tensors_ok = 0;
    for (int si = 0; si < NSEEDS; si++)
        for (int ni = 0; ni < NSIZES; ni++) {
            char name[64];
            snprintf(name, sizeof name, "randn_s%" PRIu64 "_n%" PRId64, SEEDS[si], SIZES[ni]);
            gd_rng r;
            gd_rng_seed(&r, SEEDS[si]);
            gd_rng_randn(&r, buf, SIZES[ni]);
            int64_t m = cmp_f32(f, name, buf, SIZES[ni]);
            tensors++;
            total += SIZES[ni];
            if (m > 0) matched += m;
            if (m == SIZES[ni]) tensors_ok++;
        }
    printf("    randn: %" PRId64 "/%" PRId64 " values bit-identical, %d/%d tensors\n", matched, total, tensors_ok,
           tensors);
    free(buf);
    gd_st_close(f);
}

/* torch.manual_seed(7); a = randn(2,3,16,16); b = randn(2,3,16,16); c = randn(5); d = randn(2);
 * e = randn(20); f = randn(1). c leaves the scalar path's second normal cached, d uses it and leaves
 * another, e (the n >= 16 path) must leave that cache alone, f returns it. */
static void test_rng_sequence(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    float a[1536], b[1536], c[5], d[2], e[20], f1[1];
    gd_rng r;
    gd_rng_seed(&r, 7);
    gd_rng_randn(&r, a, 1536);
    gd_rng_randn(&r, b, 1536);
    gd_rng_randn(&r, c, 5);
    gd_rng_randn(&r, d, 2);
    gd_rng_randn(&r, e, 20);
    gd_rng_randn(&r, f1, 1);
    int64_t m = 0;
    m += cmp_f32(f, "seq_a", a, 1536);
    m += cmp_f32(f, "seq_b", b, 1536);
    m += cmp_f32(f, "seq_c", c, 5);
    m += cmp_f32(f, "seq_d", d, 2);
    m += cmp_f32(f, "seq_e", e, 20);
    m += cmp_f32(f, "seq_f", f1, 1);
    printf("    sequence: %" PRId64 "/%d values bit-identical\n", m, 1536 * 2 + 5 + 2 + 20 + 1);
    gd_st_close(f);
}

static void test_rng_randint(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    int64_t a[16], b[7], c[5], d[8];
    gd_rng r;
    gd_rng_seed(&r, 3);
    gd_rng_randint(&r, 10, a, 16);
    gd_rng_randint(&r, 1000, b, 7);
    gd_rng_randint(&r, (INT64_C(1) << 40) + 3, c, 5);
    gd_rng_seed(&r, 5);
    gd_rng_randint(&r, (INT64_C(1) << 32) - 1, d, 8);
    int64_t m = cmp_i64(f, "randint_s3_h10", a, 16) + cmp_i64(f, "randint_s3_h1000", b, 7) +
                cmp_i64(f, "randint_s3_hbig", c, 5) + cmp_i64(f, "u32_s5", d, 8);
    printf("    randint: %" PRId64 "/36 values identical\n", m);
    for (int i = 0; i < 16; i++) CHECK(a[i] >= 0 && a[i] < 10, "a[%d] = %" PRId64, i, a[i]);
    gd_st_close(f);
}

/* Known mt19937 values: std::mt19937(5489) first output 3499211612, 10000th 4123659995;
 * seeding keeps only the low 32 bits of the seed (torch does the same). */
static void test_rng_mt19937(void) {
    gd_rng r, r2;
    gd_rng_seed(&r, 5489);
    uint32_t first = gd_rng_u32(&r), v = first;
    for (int i = 1; i < 10000; i++) v = gd_rng_u32(&r);
    CHECK(first == 3499211612u, "first output %u", first);
    CHECK(v == 4123659995u, "10000th output %u", v);
    gd_rng_seed(&r, (UINT64_C(1) << 32) + 5);
    gd_rng_seed(&r2, 5);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= gd_rng_u32(&r) == gd_rng_u32(&r2);
    CHECK(same, "seed 2^32+5 differs from seed 5");
}

/* Reseeding clears the scalar path's cached normal: seed, randn(1), seed, randn(1) repeat. */
static void test_rng_reseed(void) {
    gd_rng r;
    float x[3], y[3];
    gd_rng_seed(&r, 11);
    gd_rng_randn(&r, x, 1);
    gd_rng_seed(&r, 11);
    gd_rng_randn(&r, y, 3);
    CHECK(memcmp(x, y, 4) == 0, "reseed did not reset");
    gd_rng_seed(&r, 11);
    gd_rng_randn(&r, x, 3);
    CHECK(memcmp(x, y, sizeof x) == 0, "reseed did not reset the cached normal");
}

/* Mean and variance of 1e6 normals (large and small draws mixed) within 5 sigma. */
static void test_rng_stats(void) {
    const int64_t n = 1000000;
    float *v = malloc(sizeof(float) * n);
    gd_rng r;
    gd_rng_seed(&r, 2024);
    gd_rng_randn(&r, v, n - 1000);
    for (int64_t i = n - 1000; i < n; i += 10) gd_rng_randn(&r, v + i, 10);
    double s = 0, s2 = 0, s4 = 0;
    int nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = v[i];
        if (!isfinite(x)) nonfinite++;
        s += x;
        s2 += x * x;
        s4 += x * x * x * x;
    }
    double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
    /* sd(mean) = 1/sqrt(n); sd(sample var) ~ sqrt(2/n); sd(E x^4) = sqrt(96/n) */
    printf("    stats: mean %.5f var %.5f E[x^4] %.4f over %" PRId64 "\n", mean, var, kurt, n);
    CHECK(nonfinite == 0, "%d non-finite values", nonfinite);
    CHECK(fabs(mean) < 5 / sqrt((double)n), "mean %g", mean);
    CHECK(fabs(var - 1) < 5 * sqrt(2.0 / n), "var %g", var);
    CHECK(fabs(kurt - 3) < 5 * sqrt(96.0 / n), "E[x^4] %g", kurt);
    free(v);

    int64_t counts[10] = {0}, k[1000];
    gd_rng_seed(&r, 9);
    for (int rep = 0; rep < 100; rep++) {
        gd_rng_randint(&r, 10, k, 1000);
        for (int i = 0; i < 1000; i++) {
            CHECK(k[i] >= 0 && k[i] < 10, "randint value %" PRId64, k[i]);
            if (k[i] >= 0 && k[i] < 10) counts[k[i]]++;
        }
    }
    for (int i = 0; i < 10; i++) /* binomial(1e5, 0.1): sd ~ 94.9 */
        CHECK(llabs(counts[i] - 10000) < 5 * 95, "randint bucket %d: %" PRId64, i, counts[i]);
}

GD_TEST_TABLE(gd_tests_rng) = {
    {"rng_mt19937", test_rng_mt19937},
    {"rng_randn_fixtures", test_rng_randn_fixtures},
    {"rng_sequence", test_rng_sequence},
    {"rng_randint", test_rng_randint},
    {"rng_reseed", test_rng_reseed},
    {"rng_stats", test_rng_stats},
    {NULL, NULL},
};
