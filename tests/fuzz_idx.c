/* libFuzzer target for the IDX reader (gd_dataset_load_idx: Fashion-MNIST images and labels, raw
 * or gzip, as ddpm-train and ddpm-eval read them). Built and run by `make fuzz`
 * (build-fuzz/fuzz_idx); seeds: tests/data/fuzz/idx/. An input holds both files: a 2-byte
 * little-endian length L, the labels file (L bytes), then the images file (the rest; an input
 * under 2 bytes is an empty labels file and no images). tests/data/fuzz/idx/make_idx_corpus.py
 * writes the seeds in this layout. When the pair loads, every pixel and label is read and the
 * dataset's promises checked; when it is rejected, the message must be one non-empty line. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_util.h"
#include "gd_dataset.h"

#include <stdint.h>

/* 0: loaded, -1: rejected with a one-line message in err. Aborts on a broken promise. */
static int fuzz_idx_entry(const uint8_t *data, size_t size, char *err, size_t errlen) {
    size_t llen = size >= 2 ? (size_t)data[0] | (size_t)data[1] << 8 : 0;
    const uint8_t *lab = size >= 2 ? data + 2 : data;
    if (llen > size - (size_t)(lab - data)) llen = size - (size_t)(lab - data);
    const uint8_t *img = lab + llen;
    size_t ilen = size - (size_t)(img - data);
    const char *lp = fuzz_scratch_file(1, lab, llen), *ip = fuzz_scratch_file(2, img, ilen);
    fuzz_must(lp != NULL && ip != NULL);
    gd_dataset d;
    memset(&d, 0x55, sizeof d);
    memset(err, 0x55, errlen);
    if (gd_dataset_load_idx(ip, lp, &d, err, errlen) != 0) {
        fuzz_must(fuzz_one_line(err, errlen));
        fuzz_must(d.images == NULL && d.labels == NULL && d.class_names == NULL && d.n == 0);
        return -1;
    }
    fuzz_must(d.n >= 1 && d.h >= 1 && d.w >= 1 && d.c == 1 && d.images && d.labels && !d.class_names);
    /* the pixels came from the input (gzip's ratio is below 1032:1) */
    size_t total = (size_t)d.n * (size_t)d.h * (size_t)d.w;
    fuzz_must(total <= ilen * 1032 + 64);
    volatile unsigned sink = 0;
    for (size_t i = 0; i < total; i++)
        sink += d.images[i];
    int maxl = 0;
    for (int i = 0; i < d.n; i++) {
        fuzz_must(d.labels[i] >= 0 && d.labels[i] <= 255);
        if (d.labels[i] > maxl) maxl = d.labels[i];
    }
    fuzz_must(d.num_classes == maxl + 1);
    (void)sink;
    gd_dataset_free(&d);
    return 0;
}

#ifndef GD_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    (void)fuzz_idx_entry(data, size, err, sizeof err);
    return 0;
}
#endif
