/* Streaming .npz: arr_0 read a batch at a time, float arrays by name, and a reference-batch writer
 * (include/gd_image.h). The zip container is io/zip.h; the .npy header parser is npz_read.c's
 * (io/npy.h), so the stream accepts and refuses exactly what gd_read_npz does for arr_0.
 *
 * Reading
 *  - gd_npz_stream keeps the file open and one zip_stream (a 64 KiB input buffer, and zlib's
 *    state with its 32 KiB window for a deflated member): memory does not grow with the array.
 *    Stored members are pread() straight into the caller's batch. The deflate end and the CRC-32
 *    are checked when the last image is read (so the call that delivers it fails on a mismatch).
 *    After a failed read the stream refuses further reads.
 *  - Member lookup as numpy's NpzFile: the exact name first, else NAME + ".npy".
 *  - gd_npz_read_f64 converts in 64 KiB chunks into the malloc()ed result; '<f4' / '<f8' only
 *    (byte order must be little), C order, 1..4 dimensions (a dimension may be 0).
 *
 * Writing
 *  - np.savez's layout: stored members "arr_0.npy" then "<name>.npy" in call order, each a
 *    .npy v1.0 member byte-identical to np.save's (the header of npz_write.c).
 *  - The size of every member is known before its data, so each local header is written with its
 *    final size (zip64 extra when a size reaches 0xFFFFFFFF, as a 50000x256x256x3 arr_0 does:
 *    9.8 GB) and only the CRC-32 is patched at commit (zip_patch_crcs); members and the central
 *    directory beyond 4 GiB get zip64 offsets and end records (zip_write_directory).
 *  - "<path>.tmp.<pid>" (gd_atomic_open, so gd_atomic_remove_stale knows a killed writer's file),
 *    fsync()ed and renamed at commit. A write error poisons the writer: every later call fails and
 *    commit removes the temporary. Argument errors (too many images, a bad name) change nothing. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#define _FILE_OFFSET_BITS 64

#include "gd_image.h"
#include "gd_util.h"
#include "io/npy.h"
#include "io/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONVERT_CHUNK ((size_t)1 << 16)
#define WRITER_MAX_ARRAYS 1000 /* 16-bit entry counts in the end record; np.savez references hold 4 */

/* Test hooks (not in the public header): a writer with zip64 records everywhere, and k all-zero
 * images appended as a hole in the file (sparse), so tests can build a > 4 GiB archive cheaply. */
gd_npz_writer *gd_npz_writer_open_opt(const char *path, int n, int h, int w, int c, int force_zip64, char *err,
                                      size_t errlen);
int gd_npz_writer_zero_images(gd_npz_writer *wr, int k, char *err, size_t errlen);

/* ---- opening an archive ------------------------------------------------------------------ */

static int open_archive(zip_reader *r, const char *path, char *err, size_t errlen) {
    *r = (zip_reader){-1, 0, path, err, errlen, NULL};
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        gd_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gd_errf(err, errlen, "%s: not a regular file", path);
        close(r->fd);
        r->fd = -1;
        return -1;
    }
    r->size = (uint64_t)st.st_size;
    return 0;
}

/* Finds member NAME, else NAME.npy (numpy's NpzFile order): 1 with *e and *member (malloc()ed),
 * 0 when neither is there, -1 with err. */
static int find_member(zip_reader *r, const char *name, zip_entry *e, char **member, uint64_t *members_end) {
    *member = NULL;
    size_t nl = strlen(name);
    char *with_npy = malloc(nl + 5);
    if (!with_npy) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    memcpy(with_npy, name, nl);
    memcpy(with_npy + nl, ".npy", 5);
    const char *names[2] = {name, with_npy};
    zip_entry ents[2];
    memset(ents, 0, sizeof ents);
    if (zip_read_directory(r, names, 2, ents, members_end) != 0) {
        free(with_npy);
        return -1;
    }
    int k = ents[0].present ? 0 : ents[1].present ? 1 : -1;
    if (k < 0) {
        free(with_npy);
        return 0;
    }
    *e = ents[k];
    if (k == 0) {
        with_npy[nl] = '\0';
    }
    *member = with_npy;
    return 1;
}

static int check_name(const char *path, const char *fn, const char *name, char *err, size_t errlen) {
    if (!path) {
        gd_errf(err, errlen, "%s: NULL path", fn);
        return -1;
    }
    if (!name || !*name) {
        gd_errf(err, errlen, "%s: %s: %s member name", fn, path, name ? "empty" : "NULL");
        return -1;
    }
    return 0;
}

/* ---- arr_0 stream ------------------------------------------------------------------------ */

struct gd_npz_stream {
    zip_reader r;
    zip_entry e;
    zip_stream zs; /* zs.r = &r, zs.e = &e: the struct does not move */
    char *path;
    int n, h, w, c;
    int next;      /* images delivered */
    size_t image_bytes;
    int failed;
};

gd_npz_stream *gd_npz_stream_open(const char *path, int *n, int *h, int *w, int *c, char *err, size_t errlen) {
    if (!path || !n || !h || !w || !c) {
        gd_errf(err, errlen, "gd_npz_stream_open: %s: NULL argument", path ? path : "(null path)");
        return NULL;
    }
    gd_npz_stream *s = calloc(1, sizeof *s);
    char *p = strdup(path);
    if (!s || !p) {
        gd_errf(err, errlen, "%s: out of memory", path);
        free(s);
        free(p);
        return NULL;
    }
    s->path = p;
    if (open_archive(&s->r, p, err, errlen) != 0) {
        free(p);
        free(s);
        return NULL;
    }
    uint64_t members_end, nbytes;
    int dims[4];
    zip_entry ents[2];
    memset(ents, 0, sizeof ents);
    /* both names, as gd_read_npz: a duplicate arr_1 is refused here too */
    if (zip_read_directory(&s->r, npz_entry_names, 2, ents, &members_end) != 0) goto fail_closed;
    if (!ents[0].present) {
        gd_errf(err, errlen, "%s: no arr_0.npy in the archive", path);
        goto fail_closed;
    }
    s->e = ents[0];
    if (zip_member_open(&s->r, &s->e, npz_entry_names[0], members_end, &s->zs) != 0) goto fail;
    if (npy_read_image_header(&s->zs, dims, &nbytes) != 0) goto fail;
    s->n = dims[0];
    s->h = dims[1];
    s->w = dims[2];
    s->c = dims[3];
    s->image_bytes = (size_t)(nbytes / (uint64_t)dims[0]);
    *n = s->n;
    *h = s->h;
    *w = s->w;
    *c = s->c;
    if (err && errlen) err[0] = '\0';
    return s;
fail:
    zip_member_close(&s->zs);
fail_closed:
    close(s->r.fd);
    free(p);
    free(s);
    return NULL;
}

int gd_npz_stream_read(gd_npz_stream *s, uint8_t *out, int k, char *err, size_t errlen) {
    if (!s) {
        gd_errf(err, errlen, "gd_npz_stream_read: NULL stream");
        return -1;
    }
    s->r.err = err;
    s->r.errlen = errlen;
    if (s->failed) {
        gd_errf(err, errlen, "%s: arr_0.npy: an earlier read failed; the stream cannot continue", s->path);
        return -1;
    }
    const int left = s->n - s->next;
    if (k < 0 || k > left) {
        gd_errf(err, errlen, "%s: arr_0.npy: reading past the end (%d images asked, %d of %d left)", s->path, k, left,
                s->n);
        return -1;
    }
    if (k > 0 && !out) {
        gd_errf(err, errlen, "%s: arr_0.npy: NULL output buffer", s->path);
        return -1;
    }
    if (k == 0) return 0;
    /* k * image_bytes <= the member's data, which fits in size_t (npy_check_payload) */
    if (zip_member_read(&s->zs, out, (size_t)k * s->image_bytes, "data") != 0) {
        s->failed = 1;
        return -1;
    }
    s->next += k;
    if (s->next == s->n && zip_member_finish(&s->zs) != 0) {
        s->failed = 1;
        return -1;
    }
    if (err && errlen) err[0] = '\0';
    return 0;
}

void gd_npz_stream_close(gd_npz_stream *s) {
    if (!s) return;
    zip_member_close(&s->zs);
    close(s->r.fd);
    free(s->path);
    free(s);
}

/* ---- named arrays ------------------------------------------------------------------------ */

int gd_npz_has(const char *path, const char *name, char *err, size_t errlen) {
    if (check_name(path, "gd_npz_has", name, err, errlen) != 0) return -1;
    zip_reader r;
    if (open_archive(&r, path, err, errlen) != 0) return -1;
    zip_entry e;
    char *member;
    uint64_t members_end;
    int rc = find_member(&r, name, &e, &member, &members_end);
    free(member);
    close(r.fd);
    if (rc >= 0 && err && errlen) err[0] = '\0';
    return rc;
}

int gd_npz_read_f64(const char *path, const char *name, double **data, int *ndim, int64_t shape[4], char *err,
                    size_t errlen) {
    if (data) *data = NULL;
    if (ndim) *ndim = 0;
    if (check_name(path, "gd_npz_read_f64", name, err, errlen) != 0) return -1;
    if (!data || !ndim || !shape) {
        gd_errf(err, errlen, "gd_npz_read_f64: %s: NULL argument", path);
        return -1;
    }
    zip_reader r;
    if (open_archive(&r, path, err, errlen) != 0) return -1;
    zip_entry e;
    char *member = NULL;
    uint64_t members_end, prefix, nbytes;
    zip_stream *s = NULL;
    uint8_t *buf = NULL;
    double *out = NULL;
    npy_info info;
    int found = find_member(&r, name, &e, &member, &members_end), rc = found == 0 ? 1 : -1;
    if (found != 1) goto done;
    s = malloc(sizeof *s);
    buf = malloc(CONVERT_CHUNK);
    if (!s || !buf) {
        gd_errf(err, errlen, "%s: out of memory", path);
        free(s);
        s = NULL;
        goto done;
    }
    if (zip_member_open(&r, &e, member, members_end, s) != 0) goto done;
    if (npy_read_header(s, &info, &prefix) != 0) goto done;
    size_t isz;
    if (strcmp(info.descr, "<f8") == 0) {
        isz = 8;
    } else if (strcmp(info.descr, "<f4") == 0) {
        isz = 4;
    } else {
        gd_errf(err, errlen, "%s: %s has dtype '%s', expected float32 or float64 ('<f4' or '<f8')", path, member,
                info.descr);
        goto done;
    }
    if (info.ndim < 1 || info.ndim > 4) {
        gd_errf(err, errlen, "%s: %s has %d dimensions, expected 1 to 4", path, member, info.ndim);
        goto done;
    }
    if (npy_check_payload(s, &info, prefix, isz, &nbytes) != 0) goto done;
    const uint64_t count = nbytes / isz;
    if (count > (uint64_t)SIZE_MAX / sizeof(double)) {
        gd_errf(err, errlen, "%s: %s is too large for this machine", path, member);
        goto done;
    }
    out = malloc(count ? (size_t)count * sizeof(double) : 1);
    if (!out) {
        gd_errf(err, errlen, "%s: out of memory for %s (%llu values)", path, member, (unsigned long long)count);
        goto done;
    }
    const size_t per = CONVERT_CHUNK / isz;
    for (uint64_t i = 0; i < count;) {
        size_t m = count - i < per ? (size_t)(count - i) : per;
        if (zip_member_read(s, buf, m * isz, "data") != 0) goto done;
        for (size_t j = 0; j < m; j++) {
            if (isz == 8) {
                uint64_t bits = get64(buf + 8 * j);
                memcpy(&out[i + j], &bits, 8);
            } else {
                uint32_t bits = get32(buf + 4 * j);
                float f;
                memcpy(&f, &bits, 4);
                out[i + j] = (double)f;
            }
        }
        i += m;
    }
    if (zip_member_finish(s) != 0) goto done;
    *ndim = info.ndim;
    for (int i = 0; i < 4; i++) shape[i] = i < info.ndim ? (int64_t)info.shape[i] : 0;
    *data = out;
    out = NULL;
    rc = 0;
done:
    if (s) {
        zip_member_close(s);
        free(s);
    }
    free(out);
    free(buf);
    free(member);
    close(r.fd);
    if (rc >= 0 && err && errlen) err[0] = '\0';
    return rc;
}

/* ---- writer ------------------------------------------------------------------------------ */


struct gd_npz_writer {
    FILE *f;
    char *tmp, *path;
    int n, h, w, c, written;
    uint64_t image_bytes;
    uint64_t pos;     /* where the next member starts (once arr_0 is complete) */
    uint64_t arr0_end;
    int force_zip64, broken;
    int count, cap;
    zip_wentry *ents;
    char (*names)[ZIP_NAME_MAX + 1];
};

static void writer_free(gd_npz_writer *wr) {
    free(wr->ents);
    free(wr->names);
    free(wr->path);
    free(wr);
}

gd_npz_writer *gd_npz_writer_open_opt(const char *path, int n, int h, int w, int c, int force_zip64, char *err,
                                      size_t errlen) {
    if (!path || !*path) {
        gd_errf(err, errlen, "gd_npz_writer_open: empty path");
        return NULL;
    }
    if (n <= 0 || h <= 0 || w <= 0 || c <= 0) {
        gd_errf(err, errlen, "%s: bad npz arguments (n=%d h=%d w=%d c=%d; all must be >= 1)", path, n, h, w, c);
        return NULL;
    }
    /* each factor is below 2^31: h*w*c < 2^93 might not fit, so check in steps */
    const uint64_t hw = (uint64_t)h * (uint64_t)w;
    if (hw > ((uint64_t)1 << 62) / (uint64_t)c || hw * (uint64_t)c > ((uint64_t)1 << 62) / (uint64_t)n) {
        gd_errf(err, errlen, "%s: %dx%dx%dx%d images are too large", path, n, h, w, c);
        return NULL;
    }
    gd_npz_writer *wr = calloc(1, sizeof *wr);
    if (!wr || !(wr->path = strdup(path)) || !(wr->ents = calloc(4, sizeof *wr->ents)) ||
        !(wr->names = calloc(4, sizeof *wr->names))) {
        gd_errf(err, errlen, "%s: out of memory", path);
        if (wr) writer_free(wr);
        return NULL;
    }
    wr->cap = 4;
    wr->n = n, wr->h = h, wr->w = w, wr->c = c;
    wr->image_bytes = hw * (uint64_t)c;
    wr->force_zip64 = force_zip64;
    const int64_t shape[4] = {n, h, w, c};
    char hdr[256];
    size_t hl = npy_write_header(hdr, sizeof hdr, "|u1", shape, 4);
    if (!hl) {
        gd_errf(err, errlen, "%s: internal error building the .npy header", path);
        writer_free(wr);
        return NULL;
    }
    wr->f = gd_atomic_open(path, &wr->tmp, err, errlen);
    if (!wr->f) {
        writer_free(wr);
        return NULL;
    }
    setvbuf(wr->f, NULL, _IOFBF, (size_t)1 << 20);
    snprintf(wr->names[0], sizeof wr->names[0], "%s", npz_entry_names[0]);
    wr->count = 1;
    uint64_t pos = 0;
    const uint64_t size = (uint64_t)hl + (uint64_t)n * wr->image_bytes;
    int ok = zip_write_local_header(wr->f, &pos, &wr->ents[0], npz_entry_names[0], size, force_zip64) == 0 &&
             fwrite(hdr, 1, hl, wr->f) == hl && fflush(wr->f) == 0;
    if (!ok) {
        gd_errf(err, errlen, "%s: write of '%s' failed: %s", path, wr->tmp, strerror(errno));
        gd_atomic_commit(wr->f, wr->tmp, path, 0, err, errlen);
        writer_free(wr);
        return NULL;
    }
    wr->ents[0].crc = zip_crc32(0, (const uint8_t *)hdr, hl);
    wr->arr0_end = pos + size;
    wr->pos = wr->arr0_end;
    if (err && errlen) err[0] = '\0';
    return wr;
}

gd_npz_writer *gd_npz_writer_open(const char *path, int n, int h, int w, int c, char *err, size_t errlen) {
    return gd_npz_writer_open_opt(path, n, h, w, c, 0, err, errlen);
}

/* Common checks of a writer call; 0 when it may go on. */
static int writer_usable(gd_npz_writer *wr, const char *fn, char *err, size_t errlen) {
    if (!wr) {
        gd_errf(err, errlen, "%s: NULL writer", fn);
        return -1;
    }
    if (wr->broken) {
        gd_errf(err, errlen, "%s: an earlier write to '%s' failed; the file cannot be completed", wr->path, wr->tmp);
        return -1;
    }
    return 0;
}

static int check_image_count(gd_npz_writer *wr, int k, char *err, size_t errlen) {
    if (k < 0 || k > wr->n - wr->written) {
        gd_errf(err, errlen, "%s: %d images appended, but only %d of %d are left to write", wr->path, k,
                wr->n - wr->written, wr->n);
        return -1;
    }
    return 0;
}

int gd_npz_writer_images(gd_npz_writer *wr, const uint8_t *nhwc, int k, char *err, size_t errlen) {
    if (writer_usable(wr, "gd_npz_writer_images", err, errlen) != 0 || check_image_count(wr, k, err, errlen) != 0)
        return -1;
    if (k > 0 && !nhwc) {
        gd_errf(err, errlen, "%s: NULL images", wr->path);
        return -1;
    }
    const size_t total = (size_t)k * (size_t)wr->image_bytes, chunk = (size_t)1 << 24;
    for (size_t off = 0; off < total;) {
        size_t m = total - off < chunk ? total - off : chunk;
        if (fwrite(nhwc + off, 1, m, wr->f) != m) {
            wr->broken = 1;
            gd_errf(err, errlen, "%s: write of '%s' failed: %s", wr->path, wr->tmp, strerror(errno));
            return -1;
        }
        wr->ents[0].crc = zip_crc32(wr->ents[0].crc, nhwc + off, m);
        off += m;
    }
    wr->written += k;
    if (err && errlen) err[0] = '\0';
    return 0;
}

/* CRC-32 of len zero bytes continuing crc, in O(log len) steps. */
static uint32_t crc32_zeros(uint32_t crc, uint64_t len) {
    static const uint8_t zero = 0;
    uLong block = crc32(0, &zero, 1), blen = 1;
    uLong acc = crc;
    while (len) {
        if (len & 1) acc = crc32_combine(acc, block, (z_off_t)blen);
        block = crc32_combine(block, block, (z_off_t)blen);
        blen <<= 1;
        len >>= 1;
    }
    return (uint32_t)acc;
}

int gd_npz_writer_zero_images(gd_npz_writer *wr, int k, char *err, size_t errlen) {
    if (writer_usable(wr, "gd_npz_writer_zero_images", err, errlen) != 0 || check_image_count(wr, k, err, errlen) != 0)
        return -1;
    const uint64_t bytes = (uint64_t)k * wr->image_bytes;
    if (fseeko(wr->f, (off_t)bytes, SEEK_CUR) != 0) {
        wr->broken = 1;
        gd_errf(err, errlen, "%s: seek in '%s' failed: %s", wr->path, wr->tmp, strerror(errno));
        return -1;
    }
    wr->ents[0].crc = crc32_zeros(wr->ents[0].crc, bytes);
    wr->written += k;
    if (err && errlen) err[0] = '\0';
    return 0;
}

int gd_npz_writer_f64(gd_npz_writer *wr, const char *name, const double *data, int ndim, const int64_t *shape,
                      char *err, size_t errlen) {
    if (writer_usable(wr, "gd_npz_writer_f64", err, errlen) != 0) return -1;
    if (wr->written < wr->n) {
        gd_errf(err, errlen, "%s: array '%s' added after %d of %d images; append every image first", wr->path,
                name ? name : "(null)", wr->written, wr->n);
        return -1;
    }
    const size_t nl = name ? strlen(name) : 0;
    int plain = nl > 0 && nl + 4 <= ZIP_NAME_MAX;
    for (size_t i = 0; plain && i < nl; i++)
        plain = name[i] > 0x20 && name[i] < 0x7F && name[i] != '/' && name[i] != '\\';
    if (!plain) {
        gd_errf(err, errlen, "%s: bad array name '%.*s' (1..%d printable ASCII characters, no '/')", wr->path,
                name ? 40 : 6, name ? name : "(null)", ZIP_NAME_MAX - 4);
        return -1;
    }
    char member[ZIP_NAME_MAX + 1];
    snprintf(member, sizeof member, "%s.npy", name);
    for (int i = 0; i < wr->count; i++)
        if (strcmp(wr->names[i], member) == 0) {
            gd_errf(err, errlen, "%s: array '%s' is already in the file", wr->path, name);
            return -1;
        }
    if (ndim < 1 || ndim > 4 || !shape) {
        gd_errf(err, errlen, "%s: array '%s': %d dimensions (must be 1..4)", wr->path, name, ndim);
        return -1;
    }
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && count > (((uint64_t)1 << 58) / (uint64_t)shape[i]))) {
            gd_errf(err, errlen, "%s: array '%s': bad shape (dimension %d is %lld)", wr->path, name, i,
                    (long long)shape[i]);
            return -1;
        }
        count *= (uint64_t)shape[i];
    }
    if (count > (uint64_t)SIZE_MAX / 8 || (count && !data)) {
        gd_errf(err, errlen, "%s: array '%s': %s", wr->path, name, count && !data ? "NULL data" : "too large");
        return -1;
    }
    if (wr->count >= WRITER_MAX_ARRAYS) {
        gd_errf(err, errlen, "%s: too many arrays (at most %d)", wr->path, WRITER_MAX_ARRAYS - 1);
        return -1;
    }
    char hdr[256];
    size_t hl = npy_write_header(hdr, sizeof hdr, "<f8", shape, ndim);
    if (!hl) {
        gd_errf(err, errlen, "%s: internal error building the .npy header of '%s'", wr->path, name);
        return -1;
    }
    if (wr->count == wr->cap) {
        int cap = wr->cap * 2;
        zip_wentry *e = realloc(wr->ents, (size_t)cap * sizeof *e);
        if (e) wr->ents = e;
        char(*nm)[ZIP_NAME_MAX + 1] = e ? realloc(wr->names, (size_t)cap * sizeof *nm) : NULL;
        if (!nm) {
            gd_errf(err, errlen, "%s: out of memory", wr->path);
            return -1;
        }
        wr->names = nm;
        wr->cap = cap;
    }
    zip_wentry *e = &wr->ents[wr->count];
    uint64_t pos = wr->pos;
    const uint64_t size = (uint64_t)hl + count * 8;
    int ok = zip_write_local_header(wr->f, &pos, e, member, size, wr->force_zip64) == 0 &&
             fwrite(hdr, 1, hl, wr->f) == hl;
    uint32_t crc = zip_crc32(0, (const uint8_t *)hdr, hl);
    uint8_t buf[8 * 1024];
    for (uint64_t i = 0; ok && i < count;) {
        size_t m = 0;
        for (; m < sizeof buf / 8 && i < count; m++, i++) {
            uint64_t bits;
            memcpy(&bits, &data[i], 8);
            put64(buf + 8 * m, bits);
        }
        crc = zip_crc32(crc, buf, 8 * m);
        ok = fwrite(buf, 1, 8 * m, wr->f) == 8 * m;
    }
    if (!ok) {
        wr->broken = 1;
        gd_errf(err, errlen, "%s: write of '%s' failed: %s", wr->path, wr->tmp, strerror(errno));
        return -1;
    }
    e->crc = crc;
    memcpy(wr->names[wr->count], member, sizeof member);
    wr->count++;
    wr->pos = pos + size;
    if (err && errlen) err[0] = '\0';
    return 0;
}

void gd_npz_writer_abort(gd_npz_writer *wr) {
    if (!wr) return;
    gd_atomic_commit(wr->f, wr->tmp, wr->path, 0, NULL, 0);
    writer_free(wr);
}

int gd_npz_writer_commit(gd_npz_writer *wr, char *err, size_t errlen) {
    if (!wr) {
        gd_errf(err, errlen, "gd_npz_writer_commit: NULL writer");
        return -1;
    }
    if (writer_usable(wr, "gd_npz_writer_commit", err, errlen) != 0) {
        gd_npz_writer_abort(wr);
        return -1;
    }
    if (wr->written < wr->n) {
        gd_errf(err, errlen, "%s: only %d of %d images were written; nothing saved", wr->path, wr->written, wr->n);
        gd_npz_writer_abort(wr);
        return -1;
    }
    const char **names = malloc((size_t)wr->count * sizeof *names);
    int ok = names != NULL;
    if (!ok) gd_errf(err, errlen, "%s: out of memory", wr->path);
    for (int i = 0; ok && i < wr->count; i++) names[i] = wr->names[i];
    if (ok) {
        ok = zip_write_directory(wr->f, wr->pos, wr->ents, names, wr->count, wr->force_zip64) == 0 &&
             zip_patch_crcs(wr->f, wr->ents, wr->count) == 0;
        if (!ok) gd_errf(err, errlen, "%s: write of '%s' failed: %s", wr->path, wr->tmp, strerror(errno));
    }
    free(names);
    int rc = gd_atomic_commit(wr->f, wr->tmp, wr->path, ok, err, errlen);
    writer_free(wr);
    return rc;
}
