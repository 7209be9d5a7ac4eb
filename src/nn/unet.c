/* ADM UNetModel and SuperResModel (guided-diffusion unet.py). */
#include "nn/adm.h"

#include <stdio.h>

#define P(...) gd_model_param(b.ctx, m, __VA_ARGS__)

gd_tensor *gd_unet_build(gd_ctx *ctx, gd_model *m, gd_tensor *x, gd_tensor *t, gd_tensor *y, gd_tensor *low_res) {
    const gd_config *cfg = gd_model_config(m);
    adm_builder b = {.ctx = ctx, .m = m, .cfg = cfg};
    if (cfg->kind == GD_NET_CLASSIFIER) {
        gd_ctx_fail(ctx, "config describes a classifier, not a U-Net");
        return NULL;
    }
    if (!x || x->ndim != 4 || x->ne[1] != cfg->in_channels || x->ne[2] != cfg->image_size || x->ne[3] != cfg->image_size) {
        gd_ctx_fail(ctx, "x must be [N, %d, %d, %d]", cfg->in_channels, cfg->image_size, cfg->image_size);
        return NULL;
    }
    if (cfg->class_cond != (y != NULL)) {
        gd_ctx_fail(ctx, "%s", cfg->class_cond ? "class-conditional model needs labels y" : "model is not class-conditional");
        return NULL;
    }
    if ((cfg->kind == GD_NET_SUPERRES) != (low_res != NULL)) {
        gd_ctx_fail(ctx, "%s", low_res ? "low_res given to a model that is not a super-resolution model"
                                       : "super-resolution model needs low_res");
        return NULL;
    }
    if (adm_embed(&b, t, y)) return NULL;
    gd_tensor *h = x;
    if (low_res) {
        /* SuperResModel: x_t first, then the bilinear-upsampled conditioning image. */
        h = gd_concat(ctx, x, gd_bilinear(ctx, low_res, x->ne[2], x->ne[3]), 1);
    }
    int new_order = cfg->use_new_attention_order;
    h = adm_encoder(&b, h, new_order);
    char pre[96];
    int mc = cfg->model_channels, blk = 0;
    for (int level = cfg->n_levels - 1; level >= 0; level--) {
        for (int i = 0; i <= cfg->num_res_blocks; i++) {
            if (b.n_skips == 0) return NULL;
            gd_tensor *skip = b.skips[--b.n_skips];
            int co = (int)(cfg->channel_mult[level] * mc), j = 0;
            snprintf(pre, sizeof pre, "output_blocks.%d.%d", blk, j++);
            h = adm_resblock(&b, pre, gd_concat(ctx, h, skip, 1), co, 0);
            b.ch = co;
            if (adm_has_attention(cfg, b.ds)) {
                snprintf(pre, sizeof pre, "output_blocks.%d.%d", blk, j++);
                h = adm_attention(&b, pre, h, adm_heads(cfg, co, 1), new_order);
            }
            if (level && i == cfg->num_res_blocks) {
                snprintf(pre, sizeof pre, "output_blocks.%d.%d", blk, j);
                if (cfg->resblock_updown) {
                    h = adm_resblock(&b, pre, h, co, 1);
                } else {
                    int64_t c64 = co;
                    h = gd_conv2d(ctx, gd_upsample2x(ctx, h), P(4, (int64_t[]){c64, c64, 3, 3}, "%s.conv.weight", pre),
                                  P(1, &c64, "%s.conv.bias", pre), 1, 1);
                }
                b.ds /= 2;
            }
            blk++;
        }
    }
    int64_t ch = (int64_t)(cfg->channel_mult[0] * mc), out = gd_config_out_channels(cfg);
    h = gd_group_norm(ctx, h, P(1, &ch, "out.0.weight"), P(1, &ch, "out.0.bias"), 32, 1e-5f);
    h = gd_conv2d(ctx, gd_silu(ctx, h), P(4, (int64_t[]){out, ch, 3, 3}, "out.2.weight"), P(1, &out, "out.2.bias"), 1, 1);
    if (h) gd_set_name(h, "out");
    return h;
}
