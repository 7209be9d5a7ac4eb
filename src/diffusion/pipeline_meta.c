/* What a pipeline run tells its user: the lines before sampling, and the metadata record stored
 * with the images (a PNG tEXt chunk and a JSON sidecar in ddpm-sample). */
#include "diffusion/pipeline_internal.h"
#include "gd_tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "207 (golden retriever), 1 (goldfish), ..." of the first 8 distinct labels; returns the number
 * of distinct labels seen (up to 9, so callers can tell "more than 8"). */
static int class_line(const gd_pipeline *p, char *line, size_t n, int *shown_out) {
    const int64_t *labels = p->labels;
    int shown = 0, distinct = 0;
    line[0] = 0;
    for (int i = 0; i < p->N && i < 100000 && shown < 8; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) dup = labels[j] == labels[i];
        if (dup) continue;
        const char *nm = gd_class_name(&p->cn, labels[i]);
        snprintf(line + strlen(line), n - strlen(line), "%s%lld (%s)", shown++ ? ", " : "", (long long)labels[i], nm ? nm : "?");
    }
    for (int i = 0; i < p->N && i < 100000; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) dup = labels[j] == labels[i];
        distinct += !dup;
        if (distinct > 8) break;
    }
    *shown_out = shown;
    return distinct;
}

static const char *ode_grid_name(const gd_pipeline *p) {
    static const char *names[] = {"uniform", "logsnr", "quadratic"};
    return names[p->tsched];
}

static void describe_summary(const gd_pipeline *p, FILE *f, const char *pre) {
    const gd_config *mc = p->mc, *uc = p->uc;
    if (p->ps.js) fprintf(f, "%s: preset %s: %s\n", pre, p->ps.name, p->ps.description ? p->ps.description : "");
    if (p->labelled && p->cn.n) {
        char line[1024];
        int shown, distinct = class_line(p, line, sizeof line, &shown);
        fprintf(f, "%s: class%s %s%s\n", pre, shown > 1 ? "es" : "", line, distinct > 8 ? ", ..." : "");
    } else if (p->nlist == 1) {
        fprintf(f, "%s: class %d\n", pre, p->list[0]);
    }
    if (mc)
        fprintf(f, "%s: seed %llu, %d samples, %s %s (%d steps%s%s), guidance %s%s%s%s\n", pre, (unsigned long long)p->job.seed,
                p->N, p->ode ? p->sampler_name : p->ddim ? "ddim" : "ddpm", p->resp, p->ode ? p->ode_outer : p->diff->K,
                p->ode ? ", " : "", p->ode ? ode_grid_name(p) : "", p->use_classifier || p->use_cfg ? "" : "none",
                p->use_entropy ? "entropy" : p->use_classifier ? "classifier" : "", p->use_classifier && p->use_cfg ? "+" : "",
                p->use_cfg ? "cfg" : "");
    if (p->up)
        fprintf(f, "%s: %supsampling %dx%d -> %dx%d, ddpm %s (%d steps)\n", pre, mc ? "then " : "", uc->small_size,
                uc->small_size, uc->image_size, uc->image_size, p->up_resp, p->up_diff->K);
    if (p->bf16_refused) fprintf(f, "%s: warning: --precision bf16 needs AVX512-BF16, which this CPU lacks: running fp32\n", pre);
    else if (p->bf16) fprintf(f, "%s: precision bf16 (convolution and attention products; the rest fp32)\n", pre);
    if (p->model && gd_model_quant_count(p->model))
        fprintf(f, "%s: model W8A8: %d convolutions on int8 GEMMs (%s)\n", pre, gd_model_quant_count(p->model),
                gd_s8_kernels());
    for (int i = 0; p->use_classifier && i < p->job.n_classifiers; i++)
        if (p->cls[i] && gd_model_quant_count(p->cls[i]))
            fprintf(f, "%s: classifier %d W8A8: %d convolutions on int8 GEMMs\n", pre, i + 1, gd_model_quant_count(p->cls[i]));
    if (!mc)
        fprintf(f, "%s: seed %llu, %d samples from the images of %s\n", pre, (unsigned long long)p->job.seed, p->N, p->job.base_npz);
}

/* Where a model's config came from and the rules inference applied, one prefixed line each. */
static void describe_config(FILE *f, const char *pre, const char *what, const gd_model *m) {
    for (const char *l = m ? gd_model_config_notes(m) : ""; *l;) {
        while (*l == ' ') l++;
        size_t n = strcspn(l, "\n");
        fprintf(f, "%s: %s %.*s\n", pre, what, (int)n, l);
        l += n + (l[n] == '\n');
    }
}

void gd_pipeline_describe(const gd_pipeline *p, FILE *f, const char *pre, int summary, int verbose) {
    const gd_config *mc = p->mc, *uc = p->uc;
    if (summary) describe_summary(p, f, pre);
    if (!verbose) return;
    fprintf(f, "%s: %s\n", pre, gd_build_info());
    fprintf(f, "%s: kernels: %s\n", pre, gd_precision_kernels());
    if (mc)
        fprintf(f, "%s: model %s: %dx%dx%d, %d channels, class_cond %d, learn_sigma %d, %s schedule, %d steps\n", pre,
                p->model_path, mc->in_channels, mc->image_size, mc->image_size, mc->model_channels, mc->class_cond,
                mc->learn_sigma, mc->noise_schedule, mc->diffusion_steps);
    if (p->up)
        fprintf(f, "%s: upsampler %s: %d -> %d, %d channels, class_cond %d, %s schedule\n", pre,
                p->job.upsampler ? p->job.upsampler : p->model_path, uc->small_size, uc->image_size, uc->model_channels,
                uc->class_cond, uc->noise_schedule);
    describe_config(f, pre, "model", p->model);
    for (int i = 0; i < GD_MAX_EXPERTS && p->use_classifier; i++) describe_config(f, pre, "classifier", p->cls[i]);
    describe_config(f, pre, "upsampler", p->up);
}

static void add_labels(const gd_pipeline *p, cJSON *js) {
    cJSON *la = cJSON_AddArrayToObject(js, "labels");
    for (int i = 0; i < p->N && i < 100000; i++) cJSON_AddItemToArray(la, cJSON_CreateNumber((double)p->labels[i]));
    if (!p->cn.n) return;
    cJSON *na = cJSON_AddArrayToObject(js, "label_names");
    for (int i = 0; i < p->N && i < 100000; i++) {
        const char *nm = gd_class_name(&p->cn, p->labels[i]);
        cJSON_AddItemToArray(na, nm ? cJSON_CreateString(nm) : cJSON_CreateNull());
    }
}

char *gd_pipeline_metadata(const gd_pipeline *p) {
    const gd_job *j = &p->job;
    cJSON *js = cJSON_CreateObject();
    if (j->tool) cJSON_AddStringToObject(js, "tool", j->tool);
    if (p->ps.js) cJSON_AddStringToObject(js, "preset", p->ps.name);
    if (p->mc) {
        cJSON_AddStringToObject(js, "model", p->model_path);
        cJSON *ca = cJSON_AddArrayToObject(js, "classifiers");
        for (int i = 0; p->use_classifier && i < j->n_classifiers; i++)
            cJSON_AddItemToArray(ca, cJSON_CreateString(j->classifiers[i].path));
        cJSON_AddStringToObject(js, "sampler", p->ode ? p->sampler_name : p->ddim ? "ddim" : "ddpm");
        if (p->bf16) cJSON_AddStringToObject(js, "precision", "bf16");
        int q = p->model ? gd_model_quant_count(p->model) : 0;
        for (int i = 0; p->use_classifier && i < j->n_classifiers; i++) q += p->cls[i] ? gd_model_quant_count(p->cls[i]) : 0;
        if (q) cJSON_AddStringToObject(js, "weights", "w8a8");
        if (p->ode) { /* the solver's settings instead of a respacing */
            cJSON_AddNumberToObject(js, "nfe", p->ode_steps);
            cJSON_AddNumberToObject(js, "steps", p->ode_outer);
            cJSON_AddStringToObject(js, "time_schedule", ode_grid_name(p));
            if (p->ode_kind == GD_SOLVER_UNIPC) {
                cJSON_AddNumberToObject(js, "order", p->order);
                cJSON_AddStringToObject(js, "unipc_variant", p->bh1 ? "bh1" : "bh2");
            }
            if (p->thresholding) {
                cJSON_AddNumberToObject(js, "thresholding_ratio", p->thr_ratio);
                cJSON_AddNumberToObject(js, "thresholding_max", p->thr_max);
            }
        } else {
            cJSON_AddStringToObject(js, "respacing", p->resp);
            cJSON_AddNumberToObject(js, "steps", p->diff->K);
            cJSON_AddNumberToObject(js, "eta", j->eta);
        }
    } else {
        cJSON_AddStringToObject(js, "base_npz", j->base_npz);
    }
    if (p->up) {
        cJSON_AddStringToObject(js, "upsampler", j->upsampler ? j->upsampler : p->model_path);
        cJSON_AddStringToObject(js, "upsampler_respacing", p->up_resp);
        cJSON_AddNumberToObject(js, "upsampler_steps", p->up_diff->K);
        cJSON_AddNumberToObject(js, "base_size", p->uc->small_size);
    }
    cJSON_AddBoolToObject(js, "clip_denoised", j->clip);
    cJSON_AddBoolToObject(js, "unconditional_model", j->uncond);
    cJSON *ga = cJSON_AddArrayToObject(js, "guidance");
    if (p->use_classifier) cJSON_AddItemToArray(ga, cJSON_CreateString(p->use_entropy ? "entropy" : "classifier"));
    if (p->use_cfg) cJSON_AddItemToArray(ga, cJSON_CreateString("cfg"));
    cJSON_AddNumberToObject(js, "scale", j->scale);
    cJSON_AddNumberToObject(js, "cfg_scale", p->use_cfg ? j->cfg_scale : 1.0);
    cJSON_AddNumberToObject(js, "seed", (double)j->seed);
    cJSON_AddStringToObject(js, "rng", j->rng_torch ? "torch" : "per-sample");
    cJSON_AddNumberToObject(js, "num_samples", p->N);
    cJSON_AddNumberToObject(js, "first_index", (double)j->first_index);
    cJSON_AddNumberToObject(js, "batch_size", p->B);
    if (p->nlist == 1 && gd_class_name(&p->cn, p->list[0])) cJSON_AddStringToObject(js, "class_name", gd_class_name(&p->cn, p->list[0]));
    if (p->labelled) add_labels(p, js);
    char *s = cJSON_PrintUnformatted(js);
    cJSON_Delete(js);
    return s;
}
