/* The sampling pipeline as a library: one job description (models or a preset, sampler and its
 * settings, the guidance terms, classes, seeds, batch size, threads, an optional upsampling stage)
 * that the library validates and runs, returning images, labels and the metadata record.
 * ddpm-sample is this plus flag parsing and file writing; any other front end (a server, a
 * binding, an evaluation harness) gets the same bytes by filling the same job.
 *
 *     gd_job job;
 *     gd_job_defaults(&job);
 *     job.classes = "sneaker"; job.guidance = "entropy"; job.seed = 7; job.seed_given = 1;
 *     gd_pipeline *p = gd_pipeline_new(&job, err, sizeof err);   // validates, loads, plans labels
 *     gd_result r;
 *     if (p && !gd_pipeline_run(p, &r, err, sizeof err)) { ... r.images ...; gd_result_free(&r); }
 *     gd_pipeline_free(p);
 *
 * Errors follow the library's convention (include/gd_util.h): 0 / -1 or NULL, one line in err. */
#ifndef GD_PIPELINE_H
#define GD_PIPELINE_H
#include <stdint.h>
#include <stdio.h>

#define GD_DEFAULT_MODEL "models/fashion_diffusion.safetensors"
#define GD_DEFAULT_CLASSIFIER "models/fashion_classifier_ce.safetensors"
#define GD_MAX_EXPERTS 8

typedef struct {
    const char *path;
    double t_lo, t_hi; /* guides original timesteps t_lo <= t < t_hi (PPAP's multi-experts) */
} gd_job_classifier;

typedef struct {
    /* ---- models: explicit paths, or a preset that fills in what is left open ---- */
    const char *preset;            /* name in configs/presets, or a .json path */
    const char *models_dir;        /* where a preset's converted checkpoints are (default models/) */
    const char *model;             /* NULL: the preset's, else GD_DEFAULT_MODEL */
    const char *model_config;      /* a config file for a model without an embedded one */
    gd_job_classifier classifiers[GD_MAX_EXPERTS];
    int n_classifiers;             /* 0: the preset's, else GD_DEFAULT_CLASSIFIER (when guided) */
    const char *classifier_config;
    const char *upsampler, *upsampler_config; /* a super-resolution stage after the base model */
    /* guided-diffusion flags ("$MODEL_FLAGS"; a classifier's: "--image_size N $CLASSIFIER_FLAGS")
     * instead of a config file, for weights without an embedded config (a .pt) */
    const char *model_flags, *classifier_flags, *upsampler_flags;
    const char *base_npz;          /* upsample these images instead of sampling a base model */
    /* ---- sampler ---- */
    const char *sampler;           /* ddpm, ddim, or an ODE solver: dpm++2m, dpm++3m, dpm++2s, unipc;
                                      NULL: the preset's, else ddpm */
    int steps;                     /* 0: default (250 ddpm, 25 ddim, 20 model evaluations for the ODE solvers) */
    const char *respacing;         /* guided-diffusion timestep_respacing; overrides steps */
    double eta;                    /* DDIM only */
    int clip;                      /* clip the x0 prediction to [-1, 1] (default 1) */
    const char *up_respacing;      /* the upsampler's respacing (default "250") */
    int up_steps;
    /* ---- the ODE solvers (fast-solvers.md): steps counts model evaluations, no respacing ---- */
    const char *time_schedule;     /* uniform, logsnr or quadratic; NULL: logsnr up to 64x64, else uniform */
    const char *thresholding;      /* dynamic thresholding "RATIO[:MAX]" of the guided x0 (NULL: none; clip applies) */
    int order;                     /* UniPC's order, 1..3 (0: 2) */
    const char *unipc_variant;     /* bh1 or bh2 (NULL: bh2) */
    /* ---- guidance ---- */
    const char *guidance;          /* none, classifier, entropy, cfg or a comma list; NULL: preset's or none */
    double scale;                  /* classifier scale; NaN: the preset's, else 1 */
    double cfg_scale;              /* classifier-free weight (default 3) */
    int eds_t_lo, eds_t_hi;        /* EDS only for original t in [lo, hi) (default everywhere) */
    int uncond;                    /* feed a null-class model the null label */
    /* ---- what and how many ---- */
    const char *classes;           /* ids or names, a comma list (cycled) or "random" (NULL) */
    int num_samples;               /* 0: 16, or the image count of base_npz */
    int batch_size;                /* images per network call (default 16); never changes the images */
    int threads;                   /* 0: leave the library's setting */
    const char *precision;         /* "fp32" (NULL) or "bf16": the convolutions' arithmetic (gd_set_precision);
                                      bf16 on a CPU without AVX512-BF16 runs fp32 and says so */
    uint64_t seed;                 /* sample i uses seed + i */
    int seed_given;                /* 0: a seed from the clock (reported in the result) */
    long long first_index;         /* number the samples from here (shards): seeds, class cycling */
    int rng_torch;                 /* one PyTorch generator for the batch, as guided-diffusion draws */
    const char *tool;              /* "tool" in the metadata record (NULL: none) */
    /* ---- callbacks (optional) ---- */
    void (*progress)(void *user, int done, int total);     /* steps done over all batches and stages */
    /* after each step: the x0 prediction [n, C, H, W] of samples first .. first+n-1 */
    void (*preview)(void *user, long long first, int n, int step, int steps, const float *x0, int C, int H, int W);
    void *user;
} gd_job;

typedef struct {
    uint8_t *images;               /* [n, h, w, c] of the last stage */
    int n, h, w, c;
    uint8_t *base_images;          /* a cascade's base samples [n, base_h, base_w, c], else NULL */
    int base_h, base_w, base_c;
    int64_t *labels;               /* [n] when labelled, else NULL */
    char *metadata;                /* the record (JSON, one line): what ran, seeds, labels */
    uint64_t seed;
    int steps_total;               /* steps run, over batches and stages */
    double t_plan, t_sample, t_base, t_up; /* seconds: planning, sampling (base and upsampler) */
    int base_steps, up_steps, batches;
} gd_result;

typedef struct gd_pipeline gd_pipeline;

void gd_job_defaults(gd_job *job);
/* Validates the job, resolves the preset, loads and checks the models, draws the labels and builds
 * the schedules; NULL with one line in err when anything is wrong (before any sampling). */
gd_pipeline *gd_pipeline_new(const gd_job *job, char *err, size_t errlen);
/* What is about to run, as the lines ddpm-sample prints (each starts with prefix): the summary
 * (preset, classes, seed, sampler, guidance, stages) and/or the verbose details (build, models). */
void gd_pipeline_describe(const gd_pipeline *p, FILE *f, const char *prefix, int summary, int verbose);
/* Samples every image; r is the caller's to free with gd_result_free. */
int gd_pipeline_run(gd_pipeline *p, gd_result *r, char *err, size_t errlen);
void gd_pipeline_free(gd_pipeline *p);
void gd_result_free(gd_result *r);

/* Every preset of configs/presets (here or beside the executable), a description and what it runs. */
int gd_presets_list(FILE *f, char *err, size_t errlen);
#endif
