/* libFuzzer target for the image-folder decoder (src/io/image_decode.c, png_read.c,
 * jpeg_check.c: what gd_dataset_load_folder, and so ddpm-train's "folder" data and ddpm-eval
 * on a folder, run on every file). Built and run by `make fuzz` (build-fuzz/fuzz_image); seeds:
 * tests/data/fuzz/image/. The input is one image file: its header is probed, and when it gives
 * at most 256 x 256 pixels the file is decoded, to gray when the input's length is odd and to
 * RGB when even, into a buffer of exactly that size (ASan checks every write); headers over the
 * loader's limit must be refused; a rejected file must give one non-empty line naming it. Any
 * sanitizer report inside stb_image counts too. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_util.h"
#include "io/image_decode.h"

#include <stdint.h>

/* Decoding beyond this many pixels is left to the corpus replay (tests/test_fuzz_corpus.c, which
 * passes GD_IMAGE_MAX_PIXELS): here it would spend the run on large buffers. */
#define FUZZ_IMAGE_MAX_PIXELS (256 * 256)

/* 0: decoded, 1: header fine but over max_pixels, -1: rejected with err. Aborts on a broken
 * promise. */
static int fuzz_image_run(const uint8_t *data, size_t size, int64_t max_pixels, char *err, size_t errlen) {
    static const char name[] = "fuzz/input.img";
    int w = -1, h = -1;
    memset(err, 0x55, errlen);
    if (gd_image_probe(name, data, size, &w, &h, err, errlen) != 0) {
        fuzz_must(fuzz_one_line(err, errlen) && strstr(err, name) == err);
        return -1;
    }
    fuzz_must(w >= 1 && h >= 1 && gd_image_format(data, size) != NULL);
    int channels = size & 1 ? 1 : 3;
    if ((int64_t)w * h > GD_IMAGE_MAX_PIXELS) { /* refused before out is looked at */
        uint8_t one;
        fuzz_must(gd_image_decode(name, data, size, w, h, channels, &one, err, errlen) != 0);
        fuzz_must(fuzz_one_line(err, errlen) && strstr(err, name) == err);
        return -1;
    }
    if ((int64_t)w * h > max_pixels) return 1;
    size_t n = (size_t)w * (size_t)h * (size_t)channels;
    uint8_t *out = malloc(n);
    fuzz_must(out != NULL);
    memset(err, 0x55, errlen);
    int rc = gd_image_decode(name, data, size, w, h, channels, out, err, errlen);
    if (rc != 0) {
        fuzz_must(fuzz_one_line(err, errlen) && strstr(err, name) == err);
    } else {
        volatile unsigned sink = 0;
        for (size_t i = 0; i < n; i++)
            sink += out[i];
        (void)sink;
        /* a size other than the header's is refused, not decoded */
        fuzz_must(gd_image_decode(name, data, size, w + 1, h, channels, out, err, errlen) != 0);
    }
    free(out);
    return rc;
}

/* The replay's entry: every size the loader takes is decoded. */
static int fuzz_image_entry(const uint8_t *data, size_t size, char *err, size_t errlen) {
    return fuzz_image_run(data, size, GD_IMAGE_MAX_PIXELS, err, errlen);
}

#ifndef GD_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    (void)fuzz_image_run(data, size, FUZZ_IMAGE_MAX_PIXELS, err, sizeof err);
    return 0;
}
#endif
