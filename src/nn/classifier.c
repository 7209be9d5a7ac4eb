/* ADM EncoderUNetModel (the noise-aware classifier) with its attention or adaptive pool head. */
#include "nn/adm.h"

#define P(...) gd_model_param(ctx, m, __VA_ARGS__)

/* AttentionPool2d: prepend the spatial mean as token 0, add positional embeddings, one
 * new-order QKV attention, project, and read the logits at token 0. */
static gd_tensor *attention_pool(gd_ctx *ctx, gd_model *m, gd_tensor *h, int64_t C, int64_t K, int head_ch) {
    if (!h) return NULL;
    int64_t N = h->ne[0], T = h->ne[2] * h->ne[3];
    gd_tensor *x = gd_reshape(ctx, h, 3, (int64_t[]){N, C, T});
    gd_tensor *mean = gd_mean(ctx, x, 2);
    if (mean) gd_set_name(mean, "features");
    x = gd_concat(ctx, mean, x, 2);
    x = gd_add(ctx, x, P(2, (int64_t[]){C, T + 1}, "out.2.positional_embedding"));
    gd_tensor *wq = P(3, (int64_t[]){3 * C, C, 1}, "out.2.qkv_proj.weight");
    gd_tensor *wc = P(3, (int64_t[]){K, C, 1}, "out.2.c_proj.weight");
    if (!x || !wq || !wc) return NULL;
    int64_t c3 = 3 * C;
    x = gd_conv2d(ctx, gd_reshape(ctx, x, 4, (int64_t[]){N, C, T + 1, 1}),
                  gd_reshape(ctx, wq, 4, (int64_t[]){3 * C, C, 1, 1}), P(1, &c3, "out.2.qkv_proj.bias"), 1, 0);
    x = x ? gd_attention(ctx, gd_reshape(ctx, x, 3, (int64_t[]){N, 3 * C, T + 1}), (int)(C / head_ch), 1) : NULL;
    x = x ? gd_reshape(ctx, x, 4, (int64_t[]){N, C, T + 1, 1}) : NULL;
    x = gd_conv2d(ctx, x, gd_reshape(ctx, wc, 4, (int64_t[]){K, C, 1, 1}), P(1, &K, "out.2.c_proj.bias"), 1, 0);
    x = x ? gd_reshape(ctx, x, 3, (int64_t[]){N, K, T + 1}) : NULL;
    return gd_select(ctx, x, 2, 0);
}

gd_tensor *gd_classifier_build(gd_ctx *ctx, gd_model *m, gd_tensor *x, gd_tensor *t) {
    const gd_config *cfg = gd_model_config(m);
    if (cfg->kind != GD_NET_CLASSIFIER) {
        gd_ctx_fail(ctx, "config describes a diffusion model, not a classifier");
        return NULL;
    }
    if (!x || x->ndim != 4 || x->ne[1] != cfg->in_channels || x->ne[2] != cfg->image_size || x->ne[3] != cfg->image_size) {
        gd_ctx_fail(ctx, "x must be [N, %d, %d, %d]", cfg->in_channels, cfg->image_size, cfg->image_size);
        return NULL;
    }
    adm_builder b = {.ctx = ctx, .m = m, .cfg = cfg};
    if (adm_embed(&b, t, NULL)) return NULL;
    gd_tensor *h = adm_encoder(&b, x, 0); /* classifier AttentionBlocks use the legacy order */
    int64_t C = b.ch, K = cfg->num_classes;
    h = gd_silu(ctx, gd_group_norm(ctx, h, P(1, &C, "out.0.weight"), P(1, &C, "out.0.bias"), 32, 1e-5f));
    if (cfg->pool_attention) {
        h = attention_pool(ctx, m, h, C, K, cfg->num_head_channels);
    } else {
        gd_tensor *feat = gd_mean(ctx, h, 2);
        if (feat) gd_set_name(feat, "features");
        h = gd_conv2d(ctx, feat, P(4, (int64_t[]){K, C, 1, 1}, "out.3.weight"), P(1, &K, "out.3.bias"), 1, 0);
        h = h ? gd_reshape(ctx, h, 2, (int64_t[]){h->ne[0], K}) : NULL;
    }
    if (h) gd_set_name(h, "logits");
    return h;
}
