/* Tests for src/io/dataset.c. Paths are relative to the project root (the runner's cwd). The data in
 * tests/data/dataset/ come from tests/data/dataset/make_data.py (numpy + PIL); the folder
 * datasets with errors are built in a temporary folder here. Fashion-MNIST is checked when the
 * Debian package dataset-fashion-mnist is installed (or $GD_FASHION_MNIST_DIR names a folder with
 * the same four files), and skipped otherwise; its reference numbers were computed with Python's
 * gzip + numpy (+ zlib.crc32) from the same files. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "cli_util.h"
#include "gd_dataset.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DS_DIR "tests/data/dataset"
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist" /* GD_FASHION_MNIST_DIR overrides */

/* ---- helpers ----------------------------------------------------------------------------- */

static int ds_one_line(const char *s) { return s && *s && !strchr(s, '\n') && !strchr(s, '\r'); }

static int ds_is_zeroed(const gd_dataset *d) {
    return d->n == 0 && d->h == 0 && d->w == 0 && d->c == 0 && !d->images && !d->labels && d->num_classes == 0 &&
           !d->class_names;
}

static int ds_copy(const char *from, const char *to, size_t max_bytes) {
    size_t len = 0;
    uint8_t *b = cli_read_file(from, &len);
    if (!b) return -1;
    int rc = cli_write_file(to, b, len < max_bytes ? len : max_bytes);
    free(b);
    return rc;
}

static void ds_path(char *out, size_t n, const char *dir, const char *rel) { snprintf(out, n, "%s/%s", dir, rel); }

/* The formula make_data.py uses for the tiny IDX images. */
static uint8_t tiny_pixel(size_t k) { return (uint8_t)((k * 37 + 11) % 256); }

static void check_tiny(const gd_dataset *d, const char *what) {
    CHECK(d->n == 3 && d->h == 4 && d->w == 5 && d->c == 1, "%s: shape %d %d %d %d", what, d->n, d->h, d->w, d->c);
    CHECK(d->num_classes == 3, "%s: num_classes %d", what, d->num_classes);
    CHECK(d->class_names == NULL, "%s: IDX has no class names", what);
    if (d->n != 3 || !d->images || !d->labels) return;
    int bad = 0;
    for (size_t k = 0; k < 60; k++)
        bad += d->images[k] != tiny_pixel(k);
    CHECK(bad == 0, "%s: %d pixels differ", what, bad);
    CHECK(d->labels[0] == 2 && d->labels[1] == 0 && d->labels[2] == 2, "%s: labels %d %d %d", what, d->labels[0],
          d->labels[1], d->labels[2]);
}

/* ---- IDX --------------------------------------------------------------------------------- */

static void test_idx_tiny_raw_and_gzip(void) {
    const char *img[2] = {DS_DIR "/tiny-images-idx3-ubyte", DS_DIR "/tiny-images-idx3-ubyte.gz"};
    const char *lab[2] = {DS_DIR "/tiny-labels-idx1-ubyte", DS_DIR "/tiny-labels-idx1-ubyte.gz"};
    /* the .gz files really are gzip, the others really are not */
    for (int g = 0; g < 2; g++) {
        size_t len = 0;
        uint8_t *b = cli_read_file(img[g], &len);
        CHECK(b && len > 2 && (b[0] == 0x1f && b[1] == 0x8b) == (g == 1), "%s: unexpected format", img[g]);
        free(b);
    }
    for (int gi = 0; gi < 2; gi++)
        for (int gl = 0; gl < 2; gl++) {
            gd_dataset d;
            char err[512] = "";
            int rc = gd_dataset_load_idx(img[gi], lab[gl], &d, err, sizeof err);
            char what[64];
            snprintf(what, sizeof what, "images %s, labels %s", gi ? "gz" : "raw", gl ? "gz" : "raw");
            CHECK(rc == 0, "%s: %s", what, err);
            if (rc == 0) check_tiny(&d, what);
            gd_dataset_free(&d);
            CHECK(ds_is_zeroed(&d), "free leaves a zeroed dataset");
            gd_dataset_free(&d); /* twice is harmless */
        }
}

static void test_idx_malformed(void) {
    static const struct {
        const char *images, *labels, *expect;
    } cases[] = {
        {"bad/images_bad_magic", NULL, "magic"},
        {"bad/images_float_type", NULL, "not unsigned bytes"},
        {"bad/images_label_magic", NULL, "a label file"},
        {NULL, "bad/labels_bad_magic", "an image file"},
        {"tiny-labels-idx1-ubyte", "tiny-images-idx3-ubyte", "magic"}, /* swapped arguments */
        {"bad/images_short_header", NULL, "truncated"},
        {"bad/images_truncated", NULL, "truncated"},
        {"bad/images_truncated.gz", NULL, "truncated"},
        {"bad/images_gzip_cut.gz", NULL, "gzip stream ends early"},
        {"bad/images_gzip_no_trailer.gz", NULL, "gzip stream ends early"},
        {"bad/images_gzip_bad_crc.gz", NULL, "read failed"},
        {"bad/images_trailing", NULL, "unexpected data"},
        {NULL, "bad/labels_count2", "2 labels"},
        {NULL, "bad/labels_truncated", "truncated"},
        {"bad/images_zero_count", NULL, "out of range"},
        {"bad/images_zero_rows", NULL, "out of range"},
        {"bad/images_big_cols", NULL, "out of range"},
        {"bad/images_huge_count", NULL, "out of range"},
        {"does_not_exist", NULL, "No such file"},
        {NULL, "does_not_exist", "No such file"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char ip[256], lp[256], err[512] = "";
        snprintf(ip, sizeof ip, DS_DIR "/%s", cases[k].images ? cases[k].images : "tiny-images-idx3-ubyte");
        snprintf(lp, sizeof lp, DS_DIR "/%s", cases[k].labels ? cases[k].labels : "tiny-labels-idx1-ubyte");
        gd_dataset d;
        memset(&d, 0xab, sizeof d);
        int rc = gd_dataset_load_idx(ip, lp, &d, err, sizeof err);
        const char *bad = cases[k].images ? ip : lp;
        CHECK(rc == -1, "%s loaded", bad);
        CHECK(ds_one_line(err), "%s: error is not one line: '%s'", bad, err);
        CHECK(strstr(err, cases[k].expect) != NULL, "%s: error '%s' lacks '%s'", bad, err, cases[k].expect);
        CHECK(strstr(err, strrchr(bad, '/') + 1) != NULL, "error '%s' does not name %s", err, bad);
        CHECK(ds_is_zeroed(&d), "%s: dataset not zeroed after failure", bad);
        gd_dataset_free(&d);
    }
    /* err may be NULL or tiny */
    gd_dataset d;
    CHECK(gd_dataset_load_idx(DS_DIR "/bad/images_bad_magic", DS_DIR "/tiny-labels-idx1-ubyte", &d, NULL, 0) == -1,
          "NULL err");
    char small[8];
    CHECK(gd_dataset_load_idx(DS_DIR "/bad/images_bad_magic", DS_DIR "/tiny-labels-idx1-ubyte", &d, small,
                              sizeof small) == -1 &&
              strlen(small) == 7,
          "short err buffer");
}

/* ---- folders ----------------------------------------------------------------------------- */

static void test_folder_load(void) {
    size_t lrgb = 0, ll = 0;
    uint8_t *exp_rgb = cli_read_file(DS_DIR "/folder_expected_rgb.bin", &lrgb);
    uint8_t *exp_l = cli_read_file(DS_DIR "/folder_expected_l.bin", &ll);
    CHECK(exp_rgb && lrgb == 4 * 8 * 8 * 3 && exp_l && ll == 4 * 8 * 8, "expected data missing");
    for (int channels = 1; channels <= 3 && exp_rgb && exp_l; channels += 2) {
        gd_dataset d;
        char err[512] = "";
        int rc = gd_dataset_load_folder(DS_DIR "/folder", channels, 8, &d, err, sizeof err);
        CHECK(rc == 0, "channels %d: %s", channels, err);
        if (rc != 0) continue;
        CHECK(d.n == 4 && d.h == 8 && d.w == 8 && d.c == channels, "shape %d %d %d %d", d.n, d.h, d.w, d.c);
        CHECK(d.num_classes == 2 && d.class_names && !strcmp(d.class_names[0], "cat") &&
                  !strcmp(d.class_names[1], "dog"),
              "classes");
        CHECK(d.labels[0] == 0 && d.labels[1] == 0 && d.labels[2] == 1 && d.labels[3] == 1, "labels %d %d %d %d",
              d.labels[0], d.labels[1], d.labels[2], d.labels[3]);
        /* load order cat/img_a (RGB), cat/img_b (L), dog/img_a (RGBA), dog/img_b (P); expected
         * values are PIL's convert("RGB") / convert("L") */
        const uint8_t *exp = channels == 3 ? exp_rgb : exp_l;
        for (int i = 0; i < 4; i++) {
            int bad = 0;
            for (int k = 0; k < 64 * channels; k++)
                bad += d.images[i * 64 * channels + k] != exp[i * 64 * channels + k];
            CHECK(bad == 0, "channels %d, image %d: %d values differ from PIL", channels, i, bad);
        }
        gd_dataset_free(&d);
    }
    free(exp_rgb);
    free(exp_l);
}

/* BMP and GIF decode exactly as PIL does; JPEG decoders differ in rounding, so within a few levels. */
static void test_folder_formats(void) {
    size_t len = 0;
    uint8_t *exp = cli_read_file(DS_DIR "/formats_expected_rgb.bin", &len);
    CHECK(exp && len == 3 * 8 * 8 * 3, "expected data missing");
    gd_dataset d;
    char err[512] = "";
    int rc = gd_dataset_load_folder(DS_DIR "/formats", 3, 8, &d, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc == 0 && exp && len == 3 * 8 * 8 * 3) {
        CHECK(d.n == 3 && d.num_classes == 1 && !strcmp(d.class_names[0], "x"), "n %d", d.n);
        static const char *names[3] = {"a.bmp", "b.gif", "c.jpg"};
        for (int i = 0; i < 3 && i < d.n; i++) {
            int maxdiff = 0;
            for (int k = 0; k < 192; k++) {
                int diff = abs((int)d.images[i * 192 + k] - (int)exp[i * 192 + k]);
                if (diff > maxdiff) maxdiff = diff;
            }
            CHECK(maxdiff <= (i == 2 ? 4 : 0), "%s: differs from PIL by up to %d", names[i], maxdiff);
        }
    }
    gd_dataset_free(&d);
    free(exp);
}

/* A temporary dataset: classes a/ (the two cat PNGs) and b/ (the two dog PNGs). */
static int make_tmp_folder(char *dir, size_t n) {
    if (cli_mkdtemp(dir, n) != 0) return -1;
    char p[1024];
    static const char *cls[2] = {"a", "b"}, *src[2] = {"cat", "dog"}, *img[2] = {"img_a.png", "img_b.png"};
    for (int c = 0; c < 2; c++) {
        ds_path(p, sizeof p, dir, cls[c]);
        if (mkdir(p, 0755) != 0) return -1;
        for (int i = 0; i < 2; i++) {
            char from[256], to[1024];
            snprintf(from, sizeof from, DS_DIR "/folder/%s/%s", src[c], img[i]);
            snprintf(to, sizeof to, "%s/%s/%s", dir, cls[c], img[i]);
            if (ds_copy(from, to, (size_t)-1) != 0) return -1;
        }
    }
    return 0;
}

static void expect_folder_error(const char *dir, int channels, int size, const char *expect, const char *what) {
    gd_dataset d;
    memset(&d, 0xab, sizeof d);
    char err[1024] = "";
    int rc = gd_dataset_load_folder(dir, channels, size, &d, err, sizeof err);
    CHECK(rc == -1, "%s: loaded", what);
    CHECK(ds_one_line(err), "%s: error not one line: '%s'", what, err);
    CHECK(strstr(err, expect) != NULL, "%s: error '%s' lacks '%s'", what, err, expect);
    CHECK(ds_is_zeroed(&d), "%s: dataset not zeroed", what);
    gd_dataset_free(&d);
}

static void test_folder_errors(void) {
    /* wrong size: every file is 8x8; the error names the first file in load order */
    expect_folder_error(DS_DIR "/folder", 3, 16, "folder/cat/img_a.png: image is 8x8", "size 16");
    expect_folder_error(DS_DIR "/folder", 2, 8, "channels", "channels 2");
    expect_folder_error(DS_DIR "/folder", 3, -1, "size", "size -1");
    {
        /* size 0: the first image's (8x8); the same bytes as asking for 8 */
        gd_dataset a, b;
        char e[512] = "";
        int r0 = gd_dataset_load_folder(DS_DIR "/folder", 3, 0, &a, e, sizeof e);
        int r8 = gd_dataset_load_folder(DS_DIR "/folder", 3, 8, &b, e, sizeof e);
        CHECK(r0 == 0 && r8 == 0 && a.h == 8 && a.w == 8 && a.n == b.n && !memcmp(a.images, b.images, (size_t)a.n * 8 * 8 * 3),
              "size 0: %s", e);
        if (r0 == 0) gd_dataset_free(&a);
        if (r8 == 0) gd_dataset_free(&b);
    }
    expect_folder_error(DS_DIR "/no_such_folder", 3, 8, "No such file", "missing folder");
    {
        /* a folder of images alone is one unlabelled set, or labelled by "class<K>" in the names */
        gd_dataset a, b;
        char e1[512] = "", e2[512] = "", t[512], q[1024];
        int r1 = gd_dataset_load_folder(DS_DIR "/folder", 3, 8, &a, e1, sizeof e1);
        int r2 = gd_dataset_load_folder(DS_DIR "/folder/cat", 3, 8, &b, e2, sizeof e2);
        CHECK(r1 == 0 && r2 == 0 && b.n == 2 && !b.class_names && b.labels[0] == -1 && b.labels[1] == -1,
              "flat folder: %s %s", e1, e2);
        if (r1 == 0 && r2 == 0 && b.n == 2) CHECK(!memcmp(a.images, b.images, 2 * 8 * 8 * 3), "flat folder: pixels differ");
        gd_dataset_free(&a);
        gd_dataset_free(&b);
        if (cli_mkdtemp(t, sizeof t) == 0) {
            snprintf(q, sizeof q, "%s/sample_000001_seed1_class7.png", t);
            ds_copy(DS_DIR "/folder/cat/img_a.png", q, (size_t)-1);
            snprintf(q, sizeof q, "%s/sample_000002_seed2_class12.png", t);
            ds_copy(DS_DIR "/folder/cat/img_b.png", q, (size_t)-1);
            int r3 = gd_dataset_load_folder(t, 3, 8, &b, e2, sizeof e2);
            CHECK(r3 == 0 && b.n == 2 && b.labels[0] == 7 && b.labels[1] == 12 && b.num_classes == 13,
                  "labelled flat folder: %s", e2);
            gd_dataset_free(&b);
            cli_rmtree(t);
        }
    }

    char dir[512], p[1024];
    if (make_tmp_folder(dir, sizeof dir) != 0) {
        CHECK(0, "cannot build a temporary dataset");
        return;
    }
    /* hidden files are ignored; the copy loads */
    ds_path(p, sizeof p, dir, "a/.DS_Store");
    cli_write_file(p, "junk", 4);
    ds_path(p, sizeof p, dir, ".hidden_class");
    mkdir(p, 0755);
    gd_dataset d;
    char err[1024] = "";
    int rc = gd_dataset_load_folder(dir, 3, 8, &d, err, sizeof err);
    CHECK(rc == 0 && d.n == 4 && d.num_classes == 2 && !strcmp(d.class_names[0], "a"), "temporary copy: %s", err);
    gd_dataset_free(&d);

    /* a non-image file, named in the error */
    ds_path(p, sizeof p, dir, "b/notes.txt");
    cli_write_file(p, "not an image\n", 13);
    expect_folder_error(dir, 3, 8, "b/notes.txt: not a PNG", "text file");
    unlink(p);
    /* a truncated PNG (the header, so the size check passes, but not the pixels) */
    ds_path(p, sizeof p, dir, "b/img_c.png");
    ds_copy(DS_DIR "/folder/cat/img_a.png", p, 60);
    expect_folder_error(dir, 3, 8, "b/img_c.png: cannot decode", "truncated PNG");
    unlink(p);
    /* an image of the wrong size among good ones */
    ds_path(p, sizeof p, dir, "b/img_c.png");
    {
        size_t len = 0;
        uint8_t *b = cli_read_file(DS_DIR "/folder/cat/img_a.png", &len);
        CHECK(b && len > 24, "read png");
        if (b && len > 24) {
            b[19] = 9; /* IHDR width (bytes 16..19, big-endian) 8 -> 9; stb checks no CRC */
            cli_write_file(p, b, len);
        }
        free(b);
    }
    expect_folder_error(dir, 1, 8, "b/img_c.png: image is 9x8 (width x height), expected 8x8", "9x8 image");
    unlink(p);
    /* a folder inside a class */
    ds_path(p, sizeof p, dir, "a/sub");
    mkdir(p, 0755);
    expect_folder_error(dir, 3, 8, "a/sub: not a regular file", "nested folder");
    rmdir(p);
    /* a stray file next to the classes */
    ds_path(p, sizeof p, dir, "README");
    cli_write_file(p, "x", 1);
    expect_folder_error(dir, 3, 8, "mixes image files and subfolders", "stray file");
    unlink(p);
    /* an empty class */
    ds_path(p, sizeof p, dir, "c");
    mkdir(p, 0755);
    expect_folder_error(dir, 3, 8, "/c: class folder has no images", "empty class");
    rmdir(p);
    /* back to a good dataset */
    rc = gd_dataset_load_folder(dir, 1, 8, &d, err, sizeof err);
    CHECK(rc == 0 && d.n == 4, "after cleanup: %s", err);
    gd_dataset_free(&d);
    cli_rmtree(dir);

    /* no classes at all */
    if (cli_mkdtemp(dir, sizeof dir) == 0) {
        expect_folder_error(dir, 3, 8, "no class subfolders", "empty dataset");
        cli_rmtree(dir);
    }
}

/* ---- Fashion-MNIST ----------------------------------------------------------------------- */

static void test_fashion_mnist(void) {
    static const struct {
        const char *split;
        int n, first_label;
        long long first_sum, total_sum;
        unsigned long first_crc;
    } ref[2] = {
        /* numpy: a[0].sum(), zlib.crc32(a[0].tobytes()), a.sum(); l[0] */
        {"train", 60000, 9, 76247, 3431114169LL, 0xf270beb5ul},
        {"t10k", 10000, 9, 33456, 573469082LL, 0x52830860ul},
    };
    const char *dir = getenv("GD_FASHION_MNIST_DIR");
    if (!dir || !*dir) dir = FMNIST_DIR;
    for (int s = 0; s < 2; s++) {
        char ip[1024], lp[1024];
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, ref[s].split);
        snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, ref[s].split);
        if (access(ip, R_OK) != 0 || access(lp, R_OK) != 0) {
            printf("    skipped: dataset not installed (%s)\n", ip);
            continue;
        }
        gd_dataset d;
        char err[512] = "";
        int rc = gd_dataset_load_idx(ip, lp, &d, err, sizeof err);
        CHECK(rc == 0, "%s", err);
        if (rc != 0) continue;
        CHECK(d.n == ref[s].n && d.h == 28 && d.w == 28 && d.c == 1, "%s: shape %d %d %d %d", ref[s].split, d.n, d.h,
              d.w, d.c);
        CHECK(d.num_classes == 10 && d.class_names == NULL, "%s: %d classes", ref[s].split, d.num_classes);
        int hist[10] = {0}, bad = 0;
        for (int i = 0; i < d.n; i++) {
            if (d.labels[i] >= 0 && d.labels[i] < 10)
                hist[d.labels[i]]++;
            else
                bad++;
        }
        CHECK(bad == 0, "%s: %d labels out of range", ref[s].split, bad);
        for (int k = 0; k < 10; k++)
            CHECK(hist[k] == ref[s].n / 10, "%s: class %d has %d images", ref[s].split, k, hist[k]);
        CHECK(d.labels[0] == ref[s].first_label, "%s: first label %d", ref[s].split, d.labels[0]);
        long long first = 0, total = 0;
        for (int k = 0; k < 784; k++)
            first += d.images[k];
        for (size_t k = 0; k < (size_t)d.n * 784; k++)
            total += d.images[k];
        unsigned long crc = crc32(0L, d.images, 784);
        CHECK(first == ref[s].first_sum && crc == ref[s].first_crc, "%s: first image sum %lld crc %08lx", ref[s].split,
              first, crc);
        CHECK(total == ref[s].total_sum, "%s: pixel total %lld", ref[s].split, total);
        gd_dataset_free(&d);
    }
}

/* ---- permutation and batches ------------------------------------------------------------- */

static void test_permutation_reference(void) {
    /* perm_ref.txt: "n seed epoch p0 p1 ..." from make_data.py's Python implementation */
    FILE *f = fopen(DS_DIR "/perm_ref.txt", "r");
    CHECK(f != NULL, "perm_ref.txt missing");
    if (!f) return;
    int lines = 0, n;
    unsigned long long seed, epoch;
    while (fscanf(f, "%d %llu %llu", &n, &seed, &epoch) == 3) {
        int32_t *ref = malloc(sizeof *ref * (size_t)n), *got = malloc(sizeof *got * (size_t)n);
        int ok = 1;
        for (int i = 0; i < n; i++)
            ok &= fscanf(f, "%d", &ref[i]) == 1;
        CHECK(ok, "perm_ref.txt line %d is short", lines + 1);
        gd_dataset_permutation(n, seed, epoch, got);
        CHECK(!memcmp(ref, got, sizeof *got * (size_t)n), "n %d seed %llu epoch %llu differs from Python", n, seed,
              epoch);
        free(ref);
        free(got);
        lines++;
    }
    fclose(f);
    CHECK(lines == 8, "%d reference lines", lines);
}

static void test_permutation_properties(void) {
    enum { N = 1000 };
    static int32_t p0[N], p1[N], p2[N], q[N];
    static unsigned char seen[N];
    gd_dataset_permutation(N, 42, 0, p0);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        if (p0[i] < 0 || p0[i] >= N || seen[p0[i]])
            ok = 0;
        else
            seen[p0[i]] = 1;
    }
    CHECK(ok, "not a permutation of [0, %d)", N);
    gd_dataset_permutation(N, 42, 0, q);
    CHECK(!memcmp(p0, q, sizeof q), "not deterministic");
    gd_dataset_permutation(N, 42, 1, p1);
    gd_dataset_permutation(N, 43, 0, p2);
    int same1 = 0, same2 = 0, fixed = 0;
    for (int i = 0; i < N; i++) {
        same1 += p0[i] == p1[i];
        same2 += p0[i] == p2[i];
        fixed += p0[i] == i;
    }
    /* independent uniform permutations agree in ~1 place on average */
    CHECK(same1 < 10, "epochs 0 and 1 agree in %d places", same1);
    CHECK(same2 < 10, "seeds 42 and 43 agree in %d places", same2);
    CHECK(fixed < 10, "%d fixed points", fixed);
    /* first-position frequencies over many epochs are roughly uniform (n = 4: 24 orders) */
    int count[4] = {0};
    for (uint64_t e = 0; e < 4000; e++) {
        int32_t p[4];
        gd_dataset_permutation(4, 7, e, p);
        count[p[0]]++;
    }
    for (int k = 0; k < 4; k++)
        CHECK(count[k] > 850 && count[k] < 1150, "p[0] = %d in %d of 4000", k, count[k]);
    int32_t one = -1;
    gd_dataset_permutation(1, 1, 1, &one);
    CHECK(one == 0, "n = 1");
    gd_dataset_permutation(0, 1, 1, NULL); /* n = 0 touches nothing */
}

static void test_batch(void) {
    gd_dataset d;
    char err[512] = "";
    int rc =
        gd_dataset_load_idx(DS_DIR "/tiny-images-idx3-ubyte", DS_DIR "/tiny-labels-idx1-ubyte", &d, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc == 0) {
        int32_t idx[3] = {2, 0, 2}, y[3] = {-1, -1, -1};
        float x[3 * 20];
        gd_dataset_batch(&d, idx, 3, x, y);
        int bad = 0;
        for (int b = 0; b < 3; b++)
            for (int k = 0; k < 20; k++)
                bad += x[b * 20 + k] != (float)tiny_pixel((size_t)idx[b] * 20 + k) / 127.5f - 1.0f;
        CHECK(bad == 0, "%d values differ", bad);
        CHECK(y[0] == 2 && y[1] == 2 && y[2] == 2, "labels %d %d %d", y[0], y[1], y[2]);
        gd_dataset_batch(&d, idx + 1, 1, x, NULL); /* y may be NULL */
        CHECK(x[0] == (float)tiny_pixel(0) / 127.5f - 1.0f, "y = NULL batch");
    }
    gd_dataset_free(&d);

    /* NHWC -> NCHW on a 3-channel folder dataset, and the extremes -1 and 1 */
    rc = gd_dataset_load_folder(DS_DIR "/folder", 3, 8, &d, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc == 0) {
        d.images[3 * 64 * 3 + 0] = 0;   /* image 3, pixel 0, R */
        d.images[3 * 64 * 3 + 5] = 255; /* image 3, pixel 1, B */
        int32_t idx[2] = {3, 1}, y[2];
        float x[2 * 3 * 64];
        gd_dataset_batch(&d, idx, 2, x, y);
        int bad = 0;
        for (int b = 0; b < 2; b++)
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 64; p++) {
                    uint8_t v = d.images[((size_t)idx[b] * 64 + p) * 3 + ch];
                    bad += x[(b * 3 + ch) * 64 + p] != (float)v / 127.5f - 1.0f;
                }
        CHECK(bad == 0, "%d values differ", bad);
        CHECK(x[0] == -1.0f && x[2 * 64 + 1] == 1.0f, "extremes %g %g", x[0], x[2 * 64 + 1]);
        CHECK(y[0] == 1 && y[1] == 0, "labels %d %d", y[0], y[1]);
        float mx = -2, mn = 2;
        for (int k = 0; k < 2 * 3 * 64; k++) {
            if (x[k] > mx) mx = x[k];
            if (x[k] < mn) mn = x[k];
        }
        CHECK(mn >= -1.0f && mx <= 1.0f, "range [%g, %g]", mn, mx);
    }
    gd_dataset_free(&d);
}

GD_TEST_TABLE(gd_tests_dataset) = {
    {"dataset_idx_tiny_raw_and_gzip", test_idx_tiny_raw_and_gzip},
    {"dataset_idx_malformed", test_idx_malformed},
    {"dataset_folder_load", test_folder_load},
    {"dataset_folder_formats", test_folder_formats},
    {"dataset_folder_errors", test_folder_errors},
    {"dataset_fashion_mnist", test_fashion_mnist},
    {"dataset_permutation_reference", test_permutation_reference},
    {"dataset_permutation_properties", test_permutation_properties},
    {"dataset_batch", test_batch},
    {NULL, NULL},
};
