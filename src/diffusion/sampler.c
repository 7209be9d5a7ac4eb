/* DDPM ancestral and DDIM steps, as guided-diffusion's p_sample / ddim_sample: schedule values
 * are double and rounded to float where they meet the float32 tensors, as _extract_into_tensor
 * does, so trajectories match PyTorch to float rounding. */
#include "gd_sample.h"
#include "gd_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gd_sampler {
    gd_sampler_params p;
    int64_t n; /* N*C*H*W */
    float *out, *g, *noise, *xstart, *eps, *work;
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
    s->eps = malloc(sizeof(float) * n);
    s->work = malloc(sizeof(float) * n);
    if (!s->out || !s->g || !s->noise || !s->xstart || !s->eps || !s->work) {
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
    free(s->eps);
    free(s->work);
    free(s);
}

int gd_sampler_init(gd_sampler *s, float *x, char *err, size_t errlen) {
    if (s->p.noise->fill(s->p.noise, 0, x)) {
        gd_errf(err, errlen, "noise source failed");
        return -1;
    }
    return 0;
}

int gd_guidance_score(gd_guidance *chain, const gd_step *st, float *score, float *eps_work, char *err, size_t errlen) {
    const int64_t n = (int64_t)st->N * st->C * st->H * st->W;
    memset(score, 0, sizeof(float) * (size_t)n);
    int any_eps = 0;
    for (gd_guidance *gt = chain; gt; gt = gt->next) {
        if (gt->space == GD_GUIDE_EPS) {
            if (!any_eps) memset(eps_work, 0, sizeof(float) * (size_t)n);
            any_eps = 1;
        }
        if (gt->add(gt, st, gt->space == GD_GUIDE_EPS ? eps_work : score, err, errlen)) return -1;
    }
    if (any_eps) { /* eps + d = eps - sigma g  =>  g = -d / sigma */
        const float inv = (float)(-1.0 / st->sigma);
        for (int64_t i = 0; i < n; i++) score[i] += inv * eps_work[i];
    }
    return 0;
}

/* The step every guidance term sees: x_t, t, the model's epsilon (contiguous) and x0, the
 * schedule's alpha and sigma at t. */
static void step_view(gd_sampler *s, const float *x, int k, gd_step *st) {
    const gd_sampler_params *p = &s->p;
    const gd_diffusion *d = p->diffusion;
    const int64_t per = (int64_t)p->C * p->H * p->W;
    const int ls = p->model->learned_sigma;
    for (int n = 0; n < p->N; n++) memcpy(s->eps + n * per, s->out + n * per * (ls ? 2 : 1), sizeof(float) * (size_t)per);
    *st = (gd_step){.x = x, .t = d->timestep_map[k], .eps = s->eps, .x0 = s->xstart,
                    .alpha = sqrt(d->alphas_cumprod[k]), .sigma = sqrt(1.0 - d->alphas_cumprod[k]), .y = p->y,
                    .N = p->N, .C = p->C, .H = p->H, .W = p->W};
}

/* A step's failure, with where it happened: "step 3 of 25 (t=...): what". NaN/Inf weights (a
 * corrupt file) would otherwise run to the end and save black images. */
static int step_fail(const gd_sampler *s, int k, const char *what, char *err, size_t errlen) {
    const gd_diffusion *d = s->p.diffusion;
    gd_errf(err, errlen, "step %d of %d (t=%d): %s", d->K - k, d->K, d->timestep_map[k], what);
    return -1;
}

/* Finite outputs can still overflow the update (a learned variance of 1e30). */
static int finite_x(const gd_sampler *s, const float *x, int k, char *err, size_t errlen) {
    if (gd_all_finite(x, s->n)) return 0;
    return step_fail(s, k, "the sample became non-finite (NaN/Inf); the model's outputs are out of range", err, errlen);
}

int gd_sampler_step(gd_sampler *s, float *x, int k, char *err, size_t errlen) {
    const gd_sampler_params *p = &s->p;
    const gd_diffusion *d = p->diffusion;
    const int t = d->timestep_map[k];
    const int64_t hw = (int64_t)p->H * p->W, per = p->C * hw;
    if (p->model->eval(p->model, x, t, s->out, err, errlen)) {
        char why[512];
        snprintf(why, sizeof why, "%s", err ? err : "");
        return step_fail(s, k, why, err, errlen); /* the step it failed at */
    }
    if (!gd_all_finite(s->out, s->n * (p->model->learned_sigma ? 2 : 1)))
        return step_fail(s, k, "the model produced non-finite values (NaN/Inf); its weights may be corrupt", err, errlen);
    if (p->noise->fill(p->noise, d->K - k, s->noise)) {
        gd_errf(err, errlen, "noise source failed");
        return -1;
    }
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
    const int guided = p->guidance != NULL;
    if (guided) {
        gd_step st;
        step_view(s, x, k, &st);
        if (gd_guidance_score(p->guidance, &st, s->g, s->work, err, errlen)) return -1;
        if (!gd_all_finite(s->g, s->n))
            return step_fail(s, k, "the guidance produced non-finite values (NaN/Inf); a classifier's weights may be corrupt",
                             err, errlen);
    }

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
        return finite_x(s, x, k, err, errlen);
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
    return finite_x(s, x, k, err, errlen);
}

int gd_sampler_run(gd_sampler *s, float *x, char *err, size_t errlen) {
    if (gd_sampler_init(s, x, err, errlen)) return -1;
    const int K = s->p.diffusion->K;
    for (int k = K - 1; k >= 0; k--) {
        if (gd_sampler_step(s, x, k, err, errlen)) return -1;
        if (s->p.on_step) s->p.on_step(s->p.user, K - k, K, s->xstart);
    }
    return 0;
}
