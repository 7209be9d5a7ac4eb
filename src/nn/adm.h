/* Internal: the building blocks shared by ADM's UNetModel and EncoderUNetModel. */
#ifndef GD_ADM_H
#define GD_ADM_H
#include "core/gd_internal.h"
#include "gd_model.h"

/* A leaf for the named weight, checked against the expected shape (error kept in the model). */
gd_tensor *gd_model_param(gd_ctx *ctx, gd_model *m, int ndim, const int64_t *ne, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define ADM_MAX_SKIPS 128

typedef struct {
    gd_ctx *ctx;
    gd_model *m;
    const gd_config *cfg;
    gd_tensor *emb_act;            /* SiLU(emb): every ResBlock's emb_layers start with it */
    gd_tensor *skips[ADM_MAX_SKIPS];
    int chans[ADM_MAX_SKIPS];
    int n_skips;
    int ch, ds;                    /* channels and downsample rate of the current feature map */
} adm_builder;

/* time_embed(timestep_embedding(t)) (+ label_emb(y)); sets b->emb_act. */
int adm_embed(adm_builder *b, gd_tensor *t, gd_tensor *y);
/* updown: 0 none, 1 upsample, -1 downsample (inside the block, resblock_updown style). */
gd_tensor *adm_resblock(adm_builder *b, const char *prefix, gd_tensor *x, int cout, int updown);
gd_tensor *adm_attention(adm_builder *b, const char *prefix, gd_tensor *x, int heads, int new_order);
int adm_heads(const gd_config *cfg, int ch, int decoder);
int adm_has_attention(const gd_config *cfg, int ds);
/* input_blocks and middle_block, pushing every input-block output on b->skips. */
gd_tensor *adm_encoder(adm_builder *b, gd_tensor *h, int attn_new_order);
#endif
