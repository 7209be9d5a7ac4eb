/* ddpm-npz: inspect, merge and slice sample batches (.npz as guided-diffusion writes them). */
#include "gd_cli.h"
#include "gd_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: ddpm-npz info FILE.npz\n"
               "       ddpm-npz merge -o OUT.npz IN.npz [IN.npz ...]\n"
               "       ddpm-npz slice -o OUT.npz --first I --count N IN.npz\n"
               "merge concatenates arr_0 (uint8 NHWC images) and arr_1 (int64 labels, when every input has\n"
               "them) in the order given; the inputs must share H, W and C. slice keeps images [I, I+N),\n"
               "e.g. to score disjoint subsets of one run. Outputs are written atomically.\n");
}

static int fail(const char *msg) {
    fprintf(stderr, "ddpm-npz: %s\n", msg);
    return 2;
}

static int slice(int argc, char **argv) {
    const char *out = NULL, *in = NULL;
    long first = -1, count = -1;
    gd_cli_set_program("ddpm-npz");
    for (int i = 2; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "-o") && more) out = argv[++i];
        else if (!strcmp(argv[i], "--first") && more) {
            first = gd_cli_long("--first", argv[++i], 0, 2147483647L);
        } else if (!strcmp(argv[i], "--count") && more) {
            count = gd_cli_long("--count", argv[++i], 1, 2147483647L);
        } else if (argv[i][0] == '-' || in) {
            char err[300];
            snprintf(err, sizeof err, "slice: unexpected '%.200s'; usage: ddpm-npz slice -o OUT.npz --first I --count N IN.npz", argv[i]);
            return fail(err);
        } else in = argv[i];
    }
    if (!out || !in || first < 0 || count < 0)
        return fail("usage: ddpm-npz slice -o OUT.npz --first I --count N IN.npz");
    char err[600];
    uint8_t *im;
    int64_t *lab;
    int n, h, w, c;
    if (gd_read_npz(in, &im, &n, &h, &w, &c, &lab, err, sizeof err)) return fail(err);
    int rc = 0;
    if (first + count > n) {
        snprintf(err, sizeof err, "%s: has %d images; [%ld, %ld) is out of range", in, n, first, first + count);
        rc = fail(err);
    } else {
        size_t per = (size_t)h * w * c;
        if (gd_write_npz(out, im + (size_t)first * per, (int)count, h, w, c, lab ? lab + first : NULL, err, sizeof err))
            rc = fail(err);
        else
            printf("%s: %ld images %dx%dx%d%s\n", out, count, h, w, c, lab ? " with labels" : "");
    }
    free(im);
    free(lab);
    return rc;
}

int main(int argc, char **argv) {
    char err[600];
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "info")) {
        if (argc != 3) return fail("info takes one file");
        uint8_t *im;
        int64_t *lab;
        int n, h, w, c;
        if (gd_read_npz(argv[2], &im, &n, &h, &w, &c, &lab, err, sizeof err)) return fail(err);
        printf("%s: %d images %dx%dx%d (uint8 NHWC)%s\n", argv[2], n, h, w, c, lab ? ", int64 labels" : ", no labels");
        free(im);
        free(lab);
        return 0;
    }
    if (!strcmp(argv[1], "slice")) return slice(argc, argv);
    if (strcmp(argv[1], "merge")) return fail("unknown command (info, merge, slice); see --help");
    if (argc < 5 || strcmp(argv[2], "-o")) return fail("usage: ddpm-npz merge -o OUT.npz IN.npz [IN.npz ...]");
    const char *out = argv[3];
    uint8_t *all = NULL;
    int64_t *labels = NULL;
    size_t total = 0;
    int H = 0, W = 0, C = 0, with_labels = 1;
    for (int i = 4; i < argc; i++) {
        uint8_t *im;
        int64_t *lab;
        int n, h, w, c;
        if (gd_read_npz(argv[i], &im, &n, &h, &w, &c, &lab, err, sizeof err)) return fail(err);
        if (i == 4) H = h, W = w, C = c;
        if (h != H || w != W || c != C) {
            snprintf(err, sizeof err, "%s: images are %dx%dx%d, the first input's %dx%dx%d", argv[i], h, w, c, H, W, C);
            return fail(err);
        }
        size_t per = (size_t)H * W * C;
        uint8_t *na = realloc(all, (total + (size_t)n) * per);
        int64_t *nl = realloc(labels, (total + (size_t)n) * sizeof(int64_t));
        if (!na || !nl) return fail("out of memory");
        all = na;
        labels = nl;
        memcpy(all + total * per, im, (size_t)n * per);
        if (lab) memcpy(labels + total, lab, sizeof(int64_t) * (size_t)n);
        with_labels &= lab != NULL;
        total += (size_t)n;
        free(im);
        free(lab);
    }
    if (total > 2147483647u) return fail("too many images for one file");
    if (gd_write_npz(out, all, (int)total, H, W, C, with_labels ? labels : NULL, err, sizeof err)) return fail(err);
    printf("%s: %zu images %dx%dx%d%s\n", out, total, H, W, C, with_labels ? " with labels" : "");
    free(all);
    free(labels);
    return 0;
}
