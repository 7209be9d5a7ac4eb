/* Samplers (DDPM ancestral, DDIM with eta) over a denoiser callback, with guidance as a chain of
 * composable terms that see the whole step. The sampler knows nothing about networks:
 * src/diffusion/denoise_net.c and src/diffusion/guidance.c adapt the ADM networks to these
 * callbacks. Every callback returns 0, or -1 with one line in err (include/gd_util.h). */
#ifndef GD_SAMPLE_H
#define GD_SAMPLE_H
#include "gd_diffusion.h"

#include <stddef.h>
#include <stdint.h>

/* Writes the model output for x [N,C,H,W] at original timestep t into out: [N, C, H, W] epsilon,
 * or [N, 2C, H, W] epsilon then the learned-range value v. t is real-valued so that solvers on a
 * continuous time grid can call it; DDPM/DDIM pass guided-diffusion's integer timesteps. */
typedef struct gd_denoiser gd_denoiser;
struct gd_denoiser {
    int (*eval)(gd_denoiser *self, const float *x, double t, float *out, char *err, size_t errlen);
    int learned_sigma;
};

/* What a solver knows when it applies guidance at one evaluation. */
typedef struct {
    const float *x;       /* x_t [N,C,H,W] */
    double t;             /* original (model) timestep, real-valued */
    const float *eps;     /* the denoiser's epsilon [N,C,H,W] (C channels of each sample) */
    const float *x0;      /* the x0 prediction the solver holds (DDPM/DDIM: clipped when clip_denoised) */
    double alpha, sigma;  /* sqrt(abar_t), sqrt(1 - abar_t): x_t = alpha x0 + sigma eps */
    const int32_t *y;     /* [N] labels the guidance steers to (NULL when there are none) */
    int N, C, H, W;
} gd_step;

/* The space a term's correction lives in. Score: d/dx log p(y|x_t), already scaled (ADM's cond_fn).
 * Eps: a change of epsilon. gd_guidance_score() turns a chain into one score-space gradient
 * (eps-space d contributes -d / sigma_t: eps - sigma g = eps + d), and each solver applies that
 * gradient by its own rule: DDPM shifts the mean by Sigma g (condition_mean), DDIM shifts epsilon
 * by -sqrt(1 - abar) g (condition_score), the ODE solvers use eps - sigma_t g. */
typedef enum { GD_GUIDE_SCORE, GD_GUIDE_EPS } gd_guide_space;

/* Adds its correction into g [N,C,H,W] (in the term's space). A term may do nothing at some
 * timesteps (an expert outside its range). Terms are chained through next. */
typedef struct gd_guidance gd_guidance;
struct gd_guidance {
    int (*add)(gd_guidance *self, const gd_step *st, float *g, char *err, size_t errlen);
    gd_guide_space space;
    gd_guidance *next;
};

/* Sums every term of chain at st into score (zeroed first), using eps_work [N*C*H*W] for eps-space
 * terms. Returns 0 or -1 with err. */
int gd_guidance_score(gd_guidance *chain, const gd_step *st, float *score, float *eps_work, char *err, size_t errlen);

/* Fills noise [N,C,H,W] for the draw with index `draw` (0 = x_T, then one per step). */
typedef struct gd_noise gd_noise;
struct gd_noise {
    int (*fill)(gd_noise *self, int draw, float *out);
};

typedef struct {
    const gd_diffusion *diffusion;
    gd_var_type var_type;   /* ignored by DDIM */
    int ddim;
    float eta;
    int clip_denoised;
    int N, C, H, W;
    gd_denoiser *model;
    gd_guidance *guidance;  /* NULL for none */
    const int32_t *y;       /* [N] labels for the guidance terms (may change between runs) */
    gd_noise *noise;
    /* optional: called after each step with the number of steps done and the step's x0
     * prediction [N,C,H,W] (the clipped, unguided one DDPM/DDIM compute) */
    void (*on_step)(void *user, int done, int total, const float *x0);
    void *user;
} gd_sampler_params;

typedef struct gd_sampler gd_sampler;
/* Allocates every buffer the loop needs; the loop itself allocates nothing. */
gd_sampler *gd_sampler_new(const gd_sampler_params *p);
void gd_sampler_free(gd_sampler *s);
/* Draws x_T (draw 0) into x. */
int gd_sampler_init(gd_sampler *s, float *x, char *err, size_t errlen);
/* One step at respaced index k (K-1 down to 0), in place on x. */
int gd_sampler_step(gd_sampler *s, float *x, int k, char *err, size_t errlen);
/* init + all steps: x receives the final sample. */
int gd_sampler_run(gd_sampler *s, float *x, char *err, size_t errlen);

/* Noise sources. Per-sample: sample i of the batch draws from its own PyTorch-compatible
 * generator seeded with seeds[i], so an image depends only on its seed, not on the batch it ran
 * in. Torch: one generator draws the whole batch per call, as guided-diffusion's randn_like. */
#include "gd_rng.h"
typedef struct {
    gd_noise base;
    gd_rng *gens; /* one per sample, or one for the batch */
    int N, per, per_sample;
} gd_rng_noise;
int gd_rng_noise_init(gd_rng_noise *z, int N, int per, int per_sample);
/* Reseeds: seeds[i] per sample, or seeds[0] for the batch generator. */
void gd_rng_noise_seed(gd_rng_noise *z, const uint64_t *seeds);
void gd_rng_noise_free(gd_rng_noise *z);
#endif
