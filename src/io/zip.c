/* The zip container under the .npz writer and reader; see io/zip.h for what is written and
 * what is accepted. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "io/zip.h"
#include "gd_util.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP_U32_MAX 0xFFFFFFFFu
#define ZIP_DOS_DATE 0x0021u         /* 1980-01-01 */
#define ZIP_EXT_ATTR (0600u << 16)   /* -rw------- as numpy/zipfile write it */
#define ZIP_MAX_CD ((uint64_t)1 << 26) /* central directory size limit for the reader */
#define CRC_CHUNK ((size_t)1 << 26)
/* Fuzzing builds accept any CRC-32 so that mutated inputs reach the parsers behind it. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define ZIP_IGNORE_CRC 1
#else
#define ZIP_IGNORE_CRC 0
#endif

const char *const npz_entry_names[2] = {"arr_0.npy", "arr_1.npy"};

uint32_t zip_crc32(uint32_t crc, const uint8_t *p, size_t len) {
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

int zip_write_local_header(FILE *f, uint64_t *pos, zip_wentry *e, const char *name, uint64_t size,
                           int force_zip64) {
    e->offset = *pos;
    e->size = size;
    const int z64 = force_zip64 || e->size >= ZIP_U32_MAX;
    uint8_t lh[30 + ZIP_NAME_MAX + 20];
    size_t nl = strlen(name);
    assert(nl <= ZIP_NAME_MAX);
    put32(lh, ZIP_LOCAL_SIG);
    put16(lh + 4, z64 ? 45 : 20);
    put16(lh + 6, 0);  /* flags */
    put16(lh + 8, 0);  /* stored */
    put16(lh + 10, 0); /* time */
    put16(lh + 12, ZIP_DOS_DATE);
    put32(lh + 14, 0); /* CRC, patched later */
    put32(lh + 18, z64 ? ZIP_U32_MAX : (uint32_t)e->size);
    put32(lh + 22, z64 ? ZIP_U32_MAX : (uint32_t)e->size);
    put16(lh + 26, (uint32_t)nl);
    put16(lh + 28, z64 ? 20 : 0);
    memcpy(lh + 30, name, nl);
    size_t lhl = 30 + nl;
    if (z64) {
        put16(lh + lhl, 1);
        put16(lh + lhl + 2, 16);
        put64(lh + lhl + 4, e->size);
        put64(lh + lhl + 12, e->size);
        lhl += 20;
    }
    if (fwrite(lh, 1, lhl, f) != lhl) return -1;
    *pos += lhl;
    return 0;
}

/* One central directory header; returns its length, or 0 if it could not be written. */
static size_t write_central_header(FILE *f, const zip_wentry *e, const char *name, int force_zip64) {
    const int big_size = force_zip64 || e->size >= ZIP_U32_MAX;
    const int big_off = force_zip64 || e->offset >= ZIP_U32_MAX;
    const int z64 = big_size || big_off;
    uint8_t ch[46 + ZIP_NAME_MAX + 28];
    size_t nl = strlen(name);
    assert(nl <= ZIP_NAME_MAX);
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
    memcpy(ch + 46, name, nl);
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
    return fwrite(ch, 1, l, f) == l ? l : 0;
}

int zip_write_directory(FILE *f, uint64_t pos, const zip_wentry *ents, const char *const *names, int count,
                        int force_zip64) {
    const uint64_t cd_off = pos;
    for (int i = 0; i < count; i++) {
        size_t l = write_central_header(f, &ents[i], names[i], force_zip64);
        if (!l) return -1;
        pos += l;
    }
    const uint64_t cd_size = pos - cd_off;
    const int z64_end = force_zip64 || cd_off >= ZIP_U32_MAX;
    if (z64_end) {
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
        if (fwrite(r, 1, sizeof r, f) != sizeof r) return -1;
    }
    uint8_t r[22];
    put32(r, ZIP_EOCD_SIG);
    put16(r + 4, 0);
    put16(r + 6, 0);
    put16(r + 8, (uint32_t)count);
    put16(r + 10, (uint32_t)count);
    put32(r + 12, cd_size >= ZIP_U32_MAX ? ZIP_U32_MAX : (uint32_t)cd_size);
    put32(r + 16, z64_end ? ZIP_U32_MAX : (uint32_t)cd_off);
    put16(r + 20, 0);
    return fwrite(r, 1, sizeof r, f) == sizeof r ? 0 : -1;
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

int zip_patch_crcs(FILE *f, const zip_wentry *ents, int count) {
    if (fflush(f) != 0) return -1;
    for (int i = 0; i < count; i++) {
        uint8_t b[4];
        put32(b, ents[i].crc);
        if (pwrite_all(fileno(f), b, 4, ents[i].offset + 14) != 0) return -1;
    }
    return 0;
}

/* ========================================================================================== */
/* reader                                                                                     */

/* Reads exactly len bytes at off; fails (with err) on a short file or an I/O error. */
static int read_at(zip_reader *r, uint64_t off, void *buf, size_t len, const char *what) {
    if (off > r->size || len > r->size - off) {
        gd_errf(r->err, r->errlen, "%s: truncated file (%s at offset %llu, %zu bytes, past the end)", r->path, what,
                (unsigned long long)off, len);
        return -1;
    }
    if (r->mem) {
        memcpy(buf, r->mem + off, len);
        return 0;
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

/* Parses the zip64 extended information extra field of a central header. */
static int parse_zip64_extra(zip_reader *r, const char *name, const uint8_t *x, size_t xl, zip_entry *e,
                             int need_u, int need_c, int need_o) {
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
static int find_central_dir(zip_reader *r, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count,
                            uint64_t *limit) {
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

/* Reads the central directory into a malloc()ed block *cd of *cd_size bytes (*n_entries entries;
 * *members_end is where it starts). */
static int read_central_dir(zip_reader *r, uint8_t **cd, uint64_t *cd_size, uint64_t *n_entries,
                            uint64_t *members_end) {
    uint64_t cd_off, limit;
    *cd = NULL;
    if (find_central_dir(r, &cd_off, cd_size, n_entries, &limit) != 0) return -1;
    *members_end = cd_off;
    *cd = malloc(*cd_size ? (size_t)*cd_size : 1);
    if (!*cd) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    if (read_at(r, cd_off, *cd, (size_t)*cd_size, "central directory") != 0) {
        free(*cd);
        *cd = NULL;
        return -1;
    }
    return 0;
}

/* Central directory entry i at cd + *p: returns its header (the name, *nl bytes, follows at 46)
 * and moves *p past it, or NULL (with err). */
static const uint8_t *central_entry(zip_reader *r, const uint8_t *cd, uint64_t cd_size, size_t *p, uint64_t i,
                                    size_t *nl) {
    if (*p + 46 > cd_size || get32(cd + *p) != ZIP_CENTRAL_SIG) {
        gd_errf(r->err, r->errlen, "%s: bad central directory entry %llu", r->path, (unsigned long long)i);
        return NULL;
    }
    const uint8_t *h = cd + *p;
    size_t xl = get16(h + 30), cl = get16(h + 32);
    *nl = get16(h + 28);
    if (*p + 46 + *nl + xl + cl > cd_size) {
        gd_errf(r->err, r->errlen, "%s: central directory entry %llu overruns the directory", r->path,
                (unsigned long long)i);
        return NULL;
    }
    *p += 46 + *nl + xl + cl;
    return h;
}

/* Fills e (present = 1) from the central header h, whose name has nl bytes; label names it in
 * messages. */
static int central_fields(zip_reader *r, const uint8_t *h, size_t nl, const char *label, zip_entry *e) {
    e->present = 1;
    e->flags = get16(h + 8);
    e->method = get16(h + 10);
    e->crc = get32(h + 16);
    e->csize = get32(h + 20);
    e->usize = get32(h + 24);
    e->lho = get32(h + 42);
    uint32_t disk = get16(h + 34);
    int nu = e->usize == ZIP_U32_MAX, nc = e->csize == ZIP_U32_MAX, no = e->lho == ZIP_U32_MAX;
    if ((nu || nc || no) && parse_zip64_extra(r, label, h + 46 + nl, get16(h + 30), e, nu, nc, no) != 0)
        return -1;
    if (disk != 0 && disk != 0xFFFF) {
        gd_errf(r->err, r->errlen, "%s: multi-disk zip archives are not supported", r->path);
        return -1;
    }
    return 0;
}

int zip_read_directory(zip_reader *r, const char *const *names, int count, zip_entry *ents,
                       uint64_t *members_end) {
    uint8_t *cd;
    uint64_t cd_size, n_entries;
    if (read_central_dir(r, &cd, &cd_size, &n_entries, members_end) != 0) return -1;
    size_t p = 0;
    for (uint64_t i = 0; i < n_entries; i++) {
        size_t nl;
        const uint8_t *h = central_entry(r, cd, cd_size, &p, i, &nl);
        if (!h) goto fail;
        const char *name = (const char *)h + 46;
        int which = -1;
        for (int k = 0; k < count; k++)
            if (nl == strlen(names[k]) && memcmp(name, names[k], nl) == 0) which = k;
        if (which >= 0) {
            if (ents[which].present) {
                gd_errf(r->err, r->errlen, "%s: duplicate member %s", r->path, names[which]);
                goto fail;
            }
            if (central_fields(r, h, nl, names[which], &ents[which]) != 0) goto fail;
        }
    }
    free(cd);
    return 0;
fail:
    free(cd);
    return -1;
}

int zip_list_directory(zip_reader *r, zip_dir *d) {
    memset(d, 0, sizeof *d);
    uint8_t *cd;
    uint64_t cd_size, n;
    if (read_central_dir(r, &cd, &cd_size, &n, &d->members_end) != 0) return -1;
    /* find_central_dir bounds n by cd_size / 46, and the names fit in cd_size bytes */
    d->ents = calloc(n ? (size_t)n : 1, sizeof *d->ents);
    d->names = calloc(n ? (size_t)n : 1, sizeof *d->names);
    d->name_block = malloc((size_t)cd_size + (size_t)n + 1);
    if (!d->ents || !d->names || !d->name_block) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        goto fail;
    }
    size_t p = 0, o = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t nl;
        const uint8_t *h = central_entry(r, cd, cd_size, &p, i, &nl);
        if (!h) goto fail;
        char *name = d->name_block + o;
        memcpy(name, h + 46, nl);
        name[nl] = '\0';
        o += nl + 1;
        d->names[i] = name;
        if (central_fields(r, h, nl, name, &d->ents[i]) != 0) goto fail;
        d->count = (size_t)i + 1;
    }
    free(cd);
    return 0;
fail:
    free(cd);
    return -1;
}

void zip_dir_free(zip_dir *d) {
    free(d->ents);
    free(d->names);
    free(d->name_block);
    memset(d, 0, sizeof *d);
}

/* ---- member streams ---------------------------------------------------------------------- */

int zip_member_open(zip_reader *r, zip_entry *e, const char *name, uint64_t members_end, zip_stream *s) {
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
    uint8_t lh[30];
    const size_t nl = strlen(name), lhl = 30 + nl;
    if (e->lho > members_end || members_end - e->lho < lhl) {
        gd_errf(r->err, r->errlen, "%s: %s: local header offset %llu is outside the archive", r->path, name,
                (unsigned long long)e->lho);
        return -1;
    }
    if (read_at(r, e->lho, lh, 30, "local header") != 0) return -1;
    int same_name = get16(lh + 26) == nl;
    for (size_t k = 0; same_name && k < nl; k += sizeof s->in) { /* s->in is free until the data */
        size_t m = nl - k < sizeof s->in ? nl - k : sizeof s->in;
        if (read_at(r, e->lho + 30 + k, s->in, m, "local header") != 0) return -1;
        same_name = memcmp(s->in, name + k, m) == 0;
    }
    if (get32(lh) != ZIP_LOCAL_SIG || !same_name) {
        gd_errf(r->err, r->errlen, "%s: %s: bad local header at offset %llu", r->path, name,
                (unsigned long long)e->lho);
        return -1;
    }
    if (get16(lh + 8) != e->method || (get16(lh + 6) & 1u)) {
        gd_errf(r->err, r->errlen, "%s: %s: local header disagrees with the central directory", r->path, name);
        return -1;
    }
    e->data_off = e->lho + lhl + get16(lh + 28);
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

void zip_member_close(zip_stream *s) {
    if (s->zinit) inflateEnd(&s->zs);
    s->zinit = 0;
}

int zip_member_read(zip_stream *s, void *buf, size_t len, const char *what) {
    zip_reader *r = s->r;
    const zip_entry *e = s->e;
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
    s->crc = zip_crc32(s->crc, buf, len);
    s->upos += len;
    return 0;
}

int zip_member_finish(zip_stream *s) {
    zip_reader *r = s->r;
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
    if (s->crc != s->e->crc && !ZIP_IGNORE_CRC) {
        gd_errf(r->err, r->errlen, "%s: %s: CRC-32 mismatch (stored %08x, computed %08x)", r->path, s->name,
                s->e->crc, s->crc);
        return -1;
    }
    return 0;
}

const uint8_t *zip_member_view(zip_reader *r, zip_entry *e, const char *name, uint64_t members_end) {
    zip_stream *s = malloc(sizeof *s);
    if (!s) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return NULL;
    }
    const uint8_t *p = NULL;
    if (!r->mem || e->method != 0) {
        gd_errf(r->err, r->errlen, "%s: %s: not a stored member of an archive in memory", r->path, name);
    } else if (zip_member_open(r, e, name, members_end, s) == 0) {
        uint32_t crc = zip_crc32(0, r->mem + e->data_off, (size_t)e->usize);
        if (crc != e->crc && !ZIP_IGNORE_CRC)
            gd_errf(r->err, r->errlen, "%s: %s: CRC-32 mismatch (stored %08x, computed %08x)", r->path, name, e->crc,
                    crc);
        else
            p = r->mem + e->data_off;
    }
    zip_member_close(s);
    free(s);
    return p;
}
