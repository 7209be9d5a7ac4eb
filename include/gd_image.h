/* Image outputs: PNG (single or grid, with a tEXt chunk of generation parameters) and the .npz
 * that guided-diffusion's sampler writes (arr_0 uint8 NHWC, arr_1 int64 labels). All writers
 * write a temporary file and rename it, so a failed or interrupted write leaves nothing behind. */
#ifndef GD_IMAGE_H
#define GD_IMAGE_H
#include <stddef.h>
#include <stdint.h>

/* x in [-1,1], NCHW float -> NHWC uint8 as guided-diffusion: uint8(clamp((x+1)*127.5, 0, 255)),
 * truncating toward zero. */
void gd_to_uint8(const float *x, int n, int c, int h, int w, uint8_t *out);

/* The way back, for one image: NHWC uint8 -> NCHW float x/127.5 - 1 (guided-diffusion's
 * image_datasets.py: arr.astype(np.float32) / 127.5 - 1). */
void gd_from_uint8(const uint8_t *nhwc, int c, int h, int w, float *x);

/* One PNG of n images (NHWC, c = 1 or 3) tiled in `cols` columns (0 = about square), with a
 * 2-pixel gap; text_key/text_value (may be NULL) go into a tEXt chunk before IEND. */
int gd_write_png_grid(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, int cols,
                      const char *text_key, const char *text_value, char *err, size_t errlen);

/* np.savez-compatible file: arr_0 uint8 [n,h,w,c]; arr_1 int64 [n] when labels != NULL.
 * Stored (uncompressed) zip entries, as numpy writes them. */
int gd_write_npz(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                 char *err, size_t errlen);

/* Reads arr_0 (uint8, 4-D NHWC; 3-D NHW is taken as c = 1) and arr_1 (int64 or int32 labels,
 * optional) from an .npz written by numpy (stored or deflated entries). Caller frees *images and
 * *labels. Returns 0, or -1 with one line in err. Never crashes on malformed input. */
int gd_read_npz(const char *path, uint8_t **images, int *n, int *h, int *w, int *c, int64_t **labels,
                char *err, size_t errlen);
#endif
