/* The image files of a dataset folder (PNG, JPEG, BMP, GIF), decoded for src/io/dataset.c;
 * internal to the I/O layer. These files are untrusted input, and stb_image 2.27 (Debian's) is
 * not safe on hostile ones: fuzzing it under ASan/UBSan finds out-of-bounds reads and wild
 * pointers from bad JPEG Huffman tables (its JPEG state is not zeroed, so a table a scan uses
 * without defining it is garbage), shifts and signed overflows on entropy data that runs out,
 * 2 GiB allocations from PNG chunk lengths of a 167-byte file, and reads of uninitialised
 * palette entries. So:
 *  - PNG is decoded by our own reader (png_read.c): zlib inflates into a buffer of exactly the
 *    size the header implies, after every chunk's length, order and CRC are checked and the
 *    compressed size is shown to be able to hold the image; stb never sees a PNG.
 *  - JPEG is checked in full first (jpeg_check.c): markers and segment lengths, tables defined
 *    before use and well formed (Kraft), sampling factors stb handles, and the entropy-coded
 *    data of every scan decoded to the last bit (coefficient ranges, restart markers, no scan
 *    short of data). stb then decodes a copy rebuilt from exactly the validated segments.
 *  - BMP and GIF are checked (headers, sizes, that the pixel data or the first frame's LZW
 *    sub-blocks are all there, palette indices in range) before stb decodes them.
 * Every failure is one line "NAME: ..." in err. */
#ifndef GD_IO_IMAGE_DECODE_H
#define GD_IO_IMAGE_DECODE_H
#include <stddef.h>
#include <stdint.h>

/* Decoded images are at most this many pixels (4096 x 4096, the loader's largest size). */
#define GD_IMAGE_MAX_PIXELS ((int64_t)1 << 24)

/* "PNG", "JPEG", "BMP" or "GIF" from a file's first bytes (8 are enough), else NULL. */
const char *gd_image_format(const uint8_t *data, size_t len);

/* Width and height from the header alone (no pixel data is looked at). Returns 0, or -1 with
 * err (name is the file, for messages). */
int gd_image_probe(const char *name, const uint8_t *data, size_t len, int *w, int *h, char *err, size_t errlen);

/* Checks the whole file, decodes it, and converts it into out (w * h * channels bytes; w, h as
 * gd_image_probe gave them, w * h <= GD_IMAGE_MAX_PIXELS) as PIL's convert() does: channels 3
 * = RGB (gray replicated, alpha dropped), 1 = convert("L"). Returns 0, or -1 with err. */
int gd_image_decode(const char *name, const uint8_t *data, size_t len, int w, int h, int channels, uint8_t *out,
                    char *err, size_t errlen);

/* ---- the format readers behind these (png_read.c, jpeg_check.c) ---------------------------- */

/* "NAME: cannot decode FORMAT image: <reason>"; returns -1. */
int gd_image_fail(const char *name, const char *format, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

int gd_png_probe(const char *name, const uint8_t *d, size_t n, int *w, int *h, char *err, size_t errlen);
/* Pixels as 8-bit gray (*comp = 1) or RGB (*comp = 3), malloc()ed w * h * *comp bytes. */
uint8_t *gd_png_decode(const char *name, const uint8_t *d, size_t n, int w, int h, int *comp, char *err, size_t errlen);

int gd_jpeg_probe(const char *name, const uint8_t *d, size_t n, int *w, int *h, char *err, size_t errlen);
/* The validated file rebuilt from its checked segments only (malloc()ed, *out_len bytes). */
uint8_t *gd_jpeg_check(const char *name, const uint8_t *d, size_t n, int w, int h, size_t *out_len, char *err,
                       size_t errlen);
#endif
