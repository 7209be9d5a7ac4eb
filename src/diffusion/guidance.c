/* Classifier guidance terms: s * grad log p(y|x_t), optionally rescaled per sample by the
 * predictive entropy (ED-DPM's EDS). The scale comes from the same forward pass and carries no
 * gradient, as in ED-DPM's cond_fn. */
#include "gd_guidance.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log(K) / H(softmax(z)), H in nats (floored). */
static double eds_factor(const float *z, int K) {
    const double h = gd_logits_entropy(z, K, NULL);
    return log((double)K) / (h > GD_EDS_MIN_ENTROPY ? h : GD_EDS_MIN_ENTROPY);
}

static int add(gd_guidance *base, const gd_step *st, float *g, char *err, size_t errlen) {
    gd_classifier_guidance *c = (gd_classifier_guidance *)base;
    if (st->t < c->t_lo || st->t >= c->t_hi) return 0;
    if (st->N != c->N || !st->y) {
        gd_errf(err, errlen, "classifier guidance planned for %d labelled samples, the step has %d%s", c->N, st->N,
                st->y ? "" : " and no labels");
        return -1;
    }
    memcpy(gd_net_x(c->net), st->x, sizeof(float) * (size_t)c->N * c->per);
    for (int n = 0; n < c->N; n++) {
        gd_net_t(c->net)[n] = (float)st->t;
        gd_net_y(c->net)[n] = st->y[n];
    }
    if (gd_net_input_grad(c->net, c->grad, err, errlen)) return -1;
    const float *logits = gd_net_output(c->net)->data;
    const int eds = c->entropy && st->t >= c->eds_t_lo && st->t < c->eds_t_hi;
    for (int n = 0; n < c->N; n++) {
        double s = c->scale;
        if (eds) s *= eds_factor(logits + (int64_t)n * c->K, c->K);
        c->last_scale[n] = s;
        const float sf = (float)s;
        for (int i = 0; i < c->per; i++) g[(int64_t)n * c->per + i] += sf * c->grad[(int64_t)n * c->per + i];
    }
    return 0;
}

int gd_classifier_guidance_init(gd_classifier_guidance *g, gd_model *classifier, int N, float scale, int entropy,
                                gd_arena *shared, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    const gd_config *cfg = gd_model_config(classifier);
    if (cfg->kind != GD_NET_CLASSIFIER) {
        gd_errf(err, errlen, "the guidance model is not a classifier");
        return -1;
    }
    g->net = gd_net_new_in(classifier, N, 1, shared, err, errlen);
    if (!g->net) return -1;
    g->base.add = add;
    g->base.space = GD_GUIDE_SCORE;
    g->N = N;
    g->per = cfg->in_channels * cfg->image_size * cfg->image_size;
    g->K = cfg->num_classes;
    g->scale = scale;
    g->entropy = entropy;
    g->eds_t_hi = g->t_hi = INFINITY;
    g->grad = malloc(sizeof(float) * (size_t)N * g->per);
    g->last_scale = calloc((size_t)N, sizeof(double));
    if (!g->grad || !g->last_scale) {
        gd_classifier_guidance_free(g);
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void gd_classifier_guidance_free(gd_classifier_guidance *g) {
    gd_net_free(g->net);
    free(g->grad);
    free(g->last_scale);
    memset(g, 0, sizeof *g);
}
