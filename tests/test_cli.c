/* Tests for the command-line tools, run as processes from the project root: ddpm-forward's
 * outputs against the PyTorch references in tests/fixtures/NAME.io.safetensors, its error handling
 * (exit status 2, one line on stderr, no output file) and --help. The tools live in $BUILD
 * (default "build"); `make test` builds them before the test binary. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_safetensors.h"
#include "test.h"
#include "cli_util.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLI_TOL 1e-4

/* max |c - ref| / max |ref| over tensor `name` of two files (INFINITY on any mismatch) */
static double cli_rel_err(const gd_st_file *got, const gd_st_file *ref, const char *name) {
    const gd_st_tensor *c = gd_st_find(got, name), *r = gd_st_find(ref, name);
    if (!c || !r || c->dtype != GD_ST_F32 || r->dtype != GD_ST_F32 || c->ndim != r->ndim) return INFINITY;
    for (int i = 0; i < c->ndim; i++)
        if (c->shape[i] != r->shape[i]) return INFINITY;
    double md = 0, mr = 0;
    for (int64_t i = 0; i < r->numel; i++) {
        float a, b;
        memcpy(&a, (const char *)c->data + 4 * i, 4);
        memcpy(&b, (const char *)r->data + 4 * i, 4);
        if (a != a) return INFINITY;
        if (fabs((double)a - b) > md) md = fabs((double)a - b);
        if (fabs((double)b) > mr) mr = fabs((double)b);
    }
    return md / (mr > 0 ? mr : 1);
}

/* Checks that a failed run followed the contract: status 2, nothing on stdout, exactly one line
 * on stderr starting "ddpm-forward:", and nothing left in outdir (the output's directory). */
static void expect_error(const char *what, const char *tmp, const char *outdir, const char *args) {
    cli_result r = cli_run("ddpm-forward", tmp, args);
    int lines = cli_count_lines(r.err);
    CHECK(r.status == 2, "%s: exit status %d, want 2 (stderr: %s)", what, r.status, r.err);
    CHECK(lines == 1 && !strncmp(r.err, "ddpm-forward: ", 14) && r.err[strlen(r.err) - 1] == '\n',
          "%s: stderr should be one 'ddpm-forward: ' line, got %d lines: %s", what, lines, r.err);
    CHECK(r.out[0] == 0, "%s: unexpected stdout: %s", what, r.out);
    int left = cli_count_entries(outdir);
    CHECK(left == 0, "%s: %d file(s) left in the output directory", what, left);
    if (r.status == 2 && lines == 1) printf("    %-34s -> %s", what, r.err);
    cli_run_free(&r);
}

/* Writes a model file's embedded config to path; returns 0 on success. */
static int write_embedded_config(const char *model, const char *path) {
    char err[512];
    gd_st_file *mf = gd_st_open(model, err, sizeof err);
    CHECK(mf != NULL, "%s", err);
    const char *js = mf ? gd_st_metadata(mf, "config") : NULL;
    CHECK(js != NULL, "%s has no embedded config", model);
    FILE *f = js ? fopen(path, "w") : NULL;
    int ok = f && fputs(js, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    gd_st_close(mf);
    CHECK(ok, "cannot write %s", path);
    return ok ? 0 : -1;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_forward_parity(void) {
    if (!cli_tool_available("ddpm-forward")) return;
    char tmp[1024], out[1200], args[4096], err[512];
    CHECK(cli_mkdtemp(tmp, sizeof tmp) == 0, "mkdtemp failed");
    const char *names[] = {"unet_a", "unet_b", "sr_a", "cls_a", "cls_b"};
    for (int k = 0; k < 5; k++) {
        const char *n = names[k];
        snprintf(out, sizeof out, "%s/%s.out.safetensors", tmp, n);
        snprintf(args, sizeof args, "-m tests/fixtures/%s.safetensors -i tests/fixtures/%s.io.safetensors -o '%s' -t 2",
                 n, n, out);
        cli_result r = cli_run("ddpm-forward", tmp, args);
        CHECK(r.status == 0, "%s: exit status %d: %s", n, r.status, r.err);
        CHECK(cli_count_lines(r.out) == 1, "%s: want one summary line on stdout, got: %s", n, r.out);
        CHECK(r.err[0] == 0, "%s: unexpected stderr: %s", n, r.err);
        cli_run_free(&r);
        gd_st_file *got = gd_st_open(out, err, sizeof err);
        CHECK(got != NULL, "%s: %s", n, err);
        snprintf(args, sizeof args, "tests/fixtures/%s.io.safetensors", n);
        gd_st_file *ref = gd_st_open(args, err, sizeof err);
        CHECK(ref != NULL, "%s: %s", n, err);
        if (got && ref) {
            const char *tool = gd_st_metadata(got, "tool"), *cfg = gd_st_metadata(got, "config");
            CHECK(tool && !strcmp(tool, "ddpm-forward"), "%s: metadata tool = %s", n, tool ? tool : "(none)");
            CHECK(cfg && strstr(cfg, "\"model\""), "%s: metadata config = %s", n, cfg ? cfg : "(none)");
            if (gd_st_find(ref, "logits")) {
                double el = cli_rel_err(got, ref, "logits"), eg = cli_rel_err(got, ref, "grad");
                printf("    %-7s logits max|C-ref|/max|ref| = %.2e   grad = %.2e\n", n, el, eg);
                CHECK(el <= CLI_TOL && eg <= CLI_TOL, "%s: logits %.3e grad %.3e > %.0e", n, el, eg, CLI_TOL);
                CHECK(gd_st_count(got) == 2, "%s: %d tensors written, want logits and grad", n, gd_st_count(got));
            } else {
                double e = cli_rel_err(got, ref, "out");
                printf("    %-7s out    max|C-ref|/max|ref| = %.2e\n", n, e);
                CHECK(e <= CLI_TOL, "%s: out %.3e > %.0e", n, e, CLI_TOL);
                CHECK(gd_st_count(got) == 1, "%s: %d tensors written, want out", n, gd_st_count(got));
            }
        }
        gd_st_close(got);
        gd_st_close(ref);
    }
    cli_rmtree(tmp);
}

/* Classifier without y: logits only; -q: nothing on stdout; -c: a config file instead of the
 * embedded one; long options. */
static void test_forward_options(void) {
    if (!cli_tool_available("ddpm-forward")) return;
    char tmp[1024], in[1200], out[1200], cfgp[1200], args[4096], err[512];
    CHECK(cli_mkdtemp(tmp, sizeof tmp) == 0, "mkdtemp failed");

    /* cls_a without labels */
    gd_st_file *io = gd_st_open("tests/fixtures/cls_a.io.safetensors", err, sizeof err);
    CHECK(io != NULL, "%s", err);
    if (!io) return;
    const gd_st_tensor *x = gd_st_find(io, "x"), *t = gd_st_find(io, "t");
    gd_st_writer *w = gd_st_writer_new();
    gd_st_writer_add(w, "x", x->dtype, x->ndim, x->shape, x->data);
    gd_st_writer_add(w, "t", t->dtype, t->ndim, t->shape, t->data);
    snprintf(in, sizeof in, "%s/cls_nolabel.safetensors", tmp);
    CHECK(gd_st_writer_save(w, in, err, sizeof err) == 0, "%s", err);
    gd_st_writer_free(w);
    snprintf(out, sizeof out, "%s/cls_nolabel.out.safetensors", tmp);
    snprintf(args, sizeof args,
             "--model=tests/fixtures/cls_a.safetensors --inputs '%s' --output '%s' --quiet --threads 1", in, out);
    cli_result r = cli_run("ddpm-forward", tmp, args);
    CHECK(r.status == 0 && r.out[0] == 0 && r.err[0] == 0, "cls_a without y: status %d, stdout '%s', stderr '%s'",
          r.status, r.out, r.err);
    cli_run_free(&r);
    gd_st_file *got = gd_st_open(out, err, sizeof err);
    CHECK(got != NULL, "%s", err);
    if (got) {
        double el = cli_rel_err(got, io, "logits");
        CHECK(el <= CLI_TOL, "cls_a without y: logits %.3e", el);
        CHECK(!gd_st_find(got, "grad"), "cls_a without y: grad written");
        gd_st_close(got);
    }
    gd_st_close(io);

    /* unet_a with its config as a file */
    snprintf(cfgp, sizeof cfgp, "%s/unet_a.json", tmp);
    write_embedded_config("tests/fixtures/unet_a.safetensors", cfgp);
    snprintf(out, sizeof out, "%s/unet_a_cfg.out.safetensors", tmp);
    snprintf(args, sizeof args,
             "-m tests/fixtures/unet_a.safetensors -c '%s' -i tests/fixtures/unet_a.io.safetensors -o '%s' -v", cfgp,
             out);
    r = cli_run("ddpm-forward", tmp, args);
    CHECK(r.status == 0, "unet_a -c: status %d: %s", r.status, r.err);
    CHECK(strstr(r.err, "params") && strstr(r.err, "forward"), "-v should print a model summary and timings: %s",
          r.err);
    cli_run_free(&r);
    io = gd_st_open("tests/fixtures/unet_a.io.safetensors", err, sizeof err);
    got = gd_st_open(out, err, sizeof err);
    CHECK(got != NULL, "%s", err);
    if (got && io) {
        double e = cli_rel_err(got, io, "out");
        CHECK(e <= CLI_TOL, "unet_a -c: out %.3e", e);
    }
    gd_st_close(got);
    gd_st_close(io);
    cli_rmtree(tmp);
}

/* An inputs file for a fixture: x [N,C,S,S] (zeros unless xs given), t [N] I64, optional y I64 and low_res. */
static void write_inputs(const char *path, int64_t N, int64_t C, int64_t S, const int64_t *y, int64_t small,
                         int with_x) {
    char err[512];
    size_t nx = (size_t)(N * C * S * S);
    float *xd = calloc(nx ? nx : 1, sizeof(float));
    float *ld = small ? calloc((size_t)(N * C * small * small), sizeof(float)) : NULL;
    int64_t td[8] = {0};
    for (int i = 0; i < N && i < 8; i++)
        td[i] = 10 * i + 5;
    gd_st_writer *w = gd_st_writer_new();
    if (with_x) gd_st_writer_add(w, "x", GD_ST_F32, 4, (int64_t[]){N, C, S, S}, xd);
    gd_st_writer_add(w, "t", GD_ST_I64, 1, &N, td);
    if (y) gd_st_writer_add(w, "y", GD_ST_I64, 1, &N, y);
    if (small) gd_st_writer_add(w, "low_res", GD_ST_F32, 4, (int64_t[]){N, C, small, small}, ld);
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    gd_st_writer_free(w);
    free(xd);
    free(ld);
}

static void test_forward_errors(void) {
    if (!cli_tool_available("ddpm-forward")) return;
    char tmp[512], in[1024], outdir[1024], out[1200], args[8192], p[1200];
    CHECK(cli_mkdtemp(tmp, sizeof tmp) == 0, "mkdtemp failed");
    snprintf(in, sizeof in, "%s/in", tmp);
    snprintf(outdir, sizeof outdir, "%s/out", tmp);
    CHECK(mkdir(in, 0755) == 0 && mkdir(outdir, 0755) == 0, "mkdir failed");
    snprintf(out, sizeof out, "%s/result.safetensors", outdir);
    const char *UA = "tests/fixtures/unet_a.safetensors", *UB = "tests/fixtures/unet_b.safetensors",
               *CA = "tests/fixtures/cls_a.safetensors", *SR = "tests/fixtures/sr_a.safetensors",
               *IA = "tests/fixtures/unet_a.io.safetensors";

    /* command line */
    snprintf(args, sizeof args, "--bogus -m %s -i %s -o '%s'", UA, IA, out);
    expect_error("unknown flag", tmp, outdir, args);
    snprintf(args, sizeof args, "-i %s -o '%s'", IA, out);
    expect_error("missing -m", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -i %s", UA, IA);
    expect_error("missing -o", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -i %s -o '%s' -t zero", UA, IA, out);
    expect_error("bad -t", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -i %s -o '%s' stray", UA, IA, out);
    expect_error("stray argument", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -i %s -o", UA, IA);
    expect_error("-o without a value", tmp, outdir, args);

    /* model files */
    snprintf(args, sizeof args, "-m '%s/no_such_model.safetensors' -i %s -o '%s'", tmp, IA, out);
    expect_error("nonexistent model", tmp, outdir, args);
    DIR *d = opendir("tests/data/malformed");
    CHECK(d != NULL, "cannot open tests/data/malformed");
    int nmal = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(args, sizeof args, "-m 'tests/data/malformed/%s' -i %s -o '%s'", e->d_name, IA, out);
        char what[300];
        snprintf(what, sizeof what, "malformed model %.60s", e->d_name);
        expect_error(what, tmp, outdir, args);
        nmal++;
    }
    if (d) closedir(d);
    CHECK(nmal > 0, "no malformed models found");
    snprintf(args, sizeof args, "-m tests/data/valid_small.safetensors -i %s -o '%s'", IA, out);
    expect_error("model without an embedded config", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -i tests/data/malformed/truncated_file.safetensors -o '%s'", UA, out);
    expect_error("malformed inputs", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -c tests/fixtures/manifest.json -i %s -o '%s'", UA, IA, out);
    expect_error("config that is not a model config", tmp, outdir, args);
    snprintf(p, sizeof p, "%s/unet_a.json", in);
    write_embedded_config(UA, p);
    snprintf(args, sizeof args, "-m %s -c '%s' -i %s -o '%s'", CA, p, IA, out);
    expect_error("weights of another network", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -c '%s/no_such.json' -i %s -o '%s'", UA, in, IA, out);
    expect_error("nonexistent config", tmp, outdir, args);

    /* inputs: unet_a is class-conditional with 10 classes plus a null class (labels 0..10) */
    int64_t y_ok[2] = {3, 10}, y_sr[2] = {3, 9}, y_big[2] = {1, 11}, y_neg[2] = {-1, 0}, y_cls10[2] = {0, 10};
    snprintf(p, sizeof p, "%s/no_x.safetensors", in);
    write_inputs(p, 2, 3, 16, y_ok, 0, 0);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
    expect_error("inputs missing x", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/y_big.safetensors", in);
    write_inputs(p, 2, 3, 16, y_big, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
    expect_error("label out of range (11)", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/y_neg.safetensors", in);
    write_inputs(p, 2, 3, 16, y_neg, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
    expect_error("label out of range (-1)", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/no_y.safetensors", in);
    write_inputs(p, 2, 3, 16, NULL, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
    expect_error("conditional U-Net without y", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/cls_y10.safetensors", in);
    write_inputs(p, 2, 3, 16, y_cls10, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", CA, p, out);
    expect_error("classifier label 10 of 10", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/unet_b_y.safetensors", in);
    write_inputs(p, 2, 1, 28, y_ok, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UB, p, out);
    expect_error("y given to unconditional U-Net", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/x_shape.safetensors", in);
    write_inputs(p, 2, 3, 8, y_ok, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
    expect_error("wrong x shape", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/sr_no_lowres.safetensors", in);
    write_inputs(p, 2, 3, 16, y_sr, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", SR, p, out);
    expect_error("superres without low_res", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/lowres_to_unet.safetensors", in);
    write_inputs(p, 2, 3, 16, y_ok, 4, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
    expect_error("low_res given to a plain U-Net", tmp, outdir, args);

    snprintf(p, sizeof p, "%s/sr_lowres_shape.safetensors", in);
    write_inputs(p, 2, 3, 16, y_sr, 4, 1); /* sr_a's small_size is 8 */
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", SR, p, out);
    expect_error("wrong low_res shape", tmp, outdir, args);

    /* timesteps out of range, of the wrong dtype or shape */
    {
        char err[512];
        float xd[2 * 3 * 16 * 16] = {0}, tf[2] = {1, NAN};
        int64_t tbig[2] = {0, 100000}, y[2] = {0, 1}, n2 = 2, n3 = 3;
        double td[2] = {1, 2};
        struct {
            const char *what;
            gd_st_dtype dt;
            int64_t *shape;
            const void *data;
        } bad_t[] = {
            {"t = 100000", GD_ST_I64, &n2, tbig},
            {"t = NaN", GD_ST_F32, &n2, tf},
            {"t of dtype F64", GD_ST_F64, &n2, td},
            {"t of the wrong length", GD_ST_I64, &n3, (int64_t[]){1, 2, 3}},
        };
        for (int k = 0; k < 4; k++) {
            gd_st_writer *w = gd_st_writer_new();
            gd_st_writer_add(w, "x", GD_ST_F32, 4, (int64_t[]){2, 3, 16, 16}, xd);
            gd_st_writer_add(w, "t", bad_t[k].dt, 1, bad_t[k].shape, bad_t[k].data);
            gd_st_writer_add(w, "y", GD_ST_I64, 1, &n2, y);
            snprintf(p, sizeof p, "%s/bad_t%d.safetensors", in, k);
            CHECK(gd_st_writer_save(w, p, err, sizeof err) == 0, "%s", err);
            gd_st_writer_free(w);
            snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
            expect_error(bad_t[k].what, tmp, outdir, args);
        }
        /* x of the wrong dtype */
        gd_st_writer *w = gd_st_writer_new();
        gd_st_writer_add(w, "x", GD_ST_F64, 4, (int64_t[]){2, 3, 16, 8}, xd);
        gd_st_writer_add(w, "t", GD_ST_I64, 1, &n2, tbig);
        gd_st_writer_add(w, "y", GD_ST_I64, 1, &n2, y);
        snprintf(p, sizeof p, "%s/x_f64.safetensors", in);
        CHECK(gd_st_writer_save(w, p, err, sizeof err) == 0, "%s", err);
        gd_st_writer_free(w);
        snprintf(args, sizeof args, "-m %s -i '%s' -o '%s'", UA, p, out);
        expect_error("x of dtype F64", tmp, outdir, args);
    }

    /* output */
    snprintf(args, sizeof args, "-m %s -i %s -o '%s/no_such_dir/result.safetensors'", UA, IA, outdir);
    expect_error("output in a nonexistent directory", tmp, outdir, args);
    snprintf(args, sizeof args, "-m %s -i %s -o '%s'", UA, IA, outdir);
    expect_error("output is a directory", tmp, outdir, args);

    /* the null class (label 10) is valid for unet_a; the same file then runs */
    snprintf(p, sizeof p, "%s/y_null.safetensors", in);
    write_inputs(p, 2, 3, 16, y_ok, 0, 1);
    snprintf(args, sizeof args, "-m %s -i '%s' -o '%s' -q", UA, p, out);
    cli_result r = cli_run("ddpm-forward", tmp, args);
    CHECK(r.status == 0 && cli_file_exists(out), "null-class label: status %d: %s", r.status, r.err);
    cli_run_free(&r);
    cli_rmtree(tmp);
}

static void test_help(void) {
    if (!cli_tool_available("ddpm-forward")) return;
    char tmp[1024];
    CHECK(cli_mkdtemp(tmp, sizeof tmp) == 0, "mkdtemp failed");
    const char *forms[] = {"--help", "-h"};
    for (int k = 0; k < 2; k++) {
        cli_result r = cli_run("ddpm-forward", tmp, forms[k]);
        CHECK(r.status == 0, "%s: exit status %d", forms[k], r.status);
        CHECK(strstr(r.out, "usage:") && strstr(r.out, "example") && strstr(r.out, "ddpm-forward -m"),
              "%s: usage with an example expected on stdout, got: %s", forms[k], r.out);
        CHECK(r.err[0] == 0, "%s: unexpected stderr: %s", forms[k], r.err);
        cli_run_free(&r);
    }
    cli_rmtree(tmp);
}

GD_TEST_TABLE(gd_tests_cli) = {
    {"cli: ddpm-forward matches the PyTorch fixtures", test_forward_parity},
    {"cli: ddpm-forward options (-c, -q, long forms, classifier without y)", test_forward_options},
    {"cli: ddpm-forward errors exit 2 with one line and no output", test_forward_errors},
    {"cli: ddpm-forward --help", test_help},
    {NULL, NULL},
};
