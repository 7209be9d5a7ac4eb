/* Checkpoint conversion (include/gd_model.h, gd_convert_checkpoint): a guided-diffusion / ED-DPM
 * state dict (.pt, or a safetensors file) to a safetensors file with its config embedded, the
 * bytes scripts/convert_checkpoint.py writes: tensors in state-dict order, contiguous, converted
 * as torch's .to(dtype) converts (round to nearest even; bf16 NaN 0x7fc0), the header
 * json.dumps'ed with separators (",", ":") and padded with spaces so the data starts 8-aligned. */
#include "gd_util.h"
#include "nn/config_src.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONVERTER "scripts/convert_checkpoint.py" /* the metadata both converters write, for equal bytes */

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static float load_f32(const gd_st_tensor *t, int64_t i) {
    const char *p = (const char *)t->data;
    uint16_t h;
    float f;
    double d;
    switch (t->dtype) {
    case GD_ST_F32: memcpy(&f, p + 4 * i, 4); return f;
    case GD_ST_F16: memcpy(&h, p + 2 * i, 2); return gd_f16_to_f32(h);
    case GD_ST_BF16: memcpy(&h, p + 2 * i, 2); return gd_bf16_to_f32(h);
    case GD_ST_F64: memcpy(&d, p + 8 * i, 8); return (float)d; /* torch: double -> float first, for every target */
    default: return NAN;
    }
}

static uint16_t torch_bf16(float f) {
    if (isnan(f)) return 0x7fc0;
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* One tensor's bytes in the output dtype, written in chunks. */
static int write_tensor(FILE *f, const gd_st_tensor *t, gd_st_dtype out) {
    if (t->dtype == out) return fwrite(t->data, 1, t->nbytes, f) == t->nbytes ? 0 : -1; /* .to(same dtype): the bits */
    enum { CHUNK = 1 << 16 };
    static unsigned char buf[CHUNK * 4];
    for (int64_t i = 0; i < t->numel;) {
        int64_t n = t->numel - i < CHUNK ? t->numel - i : CHUNK;
        for (int64_t k = 0; k < n; k++) {
            float v = load_f32(t, i + k);
            if (out == GD_ST_F32) {
                memcpy(buf + 4 * k, &v, 4);
            } else {
                uint16_t h = out == GD_ST_F16 ? gd_f32_to_f16(v) : torch_bf16(v);
                memcpy(buf + 2 * k, &h, 2);
            }
        }
        size_t bytes = (size_t)n * gd_st_dtype_size(out);
        if (fwrite(buf, 1, bytes, f) != bytes) return -1;
        i += n;
    }
    return 0;
}

/* {"__metadata__": meta, name: {"dtype", "shape", "data_offsets"}, ...}, compact and padded. */
static char *header(const gd_st_tensor *sd, int n, gd_st_dtype dt, pj *meta, int64_t *data_bytes) {
    pj *h = pj_dict();
    int ok = h && !pj_set(h, "__metadata__", meta);
    if (!h) pj_free(meta);
    int64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        pj *e = pj_dict(), *shape = pj_list(), *offs = pj_list(); /* pj_set / pj_append own what they are given */
        int64_t nb = sd[i].numel * (int64_t)gd_st_dtype_size(dt);
        ok = e && shape && offs && !pj_set(e, "dtype", pj_str(gd_st_dtype_name(dt)));
        for (int d = 0; ok && d < sd[i].ndim; d++) ok = !pj_append(shape, pj_int(sd[i].shape[d]));
        ok = ok && !pj_append(offs, pj_int(off)) && !pj_append(offs, pj_int(off + nb));
        if (ok) {
            int a = pj_set(e, "shape", shape), b = pj_set(e, "data_offsets", offs);
            shape = offs = NULL;
            ok = !a && !b;
        }
        pj_free(shape), pj_free(offs);
        if (ok) ok = !pj_set(h, sd[i].name, e);
        else pj_free(e);
        off += nb;
    }
    char *js = ok ? pj_dumps(h, 1) : NULL;
    pj_free(h);
    if (!js) return NULL;
    size_t len = strlen(js), pad = (8 - (8 + len) % 8) % 8;
    char *p = realloc(js, len + pad + 1);
    if (!p) {
        free(js);
        return NULL;
    }
    memset(p + len, ' ', pad);
    p[len + pad] = 0;
    *data_bytes = off;
    return p;
}

/* The state dict's checks (load_state_dict): floating-point tensors, one name each. */
static int check_state_dict(const char *in, const gd_st_tensor *sd, int n, char *err, size_t errlen) {
    if (!n) return gd_errf(err, errlen, "%s: holds no tensors, not a state dict", in), -1;
    for (int i = 0; i < n; i++) {
        gd_st_dtype d = sd[i].dtype;
        if (d != GD_ST_F32 && d != GD_ST_F16 && d != GD_ST_BF16 && d != GD_ST_F64) {
            const char *tn = d == GD_ST_I64 ? "torch.int64" : d == GD_ST_I32 ? "torch.int32" : d == GD_ST_U8 ? "torch.uint8" : "?";
            return gd_errf(err, errlen, "%s: tensor '%s' has dtype %s; weights are floating point", in, sd[i].name, tn), -1;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(sd[k].name, sd[i].name)) return gd_errf(err, errlen, "%s: tensor '%s' appears twice", in, sd[i].name), -1;
    }
    return 0;
}

/* The config, checked against the tensors, with the class names added; NULL with err. */
static pj *config_for(const char *in, const gd_st_file *f, const gd_st_tensor *sd, int n, const gd_convert_opts *o,
                      gd_convert_info *info, char *err, size_t errlen) {
    gd_load_opts lo = {o->config_path, o->flags, o->configs_dir};
    char e2[1200];
    pj *cfg = nn_choose_config(in, f, sd, n, &lo, info->source, sizeof info->source, info->notes, sizeof info->notes, err, errlen);
    if (!cfg) return NULL;
    cfg_tensor *want;
    int nw, rc = cfg_expected(cfg, &want, &nw, e2, sizeof e2);
    if (rc) {
        if (rc == -1) gd_errf(err, errlen, "%s", e2);
        else gd_errf(err, errlen, "config from %s is not valid: %s", info->source, e2);
        pj_free(cfg);
        return NULL;
    }
    rc = cfg_mismatch(sd, n, want, nw, e2, sizeof e2);
    free(want);
    if (rc) {
        gd_errf(err, errlen, "%s does not fit the config from %s: %s", in, info->source, e2);
        pj_free(cfg);
        return NULL;
    }
    int k = cfg_add_class_names(cfg, o->class_names, o->no_class_names, o->configs_dir, e2, sizeof e2);
    if (k < 0) {
        gd_errf(err, errlen, "%s", e2);
        pj_free(cfg);
        return NULL;
    }
    info->class_names = k ? k : pj_get(cfg, "class_names") && pj_get(cfg, "class_names")->t == PJ_LIST ? pj_get(cfg, "class_names")->n : 0;
    return cfg;
}

static int write_file(const char *out, const char *hj, const gd_st_tensor *sd, int n, gd_st_dtype dt, char *err, size_t errlen) {
    char *tmp;
    FILE *f = gd_atomic_open(out, &tmp, err, errlen);
    if (!f) return -1;
    uint64_t len = strlen(hj);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hj, 1, len, f) == len;
    for (int i = 0; ok && i < n; i++) ok = !write_tensor(f, &sd[i], dt);
    if (!ok) gd_errf(err, errlen, "%s: write error", out);
    return gd_atomic_commit(f, tmp, out, ok, err, errlen);
}

int gd_convert_checkpoint(const char *in, const char *out, const gd_convert_opts *o, gd_convert_info *info, char *err,
                          size_t errlen) {
    gd_convert_opts defaults = {.dtype = GD_ST_F32};
    gd_convert_info scratch;
    if (!o) o = &defaults;
    if (!info) info = &scratch;
    memset(info, 0, sizeof *info);
    if (o->dtype != GD_ST_F32 && o->dtype != GD_ST_F16 && o->dtype != GD_ST_BF16)
        return gd_errf(err, errlen, "dtype must be F32, F16 or BF16"), -1;
    struct stat st;
    if (stat(in, &st) || !S_ISREG(st.st_mode)) return gd_errf(err, errlen, "%s: no such file", in), -1;
    int is_pt, n = 0, rc = -1;
    gd_st_file *f = nn_open_weights(in, &is_pt, err, errlen);
    gd_st_tensor *sd = f ? nn_state_dict(f, is_pt, &n) : NULL;
    pj *cfg = NULL, *meta = NULL;
    char *cj = NULL, *hj = NULL;
    if (!f || !sd || check_state_dict(in, sd, n, err, errlen) || !(cfg = config_for(in, f, sd, n, o, info, err, errlen))) goto done;
    int64_t data = 0;
    cj = pj_dumps(cfg, 0);
    { /* never write a file the loader refuses (an unknown key from --config, a bad value) */
        gd_config chk;
        char e3[1024];
        if (cj && gd_config_parse(cj, &chk, e3, sizeof e3)) {
            gd_errf(err, errlen, "the config from %s would not load: %s", info->source, e3);
            goto done;
        }
        if (cj) gd_config_free(&chk);
    }
    meta = pj_dict();
    int ok = cj && meta && !pj_set(meta, "config", pj_str(cj)) && !pj_set(meta, "source", pj_str(base_name(in))) &&
             !pj_set(meta, "converter", pj_str(CONVERTER));
    if (ok) hj = header(sd, n, o->dtype, meta, &data), meta = NULL; /* header() owns it */
    char *brief = cj ? nn_brief_json(cj) : NULL, *rules = strdup(info->notes);
    if (brief && rules) snprintf(info->notes, sizeof info->notes, "%s%s", brief, rules);
    free(brief), free(rules);
    if (!hj) {
        gd_errf(err, errlen, "out of memory");
        goto done;
    }
    if (write_file(out, hj, sd, n, o->dtype, err, errlen)) goto done;
    const pj *model = pj_get(cfg, "model"), *S = pj_get(cfg, "image_size");
    snprintf(info->model, sizeof info->model, "%s", model && model->t == PJ_STR ? model->s : "?");
    char e2[64];
    info->image_size = 64;
    if (S) pj_to_int(S, &info->image_size, e2, sizeof e2);
    info->tensors = n;
    for (int i = 0; i < n; i++) info->params += sd[i].numel;
    info->bytes = 8 + (long long)strlen(hj) + data;
    rc = 0;
done:
    pj_free(meta);
    free(hj);
    free(cj);
    pj_free(cfg);
    free(sd);
    gd_st_close(f);
    return rc;
}
