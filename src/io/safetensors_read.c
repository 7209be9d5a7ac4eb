/* safetensors reader (mmap / caller buffer, cJSON header). See include/gd_safetensors.h for the
 * format and the API contract. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_safetensors.h"
#include "gd_util.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define ST_MAX_JSON_INT ((uint64_t)1 << 53)      /* largest exactly representable integer */
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
    void **owned;          /* blocks freed by gd_st_close (st_file_adopt) */
    int nowned;
};

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

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

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
    for (int i = 0; i < f->nowned; i++) free(f->owned[i]);
    free(f->owned);
    if (f->mapped && f->base) munmap((void *)f->base, f->len);
    free(f);
}

gd_st_file *st_file_adopt(gd_st_tensor *tensors, int count, void **owned, int nowned, void *map, size_t map_len) {
    gd_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        for (int i = 0; i < count; i++) free(tensors[i].name);
        free(tensors);
        for (int i = 0; i < nowned; i++) free(owned[i]);
        free(owned);
        if (map) munmap(map, map_len);
        return NULL;
    }
    f->tensors = tensors;
    f->count = count;
    f->owned = owned;
    f->nowned = nowned;
    f->base = map;
    f->len = map_len;
    f->mapped = map != NULL;
    return f;
}

static int parse_metadata(gd_st_file *f, const cJSON *meta, const char *label, char *err,
                          size_t errlen) {
    char sb[96], sb2[96];
    if (!cJSON_IsObject(meta)) {
        gd_errf(err, errlen, "%s: __metadata__ is not an object", label);
        return -1;
    }
    size_t n = 0;
    for (const cJSON *c = meta->child; c; c = c->next) n++;
    if (n > (size_t)ST_MAX_HEADER) {
        gd_errf(err, errlen, "%s: __metadata__ has too many entries", label);
        return -1;
    }
    if (n == 0) return 0;
    f->meta_keys = calloc(n, sizeof *f->meta_keys);
    f->meta_vals = calloc(n, sizeof *f->meta_vals);
    const char **keys = calloc(n, sizeof *keys);
    if (!f->meta_keys || !f->meta_vals || !keys) {
        free(keys);
        gd_errf(err, errlen, "%s: out of memory", label);
        return -1;
    }
    size_t i = 0;
    for (const cJSON *c = meta->child; c; c = c->next, i++) {
        const char *k = c->string ? c->string : "";
        if (!cJSON_IsString(c) || !c->valuestring) {
            gd_errf(err, errlen, "%s: __metadata__ value for key '%s' is not a string", label,
                    san(k, sb, sizeof sb));
            free(keys);
            return -1;
        }
        keys[i] = k;
        f->meta_keys[i] = strdup(k);
        f->meta_vals[i] = strdup(c->valuestring);
        f->nmeta = (int)i + 1;
        if (!f->meta_keys[i] || !f->meta_vals[i]) {
            gd_errf(err, errlen, "%s: out of memory", label);
            free(keys);
            return -1;
        }
    }
    const char *dup = find_duplicate(keys, n);
    if (dup) {
        gd_errf(err, errlen, "%s: __metadata__ has duplicate key '%s'", label,
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
        gd_errf(err, errlen, "%s: tensor '%s': entry is not an object", label, name);
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
            gd_errf(err, errlen, "%s: tensor '%s': duplicate field '%s'", label, name, c->string);
            return -1;
        }
        *slot = c;
    }
    /* dtype */
    if (!jd) {
        gd_errf(err, errlen, "%s: tensor '%s': missing dtype", label, name);
        return -1;
    }
    if (!cJSON_IsString(jd) || !jd->valuestring) {
        gd_errf(err, errlen, "%s: tensor '%s': dtype is not a string", label, name);
        return -1;
    }
    if (!st_dtype_parse(jd->valuestring, &t->dtype)) {
        gd_errf(err, errlen, "%s: tensor '%s': unsupported dtype '%s'", label, name,
                san(jd->valuestring, sb, sizeof sb));
        return -1;
    }
    /* shape */
    if (!js) {
        gd_errf(err, errlen, "%s: tensor '%s': missing shape", label, name);
        return -1;
    }
    if (!cJSON_IsArray(js)) {
        gd_errf(err, errlen, "%s: tensor '%s': shape is not an array", label, name);
        return -1;
    }
    int ndim = 0;
    uint64_t numel = 1;
    for (const cJSON *c = js->child; c; c = c->next) {
        if (ndim >= ST_MAX_DIMS) {
            gd_errf(err, errlen, "%s: tensor '%s': shape has more than %d dimensions", label,
                    name, ST_MAX_DIMS);
            return -1;
        }
        uint64_t d = 0;
        int rc = json_u64(c, &d);
        if (rc != NUM_OK) {
            gd_errf(err, errlen, "%s: tensor '%s': shape[%d] %s", label, name, ndim,
                    num_problem(rc));
            return -1;
        }
        if (d > ST_MAX_NUMEL || (d != 0 && numel > ST_MAX_NUMEL / d)) {
            gd_errf(err, errlen,
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
        gd_errf(err, errlen, "%s: tensor '%s': missing data_offsets", label, name);
        return -1;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2) {
        gd_errf(err, errlen, "%s: tensor '%s': data_offsets is not an array of 2 integers",
                label, name);
        return -1;
    }
    uint64_t off[2] = {0, 0};
    const cJSON *c = jo->child;
    for (int k = 0; k < 2; k++, c = c->next) {
        int rc = json_u64(c, &off[k]);
        if (rc != NUM_OK) {
            gd_errf(err, errlen, "%s: tensor '%s': data_offsets[%d] %s", label, name, k,
                    num_problem(rc));
            return -1;
        }
    }
    if (off[0] > off[1]) {
        gd_errf(err, errlen, "%s: tensor '%s': data_offsets [%llu,%llu] begin after end", label,
                name, (unsigned long long)off[0], (unsigned long long)off[1]);
        return -1;
    }
    if (off[1] > data_size) {
        gd_errf(err, errlen,
                "%s: tensor '%s': data_offsets [%llu,%llu] exceed data section of %llu bytes",
                label, name, (unsigned long long)off[0], (unsigned long long)off[1],
                (unsigned long long)data_size);
        return -1;
    }
    uint64_t nbytes = numel * gd_st_dtype_size(t->dtype); /* <= 2^43, no overflow */
    if (off[1] - off[0] != nbytes) {
        gd_errf(err, errlen,
                "%s: tensor '%s': data_offsets [%llu,%llu] hold %llu bytes but %s shape needs "
                "%llu",
                label, name, (unsigned long long)off[0], (unsigned long long)off[1],
                (unsigned long long)(off[1] - off[0]), gd_st_dtype_name(t->dtype),
                (unsigned long long)nbytes);
        return -1;
    }
    t->data = data + off[0];
    t->nbytes = (size_t)nbytes;
    t->name = strdup(e->string ? e->string : "");
    if (!t->name) {
        gd_errf(err, errlen, "%s: out of memory", label);
        return -1;
    }
    return 0;
}

/* Parses and validates buf[0..len). On success the returned file references buf. */
static gd_st_file *parse_buffer(const uint8_t *buf, size_t len, const char *label, char *err,
                                size_t errlen) {
    char sb[96];
    if (!buf || len < 8) {
        gd_errf(err, errlen, "%s: file is %zu bytes, too small for a safetensors header", label,
                buf ? len : (size_t)0);
        return NULL;
    }
    uint64_t hlen = read_le64(buf);
    if (hlen > (uint64_t)(len - 8)) {
        gd_errf(err, errlen, "%s: header length %llu exceeds file size of %zu bytes", label,
                (unsigned long long)hlen, len);
        return NULL;
    }
    if (hlen >= ST_MAX_HEADER) {
        gd_errf(err, errlen, "%s: header length %llu is too large (limit %u)", label,
                (unsigned long long)hlen, (unsigned)ST_MAX_HEADER);
        return NULL;
    }
    if (hlen < 2) {
        gd_errf(err, errlen, "%s: header length %llu is too small for a JSON object", label,
                (unsigned long long)hlen);
        return NULL;
    }
    const uint8_t *hdr = buf + 8;
    size_t hl = (size_t)hlen;
    if (memchr(hdr, 0, hl)) {
        gd_errf(err, errlen, "%s: header contains a NUL byte", label);
        return NULL;
    }
    size_t bad = st_utf8_check(hdr, hl);
    if (bad != hl) {
        gd_errf(err, errlen, "%s: header is not valid UTF-8 (byte %zu)", label, bad);
        return NULL;
    }
    /* Parse a NUL-terminated copy with slack so that a parser over-read cannot leave it. */
    char *copy = malloc(hl + 16);
    if (!copy) {
        gd_errf(err, errlen, "%s: out of memory", label);
        return NULL;
    }
    memcpy(copy, hdr, hl);
    memset(copy + hl, 0, 16);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = (at && at >= copy && at <= copy + hl) ? (size_t)(at - copy) : 0;
        gd_errf(err, errlen, "%s: header is not valid JSON (near byte %zu)", label, pos);
        free(copy);
        return NULL;
    }
    if (!end || end < copy || end > copy + hl) end = copy + hl;
    for (const char *p = end; p < copy + hl; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            gd_errf(err, errlen, "%s: trailing data after header JSON (byte %zu)", label,
                    (size_t)(p - copy));
            cJSON_Delete(root);
            free(copy);
            return NULL;
        }
    }
    free(copy);
    if (!cJSON_IsObject(root)) {
        gd_errf(err, errlen, "%s: header is not a JSON object", label);
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
                gd_errf(err, errlen, "%s: duplicate __metadata__", label);
                goto fail;
            }
            meta = c;
        } else {
            nent++;
        }
    }
    if (nent > (size_t)(ST_MAX_HEADER / 8)) {
        gd_errf(err, errlen, "%s: header has too many tensors (%zu)", label, nent);
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
        gd_errf(err, errlen, "%s: duplicate tensor name '%s'", label, san(dup, sb, sizeof sb));
        goto fail;
    }
    free(names);
    cJSON_Delete(root);
    if (err && errlen) err[0] = '\0';
    return f;

oom:
    gd_errf(err, errlen, "%s: out of memory", label);
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
    void *m;
    size_t len;
    if (gd_map_file(path, &m, &len, err, errlen)) return NULL;
    if (len < 8) {
        gd_errf(err, errlen, "%s: file is %zu bytes, too small for a safetensors header", path, len);
        gd_unmap_file(m, len);
        return NULL;
    }
    gd_st_file *f = parse_buffer(m, len, path, err, errlen);
    if (!f) {
        gd_unmap_file(m, len);
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
