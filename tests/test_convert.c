/* Released checkpoints: scripts/convert_checkpoint.py's output against the PyTorch reference
 * (tests/reference/gen_convert_fixtures.py: miniatures of released architectures saved as
 * guided-diffusion's fp16 trainer saves them, converted to F16/BF16), the embedded ImageNet class
 * names, the released configs and presets in configs/, ddpm-sample --preset, and the upsampling
 * cascade (against a PyTorch run of super_res_sample.py's loop, and chained vs from a saved .npz).
 * Also: half-precision weights stay half precision in a backward graph (one shared widening
 * scratch), the memory side of running the released models. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_diffusion.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_safetensors.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAMPLE "ddpm-sample"

static const char *FIXT = "tests/fixtures";

/* max |a - b| / max |b| of one tensor in two files (INFINITY when missing or mis-shaped) */
static double rel_err(const gd_st_file *got, const gd_st_file *ref, const char *name) {
    const gd_st_tensor *a = gd_st_find(got, name), *b = gd_st_find(ref, name);
    if (!a || !b || a->dtype != GD_ST_F32 || b->dtype != GD_ST_F32 || a->numel != b->numel) return INFINITY;
    double md = 0, mr = 0;
    for (int64_t i = 0; i < b->numel; i++) {
        float x, y;
        memcpy(&x, (const char *)a->data + 4 * i, 4);
        memcpy(&y, (const char *)b->data + 4 * i, 4);
        if (x != x) return INFINITY;
        if (fabs((double)x - y) > md) md = fabs((double)x - y);
        if (fabs((double)y) > mr) mr = fabs((double)y);
    }
    return md / (mr > 0 ? mr : 1);
}

static void test_converted_parity(void) {
    if (!cli_tool_available("ddpm-forward")) return;
    char d[512], args[2048], p[700], err[512];
    cli_mkdtemp(d, sizeof d);
    const struct {
        const char *name, *outs[2];
        gd_st_dtype dtype;
    } cases[] = {{"conv_unet", {"out", NULL}, GD_ST_F16}, {"conv_sr", {"out", NULL}, GD_ST_BF16},
                 {"conv_cls", {"logits", "grad"}, GD_ST_F16}};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s.out.safetensors", d, cases[k].name);
        snprintf(args, sizeof args, "-m %s/%s.safetensors -i %s/%s.io.safetensors -o %s -t 1 -q", FIXT, cases[k].name, FIXT,
                 cases[k].name, p);
        cli_result r = cli_run("ddpm-forward", d, args);
        CHECK(r.status == 0, "%s: ddpm-forward exited %d: %s", cases[k].name, r.status, r.err);
        cli_run_free(&r);
        char ref_path[600];
        snprintf(ref_path, sizeof ref_path, "%s/%s.io.safetensors", FIXT, cases[k].name);
        gd_st_file *got = gd_st_open(p, err, sizeof err), *ref = gd_st_open(ref_path, err, sizeof err);
        snprintf(ref_path, sizeof ref_path, "%s/%s.safetensors", FIXT, cases[k].name);
        gd_st_file *w = gd_st_open(ref_path, err, sizeof err);
        CHECK(got && ref && w, "%s: %s", cases[k].name, err);
        if (got && ref && w) {
            int all_dtype = 1;
            for (int i = 0; i < gd_st_count(w); i++) all_dtype &= gd_st_get(w, i)->dtype == cases[k].dtype;
            CHECK(all_dtype, "%s: every tensor stored as %s (the converter's --dtype)", cases[k].name, gd_st_dtype_name(cases[k].dtype));
            printf("    %-10s %-4s %3d tensors:", cases[k].name, gd_st_dtype_name(cases[k].dtype), gd_st_count(w));
            for (int j = 0; j < 2 && cases[k].outs[j]; j++) {
                double e = rel_err(got, ref, cases[k].outs[j]);
                printf(" %s %.1e", cases[k].outs[j], e);
                CHECK(e < 1e-4, "%s: %s differs from PyTorch by %g (relative to max|ref|)", cases[k].name, cases[k].outs[j], e);
            }
            printf("\n");
        }
        gd_st_close(got);
        gd_st_close(ref);
        gd_st_close(w);
    }
    cli_rmtree(d);
}

static void test_class_names(void) {
    char err[512];
    gd_model *m = gd_model_load("tests/fixtures/conv_unet.safetensors", NULL, err, sizeof err);
    CHECK(m != NULL, "%s", err);
    if (!m) return;
    const gd_config *cfg = gd_model_config(m);
    char **names;
    int n = gd_config_class_names(cfg, &names);
    CHECK(n == 1000, "1000 embedded class names, got %d", n);
    const struct {
        int id;
        const char *name;
    } known[] = {{0, "tench"}, {1, "goldfish"}, {207, "golden retriever"}, {281, "tabby"}, {999, "toilet tissue"}};
    for (int i = 0; i < 5 && n == 1000; i++)
        CHECK(!strcmp(names[known[i].id], known[i].name), "class %d is '%s', want '%s'", known[i].id, names[known[i].id], known[i].name);
    CHECK(gd_config_class_id(cfg, "Golden_Retriever") == 207, "lookup ignores case and separators");
    /* the embedded list is configs/imagenet_classes.txt, line by line */
    char *txt = cli_slurp("configs/imagenet_classes.txt");
    int lines = 0, same = n == 1000;
    for (char *s = txt, *e; *s; s = e + 1, lines++) {
        e = strchr(s, '\n');
        if (!e) break;
        *e = 0;
        if (lines < n) same &= !strcmp(s, names[lines]);
    }
    CHECK(lines == 1000 && same, "configs/imagenet_classes.txt: %d lines, %s the embedded names", lines, same ? "same as" : "DIFFERENT from");
    printf("    %d names; 207 = %s, 999 = %s; configs/imagenet_classes.txt has %d lines\n", n, n == 1000 ? names[207] : "?",
           n == 1000 ? names[999] : "?", lines);
    free(txt);
    free(names);
    gd_model_free(m);
}

/* parameters and tensors of a config file's network (shapes only) */
static int64_t count_params(const char *path, int *tensors) {
    gd_config cfg;
    char err[512];
    if (gd_config_load(path, &cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return -1;
    }
    gd_model *m = gd_model_shapes(&cfg);
    gd_ctx *ctx = gd_ctx_new(20000);
    int64_t S = cfg.image_size, C = cfg.in_channels;
    gd_tensor *x = gd_new_4d(ctx, GD_F32, 1, C, S, S), *t = gd_new_1d(ctx, GD_F32, 1), *out;
    if (cfg.kind == GD_NET_CLASSIFIER) {
        out = gd_classifier_build(ctx, m, x, t);
    } else {
        gd_tensor *y = cfg.class_cond ? gd_new_1d(ctx, GD_I32, 1) : NULL;
        gd_tensor *lr = cfg.kind == GD_NET_SUPERRES ? gd_new_4d(ctx, GD_F32, 1, C, cfg.small_size, cfg.small_size) : NULL;
        out = gd_unet_build(ctx, m, x, t, y, lr);
    }
    CHECK(out != NULL, "%s: %s", path, gd_model_error(m));
    int64_t n = gd_model_param_count(m);
    *tensors = gd_model_tensor_count(m);
    gd_ctx_free(ctx);
    gd_model_free(m);
    gd_config_free(&cfg);
    return n;
}

/* The spec's counts (adm-reference.md 4.2, 12) for every config the released checkpoints use. */
static void test_released_configs(void) {
    const struct {
        const char *file;
        int64_t params;
        int tensors;
    } want[] = {{"adm64.json", 295904454, 541},          {"adm128.json", 421529606, 493},
                {"adm256.json", 553838086, 567},         {"adm256_uncond.json", 552814086, 566},
                {"adm256_lsun.json", 552814086, 566},    {"adm512.json", 558997638, 645},
                {"adm64_256_upsampler.json", 311795910, 567}, {"adm128_512_upsampler.json", 308835270, 537},
                {"adm64_classifier.json", 65438568, 307}, {"adm128_classifier.json", 42568040, 221},
                {"adm256_classifier.json", 54096360, 249}, {"adm512_classifier.json", 54448360, 281}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char p[256];
        snprintf(p, sizeof p, "configs/%s", want[i].file);
        int nt = 0;
        int64_t n = count_params(p, &nt);
        printf("    %-28s %11lld params %4d tensors\n", want[i].file, (long long)n, nt);
        CHECK(n == want[i].params && nt == want[i].tensors, "%s: %lld params / %d tensors, want %lld / %d", p, (long long)n, nt,
              (long long)want[i].params, want[i].tensors);
    }
    /* every released checkpoint names one of them */
    char *js = cli_slurp("configs/checkpoints.json");
    cJSON *o = cJSON_Parse(js);
    CHECK(cJSON_IsObject(o), "configs/checkpoints.json parses");
    int n = 0;
    for (cJSON *e = o ? o->child : NULL; e; e = e->next) {
        if (e->string[0] == '_') continue;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "config");
        char p[256];
        snprintf(p, sizeof p, "configs/%s", cJSON_IsString(c) ? c->valuestring : "?");
        CHECK(cli_file_exists(p), "%s: config %s missing", e->string, p);
        n++;
    }
    CHECK(n == 16, "16 released checkpoints listed, got %d", n);
    cJSON_Delete(o);
    free(js);
}

static cJSON *load_json(const char *path) {
    char *s = cli_slurp(path);
    cJSON *o = cJSON_Parse(s);
    free(s);
    return o;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The config a released checkpoint stem converts with (NULL if it is not released). */
static cJSON *stem_config(const cJSON *ckpts, const char *stem) {
    if (!stem) return NULL;
    char key[256], p[300];
    snprintf(key, sizeof key, "%s.pt", stem);
    const char *c = jstr(cJSON_GetObjectItemCaseSensitive(ckpts, key), "config");
    if (!c) return NULL;
    snprintf(p, sizeof p, "configs/%s", c);
    return load_json(p);
}

static int jint(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : def;
}

/* Every preset: its checkpoints are released ones, their configs fit together and fit its
 * expectations, its settings parse, and the scales are the published ones. */
static void test_presets(void) {
    cJSON *ck = load_json("configs/checkpoints.json");
    DIR *dir = opendir("configs/presets");
    CHECK(ck && dir, "configs/checkpoints.json and configs/presets");
    int n = 0;
    const struct {
        const char *name;
        double scale;
    } published[] = {{"imagenet64", 1.0}, {"imagenet128", 0.5}, {"imagenet256", 1.0}, {"imagenet256-uncond", 10.0},
                     {"imagenet512", 4.0}, {"imagenet256-eds", 1.0}, {"imagenet256-uncond-eds", 4.0},
                     {"imagenet128-ddim25", 1.0}};
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json")) continue;
        char p[600], name[256];
        snprintf(p, sizeof p, "configs/presets/%s", e->d_name);
        snprintf(name, sizeof name, "%.*s", (int)(l - 5), e->d_name);
        cJSON *ps = load_json(p);
        CHECK(cJSON_IsObject(ps), "%s parses", p);
        if (!ps) continue;
        n++;
        cJSON *m = stem_config(ck, jstr(ps, "model")), *c = stem_config(ck, jstr(ps, "classifier")),
              *u = stem_config(ck, jstr(ps, "upsampler"));
        const char *g = jstr(ps, "guidance"), *resp = jstr(ps, "respacing"), *ur = jstr(ps, "upsampler_respacing");
        const cJSON *ex = cJSON_GetObjectItemCaseSensitive(ps, "expect");
        CHECK(m != NULL, "%s: model '%s' is not a released checkpoint", name, jstr(ps, "model"));
        CHECK(g && (!strcmp(g, "none") || !strcmp(g, "classifier") || !strcmp(g, "entropy")), "%s: guidance", name);
        CHECK((c != NULL) == (g && strcmp(g, "none")), "%s: a classifier exactly when guided", name);
        CHECK(!jstr(ps, "upsampler") || u, "%s: upsampler '%s' is not released", name, jstr(ps, "upsampler"));
        unsigned char keep[1000];
        char err[256];
        const char *smp = jstr(ps, "sampler");
        const int ode = smp && strcmp(smp, "ddpm") && strcmp(smp, "ddim");
        if (ode) { /* an ODE solver: model evaluations and a grid, no respacing */
            const char *ts = jstr(ps, "time_schedule");
            CHECK(!resp && jint(ps, "steps", 0) >= 1 && ts && (!strcmp(ts, "uniform") || !strcmp(ts, "logsnr") || !strcmp(ts, "quadratic")),
                  "%s: an ODE preset needs steps and time_schedule, no respacing", name);
        } else {
            CHECK(resp && gd_space_timesteps(1000, resp, keep, err, sizeof err) > 0, "%s: respacing '%s'", name, resp ? resp : "");
        }
        CHECK(!ur || gd_space_timesteps(1000, ur, keep, err, sizeof err) > 0, "%s: upsampler respacing", name);
        if (m && ex) {
            const char *want = jstr(ex, "noise_schedule"), *got = jstr(m, "noise_schedule");
            CHECK(want && got && !strcmp(want, got), "%s: expects %s, the model's config has %s", name, want, got);
        }
        if (m && c) {
            CHECK(jint(c, "image_size", -1) == jint(m, "image_size", -2), "%s: classifier and model sizes", name);
            CHECK(jint(c, "classifier_depth", 2) == jint(ex, "classifier_depth", -1), "%s: classifier depth %d, expected %d", name,
                  jint(c, "classifier_depth", 2), jint(ex, "classifier_depth", -1));
        }
        if (m && u) CHECK(jint(u, "small_size", -1) == jint(m, "image_size", -2), "%s: upsampler input = model output size", name);
        for (size_t i = 0; i < sizeof published / sizeof *published; i++)
            if (!strcmp(published[i].name, name)) {
                const cJSON *s = cJSON_GetObjectItemCaseSensitive(ps, "scale");
                CHECK(cJSON_IsNumber(s) && s->valuedouble == published[i].scale, "%s: scale %g, published %g", name,
                      cJSON_IsNumber(s) ? s->valuedouble : -1, published[i].scale);
            }
        cJSON_Delete(m);
        cJSON_Delete(c);
        cJSON_Delete(u);
        cJSON_Delete(ps);
    }
    if (dir) closedir(dir);
    printf("    %d presets consistent with configs/checkpoints.json and the released configs\n", n);
    CHECK(n == 20, "20 presets, got %d", n);
    cJSON_Delete(ck);
}

static cli_result expect_error(const char *d, const char *args, const char *want1, const char *want2) {
    cli_result r = cli_run(SAMPLE, d, args);
    CHECK(r.status == 2 && cli_count_lines(r.err) == 1 && !strncmp(r.err, "ddpm-sample: ", 13),
          "'%s': status %d, stderr %s", args, r.status, r.err);
    CHECK(!want1 || strstr(r.err, want1), "'%s': the error should mention '%s': %s", args, want1, r.err);
    CHECK(!want2 || strstr(r.err, want2), "'%s': the error should mention '%s': %s", args, want2, r.err);
    printf("    -> %s", r.err);
    return r;
}

static void test_preset_errors(void) {
    if (!cli_tool_available(SAMPLE)) return;
    char d[512], md[600], args[4096], want[1200];
    cli_mkdtemp(d, sizeof d);
    snprintf(md, sizeof md, "%s/models", d);
    mkdir(md, 0755);
    /* missing converted files: what to download and the exact command */
    snprintf(args, sizeof args, "--preset imagenet256 --class 207 --models-dir %s -o %s/x.png", md, d);
    snprintf(want, sizeof want, "ddpm-convert 256x256_diffusion.pt 256x256_classifier.pt -d %s", md);
    cli_result r = expect_error(d, args, want, "256x256_classifier.safetensors");
    cli_run_free(&r);
    snprintf(args, sizeof args, "--preset imagenet256-uncond-eds --models-dir %s -o %s/x.png", md, d);
    r = expect_error(d, args, "256x256_classifier+0.1ECT.pt", "ED-DPM");
    cli_run_free(&r);
    /* unguided: the classifier is not needed */
    snprintf(args, sizeof args, "--preset imagenet256 --guidance none --models-dir %s -o %s/x.png", md, d);
    r = expect_error(d, args, "256x256_diffusion.safetensors, which is missing", NULL);
    CHECK(!strstr(r.err, "classifier"), "an unguided run needs no classifier: %s", r.err);
    cli_run_free(&r);
    r = expect_error(d, "--preset imagenet1024", "unknown preset 'imagenet1024'", "imagenet64-256");
    cli_run_free(&r);
    /* converted files that are not what the preset is for */
    const char *links[][2] = {{"64x64_diffusion", "conv_unet"}, {"64x64_classifier", "conv_cls"},
                              {"256x256_diffusion", "conv_unet"}, {"256x256_classifier", "conv_cls"}};
    for (int i = 0; i < 4; i++) {
        char from[700], to[700];
        snprintf(from, sizeof from, "%s/%s.safetensors", md, links[i][0]);
        snprintf(to, sizeof to, "%s/%s/%s.safetensors", getcwd(want, sizeof want), FIXT, links[i][1]);
        CHECK(symlink(to, from) == 0, "symlink %s", from);
    }
    snprintf(args, sizeof args, "--preset imagenet64 --models-dir %s -n 1 -t 1 -o %s/x.png", md, d);
    r = expect_error(d, args, "expects a classifier of depth 4", NULL);
    cli_run_free(&r);
    snprintf(args, sizeof args, "--preset imagenet256 --models-dir %s -n 1 -t 1 -o %s/x.png", md, d);
    r = expect_error(d, args, "expects a linear noise schedule", NULL);
    cli_run_free(&r);
    CHECK(cli_count_entries(d) == 1, "nothing written beside the models folder");
    /* --list-presets */
    r = cli_run(SAMPLE, d, "--list-presets");
    int lines = cli_count_lines(r.out);
    CHECK(r.status == 0 && lines == 40 && strstr(r.out, "imagenet128-512") && strstr(r.out, "scale 10") &&
              strstr(r.out, "dpm++2m 20 NFE uniform thresholding 0.995"),
          "--list-presets: status %d, %d lines", r.status, lines);
    cli_run_free(&r);
    cli_rmtree(d);
}

/* A cascade preset (in a file, pointing at the fixtures): class by name, guided base model, then
 * the upsampler; the same upsampling from the saved base samples, by -m and by the preset. */
static void test_preset_cascade(void) {
    if (!cli_tool_available(SAMPLE)) return;
    char d[512], p[700], args[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(p, sizeof p, "%s/mini.json", d);
    const char *preset = "{\"description\": \"fixture cascade\", \"model\": \"conv_unet\", \"classifier\": \"conv_cls\", "
                         "\"guidance\": \"classifier\", \"scale\": 3.0, \"sampler\": \"ddim\", \"respacing\": \"ddim4\", "
                         "\"upsampler\": \"conv_sr\", \"upsampler_respacing\": \"3\"}";
    cli_write_file(p, preset, strlen(preset));
    snprintf(args, sizeof args, "--preset %s --models-dir %s --class 'Golden_Retriever' -n 2 -b 2 --seed 9 -t 1 -o %s/g.png "
             "--npz %s/up.npz --save-base %s/base.npz", p, FIXT, d, d, d);
    cli_result r = cli_run(SAMPLE, d, args);
    CHECK(r.status == 0, "cascade preset: %s", r.err);
    CHECK(strstr(r.err, "class 207 (golden retriever)") && strstr(r.err, "upsampling 16x16 -> 32x32"),
          "stderr names the class and the upsampling: %s", r.err);
    cli_run_free(&r);
    snprintf(p, sizeof p, "%s/g.png.json", d);
    char *side = cli_slurp(p);
    const char *want[] = {"\"preset\":\"mini\"", "\"class_name\":\"golden retriever\"", "\"labels\":[207,207]",
                          "\"label_names\":[\"golden retriever\",\"golden retriever\"]", "\"respacing\":\"ddim4\"",
                          "\"sampler\":\"ddim\"", "\"upsampler_respacing\":\"3\"", "\"scale\":3", "\"guidance\":[\"classifier\"]"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) CHECK(strstr(side, want[i]), "sidecar has %s: %s", want[i], side);
    free(side);
    uint8_t *up = NULL, *base = NULL, *up2 = NULL;
    int64_t *lu = NULL, *lb = NULL, *l2 = NULL;
    int n, h, w, c, nb, hb, wb, cb, n2, h2, w2, c2;
    char err[512];
    snprintf(p, sizeof p, "%s/up.npz", d);
    int ok = gd_read_npz(p, &up, &n, &h, &w, &c, &lu, err, sizeof err) == 0;
    snprintf(p, sizeof p, "%s/base.npz", d);
    ok = ok && gd_read_npz(p, &base, &nb, &hb, &wb, &cb, &lb, err, sizeof err) == 0;
    CHECK(ok, "%s", err);
    if (ok) {
        CHECK(n == 2 && h == 32 && w == 32 && c == 3 && lu && lu[0] == 207 && lu[1] == 207, "upsampled npz: %d x %dx%dx%d", n, h, w, c);
        CHECK(nb == 2 && hb == 16 && wb == 16 && cb == 3 && lb && lb[1] == 207, "base npz: %d x %dx%dx%d", nb, hb, wb, cb);
    }
    /* upsampling the saved base samples gives the same bytes, by -m and by the preset */
    const char *ways[2] = {"-m tests/fixtures/conv_sr.safetensors --upsample-respacing 3", "--preset %s/mini.json --models-dir tests/fixtures"};
    for (int k = 0; k < 2 && ok; k++) {
        char how[800];
        snprintf(how, sizeof how, ways[k], d);
        snprintf(args, sizeof args, "%s --base-npz %s/base.npz --seed 9 -t 1 -q -o %s/g%d.png --npz %s/up%d.npz", how, d, d, k, d, k);
        r = cli_run(SAMPLE, d, args);
        CHECK(r.status == 0, "%s: %s", args, r.err);
        cli_run_free(&r);
        snprintf(p, sizeof p, "%s/up%d.npz", d, k);
        CHECK(gd_read_npz(p, &up2, &n2, &h2, &w2, &c2, &l2, err, sizeof err) == 0, "%s", err);
        int same = up2 && n2 == n && h2 == h && w2 == w && c2 == c && !memcmp(up, up2, (size_t)n * h * w * c) && l2 && l2[0] == 207;
        printf("    upsampling base.npz (%s): %s the chained run\n", k ? "--preset" : "-m", same ? "same bytes as" : "DIFFERENT from");
        CHECK(same, "upsampling the saved base samples must equal the chained run");
        free(up2), free(l2), up2 = NULL, l2 = NULL;
    }
    free(up), free(lu), free(base), free(lb);
    cli_rmtree(d);
}

/* The upsampler stage against PyTorch: super_res_sample.py's loop on two base images (conv_up.npz). */
static void test_upsampler_vs_pytorch(void) {
    if (!cli_tool_available(SAMPLE)) return;
    char d[512], p[700], args[4096], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(args, sizeof args, "-m tests/fixtures/conv_sr.safetensors --base-npz tests/fixtures/conv_base.npz "
             "--upsample-respacing 4 --seed 5 -t 1 -q -o %s/g.png --npz %s/up.npz", d, d);
    cli_result r = cli_run(SAMPLE, d, args);
    CHECK(r.status == 0, "%s", r.err);
    cli_run_free(&r);
    uint8_t *a = NULL, *b = NULL;
    int64_t *la = NULL, *lb = NULL;
    int n, h, w, c, n2, h2, w2, c2;
    snprintf(p, sizeof p, "%s/up.npz", d);
    int ok = gd_read_npz(p, &a, &n, &h, &w, &c, &la, err, sizeof err) == 0 &&
             gd_read_npz("tests/fixtures/conv_up.npz", &b, &n2, &h2, &w2, &c2, &lb, err, sizeof err) == 0;
    CHECK(ok, "%s", err);
    if (ok && n == n2 && h == h2 && w == w2 && c == c2) {
        int maxd = 0, differ = 0, total = n * h * w * c;
        for (int i = 0; i < total; i++) {
            int dd = abs((int)a[i] - (int)b[i]);
            maxd = dd > maxd ? dd : maxd;
            differ += dd != 0;
        }
        printf("    %d of %d uint8 values differ from PyTorch (max %d); labels %s\n", differ, total, maxd,
               la && lb && la[0] == lb[0] && la[1] == lb[1] ? "equal" : "DIFFERENT");
        CHECK(maxd <= 1 && differ * 100 <= total, "upsampled images: %d values differ, max %d", differ, maxd);
        CHECK(la && lb && la[0] == lb[0] && la[1] == lb[1], "labels carried from the base npz");
    } else {
        CHECK(0, "shapes %dx%dx%dx%d vs %dx%dx%dx%d", n, h, w, c, n2, h2, w2, c2);
    }
    free(a), free(b), free(la), free(lb);
    cli_rmtree(d);
}

static void test_cascade_errors(void) {
    if (!cli_tool_available(SAMPLE)) return;
    char d[512], args[4096];
    cli_mkdtemp(d, sizeof d);
    const struct {
        const char *args, *want;
    } c[] = {
        {"-m tests/fixtures/conv_sr.safetensors", "give the images to upsample with --base-npz"},
        {"-m tests/fixtures/conv_unet.safetensors --base-npz tests/fixtures/conv_base.npz", "--base-npz needs an upsampler"},
        {"-m tests/fixtures/conv_sr.safetensors --base-npz tests/fixtures/conv_up.npz", "the upsampler takes 16x16x3"},
        {"-m tests/fixtures/conv_sr.safetensors --base-npz tests/fixtures/conv_base.npz --guidance classifier",
         "the upsampler runs unguided"},
        {"-m tests/fixtures/unet_a.safetensors --upsampler tests/fixtures/conv_sr.safetensors", "has 1000 classes, the base model's labels have 10"},
        {"-m tests/fixtures/conv_unet.safetensors --upsampler tests/fixtures/conv_unet.safetensors", "not a super-resolution model"},
        {"-m tests/fixtures/conv_unet.safetensors --class retriever", "did you mean: 205 flat-coated retriever"},
        {"-m tests/fixtures/conv_unet.safetensors --class crane", "names classes 134 and 517"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        snprintf(args, sizeof args, "%s -n 1 --steps 2 -t 1 -o %s/x.png --npz %s/x.npz", c[i].args, d, d);
        cli_result r = expect_error(d, args, c[i].want, NULL);
        cli_run_free(&r);
    }
    CHECK(cli_count_entries(d) == 0, "no files left");
    cli_rmtree(d);
}

/* F16 weights in a graph with a backward pass: the widened f32 copies share one scratch, so the
 * arena is about the f32 model's (before: every weight's f32 copy lived through the backward). */
static void test_half_weights_memory(void) {
    char err[512];
    int threads = gd_get_threads();
    gd_set_threads(1); /* a tiny network: threads only add waiting on a busy machine */
    gd_model *h = gd_model_load("tests/fixtures/conv_cls.safetensors", NULL, err, sizeof err);
    gd_model *f = gd_model_load("tests/fixtures/conv_cls.safetensors", NULL, err, sizeof err);
    CHECK(h && f && gd_model_make_trainable(f) == 0, "%s", err);
    if (!h || !f) {
        gd_model_free(h), gd_model_free(f), gd_set_threads(threads);
        return;
    }
    gd_net *nh = gd_net_new(h, 2, 1, err, sizeof err), *nf = gd_net_new(f, 2, 1, err, sizeof err);
    CHECK(nh && nf, "%s", err);
    if (nh && nf) {
        size_t ah = gd_graph_arena_bytes(gd_net_graph(nh)), af = gd_graph_arena_bytes(gd_net_graph(nf));
        double wf32 = 4.0 * (double)gd_model_param_count(h);
        printf("    arena with F16 weights %.0f KiB, with F32 weights %.0f KiB; the weights in f32: %.0f KiB\n", ah / 1024.0,
               af / 1024.0, wf32 / 1024.0);
        CHECK((double)ah - (double)af < 0.4 * wf32, "f16 weights cost %.0f KiB of arena beyond f32 ones", ((double)ah - af) / 1024);
        /* and the same numbers come out */
        float *gh = malloc(sizeof(float) * 2 * 3 * 16 * 16), *gf = malloc(sizeof(float) * 2 * 3 * 16 * 16);
        for (int i = 0; i < 2 * 3 * 16 * 16; i++) gd_net_x(nh)[i] = gd_net_x(nf)[i] = (float)((i * 37) % 101) / 50.0f - 1;
        for (int i = 0; i < 2; i++) {
            gd_net_t(nh)[i] = gd_net_t(nf)[i] = (float)(100 + 400 * i);
            gd_net_y(nh)[i] = gd_net_y(nf)[i] = 207 + i;
        }
        CHECK(gd_net_input_grad(nh, gh, NULL, 0) == 0 && gd_net_input_grad(nf, gf, NULL, 0) == 0, "input gradients");
        CHECK(!memcmp(gh, gf, sizeof(float) * 2 * 3 * 16 * 16), "the same gradient with shared widening");
        free(gh);
        free(gf);
    }
    gd_net_free(nh);
    gd_net_free(nf);
    gd_model_free(h);
    gd_model_free(f);
    gd_set_threads(threads);
}

GD_TEST_TABLE(gd_tests_convert) = {
    {"convert: converted checkpoints match PyTorch through ddpm-forward", test_converted_parity},
    {"convert: ImageNet class names embedded", test_class_names},
    {"convert: released configs have the released networks", test_released_configs},
    {"presets: consistent with the released checkpoints and settings", test_presets},
    {"presets: missing or mismatched checkpoints are one-line errors", test_preset_errors},
    {"presets: a cascade preset, class by name, upsampling saved samples", test_preset_cascade},
    {"cascade: the upsampler matches PyTorch's super_res_sample loop", test_upsampler_vs_pytorch},
    {"cascade: bad input exits 2 with one line", test_cascade_errors},
    {"memory: half-precision weights widen into one shared scratch", test_half_weights_memory},
    {NULL, NULL},
};
