/* libFuzzer target for model configs (docs/config.md). Built and run by `make fuzz`
 * (build-fuzz/fuzz_model_config; seeds: tests/data/fuzz/model_config/).
 *
 * The input is the config's JSON text. It goes to gd_config_parse, which either refuses it with a
 * one-line message or accepts it; an accepted config must then build, as tensor shapes only (no
 * weights, no activations), into a network whose output has the config's shape, within the
 * graph nodes a network gets (net.c) - so the size arithmetic of the builders runs on every
 * config the parser lets through, and the parser is the only place a config is refused. The same
 * text also goes to the converter's reading (cfg_expected, scripts/convert_checkpoint.py's rules),
 * which computes the tensor list from configs nothing has validated. Any violated promise aborts. */
#include "core/gd_internal.h"
#include "gd_model.h"
#include "nn/config_src.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NET_NODES 20000 /* net.c's context size */

static void must(int cond) {
    if (!cond) abort();
}

static void one_line(const char *err, size_t n) {
    must(memchr(err, '\0', n) != NULL);
    must(err[0] != '\0');
    must(strchr(err, '\n') == NULL);
}

/* An accepted config builds, with every weight named once and the output the config says. */
static void build(const gd_config *cfg) {
    must(cfg->n_levels >= 1 && cfg->n_levels <= GD_MAX_LEVELS && cfg->n_attention <= GD_MAX_LEVELS);
    must(cfg->image_size >= 1 && cfg->in_channels >= 1 && cfg->model_channels >= 1 && cfg->num_classes >= 1);
    must(cfg->diffusion_steps >= 2 && cfg->json != NULL);
    gd_model *m = gd_model_shapes(cfg);
    gd_ctx *ctx = gd_ctx_new(NET_NODES);
    must(m && ctx);
    const int64_t S = cfg->image_size, C = cfg->in_channels, N = 1;
    gd_tensor *x = gd_new_tensor(ctx, GD_F32, 4, (int64_t[]){N, C, S, S});
    gd_tensor *t = gd_new_tensor(ctx, GD_F32, 1, &N), *out;
    if (cfg->kind == GD_NET_CLASSIFIER) {
        out = gd_classifier_build(ctx, m, x, t);
        must(out && out->ndim == 2 && out->ne[0] == N && out->ne[1] == cfg->num_classes);
    } else {
        gd_tensor *y = cfg->class_cond ? gd_new_tensor(ctx, GD_I32, 1, &N) : NULL, *lr = NULL;
        if (cfg->kind == GD_NET_SUPERRES) {
            int64_t s = cfg->small_size;
            lr = gd_new_tensor(ctx, GD_F32, 4, (int64_t[]){N, C, s, s});
        }
        out = gd_unet_build(ctx, m, x, t, y, lr);
        must(out && out->ndim == 4 && out->ne[0] == N && out->ne[1] == gd_config_out_channels(cfg) && out->ne[2] == S &&
             out->ne[3] == S);
    }
    must(gd_model_check_all_used(m) == 0 && gd_model_param_count(m) > 0);
    gd_ctx_free(ctx);
    gd_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0; /* configs are a few hundred bytes */
    char *json = malloc(size + 1);
    must(json != NULL);
    memcpy(json, data, size);
    json[size] = '\0';
    char err[256];
    memset(err, 0x55, sizeof err);
    gd_config cfg;
    if (gd_config_parse(json, &cfg, err, sizeof err)) {
        one_line(err, sizeof err);
    } else {
        build(&cfg);
        gd_config_free(&cfg);
    }
    pj *c = pj_parse(json, size, err, sizeof err);
    if (c && c->t == PJ_DICT) {
        cfg_tensor *want = NULL;
        int n = 0;
        memset(err, 0x55, sizeof err);
        if (cfg_expected(c, &want, &n, err, sizeof err)) one_line(err, sizeof err);
        else must(n > 0 && want != NULL);
        free(want);
    }
    pj_free(c);
    free(json);
    return 0;
}
