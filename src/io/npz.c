/* .npz writer (np.savez layout) and reader (np.savez / np.savez_compressed). See
 * include/gd_image.h for the API contract.
 *
 * Writer
 *  - Entries "arr_0.npy" (uint8 NHWC) and, with labels, "arr_1.npy" (int64 [n]), stored (method
 *    0), no data descriptors, as numpy 1.24 writes them: DOS time 1980-01-01 00:00 (so identical
 *    inputs give identical files), "made by" Unix 2.0, external attributes 0600 << 16, no
 *    archive comment. Each member is byte-for-byte what np.save writes: a version 1.0 header
 *    "{'descr': ..., 'fortran_order': False, 'shape': (...), }", numpy's 21-digit growth padding,
 *    spaces and '\n' to a multiple of 64 bytes.
 *  - Zip64 is used only where a field does not fit in 32 bits (sizes or offsets >= 0xFFFFFFFF,
 *    e.g. 50k 256x256 RGB images): a zip64 extra field in that entry's local and central headers
 *    (version needed 4.5), and the zip64 end record + locator when the central directory starts
 *    at or beyond 4 GiB. (numpy itself puts a zip64 extra in every local header; readers do not
 *    care either way.) gd_npz_write_opt(..., force_zip64 = 1) uses zip64 everywhere so tests
 *    can cover that path on small files.
 *  - CRC-32 is computed while writing and patched into each local header with pwrite.
 *  - Written to "<path>.tmp.<pid>", fsync()ed, renamed (helpers in src/util/atomic_file.c).
 *
 * Reader
 *  - Finds the end of central directory record (and the zip64 one when its locator is there),
 *    reads the central directory, and for arr_0.npy / arr_1.npy checks the local header (name,
 *    method) before streaming the member: stored entries with pread, deflated ones through zlib
 *    inflate (raw deflate). Encrypted entries, other methods and multi-disk archives fail.
 *  - Every size and offset is checked against the file and the central directory, the .npy
 *    header (v1.0, v2.0 or 3.0) is parsed as the Python literal numpy writes (a dict with exactly
 *    'descr', 'fortran_order', 'shape'), the shape product is overflow-checked and must match
 *    the member's size exactly, and the CRC-32 of each member read is verified.
 *  - arr_0: '|u1' (or '<u1'/'>u1'), 4-D NHWC or 3-D NHW (c = 1); all dimensions >= 1 and <=
 *    INT_MAX. arr_1 (only read when labels != NULL; optional): '<i8' or '<i4', shape (n,).
 *    fortran_order True is rejected. Other members are ignored; duplicate names are rejected. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_image.h"
#include "gd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

/* Test hook (not in the public header): gd_write_npz with zip64 records forced on. */
int gd_npz_write_opt(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                     int force_zip64, char *err, size_t errlen);

#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP_U32_MAX 0xFFFFFFFFu
#define ZIP_DOS_DATE 0x0021u         /* 1980-01-01 */
#define ZIP_EXT_ATTR (0600u << 16)   /* -rw------- as numpy/zipfile write it */
#define NPY_ALIGN 64
#define NPY_MAX_HEADER (1u << 20)    /* .npy header length limit for the reader */
#define ZIP_MAX_CD ((uint64_t)1 << 26) /* central directory size limit for the reader */
#define CRC_CHUNK ((size_t)1 << 26)


static void put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t len) {
    uLong c = crc;
    while (len > 0) {
        size_t k = len < CRC_CHUNK ? len : CRC_CHUNK;
        c = crc32(c, p, (uInt)k);
        p += k;
        len -= k;
    }
    return (uint32_t)c;
}

/* ========================================================================================== */
/* writer                                                                                     */

/* A .npy v1.0 header exactly as numpy 1.24's format.write_array writes it. Returns its length
 * (a multiple of 64), or 0 if it does not fit. */
static size_t npy_header(char *out, size_t cap, const char *descr, const int64_t *shape, int ndim) {
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, i ? ", %lld" : "%lld", (long long)shape[i]);
    k += snprintf(dict + k, sizeof dict - (size_t)k, "%s), }", ndim == 1 ? "," : "");
    /* numpy leaves room for the first axis to grow to 21 digits */
    char first[32];
    int fl = snprintf(first, sizeof first, "%lld", (long long)shape[0]);
    for (int i = fl; i < 21; i++) dict[k++] = ' ';
    size_t hlen = (size_t)k + 1; /* + '\n' */
    size_t pad = NPY_ALIGN - ((6 + 2 + 2 + hlen) % NPY_ALIGN);
    size_t total = 10 + hlen + pad;
    if (total > cap || hlen + pad > 0xFFFF) return 0;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    put16((uint8_t *)out + 8, (uint32_t)(hlen + pad));
    memcpy(out + 10, dict, (size_t)k);
    memset(out + 10 + k, ' ', pad);
    out[total - 1] = '\n';
    return total;
}

typedef struct {
    uint64_t offset; /* of the local header */
    uint64_t size;   /* of the member (npy header + data) */
    uint32_t crc;
    int zip64_local;
} wentry;

static const char *const entry_names[2] = {"arr_0.npy", "arr_1.npy"};

/* Writes one stored member (local header, npy header, data). Data comes either from `data`
 * (bytes) or from `labels` (serialized to little-endian int64 in chunks). */
static int write_member(FILE *f, uint64_t *pos, wentry *e, const char *name, const char *hdr, size_t hlen,
                        const uint8_t *data, const int64_t *labels, uint64_t nbytes, int force_zip64) {
    e->offset = *pos;
    e->size = hlen + nbytes;
    e->zip64_local = force_zip64 || e->size >= ZIP_U32_MAX;
    uint8_t lh[30 + 9 + 20];
    size_t nl = strlen(name);
    put32(lh, ZIP_LOCAL_SIG);
    put16(lh + 4, e->zip64_local ? 45 : 20);
    put16(lh + 6, 0);  /* flags */
    put16(lh + 8, 0);  /* stored */
    put16(lh + 10, 0); /* time */
    put16(lh + 12, ZIP_DOS_DATE);
    put32(lh + 14, 0); /* CRC, patched later */
    put32(lh + 18, e->zip64_local ? ZIP_U32_MAX : (uint32_t)e->size);
    put32(lh + 22, e->zip64_local ? ZIP_U32_MAX : (uint32_t)e->size);
    put16(lh + 26, (uint32_t)nl);
    put16(lh + 28, e->zip64_local ? 20 : 0);
    memcpy(lh + 30, name, nl);
    size_t lhl = 30 + nl;
    if (e->zip64_local) {
        put16(lh + lhl, 1);
        put16(lh + lhl + 2, 16);
        put64(lh + lhl + 4, e->size);
        put64(lh + lhl + 12, e->size);
        lhl += 20;
    }
    if (fwrite(lh, 1, lhl, f) != lhl || fwrite(hdr, 1, hlen, f) != hlen) return -1;
    uint32_t crc = crc_update(0, (const uint8_t *)hdr, hlen);
    if (data) {
        const size_t chunk = (size_t)1 << 24;
        for (uint64_t off = 0; off < nbytes;) {
            size_t k = nbytes - off < chunk ? (size_t)(nbytes - off) : chunk;
            crc = crc_update(crc, data + off, k);
            if (fwrite(data + off, 1, k, f) != k) return -1;
            off += k;
        }
    } else {
        uint8_t buf[8 * 1024];
        uint64_t count = nbytes / 8;
        for (uint64_t i = 0; i < count;) {
            size_t k = 0;
            for (; k < sizeof buf / 8 && i < count; k++, i++) put64(buf + 8 * k, (uint64_t)labels[i]);
            crc = crc_update(crc, buf, 8 * k);
            if (fwrite(buf, 1, 8 * k, f) != 8 * k) return -1;
        }
    }
    e->crc = crc;
    *pos += lhl + e->size;
    return 0;
}

/* pwrite()s all of buf at off. */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = pwrite(fd, p, len, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

int gd_npz_write_opt(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                     int force_zip64, char *err, size_t errlen) {
    if (!path || !*path) {
        gd_errf(err, errlen, "gd_write_npz: empty path");
        return -1;
    }
    if (!nhwc || n <= 0 || h <= 0 || w <= 0 || c <= 0) {
        gd_errf(err, errlen, "%s: bad npz arguments (n=%d h=%d w=%d c=%d; all must be >= 1)", path, n, h, w, c);
        return -1;
    }
    /* each factor is below 2^31, so n*h fits but the full product may not */
    const uint64_t nh = (uint64_t)n * (uint64_t)h;
    const int fits = nh <= UINT64_MAX / (uint64_t)w && nh * (uint64_t)w <= UINT64_MAX / (uint64_t)c;
    const uint64_t nbytes = fits ? nh * (uint64_t)w * (uint64_t)c : 0;
    if (!fits || nbytes > (uint64_t)SIZE_MAX || nbytes > ((uint64_t)1 << 62)) {
        gd_errf(err, errlen, "%s: %dx%dx%dx%d images are too large", path, n, h, w, c);
        return -1;
    }

    char hdr0[256], hdr1[256];
    const int64_t shape0[4] = {n, h, w, c}, shape1[1] = {n};
    size_t hl0 = npy_header(hdr0, sizeof hdr0, "|u1", shape0, 4);
    size_t hl1 = labels ? npy_header(hdr1, sizeof hdr1, "<i8", shape1, 1) : 0;
    if (!hl0 || (labels && !hl1)) {
        gd_errf(err, errlen, "%s: internal error building the .npy header", path);
        return -1;
    }

    char *tmp;
    FILE *f = gd_atomic_open(path, &tmp, err, errlen);
    if (!f) return -1;
    setvbuf(f, NULL, _IOFBF, (size_t)1 << 20);

    wentry ent[2];
    const int count = labels ? 2 : 1;
    uint64_t pos = 0;
    int ok = write_member(f, &pos, &ent[0], entry_names[0], hdr0, hl0, nhwc, NULL, nbytes, force_zip64) == 0;
    if (ok && labels)
        ok = write_member(f, &pos, &ent[1], entry_names[1], hdr1, hl1, NULL, labels, (uint64_t)n * 8, force_zip64) == 0;

    /* central directory */
    const uint64_t cd_off = pos;
    for (int i = 0; ok && i < count; i++) {
        const wentry *e = &ent[i];
        const int big_size = force_zip64 || e->size >= ZIP_U32_MAX;
        const int big_off = force_zip64 || e->offset >= ZIP_U32_MAX;
        const int z64 = big_size || big_off;
        uint8_t ch[46 + 9 + 28];
        size_t nl = strlen(entry_names[i]);
        size_t xl = (big_size ? 16 : 0) + (big_off ? 8 : 0);
        put32(ch, ZIP_CENTRAL_SIG);
        put16(ch + 4, 0x0300u | (z64 ? 45 : 20)); /* made by: Unix */
        put16(ch + 6, z64 ? 45 : 20);
        put16(ch + 8, 0);
        put16(ch + 10, 0);
        put16(ch + 12, 0);
        put16(ch + 14, ZIP_DOS_DATE);
        put32(ch + 16, e->crc);
        put32(ch + 20, big_size ? ZIP_U32_MAX : (uint32_t)e->size);
        put32(ch + 24, big_size ? ZIP_U32_MAX : (uint32_t)e->size);
        put16(ch + 28, (uint32_t)nl);
        put16(ch + 30, z64 ? (uint32_t)(4 + xl) : 0);
        put16(ch + 32, 0); /* comment */
        put16(ch + 34, 0); /* disk */
        put16(ch + 36, 0); /* internal attributes */
        put32(ch + 38, ZIP_EXT_ATTR);
        put32(ch + 42, big_off ? ZIP_U32_MAX : (uint32_t)e->offset);
        memcpy(ch + 46, entry_names[i], nl);
        size_t l = 46 + nl;
        if (z64) {
            put16(ch + l, 1);
            put16(ch + l + 2, (uint32_t)xl);
            l += 4;
            if (big_size) {
                put64(ch + l, e->size); /* uncompressed */
                put64(ch + l + 8, e->size); /* compressed */
                l += 16;
            }
            if (big_off) {
                put64(ch + l, e->offset);
                l += 8;
            }
        }
        ok = fwrite(ch, 1, l, f) == l;
        pos += l;
    }
    const uint64_t cd_size = pos - cd_off;
    const int z64_end = force_zip64 || cd_off >= ZIP_U32_MAX;
    if (ok && z64_end) {
        uint8_t r[56 + 20];
        put32(r, ZIP64_EOCD_SIG);
        put64(r + 4, 44);
        put16(r + 12, 0x0300u | 45);
        put16(r + 14, 45);
        put32(r + 16, 0);
        put32(r + 20, 0);
        put64(r + 24, (uint64_t)count);
        put64(r + 32, (uint64_t)count);
        put64(r + 40, cd_size);
        put64(r + 48, cd_off);
        put32(r + 56, ZIP64_LOCATOR_SIG);
        put32(r + 60, 0);
        put64(r + 64, pos); /* offset of the zip64 end record */
        put32(r + 72, 1);
        ok = fwrite(r, 1, sizeof r, f) == sizeof r;
        pos += sizeof r;
    }
    if (ok) {
        uint8_t r[22];
        put32(r, ZIP_EOCD_SIG);
        put16(r + 4, 0);
        put16(r + 6, 0);
        put16(r + 8, (uint32_t)count);
        put16(r + 10, (uint32_t)count);
        put32(r + 12, cd_size >= ZIP_U32_MAX ? ZIP_U32_MAX : (uint32_t)cd_size);
        put32(r + 16, z64_end ? ZIP_U32_MAX : (uint32_t)cd_off);
        put16(r + 20, 0);
        ok = fwrite(r, 1, sizeof r, f) == sizeof r;
    }
    /* CRCs into the local headers */
    if (ok) ok = fflush(f) == 0;
    for (int i = 0; ok && i < count; i++) {
        uint8_t b[4];
        put32(b, ent[i].crc);
        ok = pwrite_all(fileno(f), b, 4, ent[i].offset + 14) == 0;
    }
    if (!ok) gd_errf(err, errlen, "%s: write of '%s' failed: %s", path, tmp, strerror(errno));
    return gd_atomic_commit(f, tmp, path, ok, err, errlen);
}

int gd_write_npz(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                 char *err, size_t errlen) {
    return gd_npz_write_opt(path, nhwc, n, h, w, c, labels, 0, err, errlen);
}

/* ========================================================================================== */
/* reader                                                                                     */

typedef struct {
    int fd;
    uint64_t size;
    const char *path;
    char *err;
    size_t errlen;
} reader;

/* Reads exactly len bytes at off; fails (with err) on a short file or an I/O error. */
static int read_at(reader *r, uint64_t off, void *buf, size_t len, const char *what) {
    if (off > r->size || len > r->size - off) {
        gd_errf(r->err, r->errlen, "%s: truncated file (%s at offset %llu, %zu bytes, past the end)", r->path, what,
                (unsigned long long)off, len);
        return -1;
    }
    uint8_t *p = buf;
    while (len > 0) {
        size_t want = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
        ssize_t k = pread(r->fd, p, want, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            gd_errf(r->err, r->errlen, "%s: read error (%s): %s", r->path, what,
                    k < 0 ? strerror(errno) : "unexpected end of file");
            return -1;
        }
        p += k;
        len -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

typedef struct {
    int present;
    uint32_t method, flags, crc;
    uint64_t csize, usize, lho;
    uint64_t data_off; /* filled by open_entry */
} zentry;

/* Parses the zip64 extended information extra field of a central header. */
static int parse_zip64_extra(reader *r, const char *name, const uint8_t *x, size_t xl, zentry *e, int need_u,
                             int need_c, int need_o) {
    size_t i = 0;
    while (i + 4 <= xl) {
        uint32_t id = get16(x + i), sz = get16(x + i + 2);
        if (i + 4 + sz > xl) break;
        if (id == 1) {
            const uint8_t *d = x + i + 4;
            size_t k = 0;
            if (need_u) {
                if (k + 8 > sz) goto bad;
                e->usize = get64(d + k), k += 8;
            }
            if (need_c) {
                if (k + 8 > sz) goto bad;
                e->csize = get64(d + k), k += 8;
            }
            if (need_o) {
                if (k + 8 > sz) goto bad;
                e->lho = get64(d + k), k += 8;
            }
            return 0;
        }
        i += 4 + sz;
    }
bad:
    gd_errf(r->err, r->errlen, "%s: %s: missing or short zip64 extra field", r->path, name);
    return -1;
}

/* Finds the central directory; fills cd_off, cd_size, count and limit (the offset where the
 * end records begin; members and the directory must end before it). */
static int find_central_dir(reader *r, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count, uint64_t *limit) {
    if (r->size < 22) {
        gd_errf(r->err, r->errlen, "%s: not a zip/npz file (%llu bytes)", r->path, (unsigned long long)r->size);
        return -1;
    }
    size_t tail = r->size < 22 + 65535 ? (size_t)r->size : 22 + 65535;
    uint8_t *t = malloc(tail);
    if (!t) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    if (read_at(r, r->size - tail, t, tail, "end of central directory") != 0) {
        free(t);
        return -1;
    }
    long found = -1, loose = -1;
    for (long p = (long)tail - 22; p >= 0; p--) {
        if (get32(t + p) != ZIP_EOCD_SIG) continue;
        size_t clen = get16(t + p + 20);
        if ((size_t)p + 22 + clen == tail) {
            found = p;
            break;
        }
        if (loose < 0 && (size_t)p + 22 + clen <= tail) loose = p;
    }
    if (found < 0) found = loose;
    if (found < 0) {
        free(t);
        gd_errf(r->err, r->errlen, "%s: not a zip/npz file (no end of central directory record)", r->path);
        return -1;
    }
    uint8_t eocd[22];
    memcpy(eocd, t + found, 22);
    free(t);
    const uint64_t eocd_pos = r->size - tail + (uint64_t)found;
    uint32_t disk = get16(eocd + 4), cd_disk = get16(eocd + 6);
    *count = get16(eocd + 10);
    uint64_t entries_disk = get16(eocd + 8);
    *cd_size = get32(eocd + 12);
    *cd_off = get32(eocd + 16);
    *limit = eocd_pos;

    if (eocd_pos >= 20) {
        uint8_t loc[20];
        if (read_at(r, eocd_pos - 20, loc, 20, "zip64 locator") != 0) return -1;
        if (get32(loc) == ZIP64_LOCATOR_SIG) {
            uint64_t z_off = get64(loc + 8);
            if (get32(loc + 4) != 0 || get32(loc + 16) > 1 || z_off > eocd_pos - 20 || eocd_pos - 20 - z_off < 56) {
                gd_errf(r->err, r->errlen, "%s: bad zip64 end of central directory locator", r->path);
                return -1;
            }
            uint8_t z[56];
            if (read_at(r, z_off, z, 56, "zip64 end of central directory") != 0) return -1;
            if (get32(z) != ZIP64_EOCD_SIG) {
                gd_errf(r->err, r->errlen, "%s: bad zip64 end of central directory record", r->path);
                return -1;
            }
            disk = get32(z + 16);
            cd_disk = get32(z + 20);
            entries_disk = get64(z + 24);
            *count = get64(z + 32);
            *cd_size = get64(z + 40);
            *cd_off = get64(z + 48);
            *limit = z_off;
        }
    }
    if (disk != 0 || cd_disk != 0 || entries_disk != *count) {
        gd_errf(r->err, r->errlen, "%s: multi-disk zip archives are not supported", r->path);
        return -1;
    }
    if (*cd_off > *limit || *cd_size > *limit - *cd_off) {
        gd_errf(r->err, r->errlen, "%s: central directory (offset %llu, %llu bytes) lies outside the file", r->path,
                (unsigned long long)*cd_off, (unsigned long long)*cd_size);
        return -1;
    }
    if (*cd_size > ZIP_MAX_CD) {
        gd_errf(r->err, r->errlen, "%s: central directory of %llu bytes is too large", r->path,
                (unsigned long long)*cd_size);
        return -1;
    }
    if (*count > *cd_size / 46) {
        gd_errf(r->err, r->errlen, "%s: central directory claims %llu entries in %llu bytes", r->path,
                (unsigned long long)*count, (unsigned long long)*cd_size);
        return -1;
    }
    return 0;
}

/* Reads the central directory and picks out arr_0.npy and arr_1.npy. */
static int read_central_dir(reader *r, zentry ents[2], uint64_t *members_end) {
    uint64_t cd_off, cd_size, count, limit;
    if (find_central_dir(r, &cd_off, &cd_size, &count, &limit) != 0) return -1;
    *members_end = cd_off;
    uint8_t *cd = malloc(cd_size ? (size_t)cd_size : 1);
    if (!cd) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    if (read_at(r, cd_off, cd, (size_t)cd_size, "central directory") != 0) {
        free(cd);
        return -1;
    }
    size_t p = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (p + 46 > cd_size || get32(cd + p) != ZIP_CENTRAL_SIG) {
            gd_errf(r->err, r->errlen, "%s: bad central directory entry %llu", r->path, (unsigned long long)i);
            goto fail;
        }
        const uint8_t *h = cd + p;
        size_t nl = get16(h + 28), xl = get16(h + 30), cl = get16(h + 32);
        if (p + 46 + nl + xl + cl > cd_size) {
            gd_errf(r->err, r->errlen, "%s: central directory entry %llu overruns the directory", r->path,
                    (unsigned long long)i);
            goto fail;
        }
        const char *name = (const char *)h + 46;
        int which = -1;
        for (int k = 0; k < 2; k++)
            if (nl == 9 && memcmp(name, entry_names[k], 9) == 0) which = k;
        if (which >= 0) {
            zentry *e = &ents[which];
            if (e->present) {
                gd_errf(r->err, r->errlen, "%s: duplicate member %s", r->path, entry_names[which]);
                goto fail;
            }
            e->present = 1;
            e->flags = get16(h + 8);
            e->method = get16(h + 10);
            e->crc = get32(h + 16);
            e->csize = get32(h + 20);
            e->usize = get32(h + 24);
            e->lho = get32(h + 42);
            uint32_t disk = get16(h + 34);
            int nu = e->usize == ZIP_U32_MAX, nc = e->csize == ZIP_U32_MAX, no = e->lho == ZIP_U32_MAX;
            if ((nu || nc || no) &&
                parse_zip64_extra(r, entry_names[which], h + 46 + nl, xl, e, nu, nc, no) != 0)
                goto fail;
            if (disk != 0 && disk != 0xFFFF) {
                gd_errf(r->err, r->errlen, "%s: multi-disk zip archives are not supported", r->path);
                goto fail;
            }
        }
        p += 46 + nl + xl + cl;
    }
    free(cd);
    return 0;
fail:
    free(cd);
    return -1;
}

/* ---- member streams ---------------------------------------------------------------------- */

typedef struct {
    reader *r;
    const zentry *e;
    const char *name;
    uint64_t cpos, upos; /* compressed bytes consumed, uncompressed bytes produced */
    uint32_t crc;
    int zinit;
    z_stream zs;
    uint8_t in[1 << 16];
} mstream;

/* Checks the local header and the member's extent; sets e->data_off. */
static int open_member(reader *r, zentry *e, const char *name, uint64_t members_end, mstream *s) {
    memset(s, 0, sizeof *s);
    s->r = r;
    s->e = e;
    s->name = name;
    if (e->flags & 1u) {
        gd_errf(r->err, r->errlen, "%s: %s is encrypted", r->path, name);
        return -1;
    }
    if (e->method != 0 && e->method != 8) {
        gd_errf(r->err, r->errlen, "%s: %s uses unsupported compression method %u", r->path, name, e->method);
        return -1;
    }
    if (e->method == 0 && e->csize != e->usize) {
        gd_errf(r->err, r->errlen, "%s: %s is stored but its sizes differ (%llu vs %llu)", r->path, name,
                (unsigned long long)e->csize, (unsigned long long)e->usize);
        return -1;
    }
    uint8_t lh[30 + 9];
    if (e->lho > members_end || members_end - e->lho < sizeof lh) {
        gd_errf(r->err, r->errlen, "%s: %s: local header offset %llu is outside the archive", r->path, name,
                (unsigned long long)e->lho);
        return -1;
    }
    if (read_at(r, e->lho, lh, sizeof lh, "local header") != 0) return -1;
    if (get32(lh) != ZIP_LOCAL_SIG || get16(lh + 26) != 9 || memcmp(lh + 30, name, 9) != 0) {
        gd_errf(r->err, r->errlen, "%s: %s: bad local header at offset %llu", r->path, name,
                (unsigned long long)e->lho);
        return -1;
    }
    if (get16(lh + 8) != e->method || (get16(lh + 6) & 1u)) {
        gd_errf(r->err, r->errlen, "%s: %s: local header disagrees with the central directory", r->path, name);
        return -1;
    }
    e->data_off = e->lho + 30 + 9 + get16(lh + 28);
    if (e->data_off > members_end || e->csize > members_end - e->data_off) {
        gd_errf(r->err, r->errlen, "%s: %s: data (offset %llu, %llu bytes) runs past the end of the members", r->path,
                name, (unsigned long long)e->data_off, (unsigned long long)e->csize);
        return -1;
    }
    /* deflate expands at most ~1032:1; anything more is a corrupt (or hostile) size field */
    if (e->method == 8 && e->usize / 1032 > e->csize + 64) {
        gd_errf(r->err, r->errlen, "%s: %s: uncompressed size %llu is impossible for %llu compressed bytes", r->path,
                name, (unsigned long long)e->usize, (unsigned long long)e->csize);
        return -1;
    }
    if (e->method == 8) {
        if (inflateInit2(&s->zs, -MAX_WBITS) != Z_OK) {
            gd_errf(r->err, r->errlen, "%s: %s: inflateInit failed", r->path, name);
            return -1;
        }
        s->zinit = 1;
    }
    return 0;
}

static void close_member(mstream *s) {
    if (s->zinit) inflateEnd(&s->zs);
    s->zinit = 0;
}

/* Fills buf with the next len uncompressed bytes of the member. */
static int member_read(mstream *s, void *buf, size_t len, const char *what) {
    reader *r = s->r;
    const zentry *e = s->e;
    if (len > e->usize - s->upos) {
        gd_errf(r->err, r->errlen, "%s: %s is too short for its %s", r->path, s->name, what);
        return -1;
    }
    if (e->method == 0) {
        if (read_at(r, e->data_off + s->upos, buf, len, s->name) != 0) return -1;
    } else {
        uint8_t *out = buf;
        size_t left = len;
        while (left > 0) {
            if (s->zs.avail_in == 0) {
                uint64_t rem = e->csize - s->cpos;
                if (rem == 0) {
                    gd_errf(r->err, r->errlen, "%s: %s: deflate data ends early (in its %s)", r->path, s->name, what);
                    return -1;
                }
                size_t k = rem < sizeof s->in ? (size_t)rem : sizeof s->in;
                if (read_at(r, e->data_off + s->cpos, s->in, k, s->name) != 0) return -1;
                s->cpos += k;
                s->zs.next_in = s->in;
                s->zs.avail_in = (uInt)k;
            }
            uInt chunk = left < ((size_t)1 << 30) ? (uInt)left : (uInt)1 << 30;
            s->zs.next_out = out;
            s->zs.avail_out = chunk;
            int zr = inflate(&s->zs, Z_NO_FLUSH);
            size_t got = chunk - s->zs.avail_out;
            out += got;
            left -= got;
            if (zr == Z_STREAM_END && left > 0) {
                gd_errf(r->err, r->errlen, "%s: %s: deflate stream ends early (in its %s)", r->path, s->name, what);
                return -1;
            }
            if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && s->zs.avail_in == 0)) {
                gd_errf(r->err, r->errlen, "%s: %s: corrupt deflate data (%s)", r->path, s->name,
                        s->zs.msg ? s->zs.msg : "inflate error");
                return -1;
            }
        }
    }
    s->crc = crc_update(s->crc, buf, len);
    s->upos += len;
    return 0;
}

/* After all declared bytes were read: the deflate stream must end here, and the CRC match. */
static int member_finish(mstream *s) {
    reader *r = s->r;
    if (s->upos != s->e->usize) {
        gd_errf(r->err, r->errlen, "%s: %s has %llu bytes after its data", r->path, s->name,
                (unsigned long long)(s->e->usize - s->upos));
        return -1;
    }
    if (s->e->method == 8) {
        for (;;) {
            uint8_t extra;
            if (s->zs.avail_in == 0 && s->cpos < s->e->csize) {
                uint64_t rem = s->e->csize - s->cpos;
                size_t k = rem < sizeof s->in ? (size_t)rem : sizeof s->in;
                if (read_at(r, s->e->data_off + s->cpos, s->in, k, s->name) != 0) return -1;
                s->cpos += k;
                s->zs.next_in = s->in;
                s->zs.avail_in = (uInt)k;
            }
            s->zs.next_out = &extra;
            s->zs.avail_out = 1;
            int zr = inflate(&s->zs, Z_NO_FLUSH);
            if (s->zs.avail_out == 0) {
                gd_errf(r->err, r->errlen, "%s: %s: deflate data is longer than its declared size", r->path,
                        s->name);
                return -1;
            }
            if (zr == Z_STREAM_END) break;
            if (zr == Z_OK) continue;
            if (zr == Z_BUF_ERROR && s->zs.avail_in == 0 && s->cpos == s->e->csize) {
                gd_errf(r->err, r->errlen, "%s: %s: deflate data ends early", r->path, s->name);
                return -1;
            }
            if (zr != Z_BUF_ERROR) {
                gd_errf(r->err, r->errlen, "%s: %s: corrupt deflate data (%s)", r->path, s->name,
                        s->zs.msg ? s->zs.msg : "inflate error");
                return -1;
            }
        }
    }
    if (s->crc != s->e->crc) {
        gd_errf(r->err, r->errlen, "%s: %s: CRC-32 mismatch (stored %08x, computed %08x)", r->path, s->name,
                s->e->crc, s->crc);
        return -1;
    }
    return 0;
}

/* ---- .npy header ------------------------------------------------------------------------- */

#define NPY_MAX_DIMS 8

typedef struct {
    char descr[16];
    int fortran;
    int ndim;
    uint64_t shape[NPY_MAX_DIMS];
} npy_info;

typedef struct {
    const char *p, *end;
} lexer;

static void skip_ws(lexer *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}

static int lex_char(lexer *l, char c) {
    skip_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A Python string literal without escapes: '...' or "...". */
static int lex_string(lexer *l, char *out, size_t cap) {
    skip_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return 0;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || n + 1 >= cap) return 0;
        out[n++] = *l->p++;
    }
    if (l->p >= l->end) return 0;
    l->p++;
    out[n] = '\0';
    return 1;
}

static int lex_word(lexer *l, const char *w) {
    skip_ws(l);
    size_t n = strlen(w);
    if ((size_t)(l->end - l->p) < n || memcmp(l->p, w, n) != 0) return 0;
    const char *after = l->p + n;
    if (after < l->end && ((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                           (*after >= '0' && *after <= '9') || *after == '_'))
        return 0;
    l->p = after;
    return 1;
}

/* A non-negative decimal integer below 2^62. */
static int lex_uint(lexer *l, uint64_t *v) {
    skip_ws(l);
    if (l->p >= l->end || *l->p < '0' || *l->p > '9') return 0;
    uint64_t x = 0;
    while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
        x = x * 10 + (uint64_t)(*l->p++ - '0');
        if (x >= ((uint64_t)1 << 62)) return 0;
    }
    *v = x;
    return 1;
}

/* Parses the header dict; returns NULL or a static description of what is wrong. */
static const char *parse_npy_dict(const char *s, size_t len, npy_info *info) {
    lexer l = {s, s + len};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!lex_char(&l, '{')) return "header is not a dict";
    for (;;) {
        if (lex_char(&l, '}')) break;
        char key[32];
        if (!lex_string(&l, key, sizeof key)) return "bad key in header";
        if (!lex_char(&l, ':')) return "missing ':' in header";
        if (strcmp(key, "descr") == 0) {
            if (have_descr++) return "duplicate 'descr'";
            if (!lex_string(&l, info->descr, sizeof info->descr)) return "'descr' is not a simple dtype string";
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_fortran++) return "duplicate 'fortran_order'";
            if (lex_word(&l, "True"))
                info->fortran = 1;
            else if (lex_word(&l, "False"))
                info->fortran = 0;
            else
                return "'fortran_order' is not True or False";
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++) return "duplicate 'shape'";
            if (!lex_char(&l, '(')) return "'shape' is not a tuple";
            int nd = 0, trailing_comma = 0;
            for (;;) {
                if (lex_char(&l, ')')) break;
                if (nd == NPY_MAX_DIMS) return "'shape' has too many dimensions";
                if (!lex_uint(&l, &info->shape[nd])) return "bad dimension in 'shape'";
                nd++;
                trailing_comma = lex_char(&l, ',');
                if (!trailing_comma) {
                    if (!lex_char(&l, ')')) return "bad 'shape' tuple";
                    break;
                }
            }
            if (nd == 1 && !trailing_comma) return "'shape' is not a tuple";
            info->ndim = nd;
        } else {
            return "unexpected key in header";
        }
        if (!lex_char(&l, ',')) {
            if (!lex_char(&l, '}')) return "bad separator in header";
            break;
        }
    }
    if (!have_descr || !have_fortran || !have_shape) return "header lacks 'descr', 'fortran_order' or 'shape'";
    skip_ws(&l);
    if (l.p != l.end) return "junk after the header dict";
    return NULL;
}

/* Reads and parses the .npy preamble of a member; returns the header's total length. */
static int read_npy_header(mstream *s, npy_info *info, uint64_t *prefix) {
    reader *r = s->r;
    uint8_t pre[12];
    if (member_read(s, pre, 8, ".npy magic") != 0) return -1;
    if (memcmp(pre, "\x93NUMPY", 6) != 0) {
        gd_errf(r->err, r->errlen, "%s: %s is not a .npy file (bad magic)", r->path, s->name);
        return -1;
    }
    uint32_t hl;
    if (pre[6] == 1 && pre[7] == 0) {
        if (member_read(s, pre + 8, 2, ".npy header length") != 0) return -1;
        hl = get16(pre + 8);
        *prefix = 10;
    } else if ((pre[6] == 2 || pre[6] == 3) && pre[7] == 0) { /* 3.0: UTF-8 header; we accept ASCII */
        if (member_read(s, pre + 8, 4, ".npy header length") != 0) return -1;
        hl = get32(pre + 8);
        *prefix = 12;
    } else {
        gd_errf(r->err, r->errlen, "%s: %s: unsupported .npy version %u.%u", r->path, s->name, pre[6], pre[7]);
        return -1;
    }
    if (hl > NPY_MAX_HEADER) {
        gd_errf(r->err, r->errlen, "%s: %s: .npy header of %u bytes is too large", r->path, s->name, hl);
        return -1;
    }
    char *h = malloc(hl ? hl : 1);
    if (!h) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    if (member_read(s, h, hl, ".npy header") != 0) {
        free(h);
        return -1;
    }
    for (uint32_t i = 0; i < hl; i++)
        if ((unsigned char)h[i] >= 0x7F || ((unsigned char)h[i] < 0x20 && h[i] != '\n' && h[i] != '\t' && h[i] != '\r')) {
            free(h);
            gd_errf(r->err, r->errlen, "%s: %s: .npy header has a non-ASCII byte", r->path, s->name);
            return -1;
        }
    memset(info, 0, sizeof *info);
    const char *why = parse_npy_dict(h, hl, info);
    free(h);
    if (why) {
        gd_errf(r->err, r->errlen, "%s: %s: bad .npy header: %s", r->path, s->name, why);
        return -1;
    }
    if (info->fortran) {
        gd_errf(r->err, r->errlen, "%s: %s: fortran_order True is not supported", r->path, s->name);
        return -1;
    }
    *prefix += hl;
    return 0;
}

/* Element count with overflow check; the data must fill the rest of the member exactly. */
static int check_payload(mstream *s, const npy_info *info, uint64_t prefix, size_t itemsize, uint64_t *nbytes) {
    reader *r = s->r;
    uint64_t count = 1;
    for (int i = 0; i < info->ndim; i++) {
        if (info->shape[i] != 0 && count > UINT64_MAX / itemsize / info->shape[i]) {
            gd_errf(r->err, r->errlen, "%s: %s: shape product overflows", r->path, s->name);
            return -1;
        }
        count *= info->shape[i];
    }
    uint64_t bytes = count * itemsize;
    if (s->e->usize < prefix || s->e->usize - prefix != bytes) {
        gd_errf(r->err, r->errlen, "%s: %s: member holds %llu data bytes but its shape needs %llu", r->path, s->name,
                (unsigned long long)(s->e->usize >= prefix ? s->e->usize - prefix : 0), (unsigned long long)bytes);
        return -1;
    }
    if (bytes > (uint64_t)SIZE_MAX) {
        gd_errf(r->err, r->errlen, "%s: %s is too large for this machine", r->path, s->name);
        return -1;
    }
    *nbytes = bytes;
    return 0;
}

static int read_images(reader *r, zentry *e, uint64_t members_end, uint8_t **images, int dims[4]) {
    mstream *s = malloc(sizeof *s);
    if (!s) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    const char *name = entry_names[0];
    npy_info info;
    uint64_t prefix, nbytes;
    uint8_t *data = NULL;
    int rc = -1;
    if (open_member(r, e, name, members_end, s) != 0) goto done;
    if (read_npy_header(s, &info, &prefix) != 0) goto done;
    if (strcmp(info.descr, "|u1") != 0 && strcmp(info.descr, "<u1") != 0 && strcmp(info.descr, ">u1") != 0) {
        gd_errf(r->err, r->errlen, "%s: %s has dtype '%s', expected uint8 ('|u1')", r->path, name, info.descr);
        goto done;
    }
    if (info.ndim != 4 && info.ndim != 3) {
        gd_errf(r->err, r->errlen, "%s: %s has %d dimensions, expected 4 (NHWC) or 3 (NHW)", r->path, name,
                info.ndim);
        goto done;
    }
    if (info.ndim == 3) info.shape[3] = 1;
    for (int i = 0; i < 4; i++)
        if (info.shape[i] == 0 || info.shape[i] > INT_MAX) {
            gd_errf(r->err, r->errlen, "%s: %s: dimension %d is %llu (must be 1..%d)", r->path, name, i,
                    (unsigned long long)info.shape[i], INT_MAX);
            goto done;
        }
    if (check_payload(s, &info, prefix, 1, &nbytes) != 0) goto done;
    data = malloc((size_t)nbytes);
    if (!data) {
        gd_errf(r->err, r->errlen, "%s: out of memory for %llu bytes of images", r->path, (unsigned long long)nbytes);
        goto done;
    }
    if (member_read(s, data, (size_t)nbytes, "data") != 0 || member_finish(s) != 0) goto done;
    for (int i = 0; i < 4; i++) dims[i] = (int)info.shape[i];
    *images = data;
    data = NULL;
    rc = 0;
done:
    free(data);
    close_member(s);
    free(s);
    return rc;
}

static int read_labels(reader *r, zentry *e, uint64_t members_end, int n, int64_t **labels) {
    mstream *s = malloc(sizeof *s);
    if (!s) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    const char *name = entry_names[1];
    npy_info info;
    uint64_t prefix, nbytes;
    uint8_t *raw = NULL;
    int64_t *out = NULL;
    int rc = -1;
    size_t isz;
    if (open_member(r, e, name, members_end, s) != 0) goto done;
    if (read_npy_header(s, &info, &prefix) != 0) goto done;
    if (strcmp(info.descr, "<i8") == 0) {
        isz = 8;
    } else if (strcmp(info.descr, "<i4") == 0) {
        isz = 4;
    } else {
        gd_errf(r->err, r->errlen, "%s: %s has dtype '%s', expected '<i8' or '<i4'", r->path, name, info.descr);
        goto done;
    }
    if (info.ndim != 1 || info.shape[0] != (uint64_t)n) {
        gd_errf(r->err, r->errlen, "%s: %s must have shape (%d,) to match arr_0", r->path, name, n);
        goto done;
    }
    if (check_payload(s, &info, prefix, isz, &nbytes) != 0) goto done;
    raw = malloc((size_t)nbytes);
    out = malloc((size_t)n * sizeof *out);
    if (!raw || !out) {
        gd_errf(r->err, r->errlen, "%s: out of memory for labels", r->path);
        goto done;
    }
    if (member_read(s, raw, (size_t)nbytes, "data") != 0 || member_finish(s) != 0) goto done;
    for (int i = 0; i < n; i++)
        out[i] = isz == 8 ? (int64_t)get64(raw + 8 * (size_t)i) : (int64_t)(int32_t)get32(raw + 4 * (size_t)i);
    *labels = out;
    out = NULL;
    rc = 0;
done:
    free(raw);
    free(out);
    close_member(s);
    free(s);
    return rc;
}

int gd_read_npz(const char *path, uint8_t **images, int *n, int *h, int *w, int *c, int64_t **labels,
                char *err, size_t errlen) {
    if (images) *images = NULL;
    if (labels) *labels = NULL;
    if (!path || !images || !n || !h || !w || !c) {
        gd_errf(err, errlen, "gd_read_npz: %s: NULL argument", path ? path : "(null path)");
        return -1;
    }
    reader r = {-1, 0, path, err, errlen};
    r.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0) {
        gd_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(r.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gd_errf(err, errlen, "%s: not a regular file", path);
        close(r.fd);
        return -1;
    }
    r.size = (uint64_t)st.st_size;

    zentry ents[2];
    memset(ents, 0, sizeof ents);
    uint64_t members_end;
    uint8_t *img = NULL;
    int64_t *lab = NULL;
    int dims[4];
    int rc = -1;
    if (read_central_dir(&r, ents, &members_end) != 0) goto done;
    if (!ents[0].present) {
        gd_errf(err, errlen, "%s: no arr_0.npy in the archive", path);
        goto done;
    }
    if (read_images(&r, &ents[0], members_end, &img, dims) != 0) goto done;
    if (labels && ents[1].present && read_labels(&r, &ents[1], members_end, dims[0], &lab) != 0) goto done;
    *images = img;
    img = NULL;
    if (labels) *labels = lab;
    lab = NULL;
    *n = dims[0];
    *h = dims[1];
    *w = dims[2];
    *c = dims[3];
    if (err && errlen) err[0] = '\0';
    rc = 0;
done:
    free(img);
    free(lab);
    close(r.fd);
    return rc;
}
