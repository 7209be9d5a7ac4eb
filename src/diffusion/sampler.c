/* DDPM ancestral and DDIM steps, as guided-diffusion's p_sample / ddim_sample: schedule values
 * are double and rounded to float where they meet the float32 tensors, as _extract_into_tensor
 * does, so trajectories match PyTorch to float rounding. */
#include "gd_sample.h"
#include "gd_tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gd_sampler {
    gd_sampler_params p;
    int64_t n; /* N*C*H*W */
    float *out, *g, *noise, *xstart;
};

gd_sampler *gd_sampler_new(const gd_sampler_params *p) {
    gd_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n = (int64_t)p->N * p->C * p->H * p->W;
    size_t n = (size_t)s->n;
    s->out = malloc(sizeof(float) * n * (p->model->learned_sigma ? 2 : 1));
    s->g = malloc(sizeof(float) * n);
    s->noise = malloc(sizeof(float) * n);
    s->xstart = malloc(sizeof(float) * n);
    if (!s->out || !s->g || !s->noise || !s->xstart) {
        gd_sampler_free(s);
        return NULL;
    }
    return s;
}

void gd_sampler_free(gd_sampler *s) {
    if (!s) return;
    free(s->out);
    free(s->g);
    free(s->noise);
    free(s->xstart);
    free(s);
}

int gd_sampler_init(gd_sampler *s, float *x) { return s->p.noise->fill(s->p.noise, 0, x); }

/* Sum of all guidance terms at x (zero when there are none); returns 1 if any term exists. */
static int guidance_grad(gd_sampler *s, const float *x, int t, int *rc) {
    if (!s->p.guidance) return 0;
    memset(s->g, 0, sizeof(float) * (size_t)s->n);
    for (gd_guidance *gt = s->p.guidance; gt; gt = gt->next)
        if ((*rc = gt->add_grad(gt, x, t, s->g))) return 1;
    return 1;
}

int gd_sampler_step(gd_sampler *s, float *x, int k) {
    const gd_sampler_params *p = &s->p;
    const gd_diffusion *d = p->diffusion;
    int t = d->timestep_map[k], rc;
    int64_t hw = (int64_t)p->H * p->W, per = p->C * hw;
    if ((rc = p->model->eval(p->model, x, k, t, s->out))) return rc;
    if ((rc = p->noise->fill(p->noise, d->K - k, s->noise))) return rc;
    const float sra = (float)d->sqrt_recip_alphas_cumprod[k], srm1 = (float)d->sqrt_recipm1_alphas_cumprod[k];
    int ls = p->model->learned_sigma;
    /* pred_xstart from epsilon, clipped */
    for (int n = 0; n < p->N; n++) {
        const float *eps = s->out + (int64_t)n * per * (ls ? 2 : 1);
        for (int64_t i = 0; i < per; i++) {
            float v = sra * x[n * per + i] - srm1 * eps[i];
            if (p->clip_denoised) v = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
            s->xstart[n * per + i] = v;
        }
    }
    rc = 0;
    int guided = guidance_grad(s, x, t, &rc);
    if (rc) return rc;

    if (p->ddim) {
        const float ab = (float)d->alphas_cumprod[k], abp = (float)d->alphas_cumprod_prev[k];
        const float sigma = p->eta * sqrtf((1 - abp) / (1 - ab)) * sqrtf(1 - ab / abp);
        const float c_eps = sqrtf(1 - abp - sigma * sigma), s_abp = sqrtf(abp), s_1mab = sqrtf(1 - ab);
        for (int64_t i = 0; i < s->n; i++) {
            float xs = s->xstart[i];
            float eps = (sra * x[i] - xs) / srm1;
            if (guided) { /* condition_score: shift epsilon, re-derive x0 (not re-clipped) */
                eps = eps - s_1mab * s->g[i];
                xs = sra * x[i] - srm1 * eps;
                eps = (sra * x[i] - xs) / srm1;
            }
            float mean = xs * s_abp + c_eps * eps;
            x[i] = k ? mean + sigma * s->noise[i] : mean;
        }
        return 0;
    }

    const float c1 = (float)d->posterior_mean_coef1[k], c2 = (float)d->posterior_mean_coef2[k];
    const float min_log = (float)d->posterior_log_variance_clipped[k], max_log = (float)log(d->betas[k]);
    float fixed_log;
    if (p->var_type == GD_VAR_FIXED_LARGE)
        fixed_log = (float)log(k == 0 ? d->posterior_variance[d->K > 1 ? 1 : 0] : d->betas[k]);
    else
        fixed_log = min_log;
    for (int n = 0; n < p->N; n++) {
        const float *v = ls ? s->out + (int64_t)n * per * 2 + per : NULL;
        for (int64_t i = 0; i < per; i++) {
            int64_t j = n * per + i;
            float logvar = fixed_log;
            if (p->var_type == GD_VAR_LEARNED_RANGE && v) {
                float frac = (v[i] + 1) / 2;
                logvar = frac * max_log + (1 - frac) * min_log;
            }
            float mean = c1 * s->xstart[j] + c2 * x[j];
            if (guided) mean = mean + expf(logvar) * s->g[j]; /* condition_mean: Sigma * grad */
            x[j] = k ? mean + expf(0.5f * logvar) * s->noise[j] : mean;
        }
    }
    return 0;
}

int gd_sampler_run(gd_sampler *s, float *x) {
    int rc = gd_sampler_init(s, x);
    const int K = s->p.diffusion->K;
    for (int k = K - 1; k >= 0 && !rc; k--) {
        rc = gd_sampler_step(s, x, k);
        if (s->p.progress) s->p.progress(s->p.progress_user, K - k, K);
    }
    return rc;
}
