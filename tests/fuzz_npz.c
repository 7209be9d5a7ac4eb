/* libFuzzer target for the .npz reader (gd_read_npz, what ddpm-npz, ddpm-eval and the cascade's
 * --base-npz read). Built and run by `make fuzz` (build-fuzz/fuzz_npz, with
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION so that zip CRC-32s are not checked and mutations
 * reach the .npy parser behind them); seeds: tests/data/fuzz/npz/. The input is the whole file.
 * When it loads, every pixel and label is read (ASan checks the buffers' extents) and the
 * promised shape checked; when it is rejected, the message must be one non-empty line. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_util.h"
#include "gd_image.h"

#include <limits.h>
#include <stdint.h>

/* 0: loaded, -1: rejected with a one-line message in err. Aborts on a broken promise. */
static int fuzz_npz_entry(const uint8_t *data, size_t size, char *err, size_t errlen) {
    const char *path = fuzz_scratch_file(0, data, size);
    fuzz_must(path != NULL);
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
