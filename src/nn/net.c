/* A planned network instance: inputs, graph, outputs. What samplers and tools run. */
#include "nn/adm.h"
#include "gd_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gd_net {
    gd_model *m;
    gd_ctx *ctx;
    gd_graph *g;
    gd_tensor *x, *t, *y, *low_res, *out, *picked, *features;
    gd_tensor **params; /* training: the weight leaves, in build order */
    int n_params;
};

static gd_tensor *input(gd_ctx *ctx, gd_dtype dt, int ndim, const int64_t *ne, const char *name, int flags) {
    gd_tensor *t = gd_new_tensor(ctx, dt, ndim, ne);
    if (t) {
        t->flags = GD_FLAG_INPUT | flags;
        gd_set_name(t, "%s", name);
    }
    return t;
}

static gd_net *net_new(gd_model *m, int batch, int input_grad, int train, gd_arena *shared, char *err, size_t errlen);

gd_net *gd_net_new(gd_model *m, int batch, int input_grad, char *err, size_t errlen) {
    return net_new(m, batch, input_grad, 0, NULL, err, errlen);
}

gd_net *gd_net_new_in(gd_model *m, int batch, int input_grad, gd_arena *shared, char *err, size_t errlen) {
    return net_new(m, batch, input_grad, 0, shared, err, errlen);
}

gd_net *gd_net_new_train(gd_model *m, int batch, char *err, size_t errlen) {
    return net_new(m, batch, 0, 1, NULL, err, errlen);
}

static gd_net *net_new(gd_model *m, int batch, int input_grad, int train, gd_arena *shared, char *err, size_t errlen) {
    const gd_config *cfg = gd_model_config(m);
    bool cls = cfg->kind == GD_NET_CLASSIFIER;
    if (batch < 1) {
        snprintf(err, errlen, "batch size must be positive");
        return NULL;
    }
    if (input_grad && !cls) {
        snprintf(err, errlen, "input gradients are planned for classifiers only");
        return NULL;
    }
    gd_net *n = calloc(1, sizeof *n);
    if (!n || !(n->ctx = gd_ctx_new(20000))) {
        free(n);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->m = m;
    int64_t S = cfg->image_size, C = cfg->in_channels, N = batch;
    n->x = input(n->ctx, GD_F32, 4, (int64_t[]){N, C, S, S}, "x", input_grad ? GD_FLAG_NEEDS_GRAD : 0);
    n->t = input(n->ctx, GD_F32, 1, &N, "t", 0);
    if (cls && input_grad) n->y = input(n->ctx, GD_I32, 1, &N, "y", 0);
    if (!cls && cfg->class_cond) n->y = input(n->ctx, GD_I32, 1, &N, "y", 0);
    if (cfg->kind == GD_NET_SUPERRES) {
        /* guided-diffusion's upsamplers are 4x (64->256, 128->512); the conditioning size is
         * free in the network, so the tool reads it from the config's small_size if present. */
        int64_t s = cfg->small_size > 0 ? cfg->small_size : S / 4;
        n->low_res = input(n->ctx, GD_F32, 4, (int64_t[]){N, C, s, s}, "low_res", 0);
    }
    n->out = cls ? gd_classifier_build(n->ctx, m, n->x, n->t) : gd_unet_build(n->ctx, m, n->x, n->t, n->y, n->low_res);
    if (!n->out || gd_model_check_all_used(m)) {
        snprintf(err, errlen, "%s", gd_model_error(m)[0] ? gd_model_error(m) : gd_ctx_error(n->ctx));
        gd_net_free(n);
        return NULL;
    }
    gd_tensor *outs[3] = {n->out, NULL, NULL};
    int nout = 1;
    /* the pooled vector before the classifier's last projection: evaluation features (FID) */
    for (int i = 0; cls && !train && !input_grad && i < n->ctx->n; i++)
        if (!strcmp(n->ctx->tensors[i].name, "features")) n->features = &n->ctx->tensors[i];
    if (n->features) outs[nout++] = n->features;
    if (input_grad) {
        n->picked = gd_gather(n->ctx, gd_log_softmax(n->ctx, n->out), n->y);
        outs[nout++] = n->picked;
    }
    if (train) {
        n->params = malloc(sizeof(gd_tensor *) * (size_t)n->ctx->n);
        for (int i = 0; n->params && i < n->ctx->n; i++)
            if (n->ctx->tensors[i].flags & GD_FLAG_NEEDS_GRAD && n->ctx->tensors[i].op == GD_OP_NONE &&
                (n->ctx->tensors[i].flags & GD_FLAG_PARAM))
                n->params[n->n_params++] = &n->ctx->tensors[i];
        if (!n->params || !n->n_params) {
            snprintf(err, errlen, "no trainable weights (call gd_model_make_trainable first)");
            gd_net_free(n);
            return NULL;
        }
    }
    n->g = gd_graph_build(n->ctx, outs, nout, err, errlen);
    if (!n->g || gd_graph_plan_in(n->g, input_grad || train, shared, err, errlen)) {
        gd_net_free(n);
        return NULL;
    }
    return n;
}

void gd_net_free(gd_net *n) {
    if (!n) return;
    free(n->params);
    gd_graph_free(n->g);
    gd_ctx_free(n->ctx);
    free(n);
}

float *gd_net_x(gd_net *n) { return n->x->data; }
float *gd_net_t(gd_net *n) { return n->t->data; }
int32_t *gd_net_y(gd_net *n) { return n->y ? n->y->data : NULL; }
float *gd_net_low_res(gd_net *n) { return n->low_res ? n->low_res->data : NULL; }
const gd_tensor *gd_net_output(const gd_net *n) { return n->out; }
const gd_tensor *gd_net_features(const gd_net *n) { return n->features; }
const gd_graph *gd_net_graph(const gd_net *n) { return n->g; }
void gd_net_set_observer(gd_net *n, gd_observer fn, void *user) { gd_graph_set_observer(n->g, fn, user); }

int gd_net_forward(gd_net *n, char *err, size_t errlen) { return gd_graph_compute(n->g, err, errlen); }

int gd_net_backward(gd_net *n, const float *dout, char *err, size_t errlen) {
    if (!n->params) {
        gd_errf(err, errlen, "network was not planned for training");
        return -1;
    }
    return gd_graph_backward(n->g, n->out, dout, err, errlen);
}

int gd_net_param_count(const gd_net *n) { return n->n_params; }

void gd_net_param(const gd_net *n, int i, const char **name, float **w, const float **grad, int64_t *count) {
    gd_tensor *t = n->params[i];
    *name = t->name;
    *w = t->data;
    *grad = t->grad;
    *count = gd_nelements(t);
}

const gd_tensor *gd_net_param_tensor(const gd_net *n, int i) { return n->params[i]; }

int gd_net_input_grad(gd_net *n, float *grad, char *err, size_t errlen) {
    if (!n->picked) {
        gd_errf(err, errlen, "network was not planned with an input gradient");
        return -1;
    }
    if (gd_graph_compute(n->g, err, errlen) || gd_graph_backward(n->g, n->picked, NULL, err, errlen)) return -1;
    memcpy(grad, n->x->grad, sizeof(float) * (size_t)gd_nelements(n->x));
    return 0;
}
