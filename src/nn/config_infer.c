/* A config from a state dict's tensor names and shapes alone (docs/config.md, "Inferring a
 * config"). Shapes fix most of an ADM network; what they cannot tell is settled by stated rules,
 * each noted in the notes text the tools print with -v:
 *   - a released architecture at another width (configs/checkpoints.json, width substituted,
 *     same tensors) gives everything, shapes or not (image size, heads, QKV order, schedule);
 *   - image_size: a classifier's attention pool has (S / 2^(levels-1))^2 + 1 positions; otherwise
 *     guided-diffusion's channel_mult table names the size (1,2,3,4 -> 64, ...); an upsampler's
 *     1,1,2,2,4,4 is 256 or 512, and any other mult needs a flag;
 *   - heads: 64-channel heads when every attention width is a multiple of 64 (every released
 *     model but 128x128_diffusion and 64_256_upsampler, which only their table entry tells),
 *     else a flag is needed; num_heads_upsample -1;
 *   - use_new_attention_order: legacy; null_class: false; schedule: linear, 1000 steps;
 *   - superres vs unet when the input conv sees as many channels as the output has: a superres
 *     model with learned sigma when that is 2 or 6 (1 or 3 image channels), else a unet;
 *   - a classifier's depth when several (levels, depth) splits fit: the one whose channel_mult is
 *     guided-diffusion's for its image size. */
#include "nn/config_src.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXB 512
#define MAXL 16

typedef struct {
    const gd_st_tensor *sd;
    int n;
    char *notes;
    size_t notes_len;
} ctx;

static void note(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(ctx *c, const char *fmt, ...) {
    if (!c->notes || !c->notes_len) return;
    size_t k = strlen(c->notes);
    if (k + 4 >= c->notes_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->notes + k, c->notes_len - k - 1, fmt, ap);
    va_end(ap);
    k = strlen(c->notes);
    c->notes[k] = '\n', c->notes[k + 1] = 0;
}

static const gd_st_tensor *get(const ctx *c, int ndim, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const gd_st_tensor *get(const ctx *c, int ndim, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->sd[i].name, name)) return c->sd[i].ndim == ndim ? &c->sd[i] : NULL;
    return NULL;
}

/* one past the largest N of names "prefix.N." */
static int count_blocks(const ctx *c, const char *prefix) {
    int max = -1;
    size_t l = strlen(prefix);
    for (int i = 0; i < c->n; i++) {
        const char *s = c->sd[i].name;
        char *end;
        if (strncmp(s, prefix, l) || s[l] != '.') continue;
        long k = strtol(s + l + 1, &end, 10);
        if (end != s + l + 1 && *end == '.' && k > max && k < MAXB) max = (int)k;
    }
    return max + 1;
}

typedef struct {
    char type;            /* 'R' ResBlock, 'D' Downsample conv (input side) */
    long long cin, cout, attn;
    char up;              /* output side: 'R' up-ResBlock, 'C' Upsample conv, 0 none */
} blk;

/* A ResBlock's in/out channels at P (0 when there is none). */
static int resblock_at(const ctx *c, const char *p, int b, int j, blk *o) {
    const gd_st_tensor *t = get(c, 4, "%s.%d.%d.in_layers.2.weight", p, b, j);
    if (!t) return 0;
    o->cin = t->shape[1], o->cout = t->shape[0];
    return 1;
}

static int read_blocks(const ctx *c, const char *p, int nb, blk *out, char *err, size_t errlen) {
    int output = !strcmp(p, "output_blocks");
    for (int b = output ? 0 : 1; b < nb; b++) {
        blk *o = &out[b];
        memset(o, 0, sizeof *o);
        const gd_st_tensor *t;
        if (resblock_at(c, p, b, 0, o)) o->type = 'R';
        else if (!output && (t = get(c, 4, "%s.%d.0.op.weight", p, b))) o->type = 'D', o->cin = o->cout = t->shape[0];
        else return snprintf(err, errlen, "cannot tell a config from the tensors: %s.%d is neither a ResBlock nor a Downsample", p, b), -1;
        if ((t = get(c, 3, "%s.%d.1.qkv.weight", p, b))) o->attn = t->shape[1];
        if (output) {
            int j = o->attn ? 2 : 1;
            blk tmp;
            if (resblock_at(c, p, b, j, &tmp)) o->up = 'R';
            else if (get(c, 4, "%s.%d.%d.conv.weight", p, b, j)) o->up = 'C';
        }
    }
    return 0;
}

typedef struct {
    int kind;                 /* 0 unet, 1 superres, 2 classifier */
    long long mc, cin, S, K;  /* K: classes (label rows for U-Nets, 0: unconditional) */
    int L, nrb, updown, ssn, learn_sigma, pool; /* pool 1 attention, 2 adaptive */
    long long ch[MAXL];
    int attn[MAXL];
} inferred;

/* The classifier's (levels, depth) split: every split of the input blocks that is consistent. */
static int classifier_split(const blk *in, int nin, long long ch0, int k, inferred *a) {
    int L = nin / k, nrb = k - 1;
    if (nin % k || nrb < 1 || L > MAXL) return 0;
    char down = 0;
    long long prev = ch0;
    for (int l = 0; l < L; l++) {
        a->attn[l] = -1;
        for (int i = 1; i <= nrb; i++) {
            const blk *b = &in[l * k + i];
            if (b->type != 'R' || b->cin != (i == 1 ? prev : b->cout) || (i > 1 && b->cout != in[l * k + 1].cout)) return 0;
            if (a->attn[l] >= 0 && a->attn[l] != (b->attn > 0)) return 0;
            a->attn[l] = b->attn > 0;
        }
        a->ch[l] = prev = in[l * k + 1].cout;
        if (l == L - 1) break;
        const blk *d = &in[(l + 1) * k];
        if (d->attn || d->cin != prev || d->cout != prev || (down && d->type != down)) return 0;
        down = d->type;
    }
    a->L = L, a->nrb = nrb, a->updown = down != 'D';
    return 1;
}

/* guided-diffusion's image size for a channel_mult (0: none, -1: 256 or 512). */
static long long table_size(const inferred *a) {
    static const struct {
        int S, n, sr;
        double m[7];
    } t[] = {{512, 7, 0, {0.5, 1, 1, 2, 2, 4, 4}}, {256, 6, 0, {1, 1, 2, 2, 4, 4}}, {128, 5, 0, {1, 1, 2, 3, 4}}, {64, 4, 0, {1, 2, 3, 4}},
             {-1, 6, 1, {1, 1, 2, 2, 4, 4}}, {64, 4, 1, {1, 2, 3, 4}}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if ((a->kind == 1) != t[i].sr || a->L != t[i].n) continue;
        int same = 1;
        for (int l = 0; l < a->L && same; l++) same = (double)a->ch[l] == t[i].m[l] * (double)a->mc;
        if (same) return t[i].S;
    }
    return 0;
}

static int infer_unet(const ctx *c, const blk *in, int nin, const blk *out, int nout, inferred *a, char *err, size_t errlen) {
    int k = nout, first = -1;
    for (int b = 0; b < nout && first < 0; b++)
        if (out[b].up) first = b;
    if (first >= 0) k = first + 1;
    int L = nout / k;
    if (!k || nout % k || L > MAXL || nin != L * k)
        return snprintf(err, errlen, "cannot tell a config from the tensors: %d input and %d output blocks fit no ADM U-Net", nin, nout), -1;
    a->L = L, a->nrb = k - 1;
    for (int b = 0; b < nout; b++) {
        int level = L - 1 - b / k, up = b % k == k - 1 && level > 0;
        if ((out[b].up != 0) != up || (b % k && (out[b].attn > 0) != a->attn[level]))
            return snprintf(err, errlen, "cannot tell a config from the tensors: output_blocks.%d does not fit an ADM U-Net's levels", b), -1;
        if (b % k == 0) a->ch[level] = out[b].cout, a->attn[level] = out[b].attn > 0;
        if (out[b].cout != a->ch[level])
            return snprintf(err, errlen, "cannot tell a config from the tensors: output_blocks.%d has %lld channels, its level %lld", b,
                            out[b].cout, a->ch[level]), -1;
        if (up) a->updown = out[b].up == 'R';
    }
    for (int p = 1; p < nin; p++) { /* the input side must say the same */
        int level = p / k, down = p % k == 0;
        const blk *b = &in[p];
        int ok = down ? b->cin == a->ch[level - 1] && b->cout == b->cin && !b->attn && (b->type == 'R') == a->updown
                      : b->type == 'R' && b->cout == a->ch[level] && (b->attn > 0) == a->attn[level];
        if (!ok) return snprintf(err, errlen, "cannot tell a config from the tensors: input_blocks.%d does not fit the output blocks' levels", p), -1;
    }
    if (L == 1) a->updown = 1;
    (void)c;
    return 0;
}

static int infer_classifier(const ctx *c, const blk *in, int nin, long long ch0, inferred *a, char *err, size_t errlen) {
    const gd_st_tensor *pos = get(c, 2, "out.2.positional_embedding");
    inferred best = *a, cand;
    int found = 0, fits = 0;
    char depths[128] = "";
    for (int k = 2; k <= nin; k++) {
        cand = *a;
        if (!classifier_split(in, nin, ch0, k, &cand)) continue;
        if (pos) {
            long long side = 0, np = pos->shape[1] - 1;
            while ((side + 1) * (side + 1) <= np) side++;
            if (side * side != np || side < 1) continue;
            cand.S = side << (cand.L - 1);
        }
        long long ts = table_size(&cand);
        if (!pos) cand.S = ts > 0 ? ts : 0;
        snprintf(depths + strlen(depths), sizeof depths - strlen(depths), "%s%d", found ? " or " : "", cand.nrb);
        found++;
        if (ts == cand.S && ts > 0) fits++, best = cand;
        else if (found == 1) best = cand;
    }
    if (!found) return snprintf(err, errlen, "cannot tell a config from the tensors: the input blocks fit no ADM classifier"), -1;
    if (found > 1 && fits != 1)
        return snprintf(err, errlen, "the classifier's depth is ambiguous from the tensor shapes (%s); pass its flags "
                        "(--classifier_depth) or a config", depths), -1;
    *a = best;
    return found > 1 ? 1 : 0;
}

/* "32,16,8" of the attention levels. */
static void attention_res(const inferred *a, char *buf, size_t n) {
    buf[0] = 0;
    for (int l = 0; l < a->L; l++)
        if (a->attn[l]) snprintf(buf + strlen(buf), n - strlen(buf), "%s%lld", buf[0] ? "," : "", a->S >> l);
}

static void mult_str(const inferred *a, char *buf, size_t n) {
    buf[0] = 0;
    for (int l = 0; l < a->L; l++) {
        char r[40];
        double m = (double)a->ch[l] / (double)a->mc;
        if (m == (double)(long long)m) snprintf(r, sizeof r, "%lld", (long long)m);
        else py_float_repr(m, r, sizeof r);
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", l ? "," : "", r);
    }
}

/* Attention widths: all multiples of 64? */
static int heads64(const ctx *c) {
    for (int i = 0; i < c->n; i++) {
        size_t l = strlen(c->sd[i].name);
        if (l > 11 && !strcmp(c->sd[i].name + l - 11, ".qkv.weight") && c->sd[i].ndim == 3 && c->sd[i].shape[1] % 64) return 0;
        if (!strcmp(c->sd[i].name, "out.2.qkv_proj.weight") && c->sd[i].ndim == 3 && c->sd[i].shape[1] % 64) return 0;
    }
    return 1;
}

#define SET(k, v) ok &= !pj_set(cfg, k, v)
static pj *make_config(const inferred *a, char *err, size_t errlen) {
    pj *cfg = pj_dict();
    char mult[256], attn[256];
    int ok = cfg != NULL, cls = a->kind == 2;
    mult_str(a, mult, sizeof mult);
    attention_res(a, attn, sizeof attn);
    SET("model", pj_str(cls ? "classifier" : a->kind == 1 ? "superres" : "unet"));
    SET("image_size", pj_int(a->S));
    if (a->kind == 1) SET("small_size", pj_int(a->S / 4));
    SET("in_channels", pj_int(a->cin));
    if (cls) {
        SET("num_classes", pj_int(a->K));
        SET("classifier_width", pj_int(a->mc)), SET("classifier_depth", pj_int(a->nrb));
        SET("classifier_channel_mult", pj_str(mult)), SET("classifier_attention_resolutions", pj_str(attn));
        SET("classifier_num_head_channels", pj_int(64)), SET("classifier_use_scale_shift_norm", pj_bool(a->ssn));
        SET("classifier_resblock_updown", pj_bool(a->updown)), SET("classifier_pool", pj_str(a->pool == 1 ? "attention" : "adaptive"));
    } else {
        SET("num_channels", pj_int(a->mc)), SET("num_res_blocks", pj_int(a->nrb));
        SET("channel_mult", pj_str(mult)), SET("attention_resolutions", pj_str(attn));
        SET("num_heads", pj_int(4)), SET("num_head_channels", pj_int(64)), SET("num_heads_upsample", pj_int(-1));
        SET("use_scale_shift_norm", pj_bool(a->ssn)), SET("resblock_updown", pj_bool(a->updown));
        SET("use_new_attention_order", pj_bool(0)), SET("learn_sigma", pj_bool(a->learn_sigma));
        SET("class_cond", pj_bool(a->K > 0)), SET("num_classes", pj_int(a->K > 0 ? a->K : 1000)), SET("null_class", pj_bool(0));
        SET("diffusion_steps", pj_int(1000)), SET("noise_schedule", pj_str("linear"));
    }
    if (!ok) {
        pj_free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return cfg;
}
#undef SET

/* Kind, channels, conditioning and the head from the top-level tensors. */
static int read_top(ctx *c, inferred *a, int *nin, int *nout, char *err, size_t errlen) {
    const gd_st_tensor *te = get(c, 2, "time_embed.0.weight"), *c0 = get(c, 4, "input_blocks.0.0.weight"), *t;
    if (!te || !c0) return snprintf(err, errlen, "cannot tell a config from the tensors: no %s, so not an ADM network",
                                    te ? "input_blocks.0.0.weight" : "time_embed.0.weight"), -1;
    a->mc = te->shape[1];
    *nin = count_blocks(c, "input_blocks"), *nout = count_blocks(c, "output_blocks");
    const gd_st_tensor *mid = get(c, 2, "middle_block.0.emb_layers.1.weight"), *midc = get(c, 4, "middle_block.0.in_layers.2.weight");
    if (!mid || !midc) return snprintf(err, errlen, "cannot tell a config from the tensors: no middle_block.0 ResBlock"), -1;
    a->ssn = mid->shape[0] == 2 * midc->shape[0];
    long long cin = c0->shape[1];
    if (!*nout) {
        a->kind = 2, a->cin = cin;
        if ((t = get(c, 3, "out.2.c_proj.weight"))) a->pool = 1, a->K = t->shape[0];
        else if ((t = get(c, 4, "out.3.weight"))) a->pool = 2, a->K = t->shape[0];
        else return snprintf(err, errlen, "cannot tell a config from the tensors: no output blocks and no classifier head (out.2 / out.3)"), -1;
        return 0;
    }
    if (!(t = get(c, 4, "out.2.weight"))) return snprintf(err, errlen, "cannot tell a config from the tensors: no out.2.weight"), -1;
    long long oc = t->shape[0];
    if (oc == 2 * cin) a->kind = 0, a->learn_sigma = 1, a->cin = cin;
    else if (cin == 2 * oc) a->kind = 1, a->cin = oc;
    else if (oc == cin && (cin == 2 || cin == 6)) {
        a->kind = 1, a->learn_sigma = 1, a->cin = cin / 2;
        note(c, "  rule: the input conv sees as many channels (%lld) as the output has: read as a super-resolution model with "
                "learned sigma (%lld image channels, as every released upsampler), not a %lld-channel U-Net", cin, cin / 2, cin);
    } else if (oc == cin) {
        a->kind = 0, a->cin = cin;
    } else {
        return snprintf(err, errlen, "cannot tell a config from the tensors: the input conv takes %lld channels and out.2 gives %lld", cin, oc), -1;
    }
    if ((t = get(c, 2, "label_emb.weight"))) a->K = t->shape[0];
    return 0;
}

/* The released architecture whose tensors these are at this width, if one is. */
static pj *released_family(ctx *c, long long mc, const char *dir) {
    char e[300];
    pj *table = cfg_table(dir, e, sizeof e), *found = NULL;
    for (int i = 0; table && i < table->n && !found; i++) {
        pj *f = cfg_released(dir, table->v[i], e, sizeof e);
        int cls = pj_is_str(pj_get(f, "model"), "classifier");
        long long w = 0;
        const char *wk = cls ? "classifier_width" : "num_channels";
        if (!f || pj_to_int(pj_get(f, wk), &w, e, sizeof e) || w == mc || pj_set(f, wk, pj_int(mc))) {
            pj_free(f);
            continue;
        }
        cfg_tensor *want;
        int nw;
        char msg[8];
        if (!cfg_expected(f, &want, &nw, e, sizeof e) && !cfg_mismatch(c->sd, c->n, want, nw, msg, sizeof msg)) {
            long long nhc = -1, nh = 4;
            pj_to_int(pj_get(f, cls ? "classifier_num_head_channels" : "num_head_channels"), &nhc, e, sizeof e);
            pj_to_int(pj_get(f, "num_heads"), &nh, e, sizeof e);
            int heads_ok = 1; /* the released head rule must divide every attention width here */
            for (int k = 0; k < nw; k++) {
                size_t l = strlen(want[k].name);
                if (l > 11 && !strcmp(want[k].name + l - 11, ".qkv.weight")) heads_ok &= want[k].shape[1] % (nhc > 0 ? nhc : nh) == 0;
            }
            if (heads_ok) {
                found = f, f = NULL;
                note(c, "  rule: the released architecture of %s (configs/%s) at %s %lld (released %lld): image_size, heads, QKV order "
                        "and schedule are its", table->k[i], pj_get(table->v[i], "config")->s, wk, mc, w);
            }
        }
        free(want);
        pj_free(f);
    }
    pj_free(table);
    return found;
}

static int image_size(ctx *c, inferred *a, char *err, size_t errlen) {
    if (a->kind == 2 && a->pool == 1) {
        note(c, "  image_size %lld: from the attention pool's %lldx%lld positions after %d halvings", a->S, a->S >> (a->L - 1),
             a->S >> (a->L - 1), a->L - 1);
        return 0;
    }
    char mult[256];
    mult_str(a, mult, sizeof mult);
    long long ts = table_size(a);
    if (ts == -1)
        return snprintf(err, errlen, "cannot tell image_size from the tensors: an upsampler with channel_mult %s is 256 or 512; pass its flags "
                        "(--large_size) or a config", mult), -1;
    if (!ts)
        return snprintf(err, errlen, "cannot tell image_size from the tensors (channel_mult %s is not one of guided-diffusion's defaults); "
                        "pass the model's flags (--image_size ...) or a config", mult), -1;
    a->S = ts;
    note(c, "  rule: image_size %lld: guided-diffusion's channel_mult for that size is %s (sizes are not in the shapes)", ts, mult);
    return 0;
}

pj *cfg_infer(const gd_st_tensor *sd, int n, const char *dir, char *notes, size_t notes_len, char *err, size_t errlen) {
    ctx c = {sd, n, notes, notes_len};
    inferred a;
    memset(&a, 0, sizeof a);
    int nin, nout;
    if (read_top(&c, &a, &nin, &nout, err, errlen)) return NULL;
    pj *fam = released_family(&c, a.mc, dir);
    if (fam) return fam;
    blk *in = calloc(MAXB, sizeof *in), *out = calloc(MAXB, sizeof *out);
    pj *cfg = NULL;
    if (!in || !out) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (nin < 1 || nin > MAXB || read_blocks(&c, "input_blocks", nin, in, err, errlen) ||
        read_blocks(&c, "output_blocks", nout, out, err, errlen))
        goto done;
    long long ch0 = get(&c, 4, "input_blocks.0.0.weight")->shape[0];
    int rc = a.kind == 2 ? infer_classifier(&c, in, nin, ch0, &a, err, errlen) : infer_unet(&c, in, nin, out, nout, &a, err, errlen);
    if (rc < 0) goto done;
    if (rc == 1) note(&c, "  rule: classifier depth %d: the split of the input blocks whose channel_mult is guided-diffusion's for "
                          "image_size %lld (other depths fit the shapes too)", a.nrb, a.S);
    if (a.ch[0] != ch0) {
        snprintf(err, errlen, "cannot tell a config from the tensors: the input conv gives %lld channels, the first level has %lld", ch0, a.ch[0]);
        goto done;
    }
    if (image_size(&c, &a, err, errlen)) goto done;
    if (!heads64(&c)) {
        snprintf(err, errlen, "cannot tell the attention heads from the tensors (not every attention width is a multiple of 64); pass the "
                 "model's flags (--num_heads or --num_head_channels) or a config");
        goto done;
    }
    if (!(cfg = make_config(&a, err, errlen))) goto done;
    note(&c, "  rule: %snum_head_channels 64: heads are not in the shapes; every attention width is a multiple of 64 (as in every "
             "released model but 128x128_diffusion and 64_256_upsampler, which use num_heads 4)", a.kind == 2 ? "classifier_" : "");
    if (a.kind != 2) {
        note(&c, "  rule: use_new_attention_order false: the QKV order is not in the shapes (of the released models only "
                 "64x64_diffusion uses the new order)");
        note(&c, "  rule: noise_schedule linear, diffusion_steps 1000: not in the shapes (guided-diffusion's defaults)");
        if (a.K) note(&c, "  rule: num_classes %lld, null_class false: a null-class row is not told from the shapes", a.K);
    }
done:
    free(in);
    free(out);
    return cfg;
}
