/* Tests for src/io/safetensors*.c. Paths are relative to the project root (the runner's cwd).
 * The corpus under tests/data/ is produced by scripts/make_malformed.py. */
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
#include <unistd.h>

#define VALID_PATH "tests/data/valid_small.safetensors"
#define MALFORMED_DIR "tests/data/malformed"

/* ---- helpers ----------------------------------------------------------------------------- */

/* Reads a whole file into an exactly sized malloc block (so ASan sees over-reads). */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return buf;
}

static int has_newline(const char *s) { return strchr(s, '\n') || strchr(s, '\r'); }

/* If f opened, checks the invariants every tensor must satisfy and reads all its bytes. */
static void check_invariants(const gd_st_file *f, const unsigned char *buf, size_t len) {
    for (int i = 0; i < gd_st_count(f); i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        CHECK(t != NULL, "tensor %d", i);
        if (!t) continue;
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        CHECK(t->ndim >= 0 && t->ndim <= 8, "ndim %d", t->ndim);
        CHECK(numel == t->numel, "numel");
        CHECK(t->nbytes == (size_t)t->numel * gd_st_dtype_size(t->dtype), "nbytes");
        const unsigned char *p = t->data;
        CHECK(p >= buf && p + t->nbytes <= buf + len, "data inside buffer");
        CHECK(gd_st_find(f, t->name) == t, "find '%s'", t->name);
        unsigned sum = 0;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        (void)sum;
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_dtypes(void) {
    CHECK(gd_st_dtype_size(GD_ST_F32) == 4, "F32");
    CHECK(gd_st_dtype_size(GD_ST_F16) == 2, "F16");
    CHECK(gd_st_dtype_size(GD_ST_BF16) == 2, "BF16");
    CHECK(gd_st_dtype_size(GD_ST_F64) == 8, "F64");
    CHECK(gd_st_dtype_size(GD_ST_I64) == 8, "I64");
    CHECK(gd_st_dtype_size(GD_ST_I32) == 4, "I32");
    CHECK(gd_st_dtype_size(GD_ST_U8) == 1, "U8");
    CHECK(strcmp(gd_st_dtype_name(GD_ST_BF16), "BF16") == 0, "name");
    CHECK(gd_st_dtype_size((gd_st_dtype)99) == 0, "bad dtype size");
}

static void test_roundtrip(void) {
    char dir[512], path[600], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);

    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 42.0f};
    uint8_t b[3] = {7, 8, 9};
    int64_t c[1] = {-1234567890123LL};
    double s = 3.14159;
    uint16_t h[4] = {0x3c00, 0x4000, 0xbc00, 0x0000};
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[1] = {1}, sz[2] = {0, 5}, sh[3] = {1, 2, 2};

    gd_st_writer *w = gd_st_writer_new();
    CHECK(w != NULL, "writer");
    if (!w) return;
    CHECK(gd_st_writer_add(w, "layer.0.weight", GD_ST_F32, 2, sa, a) == 0, "add a");
    CHECK(gd_st_writer_add(w, "bytes", GD_ST_U8, 1, sb, b) == 0, "add b");
    CHECK(gd_st_writer_add(w, "big\"int\\", GD_ST_I64, 1, sc, c) == 0, "add c");
    CHECK(gd_st_writer_add(w, "scalar", GD_ST_F64, 0, NULL, &s) == 0, "add scalar");
    CHECK(gd_st_writer_add(w, "empty", GD_ST_F32, 2, sz, NULL) == 0, "add empty");
    CHECK(gd_st_writer_add(w, "half", GD_ST_F16, 3, sh, h) == 0, "add half");
    /* rejected adds */
    CHECK(gd_st_writer_add(w, "bytes", GD_ST_U8, 1, sb, b) != 0, "duplicate name accepted");
    CHECK(gd_st_writer_add(w, "__metadata__", GD_ST_U8, 1, sb, b) != 0, "reserved name");
    int64_t neg[1] = {-3};
    CHECK(gd_st_writer_add(w, "neg", GD_ST_U8, 1, neg, b) != 0, "negative dim accepted");
    CHECK(gd_st_writer_add(w, "nine", GD_ST_U8, 9, sa, b) != 0, "ndim 9 accepted");
    CHECK(gd_st_writer_meta(w, "format", "pt") == 0, "meta");
    CHECK(gd_st_writer_meta(w, "config", "{\"a\": [1, 2]}\n") == 0, "meta 2");
    CHECK(gd_st_writer_meta(w, "format", "gd") == 0, "meta replace");
    /* the writer copies: clobbering the sources must not change the file */
    float a_copy[6];
    memcpy(a_copy, a, sizeof a);
    memset(a, 0, sizeof a);
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == 0, "save: %s", err);
    gd_st_writer_free(w);

    /* only the target file remains: no temp file */
    CHECK(cli_count_entries(dir) == 1, "entries in %s: %d", dir, cli_count_entries(dir));

    /* header length is a multiple of 8, so the data section is 8-byte aligned */
    size_t len = 0;
    unsigned char *raw = read_file(path, &len);
    CHECK(raw != NULL && len >= 8, "read back");
    if (raw && len >= 8) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
        CHECK(hl % 8 == 0, "header length %llu", (unsigned long long)hl);
        CHECK(hl + 8 + 24 + 3 + 8 + 8 + 0 + 8 == len, "file size %zu", len);
        CHECK(raw[8] == '{', "header starts with {");
    }

    gd_st_file *f = gd_st_open(path, err, sizeof err);
    CHECK(f != NULL, "open: %s", err);
    if (f) {
        CHECK(gd_st_count(f) == 6, "count %d", gd_st_count(f));
        const char *order[6] = {"layer.0.weight", "bytes", "big\"int\\", "scalar", "empty",
                                "half"};
        for (int i = 0; i < 6 && i < gd_st_count(f); i++)
            CHECK(strcmp(gd_st_get(f, i)->name, order[i]) == 0, "order %d: %s", i,
                  gd_st_get(f, i)->name);
        /* tensors laid out contiguously in insertion order */
        for (int i = 1; i < gd_st_count(f); i++) {
            const gd_st_tensor *p = gd_st_get(f, i - 1), *q = gd_st_get(f, i);
            CHECK((const char *)q->data == (const char *)p->data + p->nbytes, "layout %d", i);
        }
        if (raw) {
            uint64_t hl = 0;
            for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
            const gd_st_tensor *t0 = gd_st_get(f, 0);
            /* data pointer is into the mapping at the start of the data section */
            CHECK(t0 && memcmp(t0->data, raw + 8 + hl, 24) == 0, "first tensor at data start");
        }

        const gd_st_tensor *t = gd_st_find(f, "layer.0.weight");
        CHECK(t && t->dtype == GD_ST_F32 && t->ndim == 2 && t->shape[0] == 2 &&
                  t->shape[1] == 3 && t->numel == 6 && t->nbytes == 24,
              "a meta");
        if (t) {
            float got[6];
            memcpy(got, t->data, sizeof got);
            CHECK(memcmp(got, a_copy, sizeof got) == 0, "a bytes");
        }
        t = gd_st_find(f, "bytes");
        CHECK(t && t->dtype == GD_ST_U8 && t->ndim == 1 && t->shape[0] == 3 && t->nbytes == 3 &&
                  memcmp(t->data, b, 3) == 0,
              "b");
        t = gd_st_find(f, "big\"int\\");
        CHECK(t && t->dtype == GD_ST_I64 && t->nbytes == 8, "c");
        if (t) {
            int64_t v;
            memcpy(&v, t->data, 8);
            CHECK(v == c[0], "c value");
        }
        t = gd_st_find(f, "scalar");
        CHECK(t && t->dtype == GD_ST_F64 && t->ndim == 0 && t->numel == 1 && t->nbytes == 8,
              "scalar");
        if (t) {
            double v;
            memcpy(&v, t->data, 8);
            CHECK(v == s, "scalar value");
        }
        t = gd_st_find(f, "empty");
        CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 5 && t->numel == 0 &&
                  t->nbytes == 0,
              "empty");
        t = gd_st_find(f, "half");
        CHECK(t && t->dtype == GD_ST_F16 && t->ndim == 3 && t->shape[2] == 2 &&
                  t->nbytes == 8 && memcmp(t->data, h, 8) == 0,
              "half");
        CHECK(gd_st_find(f, "missing") == NULL, "find missing");
        CHECK(gd_st_get(f, 6) == NULL && gd_st_get(f, -1) == NULL, "get out of range");
        const char *m = gd_st_metadata(f, "format");
        CHECK(m && strcmp(m, "gd") == 0, "meta format: %s", m ? m : "(null)");
        m = gd_st_metadata(f, "config");
        CHECK(m && strcmp(m, "{\"a\": [1, 2]}\n") == 0, "meta config");
        CHECK(gd_st_metadata(f, "nope") == NULL, "meta missing");
        gd_st_close(f);
    }
    free(raw);
    cli_rmtree(dir);
}

static void test_no_metadata_written_when_unset(void) {
    char dir[512], path[600], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/nometa.safetensors", dir);
    gd_st_writer *w = gd_st_writer_new();
    int32_t v[2] = {1, -1};
    int64_t shp[1] = {2};
    CHECK(gd_st_writer_add(w, "v", GD_ST_I32, 1, shp, v) == 0, "add");
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == 0, "save: %s", err);
    gd_st_writer_free(w);
    size_t len = 0;
    unsigned char *raw = read_file(path, &len);
    CHECK(raw != NULL, "read");
    if (raw) {
        char *txt = malloc(len + 1);
        memcpy(txt, raw, len);
        txt[len] = '\0';
        /* the length field has NUL bytes; search after it */
        CHECK(len > 8 && strstr(txt + 8, "__metadata__") == NULL, "metadata written");
        free(txt);
    }
    gd_st_file *f = gd_st_open(path, err, sizeof err);
    CHECK(f != NULL, "open: %s", err);
    CHECK(gd_st_metadata(f, "format") == NULL, "meta present");
    gd_st_close(f);
    free(raw);

    /* an empty writer produces a valid, empty file */
    w = gd_st_writer_new();
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == 0, "save empty: %s", err);
    gd_st_writer_free(w);
    f = gd_st_open(path, err, sizeof err);
    CHECK(f != NULL && gd_st_count(f) == 0, "open empty: %s", err);
    gd_st_close(f);
    cli_rmtree(dir);
}

static void test_valid_file(void) {
    char err[512] = "";
    gd_st_file *f = gd_st_open(VALID_PATH, err, sizeof err);
    CHECK(f != NULL, "open %s: %s", VALID_PATH, err);
    if (!f) return;
    CHECK(gd_st_count(f) == 2, "count %d", gd_st_count(f));
    const gd_st_tensor *a = gd_st_find(f, "a");
    CHECK(a && a->dtype == GD_ST_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3 &&
              a->numel == 6 && a->nbytes == 24,
          "a");
    if (a) {
        float v[6];
        memcpy(v, a->data, sizeof v);
        for (int i = 0; i < 6; i++) CHECK(v[i] == (float)(i + 1), "a[%d] = %g", i, v[i]);
    }
    const gd_st_tensor *b = gd_st_find(f, "b");
    CHECK(b && b->dtype == GD_ST_U8 && b->ndim == 1 && b->shape[0] == 5 && b->nbytes == 5, "b");
    if (b) {
        const unsigned char *p = b->data;
        for (int i = 0; i < 5; i++) CHECK(p[i] == i + 1, "b[%d]", i);
    }
    const char *m = gd_st_metadata(f, "format");
    CHECK(m && strcmp(m, "pt") == 0, "format");
    m = gd_st_metadata(f, "note");
    CHECK(m && strcmp(m, "gd test") == 0, "note");
    gd_st_close(f);

    /* the same bytes through gd_st_open_mem */
    size_t len = 0;
    unsigned char *buf = read_file(VALID_PATH, &len);
    CHECK(buf != NULL, "read");
    if (!buf) return;
    f = gd_st_open_mem(buf, len, err, sizeof err);
    CHECK(f != NULL, "open_mem: %s", err);
    if (f) {
        CHECK(gd_st_count(f) == 2, "count");
        check_invariants(f, buf, len);
        const gd_st_tensor *t = gd_st_find(f, "b");
        CHECK(t && (const unsigned char *)t->data == buf + len - 5, "no copy");
        gd_st_close(f);
    }
    free(buf);
}

static void test_malformed_corpus(void) {
    DIR *d = opendir(MALFORMED_DIR);
    CHECK(d != NULL, "opendir %s", MALFORMED_DIR);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    char path[1024], err[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", MALFORMED_DIR, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        n++;
        err[0] = '\0';
        gd_st_file *f = gd_st_open(path, err, sizeof err);
        CHECK(f == NULL, "%s opened", path);
        gd_st_close(f);
        CHECK(err[0] != '\0', "%s: empty error", path);
        CHECK(!has_newline(err), "%s: multi-line error: %s", path, err);
        CHECK(strstr(err, path) != NULL, "%s: error does not name the file: %s", path, err);
        /* the in-memory path must reject it too */
        size_t len = 0;
        unsigned char *buf = read_file(path, &len);
        CHECK(buf != NULL, "read %s", path);
        if (buf) {
            err[0] = '\0';
            f = gd_st_open_mem(buf, len, err, sizeof err);
            CHECK(f == NULL, "%s opened from memory", path);
            gd_st_close(f);
            CHECK(err[0] != '\0' && !has_newline(err), "%s: mem error '%s'", path, err);
            free(buf);
        }
    }
    closedir(d);
    CHECK(n >= 10, "only %d malformed files in %s", n, MALFORMED_DIR);
}

static void test_error_messages(void) {
    char err[512];
    const char *p = MALFORMED_DIR "/offsets_past_end.safetensors";
    gd_st_file *f = gd_st_open(p, err, sizeof err);
    CHECK(f == NULL, "opened");
    CHECK(strstr(err, "tensor 'x'") && strstr(err, "data_offsets [0,100] exceed data section of "
                                                    "16 bytes"),
          "message: %s", err);
    p = MALFORMED_DIR "/unknown_dtype.safetensors";
    f = gd_st_open(p, err, sizeof err);
    CHECK(f == NULL && strstr(err, "'x'") && strstr(err, "F8_E4M3"), "message: %s", err);
    p = MALFORMED_DIR "/duplicate_tensor.safetensors";
    f = gd_st_open(p, err, sizeof err);
    CHECK(f == NULL && strstr(err, "duplicate"), "message: %s", err);
    p = MALFORMED_DIR "/huge_header_len.safetensors";
    f = gd_st_open(p, err, sizeof err);
    CHECK(f == NULL && strstr(err, "18446744073709551615"), "message: %s", err);
    /* a tiny err buffer is truncated, not overrun; NULL err is allowed */
    char small[8];
    memset(small, 'Z', sizeof small);
    f = gd_st_open(p, small, 4);
    CHECK(f == NULL && small[3] == '\0' && small[4] == 'Z', "small buffer");
    CHECK(gd_st_open(p, NULL, 0) == NULL, "NULL err");
    /* names with control characters stay on one line in the message */
    static const char hdr[] = "{\"a\\nb\":{\"dtype\":\"Q9\",\"shape\":[],\"data_offsets\":[0,0]}}";
    size_t hl = sizeof hdr - 1;
    unsigned char *buf = malloc(8 + hl);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    f = gd_st_open_mem(buf, 8 + hl, err, sizeof err);
    CHECK(f == NULL && !has_newline(err) && strstr(err, "Q9"), "message: %s", err);
    free(buf);
}

/* A header length above the 100 MB limit is refused even when the file is that large
 * (sparse file, so this costs no disk space). */
static void test_header_too_large(void) {
    char dir[512], path[600], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    snprintf(path, sizeof path, "%s/big.safetensors", dir);
    const uint64_t hl = 100u * 1024u * 1024u;
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL, "create");
    if (fp) {
        unsigned char lenb[8];
        for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hl >> (8 * i));
        fwrite(lenb, 1, 8, fp);
        fclose(fp);
        CHECK(truncate(path, (off_t)(8 + hl + 64)) == 0, "truncate");
        gd_st_file *f = gd_st_open(path, err, sizeof err);
        CHECK(f == NULL && strstr(err, "too large"), "message: %s", err);
        gd_st_close(f);
    }
    cli_rmtree(dir);
}

static void test_nonexistent(void) {
    char err[512] = "";
    gd_st_file *f = gd_st_open("tests/data/definitely_not_here.safetensors", err, sizeof err);
    CHECK(f == NULL, "opened");
    CHECK(err[0] != '\0' && strstr(err, "definitely_not_here"), "error: %s", err);
    f = gd_st_open("tests/data", err, sizeof err);
    CHECK(f == NULL && err[0] != '\0', "directory opened");
}

static void test_write_failures(void) {
    char dir[512], path[700], err[512];
    CHECK(cli_mkdtemp(dir, sizeof dir) == 0, "mkdtemp");
    int64_t shp[1] = {4};
    float v[4] = {1, 2, 3, 4};
    gd_st_writer *w = gd_st_writer_new();
    CHECK(gd_st_writer_add(w, "v", GD_ST_F32, 1, shp, v) == 0, "add");

    /* nonexistent directory: fails, names the path, leaves nothing behind */
    snprintf(path, sizeof path, "%s/no_such_dir/out.safetensors", dir);
    err[0] = '\0';
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == -1, "save into missing dir");
    CHECK(err[0] != '\0' && !has_newline(err) && strstr(err, "no_such_dir"), "error: %s", err);
    CHECK(cli_count_entries(dir) == 0, "left %d entries", cli_count_entries(dir));

    /* failure after the temp file exists (rename onto a non-empty directory): temp removed */
    snprintf(path, sizeof path, "%s/target", dir);
    CHECK(mkdir(path, 0755) == 0, "mkdir");
    char inner[800];
    snprintf(inner, sizeof inner, "%s/keep", path);
    FILE *fp = fopen(inner, "w");
    CHECK(fp != NULL, "create %s", inner);
    if (fp) fclose(fp);
    err[0] = '\0';
    CHECK(gd_st_writer_save(w, path, err, sizeof err) == -1, "rename onto directory");
    CHECK(err[0] != '\0' && !has_newline(err), "error: %s", err);
    CHECK(cli_count_entries(dir) == 1, "temp file left: %d entries", cli_count_entries(dir));
    gd_st_writer_free(w);
    cli_rmtree(dir);
}

/* Every truncation of a valid file is rejected; byte flips never crash and, when they still
 * open, give consistent tensors. Buffers are exact-size heap blocks so ASan catches over-reads. */
static void test_mutations(void) {
    size_t len = 0;
    unsigned char *orig = read_file(VALID_PATH, &len);
    CHECK(orig != NULL, "read");
    if (!orig) return;
    char err[256];
    for (size_t n = 0; n < len; n++) {
        unsigned char *b = malloc(n ? n : 1);
        memcpy(b, orig, n);
        gd_st_file *f = gd_st_open_mem(b, n, err, sizeof err);
        CHECK(f == NULL, "truncated to %zu opened", n);
        gd_st_close(f);
        free(b);
    }
    static const unsigned char vals[] = {0x00, 0xff, '"', '{', '}', '[', ']', ',', '-', '9', '.',
                                         'e', '\\', 0x80, 0xc3, ' '};
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            unsigned char *b = malloc(len);
            memcpy(b, orig, len);
            b[i] = vals[k];
            gd_st_file *f = gd_st_open_mem(b, len, err, sizeof err);
            if (f) {
                check_invariants(f, b, len);
                gd_st_close(f);
            } else {
                CHECK(err[0] != '\0' && !has_newline(err), "flip %zu=%02x: '%s'", i, vals[k],
                      err);
            }
            free(b);
        }
    }
    free(orig);
}

GD_TEST_TABLE(gd_tests_safetensors) = {
    {"safetensors_dtypes", test_dtypes},
    {"safetensors_roundtrip", test_roundtrip},
    {"safetensors_no_metadata_when_unset", test_no_metadata_written_when_unset},
    {"safetensors_valid_file", test_valid_file},
    {"safetensors_malformed_corpus", test_malformed_corpus},
    {"safetensors_error_messages", test_error_messages},
    {"safetensors_header_too_large", test_header_too_large},
    {"safetensors_nonexistent", test_nonexistent},
    {"safetensors_write_failures", test_write_failures},
    {"safetensors_mutations", test_mutations},
    {NULL, NULL},
};
