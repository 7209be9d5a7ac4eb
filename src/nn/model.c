/* Model weights: a safetensors file (mmapped; f32/f16/bf16 kept as stored) or random weights
 * made on demand. Builders ask for tensors by state-dict name and shape; the first problem is
 * kept as the model's error so the user sees which tensor is wrong. */
#include "nn/adm.h"
#include "gd_safetensors.h"
#include "nn/config_src.h"
#include "nn/quant_file.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    gd_dtype dtype;
    int ndim;
    int64_t ne[GD_MAX_DIMS];
    void *data;
    bool owned, used;
    gd_quant *q;      /* W8A8 conv weight: its int8 values and scales (owned), data their fp32 value */
} param;

struct gd_model {
    gd_config cfg;
    gd_st_file *st;   /* NULL for random weights */
    param *p;
    int n, cap;
    uint64_t seed;
    bool shapes_only; /* headers without data: counting and config checks */
    bool trainable;   /* every weight an owned f32 buffer */
    char *notes;      /* where the config came from (gd_model_config_notes) */
    char *quant_meta; /* the "quantization" metadata record (JSON) of a W8A8 model */
    char err[512];
};

static param *find(gd_model *m, const char *name);

static gd_model *model_new(void) { return calloc(1, sizeof(gd_model)); }

static int add_param(gd_model *m, const char *name, gd_dtype dt, int ndim, const int64_t *ne, void *data, bool owned) {
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 256;
        param *p = realloc(m->p, sizeof *p * (size_t)cap);
        if (!p) return -1;
        m->p = p;
        m->cap = cap;
    }
    param *q = &m->p[m->n++];
    memset(q, 0, sizeof *q);
    q->name = strdup(name);
    q->dtype = dt;
    q->ndim = ndim;
    for (int i = 0; i < ndim; i++) q->ne[i] = ne[i];
    q->data = data;
    q->owned = owned;
    return q->name ? 0 : -1;
}

static void quant_free(gd_quant *q) {
    if (!q) return;
    free((void *)q->w);
    free((void *)q->w_scale);
    free(q);
}

/* an I8 conv weight with its scales (nn/quant_file.c): its fp32 value becomes the param's data */
static int load_quantized(gd_model *m, const char *path, const gd_st_tensor *t, const char *name, char *err, size_t errlen) {
    gd_quant *q = nn_quant_read(m->st, path, t, err, errlen);
    if (!q) return -1;
    int64_t n = t->numel, O = t->shape[0];
    float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!d || add_param(m, name, GD_F32, t->ndim, t->shape, d, true)) {
        free(d);
        quant_free(q);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < n; i++) d[i] = (float)q->w[i] * q->w_scale[i / (n / O)];
    m->p[m->n - 1].q = q;
    return 0;
}

int gd_model_set_quant(gd_model *m, const char *name, const int8_t *qw, const float *w_scale, float a_scale, int a_zero, char *err,
                       size_t errlen) {
    param *p = find(m, name);
    if (!p || p->ndim < 3 || p->ndim > 4 || !p->data) {
        snprintf(err, errlen, "'%s' is not a conv weight of this model", name);
        return -1;
    }
    int64_t n = 1, O = p->ne[0];
    for (int k = 0; k < p->ndim; k++) n *= p->ne[k];
    if (!(a_scale > 0.0f) || !isfinite(a_scale) || a_zero < 0 || a_zero > 255) {
        snprintf(err, errlen, "'%s': activation scale %g and zero point %d out of range", name, (double)a_scale, a_zero);
        return -1;
    }
    for (int64_t o = 0; o < O; o++)
        if (!(w_scale[o] > 0.0f) || !isfinite(w_scale[o])) {
            snprintf(err, errlen, "'%s': weight scale %lld is %g", name, (long long)o, (double)w_scale[o]);
            return -1;
        }
    gd_quant *q = calloc(1, sizeof *q);
    int8_t *w8 = malloc((size_t)n);
    float *ws = malloc(sizeof(float) * (size_t)O), *d = malloc(sizeof(float) * (size_t)n);
    if (!q || !w8 || !ws || !d) {
        free(q), free(w8), free(ws), free(d);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(w8, qw, (size_t)n);
    memcpy(ws, w_scale, sizeof(float) * (size_t)O);
    for (int64_t i = 0; i < n; i++) d[i] = (float)w8[i] * ws[i / (n / O)];
    q->w = w8, q->w_scale = ws, q->a_scale = a_scale, q->a_zero = a_zero;
    if (p->owned) free(p->data);
    p->data = d, p->owned = true, p->dtype = GD_F32;
    quant_free(p->q);
    p->q = q;
    return 0;
}

int gd_model_quant_count(const gd_model *m) {
    int c = 0;
    for (int i = 0; i < m->n; i++) c += m->p[i].q != NULL;
    return c;
}

const char *gd_model_quant_meta(const gd_model *m) { return m->quant_meta; }

int gd_model_set_quant_meta(gd_model *m, const char *json) {
    char *c = strdup(json);
    if (!c) return -1;
    free(m->quant_meta);
    m->quant_meta = c;
    return 0;
}

const float *gd_model_weight_f32(gd_model *m, const char *name, int *ndim, int64_t *ne) {
    param *p = find(m, name);
    if (!p || !p->data) return NULL;
    if (p->dtype != GD_F32) { /* widened once, in place */
        int64_t n = 1;
        for (int k = 0; k < p->ndim; k++) n *= p->ne[k];
        float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
        if (!d) return NULL;
        const uint16_t *h = p->data;
        for (int64_t j = 0; j < n; j++) d[j] = p->dtype == GD_F16 ? gd_f16_to_f32(h[j]) : gd_bf16_to_f32(h[j]);
        if (p->owned) free(p->data);
        p->data = d, p->owned = true, p->dtype = GD_F32;
    }
    *ndim = p->ndim;
    for (int k = 0; k < p->ndim; k++) ne[k] = p->ne[k];
    return p->data;
}

gd_model *gd_model_load(const char *path, const char *config_path, char *err, size_t errlen) {
    gd_load_opts o = {.config_path = config_path};
    return gd_model_load_opts(path, &o, err, errlen);
}

const char *gd_model_config_notes(const gd_model *m) { return m->notes ? m->notes : ""; }

gd_model *gd_model_load_opts(const char *path, const gd_load_opts *o, char *err, size_t errlen) {
    gd_model *m = model_new();
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int is_pt; /* by content: a PyTorch checkpoint or safetensors (config_choose.c) */
    m->st = nn_open_weights(path, &is_pt, err, errlen);
    if (!m->st || nn_load_config(path, m->st, is_pt, o, &m->cfg, &m->notes, err, errlen)) goto fail;
    for (int i = 0; i < gd_st_count(m->st); i++) {
        const gd_st_tensor *t = gd_st_get(m->st, i);
        const char *name = is_pt && !strncmp(t->name, "module.", 7) ? t->name + 7 : t->name;
        gd_dtype dt;
        int qk = nn_quant_companion(name);
        if (qk) { /* read with its int8 weight */
            if (nn_quant_orphan(m->st, t->name, qk, err, errlen)) goto fail;
            continue;
        }
        if (t->dtype == GD_ST_I8) {
            if (load_quantized(m, path, t, name, err, errlen)) goto fail;
            continue;
        }
        if (t->dtype == GD_ST_F32) dt = GD_F32;
        else if (t->dtype == GD_ST_F16) dt = GD_F16;
        else if (t->dtype == GD_ST_BF16) dt = GD_BF16;
        else {
            snprintf(err, errlen, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16 (or I8, quantized)", path, t->name,
                     gd_st_dtype_name(t->dtype));
            goto fail;
        }
        if (t->ndim < 1 || t->ndim > GD_MAX_DIMS) {
            snprintf(err, errlen, "%s: tensor '%s' has rank %d; weights have rank 1 to 4", path, t->name, t->ndim);
            goto fail;
        }
        /* Mapped data is used in place when aligned for its dtype, else copied once. */
        void *data = (void *)t->data;
        bool owned = false;
        size_t es = gd_dtype_size(dt);
        if ((uintptr_t)data % es) {
            data = malloc(t->nbytes ? t->nbytes : 1);
            if (!data) {
                snprintf(err, errlen, "%s: out of memory copying tensor '%s' (%.1f MiB)", path, t->name,
                         (double)t->nbytes / 1048576.0);
                goto fail;
            }
            memcpy(data, t->data, t->nbytes);
            owned = true;
        }
        if (add_param(m, name, dt, t->ndim, t->shape, data, owned)) {
            if (owned) free(data);
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    const char *qm = gd_st_metadata(m->st, "quantization");
    if (qm && !(m->quant_meta = strdup(qm))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return m;
fail:
    gd_model_free(m);
    return NULL;
}

gd_model *gd_model_random(const gd_config *cfg, uint64_t seed) {
    gd_model *m = model_new();
    if (!m) return NULL;
    m->cfg = *cfg;
    m->cfg.json = cfg->json ? strdup(cfg->json) : NULL;
    m->seed = seed ? seed : 1;
    return m;
}

gd_model *gd_model_shapes(const gd_config *cfg) {
    gd_model *m = gd_model_random(cfg, 1);
    if (m) m->shapes_only = true;
    return m;
}

void gd_model_free(gd_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free(m->p[i].name);
        if (m->p[i].owned) free(m->p[i].data);
        quant_free(m->p[i].q);
    }
    free(m->p);
    gd_st_close(m->st);
    gd_config_free(&m->cfg);
    free(m->notes);
    free(m->quant_meta);
    free(m);
}

const gd_config *gd_model_config(const gd_model *m) { return &m->cfg; }
const char *gd_model_error(const gd_model *m) { return m->err; }

static void model_fail(gd_model *m, const char *fmt, ...) {
    if (m->err[0]) return; /* keep the first problem: later ones are usually its consequences */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
}

static param *find(gd_model *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->p[i].name, name)) return &m->p[i];
    return NULL;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* NULL only when memory runs out, with the model's error saying how much was asked for: a weight
 * that cannot be allocated is not a missing one. */
static param *make_random(gd_model *m, const char *name, int ndim, const int64_t *ne) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= ne[i];
    if (m->shapes_only) {
        if (add_param(m, name, GD_F32, ndim, ne, NULL, false)) {
            model_fail(m, "out of memory");
            return NULL;
        }
        return &m->p[m->n - 1];
    }
    float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!d) {
        model_fail(m, "out of memory: the random weights of '%s' need %.1f MiB", name, (double)n * sizeof(float) / 1048576.0);
        return NULL;
    }
    uint64_t s = m->seed;
    for (const char *c = name; *c; c++) s = s * 1099511628211ull ^ (uint64_t)(unsigned char)*c;
    size_t len = strlen(name);
    bool is_weight = len > 7 && !strcmp(name + len - 7, ".weight");
    if (ndim == 1) { /* norm scales 1, biases 0 */
        for (int64_t i = 0; i < n; i++) d[i] = is_weight ? 1.0f : 0.0f;
    } else {
        double a = 1.0 / sqrt((double)(n / ne[0]));
        for (int64_t i = 0; i < n; i++) d[i] = (float)(a * (2.0 * (double)(splitmix(&s) >> 11) / 9007199254740992.0 - 1.0));
    }
    if (add_param(m, name, GD_F32, ndim, ne, d, true)) {
        free(d);
        model_fail(m, "out of memory");
        return NULL;
    }
    return &m->p[m->n - 1];
}

gd_tensor *gd_model_param(gd_ctx *ctx, gd_model *m, int ndim, const int64_t *ne, const char *fmt, ...) {
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    param *p = find(m, name);
    if (!p && !m->st) {
        if (!(p = make_random(m, name, ndim, ne))) return NULL; /* its error is set */
    }
    if (!p) {
        model_fail(m, "missing tensor '%s'", name);
        return NULL;
    }
    bool ok = p->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = p->ne[i] == ne[i];
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)ne[i]);
        for (int i = 0; i < p->ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)p->ne[i]);
        model_fail(m, "tensor '%s' has shape [%s]; the config needs [%s]", name, got, want);
        return NULL;
    }
    p->used = true;
    gd_tensor *t = gd_new_tensor(ctx, p->dtype, ndim, ne);
    if (!t) {
        model_fail(m, "%s", gd_ctx_error(ctx));
        return NULL;
    }
    t->data = p->data;
    t->quant = p->q;
    t->flags = GD_FLAG_PARAM | (m->trainable ? GD_FLAG_NEEDS_GRAD : 0);
    gd_set_name(t, "%s", name);
    return t;
}

int gd_model_check_all_used(gd_model *m) {
    if (m->err[0]) return -1;
    for (int i = 0; i < m->n; i++)
        if (!m->p[i].used) {
            model_fail(m, "unexpected tensor '%s' (not part of this config's network)", m->p[i].name);
            return -1;
        }
    return 0;
}

int gd_model_make_trainable(gd_model *m) {
    for (int i = 0; i < m->n; i++) {
        param *p = &m->p[i];
        quant_free(p->q); /* training starts from the dequantized values */
        p->q = NULL;
        if (p->dtype == GD_F32 && p->owned) continue;
        int64_t n = 1;
        for (int k = 0; k < p->ndim; k++) n *= p->ne[k];
        float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
        if (!d) return -1;
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *h = p->data;
            d[j] = p->dtype == GD_F32    ? ((const float *)p->data)[j]
                   : p->dtype == GD_F16 ? gd_f16_to_f32(h[j])
                                         : gd_bf16_to_f32(h[j]);
        }
        if (p->owned) free(p->data);
        p->data = d;
        p->dtype = GD_F32;
        p->owned = true;
    }
    m->trainable = true;
    return 0;
}

int gd_model_save(const gd_model *m, const char *path, char *err, size_t errlen) {
    gd_st_writer *w = gd_st_writer_new();
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = m->cfg.json ? gd_st_writer_meta(w, "config", m->cfg.json) : 0;
    if (!rc && m->quant_meta && gd_model_quant_count(m)) rc = gd_st_writer_meta(w, "quantization", m->quant_meta);
    for (int i = 0; i < m->n && !rc; i++) {
        const param *p = &m->p[i];
        if (!p->data) {
            snprintf(err, errlen, "tensor '%s' has no data (a shapes-only model)", p->name);
            gd_st_writer_free(w);
            return -1;
        }
        if (p->q) {
            rc = nn_quant_write(w, p->name, p->ndim, p->ne, p->q);
            continue;
        }
        gd_st_dtype dt = p->dtype == GD_F16 ? GD_ST_F16 : p->dtype == GD_BF16 ? GD_ST_BF16 : GD_ST_F32;
        rc = gd_st_writer_add(w, p->name, dt, p->ndim, p->ne, p->data);
    }
    if (rc) {
        snprintf(err, errlen, "%s: cannot add tensors", path);
        gd_st_writer_free(w);
        return -1;
    }
    rc = gd_st_writer_save(w, path, err, errlen);
    gd_st_writer_free(w);
    return rc;
}

int64_t gd_model_param_count(const gd_model *m) {
    int64_t s = 0;
    for (int i = 0; i < m->n; i++) {
        int64_t n = 1;
        for (int k = 0; k < m->p[i].ndim; k++) n *= m->p[i].ne[k];
        if (m->p[i].used) s += n;
    }
    return s;
}

int gd_model_tensor_count(const gd_model *m) {
    int c = 0;
    for (int i = 0; i < m->n; i++) c += m->p[i].used;
    return c;
}
