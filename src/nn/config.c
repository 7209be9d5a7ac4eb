/* Model configs: JSON objects whose keys mirror guided-diffusion's flags (docs/config.md). */
#include "gd_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        goto fail;                                                                                 \
    } while (0)

/* Booleans as JSON bools, numbers, or guided-diffusion's str2bool strings. */
static int get_bool(const cJSON *o, const char *key, bool def, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return 0; }
    if (cJSON_IsBool(v)) { *out = cJSON_IsTrue(v); return 0; }
    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) { *out = v->valuedouble != 0; return 0; }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        const char *yes[] = {"yes", "true", "t", "y", "1"}, *no[] = {"no", "false", "f", "n", "0"};
        for (int i = 0; i < 5; i++) {
            if (!strcasecmp(s, yes[i])) { *out = true; return 0; }
            if (!strcasecmp(s, no[i])) { *out = false; return 0; }
        }
    }
    return -1;
}

static int get_int(const cJSON *o, const char *key, int def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return 0; }
    double d;
    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
    } else if (cJSON_IsString(v)) {
        char *end;
        errno = 0;
        d = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end || errno) return -1;
    } else {
        return -1;
    }
    if (d != (double)(int)d || d < -1e6 || d > 1e6) return -1;
    *out = (int)d;
    return 0;
}

/* A comma list ("1,2,3") or a JSON array of numbers; returns the count, -1 on error. */
static int get_list(const cJSON *o, const char *key, double *vals, int max) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    int n = 0;
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsNumber(e) || n == max) return -1;
            vals[n++] = e->valuedouble;
        }
        return n;
    }
    if (cJSON_IsNumber(v)) {
        vals[0] = v->valuedouble;
        return 1;
    }
    if (!cJSON_IsString(v)) return -1;
    const char *s = v->valuestring;
    while (*s) {
        char *end;
        double d = strtod(s, &end);
        if (end == s || n == max) return -1;
        vals[n++] = d;
        while (*end == ' ') end++;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}

/* guided-diffusion's channel_mult table for channel_mult == "". */
static int default_mult(int image_size, bool superres, double *m) {
    static const double m512[] = {0.5, 1, 1, 2, 2, 4, 4}, m256[] = {1, 1, 2, 2, 4, 4}, m128[] = {1, 1, 2, 3, 4},
                        m64[] = {1, 2, 3, 4};
    const double *src = NULL;
    int n = 0;
    if (image_size == 512 && !superres) src = m512, n = 7;
    else if (image_size == 512 || image_size == 256) src = m256, n = 6;
    else if (image_size == 128) src = m128, n = 5;
    else if (image_size == 64) src = m64, n = 4;
    for (int i = 0; i < n; i++) m[i] = src[i];
    return n;
}

int gd_config_parse(const char *json, gd_config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) FAIL("config is not a JSON object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    const char *kind = cJSON_IsString(model) ? model->valuestring : NULL;
    if (!kind) FAIL("config: missing \"model\" (unet, superres or classifier)");
    if (!strcmp(kind, "unet")) cfg->kind = GD_NET_UNET;
    else if (!strcmp(kind, "superres")) cfg->kind = GD_NET_SUPERRES;
    else if (!strcmp(kind, "classifier")) cfg->kind = GD_NET_CLASSIFIER;
    else FAIL("config: unknown model \"%s\" (want unet, superres or classifier)", kind);
    bool cls = cfg->kind == GD_NET_CLASSIFIER;

#define INT(key, def, dst) if (get_int(o, key, def, dst)) FAIL("config: \"%s\" must be an integer", key)
#define BOOL(key, def, dst) if (get_bool(o, key, def, dst)) FAIL("config: \"%s\" must be a boolean", key)
    INT("image_size", 64, &cfg->image_size);
    INT("in_channels", 3, &cfg->in_channels);
    INT("num_classes", 1000, &cfg->num_classes);
    const char *k_mult = cls ? "classifier_channel_mult" : "channel_mult";
    const char *k_attn = cls ? "classifier_attention_resolutions" : "attention_resolutions";
    double res[GD_MAX_LEVELS];
    int nres;
    if (cls) {
        INT("classifier_width", 128, &cfg->model_channels);
        INT("classifier_depth", 2, &cfg->num_res_blocks);
        INT("classifier_num_head_channels", 64, &cfg->num_head_channels);
        BOOL("classifier_use_scale_shift_norm", true, &cfg->use_scale_shift_norm);
        BOOL("classifier_resblock_updown", true, &cfg->resblock_updown);
        cfg->num_heads = 1;
        cfg->num_heads_upsample = -1;
        const cJSON *pool = cJSON_GetObjectItemCaseSensitive(o, "classifier_pool");
        const char *p = cJSON_IsString(pool) ? pool->valuestring : pool ? "" : "attention";
        if (!strcmp(p, "attention")) cfg->pool_attention = true;
        else if (strcmp(p, "adaptive")) FAIL("config: classifier_pool \"%s\" not supported (attention, adaptive)", p);
        if (cfg->pool_attention && cfg->num_head_channels < 1)
            FAIL("config: classifier_pool attention needs classifier_num_head_channels > 0");
        nres = get_list(o, k_attn, res, GD_MAX_LEVELS);
        if (!cJSON_GetObjectItemCaseSensitive(o, k_attn)) res[0] = 32, res[1] = 16, res[2] = 8, nres = 3;
    } else {
        INT("num_channels", 128, &cfg->model_channels);
        INT("num_res_blocks", 2, &cfg->num_res_blocks);
        INT("num_heads", 4, &cfg->num_heads);
        INT("num_head_channels", -1, &cfg->num_head_channels);
        INT("num_heads_upsample", -1, &cfg->num_heads_upsample);
        BOOL("use_scale_shift_norm", true, &cfg->use_scale_shift_norm);
        BOOL("resblock_updown", false, &cfg->resblock_updown);
        BOOL("use_new_attention_order", false, &cfg->use_new_attention_order);
        BOOL("learn_sigma", false, &cfg->learn_sigma);
        BOOL("class_cond", false, &cfg->class_cond);
        BOOL("null_class", false, &cfg->null_class);
        INT("small_size", cfg->image_size / 4, &cfg->small_size);
        if (cfg->kind == GD_NET_SUPERRES && cfg->small_size < 1) FAIL("config: small_size must be positive");
        nres = get_list(o, k_attn, res, GD_MAX_LEVELS);
        if (!cJSON_GetObjectItemCaseSensitive(o, k_attn)) res[0] = 16, res[1] = 8, nres = 2;
    }
    if (cfg->num_heads_upsample == -1) cfg->num_heads_upsample = cfg->num_heads;
    INT("diffusion_steps", 1000, &cfg->diffusion_steps);
    BOOL("sigma_small", false, &cfg->sigma_small);
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(o, "noise_schedule");
    if (ns && (!cJSON_IsString(ns) || strlen(ns->valuestring) >= sizeof cfg->noise_schedule))
        FAIL("config: \"noise_schedule\" must be \"linear\" or \"cosine\"");
    snprintf(cfg->noise_schedule, sizeof cfg->noise_schedule, "%s", ns ? ns->valuestring : "linear");
    cfg->has_schedule = ns || cJSON_GetObjectItemCaseSensitive(o, "diffusion_steps");
    if (cfg->image_size < 1 || cfg->image_size > 4096) FAIL("config: image_size %d out of range", cfg->image_size);
    if (cfg->in_channels < 1 || cfg->in_channels > 64) FAIL("config: in_channels %d out of range", cfg->in_channels);
    if (cfg->num_classes < 1) FAIL("config: num_classes must be positive");
    if (cfg->model_channels < 1 || cfg->num_res_blocks < 0) FAIL("config: model width and depth must be positive");

    cfg->n_levels = get_list(o, k_mult, cfg->channel_mult, GD_MAX_LEVELS);
    if (cfg->n_levels < 0) FAIL("config: \"%s\" must be a comma list of numbers", k_mult);
    if (cfg->n_levels == 0) {
        cfg->n_levels = default_mult(cfg->image_size, cfg->kind == GD_NET_SUPERRES, cfg->channel_mult);
        if (!cfg->n_levels) FAIL("config: no default %s for image_size %d; set it", k_mult, cfg->image_size);
    }
    for (int i = 0; i < cfg->n_levels; i++) {
        int ch = (int)(cfg->channel_mult[i] * cfg->model_channels);
        if (ch < 32 || ch % 32) FAIL("config: level %d has %d channels; GroupNorm(32) needs a multiple of 32", i, ch);
    }
    if (cfg->image_size % (1 << (cfg->n_levels - 1)))
        FAIL("config: image_size %d does not halve %d times", cfg->image_size, cfg->n_levels - 1);
    if (nres < 0) FAIL("config: \"%s\" must be a comma list of resolutions", k_attn);
    for (int i = 0; i < nres; i++) {
        int r = (int)res[i];
        if (r < 1 || r != res[i] || cfg->image_size % r) FAIL("config: attention resolution %g does not divide image_size %d", res[i], cfg->image_size);
        cfg->attention_ds[cfg->n_attention++] = cfg->image_size / r;
    }
    if (cfg->num_head_channels == -1 && cfg->num_heads < 1) FAIL("config: num_heads must be positive");
    cfg->json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return 0;
fail:
    cJSON_Delete(o);
    return -1;
}

int gd_config_load(const char *path, gd_config *cfg, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 24)) {
        fclose(f);
        snprintf(err, errlen, "%s: not a config file (size)", path);
        return -1;
    }
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)n) {
        free(buf);
        snprintf(err, errlen, "%s: read error", path);
        return -1;
    }
    buf[n] = 0;
    char e2[400];
    int rc = gd_config_parse(buf, cfg, e2, sizeof e2);
    free(buf);
    if (rc) snprintf(err, errlen, "%s: %s", path, e2);
    return rc;
}

void gd_config_free(gd_config *cfg) {
    free(cfg->json);
    cfg->json = NULL;
}

int gd_config_out_channels(const gd_config *cfg) { return cfg->in_channels * (cfg->learn_sigma ? 2 : 1); }

int gd_config_class_names(const gd_config *cfg, char ***names) {
    *names = NULL;
    cJSON *o = cfg->json ? cJSON_Parse(cfg->json) : NULL;
    const cJSON *list = o ? cJSON_GetObjectItemCaseSensitive(o, "class_names") : NULL;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    size_t bytes = sizeof(char *) * (size_t)(n + 1);
    for (int k = 0; k < n; k++) {
        const cJSON *v = cJSON_GetArrayItem(list, k);
        if (!cJSON_IsString(v)) { n = k; break; } /* names up to the first non-string */
        bytes += strlen(v->valuestring) + 1;
    }
    if (n == 0) {
        cJSON_Delete(o);
        return 0;
    }
    /* one block: the pointer array, then the strings */
    char **out = malloc(bytes);
    if (!out) {
        cJSON_Delete(o);
        return -1;
    }
    char *p = (char *)(out + n + 1);
    for (int k = 0; k < n; k++) {
        const char *v = cJSON_GetArrayItem(list, k)->valuestring;
        out[k] = p;
        p = stpcpy(p, v) + 1;
    }
    out[n] = NULL;
    cJSON_Delete(o);
    *names = out;
    return n;
}

int gd_config_class_name(const gd_config *cfg, int k, char *buf, size_t n) {
    cJSON *o = cfg->json ? cJSON_Parse(cfg->json) : NULL;
    const cJSON *names = o ? cJSON_GetObjectItemCaseSensitive(o, "class_names") : NULL;
    const cJSON *v = cJSON_IsArray(names) ? cJSON_GetArrayItem(names, k) : NULL;
    int rc = cJSON_IsString(v) ? 0 : -1;
    if (!rc) snprintf(buf, n, "%s", v->valuestring);
    cJSON_Delete(o);
    return rc;
}

int gd_class_name_equal(const char *a, const char *b) {
    for (;; a++, b++) {
        char x = *a, y = *b;
        if (x == '_' || x == '-' || x == '/') x = ' ';
        if (y == '_' || y == '-' || y == '/') y = ' ';
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
        if (x != y) return 0;
        if (!x) return 1;
    }
}

int gd_config_class_id(const gd_config *cfg, const char *name) {
    char **names;
    int n = gd_config_class_names(cfg, &names), id = -1;
    for (int k = 0; k < n && k < cfg->num_classes && id < 0; k++)
        if (gd_class_name_equal(names[k], name)) id = k;
    free(names);
    return id;
}
