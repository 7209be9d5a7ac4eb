/* guided-diffusion's command-line flags (MODEL_FLAGS, CLASSIFIER_FLAGS, DIFFUSION_FLAGS as its
 * README gives them) as a config (docs/config.md): scripts/convert_checkpoint.py's
 * config_from_flags, key for key and value type for value type. Flags not given keep the
 * defaults docs/config.md states (guided-diffusion's script_util defaults). */
#include "nn/config_src.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* flags that only matter for training or sampling scripts: dropped */
static const char *const DROP[] = {"use_checkpoint", "timestep_respacing", "use_kl", "predict_xstart", "rescale_timesteps",
                                   "rescale_learned_sigmas", "classifier_use_fp16", "batch_size", "num_samples", "model_path",
                                   "classifier_path", "classifier_scale", "use_ddim", "clip_denoised", "base_samples", "lr",
                                   "weight_decay", "microbatch", "log_interval", "save_interval", "iterations", "anneal_lr",
                                   "noised", "schedule_sampler", "resume_checkpoint", "use_entropy_scale", NULL};
static const char *const INTS[] = {"image_size", "num_channels", "num_res_blocks", "num_heads", "num_heads_upsample",
                                   "num_head_channels", "diffusion_steps", "large_size", "small_size", "classifier_width",
                                   "classifier_depth", "in_channels", NULL};
static const char *const BOOLS[] = {"class_cond", "use_scale_shift_norm", "resblock_updown", "use_fp16", "use_new_attention_order",
                                    "learn_sigma", "sigma_small", "classifier_use_scale_shift_norm", "classifier_resblock_updown",
                                    NULL};

static int in_set(const char *const *set, const char *k) {
    for (; *set; set++)
        if (!strcmp(*set, k)) return 1;
    return 0;
}

/* One flag's value as config_from_flags types it. */
static pj *typed(const char *k, const char *v, char *err, size_t errlen) {
    char e2[300];
    if (in_set(INTS, k)) {
        long long i;
        if (!py_parse_int(v, &i)) return pj_int(i);
        snprintf(err, errlen, "--flags: --%s: invalid literal for int() with base 10: '%s'", k, v);
        return NULL;
    }
    if (in_set(BOOLS, k)) {
        int b;
        pj *s = pj_str(v);
        int rc = s ? pj_to_bool(s, &b, e2, sizeof e2) : -1;
        pj_free(s);
        if (!rc) return pj_bool(b);
        snprintf(err, errlen, "%s", s ? e2 : "out of memory"); /* convert_checkpoint.py's words */
        return NULL;
    }
    if (!strcmp(k, "dropout")) {
        double d;
        if (!py_parse_float(v, &d)) return pj_float(d);
        snprintf(err, errlen, "--flags: --dropout: could not convert string to float: '%s'", v);
        return NULL;
    }
    return pj_str(v);
}

/* "--name value" pairs into an ordered dict of strings (a repeated flag: its last value). */
static pj *flag_pairs(const char *flags, char *err, size_t errlen) {
    pj *vals = pj_dict();
    char *words = strdup(flags ? flags : "");
    if (!vals || !words) goto oom;
    char *save = NULL, *w = strtok_r(words, " \t\n\r\f\v", &save);
    while (w) {
        char *v = strtok_r(NULL, " \t\n\r\f\v", &save);
        if (strncmp(w, "--", 2) || !v) {
            snprintf(err, errlen, "--flags: expected '--name value' pairs, got '%s'", w);
            goto fail;
        }
        for (char *c = w + 2; *c; c++)
            if (*c == '-') *c = '_';
        if (pj_set(vals, w + 2, pj_str(v))) goto oom;
        w = strtok_r(NULL, " \t\n\r\f\v", &save);
    }
    free(words);
    return vals;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(words);
    pj_free(vals);
    return NULL;
}

pj *cfg_from_flags(const char *flags, int classifier, char *err, size_t errlen) {
    pj *vals = flag_pairs(flags, err, errlen), *cfg = pj_dict();
    if (!vals || !cfg) goto fail;
    for (int i = 0; i < vals->n; i++) {
        const char *k = vals->k[i];
        if (in_set(DROP, k)) continue;
        int keep = classifier ? !strncmp(k, "classifier_", 11) || !strcmp(k, "image_size") || !strcmp(k, "in_channels")
                              : strncmp(k, "classifier_", 11) != 0;
        pj *v = typed(k, vals->v[i]->s, err, errlen);
        if (!v || (keep && pj_set(cfg, k, v))) goto fail;
        if (!keep) pj_free(v);
    }
    if (classifier) {
        if (pj_set(cfg, "model", pj_str("classifier"))) goto fail;
    } else {
        pj *large = pj_pop(cfg, "large_size");
        if (large) { /* super_res_sample.py's flags */
            if (pj_set(cfg, "model", pj_str("superres")) || pj_set(cfg, "image_size", large)) goto fail;
            if (pj_setdefault(cfg, "small_size", pj_int(large->i / 4 - (large->i % 4 < 0)))) goto fail;
        } else if (pj_set(cfg, "model", pj_str("unet"))) {
            goto fail;
        }
        if (pj_setdefault(cfg, "diffusion_steps", pj_int(1000)) || pj_setdefault(cfg, "noise_schedule", pj_str("linear"))) goto fail;
    }
    pj_free(vals);
    return cfg;
fail:
    if (err && !err[0]) snprintf(err, errlen, "out of memory");
    pj_free(vals);
    pj_free(cfg);
    return NULL;
}
