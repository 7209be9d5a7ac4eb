/* .npz writer in np.savez's layout. See include/gd_image.h for the API contract and io/zip.h
 * for the zip container.
 *  - Entries "arr_0.npy" (uint8 NHWC) and, with labels, "arr_1.npy" (int64 [n]). Each member is
 *    byte-for-byte what np.save writes: a version 1.0 header
 *    "{'descr': ..., 'fortran_order': False, 'shape': (...), }", numpy's 21-digit growth padding,
 *    spaces and '\n' to a multiple of 64 bytes.
 *  - Written to "<path>.tmp.<pid>", fsync()ed, renamed (helpers in src/util/atomic_file.c). */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_image.h"
#include "gd_util.h"
#include "io/npy.h"
#include "io/zip.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Test hook (not in the public header): gd_write_npz with zip64 records forced on. */
int gd_npz_write_opt(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                     int force_zip64, char *err, size_t errlen);

#define NPY_ALIGN 64

size_t npy_write_header(char *out, size_t cap, const char *descr, const int64_t *shape, int ndim) {
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, i ? ", %lld" : "%lld", (long long)shape[i]);
    k += snprintf(dict + k, sizeof dict - (size_t)k, "%s), }", ndim == 1 ? "," : "");
    /* numpy leaves room for the first axis to grow to 21 digits */
    char first[32];
    int fl = snprintf(first, sizeof first, "%lld", (long long)shape[0]);
    if (k + 21 + 1 > (int)sizeof dict) return 0;
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

/* Writes one stored member (local header, npy header, data). Data comes either from `data`
 * (bytes) or from `labels` (serialized to little-endian int64 in chunks). */
static int write_member(FILE *f, uint64_t *pos, zip_wentry *e, const char *name, const char *hdr, size_t hlen,
                        const uint8_t *data, const int64_t *labels, uint64_t nbytes, int force_zip64) {
    if (zip_write_local_header(f, pos, e, name, hlen + nbytes, force_zip64) != 0 || fwrite(hdr, 1, hlen, f) != hlen)
        return -1;
    uint32_t crc = zip_crc32(0, (const uint8_t *)hdr, hlen);
    if (data) {
        const size_t chunk = (size_t)1 << 24;
        for (uint64_t off = 0; off < nbytes;) {
            size_t k = nbytes - off < chunk ? (size_t)(nbytes - off) : chunk;
            crc = zip_crc32(crc, data + off, k);
            if (fwrite(data + off, 1, k, f) != k) return -1;
            off += k;
        }
    } else {
        uint8_t buf[8 * 1024];
        uint64_t count = nbytes / 8;
        for (uint64_t i = 0; i < count;) {
            size_t k = 0;
            for (; k < sizeof buf / 8 && i < count; k++, i++) put64(buf + 8 * k, (uint64_t)labels[i]);
            crc = zip_crc32(crc, buf, 8 * k);
            if (fwrite(buf, 1, 8 * k, f) != 8 * k) return -1;
        }
    }
    e->crc = crc;
    *pos += e->size;
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
    size_t hl0 = npy_write_header(hdr0, sizeof hdr0, "|u1", shape0, 4);
    size_t hl1 = labels ? npy_write_header(hdr1, sizeof hdr1, "<i8", shape1, 1) : 0;
    if (!hl0 || (labels && !hl1)) {
        gd_errf(err, errlen, "%s: internal error building the .npy header", path);
        return -1;
    }

    char *tmp;
    FILE *f = gd_atomic_open(path, &tmp, err, errlen);
    if (!f) return -1;
    setvbuf(f, NULL, _IOFBF, (size_t)1 << 20);

    zip_wentry ent[2];
    const int count = labels ? 2 : 1;
    uint64_t pos = 0;
    int ok = write_member(f, &pos, &ent[0], npz_entry_names[0], hdr0, hl0, nhwc, NULL, nbytes, force_zip64) == 0;
    if (ok && labels)
        ok = write_member(f, &pos, &ent[1], npz_entry_names[1], hdr1, hl1, NULL, labels, (uint64_t)n * 8,
                          force_zip64) == 0;
    if (ok) ok = zip_write_directory(f, pos, ent, npz_entry_names, count, force_zip64) == 0;
    if (ok) ok = zip_patch_crcs(f, ent, count) == 0;
    if (!ok) gd_errf(err, errlen, "%s: write of '%s' failed: %s", path, tmp, strerror(errno));
    return gd_atomic_commit(f, tmp, path, ok, err, errlen);
}

int gd_write_npz(const char *path, const uint8_t *nhwc, int n, int h, int w, int c, const int64_t *labels,
                 char *err, size_t errlen) {
    return gd_npz_write_opt(path, nhwc, n, h, w, c, labels, 0, err, errlen);
}
