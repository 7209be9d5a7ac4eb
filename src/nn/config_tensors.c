/* The tensors a config's network has, by guided-diffusion's construction rule (adm-reference.md
 * 1.7 and 12), in state-dict order: scripts/convert_checkpoint.py's expected_tensors and
 * mismatch, with its defaults, conversions and messages, so that the C converter accepts and
 * refuses exactly what it does. (The network builders in unet.c / classifier.c are the other
 * statement of this rule; tests/test_pt_config.c checks the two agree on every released config.) */
#include "nn/config_src.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char UNET_DEFAULTS[] =
    "{\"image_size\": 64, \"in_channels\": 3, \"num_channels\": 128, \"num_res_blocks\": 2, \"channel_mult\": \"\","
    " \"attention_resolutions\": \"16,8\", \"num_heads\": 4, \"num_head_channels\": -1, \"num_heads_upsample\": -1,"
    " \"use_scale_shift_norm\": true, \"resblock_updown\": false, \"use_new_attention_order\": false,"
    " \"learn_sigma\": false, \"class_cond\": false, \"num_classes\": 1000, \"null_class\": false}";
static const char CLASSIFIER_DEFAULTS[] =
    "{\"image_size\": 64, \"in_channels\": 3, \"num_classes\": 1000, \"classifier_width\": 128, \"classifier_depth\": 2,"
    " \"classifier_channel_mult\": \"\", \"classifier_attention_resolutions\": \"32,16,8\","
    " \"classifier_num_head_channels\": 64, \"classifier_use_scale_shift_norm\": true,"
    " \"classifier_resblock_updown\": true, \"classifier_pool\": \"attention\"}";

typedef struct {
    cfg_tensor *t;
    int n, cap, oom;
    long long E;
    int ssn;
} list;

static void add(list *l, const char *name, int ndim, long long a, long long b, long long c, long long d) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 512;
        cfg_tensor *nt = realloc(l->t, sizeof *nt * (size_t)cap);
        if (!nt) {
            l->oom = 1;
            return;
        }
        l->t = nt, l->cap = cap;
    }
    cfg_tensor *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    const long long s[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) t->shape[i] = i < ndim ? s[i] : 0;
}

static void addf(list *l, int ndim, long long a, long long b, long long c, long long d, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void addf(list *l, int ndim, long long a, long long b, long long c, long long d, const char *fmt, ...) {
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    add(l, name, ndim, a, b, c, d);
}

static void resblock(list *l, const char *p, long long ci, long long co) {
    long long e = l->ssn ? 2 * co : co;
    addf(l, 1, ci, 0, 0, 0, "%s.in_layers.0.weight", p), addf(l, 1, ci, 0, 0, 0, "%s.in_layers.0.bias", p);
    addf(l, 4, co, ci, 3, 3, "%s.in_layers.2.weight", p), addf(l, 1, co, 0, 0, 0, "%s.in_layers.2.bias", p);
    addf(l, 2, e, l->E, 0, 0, "%s.emb_layers.1.weight", p), addf(l, 1, e, 0, 0, 0, "%s.emb_layers.1.bias", p);
    addf(l, 1, co, 0, 0, 0, "%s.out_layers.0.weight", p), addf(l, 1, co, 0, 0, 0, "%s.out_layers.0.bias", p);
    addf(l, 4, co, co, 3, 3, "%s.out_layers.3.weight", p), addf(l, 1, co, 0, 0, 0, "%s.out_layers.3.bias", p);
    if (ci != co) addf(l, 4, co, ci, 1, 1, "%s.skip_connection.weight", p), addf(l, 1, co, 0, 0, 0, "%s.skip_connection.bias", p);
}

static void attention(list *l, const char *p, long long ch) {
    addf(l, 1, ch, 0, 0, 0, "%s.norm.weight", p), addf(l, 1, ch, 0, 0, 0, "%s.norm.bias", p);
    addf(l, 3, 3 * ch, ch, 1, 0, "%s.qkv.weight", p), addf(l, 1, 3 * ch, 0, 0, 0, "%s.qkv.bias", p);
    addf(l, 3, ch, ch, 1, 0, "%s.proj_out.weight", p), addf(l, 1, ch, 0, 0, 0, "%s.proj_out.bias", p);
}

static long long floordiv(long long a, long long b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

typedef struct {
    int kind; /* 0 unet, 1 superres, 2 classifier */
    long long S, cin, mc, nrb, K, label_rows, pool; /* pool: 1 attention, 2 adaptive */
    int ssn, updown, learn_sigma;
    double cm[16];
    long long width[16]; /* int(cm[level] * mc) */
    int ncm;
    long long ds[16];
    int nds;
} arch;

/* Python's int() of a float the config's arithmetic gives: its ValueError / OverflowError text for
 * NaN and infinity (-2). Beyond 2^53, where Python carries on with a big integer that matches no
 * checkpoint, the config is refused (-1) rather than cast (undefined in C). */
static int py_int(double d, long long *out, char *err, size_t errlen) {
    if (isnan(d)) return snprintf(err, errlen, "cannot convert float NaN to integer"), -2;
    if (isinf(d)) return snprintf(err, errlen, "cannot convert float infinity to integer"), -2;
    if (fabs(d) >= 9007199254740992.0) return snprintf(err, errlen, "config: a size of %.15g is too large", d), -1;
    *out = (long long)d;
    return 0;
}

/* Integer keys bounded so that no product of the tensor shapes below overflows. */
static int too_large(const char *key, long long v, char *err, size_t errlen) {
    if (v >= -(1LL << 31) && v <= 1LL << 31) return 0;
    snprintf(err, errlen, "config: \"%s\" %lld is too large", key, v);
    return 1;
}

static int has_ds(const arch *a, long long ds) {
    for (int i = 0; i < a->nds; i++)
        if (a->ds[i] == ds) return 1;
    return 0;
}

/* int(m * mc) per level, where expected_tensors first needs them (after the labels, before the head). */
static int widths(arch *a, char *err, size_t errlen) {
    for (int i = 0; i < a->ncm; i++) {
        int rc = py_int(a->cm[i] * (double)a->mc, &a->width[i], err, errlen);
        if (rc) return rc;
    }
    return 0;
}

/* filled(cfg) and the conversions expected_tensors makes; -1: ConvertError text, -2: ValueError. */
static int read_arch(const pj *cfg, arch *a, char *err, size_t errlen) {
    char e2[300], r[200];
    const pj *kind = pj_get(cfg, "model");
    memset(a, 0, sizeof *a);
    a->kind = pj_is_str(kind, "unet") ? 0 : pj_is_str(kind, "superres") ? 1 : pj_is_str(kind, "classifier") ? 2 : -1;
    if (a->kind < 0) {
        pj_repr(kind, r, sizeof r);
        snprintf(err, errlen, "config: \"model\" must be unet, superres or classifier, not %s", r);
        return -1;
    }
    int cls = a->kind == 2;
    pj *c = pj_parse(cls ? CLASSIFIER_DEFAULTS : UNET_DEFAULTS, strlen(cls ? CLASSIFIER_DEFAULTS : UNET_DEFAULTS), NULL, 0);
    if (!c || pj_update(c, cfg)) {
        pj_free(c);
        snprintf(err, errlen, "out of memory");
        return -2;
    }
    int rc = -2;
#define INT(key, dst)                                                                              \
    if (pj_to_int(pj_get(c, key), dst, err, errlen)) goto done;                                    \
    if (too_large(key, *(dst), err, errlen)) {                                                     \
        rc = -1;                                                                                   \
        goto done;                                                                                 \
    }
#define BOOL(key, dst) if ((rc = -1, pj_to_bool(pj_get(c, key), dst, err, errlen))) goto done; rc = -2
    INT("image_size", &a->S);
    INT("in_channels", &a->cin);
    INT(cls ? "classifier_width" : "num_channels", &a->mc);
    INT(cls ? "classifier_depth" : "num_res_blocks", &a->nrb);
    BOOL(cls ? "classifier_use_scale_shift_norm" : "use_scale_shift_norm", &a->ssn);
    BOOL(cls ? "classifier_resblock_updown" : "resblock_updown", &a->updown);
    a->ncm = pj_num_list(pj_get(c, cls ? "classifier_channel_mult" : "channel_mult"), a->cm, 16, err, errlen);
    if (a->ncm < 0) goto done;
    if (!a->ncm) {
        static const double m512[] = {0.5, 1, 1, 2, 2, 4, 4}, m256[] = {1, 1, 2, 2, 4, 4}, m128[] = {1, 1, 2, 3, 4}, m64[] = {1, 2, 3, 4};
        const double *src = a->S == 512 ? (a->kind == 1 ? m256 : m512) : a->S == 256 ? m256 : a->S == 128 ? m128 : a->S == 64 ? m64 : NULL;
        a->ncm = !src ? 0 : src == m512 ? 7 : src == m256 ? 6 : src == m128 ? 5 : 4;
        if (a->kind == 1 && a->S == 128) a->ncm = 0, src = NULL; /* CHANNEL_MULT_SR has no 128 */
        for (int i = 0; i < a->ncm; i++) a->cm[i] = src[i];
        if (!a->ncm) {
            snprintf(err, errlen, "config: no default channel_mult for image_size %lld", a->S);
            rc = -1;
            goto done;
        }
    }
    double res[16];
    int nres = pj_num_list(pj_get(c, cls ? "classifier_attention_resolutions" : "attention_resolutions"), res, 16, err, errlen);
    if (nres < 0) goto done;
    for (int i = 0; i < nres; i++) {
        long long ri;
        if ((rc = py_int(res[i], &ri, err, errlen))) goto done;
        rc = -2;
        if (!ri) {
            snprintf(err, errlen, "integer division or modulo by zero");
            goto done;
        }
        if (!has_ds(a, floordiv(a->S, ri))) a->ds[a->nds++] = floordiv(a->S, ri);
    }
    if (cls) {
        INT("num_classes", &a->K);
        if ((rc = widths(a, err, errlen))) goto done;
        rc = -2;
        const pj *pool = pj_get(c, "classifier_pool");
        a->pool = pj_is_str(pool, "attention") ? 1 : pj_is_str(pool, "adaptive") ? 2 : 0;
        if (!a->pool) {
            pj_repr(pool, r, sizeof r);
            snprintf(err, errlen, "config: classifier_pool %s not supported", r);
            rc = -1;
            goto done;
        }
    } else {
        int cc, nul;
        BOOL("class_cond", &cc);
        BOOL("learn_sigma", &a->learn_sigma);
        if (cc) {
            INT("num_classes", &a->label_rows);
            BOOL("null_class", &nul);
            a->label_rows += nul;
        }
        if ((rc = widths(a, err, errlen))) goto done;
    }
    rc = 0;
done:
#undef INT
#undef BOOL
    (void)e2;
    pj_free(c);
    return rc;
}

int cfg_expected(const pj *cfg, cfg_tensor **out, int *n, char *err, size_t errlen) {
    arch a;
    *out = NULL, *n = 0;
    int rc = read_arch(cfg, &a, err, errlen);
    if (rc) { /* one line: a value quoted from the config may hold a newline */
        for (char *c = err; c && errlen && *c; c++)
            if (*c == '\n' || *c == '\r') *c = ' ';
        return rc;
    }
    list l = {.E = 4 * a.mc, .ssn = a.ssn};
    char p[64];
    add(&l, "time_embed.0.weight", 2, l.E, a.mc, 0, 0), add(&l, "time_embed.0.bias", 1, l.E, 0, 0, 0);
    add(&l, "time_embed.2.weight", 2, l.E, l.E, 0, 0), add(&l, "time_embed.2.bias", 1, l.E, 0, 0, 0);
    if (a.kind != 2 && a.label_rows) add(&l, "label_emb.weight", 2, a.label_rows, l.E, 0, 0);
    long long ch = a.width[0], input_ch = ch, ds = 1;
    add(&l, "input_blocks.0.0.weight", 4, ch, a.kind == 1 ? 2 * a.cin : a.cin, 3, 3), add(&l, "input_blocks.0.0.bias", 1, ch, 0, 0, 0);
    long long chans[1024];
    int nch = 0, b = 1;
    chans[nch++] = ch;
    for (int level = 0; level < a.ncm; level++) {
        for (long long i = 0; i < a.nrb && nch < 1023; i++, b++) {
            snprintf(p, sizeof p, "input_blocks.%d.0", b);
            resblock(&l, p, ch, a.width[level]);
            ch = a.width[level];
            snprintf(p, sizeof p, "input_blocks.%d.1", b);
            if (has_ds(&a, ds)) attention(&l, p, ch);
            chans[nch++] = ch;
        }
        if (level != a.ncm - 1 && nch < 1023) {
            snprintf(p, sizeof p, "input_blocks.%d.0", b);
            if (a.updown) resblock(&l, p, ch, ch);
            else addf(&l, 4, ch, ch, 3, 3, "%s.op.weight", p), addf(&l, 1, ch, 0, 0, 0, "%s.op.bias", p);
            chans[nch++] = ch;
            ds *= 2, b++;
        }
    }
    resblock(&l, "middle_block.0", ch, ch), attention(&l, "middle_block.1", ch), resblock(&l, "middle_block.2", ch, ch);
    if (a.kind == 2) {
        add(&l, "out.0.weight", 1, ch, 0, 0, 0), add(&l, "out.0.bias", 1, ch, 0, 0, 0);
        if (a.pool == 1) {
            long long side = floordiv(a.S, ds);
            add(&l, "out.2.positional_embedding", 2, ch, side * side + 1, 0, 0);
            add(&l, "out.2.qkv_proj.weight", 3, 3 * ch, ch, 1, 0), add(&l, "out.2.qkv_proj.bias", 1, 3 * ch, 0, 0, 0);
            add(&l, "out.2.c_proj.weight", 3, a.K, ch, 1, 0), add(&l, "out.2.c_proj.bias", 1, a.K, 0, 0, 0);
        } else {
            add(&l, "out.3.weight", 4, a.K, ch, 1, 1), add(&l, "out.3.bias", 1, a.K, 0, 0, 0);
        }
    } else {
        b = 0;
        for (int level = a.ncm - 1; level >= 0; level--)
            for (long long i = 0; i < a.nrb + 1; i++, b++) {
                if (!nch) {
                    snprintf(err, errlen, "pop from empty list");
                    free(l.t);
                    return -2;
                }
                long long ich = chans[--nch], co = a.width[level];
                snprintf(p, sizeof p, "output_blocks.%d.0", b);
                resblock(&l, p, ch + ich, co);
                ch = co;
                int j = 1;
                if (has_ds(&a, ds)) {
                    snprintf(p, sizeof p, "output_blocks.%d.1", b);
                    attention(&l, p, ch);
                    j = 2;
                }
                if (level && i == a.nrb) {
                    snprintf(p, sizeof p, "output_blocks.%d.%d", b, j);
                    if (a.updown) resblock(&l, p, ch, ch);
                    else addf(&l, 4, ch, ch, 3, 3, "%s.conv.weight", p), addf(&l, 1, ch, 0, 0, 0, "%s.conv.bias", p);
                    ds = floordiv(ds, 2);
                }
            }
        long long out_ch = a.cin * (a.learn_sigma ? 2 : 1);
        add(&l, "out.0.weight", 1, ch, 0, 0, 0), add(&l, "out.0.bias", 1, ch, 0, 0, 0);
        add(&l, "out.2.weight", 4, out_ch, input_ch, 3, 3), add(&l, "out.2.bias", 1, out_ch, 0, 0, 0);
    }
    if (l.oom) {
        free(l.t);
        snprintf(err, errlen, "out of memory");
        return -2;
    }
    *out = l.t, *n = l.n;
    return 0;
}

static void shape_repr(char *buf, size_t n, int ndim, const int64_t *s) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static const cfg_tensor *want_find(const cfg_tensor *w, int n, const char *name, int *hint) {
    for (int k = 0; k < n; k++) { /* state dicts come in the network's order: start where the last hit was */
        int i = (*hint + k) % n;
        if (!strcmp(w[i].name, name)) return *hint = i + 1, &w[i];
    }
    return NULL;
}

int cfg_mismatch(const gd_st_tensor *sd, int nsd, const cfg_tensor *want, int nwant, char *msg, size_t n) {
    int hint = 0;
    for (int i = 0; i < nsd; i++) {
        const cfg_tensor *w = nwant ? want_find(want, nwant, sd[i].name, &hint) : NULL;
        if (!w) return snprintf(msg, n, "unexpected tensor '%s'", sd[i].name), 1;
        int same = sd[i].ndim == w->ndim;
        for (int d = 0; same && d < w->ndim; d++) same = sd[i].shape[d] == w->shape[d];
        if (!same) {
            char a[160], b[160];
            shape_repr(a, sizeof a, sd[i].ndim, sd[i].shape);
            shape_repr(b, sizeof b, w->ndim, w->shape);
            return snprintf(msg, n, "tensor '%s' has shape %s; the config needs %s", sd[i].name, a, b), 1;
        }
    }
    hint = 0;
    for (int k = 0; k < nwant; k++) {
        int found = 0;
        for (int i = 0; i < nsd && !found; i++) found = !strcmp(sd[(hint + i) % nsd].name, want[k].name);
        if (!found) return snprintf(msg, n, "missing tensor '%s'", want[k].name), 1;
    }
    return 0;
}
