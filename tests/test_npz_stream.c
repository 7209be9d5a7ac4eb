/* Tests for the streaming .npz reader and the reference-batch writer (src/io/npz_stream.c).
 * tests/fixtures/npz_ref_small*.npz are written by numpy (tests/reference/gen_npz_stream_fixtures.py,
 * whose docstring gives the formulas recomputed here); tests/data/npz/ is the malformed set of the
 * gd_read_npz tests (tests/test_image.c). Paths are relative to the project root. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_image.h"
#include "gd_util.h"
#include "test.h"
#include "cli_util.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define FIX_STORED "tests/fixtures/npz_ref_small.npz"
#define FIX_DEFLATED "tests/fixtures/npz_ref_small_compressed.npz"
#define FIX_NHW "tests/fixtures/npz_ref_small_nhw.npz"
#define NPZ_DIR "tests/data/npz"

/* Test hooks in src/io/npz_stream.c. */
gd_npz_writer *gd_npz_writer_open_opt(const char *path, int n, int h, int w, int c, int force_zip64, char *err,
                                      size_t errlen);
int gd_npz_writer_zero_images(gd_npz_writer *wr, int k, char *err, size_t errlen);

/* ---- helpers ----------------------------------------------------------------------------- */

static int one_line(const char *s) { return s && *s && !strchr(s, '\n') && !strchr(s, '\r'); }

/* The fixtures' pixel formula. */
static uint8_t pix(size_t i) { return (uint8_t)((i * 7 + 3) % 251); }

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static int bits_equal(const double *a, const double *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* The fixtures' float arrays by the formulas (float32 ones rounded once, as numpy does). */
static void ref_values(const char *name, double *v, int *ndim, int64_t shape[4]) {
    memset(shape, 0, 4 * sizeof *shape);
    if (!strcmp(name, "mu")) {
        *ndim = 1, shape[0] = 4;
        for (int i = 0; i < 4; i++) v[i] = (i - 1.5) / 3;
    } else if (!strcmp(name, "sigma")) {
        *ndim = 2, shape[0] = shape[1] = 4;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) v[i * 4 + j] = 1.0 / (i + j + 1) - (i == j);
    } else if (!strcmp(name, "mu_s")) {
        *ndim = 1, shape[0] = 3;
        for (int i = 0; i < 3; i++) v[i] = (double)(float)(1.0 / (i + 3));
    } else { /* sigma_s */
        *ndim = 2, shape[0] = shape[1] = 3;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) v[i * 3 + j] = (double)(float)((double)(i - j) / 7);
    }
}

/* Streams path in batches of `batch` images (cycled); 0 with the bytes (malloc()ed) or -1. */
static int stream_all(const char *path, const int *batch, int nb, uint8_t **out, int dims[4], char *err,
                      size_t errlen) {
    *out = NULL;
    gd_npz_stream *s = gd_npz_stream_open(path, &dims[0], &dims[1], &dims[2], &dims[3], err, errlen);
    if (!s) return -1;
    size_t img = (size_t)dims[1] * dims[2] * dims[3];
    uint8_t *buf = malloc((size_t)dims[0] * img);
    if (!buf) {
        gd_npz_stream_close(s);
        snprintf(err, errlen, "test: out of memory");
        return -1;
    }
    int done = 0, rc = 0;
    for (int b = 0; done < dims[0]; b++) {
        int k = batch[b % nb];
        if (k > dims[0] - done) k = dims[0] - done;
        if (gd_npz_stream_read(s, buf + (size_t)done * img, k, err, errlen) != 0) {
            rc = -1;
            break;
        }
        done += k;
    }
    gd_npz_stream_close(s);
    if (rc) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* The offset of the .npy data of the member whose header has `descr` (stored members only). */
static size_t npy_data_offset(const uint8_t *f, size_t len, const char *descr) {
    for (size_t p = 0; p + 10 <= len; p++) {
        if (memcmp(f + p, "\x93NUMPY\x01\x00", 8) != 0) continue;
        size_t hl = le16(f + p + 8);
        if (p + 10 + hl > len) break;
        char d[32];
        int dl = snprintf(d, sizeof d, "'descr': '%s'", descr);
        for (size_t q = p + 10; q + (size_t)dl <= p + 10 + hl; q++)
            if (!memcmp(f + q, d, (size_t)dl)) return p + 10 + hl;
    }
    return 0;
}

static void put16le(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32le(uint8_t *p, uint32_t v) { put16le(p, v & 0xFFFF), put16le(p + 2, v >> 16); }

/* A one-member .npz by hand: arr_0.npy (uint8 [n,h,w,c]) raw-deflated at `level`. Returns the
 * offset and length of the deflate data, or 0 on failure. */
static size_t write_deflated_npz(const char *path, const uint8_t *px, int n, int h, int w, int c, int level,
                                 size_t *clen) {
    char hdr[128];
    int k = snprintf(hdr, sizeof hdr, "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }", n, h,
                     w, c);
    while ((10 + k + 1) % 64) hdr[k++] = ' ';
    hdr[k++] = '\n';
    const size_t npx = (size_t)n * h * w * c, usize = 10 + (size_t)k + npx;
    uint8_t *member = malloc(usize);
    memcpy(member, "\x93NUMPY\x01\x00", 8);
    put16le(member + 8, (uint32_t)k);
    memcpy(member + 10, hdr, (size_t)k);
    memcpy(member + 10 + k, px, npx);
    const uint32_t crc = (uint32_t)crc32(0, member, (uInt)usize);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&zs, (uLong)usize);
    uint8_t *file = malloc(30 + 9 + cap + 46 + 9 + 22);
    zs.next_in = member, zs.avail_in = (uInt)usize;
    zs.next_out = file + 39, zs.avail_out = (uInt)cap;
    int zr = deflate(&zs, Z_FINISH);
    const size_t cs = zs.total_out;
    deflateEnd(&zs);
    free(member);
    if (zr != Z_STREAM_END) {
        free(file);
        return 0;
    }
    uint8_t *lh = file, *ch = file + 39 + cs, *eocd = ch + 55;
    memset(lh, 0, 30), memset(ch, 0, 46), memset(eocd, 0, 22);
    put32le(lh, 0x04034b50u), put16le(lh + 4, 20), put16le(lh + 8, 8), put16le(lh + 12, 0x21);
    put32le(lh + 14, crc), put32le(lh + 18, (uint32_t)cs), put32le(lh + 22, (uint32_t)usize), put16le(lh + 26, 9);
    memcpy(lh + 30, "arr_0.npy", 9);
    put32le(ch, 0x02014b50u), put16le(ch + 4, 20), put16le(ch + 6, 20), put16le(ch + 10, 8), put16le(ch + 14, 0x21);
    put32le(ch + 16, crc), put32le(ch + 20, (uint32_t)cs), put32le(ch + 24, (uint32_t)usize), put16le(ch + 28, 9);
    memcpy(ch + 46, "arr_0.npy", 9);
    put32le(eocd, 0x06054b50u), put16le(eocd + 8, 1), put16le(eocd + 10, 1), put32le(eocd + 12, 55);
    put32le(eocd + 16, (uint32_t)(39 + cs));
    int rc = cli_write_file(path, file, 39 + cs + 55 + 22);
    free(file);
    *clen = cs;
    return rc == 0 ? 39 : 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Batches 1, 2, 2 of the stored and deflated fixtures: gd_read_npz's bytes and the formula; the
 * NHW one (c = 1) in 1, 2, 1; then reading past the end. */
static void test_stream_batches(void) {
    const char *files[] = {FIX_STORED, FIX_DEFLATED, FIX_NHW};
    for (int f = 0; f < 3; f++) {
        char err[512] = "";
        uint8_t *ref = NULL;
        int rn, rh, rw, rc_;
        CHECK(gd_read_npz(files[f], &ref, &rn, &rh, &rw, &rc_, NULL, err, sizeof err) == 0, "%s", err);
        int n = -1, h = -1, w = -1, c = -1;
        gd_npz_stream *s = gd_npz_stream_open(files[f], &n, &h, &w, &c, err, sizeof err);
        CHECK(s != NULL && err[0] == '\0', "%s: %s", files[f], err);
        if (!s || !ref) {
            free(ref);
            continue;
        }
        const int want[4] = {f < 2 ? 5 : 4, f < 2 ? 6 : 5, f < 2 ? 7 : 6, f < 2 ? 3 : 1};
        CHECK(n == want[0] && h == want[1] && w == want[2] && c == want[3], "%s: dims %d %d %d %d", files[f], n, h,
              w, c);
        CHECK(rn == n && rh == h && rw == w && rc_ == c, "%s: gd_read_npz dims differ", files[f]);
        const size_t img = (size_t)h * w * c;
        uint8_t *got = calloc((size_t)n, img);
        const int batches[2][3] = {{1, 2, 2}, {1, 2, 1}};
        size_t at = 0;
        for (int b = 0; b < 3; b++) {
            int k = batches[f == 2][b];
            CHECK(gd_npz_stream_read(s, got + at * img, k, err, sizeof err) == 0, "%s: batch %d: %s", files[f], b,
                  err);
            at += (size_t)k;
        }
        CHECK(memcmp(got, ref, (size_t)n * img) == 0, "%s: streamed bytes differ from gd_read_npz's", files[f]);
        int formula = 1;
        for (size_t i = 0; i < (size_t)n * img; i++) formula &= got[i] == pix(i);
        CHECK(formula, "%s: pixels do not follow the formula", files[f]);
        CHECK(gd_npz_stream_read(s, got, 0, err, sizeof err) == 0, "%s: k = 0 at the end: %s", files[f], err);
        err[0] = '\0';
        CHECK(gd_npz_stream_read(s, got, 1, err, sizeof err) == -1 && one_line(err) && strstr(err, files[f]) &&
                  strstr(err, "past the end"),
              "%s: read past the end: '%s'", files[f], err);
        gd_npz_stream_close(s);
        /* asking for more than is left in one call */
        s = gd_npz_stream_open(files[f], &n, &h, &w, &c, err, sizeof err);
        CHECK(s && gd_npz_stream_read(s, got, 2, err, sizeof err) == 0, "%s", err);
        CHECK(s && gd_npz_stream_read(s, got, n - 1, err, sizeof err) == -1 && strstr(err, "past the end"),
              "%s: %d images with %d left: '%s'", files[f], n - 1, n - 2, err);
        CHECK(s && gd_npz_stream_read(s, got, -1, err, sizeof err) == -1 && one_line(err), "k = -1");
        CHECK(s && gd_npz_stream_read(s, got, n - 2, err, sizeof err) == 0 && !memcmp(got, ref + 2 * img, (n - 2) * img),
              "%s: the rest after a refused read: %s", files[f], err);
        gd_npz_stream_close(s);
        free(got);
        free(ref);
    }
}

/* Every array of both fixtures, bit-exact against the formulas; NAME and NAME.npy; a missing name. */
static void test_read_f64_values(void) {
    const char *files[] = {FIX_STORED, FIX_DEFLATED};
    const char *names[] = {"mu", "sigma", "mu_s", "sigma_s", "mu.npy", "sigma_s.npy"};
    for (int f = 0; f < 2; f++) {
        for (int k = 0; k < 6; k++) {
            char err[512] = "x", base[16];
            snprintf(base, sizeof base, "%.*s", (int)strcspn(names[k], "."), names[k]);
            double want[16];
            int wnd;
            int64_t wshape[4];
            ref_values(base, want, &wnd, wshape);
            double *data = (double *)err;
            int nd = -1;
            int64_t shape[4] = {-1, -1, -1, -1};
            int rc = gd_npz_read_f64(files[f], names[k], &data, &nd, shape, err, sizeof err);
            CHECK(rc == 0 && err[0] == '\0', "%s: %s: rc %d: %s", files[f], names[k], rc, err);
            if (rc != 0) continue;
            CHECK(nd == wnd && !memcmp(shape, wshape, sizeof shape), "%s: %s: ndim %d shape %lld %lld %lld %lld",
                  files[f], names[k], nd, (long long)shape[0], (long long)shape[1], (long long)shape[2],
                  (long long)shape[3]);
            size_t count = (size_t)wshape[0] * (size_t)(wnd == 2 ? wshape[1] : 1);
            CHECK(bits_equal(data, want, count), "%s: %s: values differ from the formula", files[f], names[k]);
            free(data);
        }
        char err[512] = "";
        double *data = (double *)err;
        int nd = 7;
        int64_t shape[4];
        CHECK(gd_npz_read_f64(files[f], "nope", &data, &nd, shape, err, sizeof err) == 1 && data == NULL,
              "%s: missing name: %s", files[f], err);
        CHECK(gd_npz_read_f64(files[f], "mu.np", &data, &nd, shape, err, sizeof err) == 1, "a prefix is not a name");
        CHECK(gd_npz_has(files[f], "mu", err, sizeof err) == 1, "%s: has mu: %s", files[f], err);
        CHECK(gd_npz_has(files[f], "sigma_s.npy", err, sizeof err) == 1, "%s: has sigma_s.npy", files[f]);
        CHECK(gd_npz_has(files[f], "arr_0", err, sizeof err) == 1, "%s: has arr_0", files[f]);
        CHECK(gd_npz_has(files[f], "arr_1", err, sizeof err) == 0, "%s: has arr_1", files[f]);
        CHECK(gd_npz_has(files[f], "sigm", err, sizeof err) == 0, "%s: has sigm", files[f]);
        /* arr_0 is uint8: a clear refusal */
        err[0] = '\0';
        CHECK(gd_npz_read_f64(files[f], "arr_0", &data, &nd, shape, err, sizeof err) == -1 && data == NULL &&
                  one_line(err) && strstr(err, files[f]) && strstr(err, "'|u1'"),
              "%s: arr_0 as f64: '%s'", files[f], err);
    }
    char err[512] = "";
    CHECK(gd_npz_has("tests/fixtures/no_such.npz", "mu", err, sizeof err) == -1 && strstr(err, "no_such.npz"),
          "missing file: %s", err);
    CHECK(gd_npz_has(NPZ_DIR "/bad_not_zip.npz", "mu", err, sizeof err) == -1 && one_line(err), "not a zip: %s", err);
}

/* Members the readers must refuse, each with its own message. */
static void test_refusals(void) {
    static const struct {
        const char *name, *msg;
    } bad[] = {
        {"fortran", "fortran_order"}, {"big", "'>f8'"}, {"ints", "'<i8'"}, {"five", "5 dimensions"},
        {"arr_0", "'|u1'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[512] = "";
        double *data = NULL;
        int nd;
        int64_t shape[4];
        CHECK(gd_npz_read_f64(FIX_NHW, bad[i].name, &data, &nd, shape, err, sizeof err) == -1 && data == NULL &&
                  one_line(err) && strstr(err, FIX_NHW) && strstr(err, bad[i].msg),
              "%s: want '%s' in '%s'", bad[i].name, bad[i].msg, err);
        CHECK(gd_npz_has(FIX_NHW, bad[i].name, err, sizeof err) == 1, "%s is there", bad[i].name);
    }
    static const struct {
        const char *file, *msg;
    } sbad[] = {
        {NPZ_DIR "/bad_fortran.npz", "fortran_order"}, {NPZ_DIR "/bad_dtype_f4.npz", "dtype '<f4'"},
        {NPZ_DIR "/bad_ndim5.npz", "dimensions"},      {NPZ_DIR "/bad_no_arr0.npz", "no arr_0"},
        {NPZ_DIR "/bad_crc.npz", "CRC"},               {NPZ_DIR "/bad_data_short.npz", ""},
    };
    for (size_t i = 0; i < sizeof sbad / sizeof *sbad; i++) {
        char err[512] = "";
        uint8_t *buf;
        int dims[4], one = 1;
        CHECK(stream_all(sbad[i].file, &one, 1, &buf, dims, err, sizeof err) == -1 && one_line(err) &&
                  strstr(err, sbad[i].file) && strstr(err, sbad[i].msg),
              "%s: want '%s' in '%s'", sbad[i].file, sbad[i].msg, err);
    }
    char err[512] = "";
    int n, h, w, c;
    CHECK(!gd_npz_stream_open("tests/fixtures/no_such.npz", &n, &h, &w, &c, err, sizeof err) &&
              strstr(err, "no_such.npz") && one_line(err),
          "missing file: %s", err);
    CHECK(!gd_npz_stream_open(NPZ_DIR, &n, &h, &w, &c, err, sizeof err) && one_line(err), "a directory: %s", err);
}

/* Every file of the gd_read_npz set: the stream loads exactly what gd_read_npz (without labels)
 * loads, with the same bytes, and refuses the rest in one line naming the file. */
static void test_same_as_read_npz(void) {
    DIR *d = opendir(NPZ_DIR);
    CHECK(d != NULL, "open %s", NPZ_DIR);
    if (!d) return;
    int seen = 0, loaded = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".npz")) continue;
        char path[512], err1[512] = "", err2[512] = "";
        snprintf(path, sizeof path, NPZ_DIR "/%s", e->d_name);
        uint8_t *ref = NULL, *got = NULL;
        int n, h, w, c, dims[4];
        const int batch[2] = {2, 1};
        int r1 = gd_read_npz(path, &ref, &n, &h, &w, &c, NULL, err1, sizeof err1);
        int r2 = stream_all(path, batch, 2, &got, dims, err2, sizeof err2);
        CHECK(r1 == r2, "%s: gd_read_npz %d (%s), stream %d (%s)", path, r1, err1, r2, err2);
        if (r1 == 0 && r2 == 0)
            CHECK(n == dims[0] && h == dims[1] && w == dims[2] && c == dims[3] &&
                      !memcmp(ref, got, (size_t)n * h * w * c),
                  "%s: streamed data differ", path);
        if (r2 != 0) CHECK(one_line(err2) && strstr(err2, path), "%s: message '%s'", path, err2);
        loaded += r2 == 0;
        seen++;
        free(ref);
        free(got);
    }
    closedir(d);
    CHECK(seen >= 50 && loaded >= 5, "%d files, %d loaded", seen, loaded);
}

/* Truncated copies of both fixtures at every length, and a flipped pixel (a CRC mismatch found by
 * the read that delivers the last image). */
static void test_truncated_and_crc(void) {
    char dir[256], path[300];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/t.npz", dir);
    const char *files[] = {FIX_STORED, FIX_DEFLATED};
    for (int f = 0; f < 2; f++) {
        size_t len = 0;
        uint8_t *orig = cli_read_file(files[f], &len);
        CHECK(orig != NULL && len > 100, "read %s", files[f]);
        if (!orig) continue;
        int accepted = 0, bad_msg = 0;
        for (size_t cut = 0; cut < len; cut += (cut < 64 || len - cut < 128) ? 1 : 7) {
            cli_write_file(path, orig, cut);
            char err[512] = "";
            uint8_t *buf = NULL;
            int dims[4], batch = 2;
            if (stream_all(path, &batch, 1, &buf, dims, err, sizeof err) == 0) accepted++;
            else bad_msg += !(one_line(err) && strstr(err, path));
            free(buf);
            double *data = NULL;
            int nd;
            int64_t shape[4];
            err[0] = '\0';
            if (gd_npz_read_f64(path, "sigma", &data, &nd, shape, err, sizeof err) != -1) accepted++;
            else bad_msg += !(one_line(err) && strstr(err, path));
            free(data);
            if (gd_npz_has(path, "mu", err, sizeof err) != -1) accepted++;
        }
        CHECK(accepted == 0 && bad_msg == 0, "%s: %d truncations accepted, %d bad messages", files[f], accepted,
              bad_msg);
        free(orig);
    }
    /* one pixel of the first image flipped: the first batches still arrive, the last one fails */
    size_t len = 0;
    uint8_t *orig = cli_read_file(FIX_STORED, &len);
    size_t off = orig ? npy_data_offset(orig, len, "|u1") : 0;
    CHECK(off > 0, "arr_0 data not found");
    if (off > 0) {
        orig[off] ^= 0x40;
        cli_write_file(path, orig, len);
        char err[512] = "";
        int n, h, w, c;
        gd_npz_stream *s = gd_npz_stream_open(path, &n, &h, &w, &c, err, sizeof err);
        CHECK(s != NULL, "%s", err);
        uint8_t buf[2 * 6 * 7 * 3];
        if (s) {
            CHECK(gd_npz_stream_read(s, buf, 1, err, sizeof err) == 0 && buf[0] == (pix(0) ^ 0x40), "first: %s", err);
            CHECK(gd_npz_stream_read(s, buf, 2, err, sizeof err) == 0, "second: %s", err);
            CHECK(gd_npz_stream_read(s, buf, 2, err, sizeof err) == -1 && one_line(err) && strstr(err, "CRC") &&
                      strstr(err, path),
                  "last: '%s'", err);
            CHECK(gd_npz_stream_read(s, buf, 0, err, sizeof err) == -1 && strstr(err, "earlier read failed"),
                  "after the failure: '%s'", err);
            gd_npz_stream_close(s);
        }
        /* the float arrays are intact; then a bit of mu flipped (numpy's first '<f8' member) is a
         * CRC failure of mu alone */
        double *data = NULL;
        int nd;
        int64_t shape[4];
        CHECK(gd_npz_read_f64(path, "mu", &data, &nd, shape, err, sizeof err) == 0, "%s", err);
        free(data);
        orig[off] ^= 0x40;
        size_t moff = npy_data_offset(orig, len, "<f8");
        CHECK(moff > 0 && moff + 32 <= len, "<f8 data not found");
        orig[moff + 3] ^= 1;
        cli_write_file(path, orig, len);
        data = (double *)err;
        err[0] = '\0';
        CHECK(gd_npz_read_f64(path, "mu", &data, &nd, shape, err, sizeof err) == -1 && data == NULL &&
                  strstr(err, "mu.npy") && strstr(err, "CRC") && one_line(err),
              "flipped mu: '%s'", err);
        CHECK(gd_npz_read_f64(path, "sigma", &data, &nd, shape, err, sizeof err) == 0, "sigma: %s", err);
        free(data);
    }
    free(orig);
    cli_rmtree(dir);
}

/* A deflated arr_0 much larger than the stream's 64 KiB input buffer (incompressible pixels, and
 * compressible ones: many output batches per input buffer), in odd batches; then a corrupt byte
 * near the end of the deflate data: the early batches arrive, a later read fails in one line. */
static void test_deflated_large(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/d.npz", dir);
    const int n = 40, h = 48, w = 48, c = 3;
    const size_t img = (size_t)h * w * c, total = img * n;
    uint8_t *px = malloc(total), *got = malloc(total);
    for (int pass = 0; pass < 2; pass++) {
        uint32_t x = 12345;
        for (size_t i = 0; i < total; i++) {
            x = x * 1664525u + 1013904223u;
            px[i] = pass == 0 ? (uint8_t)(x >> 24) : (uint8_t)(i / 97 % 5);
        }
        size_t clen = 0, coff = write_deflated_npz(path, px, n, h, w, c, 6, &clen);
        CHECK(coff > 0 && (pass == 1 || clen > 4 * 65536), "pass %d: deflate (%zu bytes)", pass, clen);
        const int batch[3] = {7, 1, 13};
        uint8_t *all = NULL;
        int dims[4];
        CHECK(stream_all(path, batch, 3, &all, dims, err, sizeof err) == 0 && all && !memcmp(all, px, total),
              "pass %d: stream: %s", pass, err);
        free(all);
        if (pass == 1 || !coff) continue;
        /* corrupt the deflate data 100 bytes before its end */
        size_t len = 0;
        uint8_t *f = cli_read_file(path, &len);
        f[coff + clen - 100] ^= 0x5A;
        cli_write_file(path, f, len);
        free(f);
        int sn, sh, sw, sc, at = 0, failed_at = -1;
        gd_npz_stream *s = gd_npz_stream_open(path, &sn, &sh, &sw, &sc, err, sizeof err);
        CHECK(s != NULL, "%s", err);
        for (int b = 0; s && at < n; b++) {
            int k = batch[b % 3] < n - at ? batch[b % 3] : n - at;
            err[0] = '\0';
            if (gd_npz_stream_read(s, got + (size_t)at * img, k, err, sizeof err) != 0) {
                failed_at = at;
                CHECK(one_line(err) && strstr(err, path), "message '%s'", err);
                break;
            }
            at += k;
        }
        CHECK(failed_at > 0 && !memcmp(got, px, (size_t)failed_at * img), "corrupt tail: failed at image %d",
              failed_at);
        gd_npz_stream_close(s);
    }
    free(px);
    free(got);
    cli_rmtree(dir);
}

static void test_null_arguments(void) {
    char err[512];
    int n, h, w, c, nd;
    double *data;
    int64_t shape[4];
    CHECK(!gd_npz_stream_open(NULL, &n, &h, &w, &c, err, sizeof err) && one_line(err), "NULL path");
    CHECK(!gd_npz_stream_open(FIX_STORED, NULL, &h, &w, &c, err, sizeof err) && one_line(err), "NULL n");
    CHECK(gd_npz_stream_read(NULL, NULL, 1, err, sizeof err) == -1 && one_line(err), "NULL stream");
    gd_npz_stream_close(NULL);
    gd_npz_stream *s = gd_npz_stream_open(FIX_STORED, &n, &h, &w, &c, NULL, 0);
    CHECK(s != NULL, "open without err");
    CHECK(s && gd_npz_stream_read(s, NULL, 1, err, sizeof err) == -1 && strstr(err, "NULL"), "NULL out");
    gd_npz_stream_close(s);
    CHECK(gd_npz_read_f64(FIX_STORED, NULL, &data, &nd, shape, err, sizeof err) == -1 && one_line(err), "NULL name");
    CHECK(gd_npz_read_f64(FIX_STORED, "", &data, &nd, shape, err, sizeof err) == -1 && one_line(err), "empty name");
    CHECK(gd_npz_read_f64(NULL, "mu", &data, &nd, shape, err, sizeof err) == -1 && one_line(err), "NULL path");
    CHECK(gd_npz_read_f64(FIX_STORED, "mu", NULL, &nd, shape, err, sizeof err) == -1 && one_line(err), "NULL data");
    CHECK(gd_npz_has(FIX_STORED, NULL, err, sizeof err) == -1 && one_line(err), "has NULL name");
    gd_npz_writer_abort(NULL);
    CHECK(gd_npz_writer_commit(NULL, err, sizeof err) == -1 && one_line(err), "commit NULL");
    CHECK(gd_npz_writer_images(NULL, NULL, 0, err, sizeof err) == -1 && one_line(err), "images NULL");
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Writes n images (formula pix) of h x w x c in the given batches plus mu/sigma-like arrays with
 * awkward values; reads everything back bit-exact. */
static void roundtrip(const char *dir, int n, int h, int w, int c, const int *batches, int nb, int zip64) {
    char path[300], err[512] = "";
    snprintf(path, sizeof path, "%s/w.npz", dir);
    const size_t img = (size_t)h * w * c, total = img * (size_t)n;
    uint8_t *src = malloc(total);
    for (size_t i = 0; i < total; i++) src[i] = pix(i * 3 + 1);
    double mu[5] = {-0.0, 1.0 / 3, NAN, INFINITY, 4.9e-324}, sigma[6];
    for (int i = 0; i < 6; i++) sigma[i] = ldexp(1.0 + i / 7.0, i * 100 - 300);
    const int64_t mu_shape[1] = {5}, sigma_shape[3] = {1, 2, 3}, empty_shape[2] = {0, 4};
    unlink(path); /* the previous round trip's */
    gd_npz_writer *wr = gd_npz_writer_open_opt(path, n, h, w, c, zip64, err, sizeof err);
    CHECK(wr != NULL && err[0] == '\0', "open: %s", err);
    if (!wr) {
        free(src);
        return;
    }
    int at = 0;
    for (int b = 0; b < nb; b++) {
        CHECK(gd_npz_writer_images(wr, src + (size_t)at * img, batches[b], err, sizeof err) == 0, "batch %d: %s", b,
              err);
        at += batches[b];
    }
    CHECK(!cli_file_exists(path), "the file appeared before commit");
    CHECK(gd_npz_writer_f64(wr, "mu", mu, 1, mu_shape, err, sizeof err) == 0, "mu: %s", err);
    CHECK(gd_npz_writer_f64(wr, "sigma", sigma, 3, sigma_shape, err, sizeof err) == 0, "sigma: %s", err);
    CHECK(gd_npz_writer_f64(wr, "empty", NULL, 2, empty_shape, err, sizeof err) == 0, "empty: %s", err);
    CHECK(gd_npz_writer_commit(wr, err, sizeof err) == 0 && err[0] == '\0', "commit: %s", err);
    CHECK(cli_count_entries(dir) == 1, "temporary file left behind");

    uint8_t *img0 = NULL;
    int rn, rh, rw, rc;
    int64_t *lab = NULL;
    CHECK(gd_read_npz(path, &img0, &rn, &rh, &rw, &rc, &lab, err, sizeof err) == 0, "gd_read_npz: %s", err);
    CHECK(img0 && rn == n && rh == h && rw == w && rc == c && !memcmp(img0, src, total) && !lab,
          "gd_read_npz: images differ");
    free(img0);
    uint8_t *got = NULL;
    int dims[4];
    CHECK(stream_all(path, batches, nb, &got, dims, err, sizeof err) == 0 && !memcmp(got, src, total),
          "stream: %s", err);
    free(got);
    double *data = NULL;
    int nd;
    int64_t shape[4];
    CHECK(gd_npz_read_f64(path, "mu", &data, &nd, shape, err, sizeof err) == 0 && nd == 1 && shape[0] == 5 &&
              bits_equal(data, mu, 5),
          "mu: %s", err);
    free(data);
    CHECK(gd_npz_read_f64(path, "sigma", &data, &nd, shape, err, sizeof err) == 0 && nd == 3 && shape[0] == 1 &&
              shape[1] == 2 && shape[2] == 3 && shape[3] == 0 && bits_equal(data, sigma, 6),
          "sigma: %s", err);
    free(data);
    CHECK(gd_npz_read_f64(path, "empty.npy", &data, &nd, shape, err, sizeof err) == 0 && nd == 2 && shape[0] == 0 &&
              shape[1] == 4 && data != NULL,
          "empty: %s", err);
    free(data);
    /* zip64 records exactly when forced (these files are small) */
    size_t len = 0;
    uint8_t *raw = cli_read_file(path, &len);
    CHECK(raw && len > 22 && le16(raw + 4) == (zip64 ? 45u : 20u), "local header version");
    CHECK(raw && len > 42 && (le32(raw + len - 22 - 20) == 0x07064b50u) == !!zip64, "zip64 end locator");
    free(raw);
    free(src);
}

static void test_writer_roundtrip(void) {
    char dir[256];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    const int b1[3] = {3, 0, 4}, b2[1] = {1}, b3[4] = {2, 2, 2, 1};
    roundtrip(dir, 7, 5, 4, 3, b1, 3, 0);
    roundtrip(dir, 7, 5, 4, 3, b1, 3, 1);
    roundtrip(dir, 1, 1, 1, 1, b2, 1, 0);
    roundtrip(dir, 7, 9, 2, 1, b3, 4, 0); /* c = 1 stays 4-D [n,h,w,1] */
    cli_rmtree(dir);
}

/* Images only: byte-identical to gd_write_npz's file (same members, same zip records). */
static void test_writer_matches_write_npz(void) {
    char dir[256], a[300], b[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(a, sizeof a, "%s/a.npz", dir);
    snprintf(b, sizeof b, "%s/b.npz", dir);
    uint8_t src[4 * 3 * 5 * 3];
    for (size_t i = 0; i < sizeof src; i++) src[i] = pix(i);
    CHECK(gd_write_npz(a, src, 4, 3, 5, 3, NULL, err, sizeof err) == 0, "%s", err);
    gd_npz_writer *wr = gd_npz_writer_open(b, 4, 3, 5, 3, err, sizeof err);
    CHECK(wr && gd_npz_writer_images(wr, src, 1, err, sizeof err) == 0 &&
              gd_npz_writer_images(wr, src + 45, 3, err, sizeof err) == 0,
          "%s", err);
    CHECK(wr && gd_npz_writer_commit(wr, err, sizeof err) == 0, "%s", err);
    size_t la = 0, lb = 0;
    uint8_t *fa = cli_read_file(a, &la), *fb = cli_read_file(b, &lb);
    CHECK(fa && fb && la == lb && !memcmp(fa, fb, la), "files differ (%zu vs %zu bytes)", la, lb);
    free(fa);
    free(fb);
    cli_rmtree(dir);
}

/* Refusals: nothing is left at the path (nor a temporary) after a refused commit or an abort;
 * argument errors leave the writer usable. */
static void test_writer_refusals(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/r.npz", dir);
    uint8_t src[3 * 2 * 2 * 3] = {0};
    const double v[4] = {1, 2, 3, 4};
    const int64_t s4[1] = {4}, s22[2] = {2, 2}, sneg[1] = {-1};

    gd_npz_writer *wr = gd_npz_writer_open(path, 3, 2, 2, 3, err, sizeof err);
    CHECK(wr != NULL, "%s", err);
    CHECK(gd_npz_writer_images(wr, src, 2, err, sizeof err) == 0, "%s", err);
    err[0] = '\0';
    CHECK(gd_npz_writer_commit(wr, err, sizeof err) == -1 && one_line(err) && strstr(err, "only 2 of 3") &&
              strstr(err, path),
          "commit with an image missing: '%s'", err);
    CHECK(cli_count_entries(dir) == 0, "a refused commit left a file");

    wr = gd_npz_writer_open(path, 3, 2, 2, 3, err, sizeof err);
    CHECK(wr && gd_npz_writer_images(wr, src, 3, err, sizeof err) == 0, "%s", err);
    CHECK(wr && gd_npz_writer_f64(wr, "mu", v, 1, s4, err, sizeof err) == 0, "%s", err);
    CHECK(cli_count_entries(dir) == 1, "the temporary file is there while writing");
    gd_npz_writer_abort(wr);
    CHECK(cli_count_entries(dir) == 0, "abort left a file");

    /* argument errors, then a good file from the same writer */
    CHECK(cli_write_file(path, "old", 3) == 0, "old file");
    wr = gd_npz_writer_open(path, 3, 2, 2, 3, err, sizeof err);
    CHECK(wr != NULL, "%s", err);
    if (wr) {
        err[0] = '\0';
        CHECK(gd_npz_writer_f64(wr, "mu", v, 1, s4, err, sizeof err) == -1 && strstr(err, "append every image first"),
              "array before the images: '%s'", err);
        CHECK(gd_npz_writer_images(wr, src, 4, err, sizeof err) == -1 && one_line(err), "4 images of 3");
        CHECK(gd_npz_writer_images(wr, src, -1, err, sizeof err) == -1 && one_line(err), "-1 images");
        CHECK(gd_npz_writer_images(wr, NULL, 1, err, sizeof err) == -1 && one_line(err), "NULL images");
        CHECK(gd_npz_writer_images(wr, src, 3, err, sizeof err) == 0, "%s", err);
        CHECK(gd_npz_writer_images(wr, src, 1, err, sizeof err) == -1 && one_line(err), "one too many");
        const char *bad_names[] = {"", "thirteen_char", "a/b", "arr_0", "tab\there", "caf\xc3\xa9"};
        for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
            err[0] = '\0';
            CHECK(gd_npz_writer_f64(wr, bad_names[i], v, 1, s4, err, sizeof err) == -1 && one_line(err) &&
                      strstr(err, path),
                  "name '%s': '%s'", bad_names[i], err);
        }
        CHECK(gd_npz_writer_f64(wr, NULL, v, 1, s4, err, sizeof err) == -1 && one_line(err), "NULL name");
        CHECK(gd_npz_writer_f64(wr, "mu", v, 0, s4, err, sizeof err) == -1 && one_line(err), "ndim 0");
        CHECK(gd_npz_writer_f64(wr, "mu", v, 5, s4, err, sizeof err) == -1 && one_line(err), "ndim 5");
        CHECK(gd_npz_writer_f64(wr, "mu", v, 1, sneg, err, sizeof err) == -1 && one_line(err), "negative dim");
        CHECK(gd_npz_writer_f64(wr, "mu", NULL, 1, s4, err, sizeof err) == -1 && one_line(err), "NULL data");
        CHECK(gd_npz_writer_f64(wr, "twelve_chars", v, 2, s22, err, sizeof err) == 0, "12 characters: %s", err);
        CHECK(gd_npz_writer_f64(wr, "mu", v, 1, s4, err, sizeof err) == 0, "%s", err);
        CHECK(gd_npz_writer_f64(wr, "mu", v, 1, s4, err, sizeof err) == -1 && strstr(err, "already"), "duplicate");
        CHECK(gd_npz_writer_commit(wr, err, sizeof err) == 0, "%s", err);
    }
    double *data = NULL;
    int nd;
    int64_t shape[4];
    CHECK(gd_npz_read_f64(path, "twelve_chars", &data, &nd, shape, err, sizeof err) == 0 && nd == 2 &&
              bits_equal(data, v, 4),
          "%s", err);
    free(data);
    CHECK(cli_count_entries(dir) == 1, "one file");

    /* refused opens */
    CHECK(!gd_npz_writer_open(path, 0, 2, 2, 3, err, sizeof err) && one_line(err), "n = 0");
    CHECK(!gd_npz_writer_open(path, 1, 2, -2, 3, err, sizeof err) && one_line(err), "w < 0");
    CHECK(!gd_npz_writer_open("", 1, 2, 2, 3, err, sizeof err) && one_line(err), "empty path");
    CHECK(!gd_npz_writer_open(path, 2147483647, 2147483647, 2147483647, 3, err, sizeof err) &&
              strstr(err, "too large"),
          "too large: %s", err);
    char nodir[400];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir.npz", dir);
    CHECK(!gd_npz_writer_open(nodir, 1, 1, 1, 1, err, sizeof err) && one_line(err) && strstr(err, nodir),
          "missing folder: %s", err);
    CHECK(cli_count_entries(dir) == 1, "refused opens left files");
    cli_rmtree(dir);
}

/* A writer killed before commit leaves "<path>.tmp.<pid>", which gd_atomic_remove_stale removes
 * once that process is gone; path itself never appears. */
static void test_writer_stale_temporary(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/k.npz", dir);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        uint8_t img[12] = {0};
        gd_npz_writer *wr = gd_npz_writer_open(path, 2, 2, 2, 3, err, sizeof err);
        if (wr) gd_npz_writer_images(wr, img, 1, err, sizeof err);
        _exit(wr ? 0 : 1); /* killed, in effect: no commit, no abort */
    }
    int st = -1;
    waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed");
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)p);
    CHECK(cli_file_exists(tmp) && !cli_file_exists(path), "the killed writer's temporary");
    CHECK(gd_atomic_remove_stale(path, 0, NULL, NULL) == 1, "stale temporary not removed");
    CHECK(cli_count_entries(dir) == 0, "left behind");
    cli_rmtree(dir);
}

/* guided-diffusion's real case: 50,000 256x256x3 images, 9.8 GB, so arr_0's sizes and every later
 * offset need zip64. The images are a hole in a sparse file (test hook), so no 9.8 GB are written;
 * the zip64 fields are read back by hand and through the readers. */
static void test_writer_zip64_large(void) {
    char dir[256], path[300], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/big.npz", dir);
    const int n = 50000, hw = 256;
    const uint64_t img = (uint64_t)hw * hw * 3, arr0 = 128 + (uint64_t)n * img; /* 9,830,400,128 */
    gd_npz_writer *wr = gd_npz_writer_open(path, n, hw, hw, 3, err, sizeof err);
    CHECK(wr != NULL, "%s", err);
    if (!wr) {
        cli_rmtree(dir);
        return;
    }
    uint8_t *first = malloc(2 * img);
    for (size_t i = 0; i < 2 * img; i++) first[i] = pix(i);
    CHECK(gd_npz_writer_images(wr, first, 2, err, sizeof err) == 0, "%s", err);
    for (int at = 2; at < n;) {
        int k = n - at < 9999 ? n - at : 9999;
        CHECK(gd_npz_writer_zero_images(wr, k, err, sizeof err) == 0, "%s", err);
        at += k;
    }
    double mu[2048];
    for (int i = 0; i < 2048; i++) mu[i] = i / 3.0;
    double sigma[64];
    for (int i = 0; i < 64; i++) sigma[i] = -i / 7.0;
    const int64_t mu_shape[1] = {2048}, sigma_shape[2] = {8, 8};
    CHECK(gd_npz_writer_f64(wr, "mu", mu, 1, mu_shape, err, sizeof err) == 0, "%s", err);
    CHECK(gd_npz_writer_f64(wr, "sigma", sigma, 2, sigma_shape, err, sizeof err) == 0, "%s", err);
    CHECK(gd_npz_writer_commit(wr, err, sizeof err) == 0, "%s", err);

    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size > arr0 + 16384, "size %lld", (long long)st.st_size);
    FILE *f = fopen(path, "rb");
    uint8_t lh[30 + 9 + 20], tail[22 + 20 + 56];
    CHECK(f && fread(lh, 1, sizeof lh, f) == sizeof lh, "read the local header");
    CHECK(f && fseeko(f, -(off_t)sizeof tail, SEEK_END) == 0 && fread(tail, 1, sizeof tail, f) == sizeof tail,
          "read the end records");
    if (f) fclose(f);
    /* arr_0's local header: version 4.5, 32-bit sizes 0xFFFFFFFF, zip64 extra with both sizes */
    CHECK(le32(lh) == 0x04034b50u && le16(lh + 4) == 45 && le32(lh + 18) == 0xFFFFFFFFu &&
              le32(lh + 22) == 0xFFFFFFFFu && le16(lh + 28) == 20 && !memcmp(lh + 30, "arr_0.npy", 9),
          "arr_0 local header");
    CHECK(le16(lh + 39) == 1 && le16(lh + 41) == 16 && le64(lh + 43) == arr0 && le64(lh + 51) == arr0,
          "zip64 extra: %llu", (unsigned long long)le64(lh + 43));
    /* zip64 end record and locator before the end record, whose offset field is 0xFFFFFFFF */
    const uint8_t *z = tail, *loc = tail + 56, *eocd = tail + 76;
    CHECK(le32(z) == 0x06064b50u && le64(z + 32) == 3 && le64(z + 48) > arr0, "zip64 end record");
    CHECK(le32(loc) == 0x07064b50u && le64(loc + 8) == (uint64_t)st.st_size - sizeof tail, "zip64 locator");
    CHECK(le32(eocd) == 0x06054b50u && le16(eocd + 10) == 3 && le32(eocd + 16) == 0xFFFFFFFFu, "end record");

    /* the readers: members beyond 4 GiB, the first images, the shape */
    int sn, sh, sw, sc;
    gd_npz_stream *s = gd_npz_stream_open(path, &sn, &sh, &sw, &sc, err, sizeof err);
    CHECK(s && sn == n && sh == hw && sw == hw && sc == 3, "stream open: %s", err);
    uint8_t *buf = malloc(3 * img);
    CHECK(s && gd_npz_stream_read(s, buf, 3, err, sizeof err) == 0 && !memcmp(buf, first, 2 * img), "%s", err);
    int zeros = 1;
    for (size_t i = 0; i < img; i++) zeros &= buf[2 * img + i] == 0;
    CHECK(zeros, "image 2 is not zero");
    gd_npz_stream_close(s);
    double *data = NULL;
    int nd;
    int64_t shape[4];
    CHECK(gd_npz_read_f64(path, "mu", &data, &nd, shape, err, sizeof err) == 0 && nd == 1 && shape[0] == 2048 &&
              bits_equal(data, mu, 2048),
          "mu beyond 4 GiB: %s", err);
    free(data);
    CHECK(gd_npz_read_f64(path, "sigma", &data, &nd, shape, err, sizeof err) == 0 && bits_equal(data, sigma, 64),
          "sigma: %s", err);
    free(data);
    CHECK(gd_npz_has(path, "sigma", err, sizeof err) == 1 && gd_npz_has(path, "mu_s", err, sizeof err) == 0,
          "has: %s", err);
    if (getenv("GD_KEEP_BIG_NPZ")) { /* for a manual numpy check: the file stays, its name on stderr */
        char keep[400];
        snprintf(keep, sizeof keep, "%s", getenv("GD_KEEP_BIG_NPZ"));
        CHECK(rename(path, keep) == 0, "keep %s", keep);
        fprintf(stderr, "    kept %s\n", keep);
    }
    free(buf);
    free(first);
    cli_rmtree(dir);
}

GD_TEST_TABLE(gd_tests_npz_stream) = {
    {"npz stream batches match gd_read_npz", test_stream_batches},
    {"npz stream read_f64 values and lookup", test_read_f64_values},
    {"npz stream refused members", test_refusals},
    {"npz stream same verdicts as gd_read_npz", test_same_as_read_npz},
    {"npz stream truncated copies and CRC", test_truncated_and_crc},
    {"npz stream deflated beyond one input buffer", test_deflated_large},
    {"npz stream NULL arguments", test_null_arguments},
    {"npz stream writer round trip", test_writer_roundtrip},
    {"npz stream writer matches gd_write_npz", test_writer_matches_write_npz},
    {"npz stream writer refusals leave nothing", test_writer_refusals},
    {"npz stream writer stale temporary", test_writer_stale_temporary},
    {"npz stream writer zip64 beyond 4 GiB", test_writer_zip64_large},
    {NULL, NULL},
};
