/* Dataset image decoding: format detection, header probes, the BMP and GIF checks, stb_image for
 * the formats it still decodes (JPEG after jpeg_check.c, BMP, GIF), and the conversion to the
 * dataset's channel count. See io/image_decode.h for the threat model and what is checked.
 *  - BMP (as stb reads it): the 12, 40, 56, 108 or 124-byte headers; 1 plane; 1, 4, 8, 16, 24 or
 *    32 bits per pixel; compression none, or bit fields at 16/32 bits; width >= 1, height != 0
 *    (negative: top-down); the palette that stb counts from the pixel-data offset must hold
 *    1..256 entries and every pixel's index (stb would read its uninitialised palette past
 *    them); all rows of pixel data must be in the file.
 *  - GIF: "GIF87a"/"GIF89a", a nonzero screen size, the colour tables, extension blocks (a
 *    graphic control extension of exactly 4 bytes, as stb parses it), and the first image: its
 *    rectangle inside the screen, a colour table, an LZW code size of 1..8, and every data
 *    sub-block up to the terminator inside the file. stb decodes only that first frame.
 *  - Conversion: gray -> RGB replicates, alpha is dropped (not composited), RGB -> gray is PIL's
 *    convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "io/image_decode.h"
#include "gd_util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* stb_image, private to this file (static), for JPEG, BMP and GIF. Its PNG decoder is compiled
 * only because stb declares its zlib functions whatever the decoders (GCC's "declared static but
 * never defined" ignores the pragmas below); it never sees a PNG (png_read.c decodes those, and
 * stb_decode gets only data that starts with another format's signature). Debian's stb 2022-09
 * declares stbi_set_unpremultiply_on_load_thread but defines it under another name; the alias
 * keeps the same warning quiet. */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
/* also: stb declares stbi_load_gif_from_memory whatever the decoders, and GCC's "declared
 * static but never defined" for it ignores the pragmas below */
#define STBI_ONLY_GIF
#define STBI_MAX_DIMENSIONS 65535
#define stbi_set_unpremultiply_on_load_thread stbi__unpremultiply_on_load_thread
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wtype-limits"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized" /* refill_buffer, never called on memory */
#endif
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

int gd_image_fail(const char *name, const char *format, char *err, size_t errlen, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    gd_errf(err, errlen, "%s: cannot decode %s image: %s", name, format, why);
    return -1;
}

const char *gd_image_format(const uint8_t *d, size_t n) {
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return "PNG";
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "JPEG";
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return "BMP";
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return "GIF";
    return NULL;
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

/* ---- BMP ---------------------------------------------------------------------------------- */

typedef struct {
    uint32_t offset, hsz, bpp, compress, extra; /* extra: bit-field masks after the header */
    int w, h;                                   /* h > 0 whatever the row order */
} bmp_info;

#define BMP_FAIL(...) gd_image_fail(name, "BMP", err, errlen, __VA_ARGS__)

static int bmp_header(const char *name, const uint8_t *d, size_t n, bmp_info *b, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    if (n < 18) return BMP_FAIL("truncated: the file (%zu bytes) ends inside the header", n);
    b->offset = le32(d + 10), b->hsz = le32(d + 14);
    if (b->hsz != 12 && b->hsz != 40 && b->hsz != 56 && b->hsz != 108 && b->hsz != 124)
        return BMP_FAIL("unsupported header size %u", (unsigned)b->hsz);
    if (n < 14 + (size_t)b->hsz) return BMP_FAIL("truncated: the file (%zu bytes) ends inside the header", n);
    int64_t w, h;
    uint32_t planes;
    if (b->hsz == 12) {
        w = le16(d + 18), h = le16(d + 20), planes = le16(d + 22), b->bpp = le16(d + 24);
    } else {
        w = (int32_t)le32(d + 18), h = (int32_t)le32(d + 22), planes = le16(d + 26), b->bpp = le16(d + 28);
        b->compress = le32(d + 30);
    }
    if (w < 1 || w > 65535 || h == 0 || h < -65535 || h > 65535)
        return BMP_FAIL("header gives a size of %lldx%lld", (long long)w, (long long)h);
    if (planes != 1) return BMP_FAIL("%u planes (must be 1)", (unsigned)planes);
    uint32_t bpp = b->bpp;
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return BMP_FAIL("%u bits per pixel is not supported", (unsigned)bpp);
    if (b->compress != 0 && !(b->compress == 3 && (bpp == 16 || bpp == 32)))
        return BMP_FAIL("compression %u with %u bits per pixel is not supported (RLE, JPEG and PNG are not)",
                        (unsigned)b->compress, (unsigned)bpp);
    if (b->compress == 3 && (b->hsz == 40 || b->hsz == 56)) b->extra = 12;
    b->w = (int)w, b->h = (int)(h < 0 ? -h : h);
    return 0;
}

/* Palette entries and pixel rows, as stb counts and reads them. */
static int bmp_check(const char *name, const uint8_t *d, size_t n, const bmp_info *b, char *err, size_t errlen) {
    uint64_t start = 14 + (uint64_t)b->hsz + b->extra, psize = 0;
    if (b->offset < start) return BMP_FAIL("pixel data offset %u is inside the header", (unsigned)b->offset);
    if (b->hsz == 12 && b->bpp < 24) psize = (b->offset - start) / 3;
    if (b->hsz != 12 && b->bpp < 16) psize = (b->offset - start) >> 2;
    if (b->bpp < 16 && (psize == 0 || psize > 256))
        return BMP_FAIL("palette of %llu entries (the pixel data offset allows 1..256)", (unsigned long long)psize);
    uint64_t width = b->bpp == 1   ? ((uint64_t)b->w + 7) >> 3
                     : b->bpp == 4 ? ((uint64_t)b->w + 1) >> 1
                                   : (uint64_t)b->w * (b->bpp / 8);
    uint64_t stride = b->bpp == 32 ? width : (width + 3) & ~(uint64_t)3;
    uint64_t need = (uint64_t)b->offset + stride * (uint64_t)b->h;
    if (need > n)
        return BMP_FAIL("truncated: %d rows of pixel data need %llu bytes, the file has %zu", b->h,
                        (unsigned long long)need, n);
    if (b->bpp >= 16) return 0;
    for (int y = 0; y < b->h; y++) {
        const uint8_t *row = d + b->offset + (size_t)y * stride;
        for (int x = 0; x < b->w; x++) {
            unsigned v = b->bpp == 8   ? row[x]
                         : b->bpp == 4 ? (row[x >> 1] >> (x & 1 ? 0 : 4)) & 15u
                                       : (row[x >> 3] >> (7 - (x & 7))) & 1u;
            if (v >= psize)
                return BMP_FAIL("palette index %u past the %llu palette entries", v, (unsigned long long)psize);
        }
    }
    return 0;
}

/* ---- GIF ---------------------------------------------------------------------------------- */

#define GIF_FAIL(...) gd_image_fail(name, "GIF", err, errlen, __VA_ARGS__)

/* Skips a chain of data sub-blocks at *pos, up to and including its zero terminator. */
static int gif_sub_blocks(const uint8_t *d, size_t n, size_t *pos) {
    for (;;) {
        if (*pos >= n) return -1;
        size_t len = d[(*pos)++];
        if (len == 0) return 0;
        if (len > n - *pos) return -1;
        *pos += len;
    }
}

static int gif_check(const char *name, const uint8_t *d, size_t n, char *err, size_t errlen) {
    if (n < 13) return GIF_FAIL("truncated: the file (%zu bytes) ends inside the header", n);
    uint32_t sw = le16(d + 6), sh = le16(d + 8), flags = d[10];
    if (sw == 0 || sh == 0) return GIF_FAIL("screen size %ux%u", (unsigned)sw, (unsigned)sh);
    size_t pos = 13, gct = flags & 0x80 ? 3u * (2u << (flags & 7)) : 0;
    if (gct > n - pos) return GIF_FAIL("truncated: the file ends inside the global colour table");
    pos += gct;
    for (;;) {
        if (pos >= n) return GIF_FAIL("truncated: the file ends before the first image");
        size_t at = pos;
        int tag = d[pos++];
        if (tag == 0x21) {
            if (pos >= n) return GIF_FAIL("truncated: the file ends inside an extension block");
            int label = d[pos++];
            if (label == 0xF9) {
                if (pos >= n || d[pos] != 4 || n - pos < 5)
                    return GIF_FAIL("graphic control extension at offset %zu is not 4 bytes", at);
                pos += 5;
            }
            if (gif_sub_blocks(d, n, &pos) != 0) return GIF_FAIL("truncated: the file ends inside an extension block");
        } else if (tag == 0x2C) {
            if (n - pos < 10) return GIF_FAIL("truncated: the file ends inside the image descriptor");
            uint32_t x = le16(d + pos), y = le16(d + pos + 2), w = le16(d + pos + 4), h = le16(d + pos + 6);
            uint32_t lflags = d[pos + 8];
            if (x + w > sw || y + h > sh)
                return GIF_FAIL("image rectangle %ux%u at (%u, %u) is outside the %ux%u screen", (unsigned)w,
                                (unsigned)h, (unsigned)x, (unsigned)y, (unsigned)sw, (unsigned)sh);
            pos += 9;
            size_t lct = lflags & 0x80 ? 3u * (2u << (lflags & 7)) : 0;
            if (!lct && !gct) return GIF_FAIL("the first image has no colour table");
            if (lct > n - pos) return GIF_FAIL("truncated: the file ends inside a local colour table");
            pos += lct;
            if (pos >= n) return GIF_FAIL("truncated: the file ends before the image data");
            int cs = d[pos++];
            if (cs < 1 || cs > 8) return GIF_FAIL("LZW code size %d (must be 1..8)", cs);
            if (gif_sub_blocks(d, n, &pos) != 0) return GIF_FAIL("truncated: the first image's data is cut short");
            return 0;
        } else if (tag == 0x3B) {
            return GIF_FAIL("no image before the trailer");
        } else {
            return GIF_FAIL("unknown block 0x%02x at offset %zu", tag, at);
        }
    }
}

/* ---- probe and decode --------------------------------------------------------------------- */

int gd_image_probe(const char *name, const uint8_t *data, size_t len, int *w, int *h, char *err, size_t errlen) {
    const char *fmt = gd_image_format(data, len);
    *w = *h = 0;
    if (!fmt) {
        gd_errf(err, errlen, "%s: not a PNG, JPEG, BMP or GIF image", name);
        return -1;
    }
    if (fmt[0] == 'P') return gd_png_probe(name, data, len, w, h, err, errlen);
    if (fmt[0] == 'J') return gd_jpeg_probe(name, data, len, w, h, err, errlen);
    if (fmt[0] == 'B') {
        bmp_info b;
        if (bmp_header(name, data, len, &b, err, errlen) != 0) return -1;
        *w = b.w, *h = b.h;
        return 0;
    }
    if (len < 13)
        return gd_image_fail(name, "GIF", err, errlen, "truncated: the file (%zu bytes) ends inside the header", len);
    *w = (int)le16(data + 6), *h = (int)le16(data + 8);
    if (*w == 0 || *h == 0) return gd_image_fail(name, "GIF", err, errlen, "screen size %dx%d", *w, *h);
    return 0;
}

/* PIL's convert("L") (Convert.c: L24). */
static inline uint8_t luminance(const uint8_t *p) {
    return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
}

static void convert(const uint8_t *px, int comp, size_t npx, int channels, uint8_t *out) {
    for (size_t i = 0; i < npx; i++) {
        const uint8_t *s = px + i * (size_t)comp;
        uint8_t *o = out + i * (size_t)channels;
        if (comp <= 2) { /* gray, gray + alpha */
            for (int k = 0; k < channels; k++)
                o[k] = s[0];
        } else if (channels == 3) { /* RGB, RGBA */
            o[0] = s[0], o[1] = s[1], o[2] = s[2];
        } else {
            o[0] = luminance(s);
        }
    }
}

/* The checked file (or its rebuilt copy) through stb; NULL with err. */
static uint8_t *stb_decode(const char *name, const char *fmt, const uint8_t *d, size_t n, int w, int h, int *comp,
                           char *err, size_t errlen) {
    if (n > INT_MAX) {
        gd_image_fail(name, fmt, err, errlen, "file of %zu bytes is too large", n);
        return NULL;
    }
    int sw = 0, sh = 0;
    uint8_t *px = stbi_load_from_memory(d, (int)n, &sw, &sh, comp, 0);
    if (!px) {
        gd_image_fail(name, fmt, err, errlen, "%s", stbi_failure_reason() ? stbi_failure_reason() : "corrupt data");
        return NULL;
    }
    if (sw != w || sh != h || *comp < 1 || *comp > 4) {
        gd_image_fail(name, fmt, err, errlen, "decoded as %dx%d with %d channels, expected %dx%d", sw, sh, *comp, w, h);
        stbi_image_free(px);
        return NULL;
    }
    return px;
}

int gd_image_decode(const char *name, const uint8_t *data, size_t len, int w, int h, int channels, uint8_t *out,
                    char *err, size_t errlen) {
    int pw, ph;
    if (gd_image_probe(name, data, len, &pw, &ph, err, errlen) != 0) return -1;
    const char *fmt = gd_image_format(data, len);
    if (pw != w || ph != h || w < 1 || h < 1 || (int64_t)w * h > GD_IMAGE_MAX_PIXELS ||
        (channels != 1 && channels != 3))
        return gd_image_fail(name, fmt, err, errlen, "size %dx%d is not the %dx%d expected (or channels %d)", pw, ph, w,
                             h, channels);
    int comp = 0;
    uint8_t *px = NULL;
    if (fmt[0] == 'P') {
        px = gd_png_decode(name, data, len, w, h, &comp, err, errlen);
        if (!px) return -1;
        convert(px, comp, (size_t)w * (size_t)h, channels, out);
        free(px);
        return 0;
    }
    if (fmt[0] == 'J') {
        size_t clen;
        uint8_t *clean = gd_jpeg_check(name, data, len, w, h, &clen, err, errlen);
        if (!clean) return -1;
        px = stb_decode(name, fmt, clean, clen, w, h, &comp, err, errlen);
        free(clean);
    } else if (fmt[0] == 'B') {
        bmp_info b;
        if (bmp_header(name, data, len, &b, err, errlen) != 0 || bmp_check(name, data, len, &b, err, errlen) != 0)
            return -1;
        px = stb_decode(name, fmt, data, len, w, h, &comp, err, errlen);
    } else {
        if (gif_check(name, data, len, err, errlen) != 0) return -1;
        px = stb_decode(name, fmt, data, len, w, h, &comp, err, errlen);
    }
    if (!px) return -1;
    convert(px, comp, (size_t)w * (size_t)h, channels, out);
    stbi_image_free(px);
    return 0;
}
