/* ADM blocks (guided-diffusion unet.py): timestep/label embedding, ResBlock, AttentionBlock and
 * the encoder half (input_blocks + middle_block) shared by the U-Net and the classifier. */
#include "nn/adm.h"

#include <stdio.h>

#define P(...) gd_model_param(b->ctx, b->m, __VA_ARGS__)

int adm_heads(const gd_config *cfg, int ch, int decoder) {
    if (cfg->num_head_channels != -1) return ch / cfg->num_head_channels;
    return decoder ? cfg->num_heads_upsample : cfg->num_heads;
}

int adm_has_attention(const gd_config *cfg, int ds) {
    for (int i = 0; i < cfg->n_attention; i++)
        if (cfg->attention_ds[i] == ds) return 1;
    return 0;
}

int adm_embed(adm_builder *b, gd_tensor *t, gd_tensor *y) {
    gd_ctx *c = b->ctx;
    int64_t mc = b->cfg->model_channels, E = 4 * mc;
    gd_tensor *e = gd_timestep_embedding(c, t, (int)mc, 10000.0f);
    e = gd_linear(c, e, P(2, (int64_t[]){E, mc}, "time_embed.0.weight"), P(1, &E, "time_embed.0.bias"));
    e = gd_linear(c, gd_silu(c, e), P(2, (int64_t[]){E, E}, "time_embed.2.weight"), P(1, &E, "time_embed.2.bias"));
    if (b->cfg->class_cond && b->cfg->kind != GD_NET_CLASSIFIER) {
        int64_t rows = b->cfg->num_classes + (b->cfg->null_class ? 1 : 0);
        e = gd_add(c, e, gd_embedding(c, P(2, (int64_t[]){rows, E}, "label_emb.weight"), y));
    }
    b->emb_act = gd_silu(c, e);
    return b->emb_act ? 0 : -1;
}

static gd_tensor *resample(gd_ctx *c, gd_tensor *x, int updown) {
    return updown > 0 ? gd_upsample2x(c, x) : updown < 0 ? gd_avgpool2x(c, x) : x;
}

static gd_tensor *group_norm(adm_builder *b, gd_tensor *x, int64_t ch, const char *prefix) {
    return gd_group_norm(b->ctx, x, P(1, &ch, "%s.weight", prefix), P(1, &ch, "%s.bias", prefix), 32, 1e-5f);
}

static gd_tensor *conv(adm_builder *b, gd_tensor *x, int64_t cin, int64_t cout, int k, int stride, const char *prefix) {
    return gd_conv2d(b->ctx, x, P(4, (int64_t[]){cout, cin, k, k}, "%s.weight", prefix), P(1, &cout, "%s.bias", prefix),
                     stride, k / 2);
}

gd_tensor *adm_resblock(adm_builder *b, const char *pre, gd_tensor *x, int cout, int updown) {
    gd_ctx *c = b->ctx;
    if (!x) return NULL;
    int64_t cin = x->ne[1], co = cout, E = 4 * (int64_t)b->cfg->model_channels;
    char k[160];
    snprintf(k, sizeof k, "%s.in_layers.0", pre);
    gd_tensor *h = gd_silu(c, group_norm(b, x, cin, k));
    h = resample(c, h, updown);
    x = resample(c, x, updown);
    snprintf(k, sizeof k, "%s.in_layers.2", pre);
    h = conv(b, h, cin, co, 3, 1, k);
    bool ss = b->cfg->use_scale_shift_norm;
    int64_t eo = ss ? 2 * co : co;
    gd_tensor *e = gd_linear(c, b->emb_act, P(2, (int64_t[]){eo, E}, "%s.emb_layers.1.weight", pre),
                             P(1, &eo, "%s.emb_layers.1.bias", pre));
    snprintf(k, sizeof k, "%s.out_layers.0", pre);
    if (ss) {
        h = gd_scale_shift(c, group_norm(b, h, co, k), e);
    } else {
        gd_tensor *e4 = e ? gd_reshape(c, e, 4, (int64_t[]){e->ne[0], co, 1, 1}) : NULL;
        h = group_norm(b, gd_add(c, h, e4), co, k);
    }
    snprintf(k, sizeof k, "%s.out_layers.3", pre);
    h = conv(b, gd_silu(c, h), co, co, 3, 1, k);
    if (cin != co) {
        snprintf(k, sizeof k, "%s.skip_connection", pre);
        x = conv(b, x, cin, co, 1, 1, k);
    }
    return gd_add(c, x, h);
}

/* A Conv1d(k=1) over [N, C, T] runs as a 1x1 conv2d on [N, C, T, 1]. */
static gd_tensor *conv1d(adm_builder *b, gd_tensor *x, int64_t cin, int64_t cout, const char *pre, const char *wn) {
    gd_ctx *c = b->ctx;
    if (!x) return NULL;
    gd_tensor *w = P(3, (int64_t[]){cout, cin, 1}, "%s.%s.weight", pre, wn);
    w = w ? gd_reshape(c, w, 4, (int64_t[]){cout, cin, 1, 1}) : NULL;
    gd_tensor *x4 = gd_reshape(c, x, 4, (int64_t[]){x->ne[0], cin, x->ne[2], 1});
    gd_tensor *y = gd_conv2d(c, x4, w, P(1, &cout, "%s.%s.bias", pre, wn), 1, 0);
    return y ? gd_reshape(c, y, 3, (int64_t[]){x->ne[0], cout, x->ne[2]}) : NULL;
}

gd_tensor *adm_attention(adm_builder *b, const char *pre, gd_tensor *x, int heads, int new_order) {
    gd_ctx *c = b->ctx;
    if (!x) return NULL;
    int64_t N = x->ne[0], C = x->ne[1], T = x->ne[2] * x->ne[3];
    char k[160];
    snprintf(k, sizeof k, "%s.norm", pre);
    gd_tensor *h = group_norm(b, x, C, k);
    h = h ? gd_reshape(c, h, 3, (int64_t[]){N, C, T}) : NULL;
    h = gd_attention(c, conv1d(b, h, C, 3 * C, pre, "qkv"), heads, new_order);
    h = conv1d(b, h, C, C, pre, "proj_out");
    h = h ? gd_reshape(c, h, 4, x->ne) : NULL;
    return gd_add(c, x, h);
}

static void push(adm_builder *b, gd_tensor *h) {
    if (b->n_skips < ADM_MAX_SKIPS) {
        b->skips[b->n_skips] = h;
        b->chans[b->n_skips++] = b->ch;
    }
}

gd_tensor *adm_encoder(adm_builder *b, gd_tensor *h, int new_order) {
    const gd_config *cfg = b->cfg;
    char pre[96];
    int mc = cfg->model_channels, blk = 0;
    b->ch = (int)(cfg->channel_mult[0] * mc);
    b->ds = 1;
    b->n_skips = 0;
    h = conv(b, h, h ? h->ne[1] : 0, b->ch, 3, 1, "input_blocks.0.0");
    push(b, h);
    for (int level = 0; level < cfg->n_levels; level++) {
        for (int r = 0; r < cfg->num_res_blocks; r++) {
            int co = (int)(cfg->channel_mult[level] * mc);
            snprintf(pre, sizeof pre, "input_blocks.%d.0", ++blk);
            h = adm_resblock(b, pre, h, co, 0);
            b->ch = co;
            if (adm_has_attention(cfg, b->ds)) {
                snprintf(pre, sizeof pre, "input_blocks.%d.1", blk);
                h = adm_attention(b, pre, h, adm_heads(cfg, co, 0), new_order);
            }
            push(b, h);
        }
        if (level != cfg->n_levels - 1) {
            snprintf(pre, sizeof pre, "input_blocks.%d.0", ++blk);
            if (cfg->resblock_updown) {
                h = adm_resblock(b, pre, h, b->ch, -1);
            } else {
                char k[112];
                snprintf(k, sizeof k, "%s.op", pre);
                h = conv(b, h, b->ch, b->ch, 3, 2, k);
            }
            b->ds *= 2;
            push(b, h);
        }
    }
    h = adm_resblock(b, "middle_block.0", h, b->ch, 0);
    h = adm_attention(b, "middle_block.1", h, adm_heads(cfg, b->ch, 0), new_order);
    return adm_resblock(b, "middle_block.2", h, b->ch, 0);
}
