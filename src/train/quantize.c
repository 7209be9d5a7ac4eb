/* W8A8 calibration (include/gd_quant.h): draw the calibration set from the full-precision DDIM
 * chain, read every quantized conv's input through the graph observer in two passes (range, then
 * histogram), search each range, then each weight row's scale, and make the models int8. */
#include "gd_guidance.h"
#include "gd_quant.h"
#include "gd_sample.h"
#include "gd_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gd_quant_defaults(gd_quant_opts *o) {
    memset(o, 0, sizeof *o);
    o->samples = 1024;
    o->steps = 100;
    o->t_normal = 1;
    o->t_mean = 0.4;
    o->t_std = 0.4;
    o->p = 2.4;
    o->seed = 1;
    o->batch = 64;
}

typedef struct {
    char name[96];
    int keep;
    gd_qhist *h;
} layer;

typedef struct {
    layer *L;
    int n, cap, pass; /* pass 0: list the convs and their ranges, 1: the histograms */
    int valid, batch; /* samples of the batch that are calibration inputs */
    const char *keep;
    int oom;
} calib;

static int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, name, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static const char *weight_name(const gd_tensor *w) {
    while (w->op == GD_OP_CONVERT || w->op == GD_OP_VIEW) w = w->src[0]; /* widened (f16 / bf16 file) or reshaped */
    return w->name;
}

static void observe(const gd_tensor *node, void *user) {
    calib *c = user;
    if (node->op != GD_OP_CONV2D || c->oom) return;
    const char *name = weight_name(node->src[1]);
    layer *l = NULL;
    for (int i = 0; i < c->n && !l; i++)
        if (!strcmp(c->L[i].name, name)) l = &c->L[i];
    if (!l) {
        if (c->pass) return;
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 64;
            layer *L = realloc(c->L, sizeof *L * (size_t)cap);
            if (!L) {
                c->oom = 1;
                return;
            }
            c->L = L, c->cap = cap;
        }
        l = &c->L[c->n++];
        memset(l, 0, sizeof *l);
        snprintf(l->name, sizeof l->name, "%s", name);
        /* attention's qkv and proj_out are Conv1d weights (a view for conv2d): quantized like any
         * conv, as PTQ4DM's conv/linear wrappers do; its two products and softmax stay float */
        l->keep = gd_quant_keep_float(name) || in_list(c->keep, name);
        if (!l->keep && !(l->h = malloc(sizeof *l->h))) {
            c->oom = 1;
            return;
        }
        if (l->h) gd_qhist_reset(l->h);
    }
    if (l->keep) return;
    const gd_tensor *x = node->src[0];
    int64_t n = gd_nelements(x) / c->batch * c->valid;
    if (c->pass == 0) gd_qhist_range(l->h, x->data, n);
    else gd_qhist_add(l->h, x->data, n);
}

typedef struct {
    float *x, *t;
    int32_t *y;
    int n, per;
} calib_set;

/* PTQ4DM's draw of the loop index (counted from x_T), truncated as int() does */
static int draw_index(const gd_quant_opts *o, gd_rng *r) {
    if (!o->t_normal) return (int)(gd_rng_u32(r) % (uint32_t)o->steps);
    float z;
    gd_rng_randn(r, &z, 1);
    double v = (o->t_mean + o->t_std * z) * o->steps;
    int j = (int)v;
    return j < 0 ? 0 : j >= o->steps ? o->steps - 1 : j;
}

static int draw_set(gd_model *unet, const gd_quant_opts *o, calib_set *cs, char *err, size_t errlen) {
    const gd_config *c = gd_model_config(unet);
    const int B = o->batch, S = c->image_size, C = c->in_channels, per = C * S * S;
    char resp[32];
    snprintf(resp, sizeof resp, "%d", o->steps);
    gd_diffusion *d = gd_diffusion_new(c->noise_schedule, c->diffusion_steps, resp, err, errlen);
    if (!d) return -1;
    cs->n = o->samples, cs->per = per;
    cs->x = malloc(sizeof(float) * (size_t)o->samples * per);
    cs->t = malloc(sizeof(float) * (size_t)o->samples);
    cs->y = malloc(sizeof(int32_t) * (size_t)o->samples);
    int32_t *yb = calloc((size_t)B, sizeof *yb);
    int *jb = malloc(sizeof(int) * (size_t)B);
    float *x = malloc(sizeof(float) * (size_t)B * per);
    uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)B);
    gd_net_denoiser den;
    gd_rng_noise z;
    gd_sampler *s = NULL;
    int rc = -1, den_ok = 0, z_ok = 0;
    if (!cs->x || !cs->t || !cs->y || !yb || !jb || !x || !seeds) {
        gd_errf(err, errlen, "out of memory");
        goto out;
    }
    if (gd_net_denoiser_init(&den, unet, B, yb, NULL, err, errlen)) goto out;
    den_ok = 1;
    if (gd_rng_noise_init(&z, B, per, 1)) {
        gd_errf(err, errlen, "out of memory");
        goto out;
    }
    z_ok = 1;
    gd_sampler_params sp = {.diffusion = d, .var_type = GD_VAR_LEARNED_RANGE, .ddim = 1, .eta = 0.0f, .clip_denoised = 1,
                            .N = B, .C = C, .H = S, .W = S, .model = &den.base, .y = yb, .noise = &z.base};
    if (!(s = gd_sampler_new(&sp))) {
        gd_errf(err, errlen, "out of memory");
        goto out;
    }
    gd_rng r;
    gd_rng_seed(&r, o->seed ^ 0x5157434cu); /* the draws of indices and labels, apart from the noise */
    const int K = d->K, ncls = c->class_cond ? c->num_classes : 0;
    for (int b0 = 0; b0 < o->samples; b0 += B) {
        int nb = o->samples - b0 < B ? o->samples - b0 : B, jmax = 0;
        for (int i = 0; i < B; i++) {
            seeds[i] = o->seed + (uint64_t)(b0 + i);
            jb[i] = i < nb ? draw_index(o, &r) : -1;
            if (jb[i] > jmax) jmax = jb[i];
            yb[i] = 0;
            if (ncls) yb[i] = c->null_class && gd_rng_u32(&r) % 10 == 0 ? ncls : (int32_t)(gd_rng_u32(&r) % (uint32_t)ncls);
        }
        gd_rng_noise_seed(&z, seeds);
        if (gd_sampler_init(s, x, err, errlen)) goto out;
        for (int j = 0; j <= jmax; j++) {
            int k = K - 1 - j;
            for (int i = 0; i < nb; i++)
                if (jb[i] == j) {
                    memcpy(cs->x + (size_t)(b0 + i) * per, x + (size_t)i * per, sizeof(float) * per);
                    cs->t[b0 + i] = (float)d->timestep_map[k];
                    cs->y[b0 + i] = yb[i];
                }
            if (j < jmax && gd_sampler_step(s, x, k, err, errlen)) goto out;
            if (o->progress) o->progress(o->user, "sampling", b0 + (j + 1) * nb / (jmax + 1), o->samples);
        }
    }
    rc = 0;
out:
    gd_sampler_free(s);
    if (z_ok) gd_rng_noise_free(&z);
    if (den_ok) gd_net_denoiser_free(&den);
    gd_diffusion_free(d);
    free(yb), free(jb), free(x), free(seeds);
    return rc;
}

/* both observer passes of one network over the calibration set */
static int observe_net(gd_model *m, int is_cls, const calib_set *cs, const gd_quant_opts *o, calib *c, char *err, size_t errlen) {
    const int B = o->batch;
    gd_net *net = gd_net_new(m, B, 0, err, errlen);
    if (!net) return -1;
    gd_net_set_observer(net, observe, c);
    c->batch = B;
    for (c->pass = 0; c->pass < 2; c->pass++)
        for (int b0 = 0; b0 < cs->n; b0 += B) {
            int nb = cs->n - b0 < B ? cs->n - b0 : B;
            for (int i = 0; i < B; i++) { /* a short last batch repeats its first input; the observer skips the copies */
                int s = b0 + (i < nb ? i : 0);
                memcpy(gd_net_x(net) + (size_t)i * cs->per, cs->x + (size_t)s * cs->per, sizeof(float) * cs->per);
                gd_net_t(net)[i] = cs->t[s];
                if (!is_cls && gd_net_y(net)) gd_net_y(net)[i] = cs->y[s];
            }
            c->valid = nb;
            if (gd_net_forward(net, err, errlen)) {
                gd_net_free(net);
                return -1;
            }
            if (c->oom) {
                gd_net_free(net);
                gd_errf(err, errlen, "out of memory");
                return -1;
            }
            if (o->progress) o->progress(o->user, is_cls ? "classifier ranges" : "model ranges", c->pass * cs->n + b0 + nb, 2 * cs->n);
        }
    gd_net_free(net);
    return 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t k = strlen(s);
    if (*len + k + 1 > *cap) {
        size_t nc = (*cap + k + 1) * 2;
        char *b = realloc(*buf, nc);
        if (!b) return -1;
        *buf = b, *cap = nc;
    }
    memcpy(*buf + *len, s, k + 1);
    *len += k;
    return 0;
}

/* scales of every row of every layer, then the model's int8 weights and its record */
static int apply(gd_model *m, calib *c, const gd_quant_opts *o, int quick, int *nq, int *nf, char *err, size_t errlen) {
    char *meta = NULL, tmp[512];
    size_t len = 0, cap = 0;
    int fail = 0;
    snprintf(tmp, sizeof tmp,
             "{\"scheme\":\"w8a8\",\"weights\":\"int8 symmetric per output channel\",\"activations\":\"uint8 affine per "
             "tensor\",\"search\":\"L_p, p=%g, %d candidates (activations on a %d-bin histogram)\",\"calibration\":{\"samples\":%d,"
             "\"sampler\":\"ddim\",\"steps\":%d,\"t\":\"%s\",\"t_mean\":%g,\"t_std\":%g,\"seed\":%llu},\"layers\":[",
             o->p, GD_QUANT_CANDIDATES, GD_QHIST_BINS, o->samples, o->steps, o->t_normal ? "normal" : "uniform", o->t_mean,
             o->t_std, (unsigned long long)o->seed);
    fail |= append(&meta, &len, &cap, tmp);
    *nq = *nf = 0;
    for (int i = 0; i < c->n && !fail; i++) {
        layer *l = &c->L[i];
        if (l->keep) {
            ++*nf;
            continue;
        }
        int ndim;
        int64_t ne[4];
        const float *w = gd_model_weight_f32(m, l->name, &ndim, ne);
        if (!w || ndim < 3 || ndim > 4) {
            gd_errf(err, errlen, "conv weight '%s' cannot be read", l->name);
            free(meta);
            return -1;
        }
        const int64_t O = ne[0], K = ne[1] * ne[2] * (ndim == 4 ? ne[3] : 1);
        int8_t *q = malloc((size_t)(O * K));
        float *ws = malloc(sizeof(float) * (size_t)O);
        if (!q || !ws) {
            free(q), free(ws), free(meta);
            gd_errf(err, errlen, "out of memory");
            return -1;
        }
        for (int64_t r = 0; r < O; r++) {
            double mx = 0;
            for (int64_t k = 0; quick && k < K; k++) mx = fmax(mx, fabs((double)w[r * K + k]));
            ws[r] = quick ? (float)(mx > 0 ? mx / 127 : 1.0) : (float)gd_quant_weight_scale(w + r * K, K, o->p);
            gd_quant_weight_row(w + r * K, K, ws[r], q + r * K);
        }
        double as;
        int az;
        gd_quant_act_params(l->h, o->p, &as, &az);
        int rc = gd_model_set_quant(m, l->name, q, ws, (float)as, az, err, errlen);
        free(q), free(ws);
        if (rc) {
            free(meta);
            return -1;
        }
        snprintf(tmp, sizeof tmp, "%s\"%s\"", *nq ? "," : "", l->name);
        fail |= append(&meta, &len, &cap, tmp);
        ++*nq;
    }
    fail |= append(&meta, &len, &cap, "],\"float\":[");
    for (int i = 0, k = 0; i < c->n && !fail; i++)
        if (c->L[i].keep) {
            snprintf(tmp, sizeof tmp, "%s\"%s\"", k++ ? "," : "", c->L[i].name);
            fail |= append(&meta, &len, &cap, tmp);
        }
    fail |= append(&meta, &len, &cap, "]}");
    if (fail || gd_model_set_quant_meta(m, meta)) {
        free(meta);
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    free(meta);
    return 0;
}

static void calib_free(calib *c) {
    for (int i = 0; i < c->n; i++) free(c->L[i].h);
    free(c->L);
    memset(c, 0, sizeof *c);
}

int gd_quantize_models(gd_model *unet, gd_model *cls, const gd_quant_opts *o, gd_quant_report *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    if (o->samples < 1 || o->steps < 1 || o->batch < 1 || !(o->p > 0) || !isfinite(o->t_mean) || !(o->t_std >= 0)) {
        gd_errf(err, errlen, "calibration settings out of range");
        return -1;
    }
    if (gd_model_config(unet)->kind == GD_NET_CLASSIFIER || (cls && gd_model_config(cls)->kind != GD_NET_CLASSIFIER)) {
        gd_errf(err, errlen, "quantize a diffusion model (and optionally its classifier)");
        return -1;
    }
    if (gd_model_quant_count(unet) || (cls && gd_model_quant_count(cls))) {
        gd_errf(err, errlen, "the model is already quantized");
        return -1;
    }
    calib_set cs = {0};
    calib cu = {.keep = o->keep}, cc = {.keep = o->keep};
    double t0 = gd_time_now();
    int rc = -1;
    if (draw_set(unet, o, &cs, err, errlen)) goto out;
    if (observe_net(unet, 0, &cs, o, &cu, err, errlen)) goto out;
    if (cls && observe_net(cls, 1, &cs, o, &cc, err, errlen)) goto out;
    for (const char *k = o->keep; k && *k;) { /* a name that is no conv of either network is a typo */
        const char *e = strchr(k, ',');
        size_t n = e ? (size_t)(e - k) : strlen(k);
        int found = 0;
        for (int i = 0; i < cu.n && !found; i++) found = strlen(cu.L[i].name) == n && !strncmp(cu.L[i].name, k, n);
        for (int i = 0; i < cc.n && !found; i++) found = strlen(cc.L[i].name) == n && !strncmp(cc.L[i].name, k, n);
        if (!found) {
            gd_errf(err, errlen, "--keep-float: '%.*s' is not a convolution weight of the model%s", (int)n, k, cls ? " or the classifier" : "");
            goto out;
        }
        k = e ? e + 1 : NULL;
    }
    r->t_calib_s = gd_time_now() - t0;
    r->calib_inputs = cs.n;
    t0 = gd_time_now();
    if (apply(unet, &cu, o, 0, &r->unet_layers, &r->unet_float, err, errlen)) goto out;
    if (cls && apply(cls, &cc, o, 0, &r->cls_layers, &r->cls_float, err, errlen)) goto out;
    r->t_search_s = gd_time_now() - t0;
    rc = 0;
out:
    calib_free(&cu);
    calib_free(&cc);
    free(cs.x), free(cs.t), free(cs.y);
    return rc;
}

int gd_quantize_quick(gd_model *m, int *layers, char *err, size_t errlen) {
    const gd_config *cf = gd_model_config(m);
    const int per = cf->in_channels * cf->image_size * cf->image_size;
    gd_quant_opts o;
    gd_quant_defaults(&o);
    o.samples = 2, o.batch = 2;
    calib_set cs = {.n = 2, .per = per};
    cs.x = malloc(sizeof(float) * 2 * (size_t)per);
    cs.t = calloc(2, sizeof(float));
    cs.y = calloc(2, sizeof(int32_t));
    calib c = {0};
    int rc = -1, nf;
    if (!cs.x || !cs.t || !cs.y) {
        gd_errf(err, errlen, "out of memory");
        goto out;
    }
    gd_rng r;
    gd_rng_seed(&r, 5);
    gd_rng_randn(&r, cs.x, 2 * (int64_t)per);
    cs.t[0] = 500, cs.t[1] = 100;
    if (observe_net(m, cf->kind == GD_NET_CLASSIFIER, &cs, &o, &c, err, errlen)) goto out;
    rc = apply(m, &c, &o, 1, layers, &nf, err, errlen);
out:
    calib_free(&c);
    free(cs.x), free(cs.t), free(cs.y);
    return rc;
}
