/* Regression tests of issue 11 (hostile input, lost data): robust_model. A model's config is
 * checked when it is parsed (every value that sizes something, finite and in range before any
 * cast; no unknown or repeated key; heads that split the channels; a network the builders can
 * hold), a loading failure for lack of memory says so, and non-finite network outputs stop
 * sampling. The process-level tests run the tools of $BUILD on copies of the fixture models
 * whose embedded config or weights are altered. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_model.h"
#include "gd_safetensors.h"
#include "nn/config_src.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define UNET_A "tests/fixtures/unet_a.safetensors"
#define CLS_A "tests/fixtures/cls_a.safetensors"

/* s with its one occurrence of from replaced by to (malloc'ed; NULL, and a failed CHECK, when
 * from is not there). */
static char *replaced(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    CHECK(at != NULL, "'%s' not found in %s", from, s);
    if (!at) return NULL;
    size_t a = (size_t)(at - s), nf = strlen(from), nt = strlen(to), n = strlen(s);
    char *r = malloc(n - nf + nt + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, nt);
    memcpy(r + a + nt, at + nf, n - a - nf + 1);
    return r;
}

/* The embedded config of a model file (malloc'ed; NULL when it has none). */
static char *embedded_config(const char *path) {
    char err[512];
    gd_st_file *f = gd_st_open(path, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    const char *c = f ? gd_st_metadata(f, "config") : NULL;
    char *r = c ? strdup(c) : NULL;
    gd_st_close(f);
    return r;
}

/* A copy of src with config as its embedded config (NULL: src's) and, when nan_tensor is given,
 * that tensor's first element set to NaN. Returns 0 on success. */
static int write_variant(const char *src, const char *dst, const char *config, const char *nan_tensor) {
    char err[512];
    gd_st_file *f = gd_st_open(src, err, sizeof err);
    gd_st_writer *w = gd_st_writer_new();
    int rc = f && w ? 0 : -1, hit = nan_tensor == NULL;
    if (!rc) rc = gd_st_writer_meta(w, "config", config ? config : gd_st_metadata(f, "config"));
    for (int i = 0; !rc && i < gd_st_count(f); i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        unsigned char *d = malloc(t->nbytes ? t->nbytes : 1);
        memcpy(d, t->data, t->nbytes);
        if (nan_tensor && !strcmp(t->name, nan_tensor)) {
            const uint32_t f32 = 0x7fc00000u;
            const uint16_t f16 = 0x7e00u, bf16 = 0x7fc0u;
            if (t->dtype == GD_ST_F32) memcpy(d, &f32, 4);
            else memcpy(d, t->dtype == GD_ST_F16 ? &f16 : &bf16, 2);
            hit = 1;
        }
        rc = gd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, d);
        free(d);
    }
    if (!rc) rc = gd_st_writer_save(w, dst, err, sizeof err);
    CHECK(!rc && hit, "writing %s from %s failed: %s", dst, src, f ? err : "cannot open");
    gd_st_writer_free(w);
    gd_st_close(f);
    return rc || !hit ? -1 : 0;
}

/* The tool contract for bad input: exit 2, one "TOOL: ..." line on stderr that contains want and
 * none of the words of unwanted (NULL: no such check), nothing on stdout, nothing in outdir. */
static void expect_refused(const char *tool, const char *dir, const char *outdir, const char *args, const char *want,
                           const char *unwanted) {
    cli_result r = cli_run(tool, dir, args);
    size_t tl = strlen(tool);
    int lines = cli_count_lines(r.err);
    CHECK(r.status == 2, "%s %s: exit status %d, want 2 (stderr: %s)", tool, args, r.status, r.err);
    CHECK(lines == 1 && !strncmp(r.err, tool, tl) && !strncmp(r.err + tl, ": ", 2), "%s: want one '%s: ' line, got: %s", args,
          tool, r.err);
    CHECK(strstr(r.err, want) != NULL, "%s: the message should contain '%s': %s", args, want, r.err);
    CHECK(!unwanted || !strstr(r.err, unwanted), "%s: the message should not say '%s': %s", args, unwanted, r.err);
    CHECK(r.out[0] == 0, "%s: unexpected stdout: %s", args, r.out);
    CHECK(cli_count_entries(outdir) == 0, "%s: %d file(s) left behind", args, cli_count_entries(outdir));
    if (r.status == 2 && lines == 1) printf("    -> %s", r.err);
    cli_run_free(&r);
}

/* unet_a with its embedded config edited (from -> to), sampled by ddpm-sample with extra flags:
 * refused at load, naming want. */
static void sample_refused(const char *d, const char *from, const char *to, const char *extra, const char *want,
                           const char *unwanted) {
    char model[600], out[600], args[2048];
    char *orig = embedded_config(UNET_A), *cfg = orig ? replaced(orig, from, to) : NULL;
    snprintf(model, sizeof model, "%s/model.safetensors", d);
    snprintf(out, sizeof out, "%s/out", d);
    cli_rmtree(out);
    mkdir(out, 0777);
    if (cfg && !write_variant(UNET_A, model, cfg, NULL)) {
        snprintf(args, sizeof args, "-m %s %s -n 2 --steps 3 -q -o %s/grid.png --npz %s/s.npz", model, extra, out, out);
        expect_refused("ddpm-sample", d, out, args, want, unwanted);
    }
    free(orig);
    free(cfg);
}

static int parse_fails_naming(const char *json, const char *want, char *err, size_t n) {
    gd_config cfg;
    int rc = gd_config_parse(json, &cfg, err, n);
    if (!rc) gd_config_free(&cfg);
    return rc == -1 && strstr(err, want) && !strchr(err, '\n');
}

/* A tiny U-Net (two levels of 32 channels) and classifier; TINY_X lacks the key X so that a test
 * can set it (a key given twice is refused). */
#define TINY_HEAD "\"model\": \"unet\", \"image_size\": 16"
#define TINY_NC TINY_HEAD ", \"channel_mult\": \"1,1\", \"num_res_blocks\": 1"
#define TINY_CM TINY_HEAD ", \"num_channels\": 32, \"num_res_blocks\": 1"
#define TINY_NR TINY_HEAD ", \"num_channels\": 32, \"channel_mult\": \"1,1\""
#define TINY TINY_NR ", \"num_res_blocks\": 1"
#define TINY_CLS_CM "\"model\": \"classifier\", \"image_size\": 16, \"classifier_width\": 32"
#define TINY_CLS TINY_CLS_CM ", \"classifier_channel_mult\": \"1,1\""

/* 1: every value that sizes something is range-checked by gd_config_parse, with its key named. */
static void test_sizing_keys(void) {
    static const struct {
        const char *json, *key;
    } bad[] = {
        {"{" TINY ", \"diffusion_steps\": -5}", "\"diffusion_steps\" -5 out of range"},
        {"{" TINY ", \"diffusion_steps\": 1}", "\"diffusion_steps\""},
        {"{" TINY ", \"diffusion_steps\": 1e9}", "\"diffusion_steps\""},
        {"{\"model\": \"unet\", \"image_size\": 16, \"num_channels\": 0, \"channel_mult\": \"1\"}", "\"num_channels\""},
        {"{\"model\": \"unet\", \"image_size\": 16, \"num_channels\": 32768, \"channel_mult\": \"1\"}", "\"num_channels\""},
        {"{" TINY_NR ", \"num_res_blocks\": -1}", "\"num_res_blocks\""},
        {"{" TINY_NR ", \"num_res_blocks\": 16}", "\"num_res_blocks\""},
        {"{" TINY ", \"num_head_channels\": 0}", "\"num_head_channels\""},
        {"{" TINY ", \"num_head_channels\": -2}", "\"num_head_channels\""},
        {"{" TINY ", \"num_heads\": 0}", "\"num_heads\""},
        {"{" TINY ", \"num_heads\": -4}", "\"num_heads\""},
        {"{" TINY ", \"num_heads_upsample\": 0}", "\"num_heads_upsample\""},
        {"{\"model\": \"unet\", \"image_size\": 0}", "\"image_size\""},
        {"{\"model\": \"unet\", \"image_size\": 8192, \"channel_mult\": \"1\"}", "\"image_size\""},
        {"{" TINY ", \"in_channels\": 0}", "\"in_channels\""},
        {"{\"model\": \"unet\", \"image_size\": 4096, \"in_channels\": 64, \"channel_mult\": \"1\"}", "in_channels 64 is too large"},
        {"{" TINY ", \"num_classes\": 0}", "\"num_classes\""},
        {"{" TINY ", \"class_cond\": true, \"num_classes\": 2000000}", "\"num_classes\""},
        {"{\"model\": \"superres\", \"image_size\": 16, \"num_channels\": 32, \"channel_mult\": \"1,1\", \"small_size\": 0}",
         "\"small_size\""},
        {"{\"model\": \"superres\", \"image_size\": 16, \"num_channels\": 32, \"channel_mult\": \"1,1\", \"small_size\": 5000}",
         "\"small_size\""},
        {"{" TINY_CM ", \"channel_mult\": \"1,-1\"}", "channel_mult -1"},
        {"{" TINY_CM ", \"channel_mult\": \"1,0\"}", "channel_mult 0"},
        {"{" TINY_CM ", \"channel_mult\": \"1,1,1,1,1,1,1,1,1\"}", "\"channel_mult\" has more than 8 levels"},
        {"{" TINY ", \"attention_resolutions\": \"-8\"}", "\"attention_resolutions\" entry -8"},
        {"{" TINY ", \"attention_resolutions\": \"32\"}", "\"attention_resolutions\" entry 32"},
        {"{" TINY ", \"attention_resolutions\": \"1,2,4,8,16,1,2,4,8\"}", "\"attention_resolutions\" has more than"},
        {"{" TINY_CLS ", \"classifier_width\": 0}", "\"classifier_width\""},
        {"{" TINY_CLS ", \"classifier_depth\": 99}", "\"classifier_depth\""},
        {"{" TINY_CLS ", \"classifier_num_head_channels\": 0}", "\"classifier_num_head_channels\""},
        {"{" TINY_CLS_CM ", \"classifier_channel_mult\": \"1,0.5\"}", "classifier_channel_mult 0.5"},
        {"{" TINY_CLS ", \"classifier_attention_resolutions\": \"3\"}", "\"classifier_attention_resolutions\" entry 3"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(parse_fails_naming(bad[i].json, bad[i].key, err, sizeof err), "%s: want an error with '%s', got '%s'",
              bad[i].json, bad[i].key, err);
    /* the edges of the ranges are accepted */
    static const char *const good[] = {
        "{" TINY ", \"diffusion_steps\": 2}",
        "{" TINY ", \"diffusion_steps\": 100000}",
        "{" TINY_NR ", \"num_res_blocks\": 0}",
        "{" TINY_NR ", \"num_res_blocks\": 15}",
        "{" TINY ", \"num_head_channels\": 32, \"num_heads\": -1, \"num_heads_upsample\": 0}", /* heads unused */
        "{\"model\": \"unet\", \"image_size\": 16, \"num_channels\": 16384, \"channel_mult\": \"1\"}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        gd_config cfg;
        int rc = gd_config_parse(good[i], &cfg, err, sizeof err);
        CHECK(rc == 0, "%s: %s", good[i], err);
        if (!rc) gd_config_free(&cfg);
    }
}

/* 1, as a process: the tools refuse a model whose embedded config sizes something wrongly with
 * one line naming the key (before: diffusion_steps -5 reached the sampler, num_head_channels 0
 * divided by zero, SIGFPE). */
static void test_sizing_keys_cli(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512];
    cli_mkdtemp(d, sizeof d);
    sample_refused(d, "\"num_res_blocks\": 1,", "\"num_res_blocks\": 1, \"diffusion_steps\": -5,", "--sampler ddim",
                   "embedded config: \"diffusion_steps\" -5 out of range", NULL);
    sample_refused(d, "\"num_head_channels\": 16", "\"num_head_channels\": 0", "", "\"num_head_channels\"", NULL);
    sample_refused(d, "\"num_res_blocks\": 1", "\"num_res_blocks\": 1000", "", "\"num_res_blocks\" 1000 out of range", NULL);
    sample_refused(d, "\"num_classes\": 10", "\"num_classes\": 0", "", "\"num_classes\" 0 out of range", NULL);
    cli_rmtree(d);
}

/* 2: 1e20, 1e300, inf and NaN are refused before any conversion to int (before: the cast was
 * undefined, and the message said "level 0 has -2147483648 channels"). */
static void test_huge_numbers(void) {
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{" TINY_NC ", \"num_channels\": 1e20}", "\"num_channels\" 1e+20 out of range"},
        {"{" TINY_NC ", \"num_channels\": \"1e300\"}", "\"num_channels\" 1e+300 out of range"},
        {"{" TINY_NC ", \"num_channels\": 1e999}", "\"num_channels\" must be an integer, not inf"},
        {"{" TINY_NC ", \"num_channels\": \"nan\"}", "\"num_channels\" must be an integer"},
        {"{" TINY_NC ", \"num_channels\": 32.5}", "\"num_channels\" must be an integer, not 32.5"},
        {"{" TINY ", \"image_size\": -1e300}", "\"image_size\""},
        {"{" TINY ", \"num_heads\": 1e20, \"num_head_channels\": -1}", "\"num_heads\""},
        {"{" TINY ", \"num_head_channels\": 1e300}", "\"num_head_channels\""},
        {"{" TINY_CM ", \"channel_mult\": \"1e20,1\"}", "channel_mult 1e+20"},
        {"{" TINY_CM ", \"channel_mult\": [1, 1e300]}", "channel_mult 1e+300"},
        {"{" TINY_CM ", \"channel_mult\": \"1,inf\"}", "channel_mult inf"},
        {"{" TINY_CM ", \"channel_mult\": \"nan,1\"}", "channel_mult nan"},
        {"{" TINY ", \"attention_resolutions\": \"1e20\"}", "\"attention_resolutions\" entry 1e+20"},
        {"{" TINY ", \"attention_resolutions\": [1e300]}", "\"attention_resolutions\" entry 1e+300"},
        {"{" TINY ", \"attention_resolutions\": \"inf\"}", "\"attention_resolutions\" entry inf"},
        {"{" TINY ", \"attention_resolutions\": \"nan\"}", "\"attention_resolutions\" entry nan"},
        {"{" TINY ", \"attention_resolutions\": \"8.5\"}", "\"attention_resolutions\" entry 8.5"},
        {"{" TINY_CLS ", \"classifier_width\": 1e20}", "\"classifier_width\""},
        {"{" TINY_CLS ", \"classifier_attention_resolutions\": \"1e300\"}", "\"classifier_attention_resolutions\" entry 1e+300"},
        {"{" TINY ", \"diffusion_steps\": 1e300}", "\"diffusion_steps\""},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(parse_fails_naming(bad[i].json, bad[i].want, err, sizeof err), "%s: want an error with '%s', got '%s'",
              bad[i].json, bad[i].want, err);
        CHECK(!strstr(err, "2147483648"), "%s: a cast overflowed: %s", bad[i].json, err);
    }
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512];
    cli_mkdtemp(d, sizeof d);
    sample_refused(d, "\"channel_mult\": \"1,1\"", "\"channel_mult\": \"1e20,1\"", "", "channel_mult 1e+20", "-2147483648");
    sample_refused(d, "\"attention_resolutions\": \"8\"", "\"attention_resolutions\": \"1e300\"", "",
                   "\"attention_resolutions\" entry 1e+300", NULL);
    cli_rmtree(d);
}

/* 3: an unknown key, a key of the other kind of network, a repeated key: refused by name (before:
 * ignored, so a flipped byte in "use_new_attention_order" silently changed the images). */
static void test_unknown_keys(void) {
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{" TINY ", \"use_new_attention_ordeR\": true}", "unknown key \"use_new_attention_ordeR\""},
        {"{" TINY ", \"num_channelz\": 64}", "unknown key \"num_channelz\""},
        {"{" TINY ", \"\": 1}", "unknown key \"\""},
        {"{" TINY ", \"a\\nb\\\"c\": 1}", "unknown key \"a?b?c\""},
        {"{" TINY ", \"classifier_width\": 64}", "\"classifier_width\" is a classifier key, and this config is a unet"},
        {"{" TINY_CLS ", \"num_channels\": 64}", "\"num_channels\" is a U-Net key, and this config is a classifier"},
        {"{" TINY ", \"num_channels\": 64}", "key \"num_channels\" appears twice"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(parse_fails_naming(bad[i].json, bad[i].want, err, sizeof err), "%s: want an error with '%s', got '%s'",
              bad[i].json, bad[i].want, err);
    /* every documented key, and guided-diffusion's diffusion flags, are accepted */
    const char *all = "{" TINY ", \"in_channels\": 3, \"num_classes\": 10, \"class_names\": [\"a\"], \"diffusion_steps\": 100,"
                      " \"noise_schedule\": \"cosine\", \"sigma_small\": false, \"learn_sigma\": true, \"timestep_respacing\": \"\","
                      " \"use_kl\": false, \"predict_xstart\": false, \"rescale_timesteps\": false, \"rescale_learned_sigmas\": false,"
                      " \"num_heads\": 4, \"num_head_channels\": -1, \"num_heads_upsample\": -1, \"attention_resolutions\": \"8\","
                      " \"dropout\": 0.1, \"class_cond\": true, \"null_class\": true, \"use_checkpoint\": false,"
                      " \"use_scale_shift_norm\": true, \"resblock_updown\": true, \"use_fp16\": false,"
                      " \"use_new_attention_order\": true, \"small_size\": 4}";
    gd_config cfg;
    int rc = gd_config_parse(all, &cfg, err, sizeof err);
    CHECK(rc == 0, "every U-Net key: %s", err);
    if (!rc) gd_config_free(&cfg);
    const char *all_cls = "{" TINY_CLS ", \"classifier_depth\": 1, \"classifier_attention_resolutions\": \"8\","
                          " \"classifier_num_head_channels\": 16, \"classifier_use_scale_shift_norm\": true,"
                          " \"classifier_resblock_updown\": true, \"classifier_pool\": \"adaptive\", \"classifier_use_fp16\": false,"
                          " \"diffusion_steps\": 1000, \"noise_schedule\": \"linear\", \"num_classes\": 10}";
    rc = gd_config_parse(all_cls, &cfg, err, sizeof err);
    CHECK(rc == 0, "every classifier key: %s", err);
    if (!rc) gd_config_free(&cfg);
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512];
    cli_mkdtemp(d, sizeof d);
    sample_refused(d, "\"use_new_attention_order\"", "\"use_new_attention_ordeR\"", "",
                   "embedded config: unknown key \"use_new_attention_ordeR\"", NULL);
    sample_refused(d, "\"null_class\": true", "\"null_class\": true, \"null_class\": false", "", "key \"null_class\" appears twice",
                   NULL);
    cli_rmtree(d);
}

static int parse_ok(const char *where, const char *json) {
    char err[1024];
    gd_config cfg;
    int rc = gd_config_parse(json, &cfg, err, sizeof err);
    CHECK(rc == 0, "%s: %s", where, err);
    if (!rc) gd_config_free(&cfg);
    return rc == 0;
}

/* A JSON object that is a model config (its "model" names a network kind). */
static int is_model_config(const cJSON *o) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "model");
    return cJSON_IsObject(o) && cJSON_IsString(m) &&
           (!strcmp(m->valuestring, "unet") || !strcmp(m->valuestring, "superres") || !strcmp(m->valuestring, "classifier"));
}

/* 3, the other side: every config the project ships or writes still loads: configs/ (and the
 * networks of the training configs, which ddpm-train parses), the models' and every fixture's
 * embedded config, and the configs of the released checkpoints, as tests/data/flags_configs.json
 * records them and as gd_config_from_flags makes them from their README flags. A guard against
 * refusing a key in use; it passes on the baseline too. */
static void test_shipped_configs_load(void) {
    char p[1200], err[512];
    int n = 0;
    static const char *const dirs[] = {"configs", "models", "tests/fixtures", "tests/data"};
    for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; k++) {
        DIR *dir = opendir(dirs[k]);
        CHECK(dir != NULL, "%s", dirs[k]);
        for (struct dirent *e; dir && (e = readdir(dir));) {
            size_t len = strlen(e->d_name);
            snprintf(p, sizeof p, "%s/%s", dirs[k], e->d_name);
            if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) {
                char *json = embedded_config(p); /* some fixtures embed other things under "config" */
                cJSON *o = json ? cJSON_Parse(json) : NULL;
                if (is_model_config(o)) n += parse_ok(p, json);
                cJSON_Delete(o);
                free(json);
            } else if (len > 5 && !strcmp(e->d_name + len - 5, ".json")) {
                char *text = cli_slurp(p);
                cJSON *o = cJSON_Parse(text), *net = cJSON_GetObjectItemCaseSensitive(o, "model");
                char *js = is_model_config(o) ? cJSON_PrintUnformatted(o) : is_model_config(net) ? cJSON_PrintUnformatted(net) : NULL;
                if (js) n += parse_ok(p, js);
                cJSON_free(js);
                cJSON_Delete(o);
                free(text);
            }
        }
        if (dir) closedir(dir);
    }
    char *text = cli_slurp("tests/data/flags_configs.json");
    cJSON *list = cJSON_Parse(text), *e;
    int nf = 0;
    cJSON_ArrayForEach(e, list) {
        const cJSON *flags = cJSON_GetObjectItemCaseSensitive(e, "flags"), *cfg = cJSON_GetObjectItemCaseSensitive(e, "config");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "checkpoint");
        const char *nm = cJSON_IsString(name) ? name->valuestring : "?";
        if (cJSON_IsString(cfg)) nf += parse_ok(nm, cfg->valuestring);
        char *js = cJSON_IsString(flags) ? gd_config_from_flags(flags->valuestring, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "classifier")), err, sizeof err) : NULL;
        CHECK(js != NULL, "%s: flags: %s", nm, err);
        if (js) nf += parse_ok(nm, js);
        free(js);
    }
    cJSON_Delete(list);
    free(text);
    printf("    %d shipped configs and %d configs of released checkpoints parse\n", n, nf);
    CHECK(n >= 30 && nf >= 20, "too few configs found (%d, %d)", n, nf);
}

/* 4: a NaN weight stops sampling at the first step with one line and no image (before: exit 0
 * and black images). For the denoiser (DDPM and DDIM) and for a guiding classifier. */
static void test_nan_weights(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], unet[600], cls[600], out[600], args[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(unet, sizeof unet, "%s/nan_unet.safetensors", d);
    snprintf(cls, sizeof cls, "%s/nan_cls.safetensors", d);
    snprintf(out, sizeof out, "%s/out", d);
    mkdir(out, 0777);
    if (write_variant(UNET_A, unet, NULL, "input_blocks.1.0.in_layers.2.weight") ||
        write_variant(CLS_A, cls, NULL, "input_blocks.1.0.in_layers.2.weight"))
        goto done;
    const char *modes[] = {"", "--sampler ddim --steps 4"};
    const char *want[] = {"sampling failed: step 1 of 5 (t=999): the model produced non-finite values (NaN/Inf); its weights may be corrupt",
                          "sampling failed: step 1 of 4 (t=750): the model produced non-finite values (NaN/Inf)"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "-m %s -n 2 --steps 5 %s -q -o %s/grid.png --npz %s/s.npz", unet, modes[i], out, out);
        expect_refused("ddpm-sample", d, out, args, want[i], NULL);
    }
    snprintf(args, sizeof args, "-m " UNET_A " --classifier %s --guidance classifier --scale 5 -n 2 --steps 3 -q -o %s/grid.png", cls,
             out);
    expect_refused("ddpm-sample", d, out, args, "the guidance produced non-finite values (NaN/Inf)", NULL);
    /* the unaltered copy samples (the check does not fire on finite outputs) */
    snprintf(unet, sizeof unet, "%s/copy.safetensors", d);
    if (!write_variant(UNET_A, unet, NULL, NULL)) {
        snprintf(args, sizeof args, "-m %s -n 2 --steps 3 -q -o %s/grid.png", unet, out);
        cli_result r = cli_run("ddpm-sample", d, args);
        CHECK(r.status == 0, "the unaltered copy: %s", r.err);
        cli_run_free(&r);
    }
done:
    cli_rmtree(d);
}

/* 5a: random weights that do not fit in memory are reported as out of memory, with the size,
 * not as "missing tensor 'time_embed.0.weight'". ddpm-bench runs under a 600 MB address-space
 * limit, so its 1 GiB time_embed.0 weight cannot be allocated. */
static void test_out_of_memory(void) {
#ifdef __SANITIZE_ADDRESS__
    printf("    skipped: AddressSanitizer builds cannot run under an address-space limit\n");
    return;
#endif
    if (!cli_tool_available("ddpm-bench")) return;
    char d[512], cfg[600], cmd[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(cfg, sizeof cfg, "%s/wide.json", d);
    const char *js = "{\"model\": \"unet\", \"image_size\": 8, \"in_channels\": 1, \"num_channels\": 8192, \"channel_mult\": \"1\","
                     " \"num_res_blocks\": 0, \"attention_resolutions\": \"\", \"num_head_channels\": 64}";
    cli_write_file(cfg, js, strlen(js));
    snprintf(cmd, sizeof cmd, "ulimit -v 600000; %s -c %s --repeat 1 -t 1 >%s/out.txt 2>%s/err.txt", cli_tool("ddpm-bench"), cfg, d, d);
    int rc = system(cmd), status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    snprintf(cmd, sizeof cmd, "%s/err.txt", d);
    char *err = cli_slurp(cmd);
    CHECK(status == 2, "exit status %d, want 2: %s", status, err);
    CHECK(cli_count_lines(err) == 1 && strstr(err, "ddpm-bench: out of memory") && strstr(err, "1024.0 MiB") &&
              !strstr(err, "missing tensor"),
          "want one line 'out of memory' with the size, got: %s", err);
    printf("    -> %s", err);
    free(err);
    cli_rmtree(d);
}

/* 5b: heads that do not split a block's channels are refused at parse, in the config's words
 * (before: "attention: '' must be [N, 3C, T] with C divisible by 9 heads", while sampling). */
static void test_heads(void) {
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{" TINY ", \"attention_resolutions\": \"8\", \"num_heads\": 9}",
         "num_heads 9 does not divide the 32 channels at resolution 8"},
        {"{" TINY ", \"attention_resolutions\": \"\", \"num_heads\": 3}",
         "num_heads 3 does not divide the 32 channels at resolution 8 (the middle block)"},
        {"{" TINY ", \"attention_resolutions\": \"16\", \"num_heads\": 4, \"num_heads_upsample\": 5}",
         "num_heads_upsample 5 does not divide the 32 channels at resolution 16"},
        {"{" TINY ", \"num_head_channels\": 24}", "num_head_channels 24 does not divide the 32 channels at resolution"},
        {"{" TINY ", \"num_head_channels\": 64}", "num_head_channels 64 does not divide the 32 channels"},
        /* without ResBlocks the middle block keeps the first level's width (found by the fuzzer: the
         * check took the last level's 64 channels, and the builder then made 0 heads) */
        {"{" TINY_HEAD ", \"num_channels\": 32, \"channel_mult\": \"1,2\", \"num_res_blocks\": 0, \"num_head_channels\": 64}",
         "num_head_channels 64 does not divide the 32 channels at resolution 8 (the middle block)"},
        {"{" TINY_CLS_CM ", \"classifier_channel_mult\": \"1,2\", \"classifier_depth\": 0, \"classifier_attention_resolutions\": \"\","
         " \"classifier_num_head_channels\": 64}", "classifier_num_head_channels 64 does not divide the 32 channels"},
        {"{" TINY_CLS ", \"classifier_attention_resolutions\": \"\", \"classifier_num_head_channels\": 24}",
         "classifier_num_head_channels 24 does not divide the 32 channels"},
        {"{" TINY_CLS ", \"classifier_attention_resolutions\": \"\", \"classifier_num_head_channels\": 64, \"classifier_pool\": \"attention\"}",
         "classifier_num_head_channels 64 does not divide the 32 channels"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(parse_fails_naming(bad[i].json, bad[i].want, err, sizeof err), "%s: want an error with '%s', got '%s'",
              bad[i].json, bad[i].want, err);
    /* heads that do split, and heads at a resolution without attention, are fine */
    CHECK(parse_ok("heads 8", "{" TINY ", \"attention_resolutions\": \"8\", \"num_heads\": 8, \"num_heads_upsample\": 2}"), "heads 8");
    CHECK(parse_ok("no attention", "{" TINY_NR ", \"num_res_blocks\": 0, \"attention_resolutions\": \"16,8\", \"num_heads\": 1}"), "heads 1");
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512];
    cli_mkdtemp(d, sizeof d);
    sample_refused(d, "\"num_head_channels\": 16", "\"num_heads\": 9", "",
                   "embedded config: num_heads 9 does not divide the 32 channels at resolution 8", "attention:");
    cli_rmtree(d);
}

/* 5c: a config too large for the builders is refused at parse, naming the key (before: "context
 * full (20000 tensors)"); the largest accepted networks do build. */
static void test_network_size(void) {
    char err[512];
    static const char *const largest[] = {
        "{\"model\": \"unet\", \"image_size\": 128, \"in_channels\": 1, \"num_channels\": 32, \"channel_mult\": \"1,1,1,1,1,1,1,1\","
        " \"num_res_blocks\": 15, \"attention_resolutions\": \"16,8,4,2,1\", \"num_head_channels\": 32, \"resblock_updown\": true,"
        " \"use_scale_shift_norm\": false, \"class_cond\": true, \"num_classes\": 10, \"learn_sigma\": true}",
        "{\"model\": \"classifier\", \"image_size\": 128, \"in_channels\": 1, \"classifier_width\": 32,"
        " \"classifier_channel_mult\": \"1,1,1,1,1,1,1,1\", \"classifier_depth\": 15, \"classifier_attention_resolutions\": \"16,8,4,2,1\","
        " \"classifier_num_head_channels\": 32, \"num_classes\": 10}",
    };
    for (int i = 0; i < 2; i++) {
        gd_config cfg;
        if (gd_config_parse(largest[i], &cfg, err, sizeof err)) {
            CHECK(0, "%s", err);
            continue;
        }
        gd_model *m = gd_model_random(&cfg, 7);
        gd_net *net = gd_net_new(m, 1, i == 1, err, sizeof err);
        CHECK(net != NULL, "the largest accepted %s does not build: %s", i ? "classifier" : "U-Net", err);
        if (net) printf("    largest %s builds: %lld parameters\n", i ? "classifier" : "U-Net", (long long)gd_model_param_count(m));
        gd_net_free(net);
        gd_model_free(m);
        gd_config_free(&cfg);
    }
    if (!cli_tool_available("ddpm-bench")) return;
    char d[512], cfg[600], args[1400];
    cli_mkdtemp(d, sizeof d);
    snprintf(cfg, sizeof cfg, "%s/deep.json", d);
    const char *js = "{\"model\": \"unet\", \"image_size\": 8, \"in_channels\": 1, \"num_channels\": 32, \"channel_mult\": \"1\","
                     " \"num_res_blocks\": 1000, \"attention_resolutions\": \"\", \"num_head_channels\": 32}";
    cli_write_file(cfg, js, strlen(js));
    snprintf(args, sizeof args, "-c %s --repeat 1 -t 1", cfg);
    char out[600];
    snprintf(out, sizeof out, "%s/out", d);
    mkdir(out, 0777);
    expect_refused("ddpm-bench", d, out, args, "config: \"num_res_blocks\" 1000 out of range [0, 15]", "context full");
    cli_rmtree(d);
}

/* The converter's reading of a config (cfg_expected, scripts/convert_checkpoint.py's rules): 0, or
 * -1 / -2 with one line; the Python words for what int() refuses. */
static int converter_reads(const char *json, size_t len, char *err, size_t n) {
    pj *c = pj_parse(json, len, err, n);
    int rc = -3;
    if (c && c->t == PJ_DICT) {
        cfg_tensor *want = NULL;
        int nw = 0;
        memset(err, 0x55, n);
        rc = cfg_expected(c, &want, &nw, err, n);
        CHECK(rc == 0 ? nw > 0 : (rc == -1 || rc == -2) && memchr(err, 0, n) && err[0] && !strchr(err, '\n'),
              "cfg_expected: rc %d", rc);
        free(want);
    }
    pj_free(c);
    return rc;
}

/* 6: every file of the fuzz seed corpus replays through gd_config_parse in the normal build: no
 * crash; the refused_* seeds are refused with one line, the others parse. They also replay
 * through the converter's reading, where the fuzzer found int(inf * width) cast in C (undefined):
 * now Python's OverflowError / ValueError text. */
static void test_fuzz_corpus(void) {
    const char *dirname = "tests/data/fuzz/model_config";
    DIR *dir = opendir(dirname);
    CHECK(dir != NULL, "%s is missing", dirname);
    int n = 0, refused = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        char p[1200], err[512];
        snprintf(p, sizeof p, "%s/%s", dirname, e->d_name);
        size_t len;
        unsigned char *data = cli_read_file(p, &len);
        CHECK(data != NULL, "%s unreadable", p);
        if (!data) continue;
        char *json = malloc(len + 1);
        memcpy(json, data, len);
        json[len] = 0;
        memset(err, 0x55, sizeof err);
        gd_config cfg;
        int rc = gd_config_parse(json, &cfg, err, sizeof err), want_refused = !strncmp(e->d_name, "refused_", 8);
        if (rc) {
            CHECK(memchr(err, 0, sizeof err) && err[0] && !strchr(err, '\n'), "%s: not a one-line message", p);
            refused++;
        } else {
            gd_config_free(&cfg);
        }
        CHECK(!rc == !want_refused, "%s: %s", p, rc ? err : "accepted");
        int crc = converter_reads(json, len, err, sizeof err);
        CHECK(rc || crc == 0, "%s: gd_config_parse accepts it, the converter does not: %s", p, err);
        n++;
        free(json);
        free(data);
    }
    if (dir) closedir(dir);
    static const struct {
        const char *json, *want;
    } conv[] = {
        {"{" TINY_CM ", \"channel_mult\": \"1,inf\"}", "cannot convert float infinity to integer"},
        {"{" TINY_CM ", \"channel_mult\": \"nan\"}", "cannot convert float NaN to integer"},
        {"{" TINY ", \"attention_resolutions\": \"inf\"}", "cannot convert float infinity to integer"},
        {"{" TINY ", \"attention_resolutions\": \"1e300\"}", "config: a size of 1e+300 is too large"},
        {"{" TINY_CM ", \"channel_mult\": \"1e20\"}", "config: a size of 3.2e+21 is too large"},
        {"{" TINY_NC ", \"num_channels\": 99999999999}", "config: \"num_channels\" 99999999999 is too large"},
    };
    for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++) {
        char err[512] = "";
        int crc = converter_reads(conv[i].json, strlen(conv[i].json), err, sizeof err);
        CHECK(crc < 0 && strstr(err, conv[i].want), "converter on %s: rc %d, '%s'; want '%s'", conv[i].json, crc, err, conv[i].want);
    }
    printf("    %d seeds replayed, %d refused\n", n, refused);
    CHECK(n >= 20 && n <= 30 && refused >= 8, "%d seeds, %d refused", n, refused);
}

GD_TEST_TABLE(gd_tests_robust_model) = {
    {"robust_model_sizing_keys_range_checked", test_sizing_keys},
    {"robust_model_sizing_keys_cli", test_sizing_keys_cli},
    {"robust_model_huge_numbers_never_cast", test_huge_numbers},
    {"robust_model_unknown_keys_refused", test_unknown_keys},
    {"robust_model_shipped_configs_load", test_shipped_configs_load},
    {"robust_model_nan_weights_stop_sampling", test_nan_weights},
    {"robust_model_out_of_memory_not_missing_tensor", test_out_of_memory},
    {"robust_model_heads_checked_at_parse", test_heads},
    {"robust_model_network_size_bounded", test_network_size},
    {"robust_model_fuzz_corpus_replays", test_fuzz_corpus},
    {NULL, NULL},
};
