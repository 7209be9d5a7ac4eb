/* ADM networks: parameter counts of every released architecture (spec section 4.2, counted by
 * an independent enumerator; tensor counts where the spec lists them) and output parity with the project's PyTorch reference on the
 * fixtures in tests/fixtures (tests/reference/gen_fixtures.py). */
#include "gd_model.h"
#include "gd_safetensors.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void count_case(const char *json, int64_t want_params, int want_tensors) {
    gd_config cfg;
    char err[512];
    int rc = gd_config_parse(json, &cfg, err, sizeof err);
    CHECK(rc == 0, "config: %s", err);
    if (rc) return;
    gd_model *m = gd_model_shapes(&cfg);
    gd_ctx *ctx = gd_ctx_new(20000);
    int64_t S = cfg.image_size, C = cfg.in_channels, N = 1;
    gd_tensor *x = gd_new_4d(ctx, GD_F32, N, C, S, S), *t = gd_new_1d(ctx, GD_F32, N);
    gd_tensor *out;
    if (cfg.kind == GD_NET_CLASSIFIER) {
        out = gd_classifier_build(ctx, m, x, t);
    } else {
        gd_tensor *y = cfg.class_cond ? gd_new_1d(ctx, GD_I32, N) : NULL;
        gd_tensor *lr = cfg.kind == GD_NET_SUPERRES ? gd_new_4d(ctx, GD_F32, N, C, S / 4, S / 4) : NULL;
        out = gd_unet_build(ctx, m, x, t, y, lr);
    }
    CHECK(out != NULL, "build failed: %s / %s", gd_model_error(m), gd_ctx_error(ctx));
    int64_t got = gd_model_param_count(m);
    int nt = gd_model_tensor_count(m);
    printf("    %-60.60s %11lld params %4d tensors\n", json + 1, (long long)got, nt);
    CHECK(got == want_params && (want_tensors < 0 || nt == want_tensors), "params %lld (want %lld), tensors %d (want %d)", (long long)got,
          (long long)want_params, nt, want_tensors);
    gd_ctx_free(ctx);
    gd_model_free(m);
    gd_config_free(&cfg);
}

#define COMMON "\"learn_sigma\":true,\"resblock_updown\":true,\"use_scale_shift_norm\":true,"
#define CLS "\"model\":\"classifier\",\"classifier_width\":128,\"classifier_attention_resolutions\":\"32,16,8\","

static void test_released_param_counts(void) {
    count_case("{\"model\":\"unet\",\"image_size\":64," COMMON "\"class_cond\":true,\"num_channels\":192,"
               "\"num_res_blocks\":3,\"num_head_channels\":64,\"attention_resolutions\":\"32,16,8\","
               "\"use_new_attention_order\":true}",
               295904454, 541);
    count_case("{\"model\":\"unet\",\"image_size\":128," COMMON "\"class_cond\":true,\"num_channels\":256,"
               "\"num_res_blocks\":2,\"num_heads\":4,\"attention_resolutions\":\"32,16,8\"}",
               421529606, -1);
    count_case("{\"model\":\"unet\",\"image_size\":256," COMMON "\"class_cond\":true,\"num_channels\":256,"
               "\"num_res_blocks\":2,\"num_head_channels\":64,\"attention_resolutions\":\"32,16,8\"}",
               553838086, -1);
    count_case("{\"model\":\"unet\",\"image_size\":256," COMMON "\"class_cond\":false,\"num_channels\":256,"
               "\"num_res_blocks\":2,\"num_head_channels\":64,\"attention_resolutions\":\"32,16,8\"}",
               552814086, -1);
    count_case("{\"model\":\"unet\",\"image_size\":512," COMMON "\"class_cond\":true,\"num_channels\":256,"
               "\"num_res_blocks\":2,\"num_head_channels\":64,\"attention_resolutions\":\"32,16,8\"}",
               558997638, -1);
    count_case("{\"model\":\"superres\",\"image_size\":256," COMMON "\"class_cond\":true,\"num_channels\":192,"
               "\"num_res_blocks\":2,\"num_heads\":4,\"attention_resolutions\":\"32,16,8\"}",
               311795910, -1);
    count_case("{\"model\":\"superres\",\"image_size\":512," COMMON "\"class_cond\":true,\"num_channels\":192,"
               "\"num_res_blocks\":2,\"num_head_channels\":64,\"attention_resolutions\":\"32,16\"}",
               308835270, -1);
    count_case("{" CLS "\"image_size\":64,\"classifier_depth\":4}", 65438568, 307);
    count_case("{" CLS "\"image_size\":128,\"classifier_depth\":2}", 42568040, -1);
    count_case("{" CLS "\"image_size\":256,\"classifier_depth\":2}", 54096360, -1);
    count_case("{" CLS "\"image_size\":512,\"classifier_depth\":2}", 54448360, -1);
}

/* Copies an io tensor into a network input, converting int64 labels/timesteps as needed. */
static int load_input(const gd_st_file *io, const char *name, void *dst, int64_t want, int as_int) {
    const gd_st_tensor *t = gd_st_find(io, name);
    if (!t || t->numel != want) return -1;
    for (int64_t i = 0; i < want; i++) {
        double v;
        if (t->dtype == GD_ST_I64) {
            int64_t q;
            memcpy(&q, (const char *)t->data + 8 * i, 8);
            v = (double)q;
        } else if (t->dtype == GD_ST_F32) {
            float q;
            memcpy(&q, (const char *)t->data + 4 * i, 4);
            v = q;
        } else {
            return -1;
        }
        if (as_int) ((int32_t *)dst)[i] = (int32_t)v;
        else ((float *)dst)[i] = (float)v;
    }
    return 0;
}

/* max |c - ref| / max |ref| over one output */
static double rel_err(const gd_st_file *io, const char *name, const float *c, int64_t n) {
    const gd_st_tensor *t = gd_st_find(io, name);
    if (!t || t->numel != n || t->dtype != GD_ST_F32) return INFINITY;
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        float r;
        memcpy(&r, (const char *)t->data + 4 * i, 4);
        if (fabs(c[i] - r) > md || c[i] != c[i]) md = c[i] == c[i] ? fabs(c[i] - r) : INFINITY;
        if (fabs(r) > mr) mr = fabs(r);
    }
    return md / (mr > 0 ? mr : 1);
}

#define PARITY_TOL 1e-4

static void parity_case(const char *name) {
    char path[256], err[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", name);
    gd_model *m = gd_model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "%s", err);
    snprintf(path, sizeof path, "tests/fixtures/%s.io.safetensors", name);
    gd_st_file *io = gd_st_open(path, err, sizeof err);
    CHECK(io != NULL, "%s", err);
    if (!m || !io) { gd_model_free(m); gd_st_close(io); return; }
    const gd_config *cfg = gd_model_config(m);
    int cls = cfg->kind == GD_NET_CLASSIFIER;
    const gd_st_tensor *xt = gd_st_find(io, "x");
    int N = xt ? (int)xt->shape[0] : 0;
    gd_net *net = gd_net_new(m, N, cls, err, sizeof err);
    CHECK(net != NULL, "%s: %s", name, err);
    if (!net) { gd_model_free(m); gd_st_close(io); return; }
    const gd_tensor *out = gd_net_output(net);
    int64_t nx = (int64_t)N * cfg->in_channels * cfg->image_size * cfg->image_size;
    int bad = load_input(io, "x", gd_net_x(net), nx, 0) || load_input(io, "t", gd_net_t(net), N, 0);
    if (gd_net_y(net)) bad |= load_input(io, "y", gd_net_y(net), N, 1);
    if (gd_net_low_res(net)) {
        int64_t s = cfg->small_size;
        bad |= load_input(io, "low_res", gd_net_low_res(net), (int64_t)N * cfg->in_channels * s * s, 0);
    }
    CHECK(!bad, "%s: io inputs do not match the network", name);
    if (cls) {
        float *grad = malloc(sizeof(float) * (size_t)nx);
        CHECK(gd_net_input_grad(net, grad, err, sizeof err) == 0, "%s: %s", name, err);
        double el = rel_err(io, "logits", out->data, gd_nelements(out)), eg = rel_err(io, "grad", grad, nx);
        printf("    %-7s logits max|C-ref|/max|ref| = %.2e   grad d/dx log p(y|x) = %.2e\n", name, el, eg);
        CHECK(el <= PARITY_TOL && eg <= PARITY_TOL, "%s: logits %.3e grad %.3e > %.0e", name, el, eg, PARITY_TOL);
        free(grad);
    } else {
        gd_net_forward(net, NULL, 0);
        double e = rel_err(io, "out", out->data, gd_nelements(out));
        printf("    %-7s out    max|C-ref|/max|ref| = %.2e\n", name, e);
        CHECK(e <= PARITY_TOL, "%s: out %.3e > %.0e", name, e, PARITY_TOL);
    }
    gd_net_free(net);
    gd_model_free(m);
    gd_st_close(io);
}

static void test_parity(void) {
    const char *names[] = {"unet_a", "unet_b", "sr_a", "cls_a", "cls_b"};
    for (int i = 0; i < 5; i++) parity_case(names[i]);
}

/* Copies unet_a with one change and checks that loading names the tensor in its error. */
static void bad_copy_case(const char *what, const char *victim, int mode, const char *want_in_error) {
    char err[512];
    gd_st_file *f = gd_st_open("tests/fixtures/unet_a.safetensors", err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    gd_st_writer *w = gd_st_writer_new();
    gd_st_writer_meta(w, "config", gd_st_metadata(f, "config"));
    static float zeros[64];
    for (int i = 0; i < gd_st_count(f); i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        int hit = !strcmp(t->name, victim);
        if (hit && mode == 0) continue; /* drop */
        if (hit && mode == 1) {       /* wrong shape: one fewer row */
            int64_t sh[8];
            memcpy(sh, t->shape, sizeof sh);
            sh[0] -= 1;
            gd_st_writer_add(w, t->name, t->dtype, t->ndim, sh, t->data);
            continue;
        }
        if (hit && mode == 3) { /* integer dtype */
            gd_st_writer_add(w, t->name, GD_ST_I32, 1, (int64_t[]){1}, zeros);
            continue;
        }
        gd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (mode == 2) gd_st_writer_add(w, victim, GD_ST_F32, 1, (int64_t[]){4}, zeros); /* extra */
    char path[] = "/tmp/gd_bad_model_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    gd_st_writer_free(w);
    gd_st_close(f);
    gd_model *m = gd_model_load(path, NULL, err, sizeof err);
    gd_net *net = m ? gd_net_new(m, 1, 0, err, sizeof err) : NULL;
    printf("    %-22s -> %s\n", what, err);
    CHECK(net == NULL && strstr(err, want_in_error) != NULL, "%s: error '%s' should mention '%s'", what, err, want_in_error);
    gd_net_free(net);
    gd_model_free(m);
    unlink(path);
}

static void test_strict_loading(void) {
    bad_copy_case("missing tensor", "output_blocks.1.0.skip_connection.weight", 0,
                  "missing tensor 'output_blocks.1.0.skip_connection.weight'");
    bad_copy_case("wrong shape", "input_blocks.1.0.in_layers.2.weight", 1, "'input_blocks.1.0.in_layers.2.weight' has shape");
    bad_copy_case("unexpected tensor", "output_blocks.9.0.extra.bias", 2, "unexpected tensor 'output_blocks.9.0.extra.bias'");
    bad_copy_case("integer dtype", "label_emb.weight", 3, "'label_emb.weight' has dtype I32");
}

/* Training backward: every weight's gradient of L = sum(r * output) against central differences of
 * the forward pass, on a few elements of each of several weights, for a U-Net and a classifier. */
static void train_grad_case(const char *name, int n_check) {
    char path[256], err[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", name);
    gd_model *m = gd_model_load(path, NULL, err, sizeof err);
    CHECK(m && gd_model_make_trainable(m) == 0, "%s", err);
    gd_net *net = m ? gd_net_new_train(m, 2, err, sizeof err) : NULL;
    CHECK(net != NULL, "%s: %s", name, err);
    if (!net) { gd_model_free(m); return; }
    const gd_config *cfg = gd_model_config(m);
    int64_t nx = 2LL * cfg->in_channels * cfg->image_size * cfg->image_size;
    for (int64_t i = 0; i < nx; i++) gd_net_x(net)[i] = (float)sin(0.1 * (double)i);
    gd_net_t(net)[0] = 30, gd_net_t(net)[1] = 700;
    if (gd_net_y(net)) gd_net_y(net)[0] = 1, gd_net_y(net)[1] = 4;
    if (gd_net_low_res(net))
        for (int64_t i = 0; i < 2LL * cfg->in_channels * cfg->small_size * cfg->small_size; i++) gd_net_low_res(net)[i] = 0.1f;
    const gd_tensor *out = gd_net_output(net);
    int64_t no = gd_nelements(out);
    float *r = malloc(sizeof(float) * (size_t)no);
    for (int64_t i = 0; i < no; i++) r[i] = (float)cos(0.37 * (double)i);
    gd_net_forward(net, NULL, 0);
    gd_net_backward(net, r, NULL, 0);
    /* float32 forward differences carry ~1e-3 of noise here, so errors are measured against the
     * largest gradient checked (weights whose true gradient is 0, e.g. a bias before a per-channel
     * GroupNorm, read as noise-sized numbers) */
    double worst = 0, scale = 0;
    int checked = 0;
    for (int p = 0; p < gd_net_param_count(net); p += gd_net_param_count(net) / n_check + 1) {
        const char *pn;
        float *w;
        const float *g;
        int64_t cnt;
        gd_net_param(net, p, &pn, &w, &g, &cnt);
        for (int64_t e = 0; e < cnt; e += cnt / 3 + 1) {
            float w0 = w[e], gan = g[e];
            double lp, lm, h = 1e-2;
            w[e] = (float)(w0 + h);
            gd_net_forward(net, NULL, 0);
            lp = 0;
            for (int64_t i = 0; i < no; i++) lp += (double)r[i] * ((const float *)out->data)[i];
            w[e] = (float)(w0 - h);
            gd_net_forward(net, NULL, 0);
            lm = 0;
            for (int64_t i = 0; i < no; i++) lm += (double)r[i] * ((const float *)out->data)[i];
            w[e] = w0;
            double num = (lp - lm) / (2 * h);
            if (fabs(num - gan) > worst) worst = fabs(num - gan);
            if (fabs(num) > scale) scale = fabs(num);
            checked++;
        }
    }
    printf("    %-7s %d weight elements in %d tensors: max |analytic - numeric| / max |numeric| = %.2e\n", name, checked,
           gd_net_param_count(net), worst / scale);
    CHECK(worst < 2e-2 * scale, "%s: weight gradient error %.3e of %.3e", name, worst, scale);
    free(r);
    gd_net_free(net);
    gd_model_free(m);
}

static void test_train_grads(void) {
    train_grad_case("unet_a", 24);
    train_grad_case("unet_b", 24);
    train_grad_case("cls_a", 24);
    train_grad_case("cls_b", 24); /* adaptive pool: the logits are a reshape view of the last conv */
}

GD_TEST_TABLE(gd_tests_models) = {
    {"training backward: weight gradients vs finite differences", test_train_grads},
    {"strict loading: errors name the first bad tensor", test_strict_loading},
    {"parity with PyTorch: U-Net, super-res, classifiers", test_parity},
    {"released architectures: parameter counts", test_released_param_counts},
    {NULL, NULL},
};
