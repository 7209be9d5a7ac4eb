/* libFuzzer target for the .npz reader (gd_read_npz, what ddpm-npz, ddpm-eval and the cascade's
 * --base-npz read). Built and run by `make fuzz` (build-fuzz/fuzz_npz, with
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION so that zip CRC-32s are not checked and mutations
 * reach the .npy parser behind them); seeds: tests/data/fuzz/npz/. The input is the whole file.
 * When it loads, every pixel and label is read (ASan checks the buffers' extents) and the
 * promised shape checked; when it is rejected, the message must be one non-empty line.
 * The same file then goes through the streaming readers (src/io/npz_stream.c): gd_npz_stream_*
 * in batches of 1, 2, 3 images must load exactly what gd_read_npz without labels loads, with the
 * same bytes, and refuse a read past the end; gd_npz_has and gd_npz_read_f64 on a few names must
 * agree with each other and keep their promises (values read, shape, NULL on failure). The entry's
 * result and message stay gd_read_npz's. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_util.h"
#include "gd_image.h"

#include <limits.h>
#include <stdint.h>

/* The stream over path against gd_read_npz without labels. */
static void fuzz_npz_stream(const char *path) {
    char err[512];
    uint8_t *ref = NULL;
    int n = 0, h = 0, w = 0, c = 0;
    int loads = gd_read_npz(path, &ref, &n, &h, &w, &c, NULL, err, sizeof err) == 0;
    memset(err, 0x55, sizeof err);
    int sn = -1, sh = -1, sw = -1, sc = -1, streamed = 0;
    gd_npz_stream *s = gd_npz_stream_open(path, &sn, &sh, &sw, &sc, err, sizeof err);
    if (!s) {
        fuzz_must(fuzz_one_line(err, sizeof err));
    } else {
        fuzz_must(sn >= 1 && sh >= 1 && sw >= 1 && sc >= 1);
        if (loads) fuzz_must(sn == n && sh == h && sw == w && sc == c);
        const size_t img = (size_t)sh * (size_t)sw * (size_t)sc;
        const int most = img <= ((size_t)1 << 22) ? 3 : 1;
        uint8_t *buf = malloc((size_t)most * img);
        fuzz_must(buf != NULL);
        int done = 0;
        streamed = 1;
        for (int b = 0; done < sn; b++) {
            int k = b % most + 1;
            if (k > sn - done) k = sn - done;
            memset(err, 0x55, sizeof err);
            if (gd_npz_stream_read(s, buf, k, err, sizeof err) != 0) {
                fuzz_must(fuzz_one_line(err, sizeof err));
                streamed = 0;
                break;
            }
            if (loads) fuzz_must(memcmp(buf, ref + (size_t)done * img, (size_t)k * img) == 0);
            volatile unsigned sink = 0;
            for (size_t i = 0; i < (size_t)k * img; i++)
                sink += buf[i];
            (void)sink;
            done += k;
        }
        memset(err, 0x55, sizeof err);
        fuzz_must(gd_npz_stream_read(s, buf, 1, err, sizeof err) == -1 && fuzz_one_line(err, sizeof err));
        free(buf);
        gd_npz_stream_close(s);
    }
    fuzz_must(streamed == loads);
    free(ref);
}

/* gd_npz_has and gd_npz_read_f64 on names a mutation may hit (arr_1 may well be '<f8'). */
static void fuzz_npz_arrays(const char *path) {
    static const char *const names[] = {"arr_0", "arr_1", "arr_1.npy", "mu", "sigma"};
    char err[512];
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        memset(err, 0x55, sizeof err);
        int has = gd_npz_has(path, names[k], err, sizeof err);
        fuzz_must(has >= -1 && has <= 1);
        if (has == -1) fuzz_must(fuzz_one_line(err, sizeof err));
        double *d = (double *)err;
        int nd = -1;
        int64_t shape[4] = {-1, -1, -1, -1};
        memset(err, 0x55, sizeof err);
        int rc = gd_npz_read_f64(path, names[k], &d, &nd, shape, err, sizeof err);
        fuzz_must(has == 0 ? rc == 1 : has == 1 ? (rc == 0 || rc == -1) : rc == -1);
        if (rc != 0) {
            fuzz_must(d == NULL);
            if (rc == -1) fuzz_must(fuzz_one_line(err, sizeof err));
            continue;
        }
        fuzz_must(d != NULL && nd >= 1 && nd <= 4);
        size_t count = 1;
        for (int i = 0; i < 4; i++) {
            fuzz_must(i < nd ? shape[i] >= 0 : shape[i] == 0);
            if (i < nd) count *= (size_t)shape[i];
        }
        volatile double sink = 0;
        for (size_t i = 0; i < count; i++)
            sink += d[i];
        (void)sink;
        free(d);
    }
}

/* 0: loaded, -1: rejected with a one-line message in err. Aborts on a broken promise. */
static int fuzz_npz_entry(const uint8_t *data, size_t size, char *err, size_t errlen) {
    const char *path = fuzz_scratch_file(0, data, size);
    fuzz_must(path != NULL);
    fuzz_npz_stream(path);
    fuzz_npz_arrays(path);
    memset(err, 0x55, errlen);
    uint8_t *img = (uint8_t *)1;
    int64_t *lab = (int64_t *)1;
    int n = -1, h = -1, w = -1, c = -1;
    if (gd_read_npz(path, &img, &n, &h, &w, &c, &lab, err, errlen) != 0) {
        fuzz_must(img == NULL && lab == NULL);
        fuzz_must(fuzz_one_line(err, errlen));
        return -1;
    }
    fuzz_must(img != NULL && n >= 1 && h >= 1 && w >= 1 && c >= 1);
    size_t total = (size_t)n * (size_t)h * (size_t)w * (size_t)c;
    volatile unsigned sink = 0;
    for (size_t i = 0; i < total; i++)
        sink += img[i];
    if (lab)
        for (int i = 0; i < n; i++)
            sink += (unsigned)lab[i];
    (void)sink;
    free(img);
    free(lab);
    /* without labels wanted, arr_1 is not read: the same images come back */
    uint8_t *img2 = NULL;
    int n2, h2, w2, c2;
    fuzz_must(gd_read_npz(path, &img2, &n2, &h2, &w2, &c2, NULL, err, errlen) == 0);
    fuzz_must(n2 == n && h2 == h && w2 == w && c2 == c);
    free(img2);
    return 0;
}

#ifndef GD_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    (void)fuzz_npz_entry(data, size, err, sizeof err);
    return 0;
}
#endif
