/* The ADM networks as sampler callbacks: a U-Net denoiser (optionally classifier-free guided) and
 * classifier guidance terms (ADM's gradient, optionally entropy-scaled as in ED-DPM's EDS). */
#ifndef GD_GUIDANCE_H
#define GD_GUIDANCE_H
#include "gd_model.h"
#include "gd_sample.h"

typedef struct {
    gd_denoiser base;
    gd_net *net;          /* batch N, or 2N when classifier-free guided */
    int N, C, HW, out_ch;
    const int32_t *y;     /* [N] labels, NULL for unconditional models */
    float cfg_scale;      /* 1 = plain conditional */
    int null_label;
    float *low_res;       /* superres: [N, C, small, small] in [-1, 1], filled by the caller */
    int low_per;          /* its elements per sample */
} gd_net_denoiser;

/* cfg_scale != 1 needs a model with null_class; eps = eps(null) + s * (eps(y) - eps(null)) on the
 * epsilon channels, the learned-variance channels from the conditional pass. A super-resolution
 * model (kind GD_NET_SUPERRES) gets d->low_res, which the caller fills before sampling. */
int gd_net_denoiser_init(gd_net_denoiser *d, gd_model *unet, int N, const int32_t *y, float cfg_scale, char *err,
                         size_t errlen);
void gd_net_denoiser_free(gd_net_denoiser *d);

/* H(p) below this is treated as this, so EDS's scale log(C)/H stays finite on a one-hot prediction. */
#define GD_EDS_MIN_ENTROPY 1e-8

typedef struct {
    gd_guidance base;
    gd_net *net;          /* classifier planned with its input gradient, batch N */
    int N, per, K;
    const int32_t *y;
    float scale;
    int entropy;          /* EDS: per-sample scale * log(K) / H(p(.|x_t)) */
    int eds_t_lo, eds_t_hi; /* EDS applies when eds_t_lo <= t < eds_t_hi, plain scale elsewhere */
    int t_lo, t_hi;       /* this classifier guides when t_lo <= t < t_hi (multi-expert ranges) */
    float *grad;
    double *last_scale;   /* [N]: the per-sample scale used at the last active step */
} gd_classifier_guidance;

int gd_classifier_guidance_init(gd_classifier_guidance *g, gd_model *classifier, int N, const int32_t *y, float scale,
                                int entropy, char *err, size_t errlen);
void gd_classifier_guidance_free(gd_classifier_guidance *g);
#endif
