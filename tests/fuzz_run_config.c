/* libFuzzer target for ddpm-train's run config (gd_train_config_parse) and the log window a
 * checkpoint carries (gd_train_log_state_parse). Built and run by `make fuzz`
 * (build-fuzz/fuzz_run_config; seeds: tests/data/fuzz/run_config/).
 *
 * The input is the run config's bytes. Refused: a one-line message. Accepted: every promise of
 * include/gd_train.h holds (ranges, strings, kinds), and the optimizer takes the settings, since
 * ddpm-train relies on the parser alone to refuse them. The same bytes, NUL-terminated, go to the
 * log-state parser, whose accepted states must format and parse back to the same values. */
#include "gd_train.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void must(int cond) {
    if (!cond) abort();
}

static void one_line(const char *err, size_t n) {
    must(memchr(err, '\0', n) != NULL);
    must(err[0] != '\0');
    must(strchr(err, '\n') == NULL);
}

static void path_ok(const char *s) { must(s && s[0] && strlen(s) < 4000); }

static void check_config(const gd_train_config *c) {
    path_ok(c->out);
    must(c->model_json && c->model_ok);
    must(c->model.kind == (c->diffusion ? GD_NET_UNET : GD_NET_CLASSIFIER));
    if (c->data_folder) {
        path_ok(c->data_folder);
        must(!c->data_images && !c->data_labels);
    } else {
        path_ok(c->data_images);
        path_ok(c->data_labels);
    }
    path_ok(c->test_images);
    path_ok(c->test_labels);
    must(c->batch_size >= 1 && c->batch_size <= GD_TRAIN_MAX_BATCH);
    must(c->steps >= 1 && c->steps <= GD_TRAIN_MAX_STEPS);
    must(c->log_every >= 1 && c->log_every <= GD_TRAIN_MAX_STEPS);
    must(c->checkpoint_every >= 1 && c->checkpoint_every <= GD_TRAIN_MAX_STEPS);
    must(c->seed <= (1ull << 53));
    must(c->label_dropout >= 0 && c->label_dropout <= 1 && (c->label_dropout == 0 || c->model.null_class));
    must(isfinite(c->ect_lambda) && c->ect_lambda >= 0);
    must(c->noised == 0 || c->noised == 1);
    must(c->hflip == 0 || c->hflip == 1);
    const gd_optim_config *q = &c->optim;
    must(q->total_steps == c->steps && q->warmup_steps >= 0 && q->warmup_steps <= GD_TRAIN_MAX_STEPS);
    must(isfinite(q->lr) && isfinite(q->eps) && q->eps > 0 && isfinite(q->weight_decay) && isfinite(q->clip_norm) &&
         q->clip_norm >= 0 && q->lr * q->weight_decay <= 1);
    /* steps * batch_size, the largest batch position, stays far from overflow */
    must(c->steps <= INT64_MAX / GD_TRAIN_MAX_BATCH / 2);
    gd_optim *o = gd_optim_new(q, NULL, 0);
    must(o != NULL);
    must(isfinite(gd_optim_lr(o)));
    gd_optim_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    memset(err, 0x55, sizeof err);
    gd_train_config c;
    if (gd_train_config_parse((const char *)data, size, &c, err, sizeof err) == 0) {
        check_config(&c);
        gd_train_config_free(&c);
    } else {
        one_line(err, sizeof err);
    }

    char *text = malloc(size + 1);
    must(text != NULL);
    memcpy(text, data, size);
    text[size] = 0;
    gd_train_log_state s, t;
    memset(err, 0x55, sizeof err);
    if (gd_train_log_state_parse(text, 1000, &s, err, sizeof err) == 0) {
        must(s.n >= 0 && s.n <= 1000 && isfinite(s.loss) && isfinite(s.mse) && isfinite(s.vb));
        char buf[256];
        must(gd_train_log_state_format(&s, buf, sizeof buf) == 0);
        must(gd_train_log_state_parse(buf, 1000, &t, err, sizeof err) == 0);
        must(t.n == s.n && t.loss == s.loss && t.mse == s.mse && t.vb == s.vb);
    } else {
        one_line(err, sizeof err);
    }
    free(text);
    return 0;
}
