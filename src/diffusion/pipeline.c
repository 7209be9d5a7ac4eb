/* The sampling pipeline (include/gd_pipeline.h): a job is resolved (preset, defaults), its models
 * loaded and checked against each other, its labels and schedules made, all before any sampling;
 * then the base stage and the optional upsampling stage run. */
#include "diffusion/pipeline_internal.h"
#include "gd_image.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL(...) return gd_errf(err, errlen, __VA_ARGS__), -1

void gd_job_defaults(gd_job *job) {
    memset(job, 0, sizeof *job);
    job->clip = 1;
    job->scale = NAN;
    job->cfg_scale = 3.0;
    job->eds_t_hi = 1 << 30;
    job->batch_size = 16;
}

static int set_guidance(gd_pipeline *p, const char *guidance, char *err, size_t errlen) {
    p->use_classifier = p->use_entropy = p->use_cfg = 0;
    char g[256];
    snprintf(g, sizeof g, "%s", guidance);
    for (char *save = NULL, *tok = strtok_r(g, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "none")) continue;
        if (!strcmp(tok, "classifier")) p->use_classifier = 1;
        else if (!strcmp(tok, "entropy")) p->use_classifier = p->use_entropy = 1;
        else if (!strcmp(tok, "cfg")) p->use_cfg = 1;
        else FAIL("--guidance: unknown mode '%s' (none, classifier, entropy, cfg)", tok);
    }
    return 0;
}

static int set_sampler(gd_pipeline *p, const char *sampler, char *err, size_t errlen) {
    static const struct {
        const char *name;
        int ddim, ode;
        gd_solver_kind kind;
    } known[] = {{"ddpm", 0, 0, 0},
                 {"ddim", 1, 0, 0},
                 {"dpm++2m", 0, 1, GD_SOLVER_DPMPP_2M},
                 {"dpm++3m", 0, 1, GD_SOLVER_DPMPP_3M},
                 {"dpm++2s", 0, 1, GD_SOLVER_DPMPP_2S},
                 {"unipc", 0, 1, GD_SOLVER_UNIPC}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(sampler, known[i].name)) {
            p->ddim = known[i].ddim, p->ode = known[i].ode, p->ode_kind = known[i].kind;
            p->sampler_name = known[i].name;
            return 0;
        }
    FAIL("--sampler: '%s' is not ddpm, ddim, dpm++2m, dpm++3m, dpm++2s or unipc", sampler);
}

/* The ODE solvers' settings; they have no respacing (their own time grid replaces it). */
static int resolve_ode(gd_pipeline *p, char *err, size_t errlen) {
    gd_job *j = &p->job;
    if (!p->ode) {
        if (j->time_schedule || j->thresholding || j->order || j->unipc_variant)
            FAIL("--time-schedule, --thresholding, --order and --unipc-variant apply to the ODE solvers (--sampler dpm++2m, dpm++3m, dpm++2s, unipc)");
        return 0;
    }
    if (j->respacing) FAIL("--respacing: the ODE solvers take --steps (model evaluations) and their own --time-schedule, not a respacing");
    if (j->eta != 0) FAIL("--eta applies to --sampler ddim only");
    if (j->steps > 100000) FAIL("--steps: %d model evaluations is more than 100000", j->steps);
    p->ode_steps = j->steps ? j->steps : 20;
    const char *ts = j->time_schedule;
    if (!ts) p->tsched = p->mc && p->mc->image_size > 64 ? GD_TIME_UNIFORM : GD_TIME_LOGSNR;
    else if (!strcmp(ts, "uniform")) p->tsched = GD_TIME_UNIFORM;
    else if (!strcmp(ts, "logsnr")) p->tsched = GD_TIME_LOGSNR;
    else if (!strcmp(ts, "quadratic")) p->tsched = GD_TIME_QUADRATIC;
    else FAIL("--time-schedule: '%s' is not uniform, logsnr or quadratic", ts);
    if (j->order && p->ode_kind != GD_SOLVER_UNIPC) FAIL("--order applies to --sampler unipc (dpm++2m/3m/2s name their order)");
    if (j->order < 0 || j->order > 3) FAIL("--order: %d is not 1, 2 or 3", j->order);
    p->order = p->ode_kind == GD_SOLVER_UNIPC ? (j->order ? j->order : 2) : p->ode_kind == GD_SOLVER_DPMPP_3M ? 3 : 2;
    if (j->unipc_variant && p->ode_kind != GD_SOLVER_UNIPC) FAIL("--unipc-variant applies to --sampler unipc");
    if (j->unipc_variant && strcmp(j->unipc_variant, "bh1") && strcmp(j->unipc_variant, "bh2"))
        FAIL("--unipc-variant: '%s' is not bh1 or bh2", j->unipc_variant);
    p->bh1 = j->unipc_variant && !strcmp(j->unipc_variant, "bh1");
    if (p->ode_kind != GD_SOLVER_DPMPP_2S && p->ode_steps < p->order)
        FAIL("--steps %d: an order-%d multistep solver needs at least %d model evaluations", p->ode_steps, p->order, p->order);
    p->ode_outer = p->ode_kind == GD_SOLVER_DPMPP_2S ? (p->ode_steps + 1) / 2 : p->ode_steps;
    if (j->thresholding) { /* RATIO[:MAX] */
        const char *s = j->thresholding;
        char *end;
        p->thr_ratio = strtod(s, &end), p->thr_max = 1.0;
        int ok = end != s;
        if (ok && *end == ':') {
            s = end + 1;
            p->thr_max = strtod(s, &end);
            ok = end != s;
        }
        if (!ok || *end || !(p->thr_ratio > 0 && p->thr_ratio <= 1) || !(p->thr_max > 0 && p->thr_max < 1e6))
            FAIL("--thresholding: '%s' is not RATIO[:MAX] with RATIO in (0, 1] and MAX > 0 (e.g. 0.995 or 0.995:1)", j->thresholding);
        p->thresholding = 1;
    }
    return 0;
}

/* The preset fills in what the job left open, and names the files it needs that are missing. */
static int apply_preset(gd_pipeline *p, char *err, size_t errlen) {
    gd_job *j = &p->job;
    gd_preset *ps = &p->ps;
    if (gd_preset_load(j->preset, ps, err, errlen)) return -1;
    if (!j->guidance && ps->guidance && !j->base_npz && set_guidance(p, ps->guidance, err, errlen)) return -1;
    if (!j->sampler && ps->sampler && set_sampler(p, ps->sampler, err, errlen)) return -1;
    if (!j->steps && !j->respacing && ps->respacing && !p->ode) j->respacing = ps->respacing;
    if (p->ode) { /* an ODE preset's settings, unless the job changed the sampler or set them */
        if (!j->steps && !j->respacing && ps->steps) j->steps = ps->steps;
        if (!j->time_schedule && ps->time_schedule) j->time_schedule = ps->time_schedule;
        if (!j->thresholding && ps->thresholding) j->thresholding = ps->thresholding;
    }
    if (isnan(j->scale) && ps->has_scale) j->scale = ps->scale;
    if (!j->up_respacing && !j->up_steps && ps->up_respacing) j->up_respacing = ps->up_respacing;
    const char *stems[3] = {NULL, NULL, NULL};
    char *bufs[3] = {p->model_path, p->cls_path[0], p->up_path};
    if (!j->model && !j->base_npz) stems[0] = ps->model;
    if (!j->n_classifiers && p->use_classifier && ps->classifier && !j->base_npz) stems[1] = ps->classifier;
    if (!j->upsampler && ps->upsampler) stems[2] = ps->upsampler;
    if (j->base_npz && !ps->upsampler && !j->upsampler)
        FAIL("--base-npz: preset %s has no upsampler (the cascade presets: imagenet64-256, imagenet128-512)", ps->name);
    char missing[2048] = "", pts[2048] = "";
    int nmiss = 0;
    for (int i = 0; i < 3; i++) {
        if (!stems[i]) continue;
        gd_preset_model_file(j->models_dir, stems[i], bufs[i], sizeof p->model_path);
        if (gd_file_exists(bufs[i])) continue;
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", nmiss ? " and " : "", bufs[i]);
        snprintf(pts + strlen(pts), sizeof pts - strlen(pts), " %s.pt", stems[i]);
        nmiss++;
    }
    const char *md = j->models_dir ? j->models_dir : "models";
    if (nmiss)
        FAIL("preset %s needs %s, which %s missing; download%s (%s) into %s (a .pt loads as it is) or convert %s once: "
             "ddpm-convert%s -d %s",
             ps->name, missing, nmiss > 1 ? "are" : "is", pts, ps->download ? ps->download : "see configs/checkpoints.json", md,
             nmiss > 1 ? "them" : "it", pts, md);
    if (stems[0]) j->model = p->model_path, p->preset_model = 1;
    if (stems[1]) p->preset_classifier = 1, j->classifiers[0] = (gd_job_classifier){p->cls_path[0], 0, 1 << 30}, j->n_classifiers = 1;
    if (stems[2]) j->upsampler = p->up_path;
    return 0;
}

static gd_model *load(const char *what, const char *path, const char *cfg, const char *flags, char *err, size_t errlen) {
    if (!gd_file_exists(path)) return gd_errf(err, errlen, "%s '%s' not found", what, path), NULL;
    if (cfg && flags) return gd_errf(err, errlen, "%s: both a config file and flags given", what), NULL;
    gd_load_opts o = {.config_path = cfg, .flags = flags};
    return gd_model_load_opts(path, &o, err, errlen);
}

/* The base model and the upsampler, by kind: a super-resolution -m with --base-npz upsamples only. */
static int load_models(gd_pipeline *p, char *err, size_t errlen) {
    const gd_job *j = &p->job;
    if (j->upsampler) {
        if (!(p->up = load("upsampler", j->upsampler, j->upsampler_config, j->upsampler_flags, err, errlen))) return -1;
        p->uc = gd_model_config(p->up);
        if (p->uc->kind != GD_NET_SUPERRES) FAIL("%s: not a super-resolution model (model \"superres\")", j->upsampler);
    }
    if (j->base_npz && p->up) return 0;
    if (!j->model && !gd_file_exists(GD_DEFAULT_MODEL))
        FAIL("no model given (-m) and no default model at " GD_DEFAULT_MODEL "; pass -m MODEL.safetensors or --preset NAME");
    if (!(p->model = load("model", p->model_path, j->model_config, j->model_flags, err, errlen))) return -1;
    p->mc = gd_model_config(p->model);
    if (p->mc->kind == GD_NET_SUPERRES) {
        if (p->up) FAIL("%s is a super-resolution model; give the base model with -m and the upsampler with --upsampler", p->model_path);
        if (!j->base_npz) FAIL("%s is a super-resolution model: give the images to upsample with --base-npz", p->model_path);
        p->up = p->model, p->uc = p->mc, p->model = NULL, p->mc = NULL; /* upsample only */
        if (j->upsampler_config || j->upsampler_flags) FAIL("--upsampler-config/--upsampler-flags: the upsampler is -m; use --model-config or --flags");
    } else if (p->mc->kind != GD_NET_UNET) {
        FAIL("%s: not a diffusion U-Net (model \"classifier\")", p->model_path);
    }
    return 0;
}

/* What the base model allows: guidance, --uncond, cfg, the preset's expectations. */
static int check_base(gd_pipeline *p, char *err, size_t errlen) {
    const gd_job *j = &p->job;
    const gd_config *mc = p->mc;
    if (j->base_npz && mc) FAIL("--base-npz needs an upsampler: -m SUPERRES.safetensors, --upsampler PATH or a cascade preset");
    if (!mc && (p->use_classifier || p->use_cfg || j->n_classifiers))
        FAIL("guidance applies to a base model; the upsampler runs unguided (as guided-diffusion's super_res_sample.py)");
    if (p->ps.js && p->preset_model && mc && p->ps.expect_schedule && strcmp(mc->noise_schedule, p->ps.expect_schedule))
        FAIL("preset %s expects a %s noise schedule but %s has %s; was it converted from the right checkpoint?", p->ps.name,
             p->ps.expect_schedule, p->model_path, mc->noise_schedule);
    if (mc && p->use_cfg && !mc->null_class) FAIL("--guidance cfg needs a model trained with a null class (config null_class)");
    if (j->uncond && !mc) FAIL("--uncond applies to a base model, not to an upsampler");
    if (j->uncond && !mc->null_class) FAIL("--uncond needs a model trained with a null class (config null_class)");
    if (j->uncond && p->use_cfg) FAIL("--uncond and --guidance cfg exclude each other (cfg mixes both passes itself)");
    return 0;
}

static int load_classifiers(gd_pipeline *p, char *err, size_t errlen) {
    gd_job *j = &p->job;
    const gd_config *mc = p->mc;
    if (!mc || !p->use_classifier) {
        if (j->n_classifiers) FAIL("--classifier given without --guidance classifier or entropy");
        return 0;
    }
    if (!j->n_classifiers) {
        j->classifiers[0] = (gd_job_classifier){GD_DEFAULT_CLASSIFIER, 0, 1 << 30};
        j->n_classifiers = 1;
        if (!gd_file_exists(GD_DEFAULT_CLASSIFIER))
            FAIL("--guidance %s needs a classifier: pass --classifier PATH (no default at " GD_DEFAULT_CLASSIFIER ")",
                 p->use_entropy ? "entropy" : "classifier");
    }
    for (int i = 0; i < j->n_classifiers; i++) {
        const char *path = j->classifiers[i].path;
        if (!(p->cls[i] = load("classifier", path, j->classifier_config, j->classifier_flags, err, errlen))) return -1;
        const gd_config *cc = gd_model_config(p->cls[i]);
        if (cc->kind != GD_NET_CLASSIFIER) FAIL("%s: not a classifier", path);
        if (cc->image_size != mc->image_size || cc->in_channels != mc->in_channels)
            FAIL("classifier %s sees %dx%dx%d images, the model makes %dx%dx%d", path, cc->in_channels, cc->image_size,
                 cc->image_size, mc->in_channels, mc->image_size, mc->image_size);
        if (mc->class_cond && cc->num_classes != mc->num_classes)
            FAIL("classifier %s has %d classes, the model %d", path, cc->num_classes, mc->num_classes);
        if (cc->has_schedule && (cc->diffusion_steps != mc->diffusion_steps || strcmp(cc->noise_schedule, mc->noise_schedule)))
            FAIL("classifier %s was trained for a %s schedule of %d steps, the model uses %s with %d", path, cc->noise_schedule,
                 cc->diffusion_steps, mc->noise_schedule, mc->diffusion_steps);
        if (p->preset_classifier && p->ps.expect_depth && cc->num_res_blocks != p->ps.expect_depth)
            FAIL("preset %s expects a classifier of depth %d but %s has %d; was it converted from the right checkpoint?",
                 p->ps.name, p->ps.expect_depth, path, cc->num_res_blocks);
    }
    return 0;
}

/* The upsampler against the base model, and the images it upsamples when there is none. */
static int check_upsampler(gd_pipeline *p, char *err, size_t errlen) {
    const gd_config *mc = p->mc, *uc = p->uc;
    if (p->up && mc && (uc->small_size != mc->image_size || uc->in_channels != mc->in_channels))
        FAIL("upsampler %s takes %dx%dx%d images, the base model makes %dx%dx%d", p->job.upsampler, uc->in_channels,
             uc->small_size, uc->small_size, mc->in_channels, mc->image_size, mc->image_size);
    const int ncls = p->use_classifier ? gd_model_config(p->cls[0])->num_classes : mc ? mc->num_classes : 0;
    if (p->up && mc && uc->class_cond && (mc->class_cond || p->use_classifier) && uc->num_classes != ncls)
        FAIL("upsampler %s has %d classes, the base model's labels have %d", p->job.upsampler, uc->num_classes, ncls);
    if (!p->job.base_npz) return 0;
    int h, w, c;
    const char *path = p->job.base_npz;
    if (gd_read_npz(path, &p->base_in, &p->base_n, &h, &w, &c, &p->base_labels, err, errlen)) return -1;
    if (h != uc->small_size || w != uc->small_size || c != uc->in_channels)
        FAIL("--base-npz: %s holds %dx%dx%d images; the upsampler takes %dx%dx%d", path, h, w, c, uc->small_size,
             uc->small_size, uc->in_channels);
    if (!p->base_n) FAIL("--base-npz: %s holds no images", path);
    if (!p->job.num_samples) p->job.num_samples = p->base_n;
    return 0;
}

/* guided-diffusion's timestep_respacing for a step count (ddimN when it strides evenly). */
static gd_diffusion *make_diffusion(const gd_config *mc, const char *respacing, int steps, int ddim, char *resp, size_t n,
                                    char *err, size_t errlen) {
    if (respacing) snprintf(resp, n, "%s", respacing);
    else {
        snprintf(resp, n, "%s%d", ddim ? "ddim" : "", steps);
        unsigned char *keep = malloc((size_t)mc->diffusion_steps);
        char e2[256];
        if (ddim && (!keep || gd_space_timesteps(mc->diffusion_steps, resp, keep, e2, sizeof e2) < 0))
            snprintf(resp, n, "%d", steps); /* no even stride: fall back to sections */
        free(keep);
    }
    return gd_diffusion_new(mc->noise_schedule, mc->diffusion_steps, resp, err, errlen);
}

static int resolve(gd_pipeline *p, char *err, size_t errlen) {
    gd_job *j = &p->job;
    if (j->guidance && set_guidance(p, j->guidance, err, errlen)) return -1;
    if (j->sampler && set_sampler(p, j->sampler, err, errlen)) return -1;
    if (j->eta != 0 && !p->ddim) FAIL("--eta applies to --sampler ddim only");
    if (j->first_index && j->rng_torch) FAIL("--first-index needs per-sample generators (not --rng torch)");
    if (j->up_steps && j->up_respacing) FAIL("--upsample-steps and --upsample-respacing both given");
    if (j->n_classifiers < 0 || j->n_classifiers > GD_MAX_EXPERTS) FAIL("at most %d classifiers", GD_MAX_EXPERTS);
    if (j->batch_size < 1 || j->num_samples < 0) FAIL("the batch size must be at least 1 and the sample count not negative");
    /* the CLI checks its flags; a job built in code gets the same ranges here */
    if (j->steps < 0 || j->up_steps < 0 || j->first_index < 0) FAIL("steps and the first index must not be negative");
    if (!(j->eta >= 0 && j->eta <= 10)) FAIL("--eta: %g is not a number in [0, 10]", j->eta);
    if (!isnan(j->scale) && !isfinite(j->scale)) FAIL("--scale: %g is not finite", j->scale);
    if (!isfinite(j->cfg_scale)) FAIL("--cfg-scale: %g is not finite", j->cfg_scale);
    if (j->eds_t_lo >= j->eds_t_hi) FAIL("--eds-t-range: empty range %d:%d", j->eds_t_lo, j->eds_t_hi);
    for (int i = 0; i < j->n_classifiers; i++)
        if (!j->classifiers[i].path || !(j->classifiers[i].t_lo < j->classifiers[i].t_hi))
            FAIL("classifier %d: needs a path and a non-empty timestep range", i + 1);
    if (j->threads) gd_set_threads(j->threads);
    if (j->precision && strcmp(j->precision, "fp32") && strcmp(j->precision, "bf16"))
        FAIL("--precision: '%s' is not fp32 or bf16", j->precision);
    p->bf16 = j->precision && !strcmp(j->precision, "bf16");
    if (gd_set_precision(p->bf16 ? GD_PRECISION_BF16 : GD_PRECISION_F32)) p->bf16 = 0, p->bf16_refused = 1;
    if (j->preset && apply_preset(p, err, errlen)) return -1;
    if (isnan(j->scale)) j->scale = 1.0;
    if (j->model != p->model_path) snprintf(p->model_path, sizeof p->model_path, "%s", j->model ? j->model : GD_DEFAULT_MODEL);
    if (!j->seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        j->seed = ((unsigned long long)ts.tv_sec * 1000003ull ^ (unsigned long long)ts.tv_nsec) % 1000000000ull;
    }
    return 0;
}

gd_pipeline *gd_pipeline_new(const gd_job *job, char *err, size_t errlen) {
    gd_pipeline *p = calloc(1, sizeof *p);
    if (!p) return gd_errf(err, errlen, "out of memory"), NULL;
    p->job = *job;
    gd_job *j = &p->job;
    if (resolve(p, err, errlen) || load_models(p, err, errlen) || check_base(p, err, errlen) ||
        load_classifiers(p, err, errlen) || check_upsampler(p, err, errlen))
        goto fail;
    if (!j->num_samples) j->num_samples = 16;
    p->N = j->num_samples;
    p->B = j->batch_size < p->N ? j->batch_size : p->N;
    if (gd_pipeline_labels(p, err, errlen)) goto fail;
    if (resolve_ode(p, err, errlen)) goto fail;
    if (p->mc && p->ode) { /* the solvers run on the full schedule */
        snprintf(p->resp, sizeof p->resp, "%d NFE", p->ode_steps);
        if (!(p->diff = gd_diffusion_new(p->mc->noise_schedule, p->mc->diffusion_steps, "", err, errlen))) goto fail;
    } else if (p->mc && !(p->diff = make_diffusion(p->mc, j->respacing, j->steps ? j->steps : p->ddim ? 25 : 250, p->ddim,
                                                   p->resp, sizeof p->resp, err, errlen)))
        goto fail;
    if (p->up && !(p->up_diff = make_diffusion(p->uc, j->up_respacing, j->up_steps ? j->up_steps : 250, 0, p->up_resp,
                                               sizeof p->up_resp, err, errlen)))
        goto fail;
    return p;
fail:
    gd_pipeline_free(p);
    return NULL;
}

int gd_pipeline_run(gd_pipeline *p, gd_result *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    const gd_config *mc = p->mc, *oc = p->up ? p->uc : mc; /* oc: the images returned */
    const int N = p->N, nb = (N + p->B - 1) / p->B;
    r->n = N, r->h = r->w = oc->image_size, r->c = oc->in_channels;
    r->seed = p->job.seed;
    r->batches = nb;
    r->base_steps = p->ode ? p->ode_outer : p->diff ? p->diff->K : 0;
    r->up_steps = p->up_diff ? p->up_diff->K : 0;
    r->steps_total = nb * (r->base_steps + r->up_steps);
    r->images = malloc((size_t)N * r->h * r->w * r->c);
    if (!r->images) FAIL("out of memory for %d samples", N);
    gd_stage sb = {0}, su = {0};
    if (mc) {
        uint8_t *dst = r->images;
        if (p->up) {
            r->base_h = r->base_w = mc->image_size, r->base_c = mc->in_channels;
            r->base_images = dst = malloc((size_t)N * mc->in_channels * mc->image_size * mc->image_size);
            if (!dst) FAIL("out of memory for %d samples", N);
        }
        sb = (gd_stage){.model = p->model, .diff = p->diff, .ddim = p->ddim, .ode = p->ode, .clip = p->job.clip, .is_base = 1,
                        .rng_torch = p->job.rng_torch, .total = r->steps_total};
        if (gd_stage_run(p, &sb, dst, err, errlen)) return -1;
    }
    if (p->up) {
        su = (gd_stage){.model = p->up, .diff = p->up_diff, .clip = p->job.clip, .low_nhwc = mc ? r->base_images : p->base_in,
                        .low_count = mc ? N : p->base_n, .stream = GD_UPSAMPLE_STREAM, .done = sb.done, .total = r->steps_total};
        if (gd_stage_run(p, &su, r->images, err, errlen)) return -1;
    }
    r->t_plan = sb.t_plan + su.t_plan;
    r->t_base = sb.t_sample, r->t_up = su.t_sample, r->t_sample = sb.t_sample + su.t_sample;
    if (p->labelled) {
        r->labels = malloc(sizeof(int64_t) * (size_t)N);
        if (!r->labels) FAIL("out of memory");
        memcpy(r->labels, p->labels, sizeof(int64_t) * (size_t)N);
    }
    if (!(r->metadata = gd_pipeline_metadata(p))) FAIL("out of memory");
    return 0;
}

void gd_result_free(gd_result *r) {
    free(r->images);
    free(r->base_images);
    free(r->labels);
    free(r->metadata);
    memset(r, 0, sizeof *r);
}

void gd_pipeline_free(gd_pipeline *p) {
    if (!p) return;
    if (p->bf16) gd_set_precision(GD_PRECISION_F32); /* graphs planned later (other jobs, tests) start from fp32 */
    for (int i = 0; i < GD_MAX_EXPERTS; i++) gd_model_free(p->cls[i]);
    gd_model_free(p->model);
    gd_model_free(p->up);
    gd_diffusion_free(p->diff);
    gd_diffusion_free(p->up_diff);
    cJSON_Delete(p->ps.js);
    free(p->cn.names);
    free(p->labels);
    free(p->base_in);
    free(p->base_labels);
    free(p);
}
