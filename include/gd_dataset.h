/* Training data: Fashion-MNIST-style IDX files (gzip or raw) and folders of images with one
 * subfolder per class. Images are kept as uint8 NHWC in memory; batches come out as float NCHW in
 * [-1, 1] (x/127.5 - 1, guided-diffusion's image_datasets.py) with int32 labels. */
#ifndef GD_DATASET_H
#define GD_DATASET_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n, h, w, c;        /* images [n, h, w, c] */
    uint8_t *images;
    int32_t *labels;       /* [n] */
    int num_classes;       /* max label + 1 */
    char **class_names;    /* [num_classes] for folders (subfolder names, sorted); NULL for IDX */
} gd_dataset;

/* images_path/labels_path: IDX (magic 0x803 / 0x801), gzip-compressed or not (zlib gzread).
 * Returns 0, or -1 with one line in err; validates magic, dimensions, counts and truncation. */
int gd_dataset_load_idx(const char *images_path, const char *labels_path, gd_dataset *d, char *err, size_t errlen);
/* dir/<class>/<image files> (PNG by our checked reader; JPEG, BMP, GIF checked in full, then stb_image: src/io/image_decode.h); classes are the sorted subfolder names;
 * every image is converted to `channels` (1 = luminance, 3 = RGB) and must be size x size (size 0:
 * the first image's, which must be square).
 * A folder holding only image files is one unlabelled set, sorted by name; a file whose name has
 * "class<K>" (ddpm-sample --save-each) gets label K, the others -1; class_names stays NULL. */
int gd_dataset_load_folder(const char *dir, int channels, int size, gd_dataset *d, char *err, size_t errlen);
void gd_dataset_free(gd_dataset *d);

/* Deterministic epoch order: a permutation of [0, n) from (seed, epoch) (Fisher-Yates on a
 * splitmix64 stream), so a resumed run sees exactly the batches it would have seen. */
void gd_dataset_permutation(int n, uint64_t seed, uint64_t epoch, int32_t *perm);
/* Copies images idx[0..count) into x [count, c, h, w] as x/127.5 - 1, labels into y (may be NULL). */
void gd_dataset_batch(const gd_dataset *d, const int32_t *idx, int count, float *x, int32_t *y);
#endif
