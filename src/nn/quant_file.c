/* W8A8 weights in safetensors files: the layout is in nn/quant_file.h. Everything read is checked
 * (shapes, dtypes, finite positive scales, zero points in 0..255), so a damaged file gives one
 * line, never a crash or a silently wrong network. */
#include "nn/quant_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const suffix[4] = {"", ".weight_scale", ".input_scale", ".input_zero_point"};

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

int nn_quant_companion(const char *name) {
    for (int k = 1; k < 4; k++)
        if (ends_with(name, suffix[k])) return k;
    return 0;
}

/* base + ".weight" or base + suffix[kind] into buf */
static void name_of(char *buf, size_t n, const char *base, size_t blen, int kind) {
    snprintf(buf, n, "%.*s%s", (int)blen, base, kind ? suffix[kind] : ".weight");
}

int nn_quant_orphan(const gd_st_file *f, const char *name, int kind, char *err, size_t errlen) {
    char w[300];
    size_t blen = strlen(name) - strlen(suffix[kind]);
    name_of(w, sizeof w, name, blen, 0);
    const gd_st_tensor *t = gd_st_find(f, w);
    if (t && t->dtype == GD_ST_I8) return 0;
    snprintf(err, errlen, "tensor '%s' is quantization data, but '%s' is %s", name, w, t ? "not an I8 weight" : "missing");
    return -1;
}

static const gd_st_tensor *companion(const gd_st_file *f, const char *path, const char *wname, int kind, gd_st_dtype dt,
                                     int64_t numel, char *err, size_t errlen) {
    char c[300];
    name_of(c, sizeof c, wname, strlen(wname) - strlen(".weight"), kind);
    const gd_st_tensor *t = gd_st_find(f, c);
    if (!t) snprintf(err, errlen, "%s: quantized weight '%s' has no '%s'", path, wname, c);
    else if (t->dtype != dt || t->numel != numel || t->ndim != 1)
        snprintf(err, errlen, "%s: '%s' must be %s [%lld]", path, c, gd_st_dtype_name(dt), (long long)numel);
    else return t;
    return NULL;
}

gd_quant *nn_quant_read(const gd_st_file *f, const char *path, const gd_st_tensor *t, char *err, size_t errlen) {
    if (!ends_with(t->name, ".weight") || t->ndim < 3 || t->ndim > 4 || t->numel < 1) {
        snprintf(err, errlen, "%s: I8 tensor '%s' must be a conv weight [O, C, KH, KW] or [O, C, K]", path, t->name);
        return NULL;
    }
    const int64_t O = t->shape[0];
    const gd_st_tensor *ws = companion(f, path, t->name, 1, GD_ST_F32, O, err, errlen);
    const gd_st_tensor *as = ws ? companion(f, path, t->name, 2, GD_ST_F32, 1, err, errlen) : NULL;
    const gd_st_tensor *az = as ? companion(f, path, t->name, 3, GD_ST_I32, 1, err, errlen) : NULL;
    if (!az) return NULL;
    gd_quant *q = calloc(1, sizeof *q);
    int8_t *w = malloc((size_t)t->numel);
    float *s = malloc(sizeof(float) * (size_t)O);
    if (!q || !w || !s) {
        free(q), free(w), free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(w, t->data, (size_t)t->numel);
    memcpy(s, ws->data, sizeof(float) * (size_t)O); /* the mapping may be unaligned */
    int32_t zp;
    memcpy(&q->a_scale, as->data, sizeof(float));
    memcpy(&zp, az->data, sizeof zp);
    q->w = w, q->w_scale = s, q->a_zero = zp;
    const char *bad = NULL;
    for (int64_t o = 0; o < O && !bad; o++)
        if (!(s[o] > 0.0f) || !isfinite(s[o])) bad = "a weight scale is not a positive finite number";
    if (!bad && (!(q->a_scale > 0.0f) || !isfinite(q->a_scale))) bad = "its input scale is not a positive finite number";
    if (!bad && (zp < 0 || zp > 255)) bad = "its input zero point is outside 0..255";
    if (bad) {
        snprintf(err, errlen, "%s: quantized weight '%s': %s", path, t->name, bad);
        free(w), free(s), free(q);
        return NULL;
    }
    return q;
}

int nn_quant_write(gd_st_writer *w, const char *name, int ndim, const int64_t *ne, const gd_quant *q) {
    char c[300];
    size_t blen = strlen(name) - strlen(".weight");
    int64_t one = 1, O = ne[0];
    int32_t zp = q->a_zero;
    if (gd_st_writer_add(w, name, GD_ST_I8, ndim, ne, q->w)) return -1;
    name_of(c, sizeof c, name, blen, 1);
    if (gd_st_writer_add(w, c, GD_ST_F32, 1, &O, q->w_scale)) return -1;
    name_of(c, sizeof c, name, blen, 2);
    if (gd_st_writer_add(w, c, GD_ST_F32, 1, &one, &q->a_scale)) return -1;
    name_of(c, sizeof c, name, blen, 3);
    return gd_st_writer_add(w, c, GD_ST_I32, 1, &one, &zp);
}
