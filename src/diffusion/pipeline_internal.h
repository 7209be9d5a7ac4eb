/* What the pipeline's files share (src/diffusion/pipeline*.c, presets.c). */
#ifndef GD_PIPELINE_INTERNAL_H
#define GD_PIPELINE_INTERNAL_H
#include "gd_diffusion.h"
#include "gd_model.h"
#include "gd_pipeline.h"
#include "gd_solver.h"

#include <cjson/cJSON.h>
#include <limits.h>

#define GD_MAX_LABELS 4096
/* the upsampler's noise for sample i comes from seed S+i xor this, a stream apart from the base's */
#define GD_UPSAMPLE_STREAM 0x7570736d706cull

typedef struct {
    char name[128], path[PATH_MAX + 160];
    cJSON *js;
    const char *description, *model, *classifier, *upsampler, *guidance, *sampler, *respacing, *up_respacing, *download;
    const char *expect_schedule;
    const char *time_schedule, *thresholding; /* an ODE solver's grid and x0 correction */
    int steps;                   /* an ODE solver's model evaluations */
    int expect_depth;
    double scale;
    int has_scale;
} gd_preset;

/* A preset by name (configs/presets/NAME.json here or beside the executable) or path. */
int gd_preset_load(const char *arg, gd_preset *p, char *err, size_t errlen);
/* The file of a released checkpoint: DIR/<stem>.safetensors, else DIR/<stem>.pt, DIR =
 * models_dir, else models/ here, else models/ beside the executable. */
void gd_preset_model_file(const char *models_dir, const char *stem, char *buf, size_t n);
int gd_file_exists(const char *path);

typedef struct {
    char **names; /* NULL when no config has them */
    int n;
} gd_class_names;

struct gd_pipeline {
    gd_job job;                  /* resolved: the preset and defaults filled in */
    gd_preset ps;
    int ddim, use_classifier, use_entropy, use_cfg;
    int ode;                     /* an ODE solver runs the base stage (ode_kind), steps = model evaluations */
    gd_solver_kind ode_kind;
    gd_time_schedule tsched;
    int ode_steps, ode_outer, order, bh1, thresholding;
    double thr_ratio, thr_max;
    const char *sampler_name;
    int bf16, bf16_refused;      /* --precision bf16 in effect / asked for on a CPU without it */
    int preset_model, preset_classifier; /* files the preset chose (its expectations apply) */
    char model_path[PATH_MAX + 200], cls_path[GD_MAX_EXPERTS][PATH_MAX + 200], up_path[PATH_MAX + 200];
    gd_model *model, *up, *cls[GD_MAX_EXPERTS];
    const gd_config *mc, *uc;    /* base model, upsampler (either may be NULL) */
    uint8_t *base_in;            /* --base-npz images, NHWC */
    int64_t *base_labels;
    int base_n;
    gd_class_names cn;
    int K, labelled, random_class, nlist, N, B;
    int list[GD_MAX_LABELS];
    int64_t *labels;             /* room for a full last batch */
    char resp[64], up_resp[64];
    gd_diffusion *diff, *up_diff;
};

/* Labels: class names from the configs, the --class list, per-sample draws. */
int gd_pipeline_labels(gd_pipeline *p, char *err, size_t errlen);
const char *gd_class_name(const gd_class_names *cn, int64_t k);
/* Samples one stage (the base model, or the upsampler on low-res images) into images (NHWC). */
typedef struct {
    gd_model *model;
    gd_diffusion *diff;
    int ddim, clip, is_base; /* is_base: the base model, where guidance and --uncond apply */
    int ode;                 /* the pipeline's ODE solver instead of DDPM/DDIM (diff: the full schedule) */
    /* superres: the base images, NHWC uint8, sample i conditioned on image i % low_count */
    const uint8_t *low_nhwc;
    int low_count;
    uint64_t stream;             /* xor'ed into the per-sample seeds */
    int rng_torch;
    double t_plan, t_sample;
    int done, total;             /* progress over the whole run */
} gd_stage;
int gd_stage_run(gd_pipeline *p, gd_stage *st, uint8_t *images, char *err, size_t errlen);
/* The metadata record of a finished run. */
char *gd_pipeline_metadata(const gd_pipeline *p);
#endif
