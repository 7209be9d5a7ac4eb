/* The labels of a run: class names from the configs, the --class list (ids or names, cycled over
 * the samples' global indices), and random classes drawn per sample from its own seed so any
 * sample can be regenerated alone. */
#include "diffusion/pipeline_internal.h"
#include "gd_rng.h"
#include "gd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *gd_class_name(const gd_class_names *cn, int64_t k) { return k >= 0 && k < cn->n ? cn->names[k] : NULL; }

/* The first of the configs that has class names. */
static int find_class_names(const gd_config **cfgs, int n, gd_class_names *cn, char *err, size_t errlen) {
    cn->names = NULL, cn->n = 0;
    for (int i = 0; i < n && !cn->n; i++)
        if (cfgs[i]) {
            cn->n = gd_config_class_names(cfgs[i], &cn->names);
            if (cn->n < 0) {
                gd_errf(err, errlen, "out of memory");
                return -1;
            }
        }
    return 0;
}

/* The names that contain tok (a long list), or all of them (a short one), for the error line. */
static void unknown_class(const gd_class_names *cn, const char *tok, int K, char *err, size_t errlen) {
    if (!cn->n) {
        gd_errf(err, errlen, "--class: unknown class '%s' (the model has no class names; give an id in [0, %d])", tok, K - 1);
        return;
    }
    char list[1200] = "";
    if (cn->n <= 20) {
        for (int k = 0; k < cn->n; k++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", cn->names[k]);
        gd_errf(err, errlen, "--class: unknown class '%s'; the model's classes: %s", tok, list);
        return;
    }
    int shown = 0;
    for (int k = 0; k < cn->n && shown < 12; k++) {
        const char *h = cn->names[k];
        size_t lt = strlen(tok);
        int hit = 0;
        for (const char *s = h; *s && !hit; s++) hit = !strncasecmp(s, tok, lt);
        if (hit) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d %s", shown++ ? ", " : "", k, h);
    }
    if (shown) gd_errf(err, errlen, "--class: unknown class '%s'; did you mean: %s", tok, list);
    else
        gd_errf(err, errlen, "--class: unknown class '%s' (%d class names, e.g. 0 %s, 1 %s; configs/imagenet_classes.txt lists ImageNet's)",
                tok, cn->n, cn->names[0], cn->names[1]);
}

/* An id the model does not have. A user who types an ImageNet id (`--class 207`) at the default
 * Fashion-MNIST model needs to hear which classes there are and where ImageNet's live. */
static void out_of_range(const gd_class_names *cn, const char *tok, int K, const char *who, char *err, size_t errlen) {
    char list[1200] = "";
    for (int k = 0; k < cn->n && k < K && k < 20; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d %s", k ? ", " : "", k, cn->names[k]);
    const char *imagenet = K < 1000 ? "; ImageNet's 1000 classes need an ImageNet model, e.g. --preset imagenet256 (see --list-presets)" : "";
    if (list[0] && K <= 20)
        gd_errf(err, errlen, "--class: '%s' is not a class of %s: it has %d classes (%s)%s", tok, who, K, list, imagenet);
    else
        gd_errf(err, errlen, "--class: '%s' is not a class of %s: give an id in [0, %d] or a class name%s", tok, who, K - 1, imagenet);
}

/* A class id from an id or a name; -1 with err. */
static int class_id(const gd_class_names *cn, const char *tok, int K, const char *who, char *err, size_t errlen) {
    if (tok[0] >= '0' && tok[0] <= '9') {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < 0 || v > K - 1) {
            out_of_range(cn, tok, K, who, err, errlen);
            return -1;
        }
        return (int)v;
    }
    int id = -1, other = -1;
    for (int k = 0; k < cn->n && k < K; k++)
        if (gd_class_name_equal(cn->names[k], tok)) {
            if (id < 0) id = k;
            else if (other < 0) other = k;
        }
    if (other >= 0) {
        gd_errf(err, errlen, "--class: '%s' names classes %d and %d; give the id", tok, id, other);
        return -1;
    }
    if (id >= 0) return id;
    unknown_class(cn, tok, K, err, errlen);
    return -1;
}

static int parse_class_list(gd_pipeline *p, char *err, size_t errlen) {
    const char *who = p->job.model || p->job.preset ? "this model" : "the default Fashion-MNIST model";
    char buf[16384];
    snprintf(buf, sizeof buf, "%s", p->job.classes);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (p->nlist == GD_MAX_LABELS) {
            gd_errf(err, errlen, "--class: at most %d classes in a list", GD_MAX_LABELS);
            return -1;
        }
        if ((p->list[p->nlist++] = class_id(&p->cn, tok, p->K, who, err, errlen)) < 0) return -1;
    }
    if (!p->nlist) {
        gd_errf(err, errlen, "--class: empty list");
        return -1;
    }
    return 0;
}

int gd_pipeline_labels(gd_pipeline *p, char *err, size_t errlen) {
    const gd_config *mc = p->mc, *uc = p->uc, *cc = p->use_classifier && p->cls[0] ? gd_model_config(p->cls[0]) : NULL;
    const gd_config *name_src[3] = {mc, cc, uc};
    if (find_class_names(name_src, 3, &p->cn, err, errlen)) return -1;
    p->K = mc ? (cc ? cc->num_classes : mc->num_classes) : uc->num_classes;
    p->labelled = mc ? mc->class_cond || p->use_classifier || (p->up && uc->class_cond) : uc->class_cond || p->base_labels != NULL;
    const char *classes = p->job.classes;
    if (classes && !p->labelled) {
        gd_errf(err, errlen, "--class: the model is unconditional and no classifier guidance was asked");
        return -1;
    }
    p->random_class = !classes || !strcmp(classes, "random");
    if (!p->random_class && parse_class_list(p, err, errlen)) return -1;
    if (!mc && p->random_class && uc->class_cond && !p->base_labels) {
        gd_errf(err, errlen, "the upsampler is class-conditional and %s has no labels (arr_1); pass --class", p->job.base_npz);
        return -1;
    }
    for (int i = 0; !mc && p->random_class && p->base_labels && i < p->base_n; i++)
        if (p->base_labels[i] < 0 || p->base_labels[i] >= p->K) {
            gd_errf(err, errlen, "--base-npz: label %lld of image %d is not in [0, %d)", (long long)p->base_labels[i], i, p->K);
            return -1;
        }
    const int nfull = (p->N + p->B - 1) / p->B * p->B; /* room for a full last batch */
    p->labels = calloc((size_t)nfull, sizeof(int64_t));
    if (!p->labels) {
        gd_errf(err, errlen, "out of memory for %d samples", p->N);
        return -1;
    }
    for (int i = 0; i < nfull; i++) {
        unsigned long long gi = (unsigned long long)(p->job.first_index + i); /* the sample's global index */
        if (!p->random_class) {
            p->labels[i] = p->list[gi % (unsigned long long)p->nlist];
        } else if (!mc) { /* upsampling given images: their labels */
            p->labels[i] = p->base_labels ? p->base_labels[i % p->base_n] : 0;
        } else if (!p->job.rng_torch) { /* per sample, from its own seed */
            gd_rng r;
            gd_rng_seed(&r, (p->job.seed + gi) ^ 0x6c6162656cull);
            gd_rng_randint(&r, p->K, &p->labels[i], 1);
        }
    }
    return 0;
}
