/* .npz reader (np.savez / np.savez_compressed). See include/gd_image.h for the API contract and
 * io/zip.h for the zip container.
 *  - The .npy header (v1.0, v2.0 or 3.0) is parsed as the Python literal numpy writes (a dict with
 *    exactly 'descr', 'fortran_order', 'shape'), the shape product is overflow-checked and must
 *    match the member's size exactly.
 *  - arr_0: '|u1' (or '<u1'/'>u1'), 4-D NHWC or 3-D NHW (c = 1); all dimensions >= 1 and <=
 *    INT_MAX. arr_1 (only read when labels != NULL; optional): '<i8' or '<i4', shape (n,).
 *    fortran_order True is rejected. Other members are ignored; duplicate names are rejected. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_image.h"
#include "gd_util.h"
#include "io/npy.h"
#include "io/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAX_HEADER (1u << 20)    /* .npy header length limit */

/* ---- .npy header ------------------------------------------------------------------------- */

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

/* Reads and parses the .npy preamble of a member (io/npy.h). */
int npy_read_header(zip_stream *s, npy_info *info, uint64_t *prefix) {
    zip_reader *r = s->r;
    uint8_t pre[12];
    if (zip_member_read(s, pre, 8, ".npy magic") != 0) return -1;
    if (memcmp(pre, "\x93NUMPY", 6) != 0) {
        gd_errf(r->err, r->errlen, "%s: %s is not a .npy file (bad magic)", r->path, s->name);
        return -1;
    }
    uint32_t hl;
    if (pre[6] == 1 && pre[7] == 0) {
        if (zip_member_read(s, pre + 8, 2, ".npy header length") != 0) return -1;
        hl = get16(pre + 8);
        *prefix = 10;
    } else if ((pre[6] == 2 || pre[6] == 3) && pre[7] == 0) { /* 3.0: UTF-8 header; we accept ASCII */
        if (zip_member_read(s, pre + 8, 4, ".npy header length") != 0) return -1;
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
    if (zip_member_read(s, h, hl, ".npy header") != 0) {
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
int npy_check_payload(zip_stream *s, const npy_info *info, uint64_t prefix, size_t itemsize, uint64_t *nbytes) {
    zip_reader *r = s->r;
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

int npy_read_image_header(zip_stream *s, int dims[4], uint64_t *nbytes) {
    zip_reader *r = s->r;
    const char *name = s->name;
    npy_info info;
    uint64_t prefix;
    if (npy_read_header(s, &info, &prefix) != 0) return -1;
    if (strcmp(info.descr, "|u1") != 0 && strcmp(info.descr, "<u1") != 0 && strcmp(info.descr, ">u1") != 0) {
        gd_errf(r->err, r->errlen, "%s: %s has dtype '%s', expected uint8 ('|u1')", r->path, name, info.descr);
        return -1;
    }
    if (info.ndim != 4 && info.ndim != 3) {
        gd_errf(r->err, r->errlen, "%s: %s has %d dimensions, expected 4 (NHWC) or 3 (NHW)", r->path, name,
                info.ndim);
        return -1;
    }
    if (info.ndim == 3) info.shape[3] = 1;
    for (int i = 0; i < 4; i++)
        if (info.shape[i] == 0 || info.shape[i] > INT_MAX) {
            gd_errf(r->err, r->errlen, "%s: %s: dimension %d is %llu (must be 1..%d)", r->path, name, i,
                    (unsigned long long)info.shape[i], INT_MAX);
            return -1;
        }
    if (npy_check_payload(s, &info, prefix, 1, nbytes) != 0) return -1;
    for (int i = 0; i < 4; i++) dims[i] = (int)info.shape[i];
    return 0;
}

static int read_images(zip_reader *r, zip_entry *e, uint64_t members_end, uint8_t **images, int dims[4]) {
    zip_stream *s = malloc(sizeof *s);
    if (!s) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    const char *name = npz_entry_names[0];
    uint64_t nbytes;
    uint8_t *data = NULL;
    int rc = -1;
    if (zip_member_open(r, e, name, members_end, s) != 0) goto done;
    if (npy_read_image_header(s, dims, &nbytes) != 0) goto done;
    data = malloc((size_t)nbytes);
    if (!data) {
        gd_errf(r->err, r->errlen, "%s: out of memory for %llu bytes of images", r->path, (unsigned long long)nbytes);
        goto done;
    }
    if (zip_member_read(s, data, (size_t)nbytes, "data") != 0 || zip_member_finish(s) != 0) goto done;
    *images = data;
    data = NULL;
    rc = 0;
done:
    free(data);
    zip_member_close(s);
    free(s);
    return rc;
}

static int read_labels(zip_reader *r, zip_entry *e, uint64_t members_end, int n, int64_t **labels) {
    zip_stream *s = malloc(sizeof *s);
    if (!s) {
        gd_errf(r->err, r->errlen, "%s: out of memory", r->path);
        return -1;
    }
    const char *name = npz_entry_names[1];
    npy_info info;
    uint64_t prefix, nbytes;
    uint8_t *raw = NULL;
    int64_t *out = NULL;
    int rc = -1;
    size_t isz;
    if (zip_member_open(r, e, name, members_end, s) != 0) goto done;
    if (npy_read_header(s, &info, &prefix) != 0) goto done;
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
    if (npy_check_payload(s, &info, prefix, isz, &nbytes) != 0) goto done;
    raw = malloc((size_t)nbytes);
    out = malloc((size_t)n * sizeof *out);
    if (!raw || !out) {
        gd_errf(r->err, r->errlen, "%s: out of memory for labels", r->path);
        goto done;
    }
    if (zip_member_read(s, raw, (size_t)nbytes, "data") != 0 || zip_member_finish(s) != 0) goto done;
    for (int i = 0; i < n; i++)
        out[i] = isz == 8 ? (int64_t)get64(raw + 8 * (size_t)i) : (int64_t)(int32_t)get32(raw + 4 * (size_t)i);
    *labels = out;
    out = NULL;
    rc = 0;
done:
    free(raw);
    free(out);
    zip_member_close(s);
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
    zip_reader r = {-1, 0, path, err, errlen, NULL};
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

    zip_entry ents[2];
    memset(ents, 0, sizeof ents);
    uint64_t members_end;
    uint8_t *img = NULL;
    int64_t *lab = NULL;
    int dims[4];
    int rc = -1;
    if (zip_read_directory(&r, npz_entry_names, 2, ents, &members_end) != 0) goto done;
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
