/* ddpm-npz verify: a sample_batch.sh manifest against its shards (format in cli/npz_verify.h). A
 * merge of shards that are not exactly the run's samples loses or duplicates images silently, so
 * everything a merge relies on is checked here first. */
#include "cli/npz_verify.h"
#include "gd_image.h"
#include "gd_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long long first, count;
    char sha[65]; /* "" until the shard is written ('-') */
    char *name;
    int line;
} shard_rec;

typedef struct {
    const char *path;
    long long n, size, k; /* -1 until their line is read */
    unsigned long long seed;
    int seed_seen;
    shard_rec *s;
    long ns, cap;
} manifest;

/* The whole of v as digits (what the script writes), at most hi. */
static int parse_uint(const char *v, unsigned long long hi, unsigned long long *out) {
    if (!*v || strspn(v, "0123456789") != strlen(v)) return -1;
    errno = 0;
    unsigned long long x = strtoull(v, NULL, 10);
    if (errno || x > hi) return -1;
    *out = x;
    return 0;
}

static int is_sha(const char *s) { return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64; }

/* "FIRST COUNT SHA256|- NAME" */
static int parse_shard(manifest *m, char *v, int line, char *err, size_t errlen) {
    char *f = v, *c = strchr(f, ' '), *h = c ? strchr(c + 1, ' ') : NULL, *name = h ? strchr(h + 1, ' ') : NULL;
    unsigned long long first, count;
    if (!name || !name[1]) {
        gd_errf(err, errlen, "%s: line %d: a shard line is 'shard FIRST COUNT SHA256 NAME'", m->path, line);
        return -1;
    }
    *c++ = 0, *h++ = 0, *name++ = 0;
    if (parse_uint(f, INT64_MAX / 2, &first) || parse_uint(c, INT64_MAX / 2, &count) || count == 0) {
        gd_errf(err, errlen, "%s: line %d: shard '%s': FIRST and COUNT must be integers, COUNT at least 1", m->path,
                line, name);
        return -1;
    }
    if (strcmp(h, "-") && !is_sha(h)) {
        gd_errf(err, errlen, "%s: line %d: shard '%s': '%.70s' is not a sha256 (64 hex digits) or '-'", m->path, line,
                name, h);
        return -1;
    }
    size_t nl = strlen(name);
    if (nl < 5 || strcmp(name + nl - 4, ".npz")) {
        gd_errf(err, errlen, "%s: line %d: shard '%s' is not an .npz file", m->path, line, name);
        return -1;
    }
    if (m->ns == m->cap) {
        long cap = m->cap ? 2 * m->cap : 64;
        shard_rec *ns = realloc(m->s, sizeof *ns * (size_t)cap);
        if (!ns) {
            gd_errf(err, errlen, "%s: out of memory", m->path);
            return -1;
        }
        m->s = ns, m->cap = cap;
    }
    shard_rec *r = &m->s[m->ns];
    r->first = (long long)first, r->count = (long long)count, r->line = line;
    snprintf(r->sha, sizeof r->sha, "%s", strcmp(h, "-") ? h : "");
    if (!(r->name = strdup(name))) {
        gd_errf(err, errlen, "%s: out of memory", m->path);
        return -1;
    }
    m->ns++;
    return 0;
}

static int parse_line(manifest *m, char *l, int line, char *err, size_t errlen) {
    char *sp = strchr(l, ' ');
    const char *key = l, *v = sp ? sp + 1 : "";
    if (sp) *sp = 0;
    if (!strcmp(key, "arg") || !strcmp(key, "file")) return 0; /* the script compares those on a rerun */
    if (!strcmp(key, "shard")) return parse_shard(m, sp ? sp + 1 : l + strlen(l), line, err, errlen);
    long long *dst = !strcmp(key, "n") ? &m->n : !strcmp(key, "shard_size") ? &m->size : !strcmp(key, "shards") ? &m->k : NULL;
    unsigned long long x;
    if (!dst && strcmp(key, "seed")) {
        gd_errf(err, errlen, "%s: line %d: unknown record '%.40s'", m->path, line, key);
        return -1;
    }
    if (dst ? *dst >= 0 : m->seed_seen) {
        gd_errf(err, errlen, "%s: line %d: a second '%s' line", m->path, line, key);
        return -1;
    }
    if (parse_uint(v, dst ? INT64_MAX / 2 : UINT64_MAX, &x) || (dst && dst != &m->k && x == 0)) {
        gd_errf(err, errlen, "%s: line %d: %s must be a %s integer, not '%.40s'", m->path, line, key,
                dst && dst != &m->k ? "positive" : "non-negative", v);
        return -1;
    }
    if (dst) *dst = (long long)x;
    else m->seed = x, m->seed_seen = 1;
    return 0;
}

static int read_manifest(manifest *m, char *err, size_t errlen) {
    FILE *f = fopen(m->path, "r");
    if (!f) {
        gd_errf(err, errlen, "%s: cannot open: %s", m->path, strerror(errno));
        return -1;
    }
    char *l = NULL;
    size_t cap = 0;
    ssize_t len;
    int line = 0, rc = 0;
    while (!rc && (len = getline(&l, &cap, f)) >= 0) {
        line++;
        if (len > 0 && l[len - 1] == '\n') l[--len] = 0;
        if ((size_t)len != strlen(l)) {
            gd_errf(err, errlen, "%s: line %d holds a NUL byte (not a manifest?)", m->path, line);
            rc = -1;
        } else if (line == 1) {
            if (strcmp(l, GD_BATCH_MANIFEST_MAGIC)) {
                gd_errf(err, errlen, "%s: not a sample_batch.sh manifest (line 1 is not '%s')", m->path,
                        GD_BATCH_MANIFEST_MAGIC);
                rc = -1;
            }
        } else {
            rc = parse_line(m, l, line, err, errlen);
        }
    }
    free(l);
    fclose(f);
    if (!rc && line == 0) gd_errf(err, errlen, "%s: empty file (not a sample_batch.sh manifest)", m->path), rc = -1;
    const char *missing = m->n < 0 ? "n" : !m->seed_seen ? "seed" : m->size < 0 ? "shard_size" : m->k < 0 ? "shards" : NULL;
    if (!rc && missing) gd_errf(err, errlen, "%s: has no '%s' line", m->path, missing), rc = -1;
    return rc;
}

/* The ranges, in order, must be [0, N) cut without gap or overlap. */
static int check_tiling(const manifest *m, char *err, size_t errlen) {
    long long end = 0;
    for (long i = 0; i < m->ns; i++) {
        const shard_rec *r = &m->s[i];
        if (r->first != end) {
            gd_errf(err, errlen, "%s: line %d: shard %s starts at sample %lld, but the shards before it end at %lld (%s)",
                    m->path, r->line, r->name, r->first, end, r->first > end ? "a gap: samples missing" : "an overlap: samples twice");
            return -1;
        }
        if (r->count > m->size) {
            gd_errf(err, errlen, "%s: line %d: shard %s holds %lld samples, more than shard_size %lld", m->path, r->line,
                    r->name, r->count, m->size);
            return -1;
        }
        end += r->count;
    }
    if (end != m->n) {
        gd_errf(err, errlen, "%s: the shards cover samples [0, %lld), not [0, %lld)", m->path, end, m->n);
        return -1;
    }
    if (m->ns != m->k) {
        gd_errf(err, errlen, "%s: has %ld shard lines, but says 'shards %lld'", m->path, m->ns, m->k);
        return -1;
    }
    return 0;
}

/* ddpm-sample's JSON record of a shard: its first index, sample count and seed. */
static int check_record(const manifest *m, const shard_rec *r, const char *rec, char *err, size_t errlen) {
    FILE *f = fopen(rec, "rb");
    if (!f) {
        gd_errf(err, errlen, "%s: %s: ddpm-sample's record of it, '%s', cannot be read (%s), so where the shard's samples "
                "start is unknown", m->path, r->name, rec, strerror(errno));
        return -1;
    }
    char *buf = NULL; /* whole: it lists every sample's label */
    size_t len = 0, cap = 0, got;
    do {
        if (len + 4096 >= cap) {
            char *nb = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!nb) break;
            buf = nb;
        }
        len += got = fread(buf + len, 1, cap - len - 1, f);
    } while (got > 0);
    fclose(f);
    if (buf) buf[len] = 0;
    cJSON *js = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    const cJSON *fi = cJSON_GetObjectItemCaseSensitive(js, "first_index");
    const cJSON *nu = cJSON_GetObjectItemCaseSensitive(js, "num_samples");
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(js, "seed");
    int rc = 0;
    if (!cJSON_IsNumber(fi) || !cJSON_IsNumber(nu) || !cJSON_IsNumber(se)) {
        gd_errf(err, errlen, "%s: %s: its record '%s' has no first_index, num_samples and seed", m->path, r->name, rec);
        rc = -1;
    } else if (fi->valuedouble != (double)r->first || nu->valuedouble != (double)r->count) {
        gd_errf(err, errlen, "%s: %s was sampled as samples [%.0f, %.0f) (its record '%s'), but its range is [%lld, %lld)",
                m->path, r->name, fi->valuedouble, fi->valuedouble + nu->valuedouble, rec, r->first, r->first + r->count);
        rc = -1;
    } else if (m->seed <= (1ull << 53) && se->valuedouble != (double)m->seed) { /* the record's seed is a double */
        gd_errf(err, errlen, "%s: %s was sampled with seed %.0f (its record '%s'), not the run's %llu", m->path, r->name,
                se->valuedouble, rec, m->seed);
        rc = -1;
    }
    cJSON_Delete(js);
    return rc;
}

static int check_shard(const manifest *m, const shard_rec *r, char *err, size_t errlen) {
    char path[8192], rec[8200], hex[65], e2[600];
    const char *slash = strrchr(m->path, '/');
    int dl = r->name[0] == '/' || !slash ? 0 : (int)(slash - m->path) + 1;
    if (snprintf(path, sizeof path, "%.*s%s", dl, m->path, r->name) >= (int)sizeof path) {
        gd_errf(err, errlen, "%s: %s: path too long", m->path, r->name);
        return -1;
    }
    if (!r->sha[0]) {
        gd_errf(err, errlen, "%s: %s is not finished (no sha256 recorded yet)", m->path, r->name);
        return -1;
    }
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        gd_errf(err, errlen, "%s: shard %s is missing (%s)", m->path, r->name, strerror(errno));
        return -1;
    }
    fclose(probe);
    if (gd_sha256_file(path, hex, e2, sizeof e2)) {
        gd_errf(err, errlen, "%s: %s", m->path, e2);
        return -1;
    }
    if (strcmp(hex, r->sha)) {
        gd_errf(err, errlen, "%s: %s: sha256 %s is not the %s recorded when it was written (changed or damaged since)",
                m->path, r->name, hex, r->sha);
        return -1;
    }
    uint8_t *im;
    int64_t *lab;
    int n, h, w, c;
    if (gd_read_npz(path, &im, &n, &h, &w, &c, &lab, e2, sizeof e2)) {
        gd_errf(err, errlen, "%s: %s", m->path, e2);
        return -1;
    }
    free(im);
    free(lab);
    if (n != r->count) {
        gd_errf(err, errlen, "%s: %s holds %d images, but its range [%lld, %lld) needs %lld", m->path, r->name, n,
                r->first, r->first + r->count, r->count);
        return -1;
    }
    snprintf(rec, sizeof rec, "%.*s.png.json", (int)strlen(path) - 4, path);
    return check_record(m, r, rec, err, errlen);
}

int gd_batch_manifest_verify(const char *path, long long *n, long *shards, char *err, size_t errlen) {
    manifest m = {.path = path, .n = -1, .size = -1, .k = -1};
    int rc = read_manifest(&m, err, errlen);
    if (!rc) rc = check_tiling(&m, err, errlen);
    for (long i = 0; !rc && i < m.ns; i++) rc = check_shard(&m, &m.s[i], err, errlen);
    if (!rc && n) *n = m.n;
    if (!rc && shards) *shards = m.ns;
    for (long i = 0; i < m.ns; i++) free(m.s[i].name);
    free(m.s);
    return rc;
}
