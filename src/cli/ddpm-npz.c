/* ddpm-npz: inspect, merge and slice sample batches (.npz as guided-diffusion writes them). */
#include "gd_cli.h"
#include "gd_image.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MERGE_USAGE "ddpm-npz merge -o OUT.npz IN.npz [IN.npz ...]"
#define SLICE_USAGE "ddpm-npz slice -o OUT.npz --first I --count N IN.npz"

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
             "       " SLICE_USAGE,
    .about = "merge concatenates arr_0 (uint8 NHWC images) and arr_1 (int64 labels, when every input has\n"
             "them) in the order given; the inputs must share H, W and C. slice keeps images [I, I+N),\n"
             "e.g. to score disjoint subsets of one run. Outputs are written atomically.\n",
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
    if (gd_read_npz(in, &im, &n, &h, &w, &c, &lab, err, sizeof err)) gd_cli_die("%s", err);
    if (first + count > n) gd_cli_die("%s: has %d images; [%ld, %ld) is out of range", in, n, first, first + count);
    size_t per = (size_t)h * w * c;
    if (gd_write_npz(out, im + (size_t)first * per, (int)count, h, w, c, lab ? lab + first : NULL, err, sizeof err))
        gd_cli_die("%s", err);
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
        uint8_t *im;
        int64_t *lab;
        int n, h, w, c;
        if (gd_read_npz(ins[i], &im, &n, &h, &w, &c, &lab, err, sizeof err)) gd_cli_die("%s", err);
        if (i == 0) H = h, W = w, C = c;
        if (h != H || w != W || c != C)
            gd_cli_die("%s: images are %dx%dx%d, the first input's %dx%dx%d", ins[i], h, w, c, H, W, C);
        size_t per = (size_t)H * W * C;
        uint8_t *na = realloc(all, (total + (size_t)n) * per);
        int64_t *nl = realloc(labels, (total + (size_t)n) * sizeof(int64_t));
        if (!na || !nl) gd_cli_die("out of memory");
        all = na;
        labels = nl;
        memcpy(all + total * per, im, (size_t)n * per);
        if (lab) memcpy(labels + total, lab, sizeof(int64_t) * (size_t)n);
        with_labels &= lab != NULL;
        total += (size_t)n;
        free(im);
        free(lab);
    }
    if (total > 2147483647u) gd_cli_die("too many images for one file");
    if (gd_write_npz(out, all, (int)total, H, W, C, with_labels ? labels : NULL, err, sizeof err)) gd_cli_die("%s", err);
    printf("%s: %zu images %dx%dx%d%s\n", out, total, H, W, C, with_labels ? " with labels" : "");
    free(all);
    free(labels);
}

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-npz");
    if (argc < 2) {
        gd_cli_usage(&SPEC, stderr);
        return 2;
    }
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
        if (!o.out || n != 1 || o.first < 0 || o.count < 0) gd_cli_die("usage: " SLICE_USAGE);
        slice(o.out, pos[0], o.first, o.count);
    } else if (!strcmp(cmd, "merge")) {
        if (!o.out || n < 1 || slicing) gd_cli_die("usage: " MERGE_USAGE);
        merge(o.out, pos, n);
    } else {
        gd_cli_die("unknown command (info, merge, slice); see --help");
    }
    free(pos);
    return 0;
}
