/* libFuzzer target for the PyTorch checkpoint reader (gd_pt_open_mem). Built and run by
 * `make fuzz` (build-fuzz/fuzz_pt, with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION so that zip
 * CRC-32s are not checked and mutations reach the parsers behind them). Two modes:
 *  - an input starting with "PK" is opened as a whole file (seeds: the .pt files of
 *    tests/data/pt/ and the malformed corpus tests/data/malformed_pt/);
 *  - any other input is a data.pkl: it is wrapped in an archive (tests/pt_zip.h) with storages
 *    a/data/0 .. a/data/15 of 8 (k + 1) bytes each, so the unpickler sees every mutation
 *    (seeds: the .pkl files of tests/data/pt/).
 * When the input opens, every tensor's bytes are read and the reader's promises checked; any
 * violation aborts. */
#define _POSIX_C_SOURCE 200809L
#include "gd_pt.h"
#include "pt_zip.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void must(int cond) {
    if (!cond) abort();
}

static void check(const uint8_t *data, size_t size) {
    char err[256];
    memset(err, 0x55, sizeof err);
    gd_st_file *f = gd_pt_open_mem(data, size, err, sizeof err);
    if (!f) {
        must(memchr(err, '\0', sizeof err) != NULL);
        must(err[0] != '\0');
        must(strchr(err, '\n') == NULL);
        return;
    }
    volatile unsigned sink = 0;
    const int n = gd_st_count(f);
    must(n >= 0);
    for (int i = 0; i < n; i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        must(t != NULL && t->name != NULL && t->data != NULL);
        must(t->ndim >= 0 && t->ndim <= 8);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            must(t->shape[d] >= 0);
            numel *= t->shape[d];
        }
        must(numel == t->numel);
        must(t->nbytes == (size_t)t->numel * gd_st_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sink += p[k]; /* inside the input or owned: ASan checks */
        must(gd_st_find(f, t->name) == t);
    }
    must(gd_st_get(f, n) == NULL && gd_st_get(f, -1) == NULL);
    must(gd_st_metadata(f, "format") == NULL);
    (void)sink;
    gd_st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)gd_pt_sniff(data, size);
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
        check(data, size);
        return 0;
    }
    static uint8_t storage[16 * 8 * 16];
    static char names[16][16];
    ptz_member m[18];
    m[0] = (ptz_member){"a/data.pkl", data, size};
    size_t o = 0;
    for (int k = 0; k < 16; k++) {
        snprintf(names[k], sizeof names[k], "a/data/%d", k);
        for (size_t j = 0; j < 8 * (size_t)(k + 1); j++) storage[o + j] = (uint8_t)(j * 37 + (size_t)k);
        m[k + 1] = (ptz_member){names[k], storage + o, 8 * (size_t)(k + 1)};
        o += 8 * (size_t)(k + 1);
    }
    m[17] = (ptz_member){"a/version", (const uint8_t *)"3\n", 2};
    size_t len;
    uint8_t *z = ptz_build(m, 18, &len); /* exactly sized: reads past the archive are caught */
    if (!z) return 0;
    check(z, len);
    free(z);
    return 0;
}
