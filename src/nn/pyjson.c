/* JSON values with Python's json semantics (src/nn/pyjson.h). */
#include "nn/pyjson.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 64

/* ---- values -------------------------------------------------------------------------------- */

static pj *pj_new(pj_type t) {
    pj *v = calloc(1, sizeof *v);
    if (v) v->t = t;
    return v;
}

pj *pj_null(void) { return pj_new(PJ_NULL); }
pj *pj_dict(void) { return pj_new(PJ_DICT); }
pj *pj_list(void) { return pj_new(PJ_LIST); }

pj *pj_bool(int b) {
    pj *v = pj_new(PJ_BOOL);
    if (v) v->b = !!b;
    return v;
}

pj *pj_int(long long i) {
    pj *v = pj_new(PJ_INT);
    if (v) v->i = i;
    return v;
}

pj *pj_float(double f) {
    pj *v = pj_new(PJ_FLOAT);
    if (v) v->f = f;
    return v;
}

pj *pj_strn(const char *s, size_t n) {
    pj *v = pj_new(PJ_STR);
    if (!v) return NULL;
    v->s = malloc(n + 1);
    if (!v->s) {
        free(v);
        return NULL;
    }
    memcpy(v->s, s, n);
    v->s[n] = 0;
    return v;
}

pj *pj_str(const char *s) { return pj_strn(s, strlen(s)); }

void pj_free(pj *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        pj_free(v->v[i]);
        if (v->k) free(v->k[i]);
    }
    free(v->v);
    free(v->k);
    free(v->s);
    free(v);
}

static int grow(pj *c) {
    if (c->n < c->cap) return 0;
    int cap = c->cap ? 2 * c->cap : 8;
    pj **nv = realloc(c->v, sizeof *nv * (size_t)cap);
    if (!nv) return -1;
    c->v = nv;
    if (c->t == PJ_DICT) {
        char **nk = realloc(c->k, sizeof *nk * (size_t)cap);
        if (!nk) return -1;
        c->k = nk;
    }
    c->cap = cap;
    return 0;
}

int pj_append(pj *l, pj *val) {
    if (!l || !val || l->t != PJ_LIST || grow(l)) {
        pj_free(val);
        return -1;
    }
    l->v[l->n++] = val;
    return 0;
}

static int find_key(const pj *d, const char *key) {
    if (!d || d->t != PJ_DICT) return -1;
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->k[i], key)) return i;
    return -1;
}

pj *pj_get(const pj *d, const char *key) {
    int i = find_key(d, key);
    return i < 0 ? NULL : d->v[i];
}

int pj_set(pj *d, const char *key, pj *val) {
    if (!d || !val || d->t != PJ_DICT) {
        pj_free(val);
        return -1;
    }
    int i = find_key(d, key);
    if (i >= 0) {
        pj_free(d->v[i]);
        d->v[i] = val;
        return 0;
    }
    char *k = strdup(key);
    if (!k || grow(d)) {
        free(k);
        pj_free(val);
        return -1;
    }
    d->k[d->n] = k;
    d->v[d->n++] = val;
    return 0;
}

int pj_setdefault(pj *d, const char *key, pj *val) {
    if (find_key(d, key) >= 0) {
        pj_free(val);
        return 0;
    }
    return pj_set(d, key, val);
}

pj *pj_pop(pj *d, const char *key) {
    int i = find_key(d, key);
    if (i < 0) return NULL;
    pj *v = d->v[i];
    free(d->k[i]);
    memmove(d->v + i, d->v + i + 1, sizeof *d->v * (size_t)(d->n - i - 1));
    memmove(d->k + i, d->k + i + 1, sizeof *d->k * (size_t)(d->n - i - 1));
    d->n--;
    return v;
}

pj *pj_copy(const pj *v) {
    if (!v) return NULL;
    pj *c = pj_new(v->t);
    if (!c) return NULL;
    c->b = v->b, c->i = v->i, c->f = v->f;
    if (v->s && !(c->s = strdup(v->s))) goto fail;
    for (int i = 0; i < v->n; i++) {
        pj *e = pj_copy(v->v[i]);
        if (!e) goto fail;
        if (v->t == PJ_DICT ? pj_set(c, v->k[i], e) : pj_append(c, e)) goto fail;
    }
    return c;
fail:
    pj_free(c);
    return NULL;
}

int pj_update(pj *d, const pj *from) {
    if (!from || from->t != PJ_DICT) return -1;
    for (int i = 0; i < from->n; i++)
        if (pj_set(d, from->k[i], pj_copy(from->v[i]))) return -1;
    return 0;
}

int pj_is_str(const pj *v, const char *s) { return v && v->t == PJ_STR && !strcmp(v->s, s); }

/* ---- parsing (json.loads) -------------------------------------------------------------------- */

typedef struct {
    const char *p, *end, *start;
    char *err;
    size_t errlen;
    int depth;
} parser;

static pj *perr(parser *ps, const char *what) {
    if (ps->err && !ps->err[0]) snprintf(ps->err, ps->errlen, "%s at offset %ld", what, (long)(ps->p - ps->start));
    return NULL;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 63)), o[2] = (char)(0x80 | (cp & 63)), 3;
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)), o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static pj *parse_string(parser *ps) {
    ps->p++; /* the quote */
    char *buf = malloc((size_t)(ps->end - ps->p) + 1);
    if (!buf) return perr(ps, "out of memory");
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) {
            free(buf);
            return perr(ps, "invalid control character in a string");
        }
        if (c != '\\') {
            buf[n++] = (char)c, ps->p++;
            continue;
        }
        if (ps->p + 1 >= ps->end) break;
        char e = ps->p[1];
        ps->p += 2;
        const char *esc = strchr("\"\\/bfnrt", e);
        if (esc && e) {
            buf[n++] = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || ps->end - ps->p < 4 || hex4(ps->p, &cp)) {
            free(buf);
            return perr(ps, "invalid escape in a string");
        }
        ps->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u' && !hex4(ps->p + 2, &lo) &&
            lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            ps->p += 6;
        }
        n += put_utf8(buf + n, cp); /* an escape is 6 bytes, its UTF-8 at most 4 (a pair: 12 -> 4) */
    }
    if (ps->p >= ps->end) {
        free(buf);
        return perr(ps, "unterminated string");
    }
    ps->p++;
    pj *v = pj_strn(buf, n);
    free(buf);
    return v ? v : perr(ps, "out of memory");
}

static pj *parse_number(parser *ps) {
    const char *s = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (ps->p < ps->end && *ps->p == '0') ps->p++;
    else if (ps->p < ps->end && isdigit((unsigned char)*ps->p))
        while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) ps->p++;
    else return perr(ps, "expecting value");
    int is_float = 0;
    if (ps->end - ps->p >= 2 && *ps->p == '.' && isdigit((unsigned char)ps->p[1])) {
        is_float = 1, ps->p++;
        while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        const char *q = ps->p + 1;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q < ps->end && isdigit((unsigned char)*q)) {
            is_float = 1;
            while (q < ps->end && isdigit((unsigned char)*q)) q++;
            ps->p = q;
        }
    }
    char tmp[512];
    size_t len = (size_t)(ps->p - s);
    if (len >= sizeof tmp) return perr(ps, "number too long");
    memcpy(tmp, s, len);
    tmp[len] = 0;
    if (is_float) return pj_float(strtod(tmp, NULL));
    errno = 0;
    long long i = strtoll(tmp, NULL, 10);
    if (!errno) return pj_int(i);
    pj *v = pj_int(0); /* beyond 64 bits: keep the digits */
    if (v && !(v->s = strdup(tmp))) pj_free(v), v = NULL;
    return v;
}

static pj *parse_value(parser *ps);

static pj *parse_container(parser *ps, int dict) {
    if (++ps->depth > MAX_DEPTH) return perr(ps, "nested too deeply");
    pj *c = dict ? pj_dict() : pj_list();
    if (!c) return perr(ps, "out of memory");
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (dict ? '}' : ']')) {
        ps->p++, ps->depth--;
        return c;
    }
    for (;;) {
        skip_ws(ps);
        pj *key = NULL;
        if (dict) {
            if (ps->p >= ps->end || *ps->p != '"') goto bad;
            if (!(key = parse_string(ps))) goto bad;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                pj_free(key);
                perr(ps, "expecting ':' delimiter");
                goto bad;
            }
            ps->p++;
            skip_ws(ps);
        }
        pj *v = parse_value(ps);
        if (!v || (dict ? pj_set(c, key->s, v) : pj_append(c, v))) {
            pj_free(key);
            goto bad;
        }
        pj_free(key);
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == (dict ? '}' : ']')) {
            ps->p++, ps->depth--;
            return c;
        }
        perr(ps, "expecting ',' delimiter");
        goto bad;
    }
bad:
    perr(ps, dict ? "expecting property name enclosed in double quotes" : "expecting value");
    pj_free(c);
    return NULL;
}

static int lit(parser *ps, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n)) return 0;
    ps->p += n;
    return 1;
}

static pj *parse_value(parser *ps) {
    skip_ws(ps);
    if (ps->p >= ps->end) return perr(ps, "expecting value");
    char c = *ps->p;
    if (c == '{' || c == '[') return parse_container(ps, c == '{');
    if (c == '"') return parse_string(ps);
    if (lit(ps, "null")) return pj_null();
    if (lit(ps, "true")) return pj_bool(1);
    if (lit(ps, "false")) return pj_bool(0);
    if (lit(ps, "NaN")) return pj_float(NAN);
    if (lit(ps, "Infinity")) return pj_float(INFINITY);
    if (lit(ps, "-Infinity")) return pj_float(-INFINITY);
    return parse_number(ps);
}

pj *pj_parse(const char *text, size_t len, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    parser ps = {text, text + len, text, err, errlen, 0};
    pj *v = parse_value(&ps);
    if (!v) return NULL;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        pj_free(v);
        return perr(&ps, "extra data");
    }
    return v;
}

/* ---- formatting (json.dumps) ----------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Decodes one UTF-8 (or surrogate-carrying) sequence; returns its length, *cp the code point. */
static int utf8_next(const unsigned char *s, unsigned *cp) {
    if (s[0] < 0x80) return *cp = s[0], 1;
    int n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!n) return *cp = 0xfffd, 1;
    unsigned v = s[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return *cp = 0xfffd, 1;
        v = v << 6 | (s[i] & 63);
    }
    *cp = v;
    return n;
}

static void put_string(buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned cp;
        int len = utf8_next(p, &cp);
        p += len;
        const char *e = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : cp == '\t' ? "\\t"
                        : cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : NULL;
        if (e) {
            puts_(b, e);
        } else if (cp >= 0x20 && cp <= 0x7e) {
            char c = (char)cp;
            put(b, &c, 1);
        } else {
            unsigned units[2] = {cp, 0};
            int nu = 1;
            if (cp >= 0x10000) units[0] = 0xd800 + ((cp - 0x10000) >> 10), units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff), nu = 2;
            for (int i = 0; i < nu; i++) {
                char u[6] = {'\\', 'u', hex[units[i] >> 12 & 15], hex[units[i] >> 8 & 15], hex[units[i] >> 4 & 15], hex[units[i] & 15]};
                put(b, u, 6);
            }
        }
    }
    put(b, "\"", 1);
}

void py_float_repr(double x, char *out, size_t n) {
    if (isnan(x)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(x)) {
        snprintf(out, n, x > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) { /* the shortest digits that read back as x */
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e = [-]d[.ddd]e[+-]XX: digits and the decimal exponent */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp10 = atoi(q + 1), decpt = exp10 + 1;
    if (x == 0) decpt = 1;
    char *o = out;
    size_t left = n;
#define EMIT(...) do { int w_ = snprintf(o, left, __VA_ARGS__); if (w_ > 0 && (size_t)w_ < left) o += w_, left -= (size_t)w_; } while (0)
    if (neg) EMIT("-");
    if (decpt <= -4 || decpt > 16) {
        EMIT("%c", digits[0]);
        if (nd > 1) EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (decpt <= 0) {
        EMIT("0.%.*s%s", -decpt, "0000", digits);
    } else if (decpt >= nd) {
        EMIT("%s%.*s.0", digits, decpt - nd, "0000000000000000");
    } else {
        EMIT("%.*s.%s", decpt, digits, digits + decpt);
    }
#undef EMIT
}

static void dump(buf *b, const pj *v, int compact) {
    char tmp[64];
    const char *item = compact ? "," : ", ", *kv = compact ? ":" : ": ";
    switch (v->t) {
    case PJ_NULL: puts_(b, "null"); break;
    case PJ_BOOL: puts_(b, v->b ? "true" : "false"); break;
    case PJ_INT:
        if (v->s) puts_(b, v->s);
        else snprintf(tmp, sizeof tmp, "%lld", v->i), puts_(b, tmp);
        break;
    case PJ_FLOAT: py_float_repr(v->f, tmp, sizeof tmp), puts_(b, tmp); break;
    case PJ_STR: put_string(b, v->s); break;
    case PJ_LIST:
    case PJ_DICT:
        puts_(b, v->t == PJ_LIST ? "[" : "{");
        for (int i = 0; i < v->n; i++) {
            if (i) puts_(b, item);
            if (v->t == PJ_DICT) put_string(b, v->k[i]), puts_(b, kv);
            dump(b, v->v[i], compact);
        }
        puts_(b, v->t == PJ_LIST ? "]" : "}");
        break;
    }
}

char *pj_dumps(const pj *v, int compact) {
    buf b = {0};
    dump(&b, v, compact);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

void pj_repr(const pj *v, char *out, size_t n) {
    if (!v) {
        snprintf(out, n, "None");
        return;
    }
    if (v->t == PJ_STR) {
        int dq = strchr(v->s, '\'') && !strchr(v->s, '"');
        snprintf(out, n, dq ? "\"%s\"" : "'%s'", v->s);
        return;
    }
    if (v->t == PJ_NULL || v->t == PJ_BOOL) {
        snprintf(out, n, "%s", v->t == PJ_NULL ? "None" : v->b ? "True" : "False");
        return;
    }
    char *s = pj_dumps(v, 0);
    if (v->t == PJ_FLOAT && s && isnan(v->f)) snprintf(out, n, "nan");
    else if (v->t == PJ_FLOAT && s && isinf(v->f)) snprintf(out, n, v->f > 0 ? "inf" : "-inf");
    else snprintf(out, n, "%s", s ? s : "?");
    free(s);
}

/* ---- Python's conversions -------------------------------------------------------------------- */

/* s without surrounding whitespace and with single '_' between digits removed; -1 if malformed. */
static int clean_number(const char *s, char *out, size_t n) {
    while (isspace((unsigned char)*s)) s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (!len || len >= n) return -1;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_') {
            if (!i || i + 1 >= len || !isalnum((unsigned char)s[i - 1]) || !isalnum((unsigned char)s[i + 1])) return -1;
            continue;
        }
        out[k++] = s[i];
    }
    out[k] = 0;
    return 0;
}

int py_parse_int(const char *s, long long *out) {
    char c[128], *end;
    if (clean_number(s, c, sizeof c)) return -1;
    const char *d = c + (c[0] == '+' || c[0] == '-');
    if (!isdigit((unsigned char)*d)) return -1;
    errno = 0;
    long long v = strtoll(c, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

int py_parse_float(const char *s, double *out) {
    char c[128], *end;
    if (clean_number(s, c, sizeof c)) return -1;
    const char *d = c + (c[0] == '+' || c[0] == '-');
    int neg = c[0] == '-';
    if (!strcasecmp(d, "inf") || !strcasecmp(d, "infinity")) return *out = neg ? -INFINITY : INFINITY, 0;
    if (!strcasecmp(d, "nan")) return *out = NAN, 0;
    if (!isdigit((unsigned char)*d) && !(*d == '.' && isdigit((unsigned char)d[1]))) return -1;
    for (const char *q = d; *q; q++)
        if (!isdigit((unsigned char)*q) && !strchr(".eE+-", *q)) return -1; /* no hex floats */
    double v = strtod(c, &end);
    if (*end) return -1;
    *out = v;
    return 0;
}

static const char *type_name(const pj *v) {
    static const char *names[] = {"NoneType", "bool", "int", "float", "str", "list", "dict"};
    return v ? names[v->t] : "NoneType";
}

int pj_to_int(const pj *v, long long *out, char *err, size_t errlen) {
    char r[256];
    if (v && v->t == PJ_BOOL) return *out = v->b, 0;
    if (v && v->t == PJ_INT && !v->s) return *out = v->i, 0;
    if (v && v->t == PJ_FLOAT && isfinite(v->f) && fabs(v->f) < 9.2e18) return *out = (long long)v->f, 0;
    if (v && v->t == PJ_STR) {
        if (!py_parse_int(v->s, out)) return 0;
        pj_repr(v, r, sizeof r);
        snprintf(err, errlen, "invalid literal for int() with base 10: %s", r);
        return -1;
    }
    if (v && (v->t == PJ_INT || v->t == PJ_FLOAT)) {
        pj_repr(v, r, sizeof r);
        snprintf(err, errlen, "%s out of range", r);
        return -1;
    }
    snprintf(err, errlen, "int() argument must be a string, a bytes-like object or a real number, not '%s'", type_name(v));
    return -1;
}

int pj_to_bool(const pj *v, int *out, char *err, size_t errlen) {
    if (v && v->t == PJ_BOOL) return *out = v->b, 0;
    if (v && v->t == PJ_INT && !v->s && (v->i == 0 || v->i == 1)) return *out = (int)v->i, 0;
    if (v && v->t == PJ_FLOAT && (v->f == 0 || v->f == 1)) return *out = v->f == 1, 0;
    char s[64] = "";
    if (v && v->t == PJ_STR) {
        const char *a = v->s;
        while (isspace((unsigned char)*a)) a++;
        size_t len = strlen(a);
        while (len && isspace((unsigned char)a[len - 1])) len--;
        if (len < sizeof s) {
            for (size_t i = 0; i < len; i++) s[i] = (char)tolower((unsigned char)a[i]);
            s[len] = 0;
        }
    }
    const char *yes[] = {"yes", "true", "t", "y", "1"}, *no[] = {"no", "false", "f", "n", "0"};
    for (int i = 0; i < 5; i++) {
        if (!strcmp(s, yes[i])) return *out = 1, 0;
        if (!strcmp(s, no[i])) return *out = 0, 0;
    }
    char r[256];
    pj_repr(v, r, sizeof r);
    snprintf(err, errlen, "not a boolean: %s", r);
    return -1;
}

static int to_float(const pj *v, double *out, char *err, size_t errlen) {
    if (v && v->t == PJ_BOOL) return *out = v->b, 0;
    if (v && v->t == PJ_INT) return *out = v->s ? strtod(v->s, NULL) : (double)v->i, 0;
    if (v && v->t == PJ_FLOAT) return *out = v->f, 0;
    if (v && v->t == PJ_STR) {
        if (!py_parse_float(v->s, out)) return 0;
        char r[256];
        pj_repr(v, r, sizeof r);
        snprintf(err, errlen, "could not convert string to float: %s", r);
        return -1;
    }
    snprintf(err, errlen, "float() argument must be a string or a real number, not '%s'", type_name(v));
    return -1;
}

int pj_num_list(const pj *v, double *out, int max, char *err, size_t errlen) {
    if (!v || v->t == PJ_NULL) return 0;
    if (v->t == PJ_LIST) {
        if (v->n > max) return snprintf(err, errlen, "a list of %d numbers is too long", v->n), -1;
        for (int i = 0; i < v->n; i++)
            if (to_float(v->v[i], &out[i], err, errlen)) return -1;
        return v->n;
    }
    if (v->t != PJ_STR) return to_float(v, &out[0], err, errlen) ? -1 : 1;
    int n = 0;
    for (const char *s = v->s;;) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        char item[128];
        if (len >= sizeof item) return snprintf(err, errlen, "could not convert string to float: '%.40s...'", s), -1;
        memcpy(item, s, len);
        item[len] = 0;
        const char *a = item;
        while (isspace((unsigned char)*a)) a++;
        if (*a) {
            if (n == max) return snprintf(err, errlen, "a list of over %d numbers is too long", max), -1;
            if (py_parse_float(item, &out[n])) {
                snprintf(err, errlen, "could not convert string to float: '%s'", item);
                return -1;
            }
            n++;
        }
        if (!c) break;
        s = c + 1;
    }
    return n;
}
