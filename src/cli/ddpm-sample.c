/* ddpm-sample: the sampling pipeline (include/gd_pipeline.h) as a command: flags into a job, the
 * job run, its images written as a PNG grid (parameters in a tEXt chunk and a JSON sidecar),
 * optional per-sample PNGs and guided-diffusion compatible .npz files. */
#include "gd_cli.h"
#include "gd_image.h"
#include "gd_pipeline.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *prog = "ddpm-sample";

typedef struct {
    gd_job job;
    const char *out, *npz, *save_each, *save_base;
    int grid_cols, quiet, verbose, list_presets;
} options;

/* --classifier PATH[@LO:HI], repeatable: one expert per appearance. */
static void parse_range(const char *flag, const char *v, int *lo, int *hi) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    char *colon = strchr(buf, ':');
    if (!colon) gd_cli_die("%s: want LO:HI, got '%s'", flag, v);
    *colon = 0;
    *lo = (int)gd_cli_long(flag, buf, 0, 1000000);
    *hi = (int)gd_cli_long(flag, colon + 1, 0, 1000000);
    if (*lo >= *hi) gd_cli_die("%s: empty range %d:%d", flag, *lo, *hi);
}

static void on_classifier(void *opts, const char *flag, const char *v) {
    gd_job *j = &((options *)opts)->job;
    if (j->n_classifiers == GD_MAX_EXPERTS) gd_cli_die("at most %d classifiers", GD_MAX_EXPERTS);
    gd_job_classifier *c = &j->classifiers[j->n_classifiers++];
    *c = (gd_job_classifier){v, 0, 1 << 30};
    const char *at = strrchr(v, '@');
    if (!at) return;
    int lo, hi;
    parse_range(flag, at + 1, &lo, &hi);
    c->t_lo = lo, c->t_hi = hi;
    c->path = strndup(v, (size_t)(at - v)); /* lives until exit */
}

static void on_eds_range(void *opts, const char *flag, const char *v) {
    gd_job *j = &((options *)opts)->job;
    parse_range(flag, v, &j->eds_t_lo, &j->eds_t_hi);
}

static void on_seed(void *opts, const char *flag, const char *v) {
    gd_job *j = &((options *)opts)->job;
    char *end;
    errno = 0;
    j->seed = strtoull(v, &end, 10);
    if (end == v || *end || errno || v[0] == '-') gd_cli_die("%s: '%s' is not a non-negative integer", flag, v);
    j->seed_given = 1;
}

static void on_first(void *opts, const char *flag, const char *v) {
    ((options *)opts)->job.first_index = gd_cli_long(flag, v, 0, 2000000000);
}

static void on_rng(void *opts, const char *flag, const char *v) {
    if (strcmp(v, "torch") && strcmp(v, "per-sample")) gd_cli_die("%s: '%s' is not per-sample or torch", flag, v);
    ((options *)opts)->job.rng_torch = !strcmp(v, "torch");
}

static void on_no_clip(void *opts, const char *flag, const char *v) { ((options *)opts)->job.clip = 0; }

#define J(field) offsetof(options, job.field)
#define O(field) offsetof(options, field)
static const gd_cli_flag FLAGS[] = {
    {.kind = GD_CLI_SECTION, .help = "model"},
    {NULL, "--preset", "NAME", GD_CLI_STR, J(preset), .help = "a released checkpoint with its recommended settings (configs/presets/;\n--list-presets shows them); options given beside it override them"},
    {NULL, "--models-dir", "DIR", GD_CLI_STR, J(models_dir), .help = "where --preset finds converted checkpoints (default models/)"},
    {"-m", "--model", "PATH", GD_CLI_STR, J(model), .help = "diffusion model (safetensors or a guided-diffusion .pt; default\n" GD_DEFAULT_MODEL ")"},
    {NULL, "--model-config", "PATH", GD_CLI_STR, J(model_config), .help = "its config, when not embedded in the file"},
    {NULL, "--flags", "\"FLAGS\"", GD_CLI_STR, J(model_flags), .help = "or its guided-diffusion flags (\"$MODEL_FLAGS\"); without either, a .pt\n"
     "gets the released config of its file name, else one inferred from its shapes (-v)"},
    {NULL, "--classifier", "PATH[@LO:HI]", GD_CLI_CALL, .call = on_classifier, .help = "noise-aware classifier for guidance (default " GD_DEFAULT_CLASSIFIER ");\nrepeat with @LO:HI original-timestep ranges for multiple experts"},
    {NULL, "--classifier-config", "PATH", GD_CLI_STR, J(classifier_config), .help = "classifier config, when not embedded"},
    {NULL, "--classifier-flags", "\"FLAGS\"", GD_CLI_STR, J(classifier_flags), .help = "or its flags (\"--image_size N $CLASSIFIER_FLAGS\")"},
    {.kind = GD_CLI_SECTION, .help = "upsampling (guided-diffusion's super_res_sample.py: DDPM, unguided)"},
    {NULL, "--upsampler", "PATH", GD_CLI_STR, J(upsampler), .help = "super-resolution model run on every sample of the base model"},
    {NULL, "--upsampler-config", "PATH", GD_CLI_STR, J(upsampler_config), .help = "its config, when not embedded"},
    {NULL, "--upsampler-flags", "\"FLAGS\"", GD_CLI_STR, J(upsampler_flags), .help = "or its flags (super_res_sample.py's \"$MODEL_FLAGS\")"},
    {NULL, "--base-npz", "PATH", GD_CLI_STR, J(base_npz), .help = "upsample these images (arr_0 NHWC uint8, labels arr_1) instead of\nsampling a base model; with -m SUPERRES.safetensors or a cascade preset"},
    {NULL, "--upsample-respacing", "STR", GD_CLI_STR, J(up_respacing), .help = "the upsampler's timestep_respacing (default 250)"},
    {NULL, "--upsample-steps", "N", GD_CLI_INT, J(up_steps), 1, 100000, .help = "the same as --upsample-respacing N"},
    {NULL, "--save-base", "PATH", GD_CLI_STR, O(save_base), .help = "also write the base model's samples (.npz) of a cascade"},
    {.kind = GD_CLI_SECTION, .help = "sampling"},
    {NULL, "--class", "C", GD_CLI_STR, J(classes), .help = "class id or name (when the model's or classifier's config has\nclass_names), a comma list (cycled), or 'random' (default)"},
    {"-n", "--num-samples", "N", GD_CLI_INT, J(num_samples), 1, 10000000, .help = "number of images (default 16; with --base-npz, its image count)"},
    {"-b", "--batch-size", "N", GD_CLI_INT, J(batch_size), 1, 4096, .help = "images per network call (default 16); does not change the images"},
    {NULL, "--steps", "N", GD_CLI_INT, J(steps), 1, 100000, .help = "sampling steps (default 250 for ddpm, 25 for ddim); for the ODE\nsolvers the model evaluations (NFE, default 20)"},
    {NULL, "--respacing", "STR", GD_CLI_STR, J(respacing), .help = "guided-diffusion timestep_respacing (N, ddimN, or section counts);\noverrides --steps"},
    {NULL, "--sampler", "NAME", GD_CLI_STR, J(sampler), .help = "ddpm (ancestral, default), ddim, or a fast ODE solver: dpm++2m,\ndpm++3m (DPM-Solver++ multistep), dpm++2s (singlestep), unipc"},
    {NULL, "--time-schedule", "NAME", GD_CLI_STR, J(time_schedule), .help = "ODE solvers: uniform, logsnr or quadratic time grid (default\nlogsnr up to 64x64 images, uniform above, as dpm-solver advises)"},
    {NULL, "--thresholding", "R[:MAX]", GD_CLI_STR, J(thresholding), .help = "ODE solvers: dynamic thresholding of the guided x0 at quantile R\n(e.g. 0.995; MAX default 1) instead of clipping"},
    {NULL, "--order", "N", GD_CLI_INT, J(order), 1, 3, .help = "unipc: order 1, 2 (default) or 3"},
    {NULL, "--unipc-variant", "bh1|bh2", GD_CLI_STR, J(unipc_variant), .help = "unipc: B(h) variant (default bh2)"},
    {NULL, "--eta", "X", GD_CLI_DOUBLE, J(eta), 0, 10, .help = "DDIM eta (default 0)"},
    {NULL, "--no-clip", NULL, GD_CLI_CALL, .call = on_no_clip, .help = "do not clip the predicted x0 to [-1, 1]"},
    {NULL, "--uncond", NULL, GD_CLI_SWITCH, J(uncond), .help = "run a null-class model unconditionally: the model sees the null\nlabel, --class only sets the guidance target and stored labels"},
    {.kind = GD_CLI_SECTION, .help = "guidance"},
    {NULL, "--guidance", "LIST", GD_CLI_STR, J(guidance), .help = "none (default), classifier, entropy, cfg, or a comma list such as\ncfg,entropy. classifier: ADM classifier guidance with --scale;\nentropy: the same, rescaled per sample by log(C)/H(p(y|x_t)) (EDS);\ncfg: classifier-free guidance with --cfg-scale (needs a null class)"},
    {NULL, "--scale", "S", GD_CLI_DOUBLE, J(scale), -1e6, 1e6, .help = "classifier scale (default 1)"},
    {NULL, "--cfg-scale", "W", GD_CLI_DOUBLE, J(cfg_scale), -1e6, 1e6, .help = "eps = eps(null) + W (eps(y) - eps(null)) (default 3; 1 = off)"},
    {NULL, "--eds-t-range", "LO:HI", GD_CLI_CALL, .call = on_eds_range, .help = "apply the entropy rescaling only for original t in [LO, HI)"},
    {.kind = GD_CLI_SECTION, .help = "randomness"},
    {NULL, "--seed", "S", GD_CLI_CALL, .call = on_seed, .help = "base seed (default: from the clock; printed). Sample i uses seed S+i."},
    {NULL, "--first-index", "I", GD_CLI_CALL, .call = on_first, .help = "number the samples from I (seed S+I.., class list position, file names);\nscripts/sample_batch.sh uses it to split one run into shards"},
    {NULL, "--rng", "per-sample|torch", GD_CLI_CALL, .call = on_rng, .help = "per-sample generators (default), or one PyTorch generator for the\nbatch exactly as guided-diffusion draws (torch.manual_seed(S));\nan upsampler always draws per sample"},
    {.kind = GD_CLI_SECTION, .help = "output"},
    {"-o", "--output", "PATH", GD_CLI_STR, O(out), .help = "PNG grid (default samples.png; parameters in a tEXt chunk and PATH.json)"},
    {NULL, "--grid-cols", "N", GD_CLI_INT, O(grid_cols), 1, 4096, .help = "grid columns (default: about square)"},
    {NULL, "--save-each", "DIR", GD_CLI_STR, O(save_each), .help = "also one PNG per sample in DIR"},
    {NULL, "--npz", "PATH", GD_CLI_STR, O(npz), .help = "guided-diffusion .npz: arr_0 uint8 NHWC, arr_1 int64 labels"},
    {"-t", "--threads", "N", GD_CLI_INT, J(threads), 1, 1024, .help = "worker threads (default: all cores)"},
    {NULL, "--precision", "fp32|bf16", GD_CLI_STR, J(precision), .help = "the convolutions' arithmetic: fp32 (default) or bf16 (AVX512-BF16\nGEMMs, fp32 accumulation; the rest stays fp32)"},
    {"-q", "--quiet", NULL, GD_CLI_SWITCH, O(quiet), .help = "no progress bar or summary"},
    {"-v", "--verbose", NULL, GD_CLI_SWITCH, O(verbose), .help = "build info, model summary and timings"},
    {NULL, "--list-presets", NULL, GD_CLI_SWITCH, O(list_presets), .help = "the presets and what they run"},
    {0},
};

static const gd_cli_spec SPEC = {
    .usage = "ddpm-sample [options]",
    .about = "Samples images from an ADM diffusion model (guided-diffusion architecture), optionally guided,\n"
             "optionally upsampled by a super-resolution model.\n",
    .flags = FLAGS,
    .footer = "Bad input prints one line on stderr and exits with status 2, leaving no output file.\n\n"
              "examples:\n"
              "  ddpm-sample --class 7 --steps 250 --guidance entropy -o sneakers.png\n"
              "  ddpm-sample -m model.safetensors --sampler ddim --steps 25 --guidance cfg --cfg-scale 2 -n 64\n"
              "  ddpm-sample --preset imagenet256 --class \"golden retriever\" -n 4 -o retrievers.png\n"
              "  ddpm-sample --preset imagenet64-256 --class 207 -n 4 -o up.png --save-base base64.npz\n"
              "  ddpm-sample --preset imagenet64-256 --base-npz base64.npz -o up.png\n",
};

/* Fails early, before any sampling, if path cannot be created. */
static void check_writable(const char *flag, const char *path) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) gd_cli_die("%s: '%s' is a directory", flag, path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    if (!*dir) snprintf(dir, sizeof dir, "/");
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) gd_cli_die("%s: directory '%s' does not exist", flag, dir);
    if (access(dir, W_OK)) gd_cli_die("%s: directory '%s' is not writable", flag, dir);
}

/* The names the outputs are written under until gd_cli_commit. */
typedef struct {
    const char *out, *sidecar, *npz, *save_base;
} staged_names;

/* The checkpoints a preset names (those no flag overrides), as its models directory holds them. */
static void preset_inputs(const gd_job *j) {
    size_t l = strlen(j->preset);
    char path[PATH_MAX + 64];
    if (strchr(j->preset, '/') || (l > 5 && !strcmp(j->preset + l - 5, ".json"))) snprintf(path, sizeof path, "%s", j->preset);
    else snprintf(path, sizeof path, "configs/presets/%s.json", j->preset);
    gd_cli_input("--preset", path);
    FILE *f = fopen(path, "rb");
    char text[65536];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    cJSON *js = cJSON_Parse(text);
    const char *keys[3] = {j->model ? NULL : "model", j->n_classifiers ? NULL : "classifier", j->upsampler ? NULL : "upsampler"};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = keys[k] ? cJSON_GetObjectItemCaseSensitive(js, keys[k]) : NULL;
        if (!cJSON_IsString(v)) continue;
        static const char *const flag[3] = {"--model (from --preset)", "--classifier (from --preset)", "--upsampler (from --preset)"};
        for (int e = 0; e < 2; e++) {
            snprintf(path, sizeof path, "%s/%s%s", j->models_dir ? j->models_dir : "models", v->valuestring, e ? ".pt" : ".safetensors");
            gd_cli_input(flag[k], path);
        }
    }
    cJSON_Delete(js);
}

/* Every file the run reads and writes, checked before any work: no output may be an input or
 * another output; the per-sample PNGs are known by their pattern until the run names them. */
static void register_files(const options *o, const char *sidecar, staged_names *sn) {
    const gd_job *j = &o->job;
    const char *g = j->guidance;
    int guided = g && (strstr(g, "classifier") || strstr(g, "entropy"));
    gd_cli_input("--model", j->model ? j->model : !j->preset && !(j->base_npz && j->upsampler) ? GD_DEFAULT_MODEL : NULL);
    gd_cli_input("--model-config", j->model_config);
    for (int i = 0; i < j->n_classifiers; i++) gd_cli_input("--classifier", j->classifiers[i].path);
    if (!j->n_classifiers && guided && !j->preset) gd_cli_input("--classifier", GD_DEFAULT_CLASSIFIER);
    gd_cli_input("--classifier-config", j->classifier_config);
    gd_cli_input("--upsampler", j->upsampler);
    gd_cli_input("--upsampler-config", j->upsampler_config);
    gd_cli_input("--base-npz", j->base_npz);
    if (j->preset) preset_inputs(j);
    sn->out = gd_cli_output("--output", o->out);
    sn->sidecar = gd_cli_output("--output's .json sidecar", sidecar);
    if (o->save_base) sn->save_base = gd_cli_output("--save-base", o->save_base);
    if (o->npz) sn->npz = gd_cli_output("--npz", o->npz);
    if (o->save_each) gd_cli_output_pattern("--save-each", o->save_each, "sample_[0-9]*_seed[0-9]*.png");
    gd_cli_check_files();
}

static void check_outputs(const options *o) {
    check_writable("--output", o->out);
    if (o->npz) check_writable("--npz", o->npz);
    if (o->save_base) check_writable("--save-base", o->save_base);
    if (o->save_each) {
        struct stat st;
        if (stat(o->save_each, &st) || !S_ISDIR(st.st_mode)) gd_cli_die("--save-each: '%s' is not a directory", o->save_each);
        if (access(o->save_each, W_OK)) gd_cli_die("--save-each: '%s' is not writable", o->save_each);
    }
}

typedef struct {
    int quiet, tty;
    double t0, last;
} progress;

/* A bar on a terminal; in logs and pipes one line every 10 s. */
static void on_progress(void *user, int done, int total) {
    progress *p = user;
    double t = gd_time_now(), every = p->tty ? 0.1 : 10.0;
    if (p->quiet || (t - p->last < every && done != total)) return;
    p->last = t;
    double rate = done / (t - p->t0), eta = (total - done) / (rate > 0 ? rate : 1);
    int w = 30, fill = (int)((double)done / total * w);
    fprintf(stderr, "%s[%.*s%*s] %d/%d steps  %.2f it/s  ETA %.0fs %s", p->tty ? "\r" : "", fill,
            "##############################", w - fill, "", done, total, rate, eta, p->tty && done != total ? "" : "\n");
}

static void write_file(const char *path, const char *text) {
    char err[600], *tmp;
    FILE *f = gd_atomic_open(path, &tmp, err, sizeof err);
    if (!f) gd_cli_die("%s", err);
    int ok = fprintf(f, "%s\n", text) >= 0;
    if (!ok) gd_errf(err, sizeof err, "%s: write failed", path);
    if (gd_atomic_commit(f, tmp, path, ok, err, sizeof err)) gd_cli_die("%s", err);
}

/* The per-sample PNGs, the grid (and its sidecar), the npz files: all under their temporary names,
 * then renamed together, so a failure anywhere (a full disk) leaves none of them. */
static void write_outputs(const options *o, const gd_result *r, const staged_names *sn) {
    char err[600];
    const int per = r->h * r->w * r->c;
    const char **each = o->save_each ? malloc(sizeof *each * (size_t)r->n) : NULL;
    if (o->save_each && !each) gd_cli_die("out of memory");
    for (int i = 0; o->save_each && i < r->n; i++) {
        char p[PATH_MAX + 64];
        long long gi = o->job.first_index + i;
        unsigned long long seed = r->seed + (unsigned long long)gi;
        if (r->labels) snprintf(p, sizeof p, "%s/sample_%06lld_seed%llu_class%d.png", o->save_each, gi, seed, (int)r->labels[i]);
        else snprintf(p, sizeof p, "%s/sample_%06lld_seed%llu.png", o->save_each, gi, seed);
        each[i] = gd_cli_output("--save-each", p);
    }
    if (each) gd_cli_check_files(); /* their names are known now */
    for (int i = 0; each && i < r->n; i++)
        if (gd_write_png_grid(each[i], r->images + (size_t)i * per, 1, r->h, r->w, r->c, 1, "parameters", r->metadata, err, sizeof err))
            gd_cli_die("%s", err);
    free(each);
    if (gd_write_png_grid(sn->out, r->images, r->n, r->h, r->w, r->c, o->grid_cols, "parameters", r->metadata, err, sizeof err))
        gd_cli_die("%s", err);
    write_file(sn->sidecar, r->metadata);
    if (o->save_base &&
        gd_write_npz(sn->save_base, r->base_images, r->n, r->base_h, r->base_w, r->base_c, r->labels, err, sizeof err))
        gd_cli_die("%s", err);
    if (o->npz && gd_write_npz(sn->npz, r->images, r->n, r->h, r->w, r->c, r->labels, err, sizeof err)) gd_cli_die("%s", err);
    gd_cli_commit();
}

static void print_summary(const options *o, const gd_result *r, double t_start, double t_write) {
    if (!o->quiet) {
        printf("%s: %d samples, seed %llu -> %s%s%s (%.1f s, %.3f s/step", prog, r->n, (unsigned long long)r->seed, o->out,
               o->npz ? ", " : "", o->npz ? o->npz : "", gd_time_now() - t_start, r->t_sample / r->steps_total);
        if (r->base_steps && r->up_steps)
            printf("; base %.3f s/step, upsampler %.3f s/step", r->t_base / (r->batches * r->base_steps),
                   r->t_up / (r->batches * r->up_steps));
        printf(")\n");
    }
    if (o->verbose)
        fprintf(stderr, "%s: timings: load+plan %.2f s, sampling %.2f s, writing %.2f s\n", prog, r->t_plan, r->t_sample, t_write);
}

int main(int argc, char **argv) {
    gd_cli_set_program(prog);
    options o = {.out = "samples.png"};
    gd_job_defaults(&o.job);
    o.job.tool = prog;
    gd_cli_parse(&SPEC, argc, argv, &o, NULL, 0);
    char err[1200];
    if (o.list_presets) {
        if (gd_presets_list(stdout, err, sizeof err)) gd_cli_die("%s", err);
        return 0;
    }
    double t_start = gd_time_now();
    check_outputs(&o);
    char sidecar[PATH_MAX];
    if (snprintf(sidecar, sizeof sidecar, "%s.json", o.out) >= (int)sizeof sidecar) gd_cli_die("--output: path too long");
    staged_names sn = {0};
    register_files(&o, sidecar, &sn);
    progress pr = {o.quiet, isatty(2), 0, 0};
    o.job.progress = on_progress;
    o.job.user = &pr;
    gd_pipeline *p = gd_pipeline_new(&o.job, err, sizeof err);
    if (!p) gd_cli_die("%s", err);
    if (o.save_base && o.job.base_npz) gd_cli_die("--save-base: there is no base stage with --base-npz");
    gd_pipeline_describe(p, stderr, prog, !o.quiet, o.verbose);
    pr.t0 = gd_time_now(); /* rates count sampling only */
    gd_result r;
    if (gd_pipeline_run(p, &r, err, sizeof err)) gd_cli_die("sampling failed: %s", err);
    double t0 = gd_time_now();
    write_outputs(&o, &r, &sn);
    print_summary(&o, &r, t_start, gd_time_now() - t0);
    gd_result_free(&r);
    gd_pipeline_free(p);
    return 0;
}
