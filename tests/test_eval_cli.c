/* ddpm-eval as a process on the shipped evaluator: closed-form checks (a set against its own
 * statistics: FID 0, precision = recall = 1), the evaluator's test accuracy, bad input, and the
 * FID regression of the default models against tests/fid_baseline.json. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_image.h"
#include "gd_safetensors.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define TOOL "ddpm-eval"
#define REF "build/fashion_test_ref.safetensors"
#define BASELINE "tests/fid_baseline.json"

static const char *ref_path(void) {
    static char p[512];
    const char *b = getenv("BUILD");
    snprintf(p, sizeof p, "%s/fashion_test_ref.safetensors", b && *b ? b : "build");
    return p;
}

/* Runs ddpm-eval --json; returns the parsed object (NULL on failure, CHECKed). */
static cJSON *eval_json(const char *dir, const char *args) {
    char a[2048];
    snprintf(a, sizeof a, "--json -q %s", args);
    cli_result r = cli_run(TOOL, dir, a);
    CHECK(r.status == 0, "ddpm-eval %s exited %d: %s", args, r.status, r.err);
    cJSON *j = r.status == 0 ? cJSON_Parse(r.out) : NULL;
    CHECK(r.status != 0 || j, "ddpm-eval %s: output is not JSON: %s", args, r.out);
    cli_run_free(&r);
    return j;
}

static double num(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void expect_fail(const char *dir, const char *args, const char *expect, const char *made) {
    cli_result r = cli_run(TOOL, dir, args);
    CHECK(r.status == 2, "'%s': exit %d, expected 2", args, r.status);
    CHECK(cli_count_lines(r.err) == 1, "'%s': stderr not one line: %s", args, r.err);
    CHECK(strstr(r.err, expect) != NULL, "'%s': error '%s' lacks '%s'", args, r.err, expect);
    if (made) CHECK(!cli_file_exists(made), "'%s' left %s behind", args, made);
    cli_run_free(&r);
}

static void test_errors(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], p[600], a[2048], made[600];
    cli_mkdtemp(d, sizeof d);
    snprintf(made, sizeof made, "%s/ref.safetensors", d);
    expect_fail(d, "/no/such.npz", "No such file", NULL);
    expect_fail(d, "--bogus x.npz", "unknown option", NULL);
    expect_fail(d, "--limit 0 x.npz", "--limit", NULL);
    /* an image batch of the wrong size: nothing written for --make-ref */
    uint8_t img[4 * 8 * 8 * 3] = {0};
    char err[256];
    snprintf(p, sizeof p, "%s/small.npz", d);
    CHECK(gd_write_npz(p, img, 4, 8, 8, 3, NULL, err, sizeof err) == 0, "%s", err);
    snprintf(a, sizeof a, "--make-ref %s %s", made, p);
    expect_fail(d, a, "images are 8x8x3", made);
    /* a safetensors file that is not reference statistics */
    snprintf(a, sizeof a, "--ref tests/fixtures/unet_a.safetensors --limit 8 fashion-mnist:test");
    expect_fail(d, a, "not ddpm-eval reference statistics", NULL);
    /* statistics made with another network are refused, not silently compared */
    snprintf(a, sizeof a, "-q --evaluator models/fashion_classifier_ce.safetensors --make-ref %s --limit 50 fashion-mnist:test", made);
    cli_result r = cli_run(TOOL, d, a);
    CHECK(r.status == 0, "%s: %s", a, r.err);
    cli_run_free(&r);
    snprintf(a, sizeof a, "--ref %s --limit 50 fashion-mnist:train", made);
    expect_fail(d, a, "different evaluator", NULL);
    cli_rmtree(d);
}

/* A set scored against its own statistics: FID 0 up to rounding, and every point lies within its
 * own k-NN radius (distance 0), so precision = recall = 1 exactly. */
static void test_self_reference(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], a[2048];
    cli_mkdtemp(d, sizeof d);
    snprintf(a, sizeof a, "--make-ref %s/r.safetensors --limit 400 fashion-mnist:train", d);
    cJSON *mk = eval_json(d, a);
    snprintf(a, sizeof a, "--ref %s/r.safetensors --limit 400 fashion-mnist:train", d);
    cJSON *self = eval_json(d, a);
    snprintf(a, sizeof a, "--ref %s/r.safetensors --limit 400 fashion-mnist:test", d);
    cJSON *other = eval_json(d, a);
    if (mk && self && other) {
        double f = num(self, "fid"), p = num(self, "precision"), r = num(self, "recall"), fo = num(other, "fid");
        printf("    400 training images vs their own statistics: FID %.3g, precision %.4f, recall %.4f; "
               "400 test images: FID %.4f\n", f, p, r, fo);
        CHECK(fabs(f) < 1e-9, "FID of a set against itself %.3g", f);
        CHECK(p == 1.0 && r == 1.0, "precision %.6f recall %.6f against itself", p, r);
        CHECK(fo > 1e-4 && fo < 1e3, "FID of other real images %.6f", fo);
        CHECK(num(self, "accuracy") == num(mk, "accuracy") && num(self, "inception_score") == num(mk, "inception_score"),
              "scores of the same images differ between runs");
    }
    cJSON_Delete(mk);
    cJSON_Delete(self);
    cJSON_Delete(other);
    cli_rmtree(d);
}

/* Issue 4's bar for the evaluator: >= 91% on the Fashion-MNIST test set (recorded by make ref). */
static void test_evaluator_accuracy(void) {
    char err[600];
    gd_st_file *f = gd_st_open(ref_path(), err, sizeof err);
    CHECK(f != NULL, "%s (make ref builds it)", err);
    if (!f) return;
    const char *acc = gd_st_metadata(f, "accuracy"), *n = gd_st_metadata(f, "count");
    CHECK(acc && n, "reference statistics lack accuracy/count metadata");
    if (acc && n) {
        printf("    evaluator top-1 on the %s Fashion-MNIST test images: %s\n", n, acc);
        CHECK(atof(acc) >= 0.91 && atoi(n) == 10000, "evaluator accuracy %s on %s images", acc, n);
    }
    gd_st_close(f);
}

/* The default models, fixed seeds: FID (and accuracy) must stay within the recorded tolerance of
 * the baseline. A deliberately degraded run (DDIM with 3 steps) must fail the same check, so the
 * check can fail. */
static void test_fid_regression(void) {
    if (!cli_tool_available(TOOL) || !cli_tool_available("ddpm-sample")) return;
    char *text = cli_slurp(BASELINE);
    cJSON *b = cJSON_Parse(text);
    free(text);
    CHECK(b != NULL, BASELINE " missing or not JSON");
    if (!b) return;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(b, "sample_args");
    double fid0 = num(b, "fid"), tol = num(b, "fid_tolerance_rel"), acc0 = num(b, "accuracy"), atol = num(b, "accuracy_tolerance");
    CHECK(cJSON_IsString(args) && !isnan(fid0) && !isnan(tol) && !isnan(acc0) && !isnan(atol), "baseline fields");
    char d[512], a[2048];
    cli_mkdtemp(d, sizeof d);
    for (int degraded = 0; degraded < 2 && cJSON_IsString(args); degraded++) {
        snprintf(a, sizeof a, "%s %s --npz %s/s.npz -o %s/s.png -q", args->valuestring,
                 degraded ? "--steps 3" : "", d, d);
        cli_result r = cli_run("ddpm-sample", d, a);
        CHECK(r.status == 0, "ddpm-sample %s: %s", a, r.err);
        cli_run_free(&r);
        /* the gate itself is ddpm-eval --baseline (the flags an ImageNet CI job uses too) */
        snprintf(a, sizeof a, "--json --ref %s %s/s.npz --baseline " BASELINE, ref_path(), d);
        cli_result r2 = cli_run(TOOL, d, a);
        cJSON *j = cJSON_Parse(r2.out);
        CHECK(j != NULL, "ddpm-eval %s: %s", a, r2.err);
        if (j) {
            double fid = num(j, "fid"), acc = num(j, "accuracy");
            int ok = fid <= fid0 * (1 + tol) && acc >= acc0 - atol;
            printf("    %s: FID %.4f (baseline %.4f, limit %.4f), accuracy %.4f (baseline %.4f, limit %.4f): %s, ddpm-eval exit %d\n",
                   degraded ? "degraded control (3 steps)" : "default models", fid, fid0, fid0 * (1 + tol), acc, acc0,
                   acc0 - atol, ok ? "within" : "REGRESSED", r2.status);
            if (degraded) CHECK(!ok && r2.status == 1 && strstr(r2.err, "REGRESSION FID"),
                                "the degraded control passed the regression check: the check cannot fail (exit %d)", r2.status);
            else CHECK(ok && r2.status == 0, "FID/accuracy regressed against " BASELINE " (exit %d): %s", r2.status, r2.err);
        }
        cli_run_free(&r2);
        cJSON_Delete(j);
    }
    cJSON_Delete(b);
    cli_rmtree(d);
}

/* ddpm-sample --uncond: the model sees only the null label, so unguided samples do not depend on
 * --class, and differ from conditional ones. */
static void test_uncond(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], a[4096], p[3][600];
    cli_mkdtemp(d, sizeof d);
    const char *v[3] = {"--uncond --class 0", "--uncond --class 7", "--class 7"};
    for (int i = 0; i < 3; i++) {
        snprintf(p[i], sizeof p[i], "%s/%d.npz", d, i);
        snprintf(a, sizeof a, "%s -n 2 --seed 5 --sampler ddim --steps 3 -q --npz %s -o %s/%d.png", v[i], p[i], d, i);
        cli_result r = cli_run("ddpm-sample", d, a);
        CHECK(r.status == 0, "%s: %s", a, r.err);
        cli_run_free(&r);
    }
    uint8_t *im[3] = {0};
    int64_t *lab[3] = {0};
    int n, h, w, c;
    char err[256];
    int ok = 1;
    for (int i = 0; i < 3; i++) ok &= gd_read_npz(p[i], &im[i], &n, &h, &w, &c, &lab[i], err, sizeof err) == 0;
    CHECK(ok, "%s", err);
    if (ok) {
        size_t sz = (size_t)n * h * w * c;
        CHECK(!memcmp(im[0], im[1], sz), "--uncond samples depend on --class");
        CHECK(memcmp(im[1], im[2], sz), "--uncond samples equal the conditional ones");
        CHECK(lab[0] && lab[1] && lab[0][0] == 0 && lab[1][0] == 7, "--uncond labels are the requested classes");
    }
    for (int i = 0; i < 3; i++) free(im[i]), free(lab[i]);
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_eval_cli) = {
    {"eval_cli_errors", test_errors},
    {"eval_cli_self_reference", test_self_reference},
    {"eval_evaluator_accuracy", test_evaluator_accuracy},
    {"eval_sample_uncond", test_uncond},
    {"eval_fid_regression", test_fid_regression},
    {NULL, NULL},
};
