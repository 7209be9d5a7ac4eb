/* Every op's backward against central finite differences of its forward, and the kernels with
 * non-trivial indexing (conv2d, attention, bilinear) against naive double-precision loops. */
#include "gd_tensor.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Deterministic N(0,1)-ish values (sum of uniforms): enough for tests, independent of libc. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float nrand(void) {
    double s = 0;
    for (int i = 0; i < 12; i++) s += urand();
    return (float)(s - 6.0);
}

typedef struct {
    int ndim;
    int64_t ne[4];
    int kind; /* 0: f32 input with gradient, 1: i32 index in [0, ne_max), 2: f32 constant, 3: timestep */
    int imax;
} in_spec;

typedef gd_tensor *(*build_fn)(gd_ctx *ctx, gd_tensor **in);

/* L = sum(r * y) with fixed random r, accumulated in double. */
static double loss(gd_graph *g, gd_tensor *y, const float *r) {
    gd_graph_compute(g, NULL, 0);
    double L = 0;
    for (int64_t i = 0; i < gd_nelements(y); i++) L += (double)r[i] * F32_AT(y, i);
    return L;
}

static void fd_check(const char *name, int nin, const in_spec *spec, build_fn f, double h, double tol) {
    gd_ctx *ctx = gd_ctx_new(256);
    gd_tensor *in[8];
    for (int i = 0; i < nin; i++) {
        in[i] = gd_new_tensor(ctx, spec[i].kind == 1 ? GD_I32 : GD_F32, spec[i].ndim, spec[i].ne);
        in[i]->flags = GD_FLAG_INPUT | (spec[i].kind == 0 || spec[i].kind == 3 ? GD_FLAG_NEEDS_GRAD : 0);
        gd_set_name(in[i], "in%d", i);
    }
    gd_tensor *y = f(ctx, in);
    CHECK(y != NULL, "%s: build failed: %s", name, gd_ctx_error(ctx));
    if (!y) { gd_ctx_free(ctx); return; }
    char err[256] = "";
    gd_graph *g = gd_graph_build(ctx, &y, 1, err, sizeof err);
    CHECK(g && gd_graph_plan(g, 1, err, sizeof err) == 0, "%s: plan failed: %s", name, err);
    for (int i = 0; i < nin; i++) {
        int64_t n = gd_nelements(in[i]);
        for (int64_t k = 0; k < n; k++) {
            if (spec[i].kind == 1) ((int32_t *)in[i]->data)[k] = (int32_t)(urand() * spec[i].imax) % spec[i].imax;
            else if (spec[i].kind == 3) ((float *)in[i]->data)[k] = (float)(urand() * 3.0);
            else ((float *)in[i]->data)[k] = nrand();
        }
    }
    int64_t ny = gd_nelements(y);
    float *r = malloc(sizeof(float) * (size_t)ny);
    for (int64_t k = 0; k < ny; k++) r[k] = nrand();
    gd_graph_compute(g, NULL, 0);
    gd_graph_backward(g, y, r, NULL, 0);
    double worst = 0, scale = 0;
    for (int i = 0; i < nin; i++) {
        if (!in[i]->grad) continue;
        int64_t n = gd_nelements(in[i]);
        float *x = in[i]->data;
        float *an = malloc(sizeof(float) * (size_t)n);
        memcpy(an, in[i]->grad, sizeof(float) * (size_t)n);
        int64_t step = n > 96 ? n / 96 : 1;
        for (int64_t k = 0; k < n; k += step) {
            float x0 = x[k];
            x[k] = (float)(x0 + h);
            double lp = loss(g, y, r);
            x[k] = (float)(x0 - h);
            double lm = loss(g, y, r);
            x[k] = x0;
            double num = (lp - lm) / (2 * h), d = fabs(num - an[k]);
            if (d > worst) worst = d;
            if (fabs(num) > scale) scale = fabs(num);
        }
        free(an);
    }
    double rel = worst / (scale > 1e-6 ? scale : 1e-6);
    printf("    %-28s max |analytic - numeric| / max |numeric| = %.2e\n", name, rel);
    CHECK(rel <= tol, "%s: gradient error %.3e > %.1e", name, rel, tol);
    free(r);
    gd_graph_free(g);
    gd_ctx_free(ctx);
}

#define S4(a, b, c, d) 4, {a, b, c, d}
#define S3(a, b, c) 3, {a, b, c}
#define S2(a, b) 2, {a, b}
#define S1(a) 1, {a}

static gd_tensor *b_conv3(gd_ctx *c, gd_tensor **i) { return gd_conv2d(c, i[0], i[1], i[2], 1, 1); }
static gd_tensor *b_conv3s2(gd_ctx *c, gd_tensor **i) { return gd_conv2d(c, i[0], i[1], i[2], 2, 1); }
static gd_tensor *b_conv1(gd_ctx *c, gd_tensor **i) { return gd_conv2d(c, i[0], i[1], i[2], 1, 0); }
static gd_tensor *b_conv17(gd_ctx *c, gd_tensor **i) { return gd_conv2d_ex(c, i[0], i[1], i[2], 1, 0, 3); }
static gd_tensor *b_conv71s2(gd_ctx *c, gd_tensor **i) { return gd_conv2d_ex(c, i[0], i[1], i[2], 2, 3, 0); }
static gd_tensor *b_linear(gd_ctx *c, gd_tensor **i) { return gd_linear(c, i[0], i[1], i[2]); }
static gd_tensor *b_gn(gd_ctx *c, gd_tensor **i) { return gd_group_norm(c, i[0], i[1], i[2], 4, 1e-5f); }
static gd_tensor *b_silu(gd_ctx *c, gd_tensor **i) { return gd_silu(c, i[0]); }
static gd_tensor *b_add(gd_ctx *c, gd_tensor **i) { return gd_add(c, i[0], i[1]); }
static gd_tensor *b_mul(gd_ctx *c, gd_tensor **i) { return gd_mul(c, i[0], i[1]); }
static gd_tensor *b_scale(gd_ctx *c, gd_tensor **i) { return gd_scale(c, i[0], -0.37f); }
static gd_tensor *b_ss(gd_ctx *c, gd_tensor **i) { return gd_scale_shift(c, i[0], i[1]); }
static gd_tensor *b_cat1(gd_ctx *c, gd_tensor **i) { return gd_concat(c, i[0], i[1], 1); }
static gd_tensor *b_cat2(gd_ctx *c, gd_tensor **i) { return gd_concat(c, i[0], i[1], 2); }
static gd_tensor *b_up(gd_ctx *c, gd_tensor **i) { return gd_upsample2x(c, i[0]); }
static gd_tensor *b_pool(gd_ctx *c, gd_tensor **i) { return gd_avgpool2x(c, i[0]); }
static gd_tensor *b_pool_avg(gd_ctx *c, gd_tensor **i) { return gd_pool2d(c, i[0], GD_POOL_AVG_EXCL_PAD, 3, 1, 1); }
static gd_tensor *b_crop(gd_ctx *c, gd_tensor **i) { return gd_crop2d(c, i[0], 1, 2, 3, 2); }
static gd_tensor *b_bil(gd_ctx *c, gd_tensor **i) { return gd_bilinear(c, i[0], 11, 16); }
static gd_tensor *b_att_l(gd_ctx *c, gd_tensor **i) { return gd_attention(c, i[0], 2, 0); }
static gd_tensor *b_att_n(gd_ctx *c, gd_tensor **i) { return gd_attention(c, i[0], 2, 1); }
static gd_tensor *b_sm(gd_ctx *c, gd_tensor **i) { return gd_softmax(c, i[0]); }
static gd_tensor *b_lsm(gd_ctx *c, gd_tensor **i) { return gd_log_softmax(c, i[0]); }
static gd_tensor *b_temb(gd_ctx *c, gd_tensor **i) { return gd_timestep_embedding(c, i[0], 8, 10000.0f); }
static gd_tensor *b_emb(gd_ctx *c, gd_tensor **i) { return gd_embedding(c, i[0], i[1]); }
static gd_tensor *b_mean(gd_ctx *c, gd_tensor **i) { return gd_mean(c, i[0], 2); }
static gd_tensor *b_sel(gd_ctx *c, gd_tensor **i) { return gd_select(c, i[0], 2, 0); }
static gd_tensor *b_gat(gd_ctx *c, gd_tensor **i) { return gd_gather(c, i[0], i[1]); }
static gd_tensor *b_lsm_gat(gd_ctx *c, gd_tensor **i) { return gd_gather(c, gd_log_softmax(c, i[0]), i[1]); }
static gd_tensor *b_reshape(gd_ctx *c, gd_tensor **i) {
    int64_t ne[4] = {2, 6, 5, 1};
    return gd_silu(c, gd_reshape(c, i[0], 4, ne));
}

static void test_grad_conv(void) {
    in_spec a[] = {{S4(2, 3, 6, 5), 0, 0}, {S4(4, 3, 3, 3), 0, 0}, {S1(4), 0, 0}};
    fd_check("conv2d 3x3 s1 p1", 3, a, b_conv3, 1e-2, 1e-3);
    fd_check("conv2d 3x3 s2 p1", 3, a, b_conv3s2, 1e-2, 1e-3);
    in_spec w[] = {{S4(2, 3, 25, 20), 0, 0}, {S4(4, 3, 3, 3), 0, 0}, {S1(4), 0, 0}};
    fd_check("conv2d 3x3 Winograd", 3, w, b_conv3, 1e-2, 1e-3);
    in_spec b[] = {{S4(3, 5, 4, 4), 0, 0}, {S4(6, 5, 1, 1), 0, 0}, {S1(6), 0, 0}};
    fd_check("conv2d 1x1 batch 3", 3, b, b_conv1, 1e-2, 1e-3);
    in_spec c[] = {{S4(1, 4, 48, 48), 0, 0}, {S4(2, 4, 1, 1), 0, 0}, {S1(2), 0, 0}};
    fd_check("conv2d 1x1 (direct gemm)", 3, c, b_conv1, 1e-2, 1e-3);
    in_spec r[] = {{S4(2, 3, 5, 8), 0, 0}, {S4(4, 3, 1, 7), 0, 0}, {S1(4), 0, 0}};
    fd_check("conv2d 1x7 pad 0,3", 3, r, b_conv17, 1e-2, 1e-3);
    in_spec q[] = {{S4(2, 3, 9, 6), 0, 0}, {S4(4, 3, 7, 1), 0, 0}, {S1(4), 0, 0}};
    fd_check("conv2d 7x1 s2 pad 3,0", 3, q, b_conv71s2, 1e-2, 1e-3);
}

static void test_grad_dense(void) {
    in_spec a[] = {{S2(3, 7), 0, 0}, {S2(5, 7), 0, 0}, {S1(5), 0, 0}};
    fd_check("linear", 3, a, b_linear, 1e-2, 1e-3);
    in_spec g[] = {{S4(2, 8, 3, 4), 0, 0}, {S1(8), 0, 0}, {S1(8), 0, 0}};
    fd_check("group_norm", 3, g, b_gn, 1e-2, 1e-3);
    in_spec s[] = {{S4(2, 3, 4, 5), 0, 0}};
    fd_check("silu", 1, s, b_silu, 1e-2, 1e-3);
    fd_check("scale", 1, s, b_scale, 1e-2, 1e-3);
    in_spec ad[] = {{S4(2, 3, 4, 5), 0, 0}, {S4(2, 3, 4, 5), 0, 0}};
    fd_check("add", 2, ad, b_add, 1e-2, 1e-3);
    in_spec ab[] = {{S4(2, 3, 4, 5), 0, 0}, {S4(2, 3, 1, 1), 0, 0}};
    fd_check("add broadcast [N,C,1,1]", 2, ab, b_add, 1e-2, 1e-3);
    in_spec at[] = {{S3(2, 3, 5), 0, 0}, {S2(3, 5), 0, 0}};
    fd_check("add broadcast trailing", 2, at, b_add, 1e-2, 1e-3);
    fd_check("mul broadcast [N,C,1,1]", 2, ab, b_mul, 1e-2, 1e-3);
    in_spec ss[] = {{S4(2, 3, 4, 5), 0, 0}, {S2(2, 6), 0, 0}};
    fd_check("scale_shift", 2, ss, b_ss, 1e-2, 1e-3);
    in_spec r[] = {{S3(2, 6, 5), 0, 0}};
    fd_check("reshape (view)", 1, r, b_reshape, 1e-2, 1e-3);
}

static void test_grad_layout(void) {
    in_spec c1[] = {{S4(2, 3, 4, 5), 0, 0}, {S4(2, 2, 4, 5), 0, 0}};
    fd_check("concat dim 1", 2, c1, b_cat1, 1e-2, 1e-3);
    in_spec c2[] = {{S3(2, 3, 1), 0, 0}, {S3(2, 3, 6), 0, 0}};
    fd_check("concat dim 2", 2, c2, b_cat2, 1e-2, 1e-3);
    in_spec u[] = {{S4(2, 3, 3, 4), 0, 0}};
    fd_check("upsample2x nearest", 1, u, b_up, 1e-2, 1e-3);
    in_spec p[] = {{S4(2, 3, 6, 7), 0, 0}};
    fd_check("avgpool2x (odd width)", 1, p, b_pool, 1e-2, 1e-3);
    in_spec bl[] = {{S4(2, 2, 5, 8), 0, 0}};
    fd_check("bilinear 5x8 -> 11x16", 1, bl, b_bil, 1e-2, 1e-3);
    in_spec m[] = {{S4(2, 3, 4, 5), 0, 0}};
    fd_check("mean over H,W", 1, m, b_mean, 1e-2, 1e-3);
    in_spec sl[] = {{S3(2, 3, 5), 0, 0}};
    fd_check("select", 1, sl, b_sel, 1e-2, 1e-3);
}

static void test_grad_attention(void) {
    in_spec a[] = {{S3(2, 3 * 8, 9), 0, 0}};
    fd_check("attention legacy order", 1, a, b_att_l, 1e-2, 1e-3);
    fd_check("attention new order", 1, a, b_att_n, 1e-2, 1e-3);
    in_spec s[] = {{S2(3, 7), 0, 0}};
    fd_check("softmax", 1, s, b_sm, 1e-2, 1e-3);
    fd_check("log_softmax", 1, s, b_lsm, 1e-2, 1e-3);
    in_spec gt[] = {{S2(4, 6), 0, 0}, {S1(4), 1, 6}};
    fd_check("gather", 2, gt, b_gat, 1e-2, 1e-3);
    fd_check("log_softmax -> gather", 2, gt, b_lsm_gat, 1e-2, 1e-3);
    in_spec t[] = {{S1(3), 3, 0}};
    fd_check("timestep_embedding (d/dt)", 1, t, b_temb, 1e-3, 1e-3);
    in_spec e[] = {{S2(5, 4), 0, 0}, {S1(3), 1, 5}};
    fd_check("embedding (d/dweight)", 2, e, b_emb, 1e-2, 1e-3);
}

/* ---- forward kernels against naive loops in double ---- */

static double naive_conv(const float *x, const float *w, const float *b, int C, int H, int W, int O, int KH,
                         int KW, int S, int PH, int PW, int n, int o, int oy, int ox) {
    double s = b[o];
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++) {
                int iy = oy * S - PH + ky, ix = ox * S - PW + kx;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                    s += (double)x[((n * C + c) * H + iy) * W + ix] * w[((o * C + c) * KH + ky) * KW + kx];
            }
    return s;
}

static void conv_case_ex(int N, int C, int H, int W, int O, int KH, int KW, int S, int PH, int PW) {
    gd_ctx *ctx = gd_ctx_new(16);
    gd_tensor *x = gd_new_4d(ctx, GD_F32, N, C, H, W), *w = gd_new_4d(ctx, GD_F32, O, C, KH, KW),
              *b = gd_new_1d(ctx, GD_F32, O);
    x->flags = w->flags = b->flags = GD_FLAG_INPUT;
    gd_tensor *y = gd_conv2d_ex(ctx, x, w, b, S, PH, PW);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    gd_graph_plan(g, 0, NULL, 0);
    for (int64_t i = 0; i < gd_nelements(x); i++) ((float *)x->data)[i] = nrand();
    for (int64_t i = 0; i < gd_nelements(w); i++) ((float *)w->data)[i] = nrand();
    for (int64_t i = 0; i < O; i++) ((float *)b->data)[i] = nrand();
    gd_graph_compute(g, NULL, 0);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int oy = 0; oy < y->ne[2]; oy++)
                for (int ox = 0; ox < y->ne[3]; ox++) {
                    double ref = naive_conv(x->data, w->data, b->data, C, H, W, O, KH, KW, S, PH, PW, n, o, oy, ox);
                    double d = fabs(ref - F32_AT(y, ((n * O + o) * y->ne[2] + oy) * y->ne[3] + ox));
                    if (d > worst) worst = d;
                }
    CHECK(worst < 1e-4 * sqrt((double)C * KH * KW), "conv %dx%d s%d p%d,%d N%d %dx%d: max err %.3e", KH, KW, S, PH, PW,
          N, H, W, worst);
    CHECK(y->ne[2] == (H + 2 * PH - KH) / S + 1 && y->ne[3] == (W + 2 * PW - KW) / S + 1, "conv %dx%d: output %lldx%lld",
          KH, KW, (long long)y->ne[2], (long long)y->ne[3]);
    gd_graph_free(g);
    gd_ctx_free(ctx);
}

static void conv_case(int N, int C, int H, int W, int O, int K, int S, int P) { conv_case_ex(N, C, H, W, O, K, K, S, P, P); }

static void test_conv_forward(void) {
    conv_case(1, 3, 7, 9, 5, 3, 1, 1);
    conv_case(3, 4, 7, 7, 6, 3, 2, 1);   /* odd size, stride 2, batched */
    conv_case(2, 8, 64, 64, 4, 3, 1, 1); /* Winograd (and per-sample gemm without it) */
    conv_case(3, 5, 29, 27, 4, 3, 1, 1); /* Winograd with odd edges, tiles across samples */
    conv_case(5, 6, 4, 4, 3, 1, 1, 0);
    /* Inception's shapes: 1x7 / 7x1 "same", 1x3 / 3x1, 5x5 pad 2, 3x3 stride-2 and stride-1 VALID */
    conv_case_ex(2, 3, 9, 11, 4, 1, 7, 1, 0, 3);
    conv_case_ex(2, 3, 9, 11, 4, 7, 1, 1, 3, 0);
    conv_case_ex(1, 4, 8, 8, 5, 1, 3, 1, 0, 1);
    conv_case_ex(1, 4, 8, 8, 5, 3, 1, 1, 1, 0);
    conv_case_ex(1, 3, 10, 10, 4, 5, 5, 1, 2, 2);
    conv_case_ex(2, 3, 35, 35, 4, 3, 3, 2, 0, 0); /* 35 -> 17 */
    conv_case_ex(1, 3, 12, 12, 4, 3, 3, 1, 0, 0);
}

static void test_attention_forward(void) {
    int N = 2, H = 3, d = 4, C = H * d, T = 7;
    for (int order = 0; order < 2; order++) {
        gd_ctx *ctx = gd_ctx_new(8);
        gd_tensor *qkv = gd_new_tensor(ctx, GD_F32, 3, (int64_t[]){N, 3 * C, T});
        qkv->flags = GD_FLAG_INPUT;
        gd_tensor *y = gd_attention(ctx, qkv, H, order);
        gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
        gd_graph_plan(g, 0, NULL, 0);
        float *q = qkv->data;
        for (int i = 0; i < N * 3 * C * T; i++) q[i] = nrand();
        gd_graph_compute(g, NULL, 0);
        double worst = 0;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                int qo = order ? h * d : h * 3 * d, ko = order ? C + h * d : h * 3 * d + d,
                    vo = order ? 2 * C + h * d : h * 3 * d + 2 * d;
                const float *b = q + n * 3 * C * T;
                for (int t = 0; t < T; t++) {
                    double lg[16], m = -1e300, s = 0;
                    for (int u = 0; u < T; u++) {
                        lg[u] = 0;
                        for (int c = 0; c < d; c++) lg[u] += (double)b[(qo + c) * T + t] * b[(ko + c) * T + u];
                        lg[u] /= sqrt((double)d);
                        if (lg[u] > m) m = lg[u];
                    }
                    for (int u = 0; u < T; u++) s += exp(lg[u] - m);
                    for (int c = 0; c < d; c++) {
                        double a = 0;
                        for (int u = 0; u < T; u++) a += exp(lg[u] - m) / s * b[(vo + c) * T + u];
                        double dd = fabs(a - F32_AT(y, (n * C + h * d + c) * T + t));
                        if (dd > worst) worst = dd;
                    }
                }
            }
        CHECK(worst < 1e-5, "attention order %d: max err %.3e", order, worst);
        gd_graph_free(g);
        gd_ctx_free(ctx);
    }
}

/* Values from torch.nn.functional.interpolate(arange(4).view(1,1,1,4).float(), size=(1,6),
 * mode="bilinear", align_corners=False): clamping at the left edge, the last pixel repeated at the right. */
static void test_bilinear_values(void) {
    gd_ctx *ctx = gd_ctx_new(8);
    gd_tensor *x = gd_new_4d(ctx, GD_F32, 1, 1, 1, 4);
    x->flags = GD_FLAG_INPUT;
    gd_tensor *y = gd_bilinear(ctx, x, 1, 6);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    gd_graph_plan(g, 0, NULL, 0);
    for (int i = 0; i < 4; i++) ((float *)x->data)[i] = (float)i;
    gd_graph_compute(g, NULL, 0);
    const double ref[6] = {0.0, 0.5, 1.1666667461395264, 1.8333333730697632, 2.5, 3.0};
    for (int i = 0; i < 6; i++) CHECK(fabs(F32_AT(y, i) - ref[i]) < 1e-6, "bilinear[%d] = %.8f, want %.8f", i, F32_AT(y, i), ref[i]);
    gd_graph_free(g);
    gd_ctx_free(ctx);
}

/* pool2d forward against naive loops and its gradient against the routing it must do: inputs are
 * a permutation of distinct values, so each max is unique and the max-pool gradient is exact */
static void pool_case(gd_pool kind, int N, int C, int H, int W, int k, int s, int p) {
    gd_ctx *ctx = gd_ctx_new(8);
    gd_tensor *x = gd_new_4d(ctx, GD_F32, N, C, H, W);
    x->flags = GD_FLAG_INPUT | GD_FLAG_NEEDS_GRAD;
    gd_tensor *y = gd_pool2d(ctx, x, kind, k, s, p);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    CHECK(g && gd_graph_plan(g, 1, NULL, 0) == 0, "pool plan");
    int64_t n = gd_nelements(x), ny = gd_nelements(y);
    float *xv = x->data;
    for (int64_t i = 0; i < n; i++) xv[i] = (float)((i * 7919) % n) / (float)n - 0.5f;
    float *r = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < ny; i++) r[i] = nrand();
    gd_graph_compute(g, NULL, 0);
    gd_graph_backward(g, y, r, NULL, 0);
    double *gref = calloc((size_t)n, sizeof(double)), worst = 0, gworst = 0;
    int64_t OH = y->ne[2], OW = y->ne[3];
    CHECK(OH == (H + 2 * p - k) / s + 1 && OW == (W + 2 * p - k) / s + 1, "pool output %lldx%lld", (long long)OH,
          (long long)OW);
    for (int64_t pl = 0; pl < N * C; pl++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                double acc = kind == GD_POOL_MAX ? -1e30 : 0;
                int64_t cnt = 0, arg = -1;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        int64_t idx = (pl * H + iy) * W + ix;
                        cnt++;
                        if (kind == GD_POOL_MAX) {
                            if (xv[idx] > acc) acc = xv[idx], arg = idx;
                        } else acc += xv[idx];
                    }
                int64_t o = (pl * OH + oy) * OW + ox;
                if (kind == GD_POOL_MAX) gref[arg] += r[o];
                else {
                    acc /= (double)cnt;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < W) gref[(pl * H + iy) * W + ix] += r[o] / (double)cnt;
                        }
                }
                double d = fabs(acc - F32_AT(y, o));
                if (d > worst) worst = d;
            }
    for (int64_t i = 0; i < n; i++)
        if (fabs(gref[i] - x->grad[i]) > gworst) gworst = fabs(gref[i] - x->grad[i]);
    CHECK(worst < 1e-6 && gworst < 1e-5, "pool %s %d s%d p%d %dx%d: forward err %.2e, gradient err %.2e",
          kind == GD_POOL_MAX ? "max" : "avg", k, s, p, H, W, worst, gworst);
    free(r);
    free(gref);
    gd_graph_free(g);
    gd_ctx_free(ctx);
}

static void test_pool_relu(void) {
    pool_case(GD_POOL_MAX, 2, 3, 9, 8, 3, 2, 0);          /* Inception's stride-2 VALID pools */
    pool_case(GD_POOL_MAX, 1, 2, 7, 7, 3, 1, 1);          /* Mixed_7c's padded max pool */
    pool_case(GD_POOL_AVG_EXCL_PAD, 1, 2, 6, 5, 3, 1, 1); /* corners /4, edges /6, inside /9 */
    pool_case(GD_POOL_AVG_EXCL_PAD, 2, 1, 8, 8, 8, 1, 0); /* pool_3's 8x8 VALID */
    pool_case(GD_POOL_MAX, 1, 2, 5, 147, 3, 2, 0);         /* rows wider than the vector chunk */
    pool_case(GD_POOL_AVG_EXCL_PAD, 1, 2, 4, 131, 3, 1, 1);
    in_spec a[] = {{S4(2, 3, 5, 5), 0, 0}};
    fd_check("pool2d avg 3x3 excl. padding", 1, a, b_pool_avg, 1e-2, 1e-3);
    fd_check("crop2d", 1, a, b_crop, 1e-2, 1e-3);
    gd_ctx *ctx = gd_ctx_new(4);
    gd_tensor *x = gd_new_1d(ctx, GD_F32, 4);
    x->flags = GD_FLAG_INPUT | GD_FLAG_NEEDS_GRAD;
    gd_tensor *y = gd_relu(ctx, x);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    gd_graph_plan(g, 1, NULL, 0);
    float xv[4] = {-1.5f, 0.0f, 0.25f, 3.0f}, dy[4] = {1, 2, 3, 4};
    memcpy(x->data, xv, sizeof xv);
    gd_graph_compute(g, NULL, 0);
    gd_graph_backward(g, y, dy, NULL, 0);
    CHECK(F32_AT(y, 0) == 0 && F32_AT(y, 1) == 0 && F32_AT(y, 2) == 0.25f && F32_AT(y, 3) == 3.0f, "relu forward");
    CHECK(x->grad[0] == 0 && x->grad[1] == 0 && x->grad[2] == 3 && x->grad[3] == 4, "relu gradient");
    CHECK(gd_pool2d(ctx, x, GD_POOL_MAX, 3, 1, 1) == NULL, "pool2d refuses a non-4-D input");
    {
        gd_ctx *c2 = gd_ctx_new(4);
        gd_tensor *q = gd_new_4d(c2, GD_F32, 1, 2, 4, 5);
        q->flags = GD_FLAG_INPUT;
        gd_tensor *r = gd_crop2d(c2, q, 1, 1, 2, 3);
        gd_graph *g2 = gd_graph_build(c2, &r, 1, NULL, 0);
        gd_graph_plan(g2, 0, NULL, 0);
        for (int i = 0; i < 40; i++) ((float *)q->data)[i] = (float)i;
        gd_graph_compute(g2, NULL, 0);
        /* plane 1, row 2, columns 1..3 = 20 + 10 + 1.. */
        CHECK(F32_AT(r, 0) == 6 && F32_AT(r, 2) == 8 && F32_AT(r, 3) == 11 && F32_AT(r, 6) == 26 && F32_AT(r, 11) == 33,
              "crop2d values");
        CHECK(gd_crop2d(c2, q, 3, 0, 2, 2) == NULL, "crop2d refuses a window past the edge");
        gd_graph_free(g2);
        gd_ctx_free(c2);
    }
    gd_graph_free(g);
    gd_ctx_free(ctx);
}

static void test_half_conversion(void) {
    CHECK(gd_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    CHECK(gd_f16_to_f32(0xc000) == -2.0f, "f16 -2.0");
    CHECK(gd_f16_to_f32(0x0001) == 5.9604644775390625e-08f, "f16 smallest subnormal");
    CHECK(gd_f32_to_f16(65504.0f) == 0x7bff, "f16 max");
    CHECK(gd_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "f16 round half to even (down)");
    CHECK(gd_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "f16 round half to even (up)");
    CHECK(gd_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    CHECK(gd_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 tie to even");
    for (int i = 0; i < 65536; i += 7) {
        uint16_t h = (uint16_t)i;
        if ((h & 0x7c00) == 0x7c00) continue;
        CHECK(gd_f32_to_f16(gd_f16_to_f32(h)) == h || (h & 0x7fff) == 0, "f16 round trip %04x", h);
    }
}

GD_TEST_TABLE(gd_tests_ops) = {
    {"grad: conv2d", test_grad_conv},
    {"grad: dense and element-wise", test_grad_dense},
    {"grad: layout and resampling", test_grad_layout},
    {"grad: attention, softmax, embeddings", test_grad_attention},
    {"forward: conv2d vs naive", test_conv_forward},
    {"forward: attention vs naive", test_attention_forward},
    {"forward: bilinear vs PyTorch values", test_bilinear_values},
    {"pool2d (max, average excluding padding) and relu", test_pool_relu},
    {"half-precision conversion", test_half_conversion},
    {NULL, NULL},
};
