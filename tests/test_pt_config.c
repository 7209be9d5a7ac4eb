/* Config sources (include/gd_model.h): guided-diffusion flags against scripts/convert_checkpoint.py
 * (tests/data/flags_configs.json, tests/reference/gen_flags_fixtures.py), inference from tensor
 * shapes for every released architecture (at width 64 as tests/reference/check_released.py runs
 * them, and at the released widths), the converter's tensor rule against the network builders,
 * and the JSON formatting that makes converted files the Python script's bytes. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_model.h"
#include "nn/config_src.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* one per architecture (configs/checkpoints.json maps the other names onto these) */
static const char *const ARCHS[] = {"64x64_diffusion.pt", "128x128_diffusion.pt", "256x256_diffusion.pt",
                                    "256x256_diffusion_uncond.pt", "512x512_diffusion.pt", "64_256_upsampler.pt",
                                    "128_512_upsampler.pt", "64x64_classifier.pt", "128x128_classifier.pt",
                                    "256x256_classifier.pt", "512x512_classifier.pt", "256x256_classifier+0.1ECT.pt"};
#define NARCH (int)(sizeof ARCHS / sizeof *ARCHS)

static pj *released(const char *name) {
    char err[512];
    pj *t = cfg_table(NULL, err, sizeof err), *c = t ? cfg_released(NULL, pj_get(t, name), err, sizeof err) : NULL;
    CHECK(c != NULL, "%s: %s", name, err);
    pj_free(t);
    return c;
}

/* The released config at another width (classifier_width / num_channels). */
static pj *at_width(const char *name, long long w) {
    pj *c = released(name);
    if (c && w) pj_set(c, pj_is_str(pj_get(c, "model"), "classifier") ? "classifier_width" : "num_channels", pj_int(w));
    return c;
}

/* A config's network as a state dict of shapes only (the converter's rule). */
static gd_st_tensor *shapes_of(const pj *cfg, cfg_tensor **store, int *n) {
    char err[512];
    if (cfg_expected(cfg, store, n, err, sizeof err)) {
        CHECK(0, "%s", err);
        return NULL;
    }
    gd_st_tensor *sd = calloc((size_t)*n, sizeof *sd);
    for (int i = 0; i < *n; i++) {
        sd[i].name = (*store)[i].name;
        sd[i].ndim = (*store)[i].ndim;
        sd[i].numel = 1;
        for (int d = 0; d < sd[i].ndim; d++) sd[i].shape[d] = (*store)[i].shape[d], sd[i].numel *= sd[i].shape[d];
        sd[i].dtype = GD_ST_F32;
    }
    return sd;
}

static int same_ds(const gd_config *a, const gd_config *b) {
    if (a->n_attention != b->n_attention) return 0;
    for (int i = 0; i < a->n_attention; i++) {
        int found = 0;
        for (int k = 0; k < b->n_attention; k++) found |= a->attention_ds[i] == b->attention_ds[k];
        if (!found) return 0;
    }
    return 1;
}

/* Two configs describe the same network and schedule; why names the first difference. */
static int same_config(const char *ja, const char *jb, char *why, size_t n) {
    gd_config a, b;
    char err[512];
    if (gd_config_parse(ja, &a, err, sizeof err) || gd_config_parse(jb, &b, err, sizeof err)) return snprintf(why, n, "%.200s", err), 0;
    int ok = 0;
#define SAME(f) if (a.f != b.f) { snprintf(why, n, #f " %g vs %g", (double)a.f, (double)b.f); goto done; }
    SAME(kind) SAME(image_size) SAME(in_channels) SAME(model_channels) SAME(num_res_blocks) SAME(n_levels)
    for (int i = 0; i < a.n_levels; i++) SAME(channel_mult[i])
    if (!same_ds(&a, &b)) { snprintf(why, n, "attention resolutions"); goto done; }
    SAME(use_scale_shift_norm) SAME(resblock_updown) SAME(learn_sigma) SAME(class_cond) SAME(num_classes)
    SAME(null_class) SAME(pool_attention) SAME(num_head_channels) SAME(num_heads_upsample) SAME(has_schedule)
    if (a.num_head_channels == -1) SAME(num_heads)
    if (a.kind != GD_NET_CLASSIFIER) { SAME(use_new_attention_order) SAME(small_size) SAME(diffusion_steps) }
    if (strcmp(a.noise_schedule, b.noise_schedule)) { snprintf(why, n, "schedule %s vs %s", a.noise_schedule, b.noise_schedule); goto done; }
#undef SAME
    ok = 1;
done:
    gd_config_free(&a);
    gd_config_free(&b);
    return ok;
}

/* MODEL_FLAGS / CLASSIFIER_FLAGS of every released checkpoint: the Python script's config text,
 * and the released network. */
static void test_flags_vs_python(void) {
    char *txt = cli_slurp("tests/data/flags_configs.json");
    cJSON *arr = cJSON_Parse(txt);
    CHECK(cJSON_IsArray(arr), "tests/data/flags_configs.json parses");
    int n = 0, same = 0;
    for (cJSON *e = arr ? arr->child : NULL; e; e = e->next, n++) {
        const char *name = cJSON_GetObjectItem(e, "checkpoint")->valuestring, *flags = cJSON_GetObjectItem(e, "flags")->valuestring;
        const char *want = cJSON_GetObjectItem(e, "config")->valuestring;
        int cls = cJSON_IsTrue(cJSON_GetObjectItem(e, "classifier"));
        char err[512], why[256];
        char *got = gd_config_from_flags(flags, cls, err, sizeof err);
        CHECK(got && !strcmp(got, want), "%s: flags give\n      %s\n    the Python script\n      %s", name, got ? got : err, want);
        same += got && !strcmp(got, want);
        pj *rel = released(name);
        char *rj = rel ? pj_dumps(rel, 0) : NULL;
        CHECK(got && rj && same_config(got, rj, why, sizeof why), "%s: the flags' network is not the released one: %s", name, why);
        /* and exactly the released tensors */
        pj *fc = got ? pj_parse(got, strlen(got), NULL, 0) : NULL;
        cfg_tensor *a = NULL, *b = NULL;
        int na = 0, nb = 0;
        int ok = fc && rel && !cfg_expected(fc, &a, &na, err, sizeof err) && !cfg_expected(rel, &b, &nb, err, sizeof err) && na == nb;
        for (int i = 0; ok && i < na; i++) ok = !strcmp(a[i].name, b[i].name) && !memcmp(a[i].shape, b[i].shape, sizeof a[i].shape);
        CHECK(ok, "%s: the flags' tensors differ from the released config's", name);
        free(a), free(b), free(rj), free(got);
        pj_free(fc), pj_free(rel);
    }
    printf("    %d of %d released checkpoints: the flags give the Python script's config text and the released network\n", same, n);
    CHECK(n == 16, "16 entries, got %d", n);
    cJSON_Delete(arr);
    free(txt);
}

static void test_flags_errors(void) {
    const struct {
        const char *flags, *want;
    } c[] = {{"--image_size", "expected '--name value' pairs, got '--image_size'"},
             {"image_size 64", "expected '--name value' pairs, got 'image_size'"},
             {"--image_size 6x4", "--image_size: invalid literal for int() with base 10: '6x4'"},
             {"--class_cond maybe", "not a boolean: 'maybe'"},
             {"--dropout lots", "--dropout: could not convert string to float: 'lots'"}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        char err[512] = "";
        char *got = gd_config_from_flags(c[i].flags, 0, err, sizeof err);
        CHECK(!got && strstr(err, c[i].want), "'%s': %s (want '%s')", c[i].flags, got ? got : err, c[i].want);
        free(got);
    }
    /* the super-resolution and classifier forms, and defaults left to the config */
    char err[256];
    char *s = gd_config_from_flags("--large_size 256 --num_channels 192 --classifier_depth 4", 0, err, sizeof err);
    CHECK(s && !strcmp(s, "{\"num_channels\": 192, \"model\": \"superres\", \"image_size\": 256, \"small_size\": 64, "
                          "\"diffusion_steps\": 1000, \"noise_schedule\": \"linear\"}"), "superres: %s", s ? s : err);
    free(s);
    s = gd_config_from_flags("--image_size 128 --classifier_depth 4 --num_channels 192 --use_fp16 true", 1, err, sizeof err);
    CHECK(s && !strcmp(s, "{\"image_size\": 128, \"classifier_depth\": 4, \"model\": \"classifier\"}"), "classifier: %s", s ? s : err);
    free(s);
}

/* The converter's tensor rule and the network builders agree (counts), for every released config. */
static void test_rule_vs_builders(void) {
    for (int k = 0; k < NARCH; k++) {
        pj *c = at_width(ARCHS[k], 64);
        cfg_tensor *t = NULL;
        int n = 0;
        char err[512];
        int64_t params = 0;
        if (!c || cfg_expected(c, &t, &n, err, sizeof err)) {
            CHECK(0, "%s: %s", ARCHS[k], err);
            pj_free(c);
            continue;
        }
        for (int i = 0; i < n; i++) {
            int64_t e = 1;
            for (int d = 0; d < t[i].ndim; d++) e *= t[i].shape[d];
            params += e;
        }
        char *js = pj_dumps(c, 0);
        gd_config cfg;
        CHECK(!gd_config_parse(js, &cfg, err, sizeof err), "%s", err);
        gd_model *m = gd_model_shapes(&cfg);
        gd_ctx *ctx = gd_ctx_new(20000);
        int64_t S = cfg.image_size;
        gd_tensor *x = gd_new_4d(ctx, GD_F32, 1, cfg.in_channels, S, S), *tt = gd_new_1d(ctx, GD_F32, 1);
        if (cfg.kind == GD_NET_CLASSIFIER) gd_classifier_build(ctx, m, x, tt);
        else gd_unet_build(ctx, m, x, tt, cfg.class_cond ? gd_new_1d(ctx, GD_I32, 1) : NULL,
                           cfg.kind == GD_NET_SUPERRES ? gd_new_4d(ctx, GD_F32, 1, cfg.in_channels, cfg.small_size, cfg.small_size) : NULL);
        CHECK(gd_model_param_count(m) == params && gd_model_tensor_count(m) == n, "%s: rule %lld params / %d tensors, builder %lld / %d",
              ARCHS[k], (long long)params, n, (long long)gd_model_param_count(m), gd_model_tensor_count(m));
        gd_ctx_free(ctx);
        gd_model_free(m);
        gd_config_free(&cfg);
        free(js), free(t);
        pj_free(c);
    }
}

/* What pure inference (no released table) may get wrong, by architecture: the rules' stated limits. */
static void pure_expectation(const char *name, pj *want, const char **fails) {
    *fails = NULL;
    if (!strcmp(name, "64x64_diffusion.pt")) { /* QKV order and schedule are not in the shapes */
        pj_set(want, "use_new_attention_order", pj_bool(0));
        pj_set(want, "noise_schedule", pj_str("linear"));
    }
    if (!strcmp(name, "128x128_diffusion.pt")) pj_set(want, "num_head_channels", pj_int(64)); /* num_heads 4: not in the shapes */
    if (strstr(name, "upsampler")) *fails = "is 256 or 512";
}

static void infer_case(const char *name, long long width, const char *dir, int pure) {
    pj *c = at_width(name, width);
    cfg_tensor *store = NULL;
    int n = 0;
    gd_st_tensor *sd = c ? shapes_of(c, &store, &n) : NULL;
    if (!sd) {
        pj_free(c), free(store);
        return;
    }
    const char *fails = NULL;
    if (pure) pure_expectation(name, c, &fails);
    char err[1024] = "", notes[4096], why[256] = "";
    char *got = gd_config_infer(sd, n, dir, notes, sizeof notes, err, sizeof err), *want = pj_dumps(c, 0);
    int ok = fails ? !got && strstr(err, fails) : got && same_config(got, want, why, sizeof why);
    char wbuf[16];
    snprintf(wbuf, sizeof wbuf, width ? "%lld" : "released", width);
    printf("    %-28s width %-8s %-10s %s\n", name, wbuf, pure ? "rules only" : "with table",
           !ok ? "WRONG" : fails ? "refused as it must be (image_size 256 or 512)"
           : pure && (strstr(name, "64x64_d") || strstr(name, "128x128_d")) ? "the released config but for the stated rules"
                                                                            : "the released config");
    CHECK(ok, "%s at width %lld (%s): %s%s\n      got  %s\n      want %s", name, width, pure ? "rules only" : "with table", err, why,
          got ? got : "-", want);
    CHECK(!got || pure || width == 0 || strstr(notes, "the released architecture of"), "%s: the rule is noted: %s", name, notes);
    free(got), free(want), free(sd), free(store);
    pj_free(c);
}

/* Every released architecture from its tensor shapes alone. With the table, a released
 * architecture at another width is recognised (everything exact); with the rules alone,
 * everything but the stated ambiguities. At the released widths the table's exact-shape match
 * (gd_config_choose) names the checkpoint, and the rules alone give the same as at width 64. */
static void test_infer_released(void) {
    char empty[512];
    cli_mkdtemp(empty, sizeof empty); /* a configs dir without checkpoints.json: no table */
    for (int k = 0; k < NARCH; k++) infer_case(ARCHS[k], 64, NULL, 0);
    for (int k = 0; k < NARCH; k++) infer_case(ARCHS[k], 64, empty, 1);
    for (int k = 0; k < NARCH; k++) infer_case(ARCHS[k], 0, empty, 1);
    cli_rmtree(empty);
}

/* At the released widths a nameless checkpoint gets its released config by its shapes, as the
 * Python script does; a different width is inferred, with the rules noted. */
static void test_choose_order(void) {
    for (int k = 0; k < NARCH; k++) {
        pj *c = released(ARCHS[k]);
        cfg_tensor *store = NULL;
        int n = 0;
        gd_st_tensor *sd = c ? shapes_of(c, &store, &n) : NULL;
        char src[600] = "", notes[4096], err[1024] = "";
        pj *got = sd ? nn_choose_config("ckpt.pt", NULL, sd, n, NULL, src, sizeof src, notes, sizeof notes, err, sizeof err) : NULL;
        CHECK(got && strstr(src, "matched by tensor shapes"), "%s: %s %s", ARCHS[k], src, err);
        char *a = got ? pj_dumps(got, 0) : NULL, *b = c ? pj_dumps(c, 0) : NULL, why[256] = "";
        CHECK(a && b && same_config(a, b, why, sizeof why), "%s: %s", ARCHS[k], why);
        free(a), free(b), free(sd), free(store);
        pj_free(got), pj_free(c);
    }
    /* by name first, even when the tensors are another network's (the converter then refuses) */
    pj *c = at_width("64x64_classifier.pt", 64);
    cfg_tensor *store = NULL;
    int n = 0;
    gd_st_tensor *sd = c ? shapes_of(c, &store, &n) : NULL;
    char src[600] = "", notes[4096] = "", err[1024] = "";
    pj *got = sd ? nn_choose_config("dir/256x256_classifier.safetensors", NULL, sd, n, NULL, src, sizeof src, notes, sizeof notes,
                                    err, sizeof err)
                 : NULL;
    CHECK(got && !strcmp(src, "256x256_classifier.pt (configs/adm256_classifier.json)"), "by stem: %s", src);
    pj_free(got);
    got = sd ? nn_choose_config("ckpt.pt", NULL, sd, n, NULL, src, sizeof src, notes, sizeof notes, err, sizeof err) : NULL;
    CHECK(got && !strcmp(src, "the tensor shapes (inferred)") && strstr(notes, "64x64_classifier.pt"), "inferred: %s / %s", src, notes);
    pj_free(got), pj_free(c), free(sd), free(store);
}

/* json.dumps' formatting: floats as repr(), ensure_ascii, key order, repeated keys. */
static void test_python_json(void) {
    const struct {
        const char *in, *out;
    } c[] = {
        {"{\"a\": 0.0, \"b\": 0.1, \"c\": 1e16, \"d\": 1e15, \"e\": 1e-05, \"f\": 0.0001, \"g\": -0.0, \"h\": 2.5e-7, \"i\": 1E3}",
         "{\"a\": 0.0, \"b\": 0.1, \"c\": 1e+16, \"d\": 1000000000000000.0, \"e\": 1e-05, \"f\": 0.0001, \"g\": -0.0, \"h\": 2.5e-07, \"i\": 1000.0}"},
        {"{\"s\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ /\\t\\u007f\", \"n\": null, \"t\": true, \"l\": [1, -2, 123456789012345678901234]}",
         "{\"s\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ /\\t\\u007f\", \"n\": null, \"t\": true, \"l\": [1, -2, 123456789012345678901234]}"},
        {"{\"raw\": \"h\xc3\xa9\", \"k\": 1, \"k\": 2, \"e\": {}, \"z\": []}", "{\"raw\": \"h\\u00e9\", \"k\": 2, \"e\": {}, \"z\": []}"},
        {" [0.5,1 , 2.25e2]\n", "[0.5, 1, 225.0]"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        char err[256];
        pj *v = pj_parse(c[i].in, strlen(c[i].in), err, sizeof err);
        char *s = v ? pj_dumps(v, 0) : NULL;
        CHECK(s && !strcmp(s, c[i].out), "%s ->\n      %s\n    want %s", c[i].in, s ? s : err, c[i].out);
        free(s);
        pj_free(v);
    }
    const char *bad[] = {"{\"a\": 01}", "{\"a\" 1}", "[1,]", "{\"a\": \"\x01\"}", "\"abc", "{} x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[256];
        pj *v = pj_parse(bad[i], strlen(bad[i]), err, sizeof err);
        CHECK(!v, "'%s' must not parse", bad[i]);
        pj_free(v);
    }
}

GD_TEST_TABLE(gd_tests_pt_config) = {
    {"config sources: MODEL_FLAGS give the Python script's configs (every released checkpoint)", test_flags_vs_python},
    {"config sources: bad flags are one-line errors; superres and classifier flags", test_flags_errors},
    {"config sources: the converter's tensor rule matches the network builders", test_rule_vs_builders},
    {"config sources: inference recovers every released architecture from shapes alone", test_infer_released},
    {"config sources: the order (released shapes, name, inference)", test_choose_order},
    {"config sources: JSON as Python's json.dumps writes it", test_python_json},
    {NULL, NULL},
};
