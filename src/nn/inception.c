/* The FID Inception-v3 (pytorch-fid's fid_inception_v3, i.e. the TF 2015 graph), built on the core
 * graph. Every BasicConv2d is conv (no bias) -> BatchNorm(eps 0.001, running statistics) -> ReLU;
 * the BatchNorm is folded into the conv at load: w' = w * gamma / sqrt(var + eps) and
 * b' = beta - mean * gamma / sqrt(var + eps), the factor in double and rounded once, so the result
 * differs from conv-then-BN only at float rounding level. Layer table and padding rules:
 * ../shared/spec/inception-fid.md section 3. */
#include "gd_inception.h"
#include "gd_pt.h"
#include "gd_safetensors.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_UNITS 94
#define N_TENSORS (N_UNITS * 5 + 2)
#define MAX_TAIL 8 /* graphs for partial last batches, built on demand */

static const char *const PROBES[] = {"Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"};
#define N_PROBES (int)(sizeof PROBES / sizeof *PROBES)

typedef struct {
    int n;
    gd_graph *g;
    gd_tensor *x, *pool, *spatial, *logits;
    gd_tensor *probe[N_PROBES]; /* kept only with GD_INCEPTION_PROBES=1 (diagnostics) */
} net_graph;

struct gd_inception {
    gd_ctx *ctx;
    int batch;
    gd_tensor *W[N_UNITS], *B[N_UNITS], *fc;
    float *buf[N_UNITS * 2 + 1];
    int nbuf;
    net_graph full, tail[MAX_TAIL];
    uint64_t hash;
    char id[17];
};

typedef struct {
    gd_inception *m;
    const gd_st_file *st; /* NULL: the deterministic random weights */
    int pass, k, used;    /* pass 0 creates the weights, later passes reuse them in the same order */
    gd_tensor *spatial, *probe[N_PROBES];
    int probes;
    gd_st_writer *wr; /* gd_inception_write_random: every tensor as generated, before folding */
    char err[256];
} builder;

static void bfail(builder *b, const char *fmt, ...) {
    if (b->err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof b->err, fmt, ap);
    va_end(ap);
}

static void hash_bytes(uint64_t *h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= s[i];
        *h *= 0x100000001b3ull;
    }
}

/* The random table of tests/reference/inception.py, keyed by the tensor name's suffix. */
static void random_range(const char *name, const int64_t *shape, int ndim, double *lo, double *hi) {
    size_t L = strlen(name);
#define ENDS(s) (L >= strlen(s) && !strcmp(name + L - strlen(s), s))
    if (ENDS(".conv.weight") || !strcmp(name, "fc.weight")) {
        double fan = 1;
        for (int i = 1; i < ndim; i++) fan *= (double)shape[i];
        double b = ENDS(".conv.weight") ? sqrt(6.0 / fan) : sqrt(3.0 / 2048.0);
        *lo = -b, *hi = b;
    } else if (ENDS(".bn.weight")) *lo = 0.8, *hi = 1.2;
    else if (ENDS(".bn.running_var")) *lo = 0.5, *hi = 1.5;
    else *lo = -0.1, *hi = 0.1; /* bn.bias, bn.running_mean, fc.bias */
#undef ENDS
}

/* Reads tensor `name` of the given shape as float into dst (converting f16/bf16/f64). */
static int get(builder *b, const char *name, int ndim, const int64_t *shape, float *dst) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (!b->st) {
        double lo, hi;
        random_range(name, shape, ndim, &lo, &hi);
        gd_rand_named_fill(name, dst, n, lo, hi);
        if (b->wr && gd_st_writer_add(b->wr, name, GD_ST_F32, ndim, shape, dst) != 0) {
            bfail(b, "out of memory writing '%s'", name);
            return -1;
        }
        return 0;
    }
    const gd_st_tensor *t = gd_st_find(b->st, name);
    if (!t) {
        bfail(b, "missing tensor '%s' (not pytorch-fid's FID Inception weights?)", name);
        return -1;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        bfail(b, "tensor '%s' has the wrong shape for the FID Inception", name);
        return -1;
    }
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case GD_ST_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case GD_ST_F64: { double v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; } break;
        case GD_ST_F16: { uint16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = gd_f16_to_f32(v); } break;
        case GD_ST_BF16: { uint16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = gd_bf16_to_f32(v); } break;
        default: bfail(b, "tensor '%s' is %s, not a float type", name, gd_st_dtype_name(t->dtype)); return -1;
        }
    }
    if (!gd_all_finite(dst, n)) {
        bfail(b, "tensor '%s' holds NaN or Inf", name);
        return -1;
    }
    b->used++;
    return 0;
}

static float *own(builder *b, int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    if (!p) bfail(b, "out of memory for the Inception weights");
    else b->m->buf[b->m->nbuf++] = p;
    return p;
}

/* BasicConv2d `blk.branch` (or `blk` alone when branch is NULL): KH x KW conv, stride, per-axis
 * padding, folded BatchNorm, ReLU. */
static gd_tensor *unit(builder *b, gd_tensor *x, const char *blk, const char *branch, int64_t O, int KH, int KW,
                       int stride, int ph, int pw) {
    if (!x || b->err[0]) return NULL;
    char name[128];
    snprintf(name, sizeof name, "%s%s%s", blk, branch ? "." : "", branch ? branch : "");
    gd_inception *m = b->m;
    int k = b->k++;
    if (k >= N_UNITS) {
        bfail(b, "inception: more units than the network has");
        return NULL;
    }
    if (b->pass == 0) {
        int64_t C = x->ne[1], nw = O * C * KH * KW, shape[4] = {O, C, KH, KW};
        float *w = own(b, nw), *bias = own(b, O), *bn = malloc(sizeof(float) * 4 * (size_t)O);
        if (!w || !bias || !bn) {
            free(bn);
            bfail(b, "out of memory for the Inception weights");
            return NULL;
        }
        char key[160];
        const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
        snprintf(key, sizeof key, "%s.conv.weight", name);
        int bad = get(b, key, 4, shape, w);
        for (int i = 0; i < 4 && !bad; i++) {
            snprintf(key, sizeof key, "%s.bn.%s", name, part[i]);
            bad = get(b, key, 1, &O, bn + i * O);
        }
        if (bad) {
            free(bn);
            return NULL;
        }
        for (int64_t o = 0; o < O; o++) {
            double var = bn[3 * O + o];
            if (var + 0.001 <= 0) {
                bfail(b, "tensor '%s.bn.running_var' has a value <= -0.001", name);
                free(bn);
                return NULL;
            }
            double s = (double)bn[o] / sqrt(var + 0.001);
            for (int64_t i = 0; i < C * KH * KW; i++) w[o * C * KH * KW + i] = (float)(w[o * C * KH * KW + i] * s);
            bias[o] = (float)((double)bn[O + o] - (double)bn[2 * O + o] * s);
        }
        free(bn);
        hash_bytes(&m->hash, w, sizeof(float) * (size_t)nw);
        hash_bytes(&m->hash, bias, sizeof(float) * (size_t)O);
        m->W[k] = gd_new_4d(m->ctx, GD_F32, O, C, KH, KW);
        m->B[k] = gd_new_1d(m->ctx, GD_F32, O);
        if (!m->W[k] || !m->B[k]) {
            bfail(b, "inception: %s", gd_ctx_error(m->ctx));
            return NULL;
        }
        m->W[k]->data = w;
        m->B[k]->data = bias;
        m->W[k]->flags = m->B[k]->flags = GD_FLAG_PARAM;
        gd_set_name(m->W[k], "%s.conv.weight", name);
        gd_set_name(m->B[k], "%s.bias (folded)", name);
    }
    /* A VALID 3x3 stride-1 conv (the stem's Conv2d_2a/4a, 16% of the FLOPs) runs as the padded one,
     * which takes the Winograd path, cropped to its interior: the border outputs it also computes
     * cost 3-4% more work, the im2col GEMM it avoids 2-3x more time. */
    if (KH == 3 && KW == 3 && stride == 1 && ph == 0 && pw == 0 && x->ne[2] >= 16 && x->ne[3] >= 16) {
        gd_tensor *y = gd_conv2d_ex(m->ctx, x, m->W[k], m->B[k], 1, 1, 1);
        return gd_relu(m->ctx, gd_crop2d(m->ctx, y, 1, 1, x->ne[2] - 2, x->ne[3] - 2));
    }
    return gd_relu(m->ctx, gd_conv2d_ex(m->ctx, x, m->W[k], m->B[k], stride, ph, pw));
}

static gd_tensor *cat(gd_ctx *c, gd_tensor *a, gd_tensor *b) { return gd_concat(c, a, b, 1); }

/* Names are "<block>.<branch>", as in the released state dict. */
#define U(x, br, O, KH, KW, s, ph, pw) unit(b, x, blk, br, O, KH, KW, s, ph, pw)

static gd_tensor *block_a(builder *b, gd_tensor *x, const char *blk, int pool_features) {
    gd_ctx *c = b->m->ctx;
    gd_tensor *b1 = U(x, "branch1x1", 64, 1, 1, 1, 0, 0);
    gd_tensor *b5 = U(U(x, "branch5x5_1", 48, 1, 1, 1, 0, 0), "branch5x5_2", 64, 5, 5, 1, 2, 2);
    gd_tensor *d = U(x, "branch3x3dbl_1", 64, 1, 1, 1, 0, 0);
    d = U(U(d, "branch3x3dbl_2", 96, 3, 3, 1, 1, 1), "branch3x3dbl_3", 96, 3, 3, 1, 1, 1);
    gd_tensor *p = U(gd_pool2d(c, x, GD_POOL_AVG_EXCL_PAD, 3, 1, 1), "branch_pool", pool_features, 1, 1, 1, 0, 0);
    return cat(c, cat(c, cat(c, b1, b5), d), p);
}

static gd_tensor *block_b(builder *b, gd_tensor *x, const char *blk) {
    gd_ctx *c = b->m->ctx;
    gd_tensor *b3 = U(x, "branch3x3", 384, 3, 3, 2, 0, 0);
    gd_tensor *d = U(x, "branch3x3dbl_1", 64, 1, 1, 1, 0, 0);
    d = U(U(d, "branch3x3dbl_2", 96, 3, 3, 1, 1, 1), "branch3x3dbl_3", 96, 3, 3, 2, 0, 0);
    return cat(c, cat(c, b3, d), gd_pool2d(c, x, GD_POOL_MAX, 3, 2, 0));
}

static gd_tensor *block_c(builder *b, gd_tensor *x, const char *blk, int c7) {
    gd_ctx *c = b->m->ctx;
    gd_tensor *b1 = U(x, "branch1x1", 192, 1, 1, 1, 0, 0);
    if (!strcmp(blk, "Mixed_6d")) b->spatial = b1; /* TF's mixed_6/conv */
    gd_tensor *s = U(x, "branch7x7_1", c7, 1, 1, 1, 0, 0);
    s = U(U(s, "branch7x7_2", c7, 1, 7, 1, 0, 3), "branch7x7_3", 192, 7, 1, 1, 3, 0);
    gd_tensor *d = U(x, "branch7x7dbl_1", c7, 1, 1, 1, 0, 0);
    d = U(U(d, "branch7x7dbl_2", c7, 7, 1, 1, 3, 0), "branch7x7dbl_3", c7, 1, 7, 1, 0, 3);
    d = U(U(d, "branch7x7dbl_4", c7, 7, 1, 1, 3, 0), "branch7x7dbl_5", 192, 1, 7, 1, 0, 3);
    gd_tensor *p = U(gd_pool2d(c, x, GD_POOL_AVG_EXCL_PAD, 3, 1, 1), "branch_pool", 192, 1, 1, 1, 0, 0);
    return cat(c, cat(c, cat(c, b1, s), d), p);
}

static gd_tensor *block_d(builder *b, gd_tensor *x, const char *blk) {
    gd_ctx *c = b->m->ctx;
    gd_tensor *b3 = U(U(x, "branch3x3_1", 192, 1, 1, 1, 0, 0), "branch3x3_2", 320, 3, 3, 2, 0, 0);
    gd_tensor *s = U(x, "branch7x7x3_1", 192, 1, 1, 1, 0, 0);
    s = U(U(s, "branch7x7x3_2", 192, 1, 7, 1, 0, 3), "branch7x7x3_3", 192, 7, 1, 1, 3, 0);
    s = U(s, "branch7x7x3_4", 192, 3, 3, 2, 0, 0);
    return cat(c, cat(c, b3, s), gd_pool2d(c, x, GD_POOL_MAX, 3, 2, 0));
}

/* Mixed_7b pools by average (padding excluded), Mixed_7c by max: a quirk of the TF graph. */
static gd_tensor *block_e(builder *b, gd_tensor *x, const char *blk, gd_pool pool) {
    gd_ctx *c = b->m->ctx;
    gd_tensor *b1 = U(x, "branch1x1", 320, 1, 1, 1, 0, 0);
    gd_tensor *t = U(x, "branch3x3_1", 384, 1, 1, 1, 0, 0);
    t = cat(c, U(t, "branch3x3_2a", 384, 1, 3, 1, 0, 1), U(t, "branch3x3_2b", 384, 3, 1, 1, 1, 0));
    gd_tensor *d = U(U(x, "branch3x3dbl_1", 448, 1, 1, 1, 0, 0), "branch3x3dbl_2", 384, 3, 3, 1, 1, 1);
    d = cat(c, U(d, "branch3x3dbl_3a", 384, 1, 3, 1, 0, 1), U(d, "branch3x3dbl_3b", 384, 3, 1, 1, 1, 0));
    gd_tensor *p = U(gd_pool2d(c, x, pool, 3, 1, 1), "branch_pool", 192, 1, 1, 1, 0, 0);
    return cat(c, cat(c, cat(c, b1, t), d), p);
}

static int build(builder *b, int n, net_graph *ng, char *err, size_t errlen) {
    gd_inception *m = b->m;
    gd_ctx *c = m->ctx;
    b->k = 0;
    b->spatial = NULL;
    gd_tensor *x = gd_new_4d(c, GD_F32, n, 3, GD_INCEPTION_SIZE, GD_INCEPTION_SIZE);
    if (x) x->flags = GD_FLAG_INPUT;
    int p = 0;
#define PROBE(e) (h = (e), b->probe[p++] = h)
    gd_tensor *h;
    PROBE(unit(b, x, "Conv2d_1a_3x3", NULL, 32, 3, 3, 2, 0, 0));
    PROBE(unit(b, h, "Conv2d_2a_3x3", NULL, 32, 3, 3, 1, 0, 0));
    PROBE(unit(b, h, "Conv2d_2b_3x3", NULL, 64, 3, 3, 1, 1, 1));
    PROBE(gd_pool2d(c, h, GD_POOL_MAX, 3, 2, 0));
    PROBE(unit(b, h, "Conv2d_3b_1x1", NULL, 80, 1, 1, 1, 0, 0));
    PROBE(unit(b, h, "Conv2d_4a_3x3", NULL, 192, 3, 3, 1, 0, 0));
    PROBE(gd_pool2d(c, h, GD_POOL_MAX, 3, 2, 0));
    PROBE(block_a(b, h, "Mixed_5b", 32));
    PROBE(block_a(b, h, "Mixed_5c", 64));
    PROBE(block_a(b, h, "Mixed_5d", 64));
    PROBE(block_b(b, h, "Mixed_6a"));
    PROBE(block_c(b, h, "Mixed_6b", 128));
    PROBE(block_c(b, h, "Mixed_6c", 160));
    PROBE(block_c(b, h, "Mixed_6d", 160));
    PROBE(block_c(b, h, "Mixed_6e", 192));
    PROBE(block_d(b, h, "Mixed_7a"));
    PROBE(block_e(b, h, "Mixed_7b", GD_POOL_AVG_EXCL_PAD));
    PROBE(block_e(b, h, "Mixed_7c", GD_POOL_MAX));
#undef PROBE
    gd_tensor *pool = gd_reshape(c, gd_mean(c, h, 2), 2, (int64_t[]){n, GD_INCEPTION_POOL});
    if (b->pass == 0 && !b->err[0]) {
        m->fc = gd_new_2d(c, GD_F32, GD_INCEPTION_CLASSES, GD_INCEPTION_POOL);
        float *fw = own(b, (int64_t)GD_INCEPTION_CLASSES * GD_INCEPTION_POOL);
        if (m->fc && fw && get(b, "fc.weight", 2, m->fc->ne, fw) == 0) {
            m->fc->data = fw;
            m->fc->flags = GD_FLAG_PARAM;
            hash_bytes(&m->hash, fw, sizeof(float) * (size_t)gd_nelements(m->fc));
        }
        /* read (and checked) but unused: the IS takes the logits without it, as evaluator.py */
        float fb[GD_INCEPTION_CLASSES];
        get(b, "fc.bias", 1, (int64_t[]){GD_INCEPTION_CLASSES}, fb);
    }
    if (b->err[0]) {
        gd_errf(err, errlen, "%s", b->err);
        return -1;
    }
    if (b->wr) return 0;
    gd_tensor *logits = gd_linear(c, pool, m->fc, NULL);
    gd_tensor *outs[3 + N_PROBES] = {pool, b->spatial, logits};
    int no = 3;
    const char *pe = getenv("GD_INCEPTION_PROBES");
    if (pe && !strcmp(pe, "1"))
        for (int i = 0; i < N_PROBES; i++) outs[no++] = b->probe[i];
    for (int i = 0; i < no; i++)
        if (outs[i]) outs[i]->flags |= GD_FLAG_OUTPUT;
    gd_graph *g = gd_graph_build(c, outs, no, err, errlen);
    if (!g) return -1;
    if (gd_graph_plan(g, 0, err, errlen) != 0) {
        gd_graph_free(g);
        return -1;
    }
    *ng = (net_graph){n, g, x, pool, b->spatial, logits, {0}};
    for (int i = 3; i < no; i++) ng->probe[i - 3] = outs[i];
    return 0;
}

static gd_inception *load(const gd_st_file *st, int batch, char *err, size_t errlen) {
    if (batch < 1 || batch > 4096) {
        gd_errf(err, errlen, "inception: batch %d is not in [1, 4096]", batch);
        return NULL;
    }
    gd_inception *m = calloc(1, sizeof *m);
    if (!m || !(m->ctx = gd_ctx_new(1024 + 640 * (MAX_TAIL + 1)))) {
        free(m);
        gd_errf(err, errlen, "out of memory for the Inception network");
        return NULL;
    }
    m->batch = batch;
    m->hash = 0xcbf29ce484222325ull;
    builder b = {.m = m, .st = st};
    if (build(&b, batch, &m->full, err, errlen) != 0) {
        gd_inception_free(m);
        return NULL;
    }
    if (st && b.used != N_TENSORS) {
        gd_errf(err, errlen, "inception: used %d of the %d tensors the FID Inception has", b.used, N_TENSORS);
        gd_inception_free(m);
        return NULL;
    }
    snprintf(m->id, sizeof m->id, "%016llx", (unsigned long long)m->hash);
    return m;
}

gd_inception *gd_inception_load(const char *path, int batch, char *err, size_t errlen) {
    char e[256] = "";
    FILE *f = fopen(path, "rb");
    if (!f) {
        gd_errf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    uint8_t head[512];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    gd_st_file *st = gd_pt_sniff(head, got) ? gd_pt_open(path, e, sizeof e) : gd_st_open(path, e, sizeof e);
    if (!st) {
        gd_errf(err, errlen, "%s", e);
        return NULL;
    }
    gd_inception *m = load(st, batch, e, sizeof e);
    gd_st_close(st); /* the folded weights are copies */
    if (!m) gd_errf(err, errlen, "%s: %s", path, e);
    return m;
}

gd_inception *gd_inception_random(int batch, char *err, size_t errlen) { return load(NULL, batch, err, errlen); }

int gd_inception_write_random(const char *path, char *err, size_t errlen) {
    gd_inception *m = calloc(1, sizeof *m);
    builder b = {.m = m, .wr = gd_st_writer_new()};
    int rc = -1;
    if (!m || !b.wr || !(m->ctx = gd_ctx_new(1024))) gd_errf(err, errlen, "out of memory for the Inception weights");
    else if (build(&b, 1, &m->full, err, errlen) == 0 &&
             gd_st_writer_meta(b.wr, "gd_inception", "random weights of tests/reference/inception.py (gdrand)") == 0)
        rc = gd_st_writer_save(b.wr, path, err, errlen);
    gd_st_writer_free(b.wr);
    gd_inception_free(m);
    return rc;
}

void gd_inception_free(gd_inception *m) {
    if (!m) return;
    gd_graph_free(m->full.g);
    for (int i = 0; i < MAX_TAIL; i++) gd_graph_free(m->tail[i].g);
    for (int i = 0; i < m->nbuf; i++) free(m->buf[i]);
    gd_ctx_free(m->ctx);
    free(m);
}

int gd_inception_batch(const gd_inception *m) { return m->batch; }

const float *gd_inception_probe(const gd_inception *m, const char *layer, int n, int64_t *numel) {
    const net_graph *g = &m->full;
    for (int i = 0; i < MAX_TAIL; i++)
        if (m->tail[i].g && m->tail[i].n == n) g = &m->tail[i];
    for (int i = 0; i < N_PROBES; i++)
        if (g->probe[i] && !strcmp(PROBES[i], layer)) {
            *numel = gd_nelements(g->probe[i]) / g->n;
            return g->probe[i]->data;
        }
    return NULL;
}
const char *gd_inception_weights_id(const gd_inception *m) { return m->id; }
double gd_inception_flops(const gd_inception *m) { return gd_graph_flops(m->full.g); }
size_t gd_inception_arena_bytes(const gd_inception *m) { return gd_graph_arena_bytes(m->full.g); }

/* A graph for n images: the full batch, a cached tail graph, or (cache full) the full batch with
 * the rest zero-filled. */
static net_graph *graph_for(gd_inception *m, int n, char *err, size_t errlen) {
    if (n == m->batch) return &m->full;
    for (int i = 0; i < MAX_TAIL; i++)
        if (m->tail[i].g && m->tail[i].n == n) return &m->tail[i];
    for (int i = 0; i < MAX_TAIL; i++)
        if (!m->tail[i].g) {
            builder b = {.m = m, .pass = 1};
            if (build(&b, n, &m->tail[i], err, errlen) != 0) return NULL;
            return &m->tail[i];
        }
    return &m->full;
}

int gd_inception_forward(gd_inception *m, const float *x, int n, float *pool, float *spatial, float *logits,
                         char *err, size_t errlen) {
    if (n < 1 || n > m->batch) {
        gd_errf(err, errlen, "inception: %d images for a batch of %d", n, m->batch);
        return -1;
    }
    net_graph *g = graph_for(m, n, err, errlen);
    if (!g) return -1;
    size_t per = (size_t)3 * GD_INCEPTION_SIZE * GD_INCEPTION_SIZE;
    memcpy(g->x->data, x, sizeof(float) * per * (size_t)n);
    if (g->n > n) memset((float *)g->x->data + per * (size_t)n, 0, sizeof(float) * per * (size_t)(g->n - n));
    if (gd_graph_compute(g->g, err, errlen) != 0) return -1;
    if (pool) memcpy(pool, g->pool->data, sizeof(float) * GD_INCEPTION_POOL * (size_t)n);
    if (logits) memcpy(logits, g->logits->data, sizeof(float) * GD_INCEPTION_CLASSES * (size_t)n);
    if (spatial) {
        /* [n,192,17,17] -> channels 0..6 at (h*17 + w)*7 + c: TF's NHWC order, as mu_s is stored */
        const float *s = g->spatial->data;
        int64_t C = g->spatial->ne[1], HW = g->spatial->ne[2] * g->spatial->ne[3];
        for (int i = 0; i < n; i++)
            for (int64_t p = 0; p < HW; p++)
                for (int c = 0; c < 7; c++)
                    spatial[(size_t)i * GD_INCEPTION_SPATIAL + (size_t)p * 7 + (size_t)c] = s[((int64_t)i * C + c) * HW + p];
    }
    return 0;
}
