/* The ADM networks as sampler callbacks: the U-Net denoiser, classifier-free guidance as a
 * denoiser wrapper, and classifier guidance terms (ADM's gradient, optionally entropy-scaled as
 * in ED-DPM's EDS). The pieces compose: cfg wraps any denoiser, classifier terms chain. */
#ifndef GD_GUIDANCE_H
#define GD_GUIDANCE_H
#include "gd_model.h"
#include "gd_sample.h"

typedef struct gd_arena gd_arena; /* include/gd_alloc.h */

typedef struct {
    gd_denoiser base;
    gd_net *net;          /* batch N */
    int N, C, HW, out_ch;
    const int32_t *y;     /* [N] labels the network sees, NULL for unconditional models */
    float *low_res;       /* superres: [N, C, small, small] in [-1, 1], filled by the caller */
    int low_per;          /* its elements per sample */
} gd_net_denoiser;

/* A U-Net at batch N; y is read at every evaluation (the caller may change it between runs). A
 * super-resolution model (kind GD_NET_SUPERRES) gets d->low_res, which the caller fills before
 * sampling. shared: the activation arena it may share with the classifiers (NULL = its own). */
int gd_net_denoiser_init(gd_net_denoiser *d, gd_model *unet, int N, const int32_t *y, gd_arena *shared, char *err,
                         size_t errlen);
void gd_net_denoiser_free(gd_net_denoiser *d);

/* Classifier-free guidance around a denoiser of batch 2N whose labels are [y | null]: x goes to both
 * halves in one batched pass, eps = eps(null) + w (eps(y) - eps(null)) on the epsilon channels, the
 * learned-variance channels from the conditional half (guided-diffusion / the spec's wrapper). */
typedef struct {
    gd_denoiser base;
    gd_denoiser *inner;
    int N, per, out_per;  /* out_per: elements of one sample of the inner output */
    float w;
    float *x2, *out2;
} gd_cfg_denoiser;

int gd_cfg_denoiser_init(gd_cfg_denoiser *c, gd_denoiser *inner, int N, int per, float w, char *err, size_t errlen);
void gd_cfg_denoiser_free(gd_cfg_denoiser *c);

/* H(p) below this is treated as this, so EDS's scale log(C)/H stays finite on a one-hot prediction. */
#define GD_EDS_MIN_ENTROPY 1e-8

/* A score-space term: scale * grad_x log p(y|x_t) from a noise-aware classifier at the step's x_t
 * and t, with the step's labels. */
typedef struct {
    gd_guidance base;
    gd_net *net;          /* classifier planned with its input gradient, batch N */
    int N, per, K;
    float scale;
    int entropy;          /* EDS: per-sample scale * log(K) / H(p(.|x_t)) */
    double eds_t_lo, eds_t_hi; /* EDS applies when eds_t_lo <= t < eds_t_hi, plain scale elsewhere */
    double t_lo, t_hi;    /* this classifier guides when t_lo <= t < t_hi (multi-expert ranges) */
    float *grad;
    double *last_scale;   /* [N]: the per-sample scale used at the last active step */
} gd_classifier_guidance;

int gd_classifier_guidance_init(gd_classifier_guidance *g, gd_model *classifier, int N, float scale, int entropy,
                                gd_arena *shared, char *err, size_t errlen);
void gd_classifier_guidance_free(gd_classifier_guidance *g);
#endif
