/* The ADM U-Net as the sampler's denoiser (for a super-resolution U-Net every pass also sees the
 * caller's low-resolution images), and classifier-free guidance as a wrapper around any
 * denoiser: one batched pass over [conditional | null-label] copies of x. */
#include "gd_guidance.h"
#include "gd_util.h"

#include <stdlib.h>
#include <string.h>

static int net_eval(gd_denoiser *base, const float *x, double t, float *out, char *err, size_t errlen) {
    gd_net_denoiser *d = (gd_net_denoiser *)base;
    const int N = d->N, per = d->C * d->HW;
    memcpy(gd_net_x(d->net), x, sizeof(float) * (size_t)N * per);
    float *lr = gd_net_low_res(d->net);
    if (lr) memcpy(lr, d->low_res, sizeof(float) * (size_t)N * d->low_per);
    int32_t *yi = gd_net_y(d->net);
    for (int n = 0; n < N; n++) {
        gd_net_t(d->net)[n] = (float)t;
        if (yi) yi[n] = d->y[n];
    }
    if (gd_net_forward(d->net, err, errlen)) return -1;
    const size_t n = (size_t)N * d->out_ch * d->HW;
    memcpy(out, gd_net_output(d->net)->data, sizeof(float) * n);
    /* here, so that every sampler and solver gets it */
    if (!gd_all_finite(out, (int64_t)n)) {
        gd_errf(err, errlen, "the model produced non-finite values (NaN/Inf); its weights may be corrupt");
        return -1;
    }
    return 0;
}

int gd_net_denoiser_init(gd_net_denoiser *d, gd_model *unet, int N, const int32_t *y, gd_arena *shared, char *err,
                         size_t errlen) {
    memset(d, 0, sizeof *d);
    const gd_config *cfg = gd_model_config(unet);
    if (cfg->kind == GD_NET_CLASSIFIER) {
        gd_errf(err, errlen, "the diffusion model must be a U-Net (model \"unet\" or \"superres\")");
        return -1;
    }
    if (cfg->class_cond && !y) {
        gd_errf(err, errlen, "class-conditional model needs labels");
        return -1;
    }
    d->net = gd_net_new_in(unet, N, 0, shared, err, errlen);
    if (!d->net) return -1;
    d->base.eval = net_eval;
    d->base.learned_sigma = cfg->learn_sigma;
    d->N = N;
    d->C = cfg->in_channels;
    d->HW = cfg->image_size * cfg->image_size;
    d->out_ch = gd_config_out_channels(cfg);
    d->y = cfg->class_cond ? y : NULL;
    if (cfg->kind == GD_NET_SUPERRES) {
        d->low_per = cfg->in_channels * cfg->small_size * cfg->small_size;
        d->low_res = calloc((size_t)N * d->low_per, sizeof(float));
        if (!d->low_res) {
            gd_net_denoiser_free(d);
            gd_errf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

void gd_net_denoiser_free(gd_net_denoiser *d) {
    gd_net_free(d->net);
    free(d->low_res);
    memset(d, 0, sizeof *d);
}

static int cfg_eval(gd_denoiser *base, const float *x, double t, float *out, char *err, size_t errlen) {
    gd_cfg_denoiser *c = (gd_cfg_denoiser *)base;
    const int N = c->N, per = c->per, on = c->out_per;
    memcpy(c->x2, x, sizeof(float) * (size_t)N * per);
    memcpy(c->x2 + (size_t)N * per, x, sizeof(float) * (size_t)N * per);
    if (c->inner->eval(c->inner, c->x2, t, c->out2, err, errlen)) return -1;
    const float w = c->w;
    for (int n = 0; n < N; n++) {
        const float *oc = c->out2 + (int64_t)n * on, *ou = c->out2 + (int64_t)(N + n) * on;
        float *dst = out + (int64_t)n * on;
        for (int i = 0; i < per; i++) dst[i] = ou[i] + w * (oc[i] - ou[i]);
        memcpy(dst + per, oc + per, sizeof(float) * (size_t)(on - per));
    }
    return 0;
}

int gd_cfg_denoiser_init(gd_cfg_denoiser *c, gd_denoiser *inner, int N, int per, float w, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->base.eval = cfg_eval;
    c->base.learned_sigma = inner->learned_sigma;
    c->inner = inner;
    c->N = N;
    c->per = per;
    c->out_per = per * (inner->learned_sigma ? 2 : 1);
    c->w = w;
    c->x2 = malloc(sizeof(float) * (size_t)2 * N * per);
    c->out2 = malloc(sizeof(float) * (size_t)2 * N * c->out_per);
    if (!c->x2 || !c->out2) {
        gd_cfg_denoiser_free(c);
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void gd_cfg_denoiser_free(gd_cfg_denoiser *c) {
    free(c->x2);
    free(c->out2);
    memset(c, 0, sizeof *c);
}
