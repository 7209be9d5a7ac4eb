/* AdamW, learning-rate schedule, global-norm clipping, EMA and exact-resume checkpoints
 * (include/gd_optim.h).
 *
 * Numerics replicate PyTorch 1.13 on x86-64 CPU (AVX2 kernels, GCC 12 -O2, which contracts the
 * float kernels' multiply-adds into FMAs) operation for operation:
 *
 *   clip_grad_norm_(max_norm):   coef = (1 / (float(norm) + float(1e-6))) * float(max_norm)
 *                                (Tensor.__rtruediv__ is reciprocal() * other), grads *= coef when
 *                                coef < 1 (torch multiplies by clamp(coef, max=1); *1 is exact).
 *   _single_tensor_adamw, with python-float (double) scalars rounded to float where they meet the
 *   float32 tensors:
 *     p *= float(1 - lr*wd)                                  (skipped when decay == 0: *1.0f)
 *     m  = fmaf(g, float(1-b1), m * float(b1))               (mul_ then add_(alpha): fmadd)
 *     v  = fmaf(float(1-b2) * g, g, v * float(b2))           (mul_ then addcmul_)
 *     d  = sqrtf(v) / float(sqrt(1 - b2^t)) + float(eps)
 *     p  = p + (float(-lr / (1 - b1^t)) * m) / d             (addcdiv_)
 *   update_ema (guided-diffusion):  ema = fmaf(p, float(1-rate), ema * float(rate)).
 * b^t is C pow() on doubles, exactly as python's float ** float. The only deliberate difference:
 * the gradient norm is summed in double (torch sums in float), so the clip coefficient can differ
 * by an ulp from torch's.
 *
 * Gradients are never written: the clip coefficient is applied on the fly, which is the same
 * float multiply torch performs in place (the header allows but does not require scaling in place;
 * params[i].g is const and may point at read-only memory).
 *
 * The FMAs torch uses are explicit fmaf() calls; every other a*b+c is split across statements
 * (so clang's default -ffp-contract=on cannot fuse it) and GCC's -std=c11 implies -ffp-contract=off.
 * Results are therefore the same with or without -march=native (fmaf is exact either way).
 *
 * Threads: element-wise loops run over a fixed list of chunks (CHUNK elements of one tensor each);
 * the norm is one double partial per chunk, each summed in a fixed order and combined in chunk
 * order, so every result is independent of the thread count. */
#include "gd_optim.h"
#include "core/gd_internal.h"
#include "gd_safetensors.h"
#include "gd_train.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 16384         /* elements per work item */
#define PAR_MIN_TOTAL 65536 /* below this many elements in all, one thread */

typedef struct {
    char *name;
    float *w;
    const float *g;
    int64_t n;
    int decay;
    float *m, *v, *ema;
} opt_param;

typedef struct {
    int p;
    int64_t off, len;
} opt_chunk;

struct gd_optim {
    gd_optim_config cfg;
    int n_params;
    opt_param *p;
    int64_t n_chunks, total;
    opt_chunk *chunks;
    double *partial; /* one per chunk */
    int64_t step;
};

static void opt_free_params(gd_optim *o) {
    if (!o->p) return;
    for (int i = 0; i < o->n_params; i++) {
        free(o->p[i].name);
        free(o->p[i].m);
        free(o->p[i].v);
        free(o->p[i].ema);
    }
    free(o->p);
}

void gd_optim_free(gd_optim *o) {
    if (!o) return;
    opt_free_params(o);
    free(o->chunks);
    free(o->partial);
    free(o);
}

static float *alloc_floats(int64_t n, int zero) {
    size_t k = n > 0 ? (size_t)n : 1;
    return zero ? calloc(k, sizeof(float)) : malloc(k * sizeof(float));
}

gd_optim *gd_optim_new(const gd_optim_config *cfg, const gd_param_ref *params, int n_params) {
    if (!cfg || n_params < 0 || (n_params > 0 && !params)) return NULL;
    if (!(cfg->lr >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1) ||
        !(cfg->eps >= 0) || !(cfg->weight_decay >= 0) || !(cfg->final_frac >= 0) || cfg->decay_kind < 0 ||
        cfg->decay_kind > 2 || !(cfg->ema_rate < 1) || isnan(cfg->clip_norm) || isnan(cfg->ema_rate))
        return NULL;
    for (int i = 0; i < n_params; i++) {
        const gd_param_ref *r = &params[i];
        if (!r->name || r->n < 0 || (r->n > 0 && (!r->w || !r->g))) return NULL;
        for (int j = 0; j < i; j++)
            if (strcmp(params[j].name, r->name) == 0) return NULL;
    }
    gd_optim *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->cfg = *cfg;
    o->n_params = n_params;
    o->p = calloc(n_params > 0 ? (size_t)n_params : 1, sizeof *o->p);
    if (!o->p) goto fail;
    int use_ema = cfg->ema_rate > 0;
    for (int i = 0; i < n_params; i++) {
        const gd_param_ref *r = &params[i];
        opt_param *q = &o->p[i];
        q->name = strdup(r->name);
        q->w = r->w;
        q->g = r->g;
        q->n = r->n;
        q->decay = r->decay != 0;
        q->m = alloc_floats(r->n, 1);
        q->v = alloc_floats(r->n, 1);
        if (use_ema) q->ema = alloc_floats(r->n, 0);
        if (!q->name || !q->m || !q->v || (use_ema && !q->ema)) goto fail;
        if (use_ema && r->n > 0) memcpy(q->ema, r->w, (size_t)r->n * sizeof(float));
        o->n_chunks += (r->n + CHUNK - 1) / CHUNK;
        o->total += r->n;
    }
    o->chunks = malloc((o->n_chunks > 0 ? (size_t)o->n_chunks : 1) * sizeof *o->chunks);
    o->partial = malloc((o->n_chunks > 0 ? (size_t)o->n_chunks : 1) * sizeof *o->partial);
    if (!o->chunks || !o->partial) goto fail;
    int64_t k = 0;
    for (int i = 0; i < n_params; i++)
        for (int64_t off = 0; off < o->p[i].n; off += CHUNK) {
            o->chunks[k].p = i;
            o->chunks[k].off = off;
            o->chunks[k].len = o->p[i].n - off < CHUNK ? o->p[i].n - off : CHUNK;
            k++;
        }
    return o;
fail:
    gd_optim_free(o);
    return NULL;
}

/* Learning rate of the step with 0-based index s (s steps already taken). */
static double sched_lr(const gd_optim_config *c, int64_t s) {
    if (c->warmup_steps > 0 && s < c->warmup_steps) return c->lr * (double)(s + 1) / (double)c->warmup_steps;
    int64_t w = c->warmup_steps > 0 ? c->warmup_steps : 0;
    if (c->decay_kind == 0 || c->total_steps <= w) return c->lr;
    double p = (double)(s - w) / (double)(c->total_steps - w);
    if (p > 1.0) p = 1.0;
    double f = c->decay_kind == 1 ? 1.0 - p : 0.5 * (1.0 + cos(M_PI * p));
    double span = (1.0 - c->final_frac) * f; /* separate statements: no contraction into an FMA */
    return c->lr * (c->final_frac + span);
}

double gd_optim_lr(const gd_optim *o) { return o ? sched_lr(&o->cfg, o->step) : 0.0; }

int64_t gd_optim_step_count(const gd_optim *o) { return o ? o->step : 0; }

const float *gd_optim_ema(const gd_optim *o, int i) {
    if (!o || i < 0 || i >= o->n_params || !(o->cfg.ema_rate > 0)) return NULL;
    return o->p[i].ema;
}

/* Sum of squares in double: 8 independent lanes combined in a fixed order. */
static double sumsq(const float *x, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

typedef struct {
    float decay_mul, clip, b1, ob1, b2, ob2, bc2s, eps, nstep, rate, orate;
    int clipping, ema;
} step_scalars;

static void update_range(const opt_param *q, int64_t off, int64_t len, const step_scalars *k) {
    float *restrict w = q->w + off;
    const float *restrict g = q->g + off;
    float *restrict m = q->m + off;
    float *restrict v = q->v + off;
    const float b1 = k->b1, ob1 = k->ob1, b2 = k->b2, ob2 = k->ob2, bc2s = k->bc2s, eps = k->eps,
                nstep = k->nstep, clip = k->clip, dm = k->decay_mul;
    const int decay = q->decay, clipping = k->clipping;
    for (int64_t i = 0; i < len; i++) {
        float gi = clipping ? g[i] * clip : g[i];
        float p = decay ? w[i] * dm : w[i];
        float mi = fmaf(gi, ob1, m[i] * b1);
        float vi = fmaf(ob2 * gi, gi, v[i] * b2);
        float d = sqrtf(vi) / bc2s + eps;
        m[i] = mi;
        v[i] = vi;
        w[i] = p + (nstep * mi) / d;
    }
    if (k->ema) {
        float *restrict e = q->ema + off;
        const float r = k->rate, orr = k->orate;
        for (int64_t i = 0; i < len; i++) e[i] = fmaf(w[i], orr, e[i] * r);
    }
}

double gd_optim_step(gd_optim *o) {
    if (!o) return NAN;
    const gd_optim_config *c = &o->cfg;
    const int par = o->total > PAR_MIN_TOTAL;

#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < o->n_chunks; k++) {
        const opt_chunk *ch = &o->chunks[k];
        o->partial[k] = sumsq(o->p[ch->p].g + ch->off, ch->len);
    }
    double ss = 0;
    for (int64_t k = 0; k < o->n_chunks; k++) ss += o->partial[k];
    double norm = sqrt(ss);

    step_scalars s;
    memset(&s, 0, sizeof s);
    if (c->clip_norm > 0) {
        float coef = (1.0f / ((float)norm + (float)1e-6)) * (float)c->clip_norm;
        if (!(coef >= 1.0f)) { /* NaN propagates, as torch.clamp does */
            s.clipping = 1;
            s.clip = coef;
        }
    }
    double lr = sched_lr(c, o->step);
    double t = (double)(o->step + 1);
    double bc1 = 1 - pow(c->beta1, t);
    double bc2 = 1 - pow(c->beta2, t);
    double step_size = lr / bc1;
    double lr_wd = lr * c->weight_decay;
    s.decay_mul = (float)(1 - lr_wd);
    s.b1 = (float)c->beta1;
    s.ob1 = (float)(1 - c->beta1);
    s.b2 = (float)c->beta2;
    s.ob2 = (float)(1 - c->beta2);
    s.bc2s = (float)sqrt(bc2);
    s.eps = (float)c->eps;
    s.nstep = (float)(-step_size);
    s.ema = c->ema_rate > 0;
    s.rate = (float)c->ema_rate;
    s.orate = (float)(1 - c->ema_rate);

#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < o->n_chunks; k++) {
        const opt_chunk *ch = &o->chunks[k];
        update_range(&o->p[ch->p], ch->off, ch->len, &s);
    }
    o->step++;
    return norm;
}

/* ---- checkpoints ---- */

static const char *const KIND_PREFIX[3] = {"adam_m/", "adam_v/", "ema/"};
#define STEP_TENSOR "optim/step"

static char *cat2(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* keys[i] = values[i] for i < n_meta; a NULL key or value is skipped. */
static int save_with_meta(const gd_optim *o, const char *path, int n_meta, const char *const *keys,
                          const char *const *values, char *err, size_t errlen) {
    if (!o || !path) {
        gd_errf(err, errlen, "gd_optim_save: no optimizer or path");
        return -1;
    }
    gd_st_writer *wr = gd_st_writer_new();
    if (!wr) {
        gd_errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int use_ema = o->cfg.ema_rate > 0;
    /* Weights first, then each optimizer kind, each in parameter order. */
    for (int kind = -1; kind < 3; kind++) {
        if (kind == 2 && !use_ema) break;
        for (int i = 0; i < o->n_params; i++) {
            const opt_param *q = &o->p[i];
            const float *data = kind < 0 ? q->w : kind == 0 ? q->m : kind == 1 ? q->v : q->ema;
            char *name = kind < 0 ? strdup(q->name) : cat2(KIND_PREFIX[kind], q->name);
            int64_t shape[1] = {q->n};
            int rc = name ? gd_st_writer_add(wr, name, GD_ST_F32, 1, shape, data) : -1;
            if (rc != 0) {
                gd_errf(err, errlen, "%s: cannot add tensor '%s%s' (invalid name or out of memory)", path,
                        kind < 0 ? "" : KIND_PREFIX[kind], q->name);
                free(name);
                gd_st_writer_free(wr);
                return -1;
            }
            free(name);
        }
    }
    int64_t one = 1, step = o->step;
    if (gd_st_writer_add(wr, STEP_TENSOR, GD_ST_I64, 1, &one, &step) != 0) {
        gd_errf(err, errlen, "%s: cannot add tensor '%s' (a parameter has that name?)", path, STEP_TENSOR);
        gd_st_writer_free(wr);
        return -1;
    }
    for (int i = 0; i < n_meta; i++)
        if (keys[i] && values[i] && gd_st_writer_meta(wr, keys[i], values[i]) != 0) {
            gd_errf(err, errlen, "%s: cannot add metadata '%s'", path, keys[i]);
            gd_st_writer_free(wr);
            return -1;
        }
    int rc = gd_st_writer_save(wr, path, err, errlen);
    gd_st_writer_free(wr);
    return rc == 0 ? 0 : -1;
}

int gd_optim_save(const gd_optim *o, const char *path, const char *meta_key, const char *meta_value, char *err,
                  size_t errlen) {
    return save_with_meta(o, path, 1, &meta_key, &meta_value, err, errlen);
}

int gd_train_checkpoint_save(const gd_optim *o, const char *path, const char *config_json, const char *train_log,
                             char *err, size_t errlen) {
    const char *keys[2] = {"config", "train_log"}, *values[2] = {config_json, train_log};
    return save_with_meta(o, path, 2, keys, values, err, errlen);
}

/* A checkpoint is input like any file: weights, moments and EMA must be finite (and the second
 * moments non-negative, sqrt's domain), or the resumed run trains on NaN. Index of the first bad
 * value, or -1. */
static int64_t first_bad_value(const gd_st_tensor *x, int second_moment) {
    const float *v = (const float *)x->data;
    for (int64_t j = 0; j < x->numel; j++) {
        float f;
        memcpy(&f, v + j, sizeof f); /* the mapping need not be float-aligned */
        if (!isfinite(f) || (second_moment && f < 0)) return j;
    }
    return -1;
}

/* Which state a file tensor name refers to: kind -1 weights, 0..2 as KIND_PREFIX; -2 the step;
 * returns the parameter index or -1 (unknown name). */
static int classify(const gd_optim *o, const char *name, int *kind) {
    if (strcmp(name, STEP_TENSOR) == 0) {
        *kind = -2;
        return 0;
    }
    for (int i = 0; i < o->n_params; i++)
        if (strcmp(name, o->p[i].name) == 0) {
            *kind = -1;
            return i;
        }
    for (int k = 0; k < 3; k++) {
        size_t lp = strlen(KIND_PREFIX[k]);
        if (strncmp(name, KIND_PREFIX[k], lp) != 0) continue;
        for (int i = 0; i < o->n_params; i++)
            if (strcmp(name + lp, o->p[i].name) == 0) {
                *kind = k;
                return i;
            }
    }
    return -1;
}

int gd_optim_load(gd_optim *o, const char *path, char *err, size_t errlen) {
    if (!o || !path) {
        gd_errf(err, errlen, "gd_optim_load: no optimizer or path");
        return -1;
    }
    gd_st_file *f = gd_st_open(path, err, errlen);
    if (!f) return -1;
    int use_ema = o->cfg.ema_rate > 0, nkinds = use_ema ? 3 : 2;
    int rc = -1;
    const gd_st_tensor *st = NULL;
    int64_t step = -1;
    const gd_st_tensor **src = calloc((size_t)(o->n_params > 0 ? o->n_params : 1) * 4, sizeof *src);
    if (!src) {
        gd_errf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    /* Validate everything before touching the optimizer, so a failed load leaves it unchanged. */
    for (int t = 0; t < gd_st_count(f); t++) {
        const gd_st_tensor *x = gd_st_get(f, t);
        int kind = 0, i = classify(o, x->name, &kind);
        if (i < 0) {
            gd_errf(err, errlen, "%s: unexpected tensor '%s' (not a parameter of this model or optimizer state)",
                    path, x->name);
            goto done;
        }
        if (kind == -2) continue;
        if (kind == 2 && !use_ema) continue; /* EMA disabled here: ignored */
        if (x->dtype != GD_ST_F32) {
            gd_errf(err, errlen, "%s: tensor '%s' is %s, expected F32", path, x->name, gd_st_dtype_name(x->dtype));
            goto done;
        }
        if (x->numel != o->p[i].n) {
            gd_errf(err, errlen, "%s: tensor '%s' has %lld elements, the optimizer's parameter has %lld", path,
                    x->name, (long long)x->numel, (long long)o->p[i].n);
            goto done;
        }
        int64_t bad = first_bad_value(x, kind == 1);
        if (bad >= 0) {
            gd_errf(err, errlen, "%s: tensor '%s' holds a %s value at element %lld", path, x->name,
                    kind == 1 ? "negative or non-finite" : "non-finite", (long long)bad);
            goto done;
        }
        src[(size_t)i * 4 + (size_t)(kind + 1)] = x;
    }
    for (int i = 0; i < o->n_params; i++)
        for (int k = -1; k < nkinds; k++)
            if (!src[(size_t)i * 4 + (size_t)(k + 1)]) {
                gd_errf(err, errlen, "%s: tensor '%s%s' missing", path, k < 0 ? "" : KIND_PREFIX[k], o->p[i].name);
                goto done;
            }
    st = gd_st_find(f, STEP_TENSOR);
    if (!st) {
        gd_errf(err, errlen, "%s: tensor '%s' missing (not an optimizer checkpoint?)", path, STEP_TENSOR);
        goto done;
    }
    if (st->dtype == GD_ST_I64 && st->numel == 1) memcpy(&step, st->data, sizeof step);
    if (step < 0) {
        gd_errf(err, errlen, "%s: tensor '%s' must be one non-negative I64", path, STEP_TENSOR);
        goto done;
    }
    for (int i = 0; i < o->n_params; i++) {
        opt_param *q = &o->p[i];
        float *dst[4] = {q->w, q->m, q->v, q->ema};
        size_t nb = (size_t)q->n * sizeof(float);
        for (int k = -1; k < nkinds; k++)
            if (nb) memcpy(dst[k + 1], src[(size_t)i * 4 + (size_t)(k + 1)]->data, nb);
    }
    o->step = step;
    rc = 0;
done:
    free(src);
    gd_st_close(f);
    return rc;
}
