/* Model configs: JSON objects whose keys mirror guided-diffusion's flags (docs/config.md). */
#include "gd_model.h"
#include "gd_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        gd_errf(err, errlen, __VA_ARGS__);                                                         \
        goto fail;                                                                                 \
    } while (0)

/* Bounds on what a config may size, far above any released model (widths 128-256, depth 2-3):
 * every count a builder derives from them stays within int, and 8 levels of MAX_BLOCKS blocks
 * fill exactly the 128 skip connections a U-Net builder keeps (nn/adm.h) while using about half
 * of a network's 20000 graph nodes (net.c), so no accepted config fails later in the builder. */
#define MAX_CHANNELS 16384
#define MAX_BLOCKS 15
#define MAX_IMAGE 4096

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

/* An integer key (a JSON number or a numeric string) in [lo, hi]. Finiteness, integrality and the
 * range are checked on the double, before it is converted: a config holding 1e20 is refused,
 * never cast. */
static int get_int(const cJSON *o, const char *key, int def, int lo, int hi, int *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return 0; }
    double d = NAN;
    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
    } else if (cJSON_IsString(v)) {
        char *end;
        errno = 0;
        d = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end || errno) d = NAN;
    }
    if (!isfinite(d) || d != floor(d)) {
        if (cJSON_IsNumber(v)) gd_errf(err, errlen, "config: \"%s\" must be an integer, not %.15g", key, d);
        else gd_errf(err, errlen, "config: \"%s\" must be an integer", key);
        return -1;
    }
    if (d < lo || d > hi) {
        gd_errf(err, errlen, "config: \"%s\" %.15g out of range [%d, %d]", key, d, lo, hi);
        return -1;
    }
    *out = (int)d;
    return 0;
}

/* A comma list ("1,2,3") or a JSON array of numbers; returns the count, -1 when it is not such a
 * list, -2 when it has more than max entries. Entries may be anything strtod reads (inf, nan):
 * the callers check them. */
static int get_list(const cJSON *o, const char *key, double *vals, int max) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    int n = 0;
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsNumber(e)) return -1;
            if (n == max) return -2;
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
        if (end == s) return -1;
        if (n == max) return -2;
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

/* The keys a config may hold (docs/config.md): the network's, guided-diffusion's diffusion flags
 * (the networks ignore them; the sampler reads the schedule) and the class names. Anything else is
 * refused by name, since a key the parser skips (a misspelling, a flipped byte) silently gives
 * another network. */
static const char *const COMMON_KEYS[] = {"model", "image_size", "in_channels", "num_classes", "class_names",
                                          "diffusion_steps", "noise_schedule", "sigma_small", "learn_sigma",
                                          "timestep_respacing", "use_kl", "predict_xstart", "rescale_timesteps",
                                          "rescale_learned_sigmas", NULL};
static const char *const UNET_KEYS[] = {"num_channels", "num_res_blocks", "num_heads", "num_head_channels",
                                        "num_heads_upsample", "attention_resolutions", "channel_mult", "dropout",
                                        "class_cond", "null_class", "use_checkpoint", "use_scale_shift_norm",
                                        "resblock_updown", "use_fp16", "use_new_attention_order", "small_size", NULL};
static const char *const CLASSIFIER_KEYS[] = {"classifier_width", "classifier_depth", "classifier_attention_resolutions",
                                              "classifier_channel_mult", "classifier_num_head_channels",
                                              "classifier_use_scale_shift_norm", "classifier_resblock_updown",
                                              "classifier_pool", "classifier_use_fp16", NULL};

static bool in_set(const char *const *set, const char *k) {
    for (; *set; set++)
        if (!strcmp(*set, k)) return true;
    return false;
}

/* A user's string for a message: control bytes and quotes shown as '?', at most 60 bytes. */
static const char *shown(const char *s, char *buf, size_t n) {
    size_t k = 0;
    for (; s[k] && k + 4 < n && k < 60; k++) buf[k] = (unsigned char)s[k] < 0x20 || s[k] == 0x7f || s[k] == '"' ? '?' : s[k];
    snprintf(buf + k, n - k, "%s", s[k] ? "..." : "");
    return buf;
}

static int check_keys(const cJSON *o, bool cls, const char *kind, char *err, size_t errlen) {
    char b[80];
    for (const cJSON *e = o->child; e; e = e->next) {
        const char *k = e->string ? e->string : "";
        /* cJSON reads the first of two equal keys, Python's json (convert_checkpoint.py) the last */
        for (const cJSON *f = o->child; f != e; f = f->next)
            if (f->string && !strcmp(f->string, k)) {
                gd_errf(err, errlen, "config: key \"%s\" appears twice", shown(k, b, sizeof b));
                return -1;
            }
        if (in_set(COMMON_KEYS, k) || in_set(cls ? CLASSIFIER_KEYS : UNET_KEYS, k)) continue;
        if (in_set(cls ? UNET_KEYS : CLASSIFIER_KEYS, k))
            gd_errf(err, errlen, "config: \"%s\" is a %s key, and this config is a %s", k, cls ? "U-Net" : "classifier", kind);
        else
            gd_errf(err, errlen, "config: unknown key \"%s\" (docs/config.md lists the keys)", shown(k, b, sizeof b));
        return -1;
    }
    return 0;
}

#define INT(key, def, lo, hi, dst)                                                                 \
    do {                                                                                           \
        if (get_int(o, key, def, lo, hi, dst, err, errlen)) return -1;                             \
    } while (0)
#define BOOL(key, def, dst) if (get_bool(o, key, def, dst)) FAIL("config: \"%s\" must be a boolean", key)
#define ANY_LO (-1000000) /* a key the network does not use: any integer in [ANY_LO, ANY_HI] */
#define ANY_HI 1000000

/* num_head_channels: -1 (heads by count) or a positive width. */
static int head_channels(const cJSON *o, const char *key, int def, int *out, char *err, size_t errlen) {
    INT(key, def, -1, MAX_CHANNELS, out);
    if (*out == 0) FAIL("config: \"%s\" must be -1 (use num_heads) or positive", key);
    return 0;
fail:
    return -1;
}

static int read_unet(const cJSON *o, gd_config *cfg, bool *up_given, char *err, size_t errlen) {
    INT("num_channels", 128, 1, MAX_CHANNELS, &cfg->model_channels);
    INT("num_res_blocks", 2, 0, MAX_BLOCKS, &cfg->num_res_blocks);
    if (head_channels(o, "num_head_channels", -1, &cfg->num_head_channels, err, errlen)) return -1;
    bool by_count = cfg->num_head_channels == -1; /* else heads = channels / num_head_channels */
    if (by_count) INT("num_heads", 4, 1, MAX_CHANNELS, &cfg->num_heads);
    else INT("num_heads", 4, ANY_LO, ANY_HI, &cfg->num_heads);
    INT("num_heads_upsample", -1, by_count ? -1 : ANY_LO, by_count ? MAX_CHANNELS : ANY_HI, &cfg->num_heads_upsample);
    if (by_count && cfg->num_heads_upsample == 0) FAIL("config: \"num_heads_upsample\" must be -1 (num_heads) or positive");
    *up_given = cfg->num_heads_upsample != -1;
    if (cfg->num_heads_upsample == -1) cfg->num_heads_upsample = cfg->num_heads;
    BOOL("use_scale_shift_norm", true, &cfg->use_scale_shift_norm);
    BOOL("resblock_updown", false, &cfg->resblock_updown);
    BOOL("use_new_attention_order", false, &cfg->use_new_attention_order);
    BOOL("learn_sigma", false, &cfg->learn_sigma);
    BOOL("class_cond", false, &cfg->class_cond);
    BOOL("null_class", false, &cfg->null_class);
    if (cfg->kind == GD_NET_SUPERRES) {
        INT("small_size", cfg->image_size / 4, 1, MAX_IMAGE, &cfg->small_size);
    } else {
        INT("small_size", cfg->image_size / 4, ANY_LO, ANY_HI, &cfg->small_size);
    }
    return 0;
fail:
    return -1;
}

static int read_classifier(const cJSON *o, gd_config *cfg, char *err, size_t errlen) {
    INT("classifier_width", 128, 1, MAX_CHANNELS, &cfg->model_channels);
    INT("classifier_depth", 2, 0, MAX_BLOCKS, &cfg->num_res_blocks);
    if (head_channels(o, "classifier_num_head_channels", 64, &cfg->num_head_channels, err, errlen)) return -1;
    BOOL("classifier_use_scale_shift_norm", true, &cfg->use_scale_shift_norm);
    BOOL("classifier_resblock_updown", true, &cfg->resblock_updown);
    cfg->num_heads = 1;
    cfg->num_heads_upsample = 1;
    const cJSON *pool = cJSON_GetObjectItemCaseSensitive(o, "classifier_pool");
    const char *p = cJSON_IsString(pool) ? pool->valuestring : pool ? "" : "attention";
    char b[80];
    if (!strcmp(p, "attention")) cfg->pool_attention = true;
    else if (strcmp(p, "adaptive")) FAIL("config: classifier_pool \"%s\" not supported (attention, adaptive)", shown(p, b, sizeof b));
    if (cfg->pool_attention && cfg->num_head_channels < 1)
        FAIL("config: classifier_pool attention needs classifier_num_head_channels > 0");
    return 0;
fail:
    return -1;
}

/* image_size, in_channels, classes and the diffusion keys every kind may hold. */
static int read_common(const cJSON *o, gd_config *cfg, char *err, size_t errlen) {
    INT("image_size", 64, 1, MAX_IMAGE, &cfg->image_size);
    INT("in_channels", 3, 1, 64, &cfg->in_channels);
    INT("num_classes", 1000, 1, 1000000, &cfg->num_classes);
    /* the samplers count one image's values (and twice that, with a learned variance) in int */
    if ((long long)cfg->in_channels * cfg->image_size * cfg->image_size > 1LL << 28)
        FAIL("config: image_size %d with in_channels %d is too large (%lld values per image; at most 2^28)", cfg->image_size,
             cfg->in_channels, (long long)cfg->in_channels * cfg->image_size * cfg->image_size);
    INT("diffusion_steps", 1000, 2, 100000, &cfg->diffusion_steps);
    BOOL("sigma_small", false, &cfg->sigma_small);
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(o, "noise_schedule");
    if (ns && (!cJSON_IsString(ns) || (strcmp(ns->valuestring, "linear") && strcmp(ns->valuestring, "cosine"))))
        FAIL("config: \"noise_schedule\" must be \"linear\" or \"cosine\"");
    snprintf(cfg->noise_schedule, sizeof cfg->noise_schedule, "%s", ns ? ns->valuestring : "linear");
    cfg->has_schedule = ns || cJSON_GetObjectItemCaseSensitive(o, "diffusion_steps");
    return 0;
fail:
    return -1;
}
#undef INT
#undef BOOL
#undef ANY_LO
#undef ANY_HI

/* channel_mult and attention_resolutions: every level's width and every attention resolution is
 * checked as a double before it becomes an int. */
static int read_levels(const cJSON *o, gd_config *cfg, char *err, size_t errlen) {
    const bool cls = cfg->kind == GD_NET_CLASSIFIER;
    const char *k_mult = cls ? "classifier_channel_mult" : "channel_mult";
    const char *k_attn = cls ? "classifier_attention_resolutions" : "attention_resolutions";
    const char *k_width = cls ? "classifier_width" : "num_channels";
    cfg->n_levels = get_list(o, k_mult, cfg->channel_mult, GD_MAX_LEVELS);
    if (cfg->n_levels == -2) FAIL("config: \"%s\" has more than %d levels", k_mult, GD_MAX_LEVELS);
    if (cfg->n_levels < 0) FAIL("config: \"%s\" must be a comma list of numbers", k_mult);
    if (cfg->n_levels == 0) {
        cfg->n_levels = default_mult(cfg->image_size, cfg->kind == GD_NET_SUPERRES, cfg->channel_mult);
        if (!cfg->n_levels) FAIL("config: no default %s for image_size %d; set it", k_mult, cfg->image_size);
    }
    for (int i = 0; i < cfg->n_levels; i++) {
        double m = cfg->channel_mult[i], chd = m * cfg->model_channels;
        if (!(chd >= 32 && chd <= MAX_CHANNELS))
            FAIL("config: level %d has %.15g channels (%s %.15g x %s %d); GroupNorm(32) needs a multiple of 32, at most %d", i,
                 chd, k_mult, m, k_width, cfg->model_channels, MAX_CHANNELS);
        int ch = (int)chd; /* guided-diffusion's int(mult * model_channels) */
        if (ch % 32) FAIL("config: level %d has %d channels; GroupNorm(32) needs a multiple of 32", i, ch);
    }
    if (cfg->image_size % (1 << (cfg->n_levels - 1)))
        FAIL("config: image_size %d does not halve %d times", cfg->image_size, cfg->n_levels - 1);
    double res[GD_MAX_LEVELS];
    int nres = get_list(o, k_attn, res, GD_MAX_LEVELS);
    if (!cJSON_GetObjectItemCaseSensitive(o, k_attn)) {
        nres = cls ? 3 : 2;
        memcpy(res, cls ? (const double[]){32, 16, 8} : (const double[]){16, 8}, sizeof(double) * (size_t)nres);
    }
    if (nres == -2) FAIL("config: \"%s\" has more than %d resolutions", k_attn, GD_MAX_LEVELS);
    if (nres < 0) FAIL("config: \"%s\" must be a comma list of resolutions", k_attn);
    for (int i = 0; i < nres; i++) {
        double r = res[i];
        if (!(r >= 1 && r <= cfg->image_size && r == floor(r)) || cfg->image_size % (int)r)
            FAIL("config: \"%s\" entry %.15g does not divide image_size %d", k_attn, r, cfg->image_size);
        cfg->attention_ds[cfg->n_attention++] = cfg->image_size / (int)r;
    }
    return 0;
fail:
    return -1;
}

static int level_channels(const gd_config *cfg, int level) { return (int)(cfg->channel_mult[level] * cfg->model_channels); }

static bool has_attention(const gd_config *cfg, int ds) {
    for (int i = 0; i < cfg->n_attention; i++)
        if (cfg->attention_ds[i] == ds) return true;
    return false;
}

/* Every attention block's heads must split its channels (guided-diffusion asserts it when it builds
 * the block); checked here so the message names the config's keys. */
static int check_heads(const gd_config *cfg, bool up_given, char *err, size_t errlen) {
    const bool cls = cfg->kind == GD_NET_CLASSIFIER, by_width = cfg->num_head_channels != -1;
    const char *k_hc = cls ? "classifier_num_head_channels" : "num_head_channels";
    /* only ResBlocks change the width, so without any the middle block keeps the first level's */
    const int mid_ch = level_channels(cfg, cfg->num_res_blocks ? cfg->n_levels - 1 : 0);
    for (int pass = 0; pass < 3; pass++) { /* encoder, middle block, decoder */
        if (pass == 2 && cls) break;
        for (int level = 0; level < cfg->n_levels; level++) {
            int ds = 1 << level, ch = pass == 1 ? mid_ch : level_channels(cfg, level);
            if (pass == 1 && level != cfg->n_levels - 1) continue;
            if (pass == 0 && (!cfg->num_res_blocks || !has_attention(cfg, ds))) continue;
            if (pass == 2 && !has_attention(cfg, ds)) continue;
            const char *key = by_width ? k_hc : pass == 2 && up_given ? "num_heads_upsample" : "num_heads";
            int v = by_width ? cfg->num_head_channels : pass == 2 ? cfg->num_heads_upsample : cfg->num_heads;
            if (ch % v)
                FAIL("config: %s %d does not divide the %d channels at resolution %d%s", key, v, ch, cfg->image_size / ds,
                     pass == 1 ? " (the middle block)" : "");
        }
    }
    if (cls && cfg->pool_attention && mid_ch % cfg->num_head_channels)
        FAIL("config: %s %d does not divide the %d channels of the attention pool", k_hc, cfg->num_head_channels, mid_ch);
    return 0;
fail:
    return -1;
}

int gd_config_parse(const char *json, gd_config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) FAIL("config is not a JSON object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    const char *kind = cJSON_IsString(model) ? model->valuestring : NULL;
    char b[80];
    if (!kind) FAIL("config: missing \"model\" (unet, superres or classifier)");
    if (!strcmp(kind, "unet")) cfg->kind = GD_NET_UNET;
    else if (!strcmp(kind, "superres")) cfg->kind = GD_NET_SUPERRES;
    else if (!strcmp(kind, "classifier")) cfg->kind = GD_NET_CLASSIFIER;
    else FAIL("config: unknown model \"%s\" (want unet, superres or classifier)", shown(kind, b, sizeof b));
    const bool cls = cfg->kind == GD_NET_CLASSIFIER;
    bool up_given = false;
    if (check_keys(o, cls, kind, err, errlen) || read_common(o, cfg, err, errlen) ||
        (cls ? read_classifier(o, cfg, err, errlen) : read_unet(o, cfg, &up_given, err, errlen)) ||
        read_levels(o, cfg, err, errlen) || check_heads(cfg, up_given, err, errlen))
        goto fail;
    cfg->json = cJSON_PrintUnformatted(o);
    if (!cfg->json) FAIL("out of memory");
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
