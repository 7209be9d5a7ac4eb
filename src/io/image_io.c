/* Image outputs: float -> uint8 conversion and PNG grids with a text chunk (written through the
 * atomic-file helpers of src/util/). See include/gd_image.h for the API contract.
 *
 * Design notes
 *  - gd_to_uint8 mirrors guided-diffusion's `((x + 1) * 127.5).clamp(0, 255).to(th.uint8)` in
 *    float32: one float add, one float multiply (no FMA is possible for this shape), clamp, then
 *    truncation toward zero. NaN -> 0 (what PyTorch's float->uint8 cast yields on x86 and CUDA;
 *    C leaves it undefined, so it is handled explicitly), +inf -> 255, -inf -> 0.
 *  - The grid's 2-pixel gaps, and the cells after the last image, are black (0), the pad value of
 *    torchvision's make_grid. There is no outer border, so n = 1 gives exactly the image. cols is
 *    clamped to n; cols = 0 means ceil(sqrt(n)).
 *  - PNG encoding is stb_image_write's stbi_write_png_to_mem (its filter choice), with its deflate
 *    replaced by zlib's compress2 at level 6 (faster and smaller than stb's own compressor) and
 *    its CRC by zlib's crc32. stb's global stbi_write_png_compression_level is left alone, so
 *    concurrent writers never race on it.
 *  - Text: the keyword must be 1-79 Latin-1 characters (given as UTF-8 or ASCII; printable, no
 *    leading, trailing or double spaces). The value is read as UTF-8; bytes that are not valid
 *    UTF-8 are written as the four ASCII characters "\xNN". If every character then fits in
 *    Latin-1 the chunk is tEXt (Latin-1 encoded), otherwise iTXt (uncompressed, UTF-8, empty
 *    language tag and translated keyword). A NULL key writes no chunk; a NULL value is "".
 *  - Files are written to "<path>.tmp.<pid>", fsync()ed and renamed over <path>; on any failure
 *    the temporary file is removed and err gets one line naming <path>. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_image.h"
#include "gd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------------------------------ */
/* stb_image_write, private to this file                                                      */

#define GD_PNG_ZLIB_LEVEL 6

static unsigned char *gd_png_deflate(unsigned char *data, int data_len, int *out_len, int quality);

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBIW_ZLIB_COMPRESS gd_png_deflate
#define STBIW_CRC32(buf, len) ((unsigned int)crc32(0L, (const Bytef *)(buf), (uInt)(len)))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

/* stb calls this with the filtered scanlines; the result must come from malloc (stb frees it).
 * `quality` is stb's global compression level, deliberately ignored (see the notes above). */
static unsigned char *gd_png_deflate(unsigned char *data, int data_len, int *out_len, int quality) {
    (void)quality;
    if (data_len < 0) return NULL;
    uLongf cap = compressBound((uLong)data_len);
    if (cap > (uLongf)INT_MAX) return NULL;
    unsigned char *out = malloc(cap ? cap : 1);
    if (!out) return NULL;
    if (compress2(out, &cap, data, (uLong)data_len, GD_PNG_ZLIB_LEVEL) != Z_OK) {
        free(out);
        return NULL;
    }
    *out_len = (int)cap;
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* float -> uint8                                                                             */

static inline uint8_t to_u8(float x) {
    float y = (x + 1.0f) * 127.5f;
    if (!(y > 0.0f)) return 0; /* also NaN */
    if (y >= 255.0f) return 255;
    return (uint8_t)y; /* truncation toward zero */
}

void gd_from_uint8(const uint8_t *nhwc, int c, int h, int w, float *x) {
    const size_t hw = (size_t)h * (size_t)w;
    for (size_t ch = 0; ch < (size_t)c; ch++)
        for (size_t p = 0; p < hw; p++) x[ch * hw + p] = (float)nhwc[p * (size_t)c + ch] / 127.5f - 1.0f;
}

void gd_to_uint8(const float *x, int n, int c, int h, int w, uint8_t *out) {
    if (!x || !out || n <= 0 || c <= 0 || h <= 0 || w <= 0) return;
    const size_t hw = (size_t)h * (size_t)w;
    for (int b = 0; b < n; b++) {
        const float *src = x + (size_t)b * (size_t)c * hw;
        uint8_t *dst = out + (size_t)b * hw * (size_t)c;
        if (c == 1) {
            for (size_t p = 0; p < hw; p++) dst[p] = to_u8(src[p]);
        } else if (c == 3) {
            const float *r = src, *g = src + hw, *bl = src + 2 * hw;
            for (size_t p = 0; p < hw; p++) {
                dst[3 * p + 0] = to_u8(r[p]);
                dst[3 * p + 1] = to_u8(g[p]);
                dst[3 * p + 2] = to_u8(bl[p]);
            }
        } else {
            for (int ch = 0; ch < c; ch++)
                for (size_t p = 0; p < hw; p++) dst[p * (size_t)c + (size_t)ch] = to_u8(src[(size_t)ch * hw + p]);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* text chunk                                                                                 */

/* Decodes one strict UTF-8 sequence (no overlongs, surrogates or > U+10FFFF) at s[0..len).
 * Returns its length and sets *cp, or 0 if the bytes there are not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (len < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return need;
}

typedef struct {
    unsigned char *p;
    size_t n, cap;
} gd_buf;

static int buf_put(gd_buf *b, const void *src, size_t len) {
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, len);
    b->n += len;
    return 0;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

#define GD_PNG_MAX_TEXT ((size_t)1 << 24) /* value bytes; far below PNG's 2^31-1 chunk limit */

/* Builds the complete text chunk (length, type, data, CRC) in *out. Returns 0, or -1 with err. */
static int build_text_chunk(const char *path, const char *key, const char *value, gd_buf *out, char *err,
                            size_t errlen) {
    /* keyword: UTF-8/ASCII -> Latin-1 bytes */
    unsigned char kw[80];
    size_t kn = 0;
    const unsigned char *k = (const unsigned char *)key;
    size_t klen = strlen(key);
    for (size_t i = 0; i < klen;) {
        uint32_t cp;
        size_t l = utf8_decode(k + i, klen - i, &cp);
        if (l == 0 || !((cp >= 32 && cp <= 126) || (cp >= 161 && cp <= 255))) {
            gd_errf(err, errlen, "%s: PNG text keyword must be printable Latin-1 (bad byte at offset %zu)", path, i);
            return -1;
        }
        if (kn == 79) {
            gd_errf(err, errlen, "%s: PNG text keyword is longer than 79 characters", path);
            return -1;
        }
        if (cp == ' ' && (kn == 0 || kw[kn - 1] == ' ')) {
            gd_errf(err, errlen, "%s: PNG text keyword has a leading or double space", path);
            return -1;
        }
        kw[kn++] = (unsigned char)cp;
        i += l;
    }
    if (kn == 0 || kw[kn - 1] == ' ') {
        gd_errf(err, errlen, "%s: PNG text keyword is empty or ends in a space", path);
        return -1;
    }

    /* value: escape invalid UTF-8, then decide Latin-1 (tEXt) or UTF-8 (iTXt) */
    const unsigned char *v = (const unsigned char *)(value ? value : "");
    size_t vlen = strlen((const char *)v);
    if (vlen > GD_PNG_MAX_TEXT) {
        gd_errf(err, errlen, "%s: PNG text value of %zu bytes is too long (limit %zu)", path, vlen, GD_PNG_MAX_TEXT);
        return -1;
    }
    int latin1 = 1;
    for (size_t i = 0; i < vlen;) {
        uint32_t cp;
        size_t l = utf8_decode(v + i, vlen - i, &cp);
        if (l == 0) {
            i++;
            continue; /* escaped below, ASCII */
        }
        if (cp > 0xFF) latin1 = 0;
        i += l;
    }
    gd_buf text = {0};
    static const char hex[] = "0123456789ABCDEF";
    int oom = 0;
    for (size_t i = 0; i < vlen && !oom;) {
        uint32_t cp;
        size_t l = utf8_decode(v + i, vlen - i, &cp);
        if (l == 0) {
            char e[4] = {'\\', 'x', hex[v[i] >> 4], hex[v[i] & 15]};
            oom = buf_put(&text, e, 4) != 0;
            i++;
        } else if (latin1) {
            unsigned char b = (unsigned char)cp;
            oom = buf_put(&text, &b, 1) != 0;
            i += l;
        } else {
            oom = buf_put(&text, v + i, l) != 0;
            i += l;
        }
    }

    gd_buf c = {0};
    static const unsigned char zeros[8] = {0};
    oom = oom || buf_put(&c, zeros, 4) != 0; /* length, filled in below */
    oom = oom || buf_put(&c, latin1 ? "tEXt" : "iTXt", 4) != 0;
    oom = oom || buf_put(&c, kw, kn) != 0;
    /* tEXt: NUL; iTXt: NUL, compression flag 0, method 0, empty language tag NUL, empty
     * translated keyword NUL */
    oom = oom || buf_put(&c, zeros, latin1 ? 1 : 5) != 0;
    if (text.n) oom = oom || buf_put(&c, text.p, text.n) != 0;
    oom = oom || buf_put(&c, zeros, 4) != 0; /* CRC */
    free(text.p);
    if (oom) {
        free(c.p);
        gd_errf(err, errlen, "%s: out of memory building the PNG text chunk", path);
        return -1;
    }
    size_t dlen = c.n - 12;
    put_be32(c.p, (uint32_t)dlen);
    uLong crc = crc32(0L, c.p + 4, (uInt)(dlen + 4));
    put_be32(c.p + c.n - 4, (uint32_t)crc);
    *out = c;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* PNG grid                                                                                   */

#define GD_GRID_GAP 2
#define GD_PNG_MAX_RAW ((int64_t)1 << 30) /* filtered image bytes; keeps stb's int math safe */

static int ceil_sqrt(int n) {
    int r = (int)ceil(sqrt((double)n));
    while ((int64_t)r * r < n) r++;
    while (r > 1 && (int64_t)(r - 1) * (r - 1) >= n) r--;
    return r;
}

int gd_write_png_grid(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, int cols,
                      const char *text_key, const char *text_value, char *err, size_t errlen) {
    if (!path || !*path) {
        gd_errf(err, errlen, "gd_write_png_grid: empty path");
        return -1;
    }
    if (!nhwc || n <= 0 || h <= 0 || w <= 0 || cols < 0 || (c != 1 && c != 3)) {
        gd_errf(err, errlen, "%s: bad PNG grid arguments (n=%d h=%d w=%d c=%d cols=%d; need n,h,w >= 1, c = 1 or 3)",
                path, n, h, w, c, cols);
        return -1;
    }
    if (cols == 0) cols = ceil_sqrt(n);
    if (cols > n) cols = n;
    const int rows = (n + cols - 1) / cols;
    const int64_t W = (int64_t)cols * w + (int64_t)(cols - 1) * GD_GRID_GAP;
    const int64_t H = (int64_t)rows * h + (int64_t)(rows - 1) * GD_GRID_GAP;
    if (W > INT_MAX / 4 || H > INT_MAX / 4 || (W * c + 1) * H > GD_PNG_MAX_RAW) {
        gd_errf(err, errlen, "%s: PNG grid of %lldx%lld pixels is too large", path, (long long)W, (long long)H);
        return -1;
    }

    gd_buf text = {0};
    if (text_key && build_text_chunk(path, text_key, text_value, &text, err, errlen) != 0) return -1;

    uint8_t *grid = calloc((size_t)(W * H * c), 1); /* black gaps and empty cells */
    if (!grid) {
        free(text.p);
        gd_errf(err, errlen, "%s: out of memory for a %lldx%lld grid", path, (long long)W, (long long)H);
        return -1;
    }
    const size_t row_bytes = (size_t)w * (size_t)c, img_bytes = (size_t)h * row_bytes;
    for (int i = 0; i < n; i++) {
        const int64_t x0 = (int64_t)(i % cols) * (w + GD_GRID_GAP), y0 = (int64_t)(i / cols) * (h + GD_GRID_GAP);
        const uint8_t *src = nhwc + (size_t)i * img_bytes;
        for (int y = 0; y < h; y++)
            memcpy(grid + (size_t)(((y0 + y) * W + x0) * c), src + (size_t)y * row_bytes, row_bytes);
    }

    int png_len = 0;
    unsigned char *png = stbi_write_png_to_mem(grid, (int)(W * c), (int)W, (int)H, c, &png_len);
    free(grid);
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    if (!png || png_len < 8 + 25 + 12 || memcmp(png + png_len - 12, iend, 12) != 0) {
        free(png);
        free(text.p);
        gd_errf(err, errlen, "%s: PNG encoding failed", path);
        return -1;
    }

    char *tmp;
    FILE *f = gd_atomic_open(path, &tmp, err, errlen);
    if (!f) {
        free(png);
        free(text.p);
        return -1;
    }
    const size_t body = (size_t)png_len - 12;
    int ok = fwrite(png, 1, body, f) == body;
    if (ok && text.n) ok = fwrite(text.p, 1, text.n, f) == text.n;
    if (ok) ok = fwrite(iend, 1, 12, f) == 12;
    int saved = errno;
    free(png);
    free(text.p);
    if (!ok) gd_errf(err, errlen, "%s: write of '%s' failed: %s", path, tmp, strerror(saved));
    return gd_atomic_commit(f, tmp, path, ok, err, errlen);
}
