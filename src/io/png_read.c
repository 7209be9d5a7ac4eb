/* PNG reader for dataset images (see io/image_decode.h for why it is not stb_image's).
 *  - Structure: the signature, IHDR first (13 bytes; size 1..2^31-1; a legal bit depth for the
 *    colour type; compression, filter method 0; interlace 0 or 1), then chunks whose lengths fit
 *    in the file and whose CRC-32s match, PLTE (1..256 entries, only for colour images, before
 *    IDAT; required for palette images), consecutive IDATs, IEND. Unknown critical chunks
 *    (e.g. Apple's CgBI) are refused; ancillary ones are skipped; bytes after IEND are ignored.
 *  - Size: before any allocation, the IDAT bytes must be able to hold the image (deflate
 *    expands at most 1032:1), so a small file cannot ask for a large buffer. zlib inflates
 *    into a buffer of exactly the size the header implies; data beyond it is ignored (as PIL
 *    does), data short of it is an error.
 *  - Pixels as stb_image gave them, which the dataset tests compare with PIL: 16-bit samples
 *    keep their high byte, gray of 1, 2 or 4 bits is scaled to 0..255, palette entries are
 *    looked up (an index past the palette is an error), alpha and tRNS are dropped (PIL's
 *    convert("RGB") and convert("L") drop them too), Adam7 is de-interlaced. */
#define _POSIX_C_SOURCE 200809L
#include "io/image_decode.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PNG_MAX_CHUNK 0x7FFFFFFFu
#define DEFLATE_MAX_RATIO 1032u

typedef struct {
    uint32_t w, h;
    int depth, ctype, interlace;
    int samples; /* per pixel: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA, 1 palette index */
} png_hdr;

typedef struct {
    const char *name;
    char *err;
    size_t errlen;
} png_ctx;

#define PNG_FAIL(c, ...) gd_image_fail((c)->name, "PNG", (c)->err, (c)->errlen, __VA_ARGS__)

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int png_header(const png_ctx *c, const uint8_t *d, size_t n, png_hdr *hd) {
    if (n < 8 + 25) return PNG_FAIL(c, "truncated: the file (%zu bytes) ends inside the IHDR chunk", n);
    if (be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0)
        return PNG_FAIL(c, "the first chunk is not a 13-byte IHDR");
    hd->w = be32(d + 16), hd->h = be32(d + 20);
    hd->depth = d[24], hd->ctype = d[25], hd->interlace = d[28];
    if (hd->w == 0 || hd->h == 0 || hd->w > PNG_MAX_CHUNK || hd->h > PNG_MAX_CHUNK)
        return PNG_FAIL(c, "IHDR gives a size of %ux%u", (unsigned)hd->w, (unsigned)hd->h);
    static const int samples[7] = {1, 0, 3, 1, 2, 0, 4};
    int t = hd->ctype, b = hd->depth;
    int ok = t <= 6 && samples[t] != 0 &&
             (t == 0   ? (b == 1 || b == 2 || b == 4 || b == 8 || b == 16)
              : t == 3 ? (b == 1 || b == 2 || b == 4 || b == 8)
                       : (b == 8 || b == 16));
    if (!ok) return PNG_FAIL(c, "bit depth %d with colour type %d is not a PNG format", b, t);
    if (d[26] != 0 || d[27] != 0 || hd->interlace > 1)
        return PNG_FAIL(c, "unknown compression, filter or interlace method in IHDR (%d, %d, %d)", d[26], d[27],
                        hd->interlace);
    hd->samples = samples[t];
    return 0;
}

int gd_png_probe(const char *name, const uint8_t *d, size_t n, int *w, int *h, char *err, size_t errlen) {
    png_ctx c = {name, err, errlen};
    png_hdr hd = {0};
    if (png_header(&c, d, n, &hd) != 0) return -1;
    *w = (int)hd.w, *h = (int)hd.h;
    return 0;
}

/* Adam7: pass p starts at (x0, y0) and steps (dx, dy); pass 0 of a plain image is the image. */
static const int A7_X0[7] = {0, 4, 0, 2, 0, 1, 0}, A7_Y0[7] = {0, 0, 4, 0, 2, 0, 1};
static const int A7_DX[7] = {8, 8, 4, 4, 2, 2, 1}, A7_DY[7] = {8, 8, 8, 4, 4, 2, 2};

static void pass_size(const png_hdr *hd, int p, uint32_t *pw, uint32_t *ph) {
    if (!hd->interlace) {
        *pw = hd->w, *ph = hd->h;
        return;
    }
    *pw = hd->w > (uint32_t)A7_X0[p] ? (hd->w - (uint32_t)A7_X0[p] + (uint32_t)A7_DX[p] - 1) / (uint32_t)A7_DX[p] : 0;
    *ph = hd->h > (uint32_t)A7_Y0[p] ? (hd->h - (uint32_t)A7_Y0[p] + (uint32_t)A7_DY[p] - 1) / (uint32_t)A7_DY[p] : 0;
}

static uint64_t row_bytes(const png_hdr *hd, uint32_t pw) {
    return ((uint64_t)pw * (uint64_t)(hd->depth * hd->samples) + 7) / 8;
}

/* Filtered bytes (a filter byte per row of each pass) the image inflates to. */
static uint64_t raw_size(const png_hdr *hd) {
    uint64_t total = 0;
    for (int p = 0; p < (hd->interlace ? 7 : 1); p++) {
        uint32_t pw, ph;
        pass_size(hd, p, &pw, &ph);
        if (pw && ph) total += (uint64_t)ph * (1 + row_bytes(hd, pw));
    }
    return total;
}

typedef struct {
    uint8_t pal[256 * 3];
    int npal;
    uint64_t idat_bytes;
} png_chunks;

/* Walks every chunk (lengths, CRCs, order); collects the palette and the IDAT byte count. */
static int png_walk(const png_ctx *c, const uint8_t *d, size_t n, const png_hdr *hd, png_chunks *pc) {
    size_t pos = 8;
    int idat = 0, plte = 0; /* idat: 0 none yet, 1 in the IDAT run, 2 after it */
    memset(pc, 0, sizeof *pc);
    for (int first = 1;; first = 0) {
        if (n - pos < 12) return PNG_FAIL(c, "truncated: the file (%zu bytes) ends before the IEND chunk", n);
        uint32_t len = be32(d + pos);
        const uint8_t *type = d + pos + 4, *data = d + pos + 8;
        if (len > PNG_MAX_CHUNK) return PNG_FAIL(c, "chunk length %u at offset %zu is over 2^31-1", (unsigned)len, pos);
        for (int k = 0; k < 4; k++)
            if (!((type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z')))
                return PNG_FAIL(c, "bad chunk type at offset %zu", pos + 4);
        char tn[5] = {(char)type[0], (char)type[1], (char)type[2], (char)type[3], 0};
        if (len > n - pos - 12)
            return PNG_FAIL(c, "truncated: chunk '%s' at offset %zu needs %u bytes, the file has %zu left", tn, pos,
                            (unsigned)len, n - pos - 12);
        if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), type, (uInt)len + 4) != be32(data + len))
            return PNG_FAIL(c, "chunk '%s' at offset %zu has a bad CRC", tn, pos);
        if (idat == 1 && memcmp(tn, "IDAT", 4) != 0) idat = 2;
        if (!memcmp(tn, "IHDR", 4)) {
            if (!first) return PNG_FAIL(c, "a second IHDR chunk at offset %zu", pos);
        } else if (!memcmp(tn, "PLTE", 4)) {
            if (idat || plte++) return PNG_FAIL(c, "PLTE chunk after IDAT or repeated");
            if (hd->ctype == 0 || hd->ctype == 4) return PNG_FAIL(c, "PLTE chunk in a grayscale image");
            if (len == 0 || len % 3 || len > 768) return PNG_FAIL(c, "PLTE chunk of %u bytes", (unsigned)len);
            memcpy(pc->pal, data, len);
            pc->npal = (int)(len / 3);
        } else if (!memcmp(tn, "IDAT", 4)) {
            if (idat == 2) return PNG_FAIL(c, "IDAT chunks are not consecutive");
            if (hd->ctype == 3 && !plte) return PNG_FAIL(c, "palette image without a PLTE chunk before IDAT");
            idat = 1;
            pc->idat_bytes += len;
        } else if (!memcmp(tn, "IEND", 4)) {
            if (!idat) return PNG_FAIL(c, "no IDAT chunk before IEND");
            return 0;
        } else if (!(type[0] & 0x20)) {
            return PNG_FAIL(c, "unknown critical chunk '%s'", tn);
        }
        pos += 12 + (size_t)len;
    }
}

/* Inflates the IDAT run into raw (exactly rawlen bytes). */
static int png_inflate(const png_ctx *c, const uint8_t *d, size_t n, uint8_t *raw, size_t rawlen) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return PNG_FAIL(c, "out of memory");
    zs.next_out = raw;
    int rc = Z_OK, seen = 0;
    for (size_t pos = 8; pos + 12 <= n && rc == Z_OK && zs.total_out < rawlen;) {
        uint32_t len = be32(d + pos);
        int is_idat = !memcmp(d + pos + 4, "IDAT", 4);
        if (!is_idat && seen) break;
        seen |= is_idat;
        const uint8_t *p = d + pos + 8;
        for (size_t left = is_idat ? len : 0; left > 0 && rc == Z_OK && zs.total_out < rawlen;) {
            uInt in = left > (1u << 30) ? (1u << 30) : (uInt)left;
            zs.next_in = (Bytef *)(uintptr_t)p;
            zs.avail_in = in;
            zs.avail_out = (uInt)(rawlen - zs.total_out);
            rc = inflate(&zs, Z_NO_FLUSH);
            if (rc == Z_BUF_ERROR) rc = Z_OK; /* needs the next chunk */
            size_t used = in - zs.avail_in;
            p += used, left -= used;
            if (used == 0 && rc == Z_OK && zs.total_out < rawlen) rc = Z_BUF_ERROR;
        }
        pos += 12 + (size_t)len;
    }
    size_t got = zs.total_out;
    const char *msg = zs.msg;
    inflateEnd(&zs);
    if (rc != Z_OK && rc != Z_STREAM_END && got < rawlen)
        return PNG_FAIL(c, "corrupt image data (zlib: %s)",
                        msg                 ? msg
                        : rc == Z_NEED_DICT ? "preset dictionary"
                                            : "error");
    if (got < rawlen)
        return PNG_FAIL(c, "truncated: the image data inflates to %zu of the %zu bytes the image needs", got, rawlen);
    return 0;
}

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undoes row filters in place (row and prev: rb bytes; prev NULL for a pass's first row). */
static int unfilter(int f, uint8_t *row, const uint8_t *prev, size_t rb, size_t bpp) {
    for (size_t i = 0; i < rb; i++) {
        int a = i >= bpp ? row[i - bpp] : 0, b = prev ? prev[i] : 0, cc = prev && i >= bpp ? prev[i - bpp] : 0;
        switch (f) {
        case 0:
            break;
        case 1:
            row[i] = (uint8_t)(row[i] + a);
            break;
        case 2:
            row[i] = (uint8_t)(row[i] + b);
            break;
        case 3:
            row[i] = (uint8_t)(row[i] + ((a + b) >> 1));
            break;
        case 4:
            row[i] = (uint8_t)(row[i] + paeth(a, b, cc));
            break;
        default:
            return -1;
        }
    }
    return 0;
}

/* Sample s of pixel x of an unfiltered row, as 8 bits (or the raw palette index). */
static int sample(const png_hdr *hd, const uint8_t *row, uint32_t x, int s) {
    size_t i = (size_t)x * (size_t)hd->samples + (size_t)s;
    if (hd->depth == 8) return row[i];
    if (hd->depth == 16) return row[2 * i];
    int bits = hd->depth, per = 8 / bits;
    int v = (row[i / (size_t)per] >> (8 - bits * (int)(i % (size_t)per + 1))) & ((1 << bits) - 1);
    return hd->ctype == 3 ? v : v * (255 / ((1 << bits) - 1));
}

/* Unfilters raw pass by pass and scatters the pixels into px (gray or RGB). */
static int png_pixels(const png_ctx *c, const png_hdr *hd, const png_chunks *pc, uint8_t *raw, uint8_t *px, int comp) {
    size_t bpp = (size_t)(hd->depth * hd->samples + 7) / 8, off = 0;
    for (int p = 0; p < (hd->interlace ? 7 : 1); p++) {
        uint32_t pw, ph;
        pass_size(hd, p, &pw, &ph);
        if (!pw || !ph) continue;
        size_t rb = (size_t)row_bytes(hd, pw);
        int x0 = hd->interlace ? A7_X0[p] : 0, y0 = hd->interlace ? A7_Y0[p] : 0;
        int dx = hd->interlace ? A7_DX[p] : 1, dy = hd->interlace ? A7_DY[p] : 1;
        const uint8_t *prev = NULL;
        for (uint32_t y = 0; y < ph; y++) {
            uint8_t *row = raw + off + 1;
            if (unfilter(raw[off], row, prev, rb, bpp) != 0)
                return PNG_FAIL(c, "unknown filter type %d in row %u", raw[off], (unsigned)y);
            for (uint32_t x = 0; x < pw; x++) {
                uint8_t *o =
                    px + ((size_t)(y0 + (size_t)y * (size_t)dy) * hd->w + x0 + (size_t)x * (size_t)dx) * (size_t)comp;
                if (hd->ctype == 3) {
                    int k = sample(hd, row, x, 0);
                    if (k >= pc->npal) return PNG_FAIL(c, "palette index %d past the %d PLTE entries", k, pc->npal);
                    memcpy(o, pc->pal + 3 * k, 3);
                } else {
                    for (int s = 0; s < comp; s++)
                        o[s] = (uint8_t)sample(hd, row, x, s);
                }
            }
            prev = row;
            off += rb + 1;
        }
    }
    return 0;
}

uint8_t *gd_png_decode(const char *name, const uint8_t *d, size_t n, int w, int h, int *comp, char *err,
                       size_t errlen) {
    png_ctx c = {name, err, errlen};
    png_hdr hd = {0};
    png_chunks pc;
    if (png_header(&c, d, n, &hd) != 0) return NULL;
    if (hd.w != (uint32_t)w || hd.h != (uint32_t)h || (int64_t)w * h > GD_IMAGE_MAX_PIXELS) {
        PNG_FAIL(&c, "size %ux%u is not the %dx%d expected", (unsigned)hd.w, (unsigned)hd.h, w, h);
        return NULL;
    }
    if (png_walk(&c, d, n, &hd, &pc) != 0) return NULL;
    uint64_t rawlen = raw_size(&hd);
    if (rawlen > pc.idat_bytes * DEFLATE_MAX_RATIO + 64) {
        PNG_FAIL(&c, "truncated: %llu bytes of image data cannot hold %ux%u pixels (%llu bytes inflated)",
                 (unsigned long long)pc.idat_bytes, (unsigned)hd.w, (unsigned)hd.h, (unsigned long long)rawlen);
        return NULL;
    }
    *comp = hd.ctype == 0 || hd.ctype == 4 ? 1 : 3;
    uint8_t *raw = malloc((size_t)rawlen), *px = malloc((size_t)w * (size_t)h * (size_t)*comp);
    if (!raw || !px) {
        PNG_FAIL(&c, "out of memory for a %dx%d image", w, h);
    } else if (png_inflate(&c, d, n, raw, (size_t)rawlen) == 0 && png_pixels(&c, &hd, &pc, raw, px, *comp) == 0) {
        free(raw);
        return px;
    }
    free(raw);
    free(px);
    return NULL;
}
