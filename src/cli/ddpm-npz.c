/* ddpm-npz: inspect, merge and slice sample batches (.npz as guided-diffusion writes them). */
#include "gd_cli.h"
#include "gd_image.h"
#include "cli/npz_verify.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MERGE_USAGE "ddpm-npz merge -o OUT.npz IN.npz [IN.npz ...]"
#define SLICE_USAGE "ddpm-npz slice -o OUT.npz --first I --count N IN.npz"
#define VERIFY_USAGE "ddpm-npz verify OUTDIR/manifest.txt"

typedef struct {
    const char *out;
    int first, count; /* -1: not given */
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-o", NULL, "OUT.npz", GD_CLI_STR, OPT(out), .help = "the output (merge, slice)"},
    {NULL, "--first", "I", GD_CLI_INT, OPT(first), .lo = 0, .hi = INT_MAX, .help = "slice: the first image kept"},
    {NULL, "--count", "N", GD_CLI_INT, OPT(count), .lo = 1, .hi = INT_MAX, .help = "slice: how many images are kept"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = "ddpm-npz info FILE.npz\n"
             "       " MERGE_USAGE "\n"
             "       " SLICE_USAGE "\n"
             "       " VERIFY_USAGE,
    .about = "merge concatenates arr_0 (uint8 NHWC images) and arr_1 (int64 labels, when every input has\n"
             "them) in the order given; the inputs must share H, W and C. slice keeps images [I, I+N),\n"
             "e.g. to score disjoint subsets of one run. Outputs are written atomically.\n"
             "verify checks a scripts/sample_batch.sh run folder before its shards are merged: every shard\n"
             "there with the sha256 recorded when it was written, its image count and first index those of\n"
             "its range, and the ranges tiling [0, N) exactly.\n",
    .flags = FLAGS,
};

static void info(const char *path) {
    char err[600];
    uint8_t *im;
    int64_t *lab;
    int n, h, w, c;
    if (gd_read_npz(path, &im, &n, &h, &w, &c, &lab, err, sizeof err)) gd_cli_die("%s", err);
    printf("%s: %d images %dx%dx%d (uint8 NHWC)%s\n", path, n, h, w, c, lab ? ", int64 labels" : ", no labels");
    free(im);
    free(lab);
}

static void slice(const char *out, const char *in, long first, long count) {
    char err[600];
    uint8_t *im;
    int64_t *lab;
    int n, h, w, c;
    char label[PATH_MAX + 4];
    snprintf(label, sizeof label, "'%s'", in);
    gd_cli_input(label, in);
    const char *staged = gd_cli_output("-o", out);
    gd_cli_check_files();
    if (gd_read_npz(in, &im, &n, &h, &w, &c, &lab, err, sizeof err)) gd_cli_die("%s", err);
    size_t per = (size_t)h * w * c;
    int range = first + count <= n;
    if (!range) snprintf(err, sizeof err, "%s: has %d images; [%ld, %ld) is out of range", in, n, first, first + count);
    if (!range || gd_write_npz(staged, im + (size_t)first * per, (int)count, h, w, c, lab ? lab + first : NULL, err, sizeof err)) {
        free(im), free(lab); /* before gd_cli_die, as in merge */
        gd_cli_die("%s", err);
    }
    gd_cli_commit();
    printf("%s: %ld images %dx%dx%d%s\n", out, count, h, w, c, lab ? " with labels" : "");
    free(im);
    free(lab);
}

static void merge(const char *out, const char **ins, int n_in) {
    char err[600];
    uint8_t *all = NULL;
    int64_t *labels = NULL;
    size_t total = 0;
    int H = 0, W = 0, C = 0, with_labels = 1;
    for (int i = 0; i < n_in; i++) {
        char label[PATH_MAX + 4];
        snprintf(label, sizeof label, "'%s'", ins[i]);
        gd_cli_input(label, ins[i]);
    }
    const char *staged = gd_cli_output("-o", out);
    gd_cli_check_files();
    for (int i = 0; i < n_in; i++) {
        uint8_t *im;
        int64_t *lab;
        int n, h, w, c;
        /* freed before each gd_cli_die: LeakSanitizer reports what only a register still points to */
        if (gd_read_npz(ins[i], &im, &n, &h, &w, &c, &lab, err, sizeof err)) {
            free(all), free(labels);
            gd_cli_die("%s", err);
        }
        if (i == 0) H = h, W = w, C = c;
        if (h != H || w != W || c != C) {
            free(im), free(lab), free(all), free(labels);
            gd_cli_die("%s: images are %dx%dx%d, the first input's %dx%dx%d", ins[i], h, w, c, H, W, C);
        }
        size_t per = (size_t)H * W * C;
        uint8_t *na = realloc(all, (total + (size_t)n) * per);
        all = na ? na : all;
        int64_t *nl = realloc(labels, (total + (size_t)n) * sizeof(int64_t));
        labels = nl ? nl : labels;
        if (!na || !nl) {
            free(im), free(lab), free(all), free(labels);
            gd_cli_die("out of memory");
        }
        memcpy(all + total * per, im, (size_t)n * per);
        if (lab) memcpy(labels + total, lab, sizeof(int64_t) * (size_t)n);
        with_labels &= lab != NULL;
        total += (size_t)n;
        free(im);
        free(lab);
    }
    int bad = total > 2147483647u || gd_write_npz(staged, all, (int)total, H, W, C, with_labels ? labels : NULL, err, sizeof err);
    if (bad) free(all), free(labels);
    if (bad) gd_cli_die("%s", total > 2147483647u ? "too many images for one file" : err);
    gd_cli_commit();
    printf("%s: %zu images %dx%dx%d%s\n", out, total, H, W, C, with_labels ? " with labels" : "");
    free(all);
    free(labels);
}

/* Before a merge of scripts/sample_batch.sh's shards (cli/npz_verify.h). */
static void verify(const char *manifest) {
    char err[8192];
    long long n;
    long k;
    if (gd_batch_manifest_verify(manifest, &n, &k, err, sizeof err)) gd_cli_die("%s", err);
    printf("%s: %lld samples in %ld shards, each present with its recorded sha256, count and first index\n", manifest, n, k);
}

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-npz");
    if (argc < 2) gd_cli_die("missing command: info, merge, slice or verify (see --help)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        gd_cli_usage(&SPEC, stdout);
        return 0;
    }
    const char *cmd = argv[1];
    options o = {NULL, -1, -1};
    const char **pos = malloc(sizeof *pos * (size_t)argc);
    if (!pos) gd_cli_die("out of memory");
    int n = gd_cli_parse(&SPEC, argc - 1, argv + 1, &o, pos, argc); /* the command is argv[0] there */
    int slicing = o.first >= 0 || o.count >= 0;
    if (!strcmp(cmd, "info")) {
        if (n != 1 || o.out || slicing) gd_cli_die("info takes one file");
        info(pos[0]);
    } else if (!strcmp(cmd, "slice")) {
        if (!o.out || n != 1 || o.first < 0 || o.count < 0) gd_cli_die("usage: " SLICE_USAGE " (see --help)");
        slice(o.out, pos[0], o.first, o.count);
    } else if (!strcmp(cmd, "merge")) {
        if (!o.out || n < 1 || slicing) gd_cli_die("usage: " MERGE_USAGE " (see --help)");
        merge(o.out, pos, n);
    } else if (!strcmp(cmd, "verify")) {
        if (n != 1 || o.out || slicing) gd_cli_die("usage: " VERIFY_USAGE " (see --help)");
        verify(pos[0]);
    } else {
        gd_cli_die("unknown command (info, merge, slice, verify); see --help");
    }
    free(pos);
    return 0;
}
