/* The released checkpoints (configs/checkpoints.json: file name -> config, overrides, source) and
 * the ImageNet class names (configs/imagenet_classes.txt), found in configs/ here or beside the
 * executable (build/ddpm-x -> ./configs), so the tools work from any directory. */
#include "nn/config_src.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_file(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

const char *cfg_dir(const char *dir) {
    static char beside[PATH_MAX + 16];
    if (dir) return dir;
    if (is_file("configs/checkpoints.json")) return "configs";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(exe, '/');
        if (!s) return NULL;
        *s = 0;
    }
    snprintf(beside, sizeof beside, "%s/configs", exe);
    char probe[PATH_MAX + 40];
    snprintf(probe, sizeof probe, "%s/checkpoints.json", beside);
    return is_file(probe) ? beside : NULL;
}

/* The whole file, NUL-terminated; NULL with err. */
static char *slurp(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = 2 * cap + 65536 + 1;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                fclose(f);
                snprintf(err, errlen, "%s: out of memory", path);
                return NULL;
            }
            b = nb;
        }
        size_t got = fread(b + n, 1, 65536, f);
        n += got;
        if (got < 65536) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        snprintf(err, errlen, "%s: read error", path);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

pj *cfg_load_json(const char *path, char *err, size_t errlen) {
    size_t n;
    char *txt = slurp(path, &n, err, errlen), e2[256];
    if (!txt) return NULL;
    pj *v = pj_parse(txt, n, e2, sizeof e2);
    free(txt);
    if (!v) snprintf(err, errlen, "%s: %s", path, e2);
    return v;
}

pj *cfg_table(const char *dir, char *err, size_t errlen) {
    const char *d = cfg_dir(dir);
    if (!d) {
        snprintf(err, errlen, "no configs/checkpoints.json here or beside the executable");
        return NULL;
    }
    char p[PATH_MAX + 40];
    snprintf(p, sizeof p, "%s/checkpoints.json", d);
    pj *t = cfg_load_json(p, err, errlen);
    if (t && t->t != PJ_DICT) {
        snprintf(err, errlen, "%s: not a JSON object", p);
        pj_free(t);
        return NULL;
    }
    for (int i = 0; t && i < t->n;) {
        if (t->k[i][0] == '_') pj_free(pj_pop(t, t->k[i]));
        else i++;
    }
    return t;
}

pj *cfg_released(const char *dir, const pj *entry, char *err, size_t errlen) {
    const pj *c = pj_get(entry, "config");
    const char *d = cfg_dir(dir);
    if (!pj_is_str(c, c ? c->s : "") || !d) {
        snprintf(err, errlen, "configs/checkpoints.json: an entry without a \"config\" file name");
        return NULL;
    }
    char p[PATH_MAX + 300];
    snprintf(p, sizeof p, "%s/%s", d, c->s);
    pj *cfg = cfg_load_json(p, err, errlen);
    if (cfg && cfg->t != PJ_DICT) {
        snprintf(err, errlen, "%s: not a JSON object", p);
        pj_free(cfg);
        return NULL;
    }
    const pj *set = pj_get(entry, "set");
    if (cfg && set && pj_update(cfg, set)) {
        snprintf(err, errlen, "configs/checkpoints.json: \"set\" of %s is not an object", c->s);
        pj_free(cfg);
        return NULL;
    }
    return cfg;
}

/* ---- class names ----------------------------------------------------------------------------- */

static int utf8_len(const unsigned char *s, size_t left, unsigned *cp) {
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!n || (size_t)n > left) return 0;
    unsigned v = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 63);
    }
    static const unsigned minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[n] || v > 0x10ffff || (v >= 0xd800 && v < 0xe000)) return 0;
    *cp = v;
    return n;
}

/* str.isspace() */
static int py_space(unsigned c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* One line stripped as str.strip() does, appended to list when not empty. */
static int add_line(pj *list, const unsigned char *s, size_t n) {
    size_t a = 0, b = n;
    unsigned cp;
    for (int k; a < b && (k = utf8_len(s + a, b - a, &cp)) && py_space(cp);) a += (size_t)k;
    while (a < b) { /* the last character: step back over continuation bytes */
        size_t q = b - 1;
        while (q > a && (s[q] & 0xc0) == 0x80) q--;
        if (!utf8_len(s + q, b - q, &cp) || !py_space(cp)) break;
        b = q;
    }
    return a < b ? pj_append(list, pj_strn((const char *)s + a, b - a)) : 0;
}

/* [ln.strip() for ln in open(path, encoding="utf-8") if ln.strip()] */
static pj *read_names(const char *path, char *err, size_t errlen) {
    size_t n;
    char *txt = slurp(path, &n, err, errlen);
    if (!txt) return NULL;
    pj *list = pj_list();
    const unsigned char *s = (const unsigned char *)txt;
    size_t start = 0;
    unsigned cp;
    for (size_t i = 0; list && i <= n;) {
        int k = i < n ? utf8_len(s + i, n - i, &cp) : 1;
        if (!k) {
            snprintf(err, errlen, "%s: not UTF-8 text (byte %zu)", path, i);
            pj_free(list);
            list = NULL;
            break;
        }
        if (i == n || s[i] == '\n' || s[i] == '\r') { /* universal newlines: \n, \r\n, \r */
            if (add_line(list, s + start, i - start)) pj_free(list), list = NULL;
            if (i < n && s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
            start = i + 1;
        }
        i += (size_t)k;
    }
    free(txt);
    if (!list && err && !err[0]) snprintf(err, errlen, "out of memory");
    return list;
}

int cfg_add_class_names(pj *cfg, const char *file, int none, const char *dir, char *err, size_t errlen) {
    if (none) return 0;
    char src[PATH_MAX + 40], e2[300];
    long long K = 1000;
    const pj *nc = pj_get(cfg, "num_classes");
    if (!file) {
        int labelled = pj_is_str(pj_get(cfg, "model"), "classifier");
        const pj *cc = pj_get(cfg, "class_cond");
        if (!labelled && cc && pj_to_bool(cc, &labelled, e2, sizeof e2)) {
            snprintf(err, errlen, "%s", e2);
            return -1;
        }
        if (!labelled) return 0;
    }
    if (nc && pj_to_int(nc, &K, e2, sizeof e2)) {
        snprintf(err, errlen, "config: num_classes: %s", e2);
        return -1;
    }
    if (file) {
        snprintf(src, sizeof src, "%s", file);
    } else {
        if (K != 1000 || pj_get(cfg, "class_names")) return 0;
        const char *d = cfg_dir(dir);
        snprintf(src, sizeof src, "%s/imagenet_classes.txt", d ? d : "configs");
    }
    pj *names = read_names(src, err, errlen);
    if (!names) return -1;
    if (names->n != K) {
        snprintf(err, errlen, "%s has %d names; the model has %lld classes", src, names->n, K);
        pj_free(names);
        return -1;
    }
    int count = names->n;
    if (!count) {
        pj_free(names);
        return 0;
    }
    if (pj_set(cfg, "class_names", names)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return count;
}

int gd_released_list(const char *dir, FILE *f, char *err, size_t errlen) {
    pj *t = cfg_table(dir, err, errlen);
    if (!t) return -1;
    for (int i = 0; i < t->n; i++) {
        const pj *c = pj_get(t->v[i], "config"), *src = pj_get(t->v[i], "source");
        fprintf(f, "%-32s configs/%-28s %s\n", t->k[i], c && c->t == PJ_STR ? c->s : "?", src && src->t == PJ_STR ? src->s : "");
    }
    pj_free(t);
    return 0;
}
