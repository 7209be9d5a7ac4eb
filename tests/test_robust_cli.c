/* Regression tests of issue 11 (hostile input, lost data): robust_cli. The tools as processes: an
 * output that is also an input or another output is refused before any work (whatever the
 * spelling: ./X, a/../a/X, a symlink or a hard link); a run leaves all of its outputs or none (a
 * full disk, a name taken by a directory) and removes the temporaries killed runs left; '' and a
 * missing argument are one-line errors naming the problem; bad numbers read from files are errors;
 * error exits are status 2 (also under LeakSanitizer: BUILD=<asan build>). */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "pt_zip.h"
#include "gd_eval.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_safetensors.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNET_A "tests/fixtures/unet_a.safetensors"
#define SR_A "tests/fixtures/sr_a.safetensors"
#define EVALUATOR "models/fashion_classifier_ce.safetensors"
#define QUICK "-n 2 --steps 2 -q --seed 1 -t 1"

/* A refusal: status 2, nothing on stdout, one line on stderr that holds want. */
static void expect_refused(const char *tool, const char *dir, const char *args, const char *want) {
    cli_result r = cli_run(tool, dir, args);
    CHECK(r.status == 2 && !r.out[0] && cli_count_lines(r.err) == 1 && strstr(r.err, want),
          "%s %s: want status 2 and one line holding \"%s\"; got %d, stdout '%s', stderr: %s", tool, args, want, r.status,
          r.out, r.err);
    cli_run_free(&r);
}

static int same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = cli_read_file(a, &na), *y = cli_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static int copy_file(const char *from, const char *to) {
    size_t n = 0;
    unsigned char *b = cli_read_file(from, &n);
    int rc = b ? cli_write_file(to, b, n) : -1;
    free(b);
    CHECK(!rc, "copying %s to %s", from, to);
    return rc;
}

/* n noise images h x w x c (and labels 0..n-1) as an .npz. */
static int write_images(const char *path, int n, int h, int w, int c) {
    size_t k = (size_t)n * h * w * c;
    uint8_t *im = malloc(k);
    int64_t lab[64];
    for (size_t i = 0; i < k; i++) im[i] = (uint8_t)((i * 2654435761u) >> 13);
    for (int i = 0; i < n && i < 64; i++) lab[i] = i % 10;
    char err[512];
    int rc = gd_write_npz(path, im, n, h, w, c, lab, err, sizeof err);
    CHECK(!rc, "%s", err);
    free(im);
    return rc;
}

/* path spelled relative to the working directory ("../../tmp/..."). */
static void relative_to_cwd(const char *path, char *out, size_t n) {
    char cwd[PATH_MAX];
    size_t k = 0;
    out[0] = 0;
    if (!getcwd(cwd, sizeof cwd)) return;
    for (const char *c = cwd; *c; c++)
        if (*c == '/' && c[1]) k += (size_t)snprintf(out + k, n - k, "../");
    snprintf(out + k, n - k, "%s", path + 1);
}

/* The pid of a process that has exited (and been reaped): a writer killed long ago. */
static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return (long)p;
}

/* ---- an output that is an input, or another output ------------------------------------------- */

/* A base model for sr_a (random weights, 3x8x8 samples): a cascade, for --save-base. */
static int make_base8(const char *path) {
    const char *js = "{\"model\": \"unet\", \"image_size\": 8, \"in_channels\": 3, \"num_channels\": 32, \"channel_mult\": \"1,1\", "
                     "\"num_res_blocks\": 1, \"attention_resolutions\": \"4\", \"num_head_channels\": 16, \"learn_sigma\": true, "
                     "\"class_cond\": true, \"num_classes\": 10}";
    gd_config cfg;
    char err[512];
    if (gd_config_parse(js, &cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return -1;
    }
    gd_model *m = gd_model_random(&cfg, 7);
    gd_net *net = m ? gd_net_new(m, 1, 0, err, sizeof err) : NULL; /* makes every weight */
    int rc = net ? gd_model_save(m, path, err, sizeof err) : -1;
    CHECK(!rc, "the cascade's base model: %s", err);
    gd_net_free(net);
    gd_model_free(m);
    gd_config_free(&cfg);
    return rc;
}

/* ddpm-sample -o X -m X replaced the model and exited 0; --npz, the sidecar, --base-npz as well. */
static void test_sample_output_is_input(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], m[700], rel[1400], p[1400], c[700], b[700], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(m, sizeof m, "%s/m.safetensors", d);
    snprintf(c, sizeof c, "%s/c.json", d);
    snprintf(b, sizeof b, "%s/b.npz", d);
    snprintf(p, sizeof p, "%s/b.keep", d);
    if (copy_file(UNET_A, m) || write_images(b, 2, 8, 8, 3) || copy_file(b, p)) goto out;
    char base8[700];
    snprintf(base8, sizeof base8, "%s/base8.safetensors", d);
    if (make_base8(base8)) goto out;
    gd_st_file *f = gd_st_open(UNET_A, err, sizeof err);
    const char *cfg = f ? gd_st_metadata(f, "config") : NULL;
    size_t cfg_len = cfg ? strlen(cfg) : 0;
    CHECK(cfg && !cli_write_file(c, cfg, cfg_len), "the fixture's config: %s", err);
    gd_st_close(f);
    snprintf(p, sizeof p, "%s/link.png", d);
    CHECK(!symlink(m, p), "symlink: %s", strerror(errno));
    snprintf(p, sizeof p, "%s/hard.png", d);
    CHECK(!link(m, p), "link: %s", strerror(errno));
    relative_to_cwd(d, rel, sizeof rel);
    const char *base = strrchr(d, '/') + 1;
    int before = cli_count_entries(d);
    struct {
        const char *want;
        char args[4096];
    } cs[16];
    int n = 0;
#define CASE(w, ...) (snprintf(cs[n].args, sizeof cs[n].args, __VA_ARGS__), cs[n++].want = (w))
    CASE("is also the input --model", "-m %s -o %s", m, m);
    CASE("is also the input --model", "-m %s --npz %s -o %s/g.png", m, m, d);
    CASE("is also the input --model", "-m %s/./m.safetensors -o %s/../%s/m.safetensors", d, d, base);
    CASE("is also the input --model", "-m %s -o %s/m.safetensors", m, rel);
    CASE("is also the input --model", "-m %s -o %s/link.png", m, d);
    CASE("is also the input --model", "-m %s -o %s/hard.png", m, d);
    CASE("is also the output --output", "-m %s -o %s/g.png --npz %s/g.png", m, d, d);
    CASE("is also the output --output", "-m %s -o ./%s/./g.png --npz %s/g.png", m, rel, d);
    CASE("is also the output --output's .json sidecar", "-m %s -o %s/g.png --npz %s/g.png.json", m, d, d);
    CASE("is also the input --model-config", "-m %s --model-config %s -o %s/c", m, c, d);
    CASE("is also the input --base-npz", "-m %s --base-npz %s -o %s --upsample-steps 2", SR_A, b, b);
    CASE("is also the output --output", "-m %s --upsampler %s --upsample-steps 2 --save-base %s/g.png -o %s/g.png", base8, SR_A, d, d);
    CASE("is also the input --model", "-m %s --upsampler %s --upsample-steps 2 --save-base %s -o %s/g.png", base8, SR_A, base8, d);
#undef CASE
    for (int i = 0; i < n; i++) {
        char args[4200];
        snprintf(args, sizeof args, "%s " QUICK, cs[i].args);
        expect_refused("ddpm-sample", d, args, cs[i].want);
    }
    CHECK(same_bytes(m, UNET_A), "the model was changed");
    snprintf(p, sizeof p, "%s/b.keep", d);
    CHECK(same_bytes(b, p) && cli_file_size(c) == cfg_len, "an input was changed");
    CHECK(cli_count_entries(d) == before, "%d entries after the refused runs, %d before", cli_count_entries(d), before);
out:
    cli_rmtree(d);
}

/* --save-each DIR wrote sample_000000_seed1_class3.png over an input of that name. */
static void test_save_each_name_is_input(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], e[600], m[800], a[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(e, sizeof e, "%s/each", d);
    mkdir(e, 0755);
    snprintf(m, sizeof m, "%s/sample_000000_seed1_class3.png", e);
    if (copy_file(UNET_A, m)) goto out;
    snprintf(a, sizeof a, "-m %s --class 3 -n 1 --steps 2 --seed 1 -q --save-each %s -o %s/g.png", m, e, d);
    expect_refused("ddpm-sample", d, a, "(--save-each) is also the input --model");
    CHECK(same_bytes(m, UNET_A), "the model was changed");
    CHECK(cli_count_entries(e) == 1 && cli_count_entries(d) == 1, "files left: %d in each/, %d", cli_count_entries(e),
          cli_count_entries(d));
out:
    cli_rmtree(d);
}

/* merge -o A A B and slice -o A ... A overwrote their input. */
static void test_npz_output_is_input(void) {
    if (!cli_tool_available("ddpm-npz")) return;
    char d[512], A[600], B[600], a[4096], keep[600];
    cli_mkdtemp(d, sizeof d);
    snprintf(A, sizeof A, "%s/a.npz", d);
    snprintf(B, sizeof B, "%s/b.npz", d);
    snprintf(keep, sizeof keep, "%s/a.copy", d);
    if (write_images(A, 3, 4, 4, 1) || write_images(B, 2, 4, 4, 1) || copy_file(A, keep)) goto out;
    snprintf(a, sizeof a, "merge -o %s %s %s", A, A, B);
    expect_refused("ddpm-npz", d, a, "is also the input");
    snprintf(a, sizeof a, "merge -o %s/./a.npz %s %s", d, B, A);
    expect_refused("ddpm-npz", d, a, "is also the input");
    snprintf(a, sizeof a, "slice -o %s --first 0 --count 1 %s", A, A);
    expect_refused("ddpm-npz", d, a, "is also the input");
    CHECK(same_bytes(A, keep) && cli_count_entries(d) == 3, "a.npz changed or files left (%d)", cli_count_entries(d));
    snprintf(a, sizeof a, "merge -o %s/c.npz %s %s", d, B, B); /* reading one file twice is fine */
    cli_result r = cli_run("ddpm-npz", d, a);
    CHECK(r.status == 0 && strstr(r.out, "4 images"), "%s: %d %s%s", a, r.status, r.out, r.err);
    cli_run_free(&r);
out:
    cli_rmtree(d);
}

/* ddpm-eval --make-ref X --evaluator X destroyed the evaluator. */
static void test_eval_make_ref_is_evaluator(void) {
    if (!cli_tool_available("ddpm-eval")) return;
    char d[512], ev[600], s[600], a[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(ev, sizeof ev, "%s/ev.safetensors", d);
    snprintf(s, sizeof s, "%s/s.npz", d);
    if (copy_file(EVALUATOR, ev) || write_images(s, 4, 28, 28, 1)) goto out;
    snprintf(a, sizeof a, "-q --make-ref %s --evaluator %s %s", ev, ev, s);
    expect_refused("ddpm-eval", d, a, "is also the input --evaluator");
    snprintf(a, sizeof a, "-q --make-ref %s/s.npz.safetensors --evaluator %s %s/s.npz.safetensors", d, ev, d);
    expect_refused("ddpm-eval", d, a, "is also the input SAMPLES");
    CHECK(same_bytes(ev, EVALUATOR) && cli_count_entries(d) == 2, "the evaluator changed or files left (%d)",
          cli_count_entries(d));
out:
    cli_rmtree(d);
}

/* ddpm-bench --save-weights CONFIG.json overwrote the config. */
static void test_bench_save_weights_is_config(void) {
    if (!cli_tool_available("ddpm-bench")) return;
    char d[512], c[600], a[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(c, sizeof c, "%s/c.json", d);
    if (copy_file("configs/small28.json", c)) goto out;
    snprintf(a, sizeof a, "-c %s --save-weights %s --repeat 1 -t 1", c, c);
    expect_refused("ddpm-bench", d, a, "output '");
    snprintf(a, sizeof a, "-c %s --save-weights %s/../%s/c.json --repeat 1 -t 1", c, d, strrchr(d, '/') + 1);
    expect_refused("ddpm-bench", d, a, "is also the input --config");
    CHECK(same_bytes(c, "configs/small28.json") && cli_count_entries(d) == 1, "the config changed or files left");
out:
    cli_rmtree(d);
}

/* Two checkpoints of one name converted into one -d, or -o onto --configs-dir's table. */
static void test_convert_outputs_collide(void) {
    if (!cli_tool_available("ddpm-convert")) return;
    char d[512], p[700], a[4096];
    cli_mkdtemp(d, sizeof d);
    const char *sub[] = {"a", "b", "out", "cfg"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", d, sub[i]);
        mkdir(p, 0755);
    }
    snprintf(p, sizeof p, "%s/a/x.pt", d);
    copy_file("tests/data/pt/adm_f32.pt", p);
    snprintf(p, sizeof p, "%s/b/x.pt", d);
    copy_file("tests/data/pt/adm_f32.pt", p);
    snprintf(p, sizeof p, "%s/cfg/checkpoints.json", d);
    copy_file("configs/checkpoints.json", p);
    snprintf(a, sizeof a, "%s/a/x.pt %s/b/x.pt -d %s/out", d, d, d);
    expect_refused("ddpm-convert", d, a, "x.safetensors' is also the output of '");
    snprintf(a, sizeof a, "%s/a/x.pt --configs-dir %s/cfg -o %s/cfg/checkpoints.json", d, d, d);
    expect_refused("ddpm-convert", d, a, "is also the input --configs-dir's checkpoints.json");
    snprintf(p, sizeof p, "%s/out", d);
    CHECK(cli_count_entries(p) == 0, "files in out/");
    snprintf(p, sizeof p, "%s/cfg/checkpoints.json", d);
    CHECK(same_bytes(p, "configs/checkpoints.json"), "checkpoints.json changed");
    cli_rmtree(d);
}

/* ---- all outputs or none; what killed runs left -------------------------------------------------- */

/* Temporaries of this run's outputs whose writer is gone are removed on start; anything else (a
 * live pid, another name, not our pattern, a directory, an input named like one) stays. */
static void test_stale_temporaries_removed(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], e[600], p[900], a[8192];
    cli_mkdtemp(d, sizeof d);
    snprintf(e, sizeof e, "%s/each", d);
    mkdir(e, 0755);
    long dead = dead_pid(), dead2 = dead_pid();
    char gone[8][900], kept[8][900];
    int ng = 0, nk = 0;
    snprintf(gone[ng++], 900, "%s/g.png.tmp.%ld", d, dead);
    snprintf(gone[ng++], 900, "%s/g.png.json.tmp.%ld", d, dead);
    snprintf(gone[ng++], 900, "%s/g.npz.tmp.%ld.tmp.%ld", d, dead, dead);
    snprintf(gone[ng++], 900, "%s/sample_000007_seed3_class1.png.tmp.%ld", e, dead2);
    snprintf(kept[nk++], 900, "%s/g.png.tmp.1", d);             /* pid 1 is alive */
    snprintf(kept[nk++], 900, "%s/g.png.tmp.%ldx", d, dead);     /* not our pattern */
    snprintf(kept[nk++], 900, "%s/g.png.tmp.0%ld", d, dead);     /* nor this */
    snprintf(kept[nk++], 900, "%s/other.png.tmp.%ld", d, dead);  /* not an output of this run */
    snprintf(kept[nk++], 900, "%s/notes.txt.tmp.%ld", e, dead);  /* not a per-sample name */
    snprintf(kept[nk++], 900, "%s/g.npz.tmp.%ld", d, dead2);     /* the model below */
    for (int i = 0; i < ng; i++) cli_write_file(gone[i], "x", 1);
    for (int i = 0; i < nk - 1; i++) cli_write_file(kept[i], "x", 1);
    if (copy_file(UNET_A, kept[nk - 1])) goto out;
    snprintf(p, sizeof p, "%s/g.png.tmp.%ld", d, dead2); /* a directory */
    mkdir(p, 0755);
    snprintf(a, sizeof a, "-m %s " QUICK " -o %s/g.png --npz %s/g.npz --save-each %s", kept[nk - 1], d, d, e);
    cli_result r = cli_run("ddpm-sample", d, a);
    CHECK(r.status == 0, "%s: %d %s", a, r.status, r.err);
    cli_run_free(&r);
    for (int i = 0; i < ng; i++) CHECK(!cli_file_exists(gone[i]), "%s is still there", gone[i]);
    for (int i = 0; i < nk; i++) CHECK(cli_file_exists(kept[i]), "%s was removed", kept[i]);
    CHECK(cli_file_exists(p) && same_bytes(kept[nk - 1], UNET_A), "the directory or the model went");
    snprintf(p, sizeof p, "%s/g.npz", d);
    CHECK(cli_file_size(p) > 0 && cli_count_entries(e) == 3, "outputs: npz %zu bytes, %d in each/", cli_file_size(p),
          cli_count_entries(e));
out:
    cli_rmtree(d);
}

/* Files named like our temporaries (name.tmp.PID) in dir, and all entries. */
static int count_tmp(const char *dir) {
    DIR *dd = opendir(dir);
    int n = 0;
    struct dirent *x;
    while (dd && (x = readdir(dd))) n += strstr(x->d_name, ".tmp.") != NULL;
    if (dd) closedir(dd);
    return n;
}

/* The second per-sample name is taken by a directory: the run used to leave the first PNG (and
 * exit 2); now it writes nothing at all. */
static void test_save_each_all_or_none(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], e[600], p[900], a[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(e, sizeof e, "%s/each", d);
    mkdir(e, 0755);
    snprintf(p, sizeof p, "%s/sample_000001_seed6_class3.png", e);
    mkdir(p, 0755);
    snprintf(a, sizeof a, "-m %s --class 3 -n 3 --steps 2 --seed 5 -q -t 1 --save-each %s -o %s/g.png --npz %s/g.npz", UNET_A, e, d, d);
    expect_refused("ddpm-sample", d, a, "sample_000001_seed6_class3.png' is a directory");
    CHECK(cli_count_entries(e) == 1 && cli_count_entries(d) == 1, "files left: %d in each/ (want the directory), %d in the run's folder",
          cli_count_entries(e), cli_count_entries(d));
    cli_rmtree(d);
}

/* A full disk in the middle of --save-each (a 32 KiB tmpfs; needs the right to mount one, else
 * skipped): no per-sample PNG, grid or npz is left, and no temporary. */
static void test_full_disk_all_or_none(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], mnt[600], a[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(mnt, sizeof mnt, "%s/small", d);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=32k")) {
        printf("    skipped: cannot mount a tmpfs here (%s)\n", strerror(errno));
        cli_rmtree(d);
        return;
    }
    snprintf(a, sizeof a, "-m %s -n 24 --steps 2 --seed 5 -q -t 1 --save-each %s -o %s/g.png --npz %s/g.npz", UNET_A, mnt, d, d);
    cli_result r = cli_run("ddpm-sample", d, a);
    CHECK(r.status == 2 && cli_count_lines(r.err) == 1 && strstr(r.err, "No space left on device"),
          "%s: want one line about the full disk, got %d: %s", a, r.status, r.err);
    cli_run_free(&r);
    CHECK(cli_count_entries(mnt) == 0, "%d files left on the full disk (%d temporaries)", cli_count_entries(mnt), count_tmp(mnt));
    CHECK(cli_count_entries(d) == 1, "%d entries beside the mount", cli_count_entries(d));
    umount2(mnt, MNT_DETACH);
    cli_rmtree(d);
}

/* The tensors of a safetensors file as torch.save(state_dict) writes them (pickle protocol 2,
 * one storage per tensor): a checkpoint ddpm-convert takes. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;
static void put(bytes *b, const void *s, size_t n) {
    if (b->n + n > b->cap) b->p = realloc(b->p, b->cap = 2 * (b->n + n) + 256);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void op(bytes *b, int c) {
    uint8_t x = (uint8_t)c;
    put(b, &x, 1);
}
static void pk_u32(bytes *b, int c, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    op(b, c), put(b, le, 4);
}
static void pk_str(bytes *b, const char *s) { pk_u32(b, 'X', (uint32_t)strlen(s)), put(b, s, strlen(s)); }
static void pk_global(bytes *b, const char *mod, const char *name) {
    op(b, 'c'), put(b, mod, strlen(mod)), op(b, '\n'), put(b, name, strlen(name)), op(b, '\n');
}
static int write_pt(const char *st_path, const char *pt_path) {
    char err[512];
    gd_st_file *f = gd_st_open(st_path, err, sizeof err);
    if (!f) return -1;
    int n = gd_st_count(f);
    bytes pk = {0};
    op(&pk, 0x80), op(&pk, 2);
    pk_global(&pk, "collections", "OrderedDict"), op(&pk, ')'), op(&pk, 'R'), op(&pk, '(');
    for (int i = 0; i < n; i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        pk_str(&pk, t->name);
        pk_global(&pk, "torch._utils", "_rebuild_tensor_v2");
        op(&pk, '('), op(&pk, '('), pk_str(&pk, "storage");
        pk_global(&pk, "torch", t->dtype == GD_ST_F16 ? "HalfStorage" : t->dtype == GD_ST_BF16 ? "BFloat16Storage" : "FloatStorage");
        pk_str(&pk, key), pk_str(&pk, "cpu"), pk_u32(&pk, 'J', (uint32_t)t->numel), op(&pk, 't'), op(&pk, 'Q');
        pk_u32(&pk, 'J', 0), op(&pk, '(');
        for (int d = 0; d < t->ndim; d++) pk_u32(&pk, 'J', (uint32_t)t->shape[d]);
        op(&pk, 't'), op(&pk, '(');
        for (int d = 0; d < t->ndim; d++) {
            int64_t st = 1;
            for (int k = d + 1; k < t->ndim; k++) st *= t->shape[k];
            pk_u32(&pk, 'J', (uint32_t)st);
        }
        op(&pk, 't'), op(&pk, 0x89), pk_global(&pk, "collections", "OrderedDict"), op(&pk, ')'), op(&pk, 'R');
        op(&pk, 't'), op(&pk, 'R');
    }
    op(&pk, 'u'), op(&pk, '.');
    ptz_member *m = calloc((size_t)n + 2, sizeof *m);
    char (*names)[32] = calloc((size_t)n, sizeof *names);
    m[0] = (ptz_member){"archive/data.pkl", pk.p, pk.n};
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "archive/data/%d", i);
        m[i + 1] = (ptz_member){names[i], gd_st_get(f, i)->data, gd_st_get(f, i)->nbytes};
    }
    m[n + 1] = (ptz_member){"archive/version", (const uint8_t *)"3\n", 2};
    size_t len;
    uint8_t *zip = ptz_build(m, n + 2, &len);
    int rc = zip ? cli_write_file(pt_path, zip, len) : -1;
    free(zip), free(m), free(names), free(pk.p);
    gd_st_close(f);
    return rc;
}

/* Checkpoints converted in one run: the second one is not a checkpoint. The first output used to
 * be written (and exit 2); now neither is. */
static void test_convert_all_or_none(void) {
    if (!cli_tool_available("ddpm-convert")) return;
    char d[512], a[4096], out[700], cfg[700], pt[700], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(out, sizeof out, "%s/out", d);
    mkdir(out, 0755);
    snprintf(cfg, sizeof cfg, "%s/unet_a.json", d);
    snprintf(pt, sizeof pt, "%s/a.pt", d);
    gd_st_file *f = gd_st_open(UNET_A, err, sizeof err);
    const char *js = f ? gd_st_metadata(f, "config") : NULL;
    int bad = !js || cli_write_file(cfg, js, strlen(js)) || write_pt(UNET_A, pt);
    gd_st_close(f);
    CHECK(!bad, "making a.pt: %s", err);
    if (bad) goto out;
    snprintf(a, sizeof a, "%s --config %s -d %s -q", pt, cfg, out);
    cli_result r = cli_run("ddpm-convert", d, a);
    CHECK(r.status == 0 && cli_count_entries(out) == 1, "%s: %d %s", a, r.status, r.err);
    cli_run_free(&r);
    snprintf(a, sizeof a, "%s/a.safetensors", out);
    unlink(a);
    snprintf(a, sizeof a, "%s tests/fixtures/conv_base.npz --config %s -d %s -q", pt, cfg, out);
    expect_refused("ddpm-convert", d, a, "conv_base.npz: a zip archive but not a PyTorch checkpoint");
    CHECK(cli_count_entries(out) == 0, "%d files left in out/", cli_count_entries(out));
out:
    cli_rmtree(d);
}

/* Error exits are status 2 and one line, nothing left: under LeakSanitizer (an ASan build of the
 * tools in $BUILD) ddpm-npz merge exited 1 with a leak report after "images are ...". */
static void test_error_exits_status_2(void) {
    char d[512], a[4096];
    cli_mkdtemp(d, sizeof d);
    struct {
        const char *tool, *args, *want;
    } cs[] = {
        {"ddpm-npz", "merge -o D/o.npz tests/fixtures/conv_base.npz tests/fixtures/conv_up.npz", "the first input's"},
        {"ddpm-npz", "merge -o D/o.npz tests/fixtures/conv_base.npz tests/fixtures/unet_a.safetensors", "unet_a.safetensors"},
        {"ddpm-npz", "slice -o D/o.npz --first 0 --count 999 tests/fixtures/conv_base.npz", "out of range"},
        {"ddpm-npz", "info tests/fixtures/unet_a.safetensors", "unet_a.safetensors"},
        {"ddpm-bench", "-c configs/small28_classifier.json --mode unet", "--mode unet does not match"},
        {"ddpm-bench", "-c tests/fixtures/unet_a.safetensors", "unet_a.safetensors"},
        {"ddpm-bench", "-c configs/small28.json --batch 1abc", "--batch: '1abc' is not an integer"},
        {"ddpm-bench", "-c configs/small28.json -t -3", "-t: '-3' is not an integer"},
        {"ddpm-bench", "-c configs/small28.json --save-weights D --repeat 1", "is a directory"},
        {"ddpm-sample", "-m " UNET_A " --class 10 -n 1 --steps 1 -o D/x.png", "class"},
        {"ddpm-forward", "-m " UNET_A " -i tests/fixtures/conv_base.npz -o D/o.st", "conv_base.npz"},
        {"ddpm-eval", "--evaluator " UNET_A " tests/fixtures/conv_base.npz", "unet_a.safetensors"},
        {"ddpm-convert", "tests/fixtures/conv_base.npz -d D", "not a PyTorch checkpoint"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        char *p = a;
        for (const char *s = cs[i].args; *s; s++) /* D: the scratch folder */
            p += *s == 'D' && (s[1] == '/' || s[1] == ' ' || !s[1]) && s[-1] == ' ' ? sprintf(p, "%s", d) : (*p = *s, 1);
        *p = 0;
        if (cli_tool_available(cs[i].tool)) expect_refused(cs[i].tool, d, a, cs[i].want);
    }
    CHECK(cli_count_entries(d) == 0, "%d files left", cli_count_entries(d));
    cli_rmtree(d);
}

/* ---- arguments ----------------------------------------------------------------------------------- */

/* '' as a value or an argument: one line naming the flag (it was taken as a path: "model '' not
 * found", "-o: cannot create temporary file '.tmp.123'"). */
static void test_empty_values(void) {
    struct {
        const char *tool, *args, *want;
    } cs[] = {
        {"ddpm-sample", "-m ''", "-m: empty value"},
        {"ddpm-sample", "--model=", "--model: empty value"},
        {"ddpm-sample", "--npz ''", "--npz: empty value"},
        {"ddpm-sample", "--class ''", "--class: empty value"},
        {"ddpm-forward", "-m '' -i a -o b", "-m: empty value"},
        {"ddpm-bench", "-c ''", "-c: empty value"},
        {"ddpm-npz", "merge -o '' a.npz", "-o: empty value"},
        {"ddpm-npz", "info ''", "empty argument"},
        {"ddpm-eval", "--evaluator '' x.npz", "--evaluator: empty value"},
        {"ddpm-eval", "''", "empty argument"},
        {"ddpm-convert", "--config '' x.pt", "--config: empty value"},
        {"ddpm-convert", "''", "empty argument"},
    };
    char d[512], a[4096];
    cli_mkdtemp(d, sizeof d);
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        int sample = !strcmp(cs[i].tool, "ddpm-sample"); /* a quick run where '' was taken for a path */
        snprintf(a, sizeof a, "%s%s%s%s", cs[i].args, sample ? " -n 1 --steps 1 -q -o " : "", sample ? d : "", sample ? "/x.png" : "");
        if (sample && strncmp(cs[i].args, "-m", 2) && strncmp(cs[i].args, "--model", 7)) strcat(a, " -m " UNET_A);
        if (cli_tool_available(cs[i].tool)) expect_refused(cs[i].tool, d, a, cs[i].want);
    }
    CHECK(cli_count_entries(d) == 0, "files written");
    cli_rmtree(d);
}

/* --precision: anything but fp32 / bf16 (and ddpm-bench's w8a8, w8a8+bf16) is one line, exit 2,
 * nothing written, in every tool */
static void test_precision_values(void) {
    const char *vals[] = {"fp16", "BF16", "''", "nan", "bf16x", "w8a8+fp16"};
    char d[512], a[4096];
    cli_mkdtemp(d, sizeof d);
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        const char *want = strcmp(vals[i], "''") ? "is not fp32 or bf16" : "--precision: empty value";
        snprintf(a, sizeof a, "-n 1 --steps 1 -q -o %s/x.png --precision %s", d, vals[i]);
        if (cli_tool_available("ddpm-sample")) expect_refused("ddpm-sample", d, a, want);
        snprintf(a, sizeof a, "-m " UNET_A " -i %s/in.safetensors -o %s/o.safetensors --precision %s", d, d, vals[i]);
        if (cli_tool_available("ddpm-forward")) expect_refused("ddpm-forward", d, a, want);
        snprintf(a, sizeof a, "-c configs/small28.json --repeat 1 --save-weights %s/w.safetensors --precision %s", d, vals[i]);
        if (cli_tool_available("ddpm-bench"))
            expect_refused("ddpm-bench", d, a, strcmp(vals[i], "''") ? "is not fp32, bf16, w8a8 or w8a8+bf16" : want);
    }
    CHECK(cli_count_entries(d) == 0, "files written");
    cli_rmtree(d);
}

/* A missing argument: one line and "see --help", not the whole usage (6 and 28 lines). */
static void test_missing_args_one_line(void) {
    struct {
        const char *tool, *args, *want;
    } cs[] = {
        {"ddpm-npz", "", "see --help"},
        {"ddpm-npz", "slice -o x.npz", "see --help"},
        {"ddpm-npz", "merge", "see --help"},
        {"ddpm-eval", "", "see --help"},
        {"ddpm-eval", "-q", "see --help"},
    };
    char d[512];
    cli_mkdtemp(d, sizeof d);
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        if (cli_tool_available(cs[i].tool)) expect_refused(cs[i].tool, d, cs[i].args, cs[i].want);
    cli_rmtree(d);
}

/* A reference's "count" metadata was read with atoll: "12abc" passed as 12. */
static void test_eval_ref_count_strict(void) {
    if (!cli_tool_available("ddpm-eval")) return;
    char d[512], ref[600], s[600], a[4096], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(ref, sizeof ref, "%s/ref.safetensors", d);
    snprintf(s, sizeof s, "%s/s.npz", d);
    gd_model *m = gd_model_load(EVALUATOR, NULL, err, sizeof err);
    gd_evaluator *ev = m ? gd_evaluator_new(m, 4, err, sizeof err) : NULL;
    CHECK(ev, "%s", err);
    if (!ev || write_images(s, 4, 28, 28, 1)) goto out;
    int64_t D = gd_evaluator_dim(ev), dd[2] = {D, D};
    double *mu = calloc((size_t)D, sizeof *mu), *sg = calloc((size_t)(D * D), sizeof *sg);
    for (int64_t i = 0; i < D; i++) sg[i * D + i] = 1;
    gd_st_writer *w = gd_st_writer_new();
    int bad = gd_st_writer_add(w, "mu", GD_ST_F64, 1, &D, mu) || gd_st_writer_add(w, "sigma", GD_ST_F64, 2, dd, sg) ||
              gd_st_writer_meta(w, "format", "ddpm-eval reference 1") || gd_st_writer_meta(w, "count", "12abc") ||
              gd_st_writer_save(w, ref, err, sizeof err);
    CHECK(!bad, "writing the reference: %s", err);
    gd_st_writer_free(w);
    free(mu);
    free(sg);
    snprintf(a, sizeof a, "-q --no-pr --evaluator %s --ref %s %s", EVALUATOR, ref, s);
    expect_refused("ddpm-eval", d, a, "metadata count '12abc'");
out:
    gd_evaluator_free(ev);
    gd_model_free(m);
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_robust_cli) = {
    {"robust_cli_sample_output_is_input", test_sample_output_is_input},
    {"robust_cli_save_each_name_is_input", test_save_each_name_is_input},
    {"robust_cli_npz_output_is_input", test_npz_output_is_input},
    {"robust_cli_eval_make_ref_is_evaluator", test_eval_make_ref_is_evaluator},
    {"robust_cli_bench_save_weights_is_config", test_bench_save_weights_is_config},
    {"robust_cli_convert_outputs_collide", test_convert_outputs_collide},
    {"robust_cli_stale_temporaries_removed", test_stale_temporaries_removed},
    {"robust_cli_save_each_all_or_none", test_save_each_all_or_none},
    {"robust_cli_full_disk_all_or_none", test_full_disk_all_or_none},
    {"robust_cli_convert_all_or_none", test_convert_all_or_none},
    {"robust_cli_error_exits_status_2", test_error_exits_status_2},
    {"robust_cli_empty_values", test_empty_values},
    {"robust_cli_missing_args_one_line", test_missing_args_one_line},
    {"robust_cli_precision_values", test_precision_values},
    {"robust_cli_eval_ref_count_strict", test_eval_ref_count_strict},
    {NULL, NULL},
};
