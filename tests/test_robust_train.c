/* Regression tests of issue 11 (hostile input, lost data): robust_train. ddpm-train's run config
 * and checkpoints are input: every refusal is status 2, one line naming the key or file, nothing on
 * stdout and no run folder; a resumed run logs exactly what an uninterrupted one does. */
#include "cli_util.h"
#include "gd_safetensors.h"
#include "gd_train.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *UNET = "{\"model\": \"unet\", \"image_size\": 8, \"in_channels\": 1, \"num_channels\": 32,"
                          " \"channel_mult\": \"1,2\", \"num_res_blocks\": 1, \"attention_resolutions\": \"4\","
                          " \"num_head_channels\": 32, \"learn_sigma\": true, \"class_cond\": true, \"num_classes\": 3,"
                          " \"null_class\": true, \"resblock_updown\": true, \"noise_schedule\": \"cosine\"}";
static const char *CLASSIFIER = "{\"model\": \"classifier\", \"image_size\": 8, \"in_channels\": 1, \"num_classes\": 3,"
                                " \"classifier_width\": 32, \"classifier_depth\": 1, \"classifier_channel_mult\": \"1,2\","
                                " \"classifier_attention_resolutions\": \"4\", \"classifier_num_head_channels\": 32}";

/* A valid tiny run of the kind, its folder dir/out, as a cJSON tree to edit. */
static cJSON *base_run(const char *dir, const char *out, int classifier) {
    char js[4096];
    snprintf(js, sizeof js,
             "{\"kind\": \"%s\", \"out\": \"%s/%s\", \"data\": {\"images\": \"%s/img\", \"labels\": \"%s/lab\"},"
             " \"batch_size\": 5, \"steps\": 4, \"seed\": 7, \"log_every\": 1, \"checkpoint_every\": 100, %s"
             " \"optim\": {\"lr\": 1e-3, \"warmup\": 1, \"ema\": 0.9}, \"model\": %s}",
             classifier ? "classifier" : "diffusion", dir, out, dir, dir,
             classifier ? "\"ect_lambda\": 0.1," : "\"label_dropout\": 0.3,", classifier ? CLASSIFIER : UNET);
    cJSON *o = cJSON_Parse(js);
    CHECK(o != NULL, "base run config does not parse");
    return o;
}

static void save_json(const cJSON *o, const char *path) {
    char *s = cJSON_PrintUnformatted(o);
    CHECK(s && cli_write_file(path, s, strlen(s)) == 0, "writing %s", path);
    cJSON_free(s);
}

/* Sets key path ("optim.lr") to the JSON text value; NULL deletes it; twice != 0 adds a second
 * copy of the key instead of replacing it. */
static void edit(cJSON *run, const char *path, const char *value, int twice) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *dot = strchr(buf, '.');
    cJSON *obj = run;
    if (dot) {
        *dot = 0;
        obj = cJSON_GetObjectItemCaseSensitive(run, buf);
        CHECK(cJSON_IsObject(obj), "no object %s", buf);
        if (!cJSON_IsObject(obj)) return;
    }
    const char *key = dot ? dot + 1 : buf;
    if (!value) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        return;
    }
    cJSON *v = cJSON_Parse(value);
    CHECK(v != NULL, "value %s", value);
    if (!v) return;
    if (!twice && cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else cJSON_AddItemToObject(obj, key, v);
}

/* A refusal: status 2, nothing on stdout, one "ddpm-train: " line holding want, no run folder. */
static void expect_refused(const char *dir, const char *cfg, const char *args, const char *out, const char *want) {
    char a[1500];
    snprintf(a, sizeof a, "-q -t 1 -c '%s' %s", cfg, args);
    cli_result r = cli_run("ddpm-train", dir, a);
    CHECK(r.status == 2 && !r.out[0] && cli_count_lines(r.err) == 1 && !strncmp(r.err, "ddpm-train: ", 12) &&
              strstr(r.err, want),
          "%s: want status 2 and one line holding \"%s\"; got %d, stdout '%.200s', stderr: %.300s", cfg, want, r.status, r.out,
          r.err);
    if (out) CHECK(!cli_file_exists(out), "%s: the refused run left %s behind", cfg, out);
    cli_run_free(&r);
}

typedef struct {
    int classifier;
    const char *path, *value;
    int twice;
    const char *want; /* in the message: the key the user got wrong */
} bad_case;

static void run_bad_cases(const bad_case *cases, int n) {
    if (!cli_tool_available("ddpm-train")) return;
    char d[512], cfg[700], out[700], name[32];
    cli_mkdtemp(d, sizeof d);
    cli_write_tiny_idx(d);
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "run%d", k);
        cJSON *run = base_run(d, name, cases[k].classifier);
        if (!run) continue;
        edit(run, cases[k].path, cases[k].value, cases[k].twice);
        snprintf(cfg, sizeof cfg, "%s/case%d.json", d, k);
        snprintf(out, sizeof out, "%s/%s", d, name);
        save_json(run, cfg);
        cJSON_Delete(run);
        /* --stop-after bounds the run where a refused setting (steps 9e18) used to be trained on */
        expect_refused(d, cfg, "--stop-after 2", out, cases[k].want);
    }
    cli_rmtree(d);
}

/* log_every / checkpoint_every 0 divided by zero (SIGFPE) after creating the folder and log. */
static void test_zero_intervals(void) {
    static const bad_case cases[] = {
        {0, "log_every", "0", 0, "\"log_every\""},
        {0, "checkpoint_every", "0", 0, "\"checkpoint_every\""},
        {1, "log_every", "0", 0, "\"log_every\""},
        {1, "checkpoint_every", "0", 0, "\"checkpoint_every\""},
        {0, "log_every", "-5", 0, "\"log_every\""},
        {0, "checkpoint_every", "-1", 0, "\"checkpoint_every\""},
        {0, "snapshot_every", "-1", 0, "\"snapshot_every\""},
        {0, "snapshot_every", "2.5", 0, "\"snapshot_every\""},
        {0, "snapshot_every", "\"10\"", 0, "\"snapshot_every\""},
        {0, "snapshot_every", "1e30", 0, "\"snapshot_every\""},
    };
    run_bad_cases(cases, (int)(sizeof cases / sizeof *cases));
}

/* Wrong types and out-of-range values were truncated, ignored or trained on (NaN norms). */
static void test_types_and_ranges(void) {
    static const bad_case cases[] = {
        {0, "batch_size", "2.5", 0, "\"batch_size\""},
        {0, "batch_size", "0", 0, "\"batch_size\""},
        {0, "batch_size", "5000", 0, "\"batch_size\""},
        {0, "batch_size", "\"5\"", 0, "\"batch_size\""},
        {0, "steps", "9e18", 0, "\"steps\""},
        {0, "steps", "4.5", 0, "\"steps\""},
        {0, "seed", "-1", 0, "\"seed\""},
        {0, "seed", "1e300", 0, "\"seed\""},
        {0, "data", "\"/tmp/fashion\"", 0, "\"data\""},
        {0, "data.labels", NULL, 0, "\"data.labels\""},
        {0, "data.folder", "\"/tmp\"", 0, "\"folder\""},
        {0, "data.images", "7", 0, "\"data.images\""},
        {0, "optim", "\"adam\"", 0, "\"optim\""},
        {0, "optim.decay", "\"cosin\"", 0, "\"optim.decay\""},
        {0, "optim.lr", "-1", 0, "\"optim.lr\""},
        {0, "optim.lr", "\"1e-3\"", 0, "\"optim.lr\""},
        {0, "optim.beta1", "5", 0, "\"optim.beta1\""},
        {0, "optim.beta2", "1", 0, "\"optim.beta2\""},
        {0, "optim.eps", "0", 0, "\"optim.eps\""},
        {0, "optim.weight_decay", "-0.1", 0, "\"optim.weight_decay\""},
        {0, "optim.warmup", "2.5", 0, "\"optim.warmup\""},
        {0, "optim.final_frac", "2", 0, "\"optim.final_frac\""},
        {0, "optim.clip", "-1", 0, "\"optim.clip\""},
        {0, "optim.ema", "1", 0, "\"optim.ema\""},
        {0, "label_dropout", "1.5", 0, "\"label_dropout\""},
        {0, "kind", "\"gan\"", 0, "\"kind\""},
        {0, "kind", "1", 0, "\"kind\""},
        {0, "out", "\"\"", 0, "\"out\""},
        {0, "out", "5", 0, "\"out\""},
        {0, "model", "\"unet\"", 0, "\"model\""},
        {1, "noised", "0", 0, "\"noised\""},
        {1, "hflip", "\"yes\"", 0, "\"hflip\""},
        {1, "ect_lambda", "-1", 0, "\"ect_lambda\""},
        {1, "test_data", "{\"images\": \"/tmp/x\"}", 0, "\"test_data.labels\""},
        /* the other kind's network */
        {1, "model", "{\"model\": \"superres\", \"image_size\": 8, \"in_channels\": 1, \"num_channels\": 32,"
                     " \"channel_mult\": \"1,2\", \"small_size\": 4, \"attention_resolutions\": \"4\","
                     " \"num_head_channels\": 32}", 0, "\"classifier\""},
        /* a missing data file used to be found only after the folder was made */
        {0, "data.images", "\"/nonexistent/train-images\"", 0, "/nonexistent/train-images"},
    };
    run_bad_cases(cases, (int)(sizeof cases / sizeof *cases));
}

/* Keys nobody reads were accepted silently, at every level, as were repeated keys. */
static void test_unknown_keys(void) {
    static const bad_case cases[] = {
        {0, "stpes", "4", 0, "\"stpes\""},
        {0, "optim.momentum", "0.9", 0, "\"optim.momentum\""},
        {0, "data.image", "\"/tmp/x\"", 0, "\"data.image\""},
        {1, "test_data", "{\"images\": \"a\", \"labels\": \"b\", \"folder\": \"/tmp\"}", 0, "\"test_data.folder\""},
        {0, "steps", "5", 1, "\"steps\""},
        {0, "optim.lr", "1", 1, "\"optim.lr\""},
        /* another kind's keys are not silently ignored either */
        {0, "ect_lambda", "0.1", 0, "\"ect_lambda\""},
        {0, "noised", "false", 0, "\"noised\""},
        {1, "label_dropout", "0.1", 0, "\"label_dropout\""},
    };
    run_bad_cases(cases, (int)(sizeof cases / sizeof *cases));
}

/* ---- checkpoints ---- */

static int run_tool(const char *dir, const char *cfg, const char *args) {
    char a[1500];
    snprintf(a, sizeof a, "-q -t 1 -c '%s' %s", cfg, args);
    cli_result r = cli_run("ddpm-train", dir, a);
    int st = r.status;
    CHECK(st == 0, "ddpm-train %s: status %d: %s", a, st, r.err);
    cli_run_free(&r);
    return st;
}

/* Overwrites the bytes of tensor `name` of a safetensors file (the file is otherwise unchanged). */
static void patch_tensor(const char *path, const char *name, int64_t elem, const void *bytes, size_t n) {
    size_t len = 0;
    unsigned char *b = cli_read_file(path, &len);
    char err[300];
    gd_st_file *f = b ? gd_st_open_mem(b, len, err, sizeof err) : NULL;
    const gd_st_tensor *t = f ? gd_st_find(f, name) : NULL;
    CHECK(t != NULL, "%s: no tensor %s", path, name);
    if (t) {
        size_t off = (size_t)((const unsigned char *)t->data - b) + (size_t)elem * n;
        memcpy(b + off, bytes, n);
    }
    if (f) gd_st_close(f);
    CHECK(b && cli_write_file(path, b, len) == 0, "rewriting %s", path);
    free(b);
}

static void copy_to(const char *from, const char *to) {
    size_t n = 0;
    unsigned char *b = cli_read_file(from, &n);
    CHECK(b && cli_write_file(to, b, n) == 0, "copying %s", from);
    free(b);
}

static int same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = cli_read_file(a, &na), *y = cli_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* A checkpoint step near 2^62 with steps 9e18 overflowed step * batch_size and aborted; one past
 * the run's steps was taken as a finished run. Both are refused and nothing is written. */
static void test_checkpoint_step(void) {
    if (!cli_tool_available("ddpm-train")) return;
    char d[512], cfg[700], ck[700], keep[700], logp[700], logkeep[700], out[700];
    cli_mkdtemp(d, sizeof d);
    cli_write_tiny_idx(d);
    cJSON *run = base_run(d, "run", 0);
    edit(run, "steps", "10", 0);
    snprintf(cfg, sizeof cfg, "%s/run.json", d);
    save_json(run, cfg);
    snprintf(out, sizeof out, "%s/run", d);
    snprintf(ck, sizeof ck, "%s/run/checkpoint.safetensors", d);
    snprintf(keep, sizeof keep, "%s/ck.keep", d);
    snprintf(logp, sizeof logp, "%s/run/log.jsonl", d);
    snprintf(logkeep, sizeof logkeep, "%s/log.keep", d);
    if (run_tool(d, cfg, "--stop-after 1") == 0) {
        const int64_t steps[3] = {(int64_t)1 << 62, ((int64_t)1 << 62) + ((int64_t)1 << 61), 11};
        for (int k = 0; k < 3; k++) {
            patch_tensor(ck, "optim/step", 0, &steps[k], 8);
            copy_to(ck, keep);
            copy_to(logp, logkeep);
            /* the huge step against the run's 10 steps, and against the largest "steps" a config may give */
            expect_refused(d, cfg, "--resume", NULL, "past the run's \"steps\"");
            CHECK(same_bytes(ck, keep) && same_bytes(logp, logkeep), "step %lld: the refused resume changed the run",
                  (long long)steps[k]);
        }
        /* (the baseline aborts at once from this step rather than training for ever) */
        patch_tensor(ck, "optim/step", 0, &steps[1], 8);
        copy_to(ck, keep);
        edit(run, "steps", "9e18", 0);
        save_json(run, cfg);
        expect_refused(d, cfg, "--resume", NULL, "\"steps\"");
        edit(run, "steps", "1099511627776", 0); /* 2^40: the most steps accepted */
        save_json(run, cfg);
        expect_refused(d, cfg, "--resume", NULL, "past the run's \"steps\"");
        CHECK(same_bytes(ck, keep), "the refused resume changed the checkpoint");
    }
    cJSON_Delete(run);
    cli_rmtree(d);
}

/* Weights and moments read back from a checkpoint: NaN or a negative second moment (sqrt's
 * domain) were trained on. */
static void test_checkpoint_values(void) {
    if (!cli_tool_available("ddpm-train")) return;
    char d[512], cfg[700], ck[700], keep[700];
    cli_mkdtemp(d, sizeof d);
    cli_write_tiny_idx(d);
    cJSON *run = base_run(d, "run", 0);
    snprintf(cfg, sizeof cfg, "%s/run.json", d);
    save_json(run, cfg);
    snprintf(ck, sizeof ck, "%s/run/checkpoint.safetensors", d);
    snprintf(keep, sizeof keep, "%s/ck.keep", d);
    if (run_tool(d, cfg, "--stop-after 1") == 0) {
        size_t n = 0;
        unsigned char *b = cli_read_file(ck, &n);
        cli_write_file(keep, b, n);
        char err[300];
        gd_st_file *f = gd_st_open(ck, err, sizeof err);
        char wname[256] = "", vname[300], ename[300];
        for (int i = 0; f && i < gd_st_count(f) && !wname[0]; i++) {
            const gd_st_tensor *t = gd_st_get(f, i);
            if (!strncmp(t->name, "adam_v/", 7) && t->numel >= 4) snprintf(wname, sizeof wname, "%s", t->name + 7);
        }
        CHECK(wname[0], "no second-moment tensor in %s", ck);
        if (f) gd_st_close(f);
        snprintf(vname, sizeof vname, "adam_v/%s", wname);
        snprintf(ename, sizeof ename, "ema/%s", wname);
        const float nan = NAN, neg = -1.0f, inf = INFINITY;
        const char *names[4] = {wname, vname, vname, ename};
        const float *vals[4] = {&nan, &neg, &inf, &nan};
        for (int k = 0; k < 4; k++) {
            cli_write_file(ck, b, n);
            patch_tensor(ck, names[k], 3, vals[k], 4);
            expect_refused(d, cfg, "--resume", NULL, names[k]);
        }
        free(b);
    }
    cJSON_Delete(run);
    cli_rmtree(d);
}

/* ---- the log after kill + resume ---- */

/* log.jsonl without the timing field, one entry per line. */
static char *log_without_timing(const char *path) {
    char *s = cli_slurp(path);
    size_t n = strlen(s);
    char *out = calloc(n + 1, 1), *o = out;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        char *t = strstr(line, ", \"samples_per_s\"");
        size_t k = t ? (size_t)(t - line) : strlen(line);
        memcpy(o, line, k);
        o += k;
        *o++ = '\n';
    }
    free(s);
    return out;
}

/* A run killed after step 5 whose last checkpoint is at step 3 (checkpoint_every 3, log_every 2,
 * so the checkpoint falls inside a log window): the log held entries 2 and 4 and a half-written
 * line. Resumed, it must log exactly what an uninterrupted run logs and end with its bytes. Also a
 * run killed before its first checkpoint (resume starts from nothing). */
static void test_resume_log_exact(void) {
    if (!cli_tool_available("ddpm-train")) return;
    char d[512], cfg[2][700], ck[2][700], lg[2][700], md[2][700], keep[700];
    cli_mkdtemp(d, sizeof d);
    cli_write_tiny_idx(d);
    const char *names[2] = {"full", "split"};
    for (int kind = 0; kind < 2; kind++) {
        for (int i = 0; i < 2; i++) {
            cJSON *run = base_run(d, names[i], kind);
            edit(run, "steps", "8", 0);
            edit(run, "log_every", "2", 0);
            edit(run, "checkpoint_every", "3", 0);
            snprintf(cfg[i], sizeof cfg[i], "%s/%s.json", d, names[i]);
            save_json(run, cfg[i]);
            cJSON_Delete(run);
            snprintf(ck[i], sizeof ck[i], "%s/%s/checkpoint.safetensors", d, names[i]);
            snprintf(lg[i], sizeof lg[i], "%s/%s/log.jsonl", d, names[i]);
            snprintf(md[i], sizeof md[i], "%s/%s/model.safetensors", d, names[i]);
        }
        snprintf(keep, sizeof keep, "%s/ck3", d);
        if (run_tool(d, cfg[0], "") || run_tool(d, cfg[1], "--stop-after 3")) break;
        copy_to(ck[1], keep);
        if (run_tool(d, cfg[1], "--resume --stop-after 2")) break;
        copy_to(keep, ck[1]); /* the kill: steps 4-5 were logged, the checkpoint is still at 3 */
        FILE *f = fopen(lg[1], "a");
        fputs("{\"step\": 6, \"loss\": 0.3", f); /* cut short by the kill */
        fclose(f);
        if (run_tool(d, cfg[1], "--resume")) break;
        char *a = log_without_timing(lg[0]), *b = log_without_timing(lg[1]);
        CHECK(!strcmp(a, b), "%s: resumed log differs:\n--- uninterrupted\n%s--- killed + resumed\n%s",
              kind ? "classifier" : "diffusion", a, b);
        CHECK(cli_count_lines(a) == 4, "uninterrupted log has %d entries, want 4", cli_count_lines(a));
        CHECK(same_bytes(md[0], md[1]) && same_bytes(ck[0], ck[1]), "%s: resumed weights differ",
              kind ? "classifier" : "diffusion");
        free(a);
        free(b);
        /* killed before the first checkpoint: --resume starts over and the old log goes */
        remove(ck[1]);
        if (run_tool(d, cfg[1], "--resume")) break;
        a = log_without_timing(lg[0]), b = log_without_timing(lg[1]);
        CHECK(!strcmp(a, b), "resumed without a checkpoint, the log differs:\n%s---\n%s", a, b);
        CHECK(same_bytes(md[0], md[1]), "restart without a checkpoint: weights differ");
        free(a);
        free(b);
    }
    cli_rmtree(d);
}

/* ---- the parser as a library ---- */

static const char *const SHIPPED[] = {"configs/train_fashion_diffusion.json", "configs/train_fashion_classifier_ce.json",
                                      "configs/train_fashion_classifier_ect.json", "configs/train_fashion_evaluator.json"};

static double json_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Every shipped config parses, with the values it states. */
static void test_shipped_configs(void) {
    for (size_t k = 0; k < sizeof SHIPPED / sizeof *SHIPPED; k++) {
        char *s = cli_slurp(SHIPPED[k]), err[600] = "";
        gd_train_config c;
        int rc = gd_train_config_parse(s, strlen(s), &c, err, sizeof err);
        CHECK(rc == 0, "%s: %s", SHIPPED[k], err);
        cJSON *o = cJSON_Parse(s), *op = cJSON_GetObjectItemCaseSensitive(o, "optim");
        if (!rc && o) {
            CHECK(c.batch_size == json_num(o, "batch_size") && c.steps == json_num(o, "steps") &&
                      (double)c.seed == json_num(o, "seed") && c.log_every == json_num(o, "log_every") &&
                      c.checkpoint_every == json_num(o, "checkpoint_every"),
                  "%s: run settings", SHIPPED[k]);
            CHECK(c.optim.lr == json_num(op, "lr") && c.optim.weight_decay == json_num(op, "weight_decay") &&
                      c.optim.warmup_steps == json_num(op, "warmup") && c.optim.decay_kind == 2 &&
                      c.optim.final_frac == json_num(op, "final_frac") && c.optim.clip_norm == json_num(op, "clip") &&
                      c.optim.ema_rate == json_num(op, "ema") && c.optim.total_steps == c.steps,
                  "%s: optim settings", SHIPPED[k]);
            CHECK(c.diffusion == (k == 0) && c.data_images && !c.data_folder && c.model_json, "%s: kind, data", SHIPPED[k]);
            gd_train_config_free(&c);
        }
        cJSON_Delete(o);
        free(s);
    }
}

/* err: non-empty, one line, terminated. */
static int one_line(const char *err, size_t n) { return memchr(err, 0, n) && err[0] && !strchr(err, '\n'); }

/* Every file of the fuzz corpus either parses or fails with a one-line message (no crash). */
static void test_fuzz_corpus_replay(void) {
    const char *dir = "tests/data/fuzz/run_config";
    DIR *dp = opendir(dir);
    CHECK(dp != NULL, "no %s", dir);
    if (!dp) return;
    int files = 0, parsed = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        size_t n = 0;
        unsigned char *b = cli_read_file(p, &n);
        if (!b) continue;
        files++;
        char err[256];
        memset(err, 0x55, sizeof err);
        gd_train_config c;
        if (gd_train_config_parse((const char *)b, n, &c, err, sizeof err) == 0) {
            parsed++;
            CHECK(c.out && c.model_json && c.batch_size >= 1 && c.steps >= 1 && c.log_every >= 1 && c.checkpoint_every >= 1,
                  "%s: parsed into an unusable config", p);
            gd_train_config_free(&c);
        } else {
            CHECK(one_line(err, sizeof err), "%s: refused without a one-line message", p);
        }
        free(b);
    }
    closedir(dp);
    printf("    %d corpus files: %d parse, %d refused with one line\n", files, parsed, files - parsed);
    CHECK(files >= 10 && parsed >= 4, "corpus too small: %d files, %d parse", files, parsed);
}

/* The open log window a checkpoint carries: it round-trips exactly, and malformed ones are refused. */
static void test_log_state(void) {
    gd_train_log_state s = {3, 1.0 / 3.0, 0.1 + 0.2, 1e-17}, t;
    char buf[256], err[300];
    CHECK(gd_train_log_state_format(&s, buf, sizeof buf) == 0, "format");
    CHECK(gd_train_log_state_parse(buf, 10, &t, err, sizeof err) == 0 && t.n == s.n && t.loss == s.loss && t.mse == s.mse &&
              t.vb == s.vb,
          "round trip: %s", buf);
    s.loss = NAN;
    CHECK(gd_train_log_state_format(&s, buf, sizeof buf) != 0, "a NaN sum has no JSON");
    const char *bad[] = {"{\"n\": 11, \"loss\": 1, \"mse\": 0, \"vb\": 0}", "{\"n\": -1, \"loss\": 1, \"mse\": 0, \"vb\": 0}",
                         "{\"n\": 1.5, \"loss\": 1, \"mse\": 0, \"vb\": 0}", "{\"n\": 1, \"loss\": \"x\", \"mse\": 0, \"vb\": 0}",
                         "{\"n\": 1, \"loss\": 1, \"mse\": 0}",          "{\"n\": 1, \"loss\": 1, \"mse\": 0, \"vb\": 0, \"x\": 1}",
                         "[1]", "{\"n\": 1, \"loss\": 1e999, \"mse\": 0, \"vb\": 0}", ""};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        memset(err, 0x55, sizeof err);
        CHECK(gd_train_log_state_parse(bad[k], 10, &t, err, sizeof err) != 0 && one_line(err, sizeof err),
              "accepted %s", bad[k]);
    }
}

GD_TEST_TABLE(gd_tests_robust_train) = {
    {"robust_train_zero_intervals: log_every/checkpoint_every 0 refused, no SIGFPE, no folder", test_zero_intervals},
    {"robust_train_types_and_ranges: every key's type and range checked before the folder exists", test_types_and_ranges},
    {"robust_train_unknown_keys: unknown, repeated and other-kind keys refused at every level", test_unknown_keys},
    {"robust_train_checkpoint_step: a checkpoint step past the run's steps is refused", test_checkpoint_step},
    {"robust_train_checkpoint_values: NaN weights, negative second moments refused", test_checkpoint_values},
    {"robust_train_resume_log_exact: kill + resume logs what an uninterrupted run logs", test_resume_log_exact},
    {"robust_train_shipped_configs: configs/train_*.json parse with their values", test_shipped_configs},
    {"robust_train_fuzz_corpus_replay: every run_config corpus file parses or fails in one line", test_fuzz_corpus_replay},
    {"robust_train_log_state: the checkpoint's log window round-trips, malformed ones refused", test_log_state},
    {NULL, NULL},
};
