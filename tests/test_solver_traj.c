/* ODE solver parity with the project's PyTorch reference (tests/reference/solvers.py, written from
 * fast-solvers.md): the committed fixture networks, the same x_T and labels, every solver x
 * {none, classifier, entropy, cfg}, clipping or dynamic thresholding; every outer step's x and every
 * network timestep compared. And EDS's per-sample scale against its formula at every evaluation. */
#include "cli_util.h"
#include "gd_guidance.h"
#include "gd_image.h"
#include "gd_safetensors.h"
#include "gd_solver.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* The final error allowed: 1e-4 of max|x|, or, where the reference's own float32-vs-float64 run
 * moves the result further (a logSNR grid carries the float32 error of lambda(t_end), spec §11),
 * twice that movement. */
#define SOLVER_TOL 1e-4

typedef struct {
    gd_noise base;
    const gd_st_tensor *x_T;
} xT_noise;

static int xT_fill(gd_noise *self, int draw, float *out) {
    const gd_st_tensor *t = ((xT_noise *)self)->x_T;
    if (draw) return -1;
    memcpy(out, t->data, (size_t)t->nbytes);
    return 0;
}

/* Checks EDS's scale at every evaluation: runs after the classifier term in the chain, recomputes
 * the logits with its own forward pass and the entropy in double. */
typedef struct {
    gd_guidance base;
    gd_classifier_guidance *cg;
    gd_net *net;
    double worst;
    int checked;
} eds_probe;

static int probe_add(gd_guidance *self, const gd_step *st, float *g, char *err, size_t errlen) {
    eds_probe *pr = (eds_probe *)self;
    const int N = st->N, per = st->C * st->H * st->W, K = pr->cg->K;
    memcpy(gd_net_x(pr->net), st->x, sizeof(float) * (size_t)N * per);
    for (int n = 0; n < N; n++) gd_net_t(pr->net)[n] = (float)st->t;
    if (gd_net_forward(pr->net, err, errlen)) return -1;
    const float *z = gd_net_output(pr->net)->data;
    for (int n = 0; n < N; n++) {
        double m = -INFINITY, sum = 0, h = 0;
        for (int k = 0; k < K; k++) m = z[n * K + k] > m ? z[n * K + k] : m;
        for (int k = 0; k < K; k++) sum += exp(z[n * K + k] - m);
        for (int k = 0; k < K; k++) {
            const double p = exp(z[n * K + k] - m) / sum;
            if (p > 0) h -= p * log(p);
        }
        const double want = pr->cg->scale * log((double)K) / h, got = pr->cg->last_scale[n];
        const double rel = fabs(got - want) / want;
        if (rel > pr->worst) pr->worst = rel;
        pr->checked++;
    }
    return 0;
}

typedef struct {
    const float *traj;
    int64_t n;
    double worst_step;
} traj_ctx;

static double rel_err(const float *a, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        float r;
        memcpy(&r, ref + i, 4);
        const double d = fabs((double)a[i] - r);
        if (!(d <= md)) md = d;
        if (fabs(r) > mr) mr = fabs(r);
    }
    return md / (mr > 0 ? mr : 1);
}

static void on_x(void *user, int done, const float *x) {
    traj_ctx *c = user;
    const double e = rel_err(x, c->traj + (int64_t)done * c->n, c->n);
    if (!(e <= c->worst_step)) c->worst_step = e;
}

static int kind_of(const char *s, gd_solver_kind *k) {
    if (!strcmp(s, "dpm++2m")) *k = GD_SOLVER_DPMPP_2M;
    else if (!strcmp(s, "dpm++3m")) *k = GD_SOLVER_DPMPP_3M;
    else if (!strcmp(s, "dpm++2s")) *k = GD_SOLVER_DPMPP_2S;
    else if (!strcmp(s, "unipc")) *k = GD_SOLVER_UNIPC;
    else return -1;
    return 0;
}

static const char *jstr(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(c, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}
static double jnum(const cJSON *c, const char *k) { return cJSON_GetNumberValue(cJSON_GetObjectItem(c, k)); }

static void solver_case(const char *file, int *n_eds) {
    char path[512], err[512];
    snprintf(path, sizeof path, "tests/fixtures/%s", file);
    gd_st_file *f = gd_st_open(path, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    cJSON *c = cJSON_Parse(gd_st_metadata(f, "case"));
    const char *name = jstr(c, "name");
    int use_cls = 0, use_eds = 0, use_cfg = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(c, "guidance")) {
        use_cls |= !strcmp(g->valuestring, "classifier") || !strcmp(g->valuestring, "entropy");
        use_eds |= !strcmp(g->valuestring, "entropy");
        use_cfg |= !strcmp(g->valuestring, "cfg");
    }
    gd_solver_kind kind = GD_SOLVER_DPMPP_2M;
    CHECK(kind_of(jstr(c, "solver"), &kind) == 0, "%s: solver '%s'", name, jstr(c, "solver"));
    gd_diffusion *d = gd_diffusion_new(jstr(c, "noise_schedule"), (int)jnum(c, "diffusion_steps"), "", err, sizeof err);
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", jstr(c, "model"));
    gd_model *um = gd_model_load(path, NULL, err, sizeof err), *cm = NULL;
    if (use_cls) {
        snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", jstr(c, "classifier"));
        cm = gd_model_load(path, NULL, err, sizeof err);
    }
    const gd_st_tensor *xT = gd_st_find(f, "x_T"), *yt = gd_st_find(f, "y"), *traj = gd_st_find(f, "traj"),
                       *fin = gd_st_find(f, "final"), *f64 = gd_st_find(f, "final64"), *tin = gd_st_find(f, "t_in");
    CHECK(d && um && (!use_cls || cm) && xT && yt && traj && fin && f64 && tin, "%s: fixture or models incomplete", name);
    if (!d || !um || (use_cls && !cm) || !xT || !yt || !traj || !fin || !f64 || !tin) goto out;
    const int N = (int)xT->shape[0], C = (int)xT->shape[1], H = (int)xT->shape[2], W = (int)xT->shape[3];
    int32_t y[8], y2[16];
    for (int i = 0; i < N && i < 8; i++) {
        int64_t v;
        memcpy(&v, (const char *)yt->data + 8 * i, 8);
        y[i] = y2[i] = (int32_t)v, y2[N + i] = (int32_t)jnum(c, "null_label");
    }
    gd_net_denoiser den;
    gd_cfg_denoiser cfgd = {0};
    gd_classifier_guidance cg = {0};
    eds_probe probe = {0};
    CHECK(gd_net_denoiser_init(&den, um, use_cfg ? 2 * N : N, y2, NULL, err, sizeof err) == 0, "%s: %s", name, err);
    if (use_cfg)
        CHECK(gd_cfg_denoiser_init(&cfgd, &den.base, N, C * H * W, (float)jnum(c, "cfg_scale"), err, sizeof err) == 0, "%s", err);
    if (use_cls) {
        CHECK(gd_classifier_guidance_init(&cg, cm, N, (float)jnum(c, "scale"), use_eds, NULL, err, sizeof err) == 0, "%s", err);
        if (use_eds) {
            probe.base.add = probe_add;
            probe.cg = &cg;
            probe.net = gd_net_new(cm, N, 0, err, sizeof err);
            cg.base.next = &probe.base;
        }
    }
    const char *corr = jstr(c, "correct"), *ts = jstr(c, "time_schedule");
    traj_ctx tc = {(const float *)traj->data, (int64_t)N * C * H * W, 0};
    gd_solver_params p = {.alphas_cumprod = d->alphas_cumprod, .T = d->T, .kind = kind, .order = (int)jnum(c, "order"),
                          .unipc_bh1 = !strcmp(jstr(c, "variant"), "bh1"), .steps = (int)jnum(c, "steps"),
                          .time_schedule = !strcmp(ts, "logsnr") ? GD_TIME_LOGSNR : !strcmp(ts, "quadratic") ? GD_TIME_QUADRATIC : GD_TIME_UNIFORM,
                          .lower_order_final = cJSON_IsTrue(cJSON_GetObjectItem(c, "lower_order_final")),
                          .correct = !strcmp(corr, "clip") ? GD_X0_CLIP : !strcmp(corr, "dynamic") ? GD_X0_DYNAMIC : GD_X0_NONE,
                          .thr_ratio = jnum(c, "thr_ratio"), .thr_max = jnum(c, "thr_max"), .N = N, .C = C, .H = H, .W = W,
                          .model = use_cfg ? &cfgd.base : &den.base, .guidance = use_cls ? &cg.base : NULL, .y = y,
                          .on_x = on_x, .user = &tc};
    xT_noise z = {{xT_fill}, xT};
    p.noise = &z.base;
    gd_solver *s = gd_solver_new(&p, err, sizeof err);
    CHECK(s != NULL, "%s: %s", name, err);
    float *x = malloc(sizeof(float) * (size_t)tc.n);
    if (s && x && gd_solver_run(s, x, err, sizeof err) == 0) {
        const int nfe = gd_solver_nfe(s), K = gd_solver_outer_steps(s);
        CHECK(nfe == (int)tin->shape[0] && K + 1 == (int)traj->shape[0], "%s: %d evaluations, %d steps; reference %lld, %lld",
              name, nfe, K, (long long)tin->shape[0], (long long)traj->shape[0] - 1);
        double wt = 0;
        for (int i = 0; i < nfe && i < (int)tin->shape[0]; i++) {
            float r;
            memcpy(&r, (const char *)tin->data + 4 * i, 4);
            const double dt = fabs(gd_solver_eval_t(s, i) - r);
            if (!(dt <= wt)) wt = dt;
        }
        const double ef = rel_err(x, fin->data, tc.n), e64 = rel_err(fin->data, f64->data, tc.n);
        const double tol = 2 * e64 > SOLVER_TOL ? 2 * e64 : SOLVER_TOL;
        printf("    %-24s NFE %2d  t_in %.1e  worst step %.2e  final %.2e  (ref f32 vs f64 %.1e, tol %.0e)\n", name, nfe, wt,
               tc.worst_step, ef, e64, tol);
        CHECK(wt <= 2e-3, "%s: network timesteps differ by %.2e", name, wt);
        CHECK(ef <= tol && tc.worst_step <= tol, "%s: final %.3e, worst step %.3e > %.0e", name, ef, tc.worst_step, tol);
    } else {
        CHECK(0, "%s: run failed: %s", name, err);
    }
    if (use_eds) {
        CHECK(probe.checked == N * gd_solver_nfe(s), "%s: EDS scale checked %d times", name, probe.checked);
        CHECK(probe.worst <= 1e-9, "%s: EDS scale off its formula by %.2e (relative)", name, probe.worst);
        *n_eds += probe.checked;
    }
    free(x);
    gd_solver_free(s);
    gd_net_free(probe.net);
    if (use_cls) gd_classifier_guidance_free(&cg);
    gd_cfg_denoiser_free(&cfgd);
    gd_net_denoiser_free(&den);
out:
    gd_model_free(um);
    gd_model_free(cm);
    gd_diffusion_free(d);
    cJSON_Delete(c);
    gd_st_close(f);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_solver_traj(void) {
    DIR *dir = opendir("tests/fixtures");
    CHECK(dir != NULL, "tests/fixtures");
    if (!dir) return;
    char *files[64];
    int n = 0, n_eds = 0;
    for (struct dirent *e; (e = readdir(dir)) && n < 64;)
        if (!strncmp(e->d_name, "solver_", 7) && strstr(e->d_name, ".safetensors")) files[n++] = strdup(e->d_name);
    closedir(dir);
    qsort(files, (size_t)n, sizeof *files, by_name);
    CHECK(n >= 20, "only %d solver fixtures", n);
    for (int i = 0; i < n; i++) {
        solver_case(files[i], &n_eds);
        free(files[i]);
    }
    printf("    %d fixtures; EDS scale = s log K / H checked at %d (sample, evaluation) pairs\n", n, n_eds);
}

/* ddpm-sample --rng torch --seed S --class y0,y1 draws x_T as torch.manual_seed(S); torch.randn, so
 * the tool run from the command line ends on the reference's final x (as uint8). */
static void cli_case(const char *fixture, const char *flags) {
    char path[700], err[512], d[512], args[2048];
    snprintf(path, sizeof path, "tests/fixtures/%s", fixture);
    gd_st_file *f = gd_st_open(path, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    cJSON *c = cJSON_Parse(gd_st_metadata(f, "case"));
    const gd_st_tensor *fin = gd_st_find(f, "final"), *yt = gd_st_find(f, "y");
    const int N = (int)fin->shape[0], C = (int)fin->shape[1], H = (int)fin->shape[2], W = (int)fin->shape[3];
    int64_t y0, y1;
    memcpy(&y0, yt->data, 8);
    memcpy(&y1, (const char *)yt->data + 8, 8);
    cli_mkdtemp(d, sizeof d);
    snprintf(args, sizeof args, "-m tests/fixtures/%s.safetensors %s --sampler %s --steps %d --rng torch --seed %d --class %lld,%lld -n %d -q --npz %s/x.npz -o %s/x.png",
             jstr(c, "model"), flags, jstr(c, "solver"), (int)jnum(c, "steps"), (int)jnum(c, "seed"), (long long)y0, (long long)y1, N, d, d);
    cli_result r = cli_run("ddpm-sample", d, args);
    CHECK(r.status == 0, "%s: ddpm-sample failed: %s", jstr(c, "name"), r.err);
    uint8_t *img = NULL;
    int n = 0, h = 0, w = 0, ch = 0;
    int64_t *labels = NULL;
    snprintf(path, sizeof path, "%s/x.npz", d);
    if (r.status == 0 && gd_read_npz(path, &img, &n, &h, &w, &ch, &labels, err, sizeof err) == 0) {
        int differ = 0, worst = 0;
        for (int b = 0; b < N; b++)
            for (int k = 0; k < C; k++)
                for (int i = 0; i < H * W; i++) {
                    float v;
                    memcpy(&v, (const char *)fin->data + 4 * (((int64_t)b * C + k) * H * W + i), 4);
                    double q = (v + 1) * 127.5;
                    int ref = q < 0 ? 0 : q > 255 ? 255 : (int)q, got = img[((int64_t)b * H * W + i) * C + k];
                    differ += got != ref;
                    if (abs(got - ref) > worst) worst = abs(got - ref);
                }
        snprintf(path, sizeof path, "%s/x.png.json", d);
        char *side = cli_slurp(path);
        CHECK(strstr(side, "\"nfe\":") != NULL, "%s: no nfe in the sidecar: %.200s", jstr(c, "name"), side);
        free(side);
        printf("    ddpm-sample %-22s %d of %d bytes differ from the reference (max %d)\n", jstr(c, "name"), differ, N * C * H * W, worst);
        CHECK(n == N && differ <= N * C * H * W / 500 && worst <= 1, "%s: %d bytes differ, max %d", jstr(c, "name"), differ, worst);
    } else if (r.status == 0) {
        CHECK(0, "%s: %s", jstr(c, "name"), err);
    }
    free(img);
    free(labels);
    cli_run_free(&r);
    cli_rmtree(d);
    cJSON_Delete(c);
    gd_st_close(f);
}

static void test_solver_cli(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    cli_case("solver_dpm2m_none.safetensors", "--time-schedule uniform");
    cli_case("solver_unipc2_entropy.safetensors",
             "--time-schedule uniform --classifier tests/fixtures/cls_a.safetensors --guidance entropy --scale 30");
    cli_case("solver_dpm2m_dynamic.safetensors",
             "--time-schedule uniform --classifier tests/fixtures/cls_a.safetensors --guidance classifier --scale 30 --thresholding 0.995");
    cli_case("solver_dpm2s_cfg.safetensors", "--time-schedule uniform --guidance cfg --cfg-scale 3");
}

/* An ODE preset (sampler, steps, time schedule, thresholding from the file) gives the same bytes as
 * the flags it stands for; flags beside it override it. */
static void test_solver_preset(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], p[700], args[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(p, sizeof p, "%s/fast.json", d);
    const char *js = "{\"description\": \"test\", \"model\": \"unet_a\", \"classifier\": \"cls_a\", \"guidance\": \"entropy\", "
                     "\"scale\": 30, \"sampler\": \"dpm++2m\", \"steps\": 6, \"time_schedule\": \"quadratic\", \"thresholding\": \"0.9:1.5\"}";
    cli_write_file(p, js, strlen(js));
    const char *common = "--class 3,5 -n 2 --seed 4 -q";
    snprintf(args, sizeof args, "--preset %s --models-dir tests/fixtures %s --npz %s/a.npz -o %s/a.png", p, common, d, d);
    cli_result r1 = cli_run("ddpm-sample", d, args);
    snprintf(args, sizeof args, "-m tests/fixtures/unet_a.safetensors --classifier tests/fixtures/cls_a.safetensors --guidance entropy "
             "--scale 30 --sampler dpm++2m --steps 6 --time-schedule quadratic --thresholding 0.9:1.5 %s --npz %s/b.npz -o %s/b.png", common, d, d);
    cli_result r2 = cli_run("ddpm-sample", d, args);
    snprintf(args, sizeof args, "--preset %s --models-dir tests/fixtures --steps 7 %s --npz %s/c.npz -o %s/c.png", p, common, d, d);
    cli_result r3 = cli_run("ddpm-sample", d, args);
    CHECK(r1.status == 0 && r2.status == 0 && r3.status == 0, "runs: %s | %s | %s", r1.err, r2.err, r3.err);
    size_t na, nb, nc;
    snprintf(p, sizeof p, "%s/a.npz", d);
    unsigned char *a = cli_read_file(p, &na);
    snprintf(p, sizeof p, "%s/b.npz", d);
    unsigned char *b = cli_read_file(p, &nb);
    snprintf(p, sizeof p, "%s/c.npz", d);
    unsigned char *c = cli_read_file(p, &nc);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "the preset's samples differ from the flags' run");
    CHECK(a && c && (na != nc || memcmp(a, c, na)), "--steps 7 beside the preset did not change the run");
    snprintf(p, sizeof p, "%s/c.png.json", d);
    char *side = cli_slurp(p);
    CHECK(strstr(side, "\"nfe\":7") && strstr(side, "\"time_schedule\":\"quadratic\"") && strstr(side, "\"thresholding_ratio\":0.9"),
          "sidecar: %.300s", side);
    printf("    preset (dpm++2m, 6 NFE, quadratic, thresholding 0.9:1.5) = the same flags, byte for byte; --steps 7 overrides\n");
    free(side);
    free(a);
    free(b);
    free(c);
    cli_run_free(&r1);
    cli_run_free(&r2);
    cli_run_free(&r3);
    cli_rmtree(d);
}

static void test_solver_bad_flags(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    static const struct {
        const char *flags, *want;
    } cases[] = {
        {"--sampler dpm++4m", "is not ddpm, ddim, dpm++2m"},
        {"--sampler dpm++2m --time-schedule cosine", "--time-schedule: 'cosine'"},
        {"--sampler dpm++2m --thresholding 0.995x", "--thresholding"},
        {"--sampler dpm++2m --thresholding 1.5", "--thresholding"},
        {"--sampler dpm++2m --thresholding 0.9:", "--thresholding"},
        {"--sampler dpm++2m --order 3", "--order applies to --sampler unipc"},
        {"--sampler unipc --order 4", "--order"},
        {"--sampler unipc --unipc-variant bh3", "--unipc-variant: 'bh3'"},
        {"--sampler dpm++3m --steps 2", "at least 3 model evaluations"},
        {"--sampler dpm++2m --respacing 10", "--respacing: the ODE solvers"},
        {"--sampler dpm++2m --eta 0.5", "--eta applies to --sampler ddim"},
        {"--sampler ddpm --thresholding 0.995", "apply to the ODE solvers"},
    };
    char d[512], args[1024];
    cli_mkdtemp(d, sizeof d);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(args, sizeof args, "-m tests/fixtures/unet_a.safetensors %s -n 1 -o %s/x.png", cases[i].flags, d);
        cli_result r = cli_run("ddpm-sample", d, args);
        CHECK(r.status == 2 && cli_count_lines(r.err) == 1 && strstr(r.err, cases[i].want), "%s: exit %d, %s", cases[i].flags,
              r.status, r.err);
        cli_run_free(&r);
    }
    CHECK(cli_count_entries(d) == 0, "files left");
    printf("    %zu bad solver settings: one line, exit 2, nothing written\n", sizeof cases / sizeof *cases);
    cli_rmtree(d);
}

/* An ODE preset's own keys with bad values: one line naming the preset key or the setting. */
static void test_solver_preset_bad(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    static const struct {
        const char *keys, *want;
    } cases[] = {
        {"\"steps\": \"abc\"", "\"steps\" must be an integer"},   {"\"steps\": -1", "\"steps\" must be an integer"},
        {"\"steps\": 1e9", "\"steps\" must be an integer"},         {"\"steps\": 2.5", "\"steps\" must be an integer"},
        {"\"steps\": 10, \"time_schedule\": 5", "time_schedule"},   {"\"steps\": 10, \"time_schedule\": \"cos\"", "--time-schedule: 'cos'"},
        {"\"steps\": 10, \"thresholding\": \"nan\"", "--thresholding"}, {"\"steps\": 10, \"thresholding\": \"0.9:-1\"", "--thresholding"},
    };
    char d[512], p[700], args[2048], js[1024];
    cli_mkdtemp(d, sizeof d);
    snprintf(p, sizeof p, "%s/bad.json", d);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(js, sizeof js, "{\"model\": \"unet_a\", \"guidance\": \"none\", \"sampler\": \"dpm++2m\", %s}", cases[i].keys);
        cli_write_file(p, js, strlen(js));
        snprintf(args, sizeof args, "--preset %s --models-dir tests/fixtures -n 1 -o %s/x.png", p, d);
        cli_result r = cli_run("ddpm-sample", d, args);
        CHECK(r.status == 2 && cli_count_lines(r.err) == 1 && strstr(r.err, cases[i].want), "%s: exit %d, %s", cases[i].keys, r.status, r.err);
        cli_run_free(&r);
    }
    CHECK(cli_count_entries(d) == 1, "files left beside the preset");
    printf("    %zu bad ODE preset values: one line, exit 2, nothing written\n", sizeof cases / sizeof *cases);
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_solver_traj) = {
    {"solvers: bad ODE preset values exit 2 with one line", test_solver_preset_bad},
    {"solvers: bad solver flags exit 2 with one line", test_solver_bad_flags},
    {"solvers: an ODE preset equals its flags", test_solver_preset},
    {"solvers: ddpm-sample --rng torch reproduces the reference's samples from the command line", test_solver_cli},
    {"solvers: trajectories match the PyTorch reference (every solver x guidance, clip/thresholding)", test_solver_traj},
    {NULL, NULL},
};
