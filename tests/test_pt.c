/* Tests for the PyTorch checkpoint reader (include/gd_pt.h). Fixtures: tests/data/pt/ and the
 * malformed corpus tests/data/malformed_pt/, both made by tests/reference/gen_pt_fixtures.py
 * (torch.save with Debian's torch; torch.load's tensors stored as <name>.expected.safetensors). */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_pt.h"
#include "gd_safetensors.h"
#include "io/zip.h"
#include "pt_zip.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PT_DIR "tests/data/pt/"
#define BAD_DIR "tests/data/malformed_pt/"

/* A whole file in an exactly sized block (so ASan sees over-reads). */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return b;
}

static int one_line(const char *e) { return e[0] && !strchr(e, '\n') && !strchr(e, '\r'); }

/* f's tensors equal the expected file's: names, order, dtype, shape, bytes. */
static void same_tensors(const gd_st_file *f, const gd_st_file *e, const char *what) {
    CHECK(gd_st_count(f) == gd_st_count(e), "%s: %d tensors, expected %d", what, gd_st_count(f), gd_st_count(e));
    for (int i = 0; i < gd_st_count(f) && i < gd_st_count(e); i++) {
        const gd_st_tensor *a = gd_st_get(f, i), *b = gd_st_get(e, i);
        CHECK(!strcmp(a->name, b->name), "%s: tensor %d is '%s', expected '%s'", what, i, a->name, b->name);
        CHECK(a->dtype == b->dtype, "%s: %s dtype %s, expected %s", what, a->name, gd_st_dtype_name(a->dtype),
              gd_st_dtype_name(b->dtype));
        CHECK(a->ndim == b->ndim && a->numel == b->numel && a->nbytes == b->nbytes, "%s: %s shape", what, a->name);
        for (int d = 0; d < a->ndim && d < b->ndim; d++) CHECK(a->shape[d] == b->shape[d], "%s: %s dim %d", what, a->name, d);
        CHECK(a->nbytes != b->nbytes || !memcmp(a->data, b->data, a->nbytes), "%s: %s bytes differ from torch's", what,
              a->name);
        CHECK(gd_st_find(f, a->name) == a, "%s: find %s", what, a->name);
    }
    CHECK(gd_st_metadata(f, "format") == NULL && gd_st_metadata(f, "") == NULL, "%s: metadata", what);
}

/* Opens tests/data/pt/<name>.pt by path and from memory; both must equal the expected file. */
static void check_fixture(const char *name, int expect_count) {
    char pt[256], ex[256], err[512];
    snprintf(pt, sizeof pt, PT_DIR "%s.pt", name);
    snprintf(ex, sizeof ex, PT_DIR "%s.expected.safetensors", name);
    gd_st_file *e = gd_st_open(ex, err, sizeof err);
    CHECK(e != NULL, "%s", err);
    gd_st_file *f = gd_pt_open(pt, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (f && e) same_tensors(f, e, pt);
    if (f) CHECK(gd_st_count(f) == expect_count, "%s: %d tensors, expected %d", pt, gd_st_count(f), expect_count);
    gd_st_close(f);
    size_t len;
    uint8_t *buf = slurp(pt, &len);
    CHECK(buf != NULL, "cannot read %s", pt);
    f = buf ? gd_pt_open_mem(buf, len, err, sizeof err) : NULL;
    CHECK(f != NULL, "%s (memory): %s", pt, err);
    if (f && e) same_tensors(f, e, pt);
    gd_st_close(f);
    free(buf);
    gd_st_close(e);
}

static void test_f32(void) { check_fixture("adm_f32", 27); }
static void test_fp16train(void) { check_fixture("adm_fp16train", 27); }
static void test_extras(void) { check_fixture("extras", 2); }
static void test_dtypes(void) { check_fixture("dtypes", 14); }
static void test_proto4(void) { check_fixture("proto4", 2); }
static void test_deflated(void) { check_fixture("deflated", 27); }
static void test_zip64(void) { check_fixture("zip64", 27); }
static void test_empty(void) { check_fixture("empty", 0); }

static int inside(const void *p, size_t n, const uint8_t *buf, size_t len) {
    const uint8_t *q = p;
    return q >= buf && q <= buf + len && n <= (size_t)(buf + len - q);
}

/* Contiguous views of stored members point into the file; copies do not. */
static void test_views(void) {
    char err[512];
    size_t len;
    uint8_t *buf = slurp(PT_DIR "adm_fp16train.pt", &len);
    gd_st_file *f = buf ? gd_pt_open_mem(buf, len, err, sizeof err) : NULL;
    CHECK(f != NULL, "%s", err);
    /* two flat storages: every tensor a view, the views of one storage back to back */
    const uint8_t *end[2] = {NULL, NULL};
    for (int i = 0; f && i < gd_st_count(f); i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        CHECK(inside(t->data, t->nbytes, buf, len), "%s is not a view into the file", t->name);
        int g = t->ndim > 1;
        if (end[g]) CHECK((const uint8_t *)t->data == end[g], "%s does not follow the previous view", t->name);
        end[g] = (const uint8_t *)t->data + t->nbytes;
    }
    gd_st_close(f);
    free(buf);
    buf = slurp(PT_DIR "dtypes.pt", &len);
    f = buf ? gd_pt_open_mem(buf, len, err, sizeof err) : NULL;
    CHECK(f != NULL, "%s", err);
    static const char *copied[] = {"transposed", "channels_last", "expanded", "half_t"};
    static const char *viewed[] = {"h", "bf", "sliced", "scalar", "param"};
    for (size_t i = 0; f && i < sizeof copied / sizeof *copied; i++) {
        const gd_st_tensor *t = gd_st_find(f, copied[i]);
        CHECK(t && !inside(t->data, 1, buf, len), "%s should be a copy", copied[i]);
    }
    for (size_t i = 0; f && i < sizeof viewed / sizeof *viewed; i++) {
        const gd_st_tensor *t = gd_st_find(f, viewed[i]);
        CHECK(t && inside(t->data, t->nbytes, buf, len), "%s should be a view", viewed[i]);
    }
    const gd_st_tensor *s = f ? gd_st_find(f, "sliced") : NULL, *tr = f ? gd_st_find(f, "transposed") : NULL;
    CHECK(s && tr && s->shape[0] == 4 && tr->shape[0] == 4 && tr->shape[1] == 6, "sliced/transposed shapes");
    gd_st_close(f);
    free(buf);
}

static void test_sniff(void) {
    static const char *yes[] = {PT_DIR "adm_f32.pt", PT_DIR "adm_fp16train.pt", PT_DIR "deflated.pt",
                                PT_DIR "zip64.pt", PT_DIR "proto4.pt", BAD_DIR "legacy.pt"};
    static const char *no[] = {PT_DIR "adm_f32.expected.safetensors", "tests/fixtures/conv_base.npz",
                               "tests/data/valid_small.safetensors", BAD_DIR "random_bytes.pt", BAD_DIR "zero_bytes.pt"};
    for (int k = 0; k < 2; k++) {
        const char *const *list = k ? no : yes;
        size_t n = k ? sizeof no / sizeof *no : sizeof yes / sizeof *yes;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            uint8_t *b = slurp(list[i], &len);
            CHECK(b != NULL, "cannot read %s", list[i]);
            if (!b) continue;
            CHECK(gd_pt_sniff(b, len < 512 ? len : 512) == !k, "sniff %s", list[i]);
            CHECK(gd_pt_sniff(b, len < 12 ? len : 12) == 0 || !strstr(list[i], ".npz"), "short head %s", list[i]);
            free(b);
        }
    }
    CHECK(gd_pt_sniff(NULL, 0) == 0, "sniff NULL");
}

/* Every file of the malformed corpus is refused, by path and from memory, with one line that
 * contains its expected text; every file there is listed. */
static void test_malformed(void) {
    FILE *l = fopen(BAD_DIR "expected.txt", "r");
    CHECK(l != NULL, "no %sexpected.txt", BAD_DIR);
    if (!l) return;
    char line[512];
    int listed = 0;
    while (fgets(line, sizeof line, l)) {
        line[strcspn(line, "\n")] = '\0';
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = '\0';
        const char *file = line, *want = sp + 1;
        char path[600], err[512];
        snprintf(path, sizeof path, BAD_DIR "%s", file);
        listed++;
        gd_st_file *f = gd_pt_open(path, err, sizeof err);
        CHECK(f == NULL, "%s opened", path);
        gd_st_close(f);
        if (!f) {
            CHECK(one_line(err) && strstr(err, path), "%s: message '%s'", path, err);
            CHECK(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", path, err, want);
        }
        size_t len;
        uint8_t *b = slurp(path, &len);
        f = gd_pt_open_mem(b, len, err, sizeof err);
        CHECK(f == NULL, "%s opened from memory", path);
        gd_st_close(f);
        if (!f) CHECK(one_line(err) && strstr(err, want), "%s (memory): '%s' lacks '%s'", path, err, want);
        free(b);
    }
    fclose(l);
    int files = 0;
    DIR *d = opendir(BAD_DIR);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".pt")) files++;
    if (d) closedir(d);
    CHECK(files == listed && files > 50, "%d .pt files, %d listed", files, listed);
}

/* If f opened from buf[0..len): tensors are inside buf or owned copies, counts consistent. */
static void check_invariants(gd_st_file *f) {
    volatile unsigned sink = 0;
    for (int i = 0; i < gd_st_count(f); i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
        CHECK(n == t->numel && t->nbytes == (size_t)n * gd_st_dtype_size(t->dtype), "%s: numel", t->name);
        for (size_t k = 0; k < t->nbytes; k++) sink += ((const uint8_t *)t->data)[k];
    }
    (void)sink;
}

/* Every truncation of two real files is refused cleanly. */
static void test_truncations(void) {
    static const char *files[] = {PT_DIR "dtypes.pt", PT_DIR "zip64.pt"};
    for (size_t k = 0; k < 2; k++) {
        size_t len;
        uint8_t *full = slurp(files[k], &len);
        CHECK(full != NULL, "cannot read %s", files[k]);
        int bad = 0;
        for (size_t n = 0; full && n < len; n += (n < 200 || len - n < 200) ? 1 : 7) {
            uint8_t *b = malloc(n ? n : 1);
            memcpy(b, full, n);
            char err[512];
            gd_st_file *f = gd_pt_open_mem(b, n, err, sizeof err);
            if (f || !one_line(err)) bad++;
            gd_st_close(f);
            free(b);
        }
        CHECK(bad == 0, "%s: %d truncations opened or gave a bad message", files[k], bad);
        free(full);
    }
}

/* Every one-byte change (and a truncation) of a real data.pkl, in an archive with correct CRCs
 * and the file's own storages: opens or is refused with one line, never crashes. */
static void test_pickle_mutations(void) {
    size_t plen, len;
    uint8_t *pkl = slurp(PT_DIR "dtypes.pkl", &plen);
    uint8_t *pt = slurp(PT_DIR "dtypes.pt", &len);
    CHECK(pkl && pt, "cannot read dtypes.pkl / dtypes.pt");
    char err[512];
    zip_reader zr = {-1, len, "dtypes.pt", err, sizeof err, pt};
    zip_dir dir;
    ptz_member m[64];
    int n = 1;
    if (pkl && pt && zip_list_directory(&zr, &dir) == 0) {
        for (size_t i = 0; i < dir.count && n < 64; i++) {
            if (strstr(dir.names[i], "data.pkl")) continue;
            const uint8_t *d = zip_member_view(&zr, &dir.ents[i], dir.names[i], dir.members_end);
            CHECK(d != NULL, "%s", err);
            m[n++] = (ptz_member){dir.names[i], d, (size_t)dir.ents[i].usize};
        }
    } else {
        CHECK(0, "%s", err);
        free(pkl);
        free(pt);
        return;
    }
    uint8_t *work = malloc(plen);
    int opened = 0, refused = 0, bad = 0;
    static const uint8_t flips[] = {0x01, 0x80, 0xff, 0x20};
    for (size_t pos = 0; pos <= plen; pos++)
        for (size_t fi = 0; fi < (pos < plen ? sizeof flips : 1); fi++) {
            memcpy(work, pkl, plen);
            size_t wl = plen;
            if (pos < plen)
                work[pos] ^= flips[fi];
            else
                wl = plen / 2;
            m[0] = (ptz_member){"dtypes/data.pkl", work, wl};
            size_t zl;
            uint8_t *z = ptz_build(m, n, &zl);
            gd_st_file *f = gd_pt_open_mem(z, zl, err, sizeof err);
            if (f) {
                opened++;
                check_invariants(f);
            } else {
                refused++;
                if (!one_line(err)) bad++;
            }
            gd_st_close(f);
            free(z);
        }
    CHECK(bad == 0, "%d bad messages", bad);
    CHECK(opened > 100 && refused > 100, "opened %d, refused %d", opened, refused);
    m[0] = (ptz_member){"dtypes/data.pkl", pkl, plen}; /* unchanged: opens */
    size_t zl;
    uint8_t *z = ptz_build(m, n, &zl);
    gd_st_file *f = gd_pt_open_mem(z, zl, err, sizeof err);
    CHECK(f && gd_st_count(f) == 14, "rebuilt archive: %s", f ? "wrong count" : err);
    gd_st_close(f);
    free(z);
    zip_dir_free(&dir);
    free(work);
    free(pkl);
    free(pt);
}

GD_TEST_TABLE(gd_tests_pt) = {
    {"pt: f32 state dict (OrderedDict, _metadata) equals torch.load", test_f32},
    {"pt: fp16-trainer layout (views into two flat storages) equals torch.load", test_fp16train},
    {"pt: non-tensor entries are skipped", test_extras},
    {"pt: f16/bf16/f64/i64/i32/u8, strided, sliced, 0-d, empty, Parameter", test_dtypes},
    {"pt: pickle protocol 4", test_proto4},
    {"pt: deflated members", test_deflated},
    {"pt: zip64 archive", test_zip64},
    {"pt: empty dict", test_empty},
    {"pt: views into the file, copies of strided tensors", test_views},
    {"pt: sniff", test_sniff},
    {"pt: malformed corpus refused with one line", test_malformed},
    {"pt: truncated files refused", test_truncations},
    {"pt: mutated pickles never crash", test_pickle_mutations},
    {NULL, NULL},
};
