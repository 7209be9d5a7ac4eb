/* The evaluator network run over image batches: features for FID/precision/recall, logits for
 * accuracy and the Inception-style score. */
#include "gd_eval.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gd_evaluator {
    gd_net *net;
    int batch, c, size, dim, classes;
};

gd_evaluator *gd_evaluator_new(gd_model *m, int batch, char *err, size_t errlen) {
    const gd_config *cfg = gd_model_config(m);
    if (cfg->kind != GD_NET_CLASSIFIER) {
        snprintf(err, errlen, "the evaluator must be a classifier; this model is a diffusion model");
        return NULL;
    }
    gd_evaluator *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(e->net = gd_net_new(m, batch, 0, err, errlen))) {
        free(e);
        return NULL;
    }
    const gd_tensor *f = gd_net_features(e->net);
    if (!f) {
        snprintf(err, errlen, "the evaluator network has no pooled features");
        gd_evaluator_free(e);
        return NULL;
    }
    e->batch = batch;
    e->c = cfg->in_channels;
    e->size = cfg->image_size;
    e->dim = (int)(gd_nelements(f) / batch);
    e->classes = cfg->num_classes;
    return e;
}

void gd_evaluator_free(gd_evaluator *e) {
    if (!e) return;
    gd_net_free(e->net);
    free(e);
}

int gd_evaluator_dim(const gd_evaluator *e) { return e->dim; }
int gd_evaluator_classes(const gd_evaluator *e) { return e->classes; }

int gd_evaluator_run(gd_evaluator *e, const uint8_t *nhwc, int64_t n, int h, int w, int c, float *feats, float *logits,
                     void (*progress)(int64_t done, int64_t n, void *user), void *user, char *err, size_t errlen) {
    if (h != e->size || w != e->size || c != e->c) {
        snprintf(err, errlen, "images are %dx%dx%d (HxWxC); the evaluator takes %dx%dx%d", h, w, c, e->size, e->size,
                 e->c);
        return -1;
    }
    const int64_t hw = (int64_t)h * w, per = hw * c;
    float *x = gd_net_x(e->net), *t = gd_net_t(e->net);
    for (int i = 0; i < e->batch; i++) t[i] = 0;
    for (int64_t b0 = 0; b0 < n; b0 += e->batch) {
        int64_t m = n - b0 < e->batch ? n - b0 : e->batch;
        /* a short last batch repeats its last image; only the real rows are copied out */
        for (int64_t i = 0; i < e->batch; i++) {
            gd_from_uint8(nhwc + (b0 + (i < m ? i : m - 1)) * per, c, h, w, x + i * per);
        }
        char ferr[256];
        if (gd_net_forward(e->net, ferr, sizeof ferr)) {
            snprintf(err, errlen, "evaluator forward: %s", ferr);
            return -1;
        }
        if (feats) memcpy(feats + b0 * e->dim, gd_net_features(e->net)->data, sizeof(float) * (size_t)(m * e->dim));
        if (logits)
            memcpy(logits + b0 * e->classes, gd_net_output(e->net)->data, sizeof(float) * (size_t)(m * e->classes));
        if (progress) progress(b0 + m, n, user);
    }
    return 0;
}
