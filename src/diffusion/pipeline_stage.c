/* One sampling stage of a pipeline run (the base model, or the upsampler on the base model's
 * images): per batch size a plan of the denoiser, its classifier-free wrapper and the chain of
 * classifier terms, all networks in one activation arena; per batch the seeds, labels and
 * low-resolution inputs; then the sampler. */
#include "diffusion/pipeline_internal.h"
#include "gd_alloc.h"
#include "gd_guidance.h"
#include "gd_image.h"
#include "gd_sample.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <stdlib.h>
#include <string.h>

/* Everything planned for one batch size. */
typedef struct {
    gd_arena *arena;
    gd_net_denoiser den;
    gd_cfg_denoiser cfg;
    gd_classifier_guidance guide[GD_MAX_EXPERTS];
    gd_rng_noise noise;
    gd_sampler *smp;
    gd_solver *sol;              /* instead of smp for the ODE solvers */
    int32_t *y;                  /* [2B]: the labels, then the null label (classifier-free half) */
    int B, n_cls;
} plan;

static void plan_free(plan *pl) {
    gd_sampler_free(pl->smp);
    gd_solver_free(pl->sol);
    gd_cfg_denoiser_free(&pl->cfg);
    gd_net_denoiser_free(&pl->den);
    gd_rng_noise_free(&pl->noise);
    for (int i = 0; i < pl->n_cls; i++) gd_classifier_guidance_free(&pl->guide[i]);
    gd_arena_free(pl->arena);
    free(pl->y);
    memset(pl, 0, sizeof *pl);
}

typedef struct {
    gd_pipeline *p;
    gd_stage *st;
    long long first;
    int n;
} step_ctx;

static void on_step(void *user, int done, int total, const float *x0) {
    step_ctx *c = user;
    const gd_job *j = &c->p->job;
    c->st->done++;
    if (j->progress) j->progress(j->user, c->st->done, c->st->total);
    if (j->preview) {
        const gd_config *mc = gd_model_config(c->st->model);
        j->preview(j->user, c->first, c->n, done, total, x0, mc->in_channels, mc->image_size, mc->image_size);
    }
}

/* The guidance terms of the base stage, last expert first so the chain runs in the given order. */
static int plan_guidance(gd_pipeline *p, gd_stage *st, plan *pl, gd_guidance **chain, char *err, size_t errlen) {
    *chain = NULL;
    if (!st->is_base || !p->use_classifier) return 0;
    for (int i = p->job.n_classifiers - 1; i >= 0; i--) {
        gd_classifier_guidance *g = &pl->guide[i];
        if (gd_classifier_guidance_init(g, p->cls[i], pl->B, (float)p->job.scale, p->use_entropy, pl->arena, err, errlen))
            return -1;
        pl->n_cls = pl->n_cls > i + 1 ? pl->n_cls : i + 1;
        g->t_lo = p->job.classifiers[i].t_lo;
        g->t_hi = p->job.classifiers[i].t_hi;
        g->eds_t_lo = p->job.eds_t_lo;
        g->eds_t_hi = p->job.eds_t_hi;
        g->base.next = *chain;
        *chain = &g->base;
    }
    return 0;
}

static int plan_new(gd_pipeline *p, gd_stage *st, plan *pl, int B, step_ctx *sc, char *err, size_t errlen) {
    const gd_config *mc = gd_model_config(st->model);
    const int C = mc->in_channels, S = mc->image_size, per = C * S * S;
    const int cfg = st->is_base && p->use_cfg, uncond = st->is_base && p->job.uncond;
    pl->B = B;
    pl->arena = gd_arena_new();
    pl->y = calloc((size_t)2 * B, sizeof(int32_t));
    if (!pl->arena || !pl->y) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < 2 * B; i++) pl->y[i] = mc->num_classes; /* the null label's index */
    /* --uncond: the network sees the null label (pl->y's second half); the terms still steer to y */
    if (gd_net_denoiser_init(&pl->den, st->model, cfg ? 2 * B : B, uncond ? pl->y + B : pl->y, pl->arena, err, errlen))
        return -1;
    gd_denoiser *model = &pl->den.base;
    if (cfg) {
        if (gd_cfg_denoiser_init(&pl->cfg, model, B, per, (float)p->job.cfg_scale, err, errlen)) return -1;
        model = &pl->cfg.base;
    }
    gd_guidance *chain;
    if (plan_guidance(p, st, pl, &chain, err, errlen)) return -1;
    if (gd_rng_noise_init(&pl->noise, B, per, !st->rng_torch)) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    if (st->ode) {
        gd_solver_params op = {.alphas_cumprod = st->diff->alphas_cumprod, .T = st->diff->T, .kind = p->ode_kind,
                               .order = p->order, .unipc_bh1 = p->bh1, .steps = p->ode_steps, .time_schedule = p->tsched,
                               .lower_order_final = 1,
                               .correct = p->thresholding ? GD_X0_DYNAMIC : st->clip ? GD_X0_CLIP : GD_X0_NONE,
                               .thr_ratio = p->thr_ratio, .thr_max = p->thr_max, .N = B, .C = C, .H = S, .W = S,
                               .model = model, .guidance = chain, .y = pl->y, .noise = &pl->noise.base,
                               .on_step = on_step, .user = sc};
        return (pl->sol = gd_solver_new(&op, err, errlen)) ? 0 : -1;
    }
    gd_sampler_params sp = {.diffusion = st->diff,
                            .var_type = mc->learn_sigma ? GD_VAR_LEARNED_RANGE
                                        : mc->sigma_small ? GD_VAR_FIXED_SMALL
                                                          : GD_VAR_FIXED_LARGE,
                            .ddim = st->ddim, .eta = (float)p->job.eta, .clip_denoised = st->clip,
                            .N = B, .C = C, .H = S, .W = S,
                            .model = model, .guidance = chain, .y = pl->y, .noise = &pl->noise.base,
                            .on_step = on_step, .user = sc};
    pl->smp = gd_sampler_new(&sp);
    if (!pl->smp) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* super_res_sample.py: low_res = uint8 / 127.5 - 1, NHWC -> NCHW */
static void fill_low_res(const gd_stage *st, plan *pl, int n0, int nbat) {
    const gd_config *mc = gd_model_config(st->model);
    const int lper = mc->in_channels * mc->small_size * mc->small_size;
    for (int i = 0; i < nbat; i++)
        gd_from_uint8(st->low_nhwc + (size_t)((n0 + i) % st->low_count) * lper, mc->in_channels, mc->small_size,
                      mc->small_size, pl->den.low_res + (size_t)i * lper);
}

int gd_stage_run(gd_pipeline *p, gd_stage *st, uint8_t *images, char *err, size_t errlen) {
    const gd_config *mc = gd_model_config(st->model);
    const int C = mc->in_channels, S = mc->image_size, per = C * S * S;
    const int N = p->N, B = p->B, nb = (N + B - 1) / B;
    float *x = malloc(sizeof(float) * (size_t)B * per);
    uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)B);
    plan pl = {0};
    step_ctx sc = {p, st, 0, 0};
    int rc = -1;
    if (!x || !seeds) {
        gd_errf(err, errlen, "out of memory for a batch of %d", B);
        goto out;
    }
    gd_rng torch_gen;
    gd_rng_seed(&torch_gen, p->job.seed);
    for (int b = 0; b < nb; b++) {
        /* --rng torch runs every batch at full size and drops the extra images of the last one, as
         * guided-diffusion's classifier_sample.py does: its generator stream then matches. */
        const int n0 = b * B, nkeep = N - n0 < B ? N - n0 : B, nbat = st->rng_torch ? B : nkeep;
        if (nbat != pl.B) { /* plan once per distinct batch size (at most two) */
            double t0 = gd_time_now();
            plan_free(&pl);
            if (plan_new(p, st, &pl, nbat, &sc, err, errlen)) goto out;
            st->t_plan += gd_time_now() - t0;
        }
        double t0 = gd_time_now();
        if (st->rng_torch) { /* guided-diffusion: one generator for the run; per batch labels, then randn */
            pl.noise.gens[0] = torch_gen;
            if (p->random_class && st->is_base) gd_rng_randint(&pl.noise.gens[0], p->K, p->labels + n0, nbat);
        } else {
            for (int i = 0; i < nbat; i++) seeds[i] = (p->job.seed + (unsigned long long)(p->job.first_index + n0 + i)) ^ st->stream;
            gd_rng_noise_seed(&pl.noise, seeds);
        }
        for (int i = 0; i < nbat; i++) pl.y[i] = (int32_t)p->labels[n0 + i];
        if (pl.den.low_res) fill_low_res(st, &pl, n0, nbat);
        sc.first = p->job.first_index + n0;
        sc.n = nbat;
        if (pl.sol ? gd_solver_run(pl.sol, x, err, errlen) : gd_sampler_run(pl.smp, x, err, errlen)) goto out;
        if (st->rng_torch) torch_gen = pl.noise.gens[0];
        gd_to_uint8(x, nkeep, C, S, S, images + (size_t)n0 * per);
        st->t_sample += gd_time_now() - t0;
    }
    rc = 0;
out:
    plan_free(&pl);
    free(x);
    free(seeds);
    return rc;
}
