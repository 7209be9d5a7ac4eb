/* safetensors atomic writer. See include/gd_safetensors.h for the format and the API contract. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_safetensors.h"
#include "gd_util.h"
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    gd_st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    void *data;
    size_t nbytes;
} st_wtensor;

struct gd_st_writer {
    st_wtensor *t;
    int n, cap;
    char **mk, **mv;
    int nm, mcap;
};

gd_st_writer *gd_st_writer_new(void) { return calloc(1, sizeof(gd_st_writer)); }

void gd_st_writer_free(gd_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    for (int i = 0; i < w->nm; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->mk);
    free(w->mv);
    free(w);
}

static int str_is_utf8(const char *s) {
    size_t n = strlen(s);
    return st_utf8_check((const uint8_t *)s, n) == n;
}

int gd_st_writer_add(gd_st_writer *w, const char *name, gd_st_dtype dtype, int ndim,
                     const int64_t *shape, const void *data) {
    if (!w || !name || !st_dtype_valid(dtype) || ndim < 0 || ndim > ST_MAX_DIMS) return -1;
    if (ndim > 0 && !shape) return -1;
    if (strcmp(name, "__metadata__") == 0 || !str_is_utf8(name)) return -1;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > ST_MAX_NUMEL) return -1;
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && numel > ST_MAX_NUMEL / d) return -1;
        numel *= d;
    }
    uint64_t nbytes = numel * gd_st_dtype_size(dtype);
    if (nbytes > (uint64_t)SIZE_MAX) return -1;
    if (nbytes > 0 && !data) return -1;
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return -1;
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 16;
        st_wtensor *nt = realloc(w->t, (size_t)nc * sizeof *nt);
        if (!nt) return -1;
        w->t = nt;
        w->cap = nc;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(nbytes ? (size_t)nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return -1;
    }
    if (nbytes) memcpy(t->data, data, (size_t)nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = (size_t)nbytes;
    w->n++;
    return 0;
}

int gd_st_writer_meta(gd_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value || !str_is_utf8(key) || !str_is_utf8(value)) return -1;
    char *v = strdup(value);
    if (!v) return -1;
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0) { /* replace */
            free(w->mv[i]);
            w->mv[i] = v;
            return 0;
        }
    if (w->nm == w->mcap) {
        int nc = w->mcap ? w->mcap * 2 : 8;
        char **nk = realloc(w->mk, (size_t)nc * sizeof *nk);
        if (!nk) goto fail;
        w->mk = nk;
        char **nv = realloc(w->mv, (size_t)nc * sizeof *nv);
        if (!nv) goto fail;
        w->mv = nv;
        w->mcap = nc;
    }
    w->mk[w->nm] = strdup(key);
    if (!w->mk[w->nm]) goto fail;
    w->mv[w->nm] = v;
    w->nm++;
    return 0;
fail:
    free(v);
    return -1;
}

/* growable byte buffer for the header */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = 1;
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

static void sb_json_string(sbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            sb_put(b, e, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = write(fd, p, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int gd_st_writer_save(gd_st_writer *w, const char *path, char *err, size_t errlen) {
    if (!w || !path) {
        gd_errf(err, errlen, "%s: invalid writer or path", path ? path : "(null)");
        return -1;
    }
    /* header */
    sbuf b = {0};
    sb_str(&b, "{");
    int first = 1;
    if (w->nm > 0) {
        sb_str(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i) sb_str(&b, ",");
            sb_json_string(&b, w->mk[i]);
            sb_str(&b, ":");
            sb_json_string(&b, w->mv[i]);
        }
        sb_str(&b, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        if (!first) sb_str(&b, ",");
        first = 0;
        sb_json_string(&b, t->name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", gd_st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            sb_printf(&b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    sb_str(&b, "}");
    while (!b.oom && b.n % 8 != 0) sb_str(&b, " ");
    if (b.oom) {
        free(b.p);
        gd_errf(err, errlen, "%s: out of memory building header", path);
        return -1;
    }
    if (b.n >= ST_MAX_HEADER) {
        free(b.p);
        gd_errf(err, errlen, "%s: header of %zu bytes is too large", path, b.n);
        return -1;
    }

    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(b.p);
        gd_errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        gd_errf(err, errlen, "%s: cannot create temporary file '%s': %s", path, tmp,
                strerror(errno));
        free(tmp);
        free(b.p);
        return -1;
    }
    uint8_t lenbuf[8];
    uint64_t hl = (uint64_t)b.n;
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)(hl >> (8 * i));
    const char *what = "write";
    int ok = write_all(fd, lenbuf, 8) == 0 && write_all(fd, b.p, b.n) == 0;
    for (int i = 0; ok && i < w->n; i++)
        if (w->t[i].nbytes && write_all(fd, w->t[i].data, w->t[i].nbytes) != 0) ok = 0;
    if (ok && fsync(fd) != 0) {
        what = "fsync";
        ok = 0;
    }
    int saved = errno;
    if (close(fd) != 0 && ok) {
        what = "close";
        saved = errno;
        ok = 0;
    }
    if (ok && rename(tmp, path) != 0) {
        what = "rename";
        saved = errno;
        ok = 0;
    }
    if (!ok) {
        gd_errf(err, errlen, "%s: %s of '%s' failed: %s", path, what, tmp, strerror(saved));
        unlink(tmp);
        free(tmp);
        free(b.p);
        return -1;
    }
    free(tmp);
    free(b.p);
    if (err && errlen) err[0] = '\0';
    return 0;
}

