/* Samplers (DDPM ancestral, DDIM with eta) over a denoiser callback, with guidance as a list of
 * composable gradient terms. The sampler knows nothing about networks: src/diffusion/denoise_net.c and
 * src/diffusion/guidance.c adapt the ADM networks to these callbacks. */
#ifndef GD_SAMPLE_H
#define GD_SAMPLE_H
#include "gd_diffusion.h"

#include <stdint.h>

/* Writes the model output for x [N,C,H,W] at respaced step k (original timestep t) into out:
 * [N, C, H, W] epsilon, or [N, 2C, H, W] epsilon then the learned-range value v. Returns 0. */
typedef struct gd_denoiser gd_denoiser;
struct gd_denoiser {
    int (*eval)(gd_denoiser *self, const float *x, int k, int t, float *out);
    int learned_sigma;
};

/* Adds its guidance gradient (already scaled: s * grad log p(y|x_t)) into g [N,C,H,W]. Terms are
 * chained; a term may do nothing at some timesteps (e.g. an expert outside its range). */
typedef struct gd_guidance gd_guidance;
struct gd_guidance {
    int (*add_grad)(gd_guidance *self, const float *x, int t, float *g);
    gd_guidance *next;
};

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
    gd_noise *noise;
    /* optional: called after each step with the number of steps done */
    void (*progress)(void *user, int done, int total);
    void *progress_user;
} gd_sampler_params;

typedef struct gd_sampler gd_sampler;
/* Allocates every buffer the loop needs; the loop itself allocates nothing. */
gd_sampler *gd_sampler_new(const gd_sampler_params *p);
void gd_sampler_free(gd_sampler *s);
/* Draws x_T (draw 0) into x. */
int gd_sampler_init(gd_sampler *s, float *x);
/* One step at respaced index k (K-1 down to 0), in place on x. */
int gd_sampler_step(gd_sampler *s, float *x, int k);
/* init + all steps: x receives the final sample. */
int gd_sampler_run(gd_sampler *s, float *x);

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
