/* The bf16 GEMM (--precision bf16) against exact references: the rounding against its definition,
 * the products against a double-precision GEMM of the bf16-rounded inputs, and the AVX512-BF16
 * kernel against the scalar path bit for bit. */
#include "core/gemm_bf16.h"
#include "gd_model.h"
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
        if (gd_f32_to_bf16(v.f) != round_ref(v.f)) bad++;
    }
    CHECK(bad == 0, "%d of the random floats rounded wrongly", bad);
    /* ties: 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7; 1 + 3 * 2^-8 between 1 + 2^-7 (odd) and 1 + 2^-6 */
    CHECK(gd_f32_to_bf16(1.00390625f) == 0x3f80, "tie to even (down) gave %04x", gd_f32_to_bf16(1.00390625f));
    CHECK(gd_f32_to_bf16(1.01171875f) == 0x3f82, "tie to even (up) gave %04x", gd_f32_to_bf16(1.01171875f));
    CHECK(gd_f32_to_bf16(3.40282347e38f) == 0x7f80, "the largest float rounds to inf, gave %04x", gd_f32_to_bf16(3.40282347e38f));
    CHECK(gd_f32_to_bf16(-0.0f) == 0x8000, "-0");
    union { uint32_t u; float f; } nan = {0x7fc00001u}, snan = {0x7f800001u};
    CHECK((gd_f32_to_bf16(nan.f) & 0x7fc0) == 0x7fc0 && (gd_f32_to_bf16(snan.f) & 0x7fc0) == 0x7fc0, "NaN stays (quiet) NaN");
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
                double p = (double)gd_bf16_to_f32(gd_f32_to_bf16(A[m * K + k])) * gd_bf16_to_f32(gd_f32_to_bf16(B[k * ldb + n]));
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

/* the packed layout by its definition ([panel][k/2][MR][2], zero padding; denormals flushed to
 * signed zero as VCVTNEPS2BF16 does) against both packs, from A row-major and A given transposed */
static void pack_case(int64_t M, int64_t K, int64_t pad, uint64_t seed) {
    uint64_t s = seed;
    const int64_t lda = K + pad, ldt = M + pad, Kp = (K + 1) & ~(int64_t)1;
    float *A = malloc(sizeof(float) * (size_t)(M * lda + 1)), *At = malloc(sizeof(float) * (size_t)(K * ldt + 1));
    for (int64_t i = 0; i < M * lda; i++) {
        union { uint32_t u; float f; } v = {(uint32_t)lcg(&s)};
        A[i] = i % 5 == 0 ? v.f : uniform(&s) * 100.0f; /* every fifth: any bit pattern (denormals, NaN, inf) */
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) At[k * ldt + m] = A[m * lda + k];
    size_t n = gd_bf16_packed_size(M, K);
    uint16_t *want = calloc(n + 1, sizeof(uint16_t)), *got = malloc(sizeof(uint16_t) * (n + 1)), *got_t = malloc(sizeof(uint16_t) * (n + 1));
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            union { float f; uint32_t u; } v = {A[m * lda + k]};
            if ((v.u & 0x7f800000u) == 0) v.u &= 0x80000000u;
            want[((m / GD_BF16_MR * (Kp / 2) + k / 2) * GD_BF16_MR + m % GD_BF16_MR) * 2 + k % 2] = gd_f32_to_bf16(v.f);
        }
    memset(got, 0xa5, sizeof(uint16_t) * n);
    memset(got_t, 0x5a, sizeof(uint16_t) * n);
    gd_bf16_pack_a(A, lda, M, K, got);
    gd_bf16_pack_at(At, ldt, M, K, got_t);
    int64_t bad = 0, bad_t = 0;
    for (size_t i = 0; i < n; i++) bad += got[i] != want[i], bad_t += got_t[i] != want[i];
    CHECK(bad == 0 && bad_t == 0, "pack %lldx%lld: %lld (row-major) and %lld (transposed) of %zu elements wrong", (long long)M,
          (long long)K, (long long)bad, (long long)bad_t, n);
    free(A), free(At), free(want), free(got), free(got_t);
}

static void test_pack(void) {
    pack_case(1, 1, 0, 11);
    pack_case(12, 2, 3, 12);
    pack_case(13, 7, 1, 13);   /* partial panel, odd K */
    pack_case(25, 33, 5, 14);  /* odd K past one 16-wide chunk */
    pack_case(64, 1024, 0, 15); /* an attention head's operand */
    pack_case(1024, 64, 2, 16);
}

/* ---- conv2d forward in bf16 ---- */

/* y of one planned conv graph on fixed data, at the given precision and threads */
/* with dyd: also the input gradient for that output gradient, into *dx (the weights need none, as
 * in guidance) */
static float *conv_run_grad(int N, int C, int H, int W, int O, int KH, int KW, int S, int PH, int PW, gd_precision prec, int threads,
                            const float *xd, const float *wd, const float *bd, const float *dyd, float **dx, int train_weights) {
    gd_set_threads(threads);
    gd_set_precision(prec);
    gd_ctx *ctx = gd_ctx_new(16);
    gd_tensor *x = gd_new_4d(ctx, GD_F32, N, C, H, W), *w = gd_new_4d(ctx, GD_F32, O, C, KH, KW), *b = gd_new_1d(ctx, GD_F32, O);
    x->flags = w->flags = b->flags = GD_FLAG_INPUT;
    if (dyd) x->flags |= GD_FLAG_NEEDS_GRAD;
    if (train_weights) w->flags |= GD_FLAG_NEEDS_GRAD;
    gd_tensor *y = gd_conv2d_ex(ctx, x, w, b, S, PH, PW);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    gd_graph_plan(g, dyd != NULL, NULL, 0);
    gd_set_precision(GD_PRECISION_F32); /* the plan decided; the global can change afterwards */
    memcpy(x->data, xd, sizeof(float) * (size_t)gd_nelements(x));
    memcpy(w->data, wd, sizeof(float) * (size_t)gd_nelements(w));
    memcpy(b->data, bd, sizeof(float) * (size_t)O);
    gd_graph_compute(g, NULL, 0);
    float *out = malloc(sizeof(float) * (size_t)gd_nelements(y));
    memcpy(out, y->data, sizeof(float) * (size_t)gd_nelements(y));
    if (dyd) {
        gd_graph_backward(g, y, dyd, NULL, 0);
        *dx = malloc(sizeof(float) * (size_t)gd_nelements(x));
        memcpy(*dx, x->grad, sizeof(float) * (size_t)gd_nelements(x));
    }
    gd_graph_free(g);
    gd_ctx_free(ctx);
    gd_set_threads(2);
    return out;
}

static float *conv_run(int N, int C, int H, int W, int O, int KH, int KW, int S, int PH, int PW, gd_precision prec, int threads,
                       const float *xd, const float *wd, const float *bd) {
    return conv_run_grad(N, C, H, W, O, KH, KW, S, PH, PW, prec, threads, xd, wd, bd, NULL, NULL, 0);
}

static void conv_bf16_case(const char *what, int N, int C, int H, int W, int O, int KH, int KW, int S, int PH, int PW,
                           int winograd) {
    uint64_t s = (uint64_t)(N * 131 + C * 7 + H);
    int64_t nx = (int64_t)N * C * H * W, nw = (int64_t)O * C * KH * KW;
    float *xd = malloc(sizeof(float) * (size_t)nx), *wd = malloc(sizeof(float) * (size_t)nw), *bd = malloc(sizeof(float) * (size_t)O);
    for (int64_t i = 0; i < nx; i++) xd[i] = uniform(&s);
    for (int64_t i = 0; i < nw; i++) wd[i] = uniform(&s) * 0.3f;
    for (int i = 0; i < O; i++) bd[i] = uniform(&s);
    float *y32 = conv_run(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_F32, 2, xd, wd, bd);
    float *y1 = conv_run(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_BF16, 1, xd, wd, bd);
    float *y2 = conv_run(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_BF16, 2, xd, wd, bd);
    /* the last sample alone: a batch of one gives its bits */
    float *ys = conv_run(1, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_BF16, 2, xd + (int64_t)(N - 1) * C * H * W, wd, bd);
    int64_t OH = (H + 2 * PH - KH) / S + 1, OW = (W + 2 * PW - KW) / S + 1, ny = (int64_t)N * O * OH * OW, per = O * OH * OW;
    /* im2col/direct: exactly the double conv of the rounded inputs (fp32 sums); Winograd rounds
     * the transformed data instead, so there the bound is bf16's own precision against fp32 */
    double worst = 0, worst32 = 0, scale = 0;
    for (int64_t i = 0; i < ny; i++) scale = fmax(scale, fabs(y32[i]));
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double ref = bd[o], mag = fabs(bd[o]);
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < KH; ky++)
                            for (int kx = 0; kx < KW; kx++) {
                                int64_t iy = oy * S - PH + ky, ix = ox * S - PW + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                double p = (double)gd_bf16_to_f32(gd_f32_to_bf16(xd[((int64_t)(n * C + c) * H + iy) * W + ix])) *
                                           gd_bf16_to_f32(gd_f32_to_bf16(wd[((o * C + c) * KH + ky) * KW + kx]));
                                ref += p, mag += fabs(p);
                            }
                    int64_t i = ((int64_t)(n * O + o) * OH + oy) * OW + ox;
                    worst = fmax(worst, fabs((double)y2[i] - ref) / mag);
                    worst32 = fmax(worst32, fabs((double)y2[i] - y32[i]) / scale);
                }
    if (winograd)
        CHECK(worst32 <= 1.5e-2, "%s: bf16 Winograd vs fp32 max %.3g of max|y| (bound: bf16-sized)", what, worst32);
    else
        CHECK(worst <= (double)(C * KH * KW + 2) * 6e-8, "%s: max error %.3g of sum|x w| against the rounded inputs", what, worst);
    CHECK(worst32 > 1e-5, "%s: bf16 gave fp32's result (max difference %.3g): the bf16 path did not run", what, worst32);
    CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)ny), "%s: 1 and 2 threads differ", what);
    CHECK(!memcmp(ys, y2 + (int64_t)(N - 1) * per, sizeof(float) * (size_t)per), "%s: a sample alone differs from its batch", what);
    /* the input gradient (a graph planned with its backward): bf16-sized against fp32, > 0, the
     * same bits for 1 and 2 threads; the forward of such a graph is the forward-only graph's */
    float *dyd = malloc(sizeof(float) * (size_t)ny), *dx32, *dx1, *dx2;
    for (int64_t i = 0; i < ny; i++) dyd[i] = uniform(&s);
    free(conv_run_grad(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_F32, 2, xd, wd, bd, dyd, &dx32, 0));
    free(conv_run_grad(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_BF16, 1, xd, wd, bd, dyd, &dx1, 0));
    float *yb = conv_run_grad(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_BF16, 2, xd, wd, bd, dyd, &dx2, 0);
    /* weights being trained stay fp32 (their packing would go stale): fp32's bits, gradients too */
    float *dxt, *dx32t, *yt = conv_run_grad(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_BF16, 2, xd, wd, bd, dyd, &dxt, 1);
    free(conv_run_grad(N, C, H, W, O, KH, KW, S, PH, PW, GD_PRECISION_F32, 2, xd, wd, bd, dyd, &dx32t, 1));
    CHECK(!memcmp(yt, y32, sizeof(float) * (size_t)ny) && !memcmp(dxt, dx32t, sizeof(float) * (size_t)nx),
          "%s: a conv whose weights need gradients ran bf16", what);
    free(yt), free(dxt), free(dx32t);
    double dxs = 0, dxw = 0;
    for (int64_t i = 0; i < nx; i++) dxs = fmax(dxs, fabs(dx32[i]));
    for (int64_t i = 0; i < nx; i++) dxw = fmax(dxw, fabs((double)dx2[i] - dx32[i]) / dxs);
    CHECK(dxw <= 1.5e-2 && dxw > 1e-5, "%s: bf16 input gradient vs fp32 %.3g of max|dx| (expected bf16-sized, > 0)", what, dxw);
    CHECK(!memcmp(dx1, dx2, sizeof(float) * (size_t)nx), "%s: input gradient: 1 and 2 threads differ", what);
    CHECK(!memcmp(yb, y2, sizeof(float) * (size_t)ny), "%s: the forward of a graph with a backward differs", what);
    printf("    %s: vs fp32 %.2e of max|y|, vs the rounded-input conv %.2e of sum|x w|; dx vs fp32 %.2e\n", what, worst32, worst,
           dxw);
    free(dyd), free(dx32), free(dx1), free(dx2), free(yb);
    free(xd), free(wd), free(bd), free(y32), free(y1), free(y2), free(ys);
}

static void test_conv(void) {
    if (!gd_bf16_native()) {
        printf("    no AVX512-BF16 on this CPU: gd_set_precision(bf16) refuses, nothing more to test\n");
        CHECK(gd_set_precision(GD_PRECISION_BF16) == -1 && gd_get_precision() == GD_PRECISION_F32, "refused, stays fp32");
        return;
    }
    conv_bf16_case("3x3 same 8x8 (im2col), batch 3", 3, 16, 8, 8, 20, 3, 3, 1, 1, 1, 0);
    conv_bf16_case("3x3 stride 2, batch 2", 2, 8, 9, 9, 13, 3, 3, 2, 1, 1, 0);
    conv_bf16_case("1x1 direct, batch 3", 3, 24, 6, 6, 30, 1, 1, 1, 0, 0, 0);
    conv_bf16_case("1x7 (Inception), batch 1", 1, 12, 9, 9, 14, 1, 7, 1, 0, 3, 0);
    conv_bf16_case("3x3 same 24x24 (Winograd), batch 3", 3, 8, 24, 24, 10, 3, 3, 1, 1, 1, 1);
    conv_bf16_case("3x3 same 33x31 (Winograd, odd edges), batch 1", 1, 6, 33, 31, 7, 3, 3, 1, 1, 1, 1);
}

/* attention in bf16 against fp32 on the same qkv (N 2, 2 heads of 16, T 40 and 7), forward and
 * the input gradient for a fixed upstream gradient: the products round their inputs, softmax and
 * its VJP stay fp32; rows of the weights still sum to one, so both stay within bf16's precision of
 * fp32's; 1 and 2 threads give the same bits */
static float *attn_run(const float *qkv, const float *dy, int N, int C, int T, gd_precision prec, int threads, float **dx) {
    gd_set_threads(threads);
    gd_set_precision(prec);
    gd_ctx *ctx = gd_ctx_new(8);
    int64_t ne[3] = {N, 3 * C, T};
    gd_tensor *x = gd_new_tensor(ctx, GD_F32, 3, ne);
    x->flags = GD_FLAG_INPUT | GD_FLAG_NEEDS_GRAD;
    gd_tensor *y = gd_attention(ctx, x, 2, 1);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    gd_graph_plan(g, 1, NULL, 0);
    gd_set_precision(GD_PRECISION_F32);
    memcpy(x->data, qkv, sizeof(float) * (size_t)(N * 3 * C * T));
    gd_graph_compute(g, NULL, 0);
    gd_graph_backward(g, y, dy, NULL, 0);
    float *out = malloc(sizeof(float) * (size_t)(N * C * T));
    memcpy(out, y->data, sizeof(float) * (size_t)(N * C * T));
    *dx = malloc(sizeof(float) * (size_t)(N * 3 * C * T));
    memcpy(*dx, x->grad, sizeof(float) * (size_t)(N * 3 * C * T));
    gd_graph_free(g);
    gd_ctx_free(ctx);
    gd_set_threads(2);
    return out;
}

static double rel_max(const float *a, const float *ref, int n) {
    double worst = 0, scale = 0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - ref[i]) / scale);
    return worst;
}

static void test_attention(void) {
    if (!gd_bf16_native()) return;
    const int N = 2, C = 32;
    for (int T = 7; T <= 40; T += 33) {
        uint64_t s = (uint64_t)T;
        float *qkv = malloc(sizeof(float) * (size_t)(N * 3 * C * T)), *dy = malloc(sizeof(float) * (size_t)(N * C * T));
        for (int i = 0; i < N * 3 * C * T; i++) qkv[i] = uniform(&s) * 2.0f;
        for (int i = 0; i < N * C * T; i++) dy[i] = uniform(&s);
        float *d32, *d1, *d2;
        float *a32 = attn_run(qkv, dy, N, C, T, GD_PRECISION_F32, 2, &d32), *a1 = attn_run(qkv, dy, N, C, T, GD_PRECISION_BF16, 1, &d1),
              *a2 = attn_run(qkv, dy, N, C, T, GD_PRECISION_BF16, 2, &d2);
        double worst = rel_max(a2, a32, N * C * T), dworst = rel_max(d2, d32, N * 3 * C * T);
        CHECK(worst <= 2e-2 && worst > 1e-5, "T %d: bf16 vs fp32 attention %.3g of max|a| (expected bf16-sized, > 0)", T, worst);
        CHECK(dworst <= 2e-2 && dworst > 1e-5, "T %d: bf16 vs fp32 attention gradient %.3g of max|dqkv| (expected bf16-sized, > 0)", T,
              dworst);
        CHECK(!memcmp(a1, a2, sizeof(float) * (size_t)(N * C * T)), "T %d: 1 and 2 threads differ", T);
        CHECK(!memcmp(d1, d2, sizeof(float) * (size_t)(N * 3 * C * T)), "T %d: 1 and 2 threads differ in the gradient", T);
        printf("    T %d: bf16 vs fp32 %.2e of max|a|, gradient %.2e of max|dqkv|\n", T, worst, dworst);
        free(qkv), free(dy), free(a32), free(a1), free(a2), free(d32), free(d1), free(d2);
    }
}

/* ---- whole networks: bf16 against fp32 on the same inputs ---- */

/* output (U-Net) or logits and input gradient (classifier) of a model file at a precision */
static float *net_run(const char *path, int N, gd_precision prec, int64_t *n_out, float **grad, int64_t *n_x) {
    char err[512];
    gd_model *m = gd_model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "%s", err);
    if (!m) return NULL;
    const gd_config *cfg = gd_model_config(m);
    int cls = cfg->kind == GD_NET_CLASSIFIER;
    gd_set_precision(prec);
    gd_net *net = gd_net_new(m, N, cls, err, sizeof err);
    gd_set_precision(GD_PRECISION_F32);
    CHECK(net != NULL, "%s: %s", path, err);
    if (!net) {
        gd_model_free(m);
        return NULL;
    }
    int64_t nx = (int64_t)N * cfg->in_channels * cfg->image_size * cfg->image_size;
    uint64_t s = 99;
    for (int64_t i = 0; i < nx; i++) gd_net_x(net)[i] = uniform(&s);
    for (int i = 0; i < N; i++) gd_net_t(net)[i] = (float)(100 + 250 * i);
    if (gd_net_y(net))
        for (int i = 0; i < N; i++) gd_net_y(net)[i] = i % cfg->num_classes;
    if (gd_net_low_res(net))
        for (int64_t i = 0; i < (int64_t)N * cfg->in_channels * cfg->small_size * cfg->small_size; i++) gd_net_low_res(net)[i] = uniform(&s);
    *grad = NULL, *n_x = nx;
    int rc;
    if (cls) {
        *grad = malloc(sizeof(float) * (size_t)nx);
        rc = gd_net_input_grad(net, *grad, err, sizeof err);
    } else {
        rc = gd_net_forward(net, err, sizeof err);
    }
    CHECK(rc == 0, "%s: %s", path, err);
    const gd_tensor *o = gd_net_output(net);
    *n_out = gd_nelements(o);
    float *out = malloc(sizeof(float) * (size_t)*n_out);
    memcpy(out, o->data, sizeof(float) * (size_t)*n_out);
    gd_net_free(net);
    gd_model_free(m);
    return out;
}

static double rel_diff(const float *a, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - ref[i]));
        if (a[i] != a[i]) md = INFINITY;
        mr = fmax(mr, fabs(ref[i]));
    }
    return md / (mr > 0 ? mr : 1);
}

/* bf16 is a lower-precision mode: what it must keep is a bound of a few bf16 ulps (2^-8 = 3.9e-3)
 * against fp32 through every layer, here 3e-2 of the largest output */
static void test_networks(void) {
    if (!gd_bf16_native()) return;
    const char *paths[] = {"tests/fixtures/conv_unet.safetensors", "tests/fixtures/conv_cls.safetensors",
                           "tests/fixtures/conv_sr.safetensors", "models/fashion_diffusion.safetensors",
                           "models/fashion_classifier_ce.safetensors"};
    for (size_t k = 0; k < sizeof paths / sizeof *paths; k++) {
        int64_t no, nx, no2, nx2;
        float *g32 = NULL, *gb = NULL;
        float *o32 = net_run(paths[k], 3, GD_PRECISION_F32, &no, &g32, &nx), *ob = net_run(paths[k], 3, GD_PRECISION_BF16, &no2, &gb, &nx2);
        if (!o32 || !ob) {
            free(o32), free(ob), free(g32), free(gb);
            continue;
        }
        double eo = rel_diff(ob, o32, no), eg = g32 ? rel_diff(gb, g32, nx) : 0;
        printf("    %s: output %.2e%s", paths[k], eo, g32 ? ", input gradient " : "\n");
        if (g32) printf("%.2e\n", eg);
        CHECK(eo <= 3e-2 && eo > 1e-6, "%s: bf16 output vs fp32 %.3g (bound 3e-2, and not fp32's)", paths[k], eo);
        CHECK(!g32 || (eg <= 3e-2 && eg > 1e-6), "%s: bf16 input gradient vs fp32 %.3g (bound 3e-2)", paths[k], eg);
        free(o32), free(ob), free(g32), free(gb);
    }
}

GD_TEST_TABLE(gd_tests_bf16) = {
    {"bf16: fp32 -> bf16 rounds to nearest even (random floats, ties, overflow, NaN)", test_round},
    {"bf16: packing A (row-major and transposed) against the layout's definition, denormals flushed", test_pack},
    {"bf16: GEMM against a double GEMM of the rounded inputs; AVX512-BF16 = scalar bit for bit", test_gemm},
    {"bf16: attention forward and input gradient against fp32; thread-independent", test_attention},
    {"bf16: whole networks (tiny fixtures, the default Fashion models) within 3e-2 of fp32", test_networks},
    {"bf16: conv2d forward (im2col, direct, 1x7, Winograd): error bounds, thread- and batch-independent", test_conv},
    {NULL, NULL},
};
