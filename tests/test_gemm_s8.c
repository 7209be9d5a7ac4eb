/* The int8 GEMM (W8A8 inference) against its definition: the quantizer against the formula (ties,
 * clamps, NaN, infinities), the packed row sums, C against a naive int64 GEMM of the quantized
 * inputs with the same fmaf epilogue, exactly, on both paths; and the AVX512-VNNI kernel against the
 * scalar path bit for bit on larger shapes. */
#include "core/gemm_s8.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}
static float uniform(uint64_t *s) { return (float)((double)lcg(s) / 9007199254740992.0 * 2.0 - 1.0); }

/* the formula as the header writes it, in int64 after the one fp32 multiply */
static uint8_t quant_ref(float x, float inv, int zp) {
    float y = x * inv;
    int64_t v = zp;
    if (!isnan(y)) {
        float r = rintf(y); /* the default rounding: half to even */
        v += r >= 1e9f ? (int64_t)1000000000 : r <= -1e9f ? -(int64_t)1000000000 : (int64_t)r;
    }
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void test_quantize(void) {
    printf("    AVX512-VNNI kernel: %s\n", gd_s8_native() ? "yes" : "no (scalar path only)");
    /* inv 1, zp 100: ties to even either side of zero, both clamps, NaN, infinities */
    const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 154.5f, 155.5f, 156.0f, -99.5f, -100.5f, -98.5f, 0.49999997f,
                       -0.0f, NAN, INFINITY, -INFINITY, 1e10f, -1e10f, 3e9f, -3e9f, 16777217.0f, 7.0f};
    const uint8_t want[] = {100, 102, 102, 100, 98, 98, 254, 255, 255, 0, 0, 2, 100, 100, 100, 255, 0, 255, 0, 255, 0, 255, 107};
    const int n = (int)(sizeof x / sizeof *x);
    uint8_t got[sizeof x / sizeof *x + 1];
    got[n] = 0xa5;
    gd_s8_quantize_u8(x, n, 1.0f, 100, got);
    for (int i = 0; i < n; i++) CHECK(got[i] == want[i], "q(%g) = %d, expected %d", x[i], got[i], want[i]);
    for (int i = 0; i < n; i++) CHECK(quant_ref(x[i], 1.0f, 100) == want[i], "the test's reference: q(%g)", x[i]);
    CHECK(got[n] == 0xa5, "wrote past n");
    /* random values over and beyond the range, every tail length, a few zero points (including
     * ones outside 0..255, which the definition allows) and scales */
    uint64_t s = 7;
    const int zps[] = {0, 1, 128, 255, -3, 300};
    const float invs[] = {4.0f, 1.0f / 0.0371f, 0.25f};
    int bad = 0, past = 0;
    for (size_t zi = 0; zi < sizeof zps / sizeof *zps; zi++)
        for (size_t ii = 0; ii < sizeof invs / sizeof *invs; ii++)
            for (int len = 0; len <= 1000; len += len < 40 ? 1 : 320) {
                float *v = malloc(sizeof(float) * (size_t)(len + 1));
                uint8_t *d = malloc((size_t)len + 16);
                for (int i = 0; i < len; i++) {
                    float u = uniform(&s) * 160.0f / invs[ii];
                    v[i] = i % 5 == 0 ? (float)((int)(u * invs[ii]) + 0.5) / invs[ii] : u; /* ties (exact when inv is a power of 2) */
                    if (i % 97 == 3) v[i] = NAN;
                }
                memset(d, 0x5a, (size_t)len + 16);
                gd_s8_quantize_u8(v, len, invs[ii], zps[zi], d);
                for (int i = 0; i < len; i++) bad += d[i] != quant_ref(v[i], invs[ii], zps[zi]);
                for (int i = len; i < len + 16; i++) past += d[i] != 0x5a;
                free(v), free(d);
            }
    CHECK(bad == 0, "%d random values quantized unlike the formula", bad);
    CHECK(past == 0, "%d bytes written past n", past);
}

/* one case, both paths, exactly the naive int64 GEMM of the quantized inputs with the fmaf
 * epilogue; columns past N untouched; rowsum the rows' sums */
static void gemm_case(int64_t M, int64_t N, int64_t K, int64_t ldb, int64_t ldc, float inv, int zp, uint64_t seed) {
    uint64_t s = seed;
    int8_t *A = malloc((size_t)(M * K + 1));
    float *B = malloc(sizeof(float) * (size_t)(K * ldb + 1)), *rs = malloc(sizeof(float) * (size_t)(M + 1)),
          *bias = malloc(sizeof(float) * (size_t)(M + 1));
    float *C0 = malloc(sizeof(float) * (size_t)(M * ldc + 1)), *C1 = malloc(sizeof(float) * (size_t)(M * ldc + 1)),
          *ref = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    int32_t *rowsum = malloc(sizeof(int32_t) * (size_t)(M + 1));
    int64_t *acc = malloc(sizeof(int64_t) * (size_t)(M * N + 1));
    uint8_t *q = malloc((size_t)(K * N + 1));
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            A[m * K + k] = m == 1 ? 127 : m == 2 ? -128 : (int8_t)((int64_t)(lcg(&s) % 255) - 127); /* rows 1, 2: the extremes */
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < ldb; n++) {
            float u = uniform(&s) * 170.0f / inv, *d = &B[k * ldb + n]; /* about 1 in 6 clamps, at either end */
            uint64_t kind = lcg(&s) % 16;
            *d = kind == 0 ? (float)((int64_t)(u * inv) + 0.5) / inv : kind == 1 ? 1e6f : u; /* ties; all-255 columns below */
            if (n == 3) *d = 1e6f;
            if (kind == 2 && lcg(&s) % 8 == 0) *d = NAN;
        }
    for (int64_t m = 0; m < M; m++) rs[m] = (1.0f + uniform(&s)) * 1e-3f, bias[m] = uniform(&s);
    for (int64_t i = 0; i < M * ldc; i++) C0[i] = uniform(&s);

    uint8_t *Ap = malloc(gd_s8_packed_size(M, K) + 1), *w = malloc(gd_s8_work_size(N, K) + 1);
    gd_s8_pack_a(A, K, M, K, (int8_t *)Ap, rowsum);
    int badsum = 0;
    for (int64_t m = 0; m < M; m++) {
        int64_t t = 0;
        for (int64_t k = 0; k < K; k++) t += A[m * K + k];
        badsum += t != rowsum[m];
    }
    CHECK(badsum == 0, "%lldx%lldx%lld: %d row sums wrong", (long long)M, (long long)N, (long long)K, badsum);

    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) q[k * N + n] = quant_ref(B[k * ldb + n], inv, zp);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t t = 0;
            for (int64_t k = 0; k < K; k++) t += (int64_t)A[m * K + k] * q[k * N + n];
            acc[m * N + n] = t;
        }
    for (int variant = 0; variant < 4; variant++) {
        int accumulate = variant & 1;
        const float *bi = variant & 2 ? bias : NULL;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < ldc; n++) {
                int64_t i = m * ldc + n;
                if (n >= N) {
                    ref[i] = C0[i];
                    continue;
                }
                int64_t t = acc[m * N + n] - (int64_t)zp * rowsum[m];
                ref[i] = fmaf((float)t, rs[m], bi ? bi[m] : 0.0f);
                if (accumulate) ref[i] += C0[i];
            }
        for (int path = 0; path < 2; path++) {
            memcpy(C1, C0, sizeof(float) * (size_t)(M * ldc));
            (path ? gd_gemm_s8_scalar : gd_gemm_s8)(M, N, K, (const int8_t *)Ap, rowsum, B, ldb, inv, zp, rs, bi, accumulate, C1,
                                                    ldc, w);
            int64_t differ = 0, first = -1;
            for (int64_t i = 0; i < M * ldc; i++)
                if (memcmp(&C1[i], &ref[i], sizeof(float)) && differ++ == 0) first = i;
            CHECK(differ == 0, "%lldx%lldx%lld zp %d %s, accumulate %d, bias %s: %lld elements differ from the int64 GEMM (first (%lld, %lld): %.9g vs %.9g)",
                  (long long)M, (long long)N, (long long)K, zp, path ? "scalar" : "gd_gemm_s8", accumulate, bi ? "yes" : "no",
                  (long long)differ, (long long)(first / ldc), (long long)(first % ldc), first >= 0 ? C1[first] : 0.0,
                  first >= 0 ? ref[first] : 0.0);
        }
    }
    free(A), free(B), free(rs), free(bias), free(C0), free(C1), free(ref), free(rowsum), free(acc), free(q), free(Ap), free(w);
}

static void test_exact(void) {
    gemm_case(1, 1, 1, 1, 1, 1.0f, 0, 1);              /* the smallest */
    gemm_case(12, 32, 4, 32, 32, 4.0f, 128, 2);        /* one whole tile */
    gemm_case(13, 33, 7, 40, 35, 0.5f, 255, 3);        /* partial panels, K not a multiple of 4, strides */
    gemm_case(50, 70, 1, 70, 71, 1.0f / 0.0371f, 87, 4); /* K = 1 */
    gemm_case(1, 100, 2305, 101, 100, 4.0f, 3, 5);     /* M = 1, deep K */
    gemm_case(25, 300, 2305, 300, 303, 1.0f / 0.0213f, 140, 6); /* N crosses blocks of 192 columns at this K */
    gemm_case(37, 2100, 5, 2100, 2100, 2.0f, 60, 7);   /* shallow K: N crosses the 2048-column cap */
    gemm_case(7, 130, 6913, 130, 130, 1.0f / 0.05f, 200, 8); /* the deepest conv (K 6912 + 1): 64 columns a block */
    gemm_case(30, 45, 576, 45, 45, 1.0f / 0.03f, -5, 9); /* a zero point outside 0..255 (the scalar packing) */
    gemm_case(5, 7, 0, 7, 7, 1.0f, 9, 10);             /* K = 0: C = bias */
}

/* n bytes ending where an inaccessible page begins, so a read or write past them faults */
static void *guarded(size_t n, void **base, size_t *len) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), body = (n + pg - 1) / pg * pg;
    *len = body + pg;
    char *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    mprotect(p + body, pg, PROT_NONE);
    *base = p;
    return p + body - n;
}

/* partial panels (N 37: a panel of 32 and 5 columns; M 13; K 10) read no float past B's last row
 * or the quantizer's input, and read or write none past C's last row: all three end at a guard page */
static void test_bounds(void) {
    const int64_t M = 13, N = 37, K = 10;
    void *bb = NULL, *cb = NULL, *xb = NULL;
    size_t bl = 0, cl = 0, xl = 0;
    float *B = guarded(sizeof(float) * (size_t)(K * N), &bb, &bl), *C = guarded(sizeof(float) * (size_t)(M * N), &cb, &cl),
          *x = guarded(sizeof(float) * (size_t)N, &xb, &xl);
    CHECK(B && C && x, "mmap");
    if (!B || !C || !x) {
        if (bb) munmap(bb, bl);
        if (cb) munmap(cb, cl);
        if (xb) munmap(xb, xl);
        return;
    }
    uint64_t s = 11;
    int8_t A[13 * 10], Ap[2 * GD_S8_MR * 12];
    int32_t rowsum[13];
    float rs[13], C2[13 * 37];
    for (int64_t i = 0; i < M * K; i++) A[i] = (int8_t)((int64_t)(lcg(&s) % 255) - 127);
    for (int64_t i = 0; i < K * N; i++) B[i] = uniform(&s) * 3.0f;
    for (int64_t i = 0; i < N; i++) x[i] = B[i];
    for (int64_t m = 0; m < M; m++) rs[m] = 0.01f;
    for (int64_t i = 0; i < M * N; i++) C[i] = C2[i] = uniform(&s);
    CHECK(gd_s8_packed_size(M, K) <= sizeof Ap, "packed size %zu", gd_s8_packed_size(M, K));
    gd_s8_pack_a(A, K, M, K, Ap, rowsum);
    uint8_t w[4096], q[37];
    CHECK(gd_s8_work_size(N, K) <= sizeof w, "work size %zu", gd_s8_work_size(N, K));
    gd_gemm_s8(M, N, K, Ap, rowsum, B, N, 40.0f, 100, rs, NULL, 1, C, N, w);
    gd_gemm_s8_scalar(M, N, K, Ap, rowsum, B, N, 40.0f, 100, rs, NULL, 1, C2, N, w);
    CHECK(!memcmp(C, C2, sizeof C2), "native and scalar differ");
    gd_s8_quantize_u8(x, N, 40.0f, 100, q);
    int bad = 0;
    for (int64_t i = 0; i < N; i++) bad += q[i] != quant_ref(x[i], 40.0f, 100);
    CHECK(bad == 0, "%d quantized wrongly", bad);
    munmap(bb, bl), munmap(cb, cl), munmap(xb, xl);
}

/* larger shapes: gd_gemm_s8 (the VNNI kernel here) and the scalar path give the same bits, a
 * call split at a multiple of MR rows gives the whole call's, and so do tiles of rows and columns
 * on a B packed whole in two column ranges (as conv_s8.c splits a sample over threads) */
static void test_native(void) {
    if (!gd_s8_native()) {
        printf("    no AVX512-VNNI on this CPU: gd_gemm_s8 is the scalar path, nothing more to test\n");
        return;
    }
    const int64_t shapes[][3] = {{192, 1000, 1728}, {64, 1029, 576}, {100, 333, 3457}, {40, 77, 6912}};
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t M = shapes[c][0], N = shapes[c][1], K = shapes[c][2];
        uint64_t s = 100 + c;
        int8_t *A = malloc((size_t)(M * K));
        float *B = malloc(sizeof(float) * (size_t)(K * N)), *rs = malloc(sizeof(float) * (size_t)M),
              *bias = malloc(sizeof(float) * (size_t)M);
        float *C1 = malloc(sizeof(float) * (size_t)(M * N)), *C2 = malloc(sizeof(float) * (size_t)(M * N)),
              *C3 = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) A[i] = (int8_t)((int64_t)(lcg(&s) % 255) - 127);
        for (int64_t i = 0; i < K * N; i++) B[i] = uniform(&s) * 4.0f + 1.0f;
        for (int64_t m = 0; m < M; m++) rs[m] = (1.0f + uniform(&s)) * 1e-4f, bias[m] = uniform(&s);
        float *C4 = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * N; i++) C1[i] = C2[i] = C3[i] = C4[i] = uniform(&s);
        int32_t *rowsum = malloc(sizeof(int32_t) * (size_t)M);
        int8_t *Ap = malloc(gd_s8_packed_size(M, K));
        void *w = malloc(gd_s8_work_size(N, K));
        gd_s8_pack_a(A, K, M, K, Ap, rowsum);
        const float inv = 255.0f / 6.0f;
        const int zp = 51;
        gd_gemm_s8(M, N, K, Ap, rowsum, B, N, inv, zp, rs, bias, 1, C1, N, w);
        gd_gemm_s8_scalar(M, N, K, Ap, rowsum, B, N, inv, zp, rs, bias, 1, C2, N, w);
        const int64_t m0 = 2 * GD_S8_MR, Kp = (K + 3) / 4 * 4;
        gd_gemm_s8(m0, N, K, Ap, rowsum, B, N, inv, zp, rs, bias, 1, C3, N, w);
        gd_gemm_s8(M - m0, N, K, Ap + m0 * Kp, rowsum + m0, B, N, inv, zp, rs + m0, bias + m0, 1, C3 + m0 * N, N, w);
        uint8_t *Bp = malloc(gd_s8_packed_b_size(N, K));
        const int64_t nsplit = (N / 2 + GD_S8_NR - 1) / GD_S8_NR * GD_S8_NR, tm = 3 * GD_S8_MR, tn = 5 * GD_S8_NR;
        gd_s8_pack_b(B, N, K, nsplit, N - nsplit, inv, zp, Bp);
        gd_s8_pack_b(B, N, K, 0, nsplit, inv, zp, Bp);
        for (int64_t r = 0; r < M; r += tm)
            for (int64_t n0 = 0; n0 < N; n0 += tn)
                gd_gemm_s8_packed(M - r < tm ? M - r : tm, N - n0 < tn ? N - n0 : tn, K, Ap + r * Kp, rowsum + r, Bp, n0, zp, rs + r,
                                  bias + r, 1, C4 + r * N + n0, N);
        int64_t d12 = 0, d13 = 0, d14 = 0;
        for (int64_t i = 0; i < M * N; i++)
            d12 += memcmp(&C1[i], &C2[i], sizeof(float)) != 0, d13 += memcmp(&C1[i], &C3[i], sizeof(float)) != 0,
                d14 += memcmp(&C1[i], &C4[i], sizeof(float)) != 0;
        CHECK(d14 == 0, "%lldx%lldx%lld: tiles on the packed B differ in %lld elements", (long long)M, (long long)N, (long long)K,
              (long long)d14);
        free(C4), free(Bp);
        CHECK(d12 == 0, "%lldx%lldx%lld: native and scalar paths differ in %lld elements", (long long)M, (long long)N, (long long)K,
              (long long)d12);
        CHECK(d13 == 0, "%lldx%lldx%lld: split at row %lld differs in %lld elements", (long long)M, (long long)N, (long long)K,
              (long long)m0, (long long)d13);
        free(A), free(B), free(rs), free(bias), free(C1), free(C2), free(C3), free(rowsum), free(Ap), free(w);
    }
}

/* B packed straight from a conv's input = im2col (written out here, naively) then gd_s8_pack_b,
 * byte for byte, over odd channel counts (K not a multiple of 4), kernel shapes, image sizes and
 * column ranges that end inside a panel */
static void test_pack_im2col(void) {
    if (!gd_s8_native()) {
        printf("    no AVX512-VNNI on this CPU: the fused pack does not apply (gd_s8_im2col_ok is 0)\n");
        CHECK(!gd_s8_im2col_ok(16, 16, 3, 3, 1, 1), "fused pack claimed without VNNI");
        return;
    }
    const int64_t shapes[][5] = {{3, 16, 16, 3, 3}, {5, 7, 32, 3, 3}, {2, 9, 16, 5, 5}, {3, 4, 48, 1, 7}, {6, 16, 16, 7, 1}};
    CHECK(!gd_s8_im2col_ok(8, 8, 3, 3, 1, 1) && !gd_s8_im2col_ok(16, 16, 3, 3, 0, 0), "fused pack claimed for W 8 or VALID");
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t C = shapes[c][0], H = shapes[c][1], W = shapes[c][2], KH = shapes[c][3], KW = shapes[c][4];
        int64_t PH = (KH - 1) / 2, PW = (KW - 1) / 2, K = C * KH * KW, N = H * W;
        uint64_t s = 300 + c;
        float *x = malloc(sizeof(float) * (size_t)(C * N)), *col = malloc(sizeof(float) * (size_t)(K * N));
        for (int64_t i = 0; i < C * N; i++) x[i] = uniform(&s) * 3.0f - 1.0f;
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++) {
                int64_t ch = k / (KH * KW), iy = n / W + k % (KH * KW) / KW - PH, ix = n % W + k % KW - PW;
                col[k * N + n] = iy >= 0 && iy < H && ix >= 0 && ix < W ? x[ch * N + iy * W + ix] : 0.0f;
            }
        size_t bytes = gd_s8_packed_b_size(N, K);
        uint8_t *p1 = malloc(bytes), *p2 = malloc(bytes);
        memset(p1, 0xa5, bytes), memset(p2, 0x5a, bytes);
        const float inv = 255.0f / 4.0f;
        const int zp = 64;
        const int64_t split = N / 3 / GD_S8_NR * GD_S8_NR; /* two ranges, as two threads pack them */
        gd_s8_pack_b(col, N, K, 0, split, inv, zp, p1);
        gd_s8_pack_b(col, N, K, split, N - split, inv, zp, p1);
        int r1 = gd_s8_pack_b_im2col(x, H, W, KH, KW, PH, PW, K, 0, split, inv, zp, p2);
        int r2 = gd_s8_pack_b_im2col(x, H, W, KH, KW, PH, PW, K, split, N - split, inv, zp, p2);
        CHECK(r1 == 0 && r2 == 0, "%lldx%lldx%lld %lldx%lld: fused pack refused", (long long)C, (long long)H, (long long)W,
              (long long)KH, (long long)KW);
        size_t bad = 0;
        for (size_t i = 0; i < bytes; i++) bad += p1[i] != p2[i];
        CHECK(bad == 0, "%lldx%lldx%lld %lldx%lld: %zu of %zu packed bytes differ", (long long)C, (long long)H, (long long)W,
              (long long)KH, (long long)KW, bad, bytes);
        free(x), free(col), free(p1), free(p2);
    }
    /* the padding lanes read nothing outside the input: a 3x3 and a 1x7 conv over an input that
     * starts right after an inaccessible page, and again over one that ends right before one */
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(map != MAP_FAILED, "mmap");
    if (map == MAP_FAILED) return;
    mprotect(map, pg, PROT_NONE);
    mprotect(map + 3 * pg, pg, PROT_NONE);
    const int64_t H = 2, W = 16, n = H * W;
    float *xs[2] = {(float *)(map + pg), (float *)(map + 3 * pg) - n};
    uint8_t Bp[64 * 32 * 2];
    for (int e = 0; e < 2; e++) {
        for (int64_t i = 0; i < n; i++) xs[e][i] = (float)i;
        CHECK(gd_s8_packed_b_size(n, 9) <= sizeof Bp, "packed size");
        CHECK(!gd_s8_pack_b_im2col(xs[e], H, W, 3, 3, 1, 1, 9, 0, n, 1.0f, 0, Bp), "3x3 refused");
        CHECK(!gd_s8_pack_b_im2col(xs[e], H, W, 1, 7, 0, 3, 7, 0, n, 1.0f, 0, Bp), "1x7 refused");
    }
    munmap(map, 4 * pg);
}

GD_TEST_TABLE(gd_tests_gemm_s8) = {
    {"gemm_s8: u8 quantizer = the formula (ties to even, clamps, NaN, infinities, tails)", test_quantize},
    {"gemm_s8: C = the int64 GEMM of the quantized inputs + fmaf epilogue, exactly, both paths; row sums", test_exact},
    {"gemm_s8: partial panels touch nothing past B, C or the quantizer's input (guard pages)", test_bounds},
    {"gemm_s8: B packed straight from a conv's input = im2col then pack, byte for byte; no read outside the input", test_pack_im2col},
    {"gemm_s8: AVX512-VNNI = scalar bit for bit on larger shapes; a split M, and tiles on a B packed once, give the same bits", test_native},
    {NULL, NULL},
};
