/* The sampling pipeline driven through its library API (include/gd_pipeline.h): the same job as a
 * ddpm-sample command gives the same bytes (PNG grid with its metadata, npz), the callbacks see
 * every step and its x0 prediction, and a bad job is one error line before any work. Paths are
 * relative to the project root (the runner's cwd); uses the default models in models/. */
#include "cli_util.h"
#include "gd_image.h"
#include "gd_pipeline.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOOL "ddpm-sample"

typedef struct {
    int calls, last_done, last_total, previews, bad_x0;
    long long max_first;
} watch;

static void on_progress(void *user, int done, int total) {
    watch *w = user;
    w->calls++;
    w->last_done = done, w->last_total = total;
}

static void on_preview(void *user, long long first, int n, int step, int steps, const float *x0, int C, int H, int W) {
    watch *w = user;
    w->previews++;
    if (first > w->max_first) w->max_first = first;
    /* clip_denoised: the x0 prediction lies in [-1, 1] */
    for (long i = 0; i < (long)n * C * H * W; i++)
        if (!(x0[i] >= -1.0f && x0[i] <= 1.0f)) w->bad_x0++;
}

/* Runs job through the library and writes grid.png / out.npz into dir as ddpm-sample does. */
static int run_job(const gd_job *job, const char *dir, watch *w) {
    char err[1200], png[700], npz[700];
    gd_pipeline *p = gd_pipeline_new(job, err, sizeof err);
    CHECK(p != NULL, "pipeline: %s", err);
    if (!p) return -1;
    gd_result r;
    int rc = gd_pipeline_run(p, &r, err, sizeof err);
    CHECK(rc == 0, "run: %s", err);
    gd_pipeline_free(p);
    if (rc) return -1;
    snprintf(png, sizeof png, "%s/lib.png", dir);
    snprintf(npz, sizeof npz, "%s/lib.npz", dir);
    CHECK(!gd_write_png_grid(png, r.images, r.n, r.h, r.w, r.c, 0, "parameters", r.metadata, err, sizeof err), "%s", err);
    CHECK(!gd_write_npz(npz, r.images, r.n, r.h, r.w, r.c, r.labels, err, sizeof err), "%s", err);
    if (w) CHECK(r.steps_total == w->last_total, "steps_total %d, progress total %d", r.steps_total, w->last_total);
    gd_result_free(&r);
    return 0;
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = cli_read_file(a, &na), *y = cli_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* One job, once as a command and once through the API: byte-identical outputs. */
static void compare(const char *args, const gd_job *job, watch *w) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], cmd[2048], a[700], b[700];
    cli_mkdtemp(d, sizeof d);
    snprintf(cmd, sizeof cmd, "%s -q -o %s/cli.png --npz %s/cli.npz", args, d, d);
    cli_result r = cli_run(TOOL, d, cmd);
    CHECK(r.status == 0, "ddpm-sample %s: status %d: %s", cmd, r.status, r.err);
    cli_run_free(&r);
    if (run_job(job, d, w) == 0) {
        snprintf(a, sizeof a, "%s/cli.png", d);
        snprintf(b, sizeof b, "%s/lib.png", d);
        int png = same_file(a, b);
        snprintf(a, sizeof a, "%s/cli.npz", d);
        snprintf(b, sizeof b, "%s/lib.npz", d);
        int npz = same_file(a, b);
        printf("    %s: PNG %s, npz %s\n", args, png ? "identical" : "DIFFERENT", npz ? "identical" : "DIFFERENT");
        CHECK(png && npz, "the API and the command must write the same bytes");
    }
    cli_rmtree(d);
}

static void test_pipeline_same_bytes_as_cli(void) {
    gd_job j;
    gd_job_defaults(&j);
    j.tool = "ddpm-sample";
    j.classes = "sneaker,bag";
    j.guidance = "entropy";
    j.sampler = "ddim";
    j.steps = 5;
    j.num_samples = 3;
    j.batch_size = 2; /* two plans: a batch of 2, then of 1 */
    j.scale = 4;
    j.seed = 11, j.seed_given = 1;
    watch w = {0};
    j.progress = on_progress, j.preview = on_preview, j.user = &w;
    compare("--class sneaker,bag --guidance entropy --sampler ddim --steps 5 -n 3 -b 2 --scale 4 --seed 11", &j, &w);
    printf("    callbacks: %d progress calls (last %d/%d), %d previews, %d x0 values outside [-1, 1]\n", w.calls,
           w.last_done, w.last_total, w.previews, w.bad_x0);
    CHECK(w.calls == 10 && w.last_done == 10 && w.last_total == 10, "progress: 2 batches x 5 steps");
    CHECK(w.previews == 10 && w.max_first == 2 && w.bad_x0 == 0, "preview: every step of both batches, clipped x0");

    /* classifier-free guidance composed with EDS, DDPM, random classes, a first index */
    gd_job_defaults(&j);
    j.tool = "ddpm-sample";
    j.guidance = "cfg,entropy";
    j.steps = 4;
    j.num_samples = 2;
    j.cfg_scale = 2;
    j.first_index = 5;
    j.seed = 3, j.seed_given = 1;
    compare("--guidance cfg,entropy --steps 4 -n 2 --cfg-scale 2 --first-index 5 --seed 3", &j, NULL);

    /* two classifier experts split by timestep, the null-class model run unconditionally */
    gd_job_defaults(&j);
    j.tool = "ddpm-sample";
    j.guidance = "classifier";
    j.classifiers[0] = (gd_job_classifier){"models/fashion_classifier_ce.safetensors", 0, 500};
    j.classifiers[1] = (gd_job_classifier){"models/fashion_classifier_ect.safetensors", 500, 1000};
    j.n_classifiers = 2;
    j.uncond = 1;
    j.classes = "3";
    j.sampler = "ddim";
    j.steps = 4;
    j.num_samples = 2;
    j.seed = 8, j.seed_given = 1;
    compare("--guidance classifier --classifier models/fashion_classifier_ce.safetensors@0:500 --classifier "
            "models/fashion_classifier_ect.safetensors@500:1000 --uncond --class 3 --sampler ddim --steps 4 -n 2 --seed 8",
            &j, NULL);
}

static void test_pipeline_rejects_bad_jobs(void) {
    char err[1200];
    gd_job j;
    gd_job_defaults(&j);
    j.guidance = "entropy,bogus";
    gd_pipeline *p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "unknown mode 'bogus'"), "bad guidance: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
    gd_job_defaults(&j);
    j.classes = "not-a-garment";
    p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "unknown class 'not-a-garment'"), "bad class: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
    gd_job_defaults(&j);
    j.model = "tests/data/no-such-model.safetensors";
    p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "not found"), "missing model: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
    /* a job built in code gets the ranges the CLI's flags enforce */
    gd_job_defaults(&j);
    j.guidance = "cfg";
    j.cfg_scale = NAN;
    p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "--cfg-scale"), "NaN cfg scale: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
    gd_job_defaults(&j);
    j.sampler = "ddim";
    j.eta = -1;
    p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "--eta"), "negative eta: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
    gd_job_defaults(&j);
    j.guidance = "classifier";
    j.classifiers[0] = (gd_job_classifier){"models/fashion_classifier_ce.safetensors", 500, 500};
    j.n_classifiers = 1;
    p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "timestep range"), "empty expert range: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
    gd_job_defaults(&j);
    j.guidance = "cfg";
    j.uncond = 1;
    p = gd_pipeline_new(&j, err, sizeof err);
    CHECK(!p && strstr(err, "exclude each other"), "--uncond with cfg: %s", p ? "accepted" : err);
    gd_pipeline_free(p);
}

GD_TEST_TABLE(gd_tests_pipeline) = {
    {"pipeline_same_bytes_as_cli", test_pipeline_same_bytes_as_cli},
    {"pipeline_rejects_bad_jobs", test_pipeline_rejects_bad_jobs},
    {NULL, NULL},
};
