/* Tests for src/io/image_io.c and the npz writer and reader (src/io/npz_*.c). Paths are relative to the project root (the runner's
 * cwd). tests/data/npz/ is produced by tests/data/npz/make_npz.py (numpy); its data follow the
 * formula in pattern() below. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_image.h"
#include "test.h"
#include "cli_util.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* stb_image is private to this file (static), so no other object can clash with it. Debian's
 * stb 2022-09 declares stbi_set_unpremultiply_on_load_thread but defines it as
 * stbi__unpremultiply_on_load_thread; the alias keeps "declared static but never defined" quiet. */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define stbi_set_unpremultiply_on_load_thread stbi__unpremultiply_on_load_thread
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

#define NPZ_DIR "tests/data/npz"

/* Test hook in src/io/npz_write.c: gd_write_npz with zip64 records everywhere. */
int gd_npz_write_opt(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                     int force_zip64, char *err, size_t errlen);

/* ---- helpers ----------------------------------------------------------------------------- */

static int one_line(const char *s) { return s && *s && !strchr(s, '\n') && !strchr(s, '\r'); }

/* The formula make_npz.py uses. */
static uint8_t pattern(size_t i) { return (uint8_t)((i * 37 + 11) % 256); }

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- gd_to_uint8 ------------------------------------------------------------------------- */

/* Expected values are float32 `((x + 1) * 127.5).clamp(0, 255).to(uint8)`, computed by hand and
 * checked with numpy float32 arithmetic. The near-edge inputs are the float32 neighbours of
 * k/127.5 - 1: several land exactly on k only because float32 rounds (x + 1), where double
 * arithmetic would give k - epsilon and truncate to k - 1. */
static void test_to_uint8_values(void) {
    static const struct {
        float x;
        uint8_t want;
    } cases[] = {
        {-1.0f, 0},
        {1.0f, 255},
        {0.0f, 127},           /* 127.5 truncates */
        {-0.0f, 127},
        {-2.0f, 0},            /* clamp: -127.5 */
        {2.0f, 255},           /* clamp: 382.5 */
        {1e30f, 255},
        {-1e30f, 0},
        {0x1.0p-7f, 128},      /* 1.0078125 * 127.5 = 128.49609375 */
        {-0x1.0p-7f, 126},     /* 0.9921875 * 127.5 = 126.50390625 */
        {0x1.fc0000p-1f, 254}, /* 1.9921875 * 127.5 = 254.00390625 */
        /* edge of 1: x = 1/127.5 - 1 */
        {-0x1.fbfbfep-1f, 0},  /* 0.99999237 */
        {-0x1.fbfbfcp-1f, 0},  /* 0.99999994 */
        {-0x1.fbfbfap-1f, 1},  /* 1.0000075 */
        /* edge of 128: x = 128/127.5 - 1 */
        {0x1.010100p-8f, 127}, /* 127.99999 */
        {0x1.010102p-8f, 128}, /* 128.0 exactly in float32 */
        {0x1.010104p-8f, 128},
        /* edge of 254 */
        {0x1.fbfbfap-1f, 253}, /* 253.99998 */
        {0x1.fbfbfcp-1f, 254}, /* 254.0 exactly in float32 */
        {0x1.fbfbfep-1f, 254},
        /* just below 1: x + 1 rounds to 2.0 in float32, so 255 (double would give 254) */
        {0x1.fffffep-1f, 255},
        {-0x1.fffffep-1f, 0}, /* 7.6e-6 */
        {-0x1.0p-24f, 127},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < nc; i++) {
        uint8_t got = 77;
        gd_to_uint8(&cases[i].x, 1, 1, 1, 1, &got);
        CHECK(got == cases[i].want, "x=%a: got %d want %d", (double)cases[i].x, got, cases[i].want);
    }
    /* NaN -> 0 (what PyTorch's cast yields on x86 and CUDA); infinities clamp */
    float special[3] = {NAN, INFINITY, -INFINITY};
    uint8_t out[3] = {9, 9, 9};
    gd_to_uint8(special, 1, 1, 1, 3, out);
    CHECK(out[0] == 0 && out[1] == 255 && out[2] == 0, "nan/inf/-inf -> %d %d %d", out[0], out[1], out[2]);
}

static void test_to_uint8_layout(void) {
    const int n = 2, h = 2, w = 3;
    for (int c = 1; c <= 4; c++) {
        float x[2 * 4 * 2 * 3];
        uint8_t out[2 * 2 * 3 * 4 + 1];
        /* x[b][ch][y][x] = value giving uint8 (b*50 + ch*20 + y*5 + x) exactly: v/127.5 - 1 + tiny */
        for (int b = 0; b < n; b++)
            for (int ch = 0; ch < c; ch++)
                for (int p = 0; p < h * w; p++) {
                    int v = b * 50 + ch * 20 + p;
                    x[((b * c + ch) * h * w) + p] = (float)((v + 0.25) / 127.5 - 1.0);
                }
        memset(out, 0xEE, sizeof out);
        gd_to_uint8(x, n, c, h, w, out);
        int bad = 0;
        for (int b = 0; b < n; b++)
            for (int p = 0; p < h * w; p++)
                for (int ch = 0; ch < c; ch++)
                    if (out[(b * h * w + p) * c + ch] != b * 50 + ch * 20 + p) bad++;
        CHECK(bad == 0, "c=%d: %d misplaced values", c, bad);
        CHECK(out[n * h * w * c] == 0xEE, "c=%d: wrote past the end", c);
    }
}

/* ---- PNG --------------------------------------------------------------------------------- */

typedef struct {
    int chunks, bad_crc, text_index, iend_index, last_idat_index;
    char type[5];          /* type of the text chunk found (tEXt / iTXt) */
    uint8_t text[256];     /* its data */
    uint32_t text_len;
    int ends_at_iend;
} png_walk;

/* Walks every chunk, checking lengths and CRCs; records the first text chunk. */
static int walk_png(const uint8_t *b, size_t len, png_walk *wk) {
    static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    memset(wk, 0, sizeof *wk);
    wk->text_index = wk->iend_index = wk->last_idat_index = -1;
    if (len < 8 || memcmp(b, sig, 8) != 0) return -1;
    size_t p = 8;
    while (p + 12 <= len) {
        uint32_t n = be32(b + p);
        if (n > len - p - 12) return -1;
        uint32_t crc = (uint32_t)crc32(0L, b + p + 4, n + 4);
        if (crc != be32(b + p + 8 + n)) wk->bad_crc++;
        const uint8_t *t = b + p + 4;
        if ((!memcmp(t, "tEXt", 4) || !memcmp(t, "iTXt", 4)) && wk->text_index < 0) {
            wk->text_index = wk->chunks;
            memcpy(wk->type, t, 4);
            wk->text_len = n < sizeof wk->text ? n : (uint32_t)sizeof wk->text;
            memcpy(wk->text, b + p + 8, wk->text_len);
        }
        if (!memcmp(t, "IDAT", 4)) wk->last_idat_index = wk->chunks;
        if (!memcmp(t, "IEND", 4)) {
            wk->iend_index = wk->chunks;
            wk->ends_at_iend = p + 12 + n == len;
        }
        wk->chunks++;
        p += 12 + n;
    }
    return p == len ? 0 : -1;
}

/* Writes a grid, decodes it with stb_image, returns the pixels (caller frees). */
static uint8_t *write_and_decode(const char *path, const uint8_t *imgs, int n, int h, int w, int c, int cols,
                                 const char *key, const char *val, int *W, int *H) {
    char err[512] = "";
    int rc = gd_write_png_grid(path, imgs, n, h, w, c, cols, key, val, err, sizeof err);
    CHECK(rc == 0, "gd_write_png_grid: %s", err);
    if (rc != 0) return NULL;
    size_t len = 0;
    uint8_t *file = cli_read_file(path, &len);
    CHECK(file != NULL, "cannot read %s back", path);
    if (!file) return NULL;
    int comp = 0;
    uint8_t *px = stbi_load_from_memory(file, (int)len, W, H, &comp, 0);
    free(file);
    CHECK(px != NULL, "stb_image cannot decode %s: %s", path, stbi_failure_reason());
    CHECK(comp == c, "decoded %d channels, wrote %d", comp, c);
    return px;
}

static void test_png_grid_rgb(void) {
    char dir[256], path[300];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/grid.png", dir);
    const int n = 5, h = 3, w = 4, c = 3;
    uint8_t imgs[5 * 3 * 4 * 3];
    for (size_t i = 0; i < sizeof imgs; i++) imgs[i] = (uint8_t)(1 + i % 251); /* never 0 */
    int W = 0, H = 0;
    uint8_t *px = write_and_decode(path, imgs, n, h, w, c, 0, NULL, NULL, &W, &H);
    /* cols = ceil(sqrt(5)) = 3, rows = 2 */
    CHECK(W == 3 * 4 + 2 * 2 && H == 2 * 3 + 2, "grid is %dx%d, want 16x8", W, H);
    if (px && W == 16 && H == 8) {
        int bad_img = 0, bad_gap = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int cx = x / (w + 2), ox = x % (w + 2), cy = y / (h + 2), oy = y % (h + 2);
                int idx = cy * 3 + cx;
                for (int ch = 0; ch < c; ch++) {
                    uint8_t got = px[(y * W + x) * c + ch];
                    if (ox < w && oy < h && idx < n) {
                        if (got != imgs[((idx * h + oy) * w + ox) * c + ch]) bad_img++;
                    } else if (got != 0) {
                        bad_gap++; /* gap or empty 6th cell */
                    }
                }
            }
        CHECK(bad_img == 0, "%d image pixels differ", bad_img);
        CHECK(bad_gap == 0, "%d gap/empty pixels are not black", bad_gap);
    }
    stbi_image_free(px);
    CHECK(cli_count_entries(dir) == 1, "temporary file left behind");
    cli_rmtree(dir);
}

static void test_png_grid_gray_and_cols(void) {
    char dir[256], path[300];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/g.png", dir);
    const int h = 2, w = 3;
    uint8_t imgs[4 * 2 * 3];
    for (size_t i = 0; i < sizeof imgs; i++) imgs[i] = (uint8_t)(10 + 9 * i);
    int W, H;
    /* cols larger than n is clamped to n: one row */
    uint8_t *px = write_and_decode(path, imgs, 3, h, w, 1, 7, NULL, NULL, &W, &H);
    CHECK(W == 3 * 3 + 2 * 2 && H == 2, "cols=7, n=3: %dx%d", W, H);
    if (px && W == 13 && H == 2) {
        CHECK(px[0] == imgs[0] && px[3] == 0 && px[4] == 0 && px[5] == imgs[6] && px[W + 12] == imgs[17],
              "gray row layout");
    }
    stbi_image_free(px);
    /* cols = 1: a column */
    px = write_and_decode(path, imgs, 4, h, w, 1, 1, NULL, NULL, &W, &H);
    CHECK(W == 3 && H == 4 * 2 + 3 * 2, "cols=1, n=4: %dx%d", W, H);
    if (px && W == 3 && H == 14) {
        CHECK(px[2 * W] == 0 && px[3 * W + 2] == 0 && px[4 * W] == imgs[6] && px[13 * W + 2] == imgs[23],
              "gray column layout");
    }
    stbi_image_free(px);
    /* n = 4, cols = 0 -> 2x2 */
    px = write_and_decode(path, imgs, 4, h, w, 1, 0, NULL, NULL, &W, &H);
    CHECK(W == 8 && H == 6, "n=4 auto: %dx%d", W, H);
    stbi_image_free(px);
    cli_rmtree(dir);
}

static void test_png_single(void) {
    char dir[256], path[300];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/one.png", dir);
    const int h = 5, w = 7, c = 3;
    uint8_t img[5 * 7 * 3];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 13);
    int W, H;
    uint8_t *px = write_and_decode(path, img, 1, h, w, c, 1, "Comment", "single", &W, &H);
    CHECK(W == w && H == h, "single image is %dx%d", W, H);
    if (px && W == w && H == h) CHECK(memcmp(px, img, sizeof img) == 0, "pixels differ");
    stbi_image_free(px);
    /* cols = 0 with n = 1 is the same */
    px = write_and_decode(path, img, 1, h, w, c, 0, NULL, NULL, &W, &H);
    CHECK(W == w && H == h, "single image (cols=0) is %dx%d", W, H);
    stbi_image_free(px);
    cli_rmtree(dir);
}

/* Writes a 2x2 gray image with the given text, walks the chunks, returns the walk. */
static int text_roundtrip(const char *dir, const char *key, const char *val, png_walk *wk) {
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/t.png", dir);
    uint8_t img[4] = {1, 2, 3, 4};
    unlink(path);
    int rc = gd_write_png_grid(path, img, 1, 2, 2, 1, 1, key, val, err, sizeof err);
    if (rc != 0) return -1;
    size_t len = 0;
    uint8_t *b = cli_read_file(path, &len);
    if (!b) return -1;
    int r = walk_png(b, len, wk);
    free(b);
    return r;
}

static void test_png_text_chunk(void) {
    char dir[256];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    png_walk wk;
    const char *val = "model=64x64_diffusion steps=250 eta=0.0 seed=42 classifier_scale=1.0";
    CHECK(text_roundtrip(dir, "gd-params", val, &wk) == 0, "write/walk");
    CHECK(wk.bad_crc == 0, "%d chunks with a bad CRC", wk.bad_crc);
    CHECK(memcmp(wk.type, "tEXt", 4) == 0, "chunk type %s", wk.type);
    CHECK(wk.text_index > wk.last_idat_index && wk.iend_index == wk.text_index + 1 && wk.ends_at_iend,
          "text chunk at %d, last IDAT %d, IEND %d", wk.text_index, wk.last_idat_index, wk.iend_index);
    size_t kl = strlen("gd-params");
    CHECK(wk.text_len == kl + 1 + strlen(val) && memcmp(wk.text, "gd-params\0", kl + 1) == 0 &&
              memcmp(wk.text + kl + 1, val, strlen(val)) == 0,
          "text chunk contents");

    /* Latin-1 representable UTF-8 -> tEXt in Latin-1 */
    CHECK(text_roundtrip(dir, "Caf\xc3\xa9", "na\xc3\xafve \xc2\xb5", &wk) == 0, "latin-1 write");
    CHECK(!memcmp(wk.type, "tEXt", 4) && wk.bad_crc == 0, "latin-1 value: %s", wk.type);
    CHECK(wk.text_len == 5 + 7 && !memcmp(wk.text, "Caf\xe9\0na\xefve \xb5", 12), "latin-1 bytes");

    /* beyond Latin-1 -> iTXt, UTF-8 */
    CHECK(text_roundtrip(dir, "Comment", "\xcf\x83=1", &wk) == 0, "utf-8 write");
    CHECK(!memcmp(wk.type, "iTXt", 4) && wk.bad_crc == 0, "utf-8 value: %s", wk.type);
    CHECK(wk.text_len == 7 + 5 + 4 && !memcmp(wk.text, "Comment\0\0\0\0\0\xcf\x83=1", 16), "iTXt layout");

    /* invalid UTF-8 -> escaped, ASCII tEXt */
    CHECK(text_roundtrip(dir, "Comment", "a\xff" "b", &wk) == 0, "invalid utf-8 write");
    CHECK(!memcmp(wk.type, "tEXt", 4) && wk.text_len == 8 + 6 && !memcmp(wk.text + 8, "a\\xFFb", 6),
          "escaped value");

    /* NULL value = empty text; NULL key = no text chunk */
    CHECK(text_roundtrip(dir, "Comment", NULL, &wk) == 0 && wk.text_len == 8, "NULL value");
    CHECK(text_roundtrip(dir, NULL, "ignored", &wk) == 0 && wk.text_index < 0 && wk.bad_crc == 0, "NULL key");

    /* bad keywords fail and leave nothing behind */
    char k80[81];
    memset(k80, 'k', 80);
    k80[80] = '\0';
    const char *bad_keys[] = {"", k80, " lead", "trail ", "dou  ble", "tab\there", "\xcf\x83", "\xff"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        char path[300], err[512] = "";
        snprintf(path, sizeof path, "%s/bad.png", dir);
        uint8_t img[4] = {0};
        int rc = gd_write_png_grid(path, img, 1, 2, 2, 1, 1, bad_keys[i], "v", err, sizeof err);
        CHECK(rc != 0 && one_line(err) && strstr(err, path), "bad key %zu accepted (%s)", i, err);
    }
    k80[79] = '\0'; /* 79 is fine */
    CHECK(text_roundtrip(dir, k80, "v", &wk) == 0 && wk.bad_crc == 0, "79-byte keyword");
    CHECK(cli_count_entries(dir) == 1, "only t.png should remain, found %d entries", cli_count_entries(dir));
    cli_rmtree(dir);
}

static void test_png_errors(void) {
    char dir[256], path[512], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    uint8_t img[12] = {0};
    /* nonexistent directory */
    snprintf(path, sizeof path, "%s/missing/sub/out.png", dir);
    err[0] = '\0';
    CHECK(gd_write_png_grid(path, img, 1, 2, 2, 3, 0, "k", "v", err, sizeof err) != 0, "write succeeded");
    CHECK(one_line(err) && strstr(err, path), "err: %s", err);
    CHECK(cli_count_entries(dir) == 0, "something was created");
    /* the target is a directory: the temporary file is written, rename fails, temp is removed */
    snprintf(path, sizeof path, "%s/adir", dir);
    CHECK(mkdir(path, 0755) == 0, "mkdir");
    char marker[600];
    snprintf(marker, sizeof marker, "%s/adir/keep", dir);
    CHECK(cli_write_file(marker, (const uint8_t *)"x", 1) == 0, "marker");
    err[0] = '\0';
    CHECK(gd_write_png_grid(path, img, 1, 2, 2, 3, 0, NULL, NULL, err, sizeof err) != 0, "rename over a dir");
    CHECK(one_line(err) && strstr(err, path) && strstr(err, "rename"), "err: %s", err);
    CHECK(cli_count_entries(dir) == 1, "temporary file left behind (%d entries)", cli_count_entries(dir));
    /* bad arguments */
    snprintf(path, sizeof path, "%s/x.png", dir);
    CHECK(gd_write_png_grid(path, img, 1, 2, 2, 2, 0, NULL, NULL, err, sizeof err) != 0 && one_line(err), "c=2");
    CHECK(gd_write_png_grid(path, img, 0, 2, 2, 3, 0, NULL, NULL, err, sizeof err) != 0, "n=0");
    CHECK(gd_write_png_grid(path, img, 1, 0, 2, 3, 0, NULL, NULL, err, sizeof err) != 0, "h=0");
    CHECK(gd_write_png_grid(path, img, 1, 2, 2, 3, -1, NULL, NULL, err, sizeof err) != 0, "cols=-1");
    CHECK(gd_write_png_grid(path, NULL, 1, 2, 2, 3, 0, NULL, NULL, err, sizeof err) != 0, "NULL pixels");
    CHECK(gd_write_png_grid(path, img, 100000, 100000, 100000, 3, 0, NULL, NULL, err, sizeof err) != 0 &&
              strstr(err, "too large"),
          "huge grid: %s", err);
    CHECK(cli_count_entries(dir) == 1, "bad arguments created files");
    cli_rmtree(dir);
}

/* ---- npz --------------------------------------------------------------------------------- */

static void fill_pattern(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = pattern(i);
}

/* Reads path and checks it holds pattern() data of the given shape and labels (NULL = none). */
static void expect_npz(const char *path, int en, int eh, int ew, int ec, const int64_t *elabels) {
    uint8_t *img = NULL;
    int64_t *lab = NULL;
    int n = 0, h = 0, w = 0, c = 0;
    char err[512] = "";
    int rc = gd_read_npz(path, &img, &n, &h, &w, &c, &lab, err, sizeof err);
    CHECK(rc == 0, "%s: %s", path, err);
    if (rc == 0) {
        CHECK(n == en && h == eh && w == ew && c == ec, "%s: shape %dx%dx%dx%d, want %dx%dx%dx%d", path, n, h, w, c,
              en, eh, ew, ec);
        size_t total = (size_t)en * eh * ew * ec, bad = 0;
        if (n == en && h == eh && w == ew && c == ec)
            for (size_t i = 0; i < total; i++) bad += img[i] != pattern(i);
        CHECK(bad == 0, "%s: %zu bytes differ", path, bad);
        if (elabels) {
            CHECK(lab != NULL, "%s: labels missing", path);
            for (int i = 0; lab && i < en; i++)
                CHECK(lab[i] == elabels[i], "%s: label %d = %lld, want %lld", path, i, (long long)lab[i],
                      (long long)elabels[i]);
        } else {
            CHECK(lab == NULL, "%s: unexpected labels", path);
        }
    }
    free(img);
    free(lab);
}

static const int64_t L64[3] = {7, -2, (int64_t)1 << 40};
static const int64_t L32[3] = {7, -2, 123456};

static void test_npz_numpy_files(void) {
    expect_npz(NPZ_DIR "/savez_labels.npz", 3, 4, 5, 3, L64);
    expect_npz(NPZ_DIR "/savez_nolabels.npz", 3, 4, 5, 3, NULL);
    expect_npz(NPZ_DIR "/savez_compressed_labels_i4.npz", 3, 4, 5, 3, L32);
    expect_npz(NPZ_DIR "/savez_compressed_nolabels.npz", 3, 4, 5, 3, NULL);
    expect_npz(NPZ_DIR "/gray3d.npz", 2, 3, 4, 1, NULL);
    expect_npz(NPZ_DIR "/extra_member.npz", 3, 4, 5, 3, L64);
    expect_npz(NPZ_DIR "/npy_v2.npz", 3, 4, 5, 3, L64);
    expect_npz(NPZ_DIR "/npy_v3.npz", 3, 4, 5, 3, NULL);
    /* labels == NULL: arr_1 is not read */
    uint8_t *img = NULL;
    int n, h, w, c;
    char err[512];
    CHECK(gd_read_npz(NPZ_DIR "/savez_labels.npz", &img, &n, &h, &w, &c, NULL, err, sizeof err) == 0, "%s", err);
    free(img);
    CHECK(gd_read_npz(NPZ_DIR "/bad_labels_f8.npz", &img, &n, &h, &w, &c, NULL, err, sizeof err) == 0,
          "labels ignored: %s", err);
    free(img);
}

static void test_npz_malformed(void) {
    DIR *d = opendir(NPZ_DIR);
    CHECK(d != NULL, "cannot open " NPZ_DIR);
    if (!d) return;
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "bad_", 4) != 0) continue;
        char path[512], err[512];
        snprintf(path, sizeof path, NPZ_DIR "/%s", e->d_name);
        uint8_t *img = (uint8_t *)path; /* must be reset to NULL */
        int64_t *lab = (int64_t *)path;
        int n = -7, h = -7, w = -7, c = -7;
        memset(err, 0, sizeof err);
        int rc = gd_read_npz(path, &img, &n, &h, &w, &c, &lab, err, sizeof err);
        CHECK(rc == -1, "%s was accepted", e->d_name);
        CHECK(img == NULL && lab == NULL, "%s: outputs not cleared", e->d_name);
        CHECK(one_line(err) && strstr(err, path), "%s: error '%s'", e->d_name, err);
        if (rc == 0) {
            free(img);
            free(lab);
        }
        seen++;
    }
    closedir(d);
    CHECK(seen >= 40, "only %d malformed files", seen);

    /* a few specific messages */
    static const struct {
        const char *file, *msg;
    } want[] = {
        {"bad_fortran.npz", "fortran_order"},     {"bad_dtype_f4.npz", "dtype '<f4'"},
        {"bad_labels_f8.npz", "dtype '<f8'"},     {"bad_crc.npz", "CRC"},
        {"bad_shape_overflow.npz", "overflow"},   {"bad_shape_mismatch.npz", "shape needs"},
        {"bad_size_huge.npz", "past the end"},    {"bad_no_arr0.npz", "no arr_0"},
        {"bad_empty.npz", "not a zip"},           {"bad_deflate_corrupt.npz", "corrupt deflate"},
        {"bad_npy_version4.npz", "version 4.0"},  {"bad_deflate_bomb.npz", "impossible"},
        {"bad_duplicate.npz", "duplicate"},       {"bad_encrypted.npz", "encrypted"},
        {"bad_zip64_no_extra.npz", "zip64"},      {"bad_method.npz", "method 12"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char path[512], err[512] = "";
        uint8_t *img;
        int64_t *lab;
        int n, h, w, c;
        snprintf(path, sizeof path, NPZ_DIR "/%s", want[i].file);
        int rc = gd_read_npz(path, &img, &n, &h, &w, &c, &lab, err, sizeof err);
        CHECK(rc != 0 && strstr(err, want[i].msg), "%s: want '%s' in '%s'", want[i].file, want[i].msg, err);
    }
    /* missing file, directory */
    char err[512] = "";
    uint8_t *img;
    int n, h, w, c;
    CHECK(gd_read_npz(NPZ_DIR "/no_such_file.npz", &img, &n, &h, &w, &c, NULL, err, sizeof err) != 0 &&
              strstr(err, "no_such_file.npz") && one_line(err),
          "missing file: %s", err);
    CHECK(gd_read_npz(NPZ_DIR, &img, &n, &h, &w, &c, NULL, err, sizeof err) != 0 && one_line(err), "directory");
}

static void test_npz_roundtrip(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/s.npz", dir);
    static const struct {
        int n, h, w, c, labels, zip64;
    } cfg[] = {
        {3, 4, 5, 3, 1, 0}, {3, 4, 5, 3, 0, 0}, {2, 3, 4, 1, 1, 0}, {1, 1, 1, 1, 0, 0},
        {3, 4, 5, 3, 1, 1}, {5, 8, 8, 3, 0, 1}, {70, 33, 9, 3, 1, 0},
    };
    for (size_t k = 0; k < sizeof cfg / sizeof *cfg; k++) {
        const int n = cfg[k].n, h = cfg[k].h, w = cfg[k].w, c = cfg[k].c;
        size_t total = (size_t)n * h * w * c;
        uint8_t *src = malloc(total);
        int64_t *lab = malloc((size_t)n * sizeof *lab);
        fill_pattern(src, total);
        for (int i = 0; i < n; i++) lab[i] = (int64_t)i * 1000003 - 500 - (i == 1 ? INT64_C(1) << 50 : 0);
        err[0] = '\0';
        int rc = gd_npz_write_opt(path, src, n, h, w, c, cfg[k].labels ? lab : NULL, cfg[k].zip64, err, sizeof err);
        CHECK(rc == 0 && err[0] == '\0', "config %zu: write: %s", k, err);
        expect_npz(path, n, h, w, c, cfg[k].labels ? lab : NULL);
        CHECK(cli_count_entries(dir) == 1, "config %zu: temporary file left behind", k);
        free(src);
        free(lab);
    }
    cli_rmtree(dir);
}

/* The members we write are byte-identical to numpy's (same data as savez_labels.npz). */
static void test_npz_matches_numpy_bytes(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/m.npz", dir);
    uint8_t src[180];
    fill_pattern(src, sizeof src);
    CHECK(gd_write_npz(path, src, 3, 4, 5, 3, L64, err, sizeof err) == 0, "%s", err);
    size_t la = 0, lb = 0;
    uint8_t *a = cli_read_file(path, &la), *b = cli_read_file(NPZ_DIR "/savez_labels.npz", &lb);
    CHECK(a && b, "read");
    if (a && b) {
        /* member k starts at the k-th "\x93NUMPY"; arr_0 is 128 + 180 bytes, arr_1 is 128 + 24 */
        const size_t mlen[2] = {128 + 180, 128 + 24};
        size_t pa = 0, pb = 0;
        for (int k = 0; k < 2; k++) {
            while (pa + 6 <= la && memcmp(a + pa, "\x93NUMPY", 6) != 0) pa++;
            while (pb + 6 <= lb && memcmp(b + pb, "\x93NUMPY", 6) != 0) pb++;
            CHECK(pa + mlen[k] <= la && pb + mlen[k] <= lb, "member %d not found", k);
            if (pa + mlen[k] > la || pb + mlen[k] > lb) break;
            CHECK(memcmp(a + pa, b + pb, mlen[k]) == 0, "member %d differs from numpy's", k);
            pa += mlen[k];
            pb += mlen[k];
        }
        /* local headers: numpy adds a zip64 extra (20 bytes) to each, we do not; the rest of the
         * archive is the same size otherwise */
        CHECK(la + 40 == lb, "size %zu vs numpy %zu", la, lb);
        CHECK(la >= 4 && a[0] == 'P' && a[1] == 'K' && a[2] == 3 && a[3] == 4, "local header signature");
    }
    free(a);
    free(b);
    cli_rmtree(dir);
}

/* Every truncation and many single-byte corruptions of valid files must be handled cleanly
 * (run under ASan/UBSan to make this mean something). */
static void test_npz_corruptions(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/c.npz", dir);
    const char *srcs[] = {NPZ_DIR "/savez_labels.npz", NPZ_DIR "/savez_compressed_labels_i4.npz", NULL};
    char z64[300];
    snprintf(z64, sizeof z64, "%s/z64.npz", dir);
    uint8_t img0[2 * 3 * 2 * 3];
    fill_pattern(img0, sizeof img0);
    const int64_t lab0[2] = {1, 2};
    CHECK(gd_npz_write_opt(z64, img0, 2, 3, 2, 3, lab0, 1, err, sizeof err) == 0, "%s", err);
    srcs[2] = z64;
    int accepted_flips = 0;
    for (int s = 0; s < 3; s++) {
        size_t len = 0;
        uint8_t *orig = cli_read_file(srcs[s], &len);
        CHECK(orig != NULL, "read %s", srcs[s]);
        if (!orig) continue;
        int accepted_cut = 0;
        for (size_t cut = 0; cut < len; cut++) {
            cli_write_file(path, orig, cut);
            uint8_t *img = NULL;
            int64_t *lab = NULL;
            int n, h, w, c;
            if (gd_read_npz(path, &img, &n, &h, &w, &c, &lab, err, sizeof err) == 0) accepted_cut++;
            free(img);
            free(lab);
        }
        CHECK(accepted_cut == 0, "%s: %d truncations accepted", srcs[s], accepted_cut);
        uint8_t *buf = malloc(len);
        static const uint8_t xors[] = {0x01, 0x80, 0xFF};
        for (size_t pos = 0; pos < len; pos++)
            for (size_t x = 0; x < sizeof xors; x++) {
                memcpy(buf, orig, len);
                buf[pos] ^= xors[x];
                cli_write_file(path, buf, len);
                uint8_t *img = NULL;
                int64_t *lab = NULL;
                int n = 0, h = 0, w = 0, c = 0;
                err[0] = '\0';
                int rc = gd_read_npz(path, &img, &n, &h, &w, &c, &lab, err, sizeof err);
                if (rc == 0) {
                    accepted_flips++; /* benign fields: times, attributes, "made by" ... */
                    CHECK(img && n >= 1 && h >= 1 && w >= 1 && c >= 1, "accepted with bad outputs");
                } else {
                    CHECK(img == NULL && lab == NULL && one_line(err), "pos %zu: bad failure", pos);
                }
                free(img);
                free(lab);
            }
        free(buf);
        free(orig);
    }
    CHECK(accepted_flips > 0, "no corruption was benign?");
    cli_rmtree(dir);
}

static void test_npz_write_errors(void) {
    char dir[256], path[512], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    uint8_t img[12] = {0};
    int64_t lab[1] = {0};
    snprintf(path, sizeof path, "%s/nope/out.npz", dir);
    err[0] = '\0';
    CHECK(gd_write_npz(path, img, 1, 2, 2, 3, lab, err, sizeof err) != 0, "nonexistent dir accepted");
    CHECK(one_line(err) && strstr(err, path), "err: %s", err);
    CHECK(cli_count_entries(dir) == 0, "files created");
    snprintf(path, sizeof path, "%s/adir", dir);
    CHECK(mkdir(path, 0755) == 0, "mkdir");
    err[0] = '\0';
    CHECK(gd_write_npz(path, img, 1, 2, 2, 3, lab, err, sizeof err) != 0, "rename over a directory succeeded");
    CHECK(one_line(err) && strstr(err, path), "err: %s", err);
    CHECK(cli_count_entries(dir) == 1, "temporary file left behind");
    snprintf(path, sizeof path, "%s/x.npz", dir);
    CHECK(gd_write_npz(path, img, 0, 2, 2, 3, NULL, err, sizeof err) != 0 && one_line(err), "n=0");
    CHECK(gd_write_npz(path, NULL, 1, 2, 2, 3, NULL, err, sizeof err) != 0, "NULL images");
    CHECK(gd_write_npz(path, img, 1, 2, 2, -3, NULL, err, sizeof err) != 0, "c<0");
    CHECK(cli_count_entries(dir) == 1, "bad arguments created files");
    /* overwriting an existing file works */
    CHECK(gd_write_npz(path, img, 1, 2, 2, 3, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(gd_write_npz(path, img, 1, 2, 2, 3, lab, err, sizeof err) == 0, "%s", err);
    CHECK(cli_count_entries(dir) == 2, "entries after overwrite: %d", cli_count_entries(dir));
    cli_rmtree(dir);
}

GD_TEST_TABLE(gd_tests_image) = {
    {"image/to_uint8_values", test_to_uint8_values},
    {"image/to_uint8_layout", test_to_uint8_layout},
    {"image/png_grid_rgb", test_png_grid_rgb},
    {"image/png_grid_gray_and_cols", test_png_grid_gray_and_cols},
    {"image/png_single", test_png_single},
    {"image/png_text_chunk", test_png_text_chunk},
    {"image/png_errors", test_png_errors},
    {"image/npz_numpy_files", test_npz_numpy_files},
    {"image/npz_malformed", test_npz_malformed},
    {"image/npz_roundtrip", test_npz_roundtrip},
    {"image/npz_matches_numpy_bytes", test_npz_matches_numpy_bytes},
    {"image/npz_corruptions", test_npz_corruptions},
    {"image/npz_write_errors", test_npz_write_errors},
    {NULL, NULL},
};
