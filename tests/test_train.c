/* Training objectives against the PyTorch reference (tests/reference/losses.py): the hybrid
 * loss's per-sample terms and its gradient w.r.t. the network output, and the ECT classifier loss. */
#include "gd_safetensors.h"
#include "gd_train.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const gd_st_tensor *need(const gd_st_file *f, const char *prefix, const char *name) {
    char k[128];
    snprintf(k, sizeof k, "%s%s%s", prefix, *prefix ? "/" : "", name);
    const gd_st_tensor *t = gd_st_find(f, k);
    CHECK(t != NULL, "fixture tensor '%s' missing", k);
    return t;
}

static double f64_at(const gd_st_tensor *t, int i) {
    double v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

static void test_hybrid_loss(void) {
    char err[512];
    gd_st_file *f = gd_st_open("tests/fixtures/loss_hybrid.safetensors", err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    cJSON *cases = cJSON_Parse(gd_st_metadata(f, "cases")), *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        int T = cJSON_GetObjectItem(c, "diffusion_steps")->valueint;
        gd_diffusion *d = gd_diffusion_new(cJSON_GetObjectItem(c, "noise_schedule")->valuestring, T, "", err, sizeof err);
        const gd_st_tensor *x0 = need(f, name, "x_start"), *xt = need(f, name, "x_t"), *nz = need(f, name, "noise"),
                           *out = need(f, name, "model_out"), *tt = need(f, name, "t"), *mse = need(f, name, "mse"),
                           *vb = need(f, name, "vb"), *loss = need(f, name, "loss"), *grad = need(f, name, "grad");
        if (!d || !x0 || !xt || !nz || !out || !tt || !mse || !vb || !loss || !grad) continue;
        int N = (int)x0->shape[0], C = (int)x0->shape[1], HW = (int)(x0->shape[2] * x0->shape[3]);
        int k[16];
        for (int n = 0; n < N; n++) {
            int64_t v;
            memcpy(&v, (const char *)tt->data + 8 * n, 8);
            k[n] = (int)v;
        }
        gd_loss_terms terms[16];
        int64_t no = out->numel;
        float *dout = malloc(sizeof(float) * (size_t)no);
        gd_hybrid_loss(d, N, C, HW, 1, out->data, x0->data, xt->data, nz->data, k, terms, dout);
        double worst = 0, gmax = 0, gerr = 0;
        for (int n = 0; n < N; n++) {
            double e[3] = {fabs(terms[n].mse - f64_at(mse, n)) / fabs(f64_at(mse, n)),
                           fabs(terms[n].vb - f64_at(vb, n)) / fmax(fabs(f64_at(vb, n)), 1e-12),
                           fabs(terms[n].loss - f64_at(loss, n)) / fabs(f64_at(loss, n))};
            for (int j = 0; j < 3; j++) worst = fmax(worst, e[j]);
        }
        /* the fixture's grad is of the batch sum; ours is of the batch mean */
        for (int64_t i = 0; i < no; i++) {
            float r;
            memcpy(&r, (const char *)grad->data + 4 * i, 4);
            gmax = fmax(gmax, fabs(r));
            gerr = fmax(gerr, fabs((double)dout[i] * N - r));
        }
        printf("    %-12s t = {%d..%d}: per-sample mse/vb/loss rel. error %.1e, gradient %.1e of max\n", name, k[0],
               k[N - 1], worst, gerr / gmax);
        CHECK(worst < 1e-4 && gerr < 1e-4 * gmax, "%s: loss error %.3e, gradient error %.3e", name, worst, gerr / gmax);
        free(dout);
        gd_diffusion_free(d);
    }
    cJSON_Delete(cases);
    gd_st_close(f);
}

static void test_ect_loss(void) {
    char err[512];
    gd_st_file *f = gd_st_open("tests/fixtures/loss_ect.safetensors", err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    const gd_st_tensor *lg = need(f, "", "logits"), *lab = need(f, "", "labels"), *ce = need(f, "", "ce"),
                       *ect = need(f, "", "ect"), *grad = need(f, "", "grad"), *grad_ce = need(f, "", "grad_ce");
    if (!lg || !lab || !ce || !ect || !grad || !grad_ce) {
        gd_st_close(f);
        return;
    }
    int N = (int)lg->shape[0], K = (int)lg->shape[1];
    int32_t y[16];
    for (int n = 0; n < N; n++) {
        int64_t v;
        memcpy(&v, (const char *)lab->data + 8 * n, 8);
        y[n] = (int32_t)v;
    }
    double per[16];
    float dl[160];
    for (int variant = 0; variant < 2; variant++) {
        double lambda = variant ? 0.1 : 0.0;
        gd_ect_loss(N, K, lg->data, y, lambda, per, dl);
        const gd_st_tensor *want = variant ? ect : ce, *wg = variant ? grad : grad_ce;
        double e = 0, ge = 0, gm = 0;
        for (int n = 0; n < N; n++) e = fmax(e, fabs(per[n] - f64_at(want, n)) / fmax(fabs(f64_at(want, n)), 1e-3));
        for (int i = 0; i < N * K; i++) {
            float r;
            memcpy(&r, (const char *)wg->data + 4 * i, 4);
            gm = fmax(gm, fabs(r));
            ge = fmax(ge, fabs(dl[i] - r));
        }
        printf("    %s: per-sample rel. error %.1e, gradient %.1e of max\n", variant ? "ECT (lambda 0.1)" : "cross-entropy   ",
               e, ge / gm);
        CHECK(e < 1e-5 && ge < 1e-5 * gm, "%s: loss %.3e grad %.3e", variant ? "ECT" : "CE", e, ge / gm);
    }
    gd_st_close(f);
}

/* ddpm-train: stopping after 2 steps and resuming gives the bytes of an uninterrupted 4-step run. */
#include "cli_util.h"

static void write_run(const char *dir, const char *name, const char *kind, const char *extra) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    FILE *f = fopen(p, "w");
    int cls = !strcmp(kind, "classifier");
    fprintf(f,
            "{\"kind\": \"%s\", \"out\": \"%s/%s\", \"data\": {\"images\": \"%s/img\", \"labels\": \"%s/lab\"},"
            " \"batch_size\": 5, \"steps\": 4, \"seed\": 7, \"log_every\": 1, \"checkpoint_every\": 100, %s"
            " \"optim\": {\"lr\": 1e-3, \"warmup\": 1, \"ema\": 0.9},"
            " \"model\": %s}",
            kind, dir, name, dir, dir, extra,
            cls ? "{\"model\": \"classifier\", \"image_size\": 8, \"in_channels\": 1, \"num_classes\": 3,"
                  " \"classifier_width\": 32, \"classifier_depth\": 1, \"classifier_channel_mult\": \"1,2\","
                  " \"classifier_attention_resolutions\": \"4\", \"classifier_num_head_channels\": 32}"
                : "{\"model\": \"unet\", \"image_size\": 8, \"in_channels\": 1, \"num_channels\": 32,"
                  " \"channel_mult\": \"1,2\", \"num_res_blocks\": 1, \"attention_resolutions\": \"4\","
                  " \"num_head_channels\": 32, \"learn_sigma\": true, \"class_cond\": true, \"num_classes\": 3,"
                  " \"null_class\": true, \"resblock_updown\": true, \"noise_schedule\": \"cosine\"}");
    fclose(f);
}

static int files_equal(const char *a, const char *b) {
    size_t n = cli_file_size(a);
    if (!n || n != cli_file_size(b)) return 0;
    char *x = cli_slurp(a), *y = cli_slurp(b);
    int same = !memcmp(x, y, n);
    free(x);
    free(y);
    return same;
}

static void test_train_resume(void) {
    if (!cli_tool_available("ddpm-train")) return;
    char d[512], args[1024], a[700], b[700];
    cli_mkdtemp(d, sizeof d);
    cli_write_tiny_idx(d);
    const char *kinds[2] = {"diffusion", "classifier"}, *extra[2] = {"\"label_dropout\": 0.3,", "\"ect_lambda\": 0.1,"};
    for (int k = 0; k < 2; k++) {
        char full[64], split[64];
        snprintf(full, sizeof full, "%s_full", kinds[k]);
        snprintf(split, sizeof split, "%s_split", kinds[k]);
        write_run(d, full, kinds[k], extra[k]);
        write_run(d, split, kinds[k], extra[k]);
        snprintf(args, sizeof args, "-q -t 2 -c %s/%s.json", d, full);
        cli_result r = cli_run("ddpm-train", d, args);
        CHECK(r.status == 0, "%s: %s", full, r.err);
        cli_run_free(&r);
        snprintf(args, sizeof args, "-q -t 1 -c %s/%s.json --stop-after 2", d, split);
        r = cli_run("ddpm-train", d, args);
        CHECK(r.status == 0, "%s first half: %s", split, r.err);
        cli_run_free(&r);
        snprintf(args, sizeof args, "-q -t 2 -c %s/%s.json --resume", d, split);
        r = cli_run("ddpm-train", d, args);
        CHECK(r.status == 0, "%s resume: %s", split, r.err);
        cli_run_free(&r);
        snprintf(a, sizeof a, "%s/%s/model.safetensors", d, full);
        snprintf(b, sizeof b, "%s/%s/model.safetensors", d, split);
        int same_model = files_equal(a, b);
        snprintf(a, sizeof a, "%s/%s/checkpoint.safetensors", d, full);
        snprintf(b, sizeof b, "%s/%s/checkpoint.safetensors", d, split);
        int same_ckpt = files_equal(a, b);
        printf("    %-10s 4 steps vs 2 + resume 2 (and -t 1 vs -t 2): model %s, checkpoint %s\n", kinds[k],
               same_model ? "identical" : "DIFFERENT", same_ckpt ? "identical" : "DIFFERENT");
        CHECK(same_model && same_ckpt, "%s: resumed run differs", kinds[k]);
    }
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_train) = {
    {"ddpm-train: stop and resume gives the uninterrupted run's weights", test_train_resume},
    {"training: hybrid loss (MSE + 0.001 L_vlb) vs PyTorch", test_hybrid_loss},
    {"training: cross-entropy and ECT losses vs PyTorch", test_ect_loss},
    {NULL, NULL},
};
