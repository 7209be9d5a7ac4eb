/* ddpm-train's run config (include/gd_train.h): every key is checked for its type and range here,
 * before the tool creates anything, and a key this parser does not know is an error rather than a
 * setting silently ignored. Integers are checked to be integral and in range while still doubles,
 * because casting an out-of-range double is undefined and a fraction would be dropped unseen. */
#include "gd_train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gd_util.h"

#define DEFAULT_IMAGES "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
#define DEFAULT_LABELS "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
#define DEFAULT_TEST_IMAGES "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define DEFAULT_TEST_LABELS "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
/* longer paths would be cut when the tool appends "/checkpoint.safetensors" and the like */
#define MAX_PATH_CHARS 3900
/* integers above 2^53 do not survive JSON's doubles */
#define MAX_SEED 9007199254740992.0

/* One object's keys: only these, each at most once. prefix names the object in messages. */
static int check_keys(const cJSON *o, const char *prefix, const char *const *allowed, char *err, size_t errlen) {
    for (const cJSON *c = o->child; c; c = c->next) {
        int known = 0;
        for (int k = 0; allowed[k]; k++) known |= !strcmp(c->string, allowed[k]);
        if (!known) {
            gd_errf(err, errlen, "unknown key \"%s%s\"", prefix, c->string);
            return -1;
        }
        for (const cJSON *p = o->child; p != c; p = p->next)
            if (!strcmp(p->string, c->string)) {
                gd_errf(err, errlen, "key \"%s%s\" given twice", prefix, c->string);
                return -1;
            }
    }
    return 0;
}

static const cJSON *item(const cJSON *o, const char *key) { return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL; }

static int get_int(const cJSON *o, const char *prefix, const char *key, double lo, double hi, int64_t *out, char *err,
                   size_t errlen) {
    const cJSON *v = item(o, key);
    if (!v) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi) || d != floor(d)) {
        if (cJSON_IsNumber(v))
            gd_errf(err, errlen, "\"%s%s\" must be an integer from %.0f to %.0f (got %.15g)", prefix, key, lo, hi, d);
        else
            gd_errf(err, errlen, "\"%s%s\" must be an integer from %.0f to %.0f", prefix, key, lo, hi);
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

/* A finite number in [lo, hi] (hi itself excluded when hi_open). */
static int get_num(const cJSON *o, const char *prefix, const char *key, double lo, double hi, int hi_open, double *out,
                   char *err, size_t errlen) {
    const cJSON *v = item(o, key);
    if (!v) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && (hi_open ? d < hi : d <= hi))) {
        const char *range = hi_open ? "a number at least %g and below %g" : "a number from %g to %g";
        char what[96];
        snprintf(what, sizeof what, range, lo, hi);
        if (cJSON_IsNumber(v))
            gd_errf(err, errlen, "\"%s%s\" must be %s (got %.15g)", prefix, key, what, d);
        else
            gd_errf(err, errlen, "\"%s%s\" must be %s", prefix, key, what);
        return -1;
    }
    *out = d;
    return 0;
}

static int get_bool(const cJSON *o, const char *key, int *out, char *err, size_t errlen) {
    const cJSON *v = item(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) {
        gd_errf(err, errlen, "\"%s\" must be true or false", key);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A non-empty string, copied into *out (which keeps def, copied, when the key is absent). */
static int get_str(const cJSON *o, const char *prefix, const char *key, const char *def, char **out, char *err,
                   size_t errlen) {
    const cJSON *v = item(o, key);
    const char *s = v ? (cJSON_IsString(v) ? v->valuestring : NULL) : def;
    if (v && (!s || !*s || strlen(s) > MAX_PATH_CHARS)) {
        gd_errf(err, errlen, "\"%s%s\" must be a non-empty string (a path of at most %d bytes)", prefix, key,
                MAX_PATH_CHARS);
        return -1;
    }
    if (!s) return 0;
    *out = strdup(s);
    if (!*out) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int get_object(const cJSON *o, const char *key, const cJSON **out, char *err, size_t errlen) {
    const cJSON *v = item(o, key);
    if (v && !cJSON_IsObject(v)) {
        gd_errf(err, errlen, "\"%s\" must be an object", key);
        return -1;
    }
    *out = v;
    return 0;
}

/* "data": {"images", "labels"} (IDX files) or {"folder"}; "test_data" the IDX form only. */
static int parse_data(const cJSON *run, gd_train_config *c, char *err, size_t errlen) {
    static const char *const data_keys[] = {"images", "labels", "folder", NULL}, *const test_keys[] = {"images", "labels", NULL};
    const cJSON *d, *t;
    if (get_object(run, "data", &d, err, errlen) || get_object(run, "test_data", &t, err, errlen)) return -1;
    if (d && check_keys(d, "data.", data_keys, err, errlen)) return -1;
    if (t && check_keys(t, "test_data.", test_keys, err, errlen)) return -1;
    int idx = item(d, "images") || item(d, "labels");
    if (idx && item(d, "folder")) {
        gd_errf(err, errlen, "\"data\" takes either \"folder\" or \"images\" and \"labels\", not both");
        return -1;
    }
    /* one IDX file without the other would silently pair it with the default set's half */
    const char *half = !item(d, "images") != !item(d, "labels") ? "data" : !item(t, "images") != !item(t, "labels") ? "test_data" : NULL;
    if (half) {
        gd_errf(err, errlen, "\"%s.images\" and \"%s.labels\" go together", half, half);
        return -1;
    }
    if (item(d, "folder") ? get_str(d, "data.", "folder", NULL, &c->data_folder, err, errlen)
                          : (get_str(d, "data.", "images", DEFAULT_IMAGES, &c->data_images, err, errlen) ||
                             get_str(d, "data.", "labels", DEFAULT_LABELS, &c->data_labels, err, errlen)))
        return -1;
    if (get_str(t, "test_data.", "images", DEFAULT_TEST_IMAGES, &c->test_images, err, errlen) ||
        get_str(t, "test_data.", "labels", DEFAULT_TEST_LABELS, &c->test_labels, err, errlen))
        return -1;
    return 0;
}

/* "optim": AdamW, its schedule, clipping and EMA (include/gd_optim.h). */
static int parse_optim(const cJSON *run, gd_train_config *c, char *err, size_t errlen) {
    static const char *const keys[] = {"lr",     "beta1",      "beta2", "eps", "weight_decay", "warmup",
                                       "decay",  "final_frac", "clip",  "ema", NULL};
    const cJSON *o;
    if (get_object(run, "optim", &o, err, errlen)) return -1;
    if (o && check_keys(o, "optim.", keys, err, errlen)) return -1;
    gd_optim_config *q = &c->optim;
    *q = (gd_optim_config){.lr = 2e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0,
                           .warmup_steps = 500, .total_steps = c->steps, .decay_kind = 2, .final_frac = 0.1,
                           .clip_norm = 1.0, .ema_rate = c->diffusion ? 0.9999 : 0.0};
    const char *p = "optim.";
    if (get_num(o, p, "lr", 0, 1, 0, &q->lr, err, errlen) || get_num(o, p, "beta1", 0, 1, 1, &q->beta1, err, errlen) ||
        get_num(o, p, "beta2", 0, 1, 1, &q->beta2, err, errlen) || get_num(o, p, "eps", 1e-30, 1, 0, &q->eps, err, errlen) ||
        get_num(o, p, "weight_decay", 0, 100, 0, &q->weight_decay, err, errlen) ||
        get_int(o, p, "warmup", 0, (double)GD_TRAIN_MAX_STEPS, &q->warmup_steps, err, errlen) ||
        get_num(o, p, "final_frac", 0, 1, 0, &q->final_frac, err, errlen) ||
        get_num(o, p, "clip", 0, 1e6, 0, &q->clip_norm, err, errlen) || get_num(o, p, "ema", 0, 1, 1, &q->ema_rate, err, errlen))
        return -1;
    if (q->lr * q->weight_decay > 1) {
        gd_errf(err, errlen, "\"optim.lr\" times \"optim.weight_decay\" must be at most 1 (got %g)", q->lr * q->weight_decay);
        return -1;
    }
    const cJSON *decay = item(o, "decay");
    if (decay) {
        const char *s = cJSON_IsString(decay) ? decay->valuestring : "";
        q->decay_kind = !strcmp(s, "cosine") ? 2 : !strcmp(s, "linear") ? 1 : !strcmp(s, "constant") ? 0 : -1;
        if (q->decay_kind < 0) {
            gd_errf(err, errlen, "\"optim.decay\" must be \"cosine\", \"linear\" or \"constant\"");
            return -1;
        }
    }
    return 0;
}

/* The "model" object, through the model-config parser; its kind must be the run's. */
static int parse_model(const cJSON *run, gd_train_config *c, char *err, size_t errlen) {
    const cJSON *m = item(run, "model");
    if (!cJSON_IsObject(m)) {
        gd_errf(err, errlen, "\"model\" must be a model config object (docs/config.md)");
        return -1;
    }
    c->model_json = cJSON_PrintUnformatted(m);
    if (!c->model_json) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    char e2[400];
    if (gd_config_parse(c->model_json, &c->model, e2, sizeof e2)) {
        gd_errf(err, errlen, "\"model\": %s", e2);
        return -1;
    }
    c->model_ok = 1;
    gd_net_kind want = c->diffusion ? GD_NET_UNET : GD_NET_CLASSIFIER;
    if (c->model.kind != want) {
        gd_errf(err, errlen, "kind \"%s\" trains a \"model\": \"%s\" config", c->diffusion ? "diffusion" : "classifier",
                c->diffusion ? "unet" : "classifier");
        return -1;
    }
    return 0;
}

/* The top level: kind first (it decides which keys apply), then everything else. */
static int parse_run(const cJSON *run, gd_train_config *c, char *err, size_t errlen) {
    static const char *const keys[] = {"kind", "out", "model", "data", "test_data", "batch_size", "steps", "seed",
                                       "label_dropout", "ect_lambda", "noised", "hflip", "log_every", "checkpoint_every",
                                       "snapshot_every", "optim", NULL};
    if (check_keys(run, "", keys, err, errlen)) return -1;
    const cJSON *kind = item(run, "kind");
    if (kind && !(cJSON_IsString(kind) && (!strcmp(kind->valuestring, "diffusion") || !strcmp(kind->valuestring, "classifier")))) {
        gd_errf(err, errlen, "\"kind\" must be \"diffusion\" or \"classifier\"");
        return -1;
    }
    c->diffusion = !kind || !strcmp(kind->valuestring, "diffusion");
    static const char *const diffusion_only[] = {"label_dropout", NULL}, *const classifier_only[] = {"ect_lambda", "noised", "hflip", "test_data", NULL};
    for (const char *const *k = c->diffusion ? classifier_only : diffusion_only; *k; k++)
        if (item(run, *k)) {
            gd_errf(err, errlen, "\"%s\" is for %s runs, this is a %s run", *k, c->diffusion ? "classifier" : "diffusion",
                    c->diffusion ? "diffusion" : "classifier");
            return -1;
        }
    if (parse_model(run, c, err, errlen)) return -1;
    if (!item(run, "out")) {
        gd_errf(err, errlen, "\"out\" (the run's folder) is required");
        return -1;
    }
    int64_t batch = 64, seed = 0;
    c->steps = 10000, c->log_every = 50, c->checkpoint_every = 1000, c->snapshot_every = 0;
    c->noised = 1, c->hflip = 0;
    c->label_dropout = c->diffusion && c->model.null_class ? 0.1 : 0.0;
    c->ect_lambda = 0;
    if (get_str(run, "", "out", NULL, &c->out, err, errlen) ||
        get_int(run, "", "batch_size", 1, GD_TRAIN_MAX_BATCH, &batch, err, errlen) ||
        get_int(run, "", "steps", 1, (double)GD_TRAIN_MAX_STEPS, &c->steps, err, errlen) ||
        get_int(run, "", "seed", 0, MAX_SEED, &seed, err, errlen) ||
        get_num(run, "", "label_dropout", 0, 1, 0, &c->label_dropout, err, errlen) ||
        get_num(run, "", "ect_lambda", 0, 1000, 0, &c->ect_lambda, err, errlen) || get_bool(run, "noised", &c->noised, err, errlen) ||
        get_bool(run, "hflip", &c->hflip, err, errlen) ||
        get_int(run, "", "log_every", 1, (double)GD_TRAIN_MAX_STEPS, &c->log_every, err, errlen) ||
        get_int(run, "", "checkpoint_every", 1, (double)GD_TRAIN_MAX_STEPS, &c->checkpoint_every, err, errlen) ||
        get_int(run, "", "snapshot_every", 0, (double)GD_TRAIN_MAX_STEPS, &c->snapshot_every, err, errlen))
        return -1;
    c->batch_size = (int)batch, c->seed = (uint64_t)seed;
    if (c->label_dropout > 0 && !c->model.null_class) {
        gd_errf(err, errlen, "\"label_dropout\" needs a model with \"null_class\": true");
        return -1;
    }
    if (parse_data(run, c, err, errlen) || parse_optim(run, c, err, errlen)) return -1;
    return 0;
}

int gd_train_config_parse(const char *json, size_t len, gd_train_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!json || memchr(json, 0, len)) {
        gd_errf(err, errlen, "not a run config (a JSON object; this has a NUL byte)");
        return -1;
    }
    char *text = malloc(len + 1);
    if (!text) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(text, json, len);
    text[len] = 0;
    const char *end = NULL;
    cJSON *run = cJSON_ParseWithOpts(text, &end, 1);
    int rc = -1;
    if (!run)
        gd_errf(err, errlen, "not valid JSON (at byte %ld)", end && end >= text ? (long)(end - text) : 0L);
    else if (!cJSON_IsObject(run))
        gd_errf(err, errlen, "a run config is a JSON object");
    else
        rc = parse_run(run, c, err, errlen);
    cJSON_Delete(run);
    free(text);
    if (rc) gd_train_config_free(c);
    return rc;
}

void gd_train_config_free(gd_train_config *c) {
    if (!c) return;
    if (c->model_ok) gd_config_free(&c->model);
    cJSON_free(c->model_json);
    free(c->out);
    free(c->data_images);
    free(c->data_labels);
    free(c->data_folder);
    free(c->test_images);
    free(c->test_labels);
    memset(c, 0, sizeof *c);
}

/* ---- the log window a checkpoint carries ---- */

int gd_train_log_state_format(const gd_train_log_state *s, char *buf, size_t n) {
    if (s->n < 0 || !isfinite(s->loss) || !isfinite(s->mse) || !isfinite(s->vb)) return -1; /* JSON has no NaN */
    int k = snprintf(buf, n, "{\"n\": %lld, \"loss\": %.17g, \"mse\": %.17g, \"vb\": %.17g}", (long long)s->n, s->loss, s->mse,
                     s->vb);
    return k > 0 && (size_t)k < n ? 0 : -1;
}

int gd_train_log_state_parse(const char *json, int64_t step, gd_train_log_state *s, char *err, size_t errlen) {
    static const char *const keys[] = {"n", "loss", "mse", "vb", NULL};
    memset(s, 0, sizeof *s);
    cJSON *o = json ? cJSON_ParseWithOpts(json, NULL, 1) : NULL;
    int rc = -1;
    char e2[200] = "";
    if (!cJSON_IsObject(o) || check_keys(o, "", keys, e2, sizeof e2) || !item(o, "n") || !item(o, "loss") ||
        !item(o, "mse") || !item(o, "vb") || get_int(o, "", "n", 0, (double)step, &s->n, e2, sizeof e2) ||
        get_num(o, "", "loss", -1e300, 1e300, 0, &s->loss, e2, sizeof e2) ||
        get_num(o, "", "mse", -1e300, 1e300, 0, &s->mse, e2, sizeof e2) ||
        get_num(o, "", "vb", -1e300, 1e300, 0, &s->vb, e2, sizeof e2))
        gd_errf(err, errlen, "metadata \"train_log\" is malformed%s%s (want {\"n\": 0..step, \"loss\", \"mse\", \"vb\": numbers})",
                *e2 ? ": " : "", e2);
    else
        rc = 0;
    cJSON_Delete(o);
    if (rc) memset(s, 0, sizeof *s);
    return rc;
}
