/* The ADM U-Net as the sampler's denoiser, with classifier-free guidance as one batched pass over
 * [conditional | null-label] copies of x; for a super-resolution U-Net every pass also sees the
 * caller's low-resolution images. */
#include "gd_guidance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int eval(gd_denoiser *base, const float *x, int k, int t, float *out) {
    (void)k;
    gd_net_denoiser *d = (gd_net_denoiser *)base;
    int cfg = d->cfg_scale != 1.0f, N = d->N, per = d->C * d->HW;
    int copies = cfg ? 2 : 1;
    float *xi = gd_net_x(d->net);
    int32_t *yi = gd_net_y(d->net);
    float *lr = gd_net_low_res(d->net);
    for (int c = 0; c < copies; c++) {
        memcpy(xi + (int64_t)c * N * per, x, sizeof(float) * (size_t)N * per);
        if (lr) memcpy(lr + (int64_t)c * N * d->low_per, d->low_res, sizeof(float) * (size_t)N * d->low_per);
        for (int n = 0; n < N; n++) {
            gd_net_t(d->net)[c * N + n] = (float)t;
            if (yi) yi[c * N + n] = c ? d->null_label : d->y[n];
        }
    }
    if (gd_net_forward(d->net)) return -1;
    const float *o = gd_net_output(d->net)->data;
    int64_t on = (int64_t)d->out_ch * d->HW;
    if (!cfg) {
        memcpy(out, o, sizeof(float) * (size_t)(N * on));
        return 0;
    }
    const float s = d->cfg_scale;
    for (int n = 0; n < N; n++) {
        const float *oc = o + n * on, *ou = o + (N + n) * on;
        float *dst = out + n * on;
        for (int64_t i = 0; i < per; i++) dst[i] = ou[i] + s * (oc[i] - ou[i]);
        memcpy(dst + per, oc + per, sizeof(float) * (size_t)(on - per));
    }
    return 0;
}

int gd_net_denoiser_init(gd_net_denoiser *d, gd_model *unet, int N, const int32_t *y, float cfg_scale, char *err,
                         size_t errlen) {
    memset(d, 0, sizeof *d);
    const gd_config *cfg = gd_model_config(unet);
    if (cfg->kind == GD_NET_CLASSIFIER) {
        snprintf(err, errlen, "the diffusion model must be a U-Net (model \"unet\" or \"superres\")");
        return -1;
    }
    if (cfg_scale != 1.0f && !cfg->null_class) {
        snprintf(err, errlen, "classifier-free guidance needs a model trained with a null class (null_class)");
        return -1;
    }
    if (cfg->class_cond && !y) {
        snprintf(err, errlen, "class-conditional model needs labels");
        return -1;
    }
    d->net = gd_net_new(unet, cfg_scale != 1.0f ? 2 * N : N, 0, err, errlen);
    if (!d->net) return -1;
    d->base.eval = eval;
    d->base.learned_sigma = cfg->learn_sigma;
    d->N = N;
    d->C = cfg->in_channels;
    d->HW = cfg->image_size * cfg->image_size;
    d->out_ch = gd_config_out_channels(cfg);
    d->y = cfg->class_cond ? y : NULL;
    d->cfg_scale = cfg_scale;
    d->null_label = cfg->num_classes;
    if (cfg->kind == GD_NET_SUPERRES) {
        d->low_per = cfg->in_channels * cfg->small_size * cfg->small_size;
        d->low_res = calloc((size_t)N * d->low_per, sizeof(float));
        if (!d->low_res) {
            gd_net_denoiser_free(d);
            snprintf(err, errlen, "out of memory");
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
