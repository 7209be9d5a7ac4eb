/* ddpm-eval with the Inception (src/cli/eval_inception.c): a reference batch written by
 * --make-ref, the printout in evaluator.py's order and wording, --json, the numbers against the
 * library computed directly, the --baseline gate (gd_eval_gate) and bad input. Random weights
 * (inception:random): no real weights can be downloaded here. */
#include "cli_util.h"
#include "gd_eval.h"
#include "gd_image.h"
#include "gd_inception.h"
#include "gd_util.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define TOOL "ddpm-eval"
enum { N = 8, HW = 32 };

static uint8_t *images(const char *name) {
    uint8_t *p = malloc((size_t)N * HW * HW * 3);
    uint64_t h = gd_fnv1a64(name);
    for (size_t i = 0; i < (size_t)N * HW * HW * 3; i++) p[i] = (uint8_t)(gd_rand_named_u(h, i) * 256);
    return p;
}

/* "Key: value" of a line of evaluator.py's printout */
static double line_value(const char *out, const char *key) {
    const char *p = strstr(out, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static void test_cli_scores(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], a[2048], sp[600], rp[600], ref[600], err[256];
    cli_mkdtemp(d, sizeof d);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", d);
    setenv("GD_CACHE_DIR", cache, 1); /* never the user's ~/.cache */
    snprintf(sp, sizeof sp, "%s/s.npz", d), snprintf(rp, sizeof rp, "%s/r.npz", d), snprintf(ref, sizeof ref, "%s/ref.npz", d);
    uint8_t *si = images("cli.samp"), *ri = images("cli.ref");
    CHECK(gd_write_npz(sp, si, N, HW, HW, 3, NULL, err, sizeof err) == 0 && gd_write_npz(rp, ri, N, HW, HW, 3, NULL, err, sizeof err) == 0,
          "%s", err);
    snprintf(a, sizeof a, "--evaluator inception:random -q --make-ref %s %s", ref, rp);
    cli_result r = cli_run(TOOL, d, a);
    CHECK(r.status == 0 && cli_file_exists(ref), "--make-ref: exit %d: %s", r.status, r.err);
    cli_run_free(&r);
    snprintf(a, sizeof a, "--evaluator inception:random -q --ref %s %s", ref, sp);
    cli_result t = cli_run(TOOL, d, a);
    CHECK(t.status == 0, "scoring: exit %d: %s", t.status, t.err);
    const char *order[5] = {"Inception Score: ", "FID: ", "sFID: ", "Precision: ", "Recall: "};
    const char *at = t.out;
    for (int i = 0; i < 5; i++) {
        const char *p = strstr(at, order[i]);
        CHECK(p && (p == t.out || p[-1] == '\n'), "line '%s' missing or out of order in:\n%s", order[i], t.out);
        at = p ? p : at;
    }
    CHECK(cli_count_lines(t.out) == 5, "5 lines expected:\n%s", t.out);
    CHECK(cli_count_entries(cache) == 1, "the reference features cached in %s (%d files)", cache, cli_count_entries(cache));

    /* the same numbers from the library directly */
    gd_inception *m = gd_inception_random(4, err, sizeof err);
    gd_inception_eval *ev = gd_inception_eval_new(m, GD_INCEPTION_RESIZE_TF, err, sizeof err);
    float *pool[2], *spat[2], *lg = malloc(sizeof(float) * N * GD_INCEPTION_CLASSES);
    for (int k = 0; k < 2; k++) {
        pool[k] = malloc(sizeof(float) * N * GD_INCEPTION_POOL), spat[k] = malloc(sizeof(float) * N * GD_INCEPTION_SPATIAL);
        CHECK(gd_inception_eval_run(ev, k ? ri : si, N, HW, HW, 3, pool[k], spat[k], k ? NULL : lg, err, sizeof err) == 0, "%s", err);
    }
    double want[5];
    int dims[2] = {GD_INCEPTION_POOL, GD_INCEPTION_SPATIAL};
    for (int f = 0; f < 2; f++) {
        int D = dims[f];
        double *mu[2], *sg[2];
        for (int k = 0; k < 2; k++) {
            mu[k] = malloc(sizeof(double) * D), sg[k] = malloc(sizeof(double) * D * D);
            float *m32 = malloc(sizeof(float) * D);
            const float *x = f ? spat[k] : pool[k];
            gd_feature_stats(x, N, D, mu[k], sg[k]);
            gd_feature_mean_f32(x, N, D, m32);
            for (int j = 0; j < D; j++) mu[k][j] = m32[j];
            if (k) { /* the reference batch holds these statistics */
                double *st;
                int nd;
                int64_t sh[4];
                CHECK(gd_npz_read_f64(ref, f ? "mu_s" : "mu", &st, &nd, sh, err, sizeof err) == 0 && nd == 1 && sh[0] == D &&
                          !memcmp(st, mu[k], sizeof(double) * D),
                      "--make-ref %s differs from the library's", f ? "mu_s" : "mu");
                free(st);
            }
            free(m32);
        }
        gd_frechet_distance(D, mu[0], sg[0], mu[1], sg[1], &want[1 + f], err, sizeof err);
        for (int k = 0; k < 2; k++) free(mu[k]), free(sg[k]);
    }
    want[0] = gd_inception_score(lg, N, GD_INCEPTION_CLASSES, 5000);
    double rr[N], sr[N];
    gd_knn_radii(pool[1], N, GD_INCEPTION_POOL, 3, rr);
    gd_knn_radii(pool[0], N, GD_INCEPTION_POOL, 3, sr);
    gd_precision_recall(pool[1], rr, N, pool[0], sr, N, GD_INCEPTION_POOL, &want[3], &want[4]);
    /* FID/sFID: the tool takes the n x n route for n < d samples, the library call above the d x d
     * eigen route, which loses ~sqrt(eps) on that rank-8 covariance (test_inception: the exact route) */
    for (int i = 0; i < 5; i++) {
        double got = line_value(t.out, order[i]), tol = i == 1 || i == 2 ? 1e-6 * fabs(want[i]) : 0;
        CHECK(fabs(got - want[i]) <= tol, "%s%.17g printed, the library gives %.17g", order[i], got, want[i]);
    }
    printf("    IS %.6f, FID %.4f, sFID %.4f, P %.3f, R %.3f: printed = library\n", want[0], want[1], want[2],
           want[3], want[4]);
    /* from the cache now: the same numbers */
    snprintf(a, sizeof a, "--evaluator inception:random -q --json --ref %s %s", ref, sp);
    cli_result j = cli_run(TOOL, d, a);
    cJSON *o = cJSON_Parse(j.out);
    const char *jk[5] = {"inception_score", "fid", "sfid", "precision", "recall"};
    for (int i = 0; o && i < 5; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, jk[i]);
        CHECK(cJSON_IsNumber(v) && v->valuedouble == line_value(t.out, order[i]), "--json %s = the printed value", jk[i]);
    }
    CHECK(o && j.status == 0, "--json: exit %d, %s", j.status, j.out);
    cJSON_Delete(o);
    cli_run_free(&j);

    /* the gate: a baseline FID far below this one fails (exit 1, naming it), a tolerance lets it pass */
    char bl[600], js[256];
    snprintf(bl, sizeof bl, "%s/baseline.json", d);
    snprintf(js, sizeof js, "{\"fid\": %.17g, \"fid_tolerance_rel\": 0.01, \"precision\": %.17g, \"precision_tolerance\": 0}",
             want[1] * 0.5, want[3]);
    cli_write_file(bl, js, strlen(js));
    for (int pass = 0; pass < 1; pass++) { /* passing with a tolerance: test_gate and the Fashion regression */
        snprintf(a, sizeof a, "--evaluator inception:random -q --ref %s %s --baseline %s %s", ref, sp, bl,
                 pass ? "--tolerance 1.5" : "");
        cli_result g = cli_run(TOOL, d, a);
        if (pass) CHECK(g.status == 0 && strstr(g.err, "ok         FID"), "gate with --tolerance 1.5: exit %d: %s", g.status, g.err);
        else CHECK(g.status == 1 && strstr(g.err, "REGRESSION FID") && strstr(g.err, "ok         Precision"),
                   "gate: exit %d: %s", g.status, g.err);
        cli_run_free(&g);
    }
    cli_run_free(&t);
    for (int k = 0; k < 2; k++) free(pool[k]), free(spat[k]);
    free(lg), free(si), free(ri);
    gd_inception_eval_free(ev);
    gd_inception_free(m);
    cli_rmtree(d);
    unsetenv("GD_CACHE_DIR");
}

static void test_gate(void) {
    gd_eval_scores s = {10.0, 4.0, 6.0, 0.80, 0.50, NAN};
    char rep[1024], err[256];
    struct {
        const char *json;
        double tol;
        int want;
        const char *says;
    } c[] = {
        {"{\"fid\": 3.9, \"fid_tolerance_rel\": 0.05}", -1, 0, "ok         FID: 4, baseline 3.9, limit 4.095"},
        {"{\"fid\": 3.9, \"fid_tolerance_rel\": 0.01}", -1, 1, "REGRESSION FID: 4, baseline 3.9, limit 3.939"},
        {"{\"fid\": 3.9, \"fid_tolerance_rel\": 0.01}", 0.1, 0, "ok         FID"},
        {"{\"sfid\": 5.0, \"sfid_tolerance_rel\": 0.1}", -1, 1, "REGRESSION sFID"},
        {"{\"precision\": 0.82, \"precision_tolerance\": 0.01, \"recall\": 0.5}", -1, 1, "REGRESSION Precision: 0.8, baseline 0.82, limit 0.81"},
        {"{\"recall\": 0.5, \"what\": \"notes are ignored\"}", -1, 0, "ok         Recall"},
        {"{\"inception_score\": 10.5, \"inception_score_tolerance_rel\": 0.1}", -1, 0, "ok         Inception Score"},
        {"{\"accuracy\": 0.9}", -1, -1, "did not compute accuracy"},
        {"{\"what\": \"nothing\"}", -1, -1, "no score to check"},
        {"{\"fid\": \"4\"}", -1, -1, "must be numbers"},
        {"{\"fid_tolerance_rel\": 0.1}", -1, -1, "without 'fid'"},
        {"[1]", -1, -1, "not a JSON object"},
        {"{\"fid\": 3.9, \"fid_tolerance_rel\": -1}", -1, -1, "must be numbers"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        err[0] = rep[0] = 0;
        int g = gd_eval_gate(c[i].json, &s, c[i].tol, rep, sizeof rep, err, sizeof err);
        CHECK(g == c[i].want && strstr(g < 0 ? err : rep, c[i].says), "gate %s: %d, '%s%s' (wanted %d, '%s')", c[i].json, g,
              rep, err, c[i].want, c[i].says);
    }
}

static void expect_exit2(const char *dir, const char *args, const char *says) {
    cli_result r = cli_run(TOOL, dir, args);
    CHECK(r.status == 2 && strstr(r.err, says) && cli_count_lines(r.err) == 1, "ddpm-eval %s: exit %d, stderr '%s' (wanted '%s')",
          args, r.status, r.err, says);
    cli_run_free(&r);
}

static void test_cli_bad_input(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], a[2048], sp[600], err[256];
    cli_mkdtemp(d, sizeof d);
    setenv("GD_CACHE_DIR", "/nonexistent/never-written", 1);
    snprintf(sp, sizeof sp, "%s/s.npz", d);
    uint8_t *si = images("cli.samp");
    gd_write_npz(sp, si, N, HW, HW, 3, NULL, err, sizeof err);
    /* a numpy reference batch whose statistics are not the Inception's (mu [4]) */
    snprintf(a, sizeof a, "--evaluator inception:random -q --ref %s/tests/fixtures/npz_ref_small.npz %s", getenv("PWD"), sp);
    expect_exit2(d, a, "'mu' must be [2048]");
    snprintf(a, sizeof a, "--evaluator inception:random --inception-resize cubic %s", sp);
    expect_exit2(d, a, "--inception-resize: 'cubic' is not tf or pytorch");
    snprintf(a, sizeof a, "--evaluator inception:random --make-ref %s/x.safetensors %s", d, sp);
    expect_exit2(d, a, "reference batch, OUT.npz");
    snprintf(a, sizeof a, "--inception-resize tf %s", sp);
    expect_exit2(d, a, "only with the Inception evaluator");
    snprintf(a, sizeof a, "--evaluator inception:random -q --baseline %s/none.json %s", d, sp);
    expect_exit2(d, a, "none.json");
    snprintf(a, sizeof a, "--evaluator inception:random -q --make-ref %s %s", sp, sp);
    expect_exit2(d, a, "");
    CHECK(cli_count_entries(d) == 1, "nothing but the sample file left in %s (%d entries)", d, cli_count_entries(d));
    /* --evaluator inception without GD_INCEPTION_WEIGHTS */
    snprintf(a, sizeof a, "env -u GD_INCEPTION_WEIGHTS %s --evaluator inception %s 2>/dev/null", cli_tool(TOOL), sp);
    int rc = system(a);
    CHECK(WEXITSTATUS(rc) == 2, "--evaluator inception without GD_INCEPTION_WEIGHTS: exit %d", WEXITSTATUS(rc));
    free(si);
    cli_rmtree(d);
    unsetenv("GD_CACHE_DIR");
}

GD_TEST_TABLE(gd_tests_inception_cli) = {
    {"inception cli: --make-ref, evaluator.py's five lines, --json = the library, --baseline", test_cli_scores},
    {"inception cli: the regression gate's rules (gd_eval_gate)", test_gate},
    {"inception cli: bad input exits 2 with one line, nothing left behind", test_cli_bad_input},
    {NULL, NULL},
};
