/* Regression tests of issue 11 (hostile input, lost data): fuzz_corpus.
 *  - The seed corpora of the libFuzzer targets tests/fuzz_{npz,idx,image}.c
 *    (tests/data/fuzz/<target>/, written by tests/data/fuzz/make_corpus.py) replayed through the
 *    targets' own entries, in the normal build: nothing crashes or breaks a reader's promise,
 *    files named bad_* are refused with one non-empty line, the others load.
 *  - The hostile image files through the folder loader (gd_dataset_load_folder) and through a
 *    tool (ddpm-eval --make-ref on a folder): one line naming the file and what is wrong with
 *    it, exit status 2, no output file; the valid ones decode as PIL does. */
#define _POSIX_C_SOURCE 200809L
#define GD_FUZZ_NO_MAIN
#include "fuzz_idx.c"
#include "fuzz_image.c"
#include "fuzz_npz.c"

#include "cli_util.h"
#include "gd_dataset.h"
#include "gd_image.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_DIR "tests/data/fuzz"

typedef int (*fuzz_entry)(const uint8_t *data, size_t size, char *err, size_t errlen);

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The regular files of dir, sorted; returns their count (names malloc()ed into *out). */
static int list_files(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    int n = 0, cap = 0;
    char **v = NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[n++] = strdup(e->d_name);
    }
    if (d) closedir(d);
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_names);
    *out = v;
    return n;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Every file of FUZZ_DIR/target through entry: bad_* refused in one line, ok_* and the others
 * (except repro_*, fuzzer finds that may go either way) loaded. */
static void replay(const char *target, fuzz_entry entry, int min_files) {
    char dir[256], path[512], err[1024];
    snprintf(dir, sizeof dir, FUZZ_DIR "/%s", target);
    char **names;
    int n = list_files(dir, &names), loaded = 0, refused = 0;
    CHECK(n >= min_files && n <= 30, "%s: %d corpus files (want %d..30)", dir, n, min_files);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        uint8_t *data = cli_read_file(path, &len);
        CHECK(data != NULL, "cannot read %s", path);
        if (!data) continue;
        int rc = entry(data, len, err, sizeof err);
        int bad = !strncmp(names[i], "bad_", 4), either = !strncmp(names[i], "repro_", 6);
        CHECK(rc == 0 || rc == -1, "%s: entry returned %d", path, rc);
        if (rc == -1) CHECK(fuzz_one_line(err, sizeof err), "%s: refused without a one-line message", path);
        if (!either) CHECK(bad ? rc == -1 : rc == 0, "%s: %s (%s)", path, bad ? "loaded" : "refused", rc ? err : "");
        loaded += rc == 0, refused += rc == -1;
        free(data);
    }
    printf("    %s: %d files, %d loaded, %d refused\n", dir, n, loaded, refused);
    free_list(names, n);
}

static void test_corpus_npz(void) { replay("npz", fuzz_npz_entry, 20); }
static void test_corpus_idx(void) { replay("idx", fuzz_idx_entry, 20); }
static void test_corpus_image(void) { replay("image", fuzz_image_entry, 25); }

/* ---- the folder loader -------------------------------------------------------------------- */

/* What each hostile file must be refused for (the loader at 28x28 gray, as ddpm-eval runs it). */
static const struct {
    const char *file, *why;
} HOSTILE[] = {
    {"bad_idat_2gib.png", "cannot decode PNG image: truncated: chunk 'IDAT' at offset 33 needs 2147483647 bytes"},
    {"bad_ihdr_huge.png", "image is 100000x100000 (width x height), expected 28x28"},
    {"bad_ihdr_4096.png", "image is 4096x4096 (width x height), expected 28x28"},
    {"bad_crc.png", "cannot decode PNG image: chunk 'IDAT' at offset 33 has a bad CRC"},
    {"bad_truncated.png", "cannot decode PNG image: truncated"},
    {"bad_palette_index.png", "cannot decode PNG image: palette index 3 past the 2 PLTE entries"},
    {"bad_huffman_overflow.jpg", "cannot decode JPEG image: Huffman table with 765 codes (at most 256)"},
    {"bad_undefined_table.jpg", "cannot decode JPEG image: scan uses a Huffman table that is not defined"},
    {"bad_truncated.jpg", "cannot decode JPEG image: truncated"},
    {"bad_truncated.bmp", "cannot decode BMP image: truncated: 28 rows of pixel data need"},
    {"bad_truncated.gif", "cannot decode GIF image: truncated"},
};
#define N_HOSTILE (sizeof HOSTILE / sizeof *HOSTILE)

/* dir/data/c/ with a valid 28x28 gray PNG "a.png" and, unless NULL, a copy of corpus file `bad`
 * as "z_<bad>" (loaded second), else a second valid one. Returns 0 or -1. */
static int hostile_folder(const char *dir, const char *bad) {
    char p[1024], err[512];
    snprintf(p, sizeof p, "%s/data", dir);
    if (mkdir(p, 0755) != 0) return -1;
    snprintf(p, sizeof p, "%s/data/c", dir);
    if (mkdir(p, 0755) != 0) return -1;
    uint8_t px[28 * 28];
    for (int i = 0; i < 28 * 28; i++)
        px[i] = (uint8_t)(i * 7);
    snprintf(p, sizeof p, "%s/data/c/a.png", dir);
    if (gd_write_png_grid(p, px, 1, 28, 28, 1, 0, NULL, NULL, err, sizeof err) != 0) return -1;
    if (!bad) {
        snprintf(p, sizeof p, "%s/data/c/b.png", dir);
        return gd_write_png_grid(p, px, 1, 28, 28, 1, 0, NULL, NULL, err, sizeof err);
    }
    char src[512];
    snprintf(src, sizeof src, FUZZ_DIR "/image/%s", bad);
    snprintf(p, sizeof p, "%s/data/c/z_%s", dir, bad);
    size_t len = 0;
    uint8_t *data = cli_read_file(src, &len);
    int rc = data ? cli_write_file(p, data, len) : -1;
    free(data);
    return rc;
}

static void test_folder_hostile(void) {
    for (size_t k = 0; k < N_HOSTILE; k++) {
        char dir[512], want[1024], err[1024] = "";
        if (cli_mkdtemp(dir, sizeof dir) != 0 || hostile_folder(dir, HOSTILE[k].file) != 0) {
            CHECK(0, "%s: cannot build the folder", HOSTILE[k].file);
            continue;
        }
        gd_dataset d;
        char data[600];
        snprintf(data, sizeof data, "%s/data", dir);
        int rc = gd_dataset_load_folder(data, 1, 28, &d, err, sizeof err);
        snprintf(want, sizeof want, "%s/c/z_%s: %s", data, HOSTILE[k].file, HOSTILE[k].why);
        CHECK(rc == -1 && d.images == NULL && d.n == 0, "%s: loaded", HOSTILE[k].file);
        CHECK(fuzz_one_line(err, sizeof err) && !strncmp(err, want, strlen(want)), "%s: error '%s', want '%s...'",
              HOSTILE[k].file, err, want);
        if (rc == 0) gd_dataset_free(&d);
        cli_rmtree(dir);
    }
    /* the 4096x4096 header where a 4096 loader would decode it: refused before any big buffer */
    char dir[512], p[1024], err[1024] = "";
    if (cli_mkdtemp(dir, sizeof dir) == 0) {
        snprintf(p, sizeof p, "%s/c", dir);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/c/x.png", dir);
        size_t len = 0;
        uint8_t *data = cli_read_file(FUZZ_DIR "/image/bad_ihdr_4096.png", &len);
        if (data) cli_write_file(p, data, len);
        free(data);
        gd_dataset d;
        int rc = gd_dataset_load_folder(dir, 3, 4096, &d, err, sizeof err);
        CHECK(rc == -1 && strstr(err, "x.png: cannot decode PNG image: truncated: ") &&
                  strstr(err, "bytes of image data cannot hold 4096x4096 pixels"),
              "4096x4096 in 167 bytes: %s", rc ? err : "loaded");
        if (rc == 0) gd_dataset_free(&d);
        cli_rmtree(dir);
    }
}

/* The ok_* images through the loader (RGB, at their own size) against PIL's convert("RGB"):
 * exact for PNG, BMP and GIF; JPEG decoders round differently (stb against libjpeg). */
static void test_folder_matches_pil(void) {
    size_t elen = 0, off = 0;
    uint8_t *exp = cli_read_file(FUZZ_DIR "/image_expected_rgb.bin", &elen);
    CHECK(exp != NULL, "expected data missing");
    char **names;
    int n = list_files(FUZZ_DIR "/image", &names), checked = 0;
    for (int i = 0; i < n && exp; i++) {
        if (strncmp(names[i], "ok_", 3)) continue;
        char src[512], dir[512], p[1024], err[1024] = "";
        snprintf(src, sizeof src, FUZZ_DIR "/image/%s", names[i]);
        size_t len = 0;
        uint8_t *data = cli_read_file(src, &len);
        int w = 0, h = 0;
        CHECK(data && gd_image_probe(src, data, len, &w, &h, err, sizeof err) == 0 && w == h, "%s: %s", src, err);
        if (!data || w != h || w < 1 || cli_mkdtemp(dir, sizeof dir) != 0) {
            free(data);
            break;
        }
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        cli_write_file(p, data, len);
        free(data);
        gd_dataset d;
        int rc = gd_dataset_load_folder(dir, 3, w, &d, err, sizeof err);
        size_t bytes = (size_t)w * (size_t)h * 3;
        CHECK(rc == 0 && d.n == 1, "%s: %s", src, err);
        CHECK(off + bytes <= elen, "%s: expected data too short", src);
        if (rc == 0 && off + bytes <= elen) {
            const char *ext = strrchr(names[i], '.');
            int jpeg = ext && !strcmp(ext, ".jpg"), cmyk = strstr(names[i], "cmyk") != NULL, maxdiff = 0;
            for (size_t k = 0; k < bytes; k++) {
                int diff = abs((int)d.images[k] - (int)exp[off + k]);
                maxdiff = diff > maxdiff ? diff : maxdiff;
            }
            /* CMYK: stb and PIL convert to RGB by different formulas; only that it decodes */
            CHECK(cmyk || maxdiff <= (jpeg ? 8 : 0), "%s: differs from PIL by up to %d", src, maxdiff);
            checked++;
        }
        if (rc == 0) gd_dataset_free(&d);
        off += bytes;
        cli_rmtree(dir);
    }
    CHECK(checked >= 15 && off == elen, "%d images checked, %zu of %zu expected bytes used", checked, off, elen);
    free_list(names, n);
    free(exp);
}

/* ---- through a tool ----------------------------------------------------------------------- */

/* ddpm-eval --make-ref on a folder with one hostile file: status 2, one line naming the file and
 * the reason, nothing on stdout, no output file. (The baseline crashed on the Huffman overflow,
 * loaded the bad CRC, palette index, BMP and GIF truncations as pixels, and blamed memory or
 * "outofdata" for the 2 GiB IDAT.) A folder of valid files makes the reference. */
static void test_eval_hostile(void) {
    if (!cli_tool_available("ddpm-eval")) return;
    char dir[512], args[2048], out[1024], want[1024];
    if (cli_mkdtemp(dir, sizeof dir) != 0 || hostile_folder(dir, NULL) != 0) {
        CHECK(0, "cannot build the folder");
        return;
    }
    snprintf(out, sizeof out, "%s/ref.safetensors", dir);
    snprintf(args, sizeof args, "-q --make-ref '%s' '%s/data'", out, dir);
    cli_result r = cli_run("ddpm-eval", dir, args);
    CHECK(r.status == 0 && cli_file_exists(out), "valid folder: status %d: %s", r.status, r.err);
    cli_run_free(&r);
    cli_rmtree(dir);
    for (size_t k = 0; k < N_HOSTILE; k++) {
        if (cli_mkdtemp(dir, sizeof dir) != 0 || hostile_folder(dir, HOSTILE[k].file) != 0) {
            CHECK(0, "%s: cannot build the folder", HOSTILE[k].file);
            continue;
        }
        snprintf(out, sizeof out, "%s/ref.safetensors", dir);
        snprintf(args, sizeof args, "-q --make-ref '%s' '%s/data'", out, dir);
        snprintf(want, sizeof want, "ddpm-eval: %s/data/c/z_%s: %s", dir, HOSTILE[k].file, HOSTILE[k].why);
        r = cli_run("ddpm-eval", dir, args);
        CHECK(r.status == 2, "%s: exit status %d, want 2 (stderr: %s)", HOSTILE[k].file, r.status, r.err);
        CHECK(cli_count_lines(r.err) == 1 && !strncmp(r.err, want, strlen(want)), "%s: stderr '%s', want '%s...'",
              HOSTILE[k].file, r.err, want);
        CHECK(r.out[0] == 0 && !cli_file_exists(out), "%s: stdout '%s' / output file left", HOSTILE[k].file, r.out);
        cli_run_free(&r);
        cli_rmtree(dir);
    }
}

GD_TEST_TABLE(gd_tests_fuzz_corpus) = {
    {"fuzz_corpus_npz", test_corpus_npz},
    {"fuzz_corpus_idx", test_corpus_idx},
    {"fuzz_corpus_image", test_corpus_image},
    {"fuzz_corpus_folder_hostile", test_folder_hostile},
    {"fuzz_corpus_folder_matches_pil", test_folder_matches_pil},
    {"fuzz_corpus_eval_hostile", test_eval_hostile},
    {NULL, NULL},
};
