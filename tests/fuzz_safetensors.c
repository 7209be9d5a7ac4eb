/* libFuzzer target for the safetensors reader.
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *         -Isrc tests/fuzz_safetensors.c src/io/safetensors.c src/io/safetensors_read.c \
 *         src/util/errors.c src/util/map_file.c -lcjson -o build/fuzz_safetensors   (or: make fuzz)
 *   mkdir -p /tmp/st_corpus
 *   build/fuzz_safetensors -max_total_time=60 /tmp/st_corpus tests/data tests/data/malformed
 *
 * Opens the input with gd_st_open_mem; when it opens, reads every tensor's bytes, checks the
 * invariants the reader promises, looks up metadata, then closes. Any violated invariant
 * aborts so the fuzzer records it. */
#define _POSIX_C_SOURCE 200809L
#include "gd_safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void must(int cond) {
    if (!cond) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    memset(err, 0x55, sizeof err);
    gd_st_file *f = gd_st_open_mem(data, size, err, sizeof err);
    if (!f) {
        /* rejected: a non-empty, one-line, terminated message */
        must(memchr(err, '\0', sizeof err) != NULL);
        must(err[0] != '\0');
        must(strchr(err, '\n') == NULL);
        return 0;
    }
    volatile unsigned sink = 0;
    int n = gd_st_count(f);
    must(n >= 0);
    for (int i = 0; i < n; i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        must(t != NULL && t->name != NULL);
        must(t->ndim >= 0 && t->ndim <= 8);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            must(t->shape[d] >= 0);
            numel *= t->shape[d];
        }
        must(numel == t->numel);
        must(t->nbytes == (size_t)t->numel * gd_st_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        must(p >= data && (size_t)(p - data) <= size && t->nbytes <= size - (size_t)(p - data));
        for (size_t k = 0; k < t->nbytes; k++) sink += p[k];
        must(gd_st_find(f, t->name) == t); /* names are unique */
        sink += (unsigned)strlen(gd_st_dtype_name(t->dtype));
    }
    must(gd_st_get(f, n) == NULL && gd_st_get(f, -1) == NULL);
    static const char *keys[] = {"format", "config", "note", "", "__metadata__"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *v = gd_st_metadata(f, keys[k]);
        if (v) sink += (unsigned)strlen(v);
    }
    (void)sink;
    gd_st_close(f);
    return 0;
}
