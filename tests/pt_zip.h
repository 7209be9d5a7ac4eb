/* A minimal in-memory zip builder (stored members, correct CRC-32s) shared by tests/test_pt.c and
 * tests/fuzz_pt.c: wraps a pickle (and storages) into a torch-style archive. */
#ifndef GD_TESTS_PT_ZIP_H
#define GD_TESTS_PT_ZIP_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
    const char *name;
    const uint8_t *data;
    size_t len;
} ptz_member;

static void ptz_put(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A malloc()ed zip of m[0..n) (each under 4 GiB), its length in *len. */
static uint8_t *ptz_build(const ptz_member *m, int n, size_t *len) {
    size_t total = 22;
    for (int i = 0; i < n; i++) total += 76 + 2 * strlen(m[i].name) + m[i].len;
    uint8_t *b = malloc(total), *cd = malloc(total);
    uint32_t *off = malloc((size_t)(n ? n : 1) * sizeof *off);
    if (!b || !cd || !off) {
        free(b);
        free(cd);
        free(off);
        return NULL;
    }
    size_t o = 0, c = 0;
    for (int i = 0; i < n; i++) {
        const size_t nl = strlen(m[i].name);
        const uint32_t crc = (uint32_t)crc32(0, m[i].data, (uInt)m[i].len);
        off[i] = (uint32_t)o;
        memset(b + o, 0, 30);
        ptz_put(b + o, 0x04034b50u, 4);
        ptz_put(b + o + 4, 20, 2);
        ptz_put(b + o + 14, crc, 4);
        ptz_put(b + o + 18, m[i].len, 4);
        ptz_put(b + o + 22, m[i].len, 4);
        ptz_put(b + o + 26, nl, 2);
        memcpy(b + o + 30, m[i].name, nl);
        if (m[i].len) memcpy(b + o + 30 + nl, m[i].data, m[i].len);
        o += 30 + nl + m[i].len;
        memset(cd + c, 0, 46);
        ptz_put(cd + c, 0x02014b50u, 4);
        ptz_put(cd + c + 4, 20, 2);
        ptz_put(cd + c + 6, 20, 2);
        ptz_put(cd + c + 16, crc, 4);
        ptz_put(cd + c + 20, m[i].len, 4);
        ptz_put(cd + c + 24, m[i].len, 4);
        ptz_put(cd + c + 28, nl, 2);
        ptz_put(cd + c + 42, off[i], 4);
        memcpy(cd + c + 46, m[i].name, nl);
        c += 46 + nl;
    }
    memcpy(b + o, cd, c);
    memset(b + o + c, 0, 22);
    ptz_put(b + o + c, 0x06054b50u, 4);
    ptz_put(b + o + c + 8, (uint64_t)n, 2);
    ptz_put(b + o + c + 10, (uint64_t)n, 2);
    ptz_put(b + o + c + 12, c, 4);
    ptz_put(b + o + c + 16, o, 4);
    *len = o + c + 22;
    free(cd);
    free(off);
    return b;
}
#endif
