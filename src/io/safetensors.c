/* safetensors reader (mmap / caller buffer, cJSON header) and atomic writer.
 * See include/gd_safetensors.h for the format and the API contract. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define ST_MAX_HEADER   (100u * 1024u * 1024u)   /* header length must be below this */
#define ST_MAX_NUMEL    ((uint64_t)1 << 40)      /* per tensor element limit */
#define ST_MAX_JSON_INT ((uint64_t)1 << 53)      /* largest exactly representable integer */
#define ST_MAX_DIMS     8
#define ST_MEM_LABEL    "<memory>"

struct gd_st_file {
    const uint8_t *base;   /* whole file / buffer */
    size_t len;
    int mapped;            /* base was mmap()ed by us */
    gd_st_tensor *tensors;
    int count;
    char **meta_keys;
    char **meta_vals;
    int nmeta;
};

/* ------------------------------------------------------------------------------------------ */
/* dtypes                                                                                     */

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [GD_ST_F32] = {"F32", 4}, [GD_ST_F16] = {"F16", 2}, [GD_ST_BF16] = {"BF16", 2},
    [GD_ST_F64] = {"F64", 8}, [GD_ST_I64] = {"I64", 8}, [GD_ST_I32] = {"I32", 4},
    [GD_ST_U8] = {"U8", 1},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

static int dtype_valid(gd_st_dtype t) { return (int)t >= 0 && (int)t < N_DTYPES; }

size_t gd_st_dtype_size(gd_st_dtype t) { return dtype_valid(t) ? dtype_info[t].size : 0; }

const char *gd_st_dtype_name(gd_st_dtype t) { return dtype_valid(t) ? dtype_info[t].name : "?"; }

static int dtype_parse(const char *s, gd_st_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (gd_st_dtype)i;
            return 1;
        }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                     */

/* Formats into err, then forces the result onto one line. (This module stays self-contained, as
 * the fuzzer builds it alone; the rest of the library uses gd_errf.) */
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0) err[0] = '\0';
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

/* Copies s into out (size outlen >= 8) for quoting in an error message: control characters
 * become \xNN, long strings are cut (on a UTF-8 boundary) and end in "...". */
static const char *san(const char *s, char *out, size_t outlen) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    const size_t limit = outlen - 4; /* room for "..." + NUL */
    if (!s) s = "(null)";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        size_t need = (*p < 0x20 || *p == 0x7f) ? 4 : 1;
        if (o + need > limit) {
            if ((*p & 0xC0) == 0x80) { /* cutting inside a UTF-8 sequence: drop its start */
                while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80) o--;
                if (o > 0 && (unsigned char)out[o - 1] >= 0xC0) o--;
            }
            memcpy(out + o, "...", 4);
            return out;
        }
        if (need == 4) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* validation helpers                                                                         */

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF). Returns the offset of the first
 * bad byte, or len if the whole buffer is valid. */
static size_t utf8_check(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1; cp = c & 0x1F; min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2; cp = c & 0x0F; min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

enum { NUM_OK, NUM_NOT_NUMBER, NUM_NOT_INTEGER, NUM_NEGATIVE, NUM_TOO_LARGE };

static const char *num_problem(int code) {
    switch (code) {
    case NUM_NOT_NUMBER: return "is not a number";
    case NUM_NOT_INTEGER: return "is not an integer";
    case NUM_NEGATIVE: return "is negative";
    case NUM_TOO_LARGE: return "is too large";
    default: return "is invalid";
    }
}

/* cJSON stores numbers as double: accept only finite, integral values in [0, 2^53]. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return NUM_NOT_NUMBER;
    double d = v->valuedouble;
    if (d != d) return NUM_NOT_INTEGER;                   /* NaN */
    if (d < 0) return NUM_NEGATIVE;                        /* includes -inf */
    if (d > (double)ST_MAX_JSON_INT) return NUM_TOO_LARGE; /* includes +inf */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return NUM_NOT_INTEGER;
    *out = u;
    return NUM_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns a name that occurs twice in names[0..n) (sorts the array), or NULL. */
static const char *find_duplicate(const char **names, size_t n) {
    if (n < 2) return NULL;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* reader                                                                                     */

void gd_st_close(gd_st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    if (f->mapped && f->base) munmap((void *)f->base, f->len);
    free(f);
}

static int parse_metadata(gd_st_file *f, const cJSON *meta, const char *label, char *err,
                          size_t errlen) {
    char sb[96], sb2[96];
    if (!cJSON_IsObject(meta)) {
        set_err(err, errlen, "%s: __metadata__ is not an object", label);
        return -1;
    }
    size_t n = 0;
    for (const cJSON *c = meta->child; c; c = c->next) n++;
    if (n > (size_t)ST_MAX_HEADER) {
        set_err(err, errlen, "%s: __metadata__ has too many entries", label);
        return -1;
    }
    if (n == 0) return 0;
    f->meta_keys = calloc(n, sizeof *f->meta_keys);
    f->meta_vals = calloc(n, sizeof *f->meta_vals);
    const char **keys = calloc(n, sizeof *keys);
    if (!f->meta_keys || !f->meta_vals || !keys) {
        free(keys);
        set_err(err, errlen, "%s: out of memory", label);
        return -1;
    }
    size_t i = 0;
    for (const cJSON *c = meta->child; c; c = c->next, i++) {
        const char *k = c->string ? c->string : "";
        if (!cJSON_IsString(c) || !c->valuestring) {
            set_err(err, errlen, "%s: __metadata__ value for key '%s' is not a string", label,
                    san(k, sb, sizeof sb));
            free(keys);
            return -1;
        }
        keys[i] = k;
        f->meta_keys[i] = xstrdup(k);
        f->meta_vals[i] = xstrdup(c->valuestring);
        f->nmeta = (int)i + 1;
        if (!f->meta_keys[i] || !f->meta_vals[i]) {
            set_err(err, errlen, "%s: out of memory", label);
            free(keys);
            return -1;
        }
    }
    const char *dup = find_duplicate(keys, n);
    if (dup) {
        set_err(err, errlen, "%s: __metadata__ has duplicate key '%s'", label,
                san(dup, sb2, sizeof sb2));
        free(keys);
        return -1;
    }
    free(keys);
    return 0;
}

static int parse_tensor(gd_st_tensor *t, const cJSON *e, const uint8_t *data, uint64_t data_size,
                        const char *label, char *err, size_t errlen) {
    char nb[96], sb[96];
    const char *name = san(e->string ? e->string : "", nb, sizeof nb);
    if (!cJSON_IsObject(e)) {
        set_err(err, errlen, "%s: tensor '%s': entry is not an object", label, name);
        return -1;
    }
    const cJSON *jd = NULL, *js = NULL, *jo = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = NULL;
        if (!c->string) continue;
        if (strcmp(c->string, "dtype") == 0) slot = &jd;
        else if (strcmp(c->string, "shape") == 0) slot = &js;
        else if (strcmp(c->string, "data_offsets") == 0) slot = &jo;
        if (!slot) continue; /* unknown fields are ignored */
        if (*slot) {
            set_err(err, errlen, "%s: tensor '%s': duplicate field '%s'", label, name, c->string);
            return -1;
        }
        *slot = c;
    }
    /* dtype */
    if (!jd) {
        set_err(err, errlen, "%s: tensor '%s': missing dtype", label, name);
        return -1;
    }
    if (!cJSON_IsString(jd) || !jd->valuestring) {
        set_err(err, errlen, "%s: tensor '%s': dtype is not a string", label, name);
        return -1;
    }
    if (!dtype_parse(jd->valuestring, &t->dtype)) {
        set_err(err, errlen, "%s: tensor '%s': unsupported dtype '%s'", label, name,
                san(jd->valuestring, sb, sizeof sb));
        return -1;
    }
    /* shape */
    if (!js) {
        set_err(err, errlen, "%s: tensor '%s': missing shape", label, name);
        return -1;
    }
    if (!cJSON_IsArray(js)) {
        set_err(err, errlen, "%s: tensor '%s': shape is not an array", label, name);
        return -1;
    }
    int ndim = 0;
    uint64_t numel = 1;
    for (const cJSON *c = js->child; c; c = c->next) {
        if (ndim >= ST_MAX_DIMS) {
            set_err(err, errlen, "%s: tensor '%s': shape has more than %d dimensions", label,
                    name, ST_MAX_DIMS);
            return -1;
        }
        uint64_t d = 0;
        int rc = json_u64(c, &d);
        if (rc != NUM_OK) {
            set_err(err, errlen, "%s: tensor '%s': shape[%d] %s", label, name, ndim,
                    num_problem(rc));
            return -1;
        }
        if (d > ST_MAX_NUMEL || (d != 0 && numel > ST_MAX_NUMEL / d)) {
            set_err(err, errlen,
                    "%s: tensor '%s': shape has more than 2^40 elements (overflow at shape[%d])",
                    label, name, ndim);
            return -1;
        }
        numel *= d;
        t->shape[ndim++] = (int64_t)d;
    }
    t->ndim = ndim;
    t->numel = (int64_t)numel;
    /* data_offsets */
    if (!jo) {
        set_err(err, errlen, "%s: tensor '%s': missing data_offsets", label, name);
        return -1;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2) {
        set_err(err, errlen, "%s: tensor '%s': data_offsets is not an array of 2 integers",
                label, name);
        return -1;
    }
    uint64_t off[2] = {0, 0};
    const cJSON *c = jo->child;
    for (int k = 0; k < 2; k++, c = c->next) {
        int rc = json_u64(c, &off[k]);
        if (rc != NUM_OK) {
            set_err(err, errlen, "%s: tensor '%s': data_offsets[%d] %s", label, name, k,
                    num_problem(rc));
            return -1;
        }
    }
    if (off[0] > off[1]) {
        set_err(err, errlen, "%s: tensor '%s': data_offsets [%llu,%llu] begin after end", label,
                name, (unsigned long long)off[0], (unsigned long long)off[1]);
        return -1;
    }
    if (off[1] > data_size) {
        set_err(err, errlen,
                "%s: tensor '%s': data_offsets [%llu,%llu] exceed data section of %llu bytes",
                label, name, (unsigned long long)off[0], (unsigned long long)off[1],
                (unsigned long long)data_size);
        return -1;
    }
    uint64_t nbytes = numel * gd_st_dtype_size(t->dtype); /* <= 2^43, no overflow */
    if (off[1] - off[0] != nbytes) {
        set_err(err, errlen,
                "%s: tensor '%s': data_offsets [%llu,%llu] hold %llu bytes but %s shape needs "
                "%llu",
                label, name, (unsigned long long)off[0], (unsigned long long)off[1],
                (unsigned long long)(off[1] - off[0]), gd_st_dtype_name(t->dtype),
                (unsigned long long)nbytes);
        return -1;
    }
    t->data = data + off[0];
    t->nbytes = (size_t)nbytes;
    t->name = xstrdup(e->string ? e->string : "");
    if (!t->name) {
        set_err(err, errlen, "%s: out of memory", label);
        return -1;
    }
    return 0;
}

/* Parses and validates buf[0..len). On success the returned file references buf. */
static gd_st_file *parse_buffer(const uint8_t *buf, size_t len, const char *label, char *err,
                                size_t errlen) {
    char sb[96];
    if (!buf || len < 8) {
        set_err(err, errlen, "%s: file is %zu bytes, too small for a safetensors header", label,
                buf ? len : (size_t)0);
        return NULL;
    }
    uint64_t hlen = read_le64(buf);
    if (hlen > (uint64_t)(len - 8)) {
        set_err(err, errlen, "%s: header length %llu exceeds file size of %zu bytes", label,
                (unsigned long long)hlen, len);
        return NULL;
    }
    if (hlen >= ST_MAX_HEADER) {
        set_err(err, errlen, "%s: header length %llu is too large (limit %u)", label,
                (unsigned long long)hlen, (unsigned)ST_MAX_HEADER);
        return NULL;
    }
    if (hlen < 2) {
        set_err(err, errlen, "%s: header length %llu is too small for a JSON object", label,
                (unsigned long long)hlen);
        return NULL;
    }
    const uint8_t *hdr = buf + 8;
    size_t hl = (size_t)hlen;
    if (memchr(hdr, 0, hl)) {
        set_err(err, errlen, "%s: header contains a NUL byte", label);
        return NULL;
    }
    size_t bad = utf8_check(hdr, hl);
    if (bad != hl) {
        set_err(err, errlen, "%s: header is not valid UTF-8 (byte %zu)", label, bad);
        return NULL;
    }
    /* Parse a NUL-terminated copy with slack so that a parser over-read cannot leave it. */
    char *copy = malloc(hl + 16);
    if (!copy) {
        set_err(err, errlen, "%s: out of memory", label);
        return NULL;
    }
    memcpy(copy, hdr, hl);
    memset(copy + hl, 0, 16);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = (at && at >= copy && at <= copy + hl) ? (size_t)(at - copy) : 0;
        set_err(err, errlen, "%s: header is not valid JSON (near byte %zu)", label, pos);
        free(copy);
        return NULL;
    }
    if (!end || end < copy || end > copy + hl) end = copy + hl;
    for (const char *p = end; p < copy + hl; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            set_err(err, errlen, "%s: trailing data after header JSON (byte %zu)", label,
                    (size_t)(p - copy));
            cJSON_Delete(root);
            free(copy);
            return NULL;
        }
    }
    free(copy);
    if (!cJSON_IsObject(root)) {
        set_err(err, errlen, "%s: header is not a JSON object", label);
        cJSON_Delete(root);
        return NULL;
    }

    gd_st_file *f = calloc(1, sizeof *f);
    const char **names = NULL;
    if (!f) goto oom;
    f->base = buf;
    f->len = len;

    size_t nent = 0;
    const cJSON *meta = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string && strcmp(c->string, "__metadata__") == 0) {
            if (meta) {
                set_err(err, errlen, "%s: duplicate __metadata__", label);
                goto fail;
            }
            meta = c;
        } else {
            nent++;
        }
    }
    if (nent > (size_t)(ST_MAX_HEADER / 8)) {
        set_err(err, errlen, "%s: header has too many tensors (%zu)", label, nent);
        goto fail;
    }
    if (meta && parse_metadata(f, meta, label, err, errlen) != 0) goto fail;

    if (nent > 0) {
        f->tensors = calloc(nent, sizeof *f->tensors);
        names = calloc(nent, sizeof *names);
        if (!f->tensors || !names) goto oom;
    }
    const uint8_t *data = hdr + hl;
    uint64_t data_size = (uint64_t)(len - 8 - hl);
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        gd_st_tensor *t = &f->tensors[f->count];
        if (parse_tensor(t, c, data, data_size, label, err, errlen) != 0) goto fail;
        names[f->count] = t->name;
        f->count++;
    }
    const char *dup = find_duplicate(names, (size_t)f->count);
    if (dup) {
        set_err(err, errlen, "%s: duplicate tensor name '%s'", label, san(dup, sb, sizeof sb));
        goto fail;
    }
    free(names);
    cJSON_Delete(root);
    if (err && errlen) err[0] = '\0';
    return f;

oom:
    set_err(err, errlen, "%s: out of memory", label);
fail:
    free(names);
    cJSON_Delete(root);
    if (f) f->mapped = 0; /* caller owns the buffer until success */
    gd_st_close(f);
    return NULL;
}

gd_st_file *gd_st_open_mem(const void *buf, size_t len, char *err, size_t errlen) {
    return parse_buffer(buf, len, ST_MEM_LABEL, err, errlen);
}

gd_st_file *gd_st_open(const char *path, char *err, size_t errlen) {
    if (!path) {
        set_err(err, errlen, "(null): no path given");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 8) {
        set_err(err, errlen, "%s: file is %lld bytes, too small for a safetensors header", path,
                (long long)st.st_size);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        set_err(err, errlen, "%s: file too large to map", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (m == MAP_FAILED) {
        set_err(err, errlen, "%s: mmap failed: %s", path, strerror(map_errno));
        return NULL;
    }
    gd_st_file *f = parse_buffer(m, len, path, err, errlen);
    if (!f) {
        munmap(m, len);
        return NULL;
    }
    f->mapped = 1;
    return f;
}

int gd_st_count(const gd_st_file *f) { return f ? f->count : 0; }

const gd_st_tensor *gd_st_get(const gd_st_file *f, int i) {
    if (!f || i < 0 || i >= f->count) return NULL;
    return &f->tensors[i];
}

const gd_st_tensor *gd_st_find(const gd_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *gd_st_metadata(const gd_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* writer                                                                                     */

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
    return utf8_check((const uint8_t *)s, n) == n;
}

int gd_st_writer_add(gd_st_writer *w, const char *name, gd_st_dtype dtype, int ndim,
                     const int64_t *shape, const void *data) {
    if (!w || !name || !dtype_valid(dtype) || ndim < 0 || ndim > ST_MAX_DIMS) return -1;
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
    t->name = xstrdup(name);
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
    char *v = xstrdup(value);
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
    w->mk[w->nm] = xstrdup(key);
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
        set_err(err, errlen, "%s: invalid writer or path", path ? path : "(null)");
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
        set_err(err, errlen, "%s: out of memory building header", path);
        return -1;
    }
    if (b.n >= ST_MAX_HEADER) {
        free(b.p);
        set_err(err, errlen, "%s: header of %zu bytes is too large", path, b.n);
        return -1;
    }

    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(b.p);
        set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot create temporary file '%s': %s", path, tmp,
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
        set_err(err, errlen, "%s: %s of '%s' failed: %s", path, what, tmp, strerror(saved));
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
