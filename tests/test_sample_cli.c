/* ddpm-sample as a process: determinism (same command, thread counts, batch sizes), regenerating
 * one sample alone from its seed, the .npz and PNG metadata, and bad input (exit status 2, one
 * line on stderr, no output file left behind). Runs on the tiny fixture models. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_image.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define TOOL "ddpm-sample"
#define UNET_A "-m tests/fixtures/unet_a.safetensors"
#define CLS_A "--classifier tests/fixtures/cls_a.safetensors"

static int run_ok(const char *dir, const char *args) {
    cli_result r = cli_run(TOOL, dir, args);
    int ok = r.status == 0;
    CHECK(ok, "'%s' exited %d: %s", args, r.status, r.err);
    cli_run_free(&r);
    return ok;
}

static int same_file(const char *a, const char *b) {
    size_t na = cli_file_size(a), nb = cli_file_size(b);
    if (!na || na != nb) return 0;
    char *x = cli_slurp(a), *y = cli_slurp(b);
    int same = x && y && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void test_determinism(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], args[2048], a[600], b[600];
    cli_mkdtemp(d, sizeof d);
    const char *common = UNET_A " " CLS_A " --guidance entropy,cfg --scale 20 --steps 8 -n 5 --seed 31 -q";
    struct {
        const char *name, *extra;
    } v[] = {{"ref", "-b 5 -t 2"}, {"again", "-b 5 -t 2"}, {"threads1", "-b 5 -t 1"}, {"batch2", "-b 2 -t 2"}, {"batch1", "-b 1 -t 1"}};
    for (int i = 0; i < 5; i++) {
        snprintf(args, sizeof args, "%s %s -o %s/%s.png --npz %s/%s.npz", common, v[i].extra, d, v[i].name, d, v[i].name);
        if (!run_ok(d, args)) goto out;
    }
    snprintf(a, sizeof a, "%s/ref.npz", d);
    for (int i = 1; i < 5; i++) {
        snprintf(b, sizeof b, "%s/%s.npz", d, v[i].name);
        int same = same_file(a, b);
        printf("    %-9s (%s) vs reference run: %s\n", v[i].name, v[i].extra, same ? "identical bytes" : "DIFFERENT");
        CHECK(same, "%s differs from the reference run", v[i].name);
    }
    snprintf(a, sizeof a, "%s/ref.png", d);
    snprintf(b, sizeof b, "%s/again.png", d);
    CHECK(same_file(a, b), "the same command twice gave different PNGs");
out:
    cli_rmtree(d);
}

/* Sample i of a run with seed S (random classes) is the single sample of a run with seed S+i. */
static void test_regenerate_alone(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], args[2048], p[600];
    cli_mkdtemp(d, sizeof d);
    snprintf(args, sizeof args, UNET_A " " CLS_A " --guidance classifier --scale 10 --steps 6 -n 4 -b 4 --seed 100 -q -o %s/all.png --npz %s/all.npz", d, d);
    if (!run_ok(d, args)) goto out;
    snprintf(args, sizeof args, UNET_A " " CLS_A " --guidance classifier --scale 10 --steps 6 -n 1 --seed 102 -q -o %s/one.png --npz %s/one.npz", d, d);
    if (!run_ok(d, args)) goto out;
    uint8_t *ia = NULL, *ib = NULL;
    int64_t *la = NULL, *lb = NULL;
    int n, h, w, c, n2, h2, w2, c2;
    char err[512];
    snprintf(p, sizeof p, "%s/all.npz", d);
    int ok = gd_read_npz(p, &ia, &n, &h, &w, &c, &la, err, sizeof err) == 0;
    snprintf(p, sizeof p, "%s/one.npz", d);
    ok = ok && gd_read_npz(p, &ib, &n2, &h2, &w2, &c2, &lb, err, sizeof err) == 0;
    CHECK(ok, "reading the npz files: %s", err);
    if (ok) {
        CHECK(n == 4 && n2 == 1 && h == 16 && w == 16 && c == 3 && la && lb, "shapes: %d %d %d %d / %d", n, h, w, c, n2);
        size_t per = (size_t)h * w * c;
        CHECK(!memcmp(ia + 2 * per, ib, per) && la[2] == lb[0], "sample 2 of seed 100 != sample 0 of seed 102 (labels %lld/%lld)",
              (long long)la[2], (long long)lb[0]);
        printf("    sample 2 of a 4-sample run (seed 100) == a 1-sample run with seed 102: %s (class %lld)\n",
               !memcmp(ia + 2 * per, ib, per) ? "yes" : "no", (long long)lb[0]);
    }
    free(ia);
    free(ib);
    free(la);
    free(lb);
out:
    cli_rmtree(d);
}

static void test_outputs(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], args[2048], p[600];
    cli_mkdtemp(d, sizeof d);
    snprintf(args, sizeof args, UNET_A " --sampler ddim --steps 5 --class 1,2,9 -n 5 -b 2 --seed 3 -q -o %s/g.png --npz %s/s.npz --save-each %s", d, d, d);
    if (!run_ok(d, args)) goto out;
    uint8_t *im = NULL;
    int64_t *lab = NULL;
    int n, h, w, c;
    char err[512];
    snprintf(p, sizeof p, "%s/s.npz", d);
    CHECK(gd_read_npz(p, &im, &n, &h, &w, &c, &lab, err, sizeof err) == 0, "%s", err);
    if (lab) {
        const int64_t want[5] = {1, 2, 9, 1, 2};
        CHECK(n == 5 && !memcmp(lab, want, sizeof want), "labels cycle through the --class list");
    }
    free(im);
    free(lab);
    snprintf(p, sizeof p, "%s/g.png", d);
    char *png = cli_slurp(p);
    size_t np = cli_file_size(p);
    int has_text = 0;
    for (size_t i = 0; i + 14 < np; i++) has_text |= !memcmp(png + i, "tEXtparameters", 14);
    CHECK(has_text, "grid PNG has a tEXt 'parameters' chunk");
    free(png);
    snprintf(p, sizeof p, "%s/g.png.json", d);
    char *js = cli_slurp(p);
    CHECK(strstr(js, "\"seed\":3") && strstr(js, "\"sampler\":\"ddim\""), "JSON sidecar records the parameters: %s", js);
    free(js);
    snprintf(p, sizeof p, "%s/sample_000004_seed7_class2.png", d);
    CHECK(cli_file_exists(p), "per-sample PNG %s", p);
out:
    cli_rmtree(d);
}

static void expect_fail(const char *what, const char *d, const char *args) {
    cli_result r = cli_run(TOOL, d, args);
    int lines = cli_count_lines(r.err);
    int entries = cli_count_entries(d);
    printf("    %-34s -> %s", what, r.err);
    CHECK(r.status == 2 && lines == 1 && !strncmp(r.err, "ddpm-sample: ", 13) && entries == 0,
          "%s: status %d, %d stderr lines, %d files left: %s", what, r.status, lines, entries, r.err);
    cli_run_free(&r);
}

static void test_bad_input(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], o[2048], args[4096];
    cli_mkdtemp(d, sizeof d);
    snprintf(o, sizeof o, "-q -n 2 --steps 3 -o %s/x.png --npz %s/x.npz", d, d);
    struct {
        const char *what, *args;
    } c[] = {
        {"unknown flag", UNET_A " --frobnicate"},
        {"bad number", UNET_A " -n many"},
        {"negative steps", UNET_A " --steps -4"},
        {"class out of range", UNET_A " --class 10"},
        {"bad sampler", UNET_A " --sampler euler"},
        {"bad guidance", UNET_A " --guidance magic"},
        {"eta with ddpm", UNET_A " --eta 0.5"},
        {"missing model file", "-m tests/fixtures/nope.safetensors"},
        {"malformed model file", "-m tests/data/malformed/truncated_header.safetensors"},
        {"classifier as the model", "-m tests/fixtures/cls_a.safetensors"},
        {"model/classifier image mismatch", UNET_A " --classifier tests/fixtures/cls_b.safetensors --guidance classifier"},
        {"cfg without a null class", "-m tests/fixtures/unet_b.safetensors --guidance cfg"},
        {"classifier without guidance", UNET_A " " CLS_A},
        {"bad respacing", UNET_A " --respacing ddim999"},
        {"--class on an unconditional run", "-m tests/fixtures/unet_b.safetensors --class 3"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        snprintf(args, sizeof args, "%s %s", c[i].args, o);
        expect_fail(c[i].what, d, args);
    }
    snprintf(args, sizeof args, UNET_A " -q -n 1 --steps 2 -o %s/no/such/dir/x.png", d);
    expect_fail("unwritable output", d, args);
    snprintf(args, sizeof args, UNET_A " -q -n 1 --steps 2 -o %s/x.png --npz %s/no/x.npz", d, d);
    expect_fail("unwritable npz", d, args);
    cli_rmtree(d);
}

/* --rng torch against guided-diffusion's flow run in PyTorch after torch.manual_seed(s)
 * (tests/reference/gen_torchrng_fixtures.py): images and labels must be identical. */
static void test_rng_torch(void) {
    if (!cli_tool_available(TOOL)) return;
    struct {
        const char *fixture, *args;
    } c[] = {
        {"torchrng_ddpm_entropy", UNET_A " " CLS_A " --guidance entropy --scale 5 --respacing 10 -n 6 -b 4 --seed 42 --rng torch -q"},
        {"torchrng_ddim_cfg", UNET_A " --guidance cfg --cfg-scale 2 --sampler ddim --respacing ddim10 --class 3 -n 8 -b 4 --seed 7 --rng torch -q"},
    };
    char d[512], args[4096], p[600], err[512];
    cli_mkdtemp(d, sizeof d);
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "%s -o %s/g.png --npz %s/s.npz", c[i].args, d, d);
        if (!run_ok(d, args)) continue;
        uint8_t *ia = NULL, *ib = NULL;
        int64_t *la = NULL, *lb = NULL;
        int n, h, w, ch, n2, h2, w2, c2;
        snprintf(p, sizeof p, "tests/fixtures/%s.npz", c[i].fixture);
        int ok = gd_read_npz(p, &ia, &n, &h, &w, &ch, &la, err, sizeof err) == 0;
        snprintf(p, sizeof p, "%s/s.npz", d);
        ok = ok && gd_read_npz(p, &ib, &n2, &h2, &w2, &c2, &lb, err, sizeof err) == 0;
        CHECK(ok, "%s: %s", c[i].fixture, err);
        if (ok && n == n2 && h == h2 && w == w2 && ch == c2) {
            size_t total = (size_t)n * h * w * ch, diff = 0;
            for (size_t k = 0; k < total; k++) diff += ia[k] != ib[k];
            int same_labels = !memcmp(la, lb, sizeof(int64_t) * (size_t)n);
            printf("    %-22s %zu of %zu uint8 values differ from PyTorch; labels %s\n", c[i].fixture, diff, total,
                   same_labels ? "equal" : "DIFFER");
            CHECK(diff == 0 && same_labels, "%s: %zu values differ", c[i].fixture, diff);
        } else {
            CHECK(0, "%s: shapes differ", c[i].fixture);
        }
        free(ia);
        free(ib);
        free(la);
        free(lb);
    }
    cli_rmtree(d);
}

/* scripts/sample_batch.sh: shards merged, a lost shard redone on resume, two processes splitting
 * the shards: always the same bytes as one direct run (sample i has seed S+i however it is run). */
static int sh(const char *cmd) {
    int rc = system(cmd);
    return rc == 0;
}

static void test_sample_batch(void) {
    if (!cli_tool_available(TOOL) || !cli_tool_available("ddpm-npz")) return;
    char d[512], cmd[4096], a[700], b[700];
    cli_mkdtemp(d, sizeof d);
    const char *m = UNET_A " --steps 4 -q";
    snprintf(cmd, sizeof cmd, "%s %s -n 5 --seed 9 -o %s/direct.png --npz %s/direct.npz", cli_tool(TOOL), m, d, d);
    CHECK(sh(cmd), "direct run");
    snprintf(a, sizeof a, "%s/direct.npz", d);
    snprintf(cmd, sizeof cmd, "scripts/sample_batch.sh -n 5 -d %s/one --shard-size 2 --seed 9 -- %s >/dev/null 2>&1", d, m);
    CHECK(sh(cmd), "sharded run");
    snprintf(b, sizeof b, "%s/one/samples_5.npz", d);
    int same1 = cli_file_size(a) && cli_file_size(a) == cli_file_size(b);
    char *x = cli_slurp(a), *y = cli_slurp(b);
    same1 = same1 && !memcmp(x, y, cli_file_size(a));
    free(y);
    /* a run killed before shard 1 was written: its file is missing, so is the merge */
    snprintf(cmd, sizeof cmd, "rm %s/one/shard_00001.npz %s/one/samples_5.npz && scripts/sample_batch.sh -n 5 -d %s/one "
             "--shard-size 2 --seed 9 -- %s >/dev/null 2>&1", d, d, d, m);
    CHECK(sh(cmd), "resumed run");
    y = cli_slurp(b);
    int same2 = cli_file_size(b) == cli_file_size(a) && !memcmp(x, y, cli_file_size(a));
    free(y);
    snprintf(cmd, sizeof cmd, "scripts/sample_batch.sh -n 5 -d %s/two --shard-size 2 --shard 1/2 --seed 9 -- %s >/dev/null 2>&1 && "
             "scripts/sample_batch.sh -n 5 -d %s/two --shard-size 2 --shard 0/2 --seed 9 -- %s >/dev/null 2>&1", d, m, d, m);
    CHECK(sh(cmd), "two-process run");
    snprintf(b, sizeof b, "%s/two/samples_5.npz", d);
    y = cli_slurp(b);
    int same3 = cli_file_size(b) == cli_file_size(a) && !memcmp(x, y, cli_file_size(a));
    free(x);
    free(y);
    printf("    3 shards merged: %s; after losing a shard and resuming: %s; split over 2 processes: %s\n",
           same1 ? "same bytes as one run" : "DIFFERENT", same2 ? "same" : "DIFFERENT", same3 ? "same" : "DIFFERENT");
    CHECK(same1 && same2 && same3, "sharded runs must equal the direct run");
    cli_rmtree(d);
}

/* ddpm-npz slice [I, I+N) of a run = the same run started at --first-index I (guidance_table.sh
 * extends cells by such prefixes and scores disjoint slices); out of range: exit 2, no file. */
static void test_npz_slice(void) {
    if (!cli_tool_available(TOOL) || !cli_tool_available("ddpm-npz")) return;
    char d[512], cmd[8192], a[700], b[700];
    cli_mkdtemp(d, sizeof d);
    const char *m = UNET_A " --steps 4 -q --seed 9";
    char sample[600], npz[600];
    snprintf(sample, sizeof sample, "%s", cli_tool(TOOL)); /* cli_tool returns one static buffer */
    snprintf(npz, sizeof npz, "%s", cli_tool("ddpm-npz"));
    snprintf(cmd, sizeof cmd, "%s %s -n 5 -o %s/all.png --npz %s/all.npz && %s %s -n 3 --first-index 2 -o %s/tail.png "
             "--npz %s/tail.npz && %s slice -o %s/cut.npz --first 2 --count 3 %s/all.npz >/dev/null",
             sample, m, d, d, sample, m, d, d, npz, d, d);
    CHECK(sh(cmd), "runs and slice");
    snprintf(a, sizeof a, "%s/tail.npz", d);
    snprintf(b, sizeof b, "%s/cut.npz", d);
    char *x = cli_slurp(a), *y = cli_slurp(b);
    int same = x && y && cli_file_size(a) == cli_file_size(b) && !memcmp(x, y, cli_file_size(a));
    free(x);
    free(y);
    snprintf(cmd, sizeof cmd, "slice -o %s/bad.npz --first 3 --count 3 %s/all.npz", d, d);
    cli_result r = cli_run("ddpm-npz", d, cmd);
    snprintf(b, sizeof b, "%s/bad.npz", d);
    printf("    slice [2,5) vs --first-index 2 -n 3: %s; [3,6) of 5: exit %d, %s", same ? "same bytes" : "DIFFERENT",
           r.status, r.err);
    CHECK(same, "slice must equal the run started at its first index");
    CHECK(r.status == 2 && strstr(r.err, "out of range") && !cli_file_exists(b), "out of range: %s", r.err);
    cli_run_free(&r);
    cli_rmtree(d);
}

/* --class by name, from the config's class_names (case and separators do not matter). */
#include "gd_safetensors.h"
#include <cjson/cJSON.h>

static void test_class_names(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], p[600], args[2048], err[256];
    cli_mkdtemp(d, sizeof d);
    gd_st_file *f = gd_st_open("tests/fixtures/unet_a.safetensors", err, sizeof err);
    cJSON *c = f ? cJSON_Parse(gd_st_metadata(f, "config")) : NULL;
    CHECK(c != NULL, "unet_a config");
    if (!c) { gd_st_close(f); cli_rmtree(d); return; }
    const char *names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    cJSON_AddItemToObject(c, "class_names", cJSON_CreateStringArray(names, 10));
    char *js = cJSON_PrintUnformatted(c);
    snprintf(p, sizeof p, "%s/cfg.json", d);
    cli_write_file(p, js, strlen(js));
    snprintf(args, sizeof args, UNET_A " --model-config %s --class 'ankle_BOOT,t shirt/top' -n 2 --steps 2 -o %s/g.png", p, d);
    cli_result r = cli_run(TOOL, d, args);
    CHECK(r.status == 0, "%s", r.err);
    cli_run_free(&r);
    snprintf(p, sizeof p, "%s/g.png.json", d);
    char *side = cli_slurp(p);
    CHECK(strstr(side, "\"labels\":[9,0]") != NULL, "names map to ids 9 and 0: %s", side);
    free(side);
    snprintf(p, sizeof p, "%s/cfg.json", d);
    snprintf(args, sizeof args, UNET_A " --model-config %s --class sweater -n 1 --steps 2 -o %s/h.png", p, d);
    r = cli_run(TOOL, d, args);
    CHECK(r.status == 2 && strstr(r.err, "unknown class 'sweater'") && strstr(r.err, "Ankle boot"), "unknown name: %s", r.err);
    printf("    --class 'ankle_BOOT,t shirt/top' -> labels 9, 0; unknown: %s", r.err);
    cli_run_free(&r);
    free(js);
    cJSON_Delete(c);
    gd_st_close(f);
    cli_rmtree(d);
}

/* `--class 207` (an ImageNet id) at the default Fashion-MNIST model: the line must say what the
 * model's classes are and where ImageNet classes come from, not only the valid range. */
static void test_class_out_of_range(void) {
    if (!cli_tool_available(TOOL)) return;
    char d[512], args[1024];
    cli_mkdtemp(d, sizeof d);
    snprintf(args, sizeof args, "--class 207 --steps 2 -o %s/g.png", d);
    cli_result r = cli_run(TOOL, d, args);
    CHECK(r.status == 2 && cli_count_lines(r.err) == 1, "exit %d, %s", r.status, r.err);
    CHECK(strstr(r.err, "Fashion-MNIST") && strstr(r.err, "10 classes") && strstr(r.err, "0 T-shirt/top") &&
              strstr(r.err, "9 Ankle boot") && strstr(r.err, "--preset imagenet256"),
          "message: %s", r.err);
    CHECK(cli_count_entries(d) == 0, "files left");
    printf("    %s", r.err);
    cli_run_free(&r);
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_sample_cli) = {
    {"ddpm-sample: --class 207 on the default model names its 10 classes and the ImageNet preset", test_class_out_of_range},
    {"ddpm-sample: --class by name", test_class_names},
    {"sample_batch.sh: resumable shards merge to the direct run", test_sample_batch},
    {"ddpm-npz slice: a slice equals the run started at its first index", test_npz_slice},
    {"ddpm-sample: --rng torch reproduces a seeded PyTorch run", test_rng_torch},
    {"ddpm-sample: deterministic across runs, threads and batch sizes", test_determinism},
    {"ddpm-sample: a sample regenerates alone from its seed", test_regenerate_alone},
    {"ddpm-sample: npz labels, PNG text chunk, sidecar, per-sample files", test_outputs},
    {"ddpm-sample: bad input exits 2 with one line and no files", test_bad_input},
    {NULL, NULL},
};
