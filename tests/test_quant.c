/* W8A8: the quantizer's formulas against their numpy port (tests/reference/gen_quant_fixtures.py),
 * the int8 conv against the fake-quantized fp32 conv it stands for, calibration end to end on tiny
 * random networks (a bound on the output change, the file round trip), and damaged files. */
#include "cli_util.h"
#include "gd_model.h"
#include "gd_quant.h"
#include "gd_safetensors.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}
static float uniform(uint64_t *s) { return (float)((double)lcg(s) / 9007199254740992.0 * 2.0 - 1.0); }

static const gd_st_tensor *need(const gd_st_file *f, const char *name) {
    const gd_st_tensor *t = gd_st_find(f, name);
    CHECK(t != NULL, "fixture tensor %s", name);
    return t;
}
static double f64_at(const gd_st_tensor *t, int64_t i) {
    double v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}
static int64_t i64_at(const gd_st_tensor *t, int64_t i) {
    int64_t v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}
static int32_t i32_at(const gd_st_tensor *t, int64_t i) {
    int32_t v;
    memcpy(&v, (const char *)t->data + 4 * i, 4);
    return v;
}

static void test_formulas_match_numpy(void) {
    char err[512];
    gd_st_file *f = gd_st_open("tests/fixtures/quant.safetensors", err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    const gd_st_tensor *W = need(f, "weights"), *X = need(f, "acts"), *hr = need(f, "hist_range"), *hc = need(f, "hist_counts");
    if (!W || !X || !hr || !hc) goto out;
    const int64_t R = W->shape[0], K = W->shape[1], nx = X->numel;
    float *w = malloc(sizeof(float) * (size_t)(R * K)), *x = malloc(sizeof(float) * (size_t)nx);
    memcpy(w, W->data, sizeof(float) * (size_t)(R * K));
    memcpy(x, X->data, sizeof(float) * (size_t)nx);
    gd_qhist *h = malloc(sizeof *h);
    gd_qhist_reset(h);
    gd_qhist_range(h, x, nx / 2); /* in two calls, as batches arrive */
    gd_qhist_range(h, x + nx / 2, nx - nx / 2);
    gd_qhist_add(h, x, 1000);
    gd_qhist_add(h, x + 1000, nx - 1000);
    CHECK(h->lo == f64_at(hr, 0) && h->hi == f64_at(hr, 1), "range [%.17g, %.17g] vs numpy [%.17g, %.17g]", h->lo, h->hi,
          f64_at(hr, 0), f64_at(hr, 1));
    int bad = 0;
    for (int k = 0; k < GD_QHIST_BINS; k++) bad += h->count[k] != i64_at(hc, k);
    CHECK(bad == 0 && h->n == nx, "%d histogram bins differ from numpy's", bad);
    const char *tags[2] = {"p24", "p2"};
    const double ps[2] = {2.4, 2.0};
    for (int v = 0; v < 2; v++) {
        char nm[64];
        snprintf(nm, sizeof nm, "w_scale_%s", tags[v]);
        const gd_st_tensor *ws = need(f, nm);
        snprintf(nm, sizeof nm, "w_q_%s", tags[v]);
        const gd_st_tensor *wq = need(f, nm);
        if (!ws || !wq) continue;
        int8_t *q = malloc((size_t)K);
        for (int64_t r = 0; r < R; r++) {
            double s = gd_quant_weight_scale(w + r * K, K, ps[v]);
            CHECK(s == f64_at(ws, r), "p=%g row %lld: scale %.17g, numpy %.17g", ps[v], (long long)r, s, f64_at(ws, r));
            gd_quant_weight_row(w + r * K, K, (float)s, q);
            int qb = 0;
            for (int64_t j = 0; j < K; j++) qb += q[j] != i32_at(wq, r * K + j);
            CHECK(qb == 0, "p=%g row %lld: %d int8 weights differ", ps[v], (long long)r, qb);
        }
        free(q);
        double s;
        int z;
        double e = gd_quant_act_params(h, ps[v], &s, &z);
        snprintf(nm, sizeof nm, "a_scale_%s", tags[v]);
        const gd_st_tensor *as = need(f, nm);
        snprintf(nm, sizeof nm, "a_zero_%s", tags[v]);
        const gd_st_tensor *az = need(f, nm);
        snprintf(nm, sizeof nm, "a_err_%s", tags[v]);
        const gd_st_tensor *ae = need(f, nm);
        if (!as || !az || !ae) continue;
        CHECK(s == f64_at(as, 0) && z == i32_at(az, 0), "p=%g activations: scale %.17g zero %d, numpy %.17g %d", ps[v], s, z,
              f64_at(as, 0), i32_at(az, 0));
        CHECK(fabs(e - f64_at(ae, 0)) <= 1e-12 * f64_at(ae, 0), "p=%g activation error %.17g, numpy %.17g", ps[v], e, f64_at(ae, 0));
    }
    /* the outlier row: the search must clip (a smaller scale than max/127), the zero row scale 1 */
    CHECK(gd_quant_weight_scale(w + 2 * K, K, 2.4) < 0.9 / 127 && gd_quant_weight_scale(w + 3 * K, K, 2.4) == 1.0,
          "outlier row not clipped or zero row scale not 1");
    free(w), free(x), free(h);
out:
    gd_st_close(f);
}

/* ---- the int8 conv against the fake-quantized conv it computes ---- */

static float *qconv_run(int N, int C, int H, int W, int O, int KH, int KW, int S, int P, const gd_quant *q, int threads, const float *xd,
                        const float *wd, const float *bd) {
    gd_set_threads(threads);
    gd_ctx *ctx = gd_ctx_new(16);
    gd_tensor *x = gd_new_4d(ctx, GD_F32, N, C, H, W), *w = gd_new_4d(ctx, GD_F32, O, C, KH, KW), *b = gd_new_1d(ctx, GD_F32, O);
    x->flags = w->flags = b->flags = GD_FLAG_INPUT;
    w->quant = q;
    gd_tensor *y = gd_conv2d_ex(ctx, x, w, b, S, P, P);
    gd_graph *g = gd_graph_build(ctx, &y, 1, NULL, 0);
    gd_graph_plan(g, 0, NULL, 0);
    memcpy(x->data, xd, sizeof(float) * (size_t)gd_nelements(x));
    memcpy(w->data, wd, sizeof(float) * (size_t)gd_nelements(w));
    memcpy(b->data, bd, sizeof(float) * (size_t)O);
    gd_graph_compute(g, NULL, 0);
    float *out = malloc(sizeof(float) * (size_t)gd_nelements(y));
    memcpy(out, y->data, sizeof(float) * (size_t)gd_nelements(y));
    gd_graph_free(g);
    gd_ctx_free(ctx);
    gd_set_threads(2);
    return out;
}

static void qconv_case(const char *what, int N, int C, int H, int W, int O, int K, int S, int P) {
    uint64_t s = (uint64_t)(N * 977 + C * 13 + H + K);
    const int64_t nx = (int64_t)N * C * H * W, CKK = (int64_t)C * K * K, nw = O * CKK;
    float *xd = malloc(sizeof(float) * (size_t)nx), *wd = malloc(sizeof(float) * (size_t)nw), *bd = malloc(sizeof(float) * (size_t)O);
    int8_t *w8 = malloc((size_t)nw);
    float *ws = malloc(sizeof(float) * (size_t)O);
    /* the quantizer spans [-1.33, 2.57]: most inputs inside, one in a hundred beyond (clamped) */
    for (int64_t i = 0; i < nx; i++) xd[i] = i % 100 == 7 ? uniform(&s) * 4.0f : uniform(&s) * 1.2f + 0.6f;
    for (int o = 0; o < O; o++) {
        ws[o] = 0.002f * (1 + o % 5);
        bd[o] = uniform(&s);
        for (int64_t k = 0; k < CKK; k++) w8[o * CKK + k] = (int8_t)(lcg(&s) % 255 - 127);
    }
    for (int64_t i = 0; i < nw; i++) wd[i] = (float)w8[i] * ws[i / CKK];
    gd_quant q = {.w = w8, .w_scale = ws, .a_scale = 3.9f / 255, .a_zero = 87};
    float *y1 = qconv_run(N, C, H, W, O, K, K, S, P, &q, 1, xd, wd, bd);
    float *y2 = qconv_run(N, C, H, W, O, K, K, S, P, &q, 2, xd, wd, bd);
    float *yf = qconv_run(N, C, H, W, O, K, K, S, P, NULL, 2, xd, wd, bd); /* fp32 on the dequantized weights */
    const int64_t OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1, ny = (int64_t)N * O * OH * OW;
    const float inv = 1.0f / q.a_scale;
    double worst = 0, dq = 0, mag = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double ref = 0, m = fabs(bd[o]);
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int64_t iy = oy * S - P + ky, ix = ox * S - P + kx;
                                double xq = 0; /* padding is an exact zero */
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                                    float v = xd[((int64_t)(n * C + c) * H + iy) * W + ix] * inv;
                                    double u = nearbyint((double)v) + q.a_zero;
                                    xq = ((u < 0 ? 0 : u > 255 ? 255 : u) - q.a_zero) * q.a_scale;
                                }
                                double p = (double)wd[((o * C + c) * K + ky) * K + kx] * xq;
                                ref += p, m += fabs(p);
                            }
                    ref += bd[o];
                    int64_t i = ((int64_t)(n * O + o) * OH + oy) * OW + ox;
                    worst = fmax(worst, fabs((double)y2[i] - ref) / m);
                    dq = fmax(dq, fabs((double)yf[i] - y2[i]));
                    mag = fmax(mag, fabs(ref));
                }
    CHECK(worst < 2e-6, "%s: int8 conv vs the fake-quantized conv: relative error %.3g", what, worst);
    CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)ny), "%s: 1 and 2 threads differ", what);
    /* the quantization of the input is real: fp32 on the same weights differs (clamped inputs most) */
    CHECK(dq > 1e-4 * mag && dq < 0.3 * mag, "%s: int8 vs fp32 max difference %.3g (outputs up to %.3g)", what, dq, mag);
    free(xd), free(wd), free(bd), free(w8), free(ws), free(y1), free(y2), free(yf);
}

static void test_conv_s8(void) {
    qconv_case("3x3 same", 2, 5, 9, 9, 7, 3, 1, 1);
    qconv_case("3x3 stride 2", 3, 4, 8, 8, 13, 3, 2, 1);
    qconv_case("1x1 direct", 2, 24, 6, 6, 30, 1, 1, 0);
    qconv_case("one sample, wide", 1, 16, 16, 16, 40, 3, 1, 1); /* split over threads within the sample */
}

/* ---- calibration end to end ---- */

#define TINY_UNET                                                                                                                  \
    "{\"model\": \"unet\", \"image_size\": 8, \"in_channels\": 1, \"num_channels\": 32, \"channel_mult\": \"1,2\", "              \
    "\"num_res_blocks\": 1, \"attention_resolutions\": \"2\", \"num_head_channels\": 32, \"learn_sigma\": true, "                 \
    "\"use_scale_shift_norm\": true, \"resblock_updown\": true, \"class_cond\": true, \"num_classes\": 4, \"null_class\": true, " \
    "\"diffusion_steps\": 1000, \"noise_schedule\": \"cosine\"}"
#define TINY_CLS                                                                                                                   \
    "{\"model\": \"classifier\", \"image_size\": 8, \"in_channels\": 1, \"num_classes\": 4, \"classifier_width\": 32, "      \
    "\"classifier_depth\": 1, \"classifier_channel_mult\": \"1,2\", \"classifier_attention_resolutions\": \"2\", "               \
    "\"classifier_num_head_channels\": 32, \"classifier_use_scale_shift_norm\": true, \"classifier_resblock_updown\": true, "     \
    "\"classifier_pool\": \"attention\", \"diffusion_steps\": 1000, \"noise_schedule\": \"cosine\"}"

static gd_model *tiny(const char *js, uint64_t seed) {
    gd_config cfg;
    char err[512];
    if (gd_config_parse(js, &cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return NULL;
    }
    gd_model *m = gd_model_random(&cfg, seed);
    gd_config_free(&cfg);
    gd_net *n = m ? gd_net_new(m, 1, 0, err, sizeof err) : NULL; /* makes every weight */
    CHECK(n != NULL, "%s", err);
    gd_net_free(n);
    return m;
}

/* the network's output for fixed inputs at t (U-Net: labels 0..N-1 mod 4) */
static float *forward(gd_model *m, int N, float t, int64_t *count) {
    char err[512];
    gd_net *n = gd_net_new(m, N, 0, err, sizeof err);
    CHECK(n != NULL, "%s", err);
    if (!n) return NULL;
    uint64_t s = 99;
    for (int i = 0; i < N * 64; i++) gd_net_x(n)[i] = uniform(&s);
    for (int i = 0; i < N; i++) {
        gd_net_t(n)[i] = t;
        if (gd_net_y(n)) gd_net_y(n)[i] = i % 4;
    }
    CHECK(!gd_net_forward(n, err, sizeof err), "%s", err);
    *count = gd_nelements(gd_net_output(n));
    float *o = malloc(sizeof(float) * (size_t)*count);
    memcpy(o, gd_net_output(n)->data, sizeof(float) * (size_t)*count);
    gd_net_free(n);
    return o;
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
    return sqrt(d / (r > 0 ? r : 1));
}

static void test_calibrate_end_to_end(void) {
    gd_model *u = tiny(TINY_UNET, 3), *c = tiny(TINY_CLS, 4);
    if (!u || !c) return;
    int64_t nu, nc;
    float *u32 = forward(u, 4, 500.0f, &nu), *c32 = forward(c, 4, 500.0f, &nc);
    gd_quant_opts o;
    gd_quant_defaults(&o);
    o.samples = 24, o.steps = 6, o.batch = 8; /* a short last batch too */
    gd_quant_report r;
    char err[512];
    CHECK(!gd_quantize_models(u, c, &o, &r, err, sizeof err), "%s", err);
    CHECK(r.unet_layers >= 8 && r.unet_float >= 2 && r.cls_layers >= 4 && r.cls_float >= 1 && r.calib_inputs == 24,
          "layers: unet %d int8 %d float, classifier %d int8 %d float", r.unet_layers, r.unet_float, r.cls_layers, r.cls_float);
    CHECK(gd_model_quant_count(u) == r.unet_layers && gd_model_quant_count(c) == r.cls_layers, "quant counts");
    float *u8 = forward(u, 4, 500.0f, &nu), *c8 = forward(c, 4, 500.0f, &nc);
    double eu = rel_l2(u8, u32, nu), ec = rel_l2(c8, c32, nc);
    printf("    W8A8 vs fp32, relative L2 of the outputs: U-Net %.4f, classifier %.4f\n", eu, ec);
    /* random weights at 8 bits: a few percent, and not zero (the int8 path ran) */
    CHECK(eu > 1e-4 && eu < 0.08, "U-Net W8A8 vs fp32: relative L2 %.4g", eu);
    CHECK(ec > 1e-4 && ec < 0.08, "classifier W8A8 vs fp32: relative L2 %.4g", ec);
    /* written and read back: the same network, bit for bit */
    char d[512], p[700];
    cli_mkdtemp(d, sizeof d);
    snprintf(p, sizeof p, "%s/u.w8a8.safetensors", d);
    CHECK(!gd_model_save(u, p, err, sizeof err), "%s", err);
    gd_model *u2 = gd_model_load(p, NULL, err, sizeof err);
    CHECK(u2 != NULL, "%s", err);
    if (u2) {
        CHECK(gd_model_quant_count(u2) == r.unet_layers, "reloaded: %d int8 layers", gd_model_quant_count(u2));
        const char *meta = gd_model_quant_meta(u2);
        CHECK(meta && strstr(meta, "\"scheme\":\"w8a8\"") && strstr(meta, "\"float\":[\"input_blocks.0.0.weight\",") && strstr(meta, "\"out.2.weight\"]"),
              "quantization record: %s", meta ? meta : "(none)");
        int64_t n2;
        float *r2 = forward(u2, 4, 500.0f, &n2);
        CHECK(r2 && !memcmp(r2, u8, sizeof(float) * (size_t)nu), "the reloaded model computes other values");
        free(r2);
        gd_model_free(u2);
    }
    /* damaged files: one line each, never a model */
    gd_st_file *f = gd_st_open(p, err, sizeof err);
    /* attention's qkv (a Conv1d weight, run as a reshaped 1x1 conv) is int8 like the convs */
    const gd_st_tensor *qkv = f ? gd_st_find(f, "middle_block.1.qkv.weight") : NULL;
    CHECK(qkv && qkv->dtype == GD_ST_I8 && qkv->ndim == 3, "middle_block.1.qkv.weight is not an I8 Conv1d weight in the file");
    const char *cases[][2] = {{"input_blocks.1.0.in_layers.2.input_zero_point", "zero point"},
                              {"input_blocks.1.0.in_layers.2.input_scale", "input scale"},
                              {"input_blocks.1.0.in_layers.2.weight_scale", "weight scale"}};
    for (int k = 0; f && k < 3; k++) {
        const gd_st_tensor *t = gd_st_find(f, cases[k][0]);
        CHECK(t != NULL, "no %s in the file", cases[k][0]);
        if (!t) continue;
        size_t len;
        unsigned char *buf = cli_read_file(p, &len);
        /* the data section follows the 8-byte length and the header; the first tensor sits at its start */
        const unsigned char *base = gd_st_get(f, 0)->data;
        for (int i = 0; i < gd_st_count(f); i++)
            if ((const unsigned char *)gd_st_get(f, i)->data < base) base = gd_st_get(f, i)->data;
        uint64_t hl;
        memcpy(&hl, buf, 8);
        size_t first = 8 + (size_t)hl;
        size_t at = first + (size_t)((const unsigned char *)t->data - base);
        if (k == 0) { int32_t v = 300; memcpy(buf + at, &v, 4); }
        else { float v = -1.0f; memcpy(buf + at, &v, 4); }
        char bad[760];
        snprintf(bad, sizeof bad, "%s/bad%d.safetensors", d, k);
        cli_write_file(bad, buf, len);
        free(buf);
        gd_model *mb = gd_model_load(bad, NULL, err, sizeof err);
        CHECK(!mb && strstr(err, cases[k][1]) && !strchr(err, '\n'), "damaged %s: %s", cases[k][0], mb ? "loaded" : err);
        gd_model_free(mb);
    }
    gd_st_close(f);
    cli_rmtree(d);
    free(u32), free(c32), free(u8), free(c8);
    gd_model_free(u);
    gd_model_free(c);
}

/* ddpm-quantize: a run on tiny models, ddpm-sample on its output, and bad input (exit 2, one line, nothing written) */
static void test_quantize_cli(void) {
    if (!cli_tool_available("ddpm-quantize") || !cli_tool_available("ddpm-sample")) return;
    char d[512], err[512], um[700], cm[700], args[4000];
    cli_mkdtemp(d, sizeof d);
    snprintf(um, sizeof um, "%s/u.safetensors", d);
    snprintf(cm, sizeof cm, "%s/c.safetensors", d);
    gd_model *u = tiny(TINY_UNET, 3), *c = tiny(TINY_CLS, 4);
    CHECK(u && c && !gd_model_save(u, um, err, sizeof err) && !gd_model_save(c, cm, err, sizeof err), "tiny models: %s", err);
    gd_model_free(u);
    gd_model_free(c);
    snprintf(args, sizeof args, "-m %s -c %s --calib-samples 16 --calib-steps 4 -b 8 -t 1", um, cm);
    cli_result r = cli_run("ddpm-quantize", d, args);
    CHECK(r.status == 0 && strstr(r.out, "convs int8"), "ddpm-quantize: status %d: %s%s", r.status, r.out, r.err);
    cli_run_free(&r);
    char uq[760], cq[760];
    snprintf(uq, sizeof uq, "%s/u.w8a8.safetensors", d);
    snprintf(cq, sizeof cq, "%s/c.w8a8.safetensors", d);
    CHECK(cli_file_exists(uq) && cli_file_exists(cq), "the default output names");
    snprintf(args, sizeof args, "-m %s --classifier %s --sampler ddim --steps 3 --guidance entropy -n 2 --seed 1 -q -o %s/s.png", uq, cq, d);
    r = cli_run("ddpm-sample", d, args);
    CHECK(r.status == 0, "ddpm-sample on the W8A8 files: %s", r.err);
    cli_run_free(&r);
    char json[800];
    snprintf(json, sizeof json, "%s/s.png.json", d);
    char *meta = cli_slurp(json);
    CHECK(strstr(meta, "\"weights\":\"w8a8\""), "metadata says w8a8: %s", meta);
    free(meta);
    /* bad input: one line, status 2, no output left */
    const char *bad[][2] = {{"--calib-t middle", "--calib-t"},
                            {"--keep-float no.such.weight", "no.such.weight"},
                            {"--classifier-output x.safetensors", "without --classifier"},
                            {"--calib-samples 0", "--calib-samples"},
                            {"--lp nan", "--lp"}};
    for (int k = 0; k < 5; k++) {
        snprintf(args, sizeof args, "-m %s -o %s/bad.safetensors --calib-samples 4 --calib-steps 2 -t 1 %s", um, d, bad[k][0]);
        r = cli_run("ddpm-quantize", d, args);
        snprintf(json, sizeof json, "%s/bad.safetensors", d);
        CHECK(r.status == 2 && strstr(r.err, bad[k][1]) && cli_count_lines(r.err) == 1 && !cli_file_exists(json),
              "%s: status %d, stderr %s", bad[k][0], r.status, r.err);
        cli_run_free(&r);
    }
    snprintf(args, sizeof args, "-m %s/missing.safetensors", d);
    r = cli_run("ddpm-quantize", d, args);
    CHECK(r.status == 2 && cli_count_lines(r.err) == 1, "missing model: status %d %s", r.status, r.err);
    cli_run_free(&r);
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_quant) = {
    {"quant: scales, int8 weights and histogram equal the numpy port", test_formulas_match_numpy},
    {"quant: int8 conv equals the fake-quantized conv, any threads", test_conv_s8},
    {"quant: calibration end to end, file round trip, damaged files", test_calibrate_end_to_end},
    {"quant: ddpm-quantize runs, ddpm-sample reads its files, bad input exits 2", test_quantize_cli},
    {NULL, NULL},
};
