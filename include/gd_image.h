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

/* ---- streaming .npz (src/io/npz_stream.c): evaluator batches too large to load whole -------
 * (50,000 256x256 RGB samples are 9.8 GB). The readers accept what gd_read_npz accepts (stored
 * or deflated members, zip64, .npy v1-3 headers); every failure is -1 with one line in err naming
 * the file, and malformed input never crashes. A member NAME is looked up as numpy does: NAME
 * itself, else NAME.npy. */

/* arr_0 of an .npz read in order, a batch at a time (uint8, NHWC, or NHW = 1 channel), without loading it whole.
 * Memory: one zlib window and input buffer; stored data is read straight into out. The call that
 * delivers the last image also checks the deflate end and the CRC-32 (fails on a mismatch). After
 * a failed read, every later read fails. */
typedef struct gd_npz_stream gd_npz_stream;
gd_npz_stream *gd_npz_stream_open(const char *path, int *n, int *h, int *w, int *c, char *err, size_t errlen);
int gd_npz_stream_read(gd_npz_stream *s, uint8_t *out, int k, char *err, size_t errlen); /* next k images (k <= remaining) -> 0 / -1 */
void gd_npz_stream_close(gd_npz_stream *s);
/* Float array NAME ('<f4' or '<f8', C order, 1..4 dims) as double: 0; 1 when the npz has no such member; -1 with err. *data malloc()ed. */
int gd_npz_read_f64(const char *path, const char *name, double **data, int *ndim, int64_t shape[4], char *err, size_t errlen);
/* 1 when the npz has member NAME(.npy), 0 when not, -1 with err when it cannot be read. */
int gd_npz_has(const char *path, const char *name, char *err, size_t errlen);
/* A reference batch in guided-diffusion's layout (np.savez: arr_0 uint8 NHWC, then named '<f8' arrays), written
 * streaming: open with the image count and size, append images in order, add arrays, commit (atomic: temp file + rename;
 * gd_npz_writer_abort or a failed commit leaves nothing at path).
 * Arrays may only be added once all n images are in (arr_0 comes first in the file); names are
 * 1..12 printable ASCII characters (member NAME.npy), each once; shape[] has ndim (1..4) entries.
 * Zip64 fields are written where a size or offset needs them. A failed write makes every later
 * call fail (commit then removes the temporary); a refused argument changes nothing. */
typedef struct gd_npz_writer gd_npz_writer;
gd_npz_writer *gd_npz_writer_open(const char *path, int n, int h, int w, int c, char *err, size_t errlen);
int gd_npz_writer_images(gd_npz_writer *wr, const uint8_t *nhwc, int k, char *err, size_t errlen);
int gd_npz_writer_f64(gd_npz_writer *wr, const char *name, const double *data, int ndim, const int64_t *shape, char *err, size_t errlen);
int gd_npz_writer_commit(gd_npz_writer *wr, char *err, size_t errlen); /* frees wr; fails if fewer than n images were appended */
void gd_npz_writer_abort(gd_npz_writer *wr);
#endif
