/* ddpm-train: trains an ADM U-Net (hybrid objective, label dropout to a null class) or an
 * EncoderUNet classifier (noise-aware with CE or ECT, or on clean images) from one JSON run config.
 * Every random choice is a function of (seed, step), and checkpoints hold the optimizer state, so
 * a stopped and resumed run produces the same weights as an uninterrupted one. */
#include "gd_cli.h"
#include "gd_dataset.h"
#include "gd_model.h"
#include "gd_optim.h"
#include "gd_rng.h"
#include "gd_safetensors.h"
#include "gd_train.h"
#include "gd_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *run, *eval;
    int resume, quiet, threads;
    int stop_after; /* -1: none */
    int bench;      /* --bench STEPS; 0: train */
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-c", "--config", "RUN.json", GD_CLI_STR, OPT(run), .help = "the run config (configs/train_*.json are examples)"},
    {NULL, "--resume", NULL, GD_CLI_SWITCH, OPT(resume),
     .help = "continue from OUT/checkpoint.safetensors\n(a finished run just exports its model again)"},
    {NULL, "--stop-after", "N", GD_CLI_INT, OPT(stop_after), .lo = 0, .hi = 2147483647,
     .help = "stop after N more steps (checkpointing first)"},
    {NULL, "--eval", "T1,T2,..", GD_CLI_STR, OPT(eval),
     .help = "(classifiers) accuracy of OUT/model.safetensors on the run's test_data\n"
             "(default: the Fashion-MNIST test set) at each original timestep T (0 = clean),\n"
             "one JSON line each; nothing is trained"},
    {NULL, "--bench", "STEPS", GD_CLI_INT, OPT(bench), .lo = 1, .hi = 1000000,
     .help = "time STEPS optimisation steps (after one untimed warm-up step) on the run's\n"
             "network, data and optimizer, and print one JSON line: median seconds per step,\n"
             "samples/s; writes nothing (no OUT folder), trains nothing that is kept"},
    {"-t", "--threads", "THREADS", GD_CLI_INT, OPT(threads), .lo = 1, .hi = 1024, .help = "worker threads"},
    {"-q", "--quiet", NULL, GD_CLI_SWITCH, OPT(quiet), .help = "no progress on stderr"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = "ddpm-train -c RUN.json [--resume] [--stop-after N] [-t THREADS] [-q]\n"
             "       ddpm-train -c RUN.json --bench STEPS [-t THREADS]",
    .about = "Trains the network the run config describes (configs/train_*.json are examples):\n"
             "  kind \"diffusion\": ADM U-Net, epsilon MSE + 0.001 L_vlb (learned range), label dropout\n"
             "  kind \"classifier\": EncoderUNet on q_sample(x0, t) (\"noised\": true) or clean images,\n"
             "                    cross-entropy + ect_lambda * (log C - H(p)); \"hflip\": true mirrors\n"
             "                    half of each batch (random, seeded)\n"
             "Writes OUT/checkpoint.safetensors (weights, AdamW moments, EMA, step; atomic) every\n"
             "checkpoint_every steps, OUT/model.safetensors (EMA weights, config embedded) and OUT/log.jsonl;\n"
             "with snapshot_every N, OUT/snapshots/step_NNNNNN.safetensors every N steps (a training curve).\n",
    .flags = FLAGS,
};

/* A generator for (seed, step, stream): the same draws whether or not the run was resumed. */
static void step_rng(gd_rng *r, uint64_t seed, int64_t step, uint64_t stream) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)step * 0xbf58476d1ce4e5b9ull ^ stream * 0x94d049bb133111ebull;
    z ^= z >> 31;
    gd_rng_seed(r, z);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) gd_cli_die("%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 24)) gd_cli_die("%s: not a run config (not a regular file of at most 16 MiB)", path);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) gd_cli_die("%s: read error", path);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* The EMA weights (or the weights) under their state-dict names, config embedded. */
static void write_model(const char *path, const gd_optim *opt, gd_net *net, const char *config_json) {
    gd_st_writer *w = gd_st_writer_new();
    gd_st_writer_meta(w, "config", config_json);
    for (int i = 0; i < gd_net_param_count(net); i++) {
        const char *name;
        float *wt;
        const float *g;
        int64_t cnt;
        gd_net_param(net, i, &name, &wt, &g, &cnt);
        const float *src = gd_optim_ema(opt, i) ? gd_optim_ema(opt, i) : wt;
        /* shapes come from the model: the flat writer needs them, so ask the net's tensor */
        const gd_tensor *t = gd_net_param_tensor(net, i);
        gd_st_writer_add(w, name, GD_ST_F32, t->ndim, t->ne, src);
    }
    char err[512];
    if (gd_st_writer_save(w, path, err, sizeof err)) gd_cli_die("%s", err);
    gd_st_writer_free(w);
}

/* Mirrors each image left-right with probability 1/2 (rows of w pixels, `rows` per image). */
static void flip_some(gd_rng *r, float *x, int B, int rows, int w) {
    for (int i = 0; i < B; i++) {
        if (gd_rng_u32(r) & 1u) continue;
        for (int y = 0; y < rows; y++) {
            float *row = x + ((size_t)i * rows + y) * w;
            for (int a = 0, b = w - 1; a < b; a++, b--) {
                float tmp = row[a];
                row[a] = row[b], row[b] = tmp;
            }
        }
    }
}

/* Test accuracy of a trained classifier at given original timesteps (x_t from fixed noise). */
static int evaluate(const gd_train_config *rc, const char *ts) {
    const gd_config *cfg = &rc->model;
    const char *out = rc->out;
    if (cfg->kind != GD_NET_CLASSIFIER) gd_cli_die("--eval is for classifier runs");
    gd_dataset test;
    char err[600], path[PATH_MAX];
    if (gd_dataset_load_idx(rc->test_images, rc->test_labels, &test, err, sizeof err)) gd_cli_die("%s", err);
    if (test.h != cfg->image_size || test.w != cfg->image_size || test.c != cfg->in_channels)
        gd_cli_die("test data are %dx%dx%d images, the classifier takes %dx%dx%d", test.c, test.h, test.w, cfg->in_channels,
            cfg->image_size, cfg->image_size);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    gd_model *m = gd_model_load(path, NULL, err, sizeof err);
    if (!m) gd_cli_die("%s", err);
    gd_diffusion *diff = gd_diffusion_new(cfg->noise_schedule, cfg->diffusion_steps, "", err, sizeof err);
    if (!diff) gd_cli_die("%s", err);
    const int B = 100, per = cfg->in_channels * cfg->image_size * cfg->image_size;
    gd_net *net = gd_net_new(m, B, 0, err, sizeof err);
    if (!net) gd_cli_die("%s", err);
    float *x0 = malloc(sizeof(float) * (size_t)B * per), *noise = malloc(sizeof(float) * (size_t)B * per);
    int32_t idx[100], lab[100];
    int kk[100];
    char buf[512];
    snprintf(buf, sizeof buf, "%s", ts);
    /* the whole list checked before the first (slow) timestep */
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) (void)gd_cli_long("--eval", tok, 0, diff->K - 1);
    snprintf(buf, sizeof buf, "%s", ts);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int t = (int)gd_cli_long("--eval", tok, 0, diff->K - 1);
        long correct = 0, total = 0;
        for (int b0 = 0; b0 < test.n; b0 += B) {
            /* the last batch is padded by repeating its last image; only real images count */
            int valid = test.n - b0 < B ? test.n - b0 : B;
            for (int i = 0; i < B; i++) idx[i] = b0 + (i < valid ? i : valid - 1), kk[i] = t;
            gd_dataset_batch(&test, idx, B, x0, lab);
            gd_rng r;
            step_rng(&r, 12345, b0, 3);
            gd_rng_randn(&r, noise, (int64_t)B * per);
            gd_q_sample(diff, B, per, x0, noise, kk, gd_net_x(net));
            for (int i = 0; i < B; i++) gd_net_t(net)[i] = (float)t;
            gd_net_forward(net, NULL, 0);
            const float *z = gd_net_output(net)->data;
            for (int i = 0; i < valid; i++) {
                int best = 0;
                for (int c = 1; c < cfg->num_classes; c++) best = z[i * cfg->num_classes + c] > z[i * cfg->num_classes + best] ? c : best;
                correct += best == lab[i];
                total++;
            }
        }
        printf("{\"t\": %d, \"accuracy\": %.4f, \"images\": %ld}\n", t, (double)correct / total, total);
        fflush(stdout);
    }
    free(x0);
    free(noise);
    gd_net_free(net);
    gd_diffusion_free(diff);
    gd_model_free(m);
    gd_dataset_free(&test);
    return 0;
}

/* The run config, parsed and checked whole before anything is created (gd_train_config_parse). */
static void load_run(const char *path, gd_train_config *rc) {
    size_t len;
    char *text = read_file(path, &len), err[600];
    if (gd_train_config_parse(text, len, rc, err, sizeof err)) gd_cli_die("%s: %s", path, err);
    free(text);
}

/* Called only once every input has been checked, so a refused run leaves no folder behind. */
static void make_out_dir(const char *out) {
    if (mkdir(out, 0777) && errno != EEXIST) gd_cli_die("cannot create output directory %s: %s", out, strerror(errno));
    struct stat st;
    if (stat(out, &st) || !S_ISDIR(st.st_mode)) gd_cli_die("cannot create output directory %s (not a directory)", out);
}

static void load_data(const gd_train_config *rc, gd_dataset *data) {
    const gd_config *cfg = &rc->model;
    char err[600];
    if (rc->data_folder) {
        if (gd_dataset_load_folder(rc->data_folder, cfg->in_channels, cfg->image_size, data, err, sizeof err)) gd_cli_die("%s", err);
    } else {
        if (gd_dataset_load_idx(rc->data_images, rc->data_labels, data, err, sizeof err)) gd_cli_die("%s", err);
    }
    const char *where = rc->data_folder ? rc->data_folder : rc->data_images;
    if (data->n < 1) gd_cli_die("%s: no images", where);
    if (data->h != cfg->image_size || data->w != cfg->image_size || data->c != cfg->in_channels)
        gd_cli_die("data are %dx%dx%d images, the model takes %dx%dx%d", data->c, data->h, data->w, cfg->in_channels, cfg->image_size,
            cfg->image_size);
    if (rc->diffusion && !cfg->class_cond) return;
    /* labels index the class embedding and the logits: each must be a class of the model */
    for (int i = 0; i < data->n; i++)
        if (data->labels[i] < 0 || data->labels[i] >= cfg->num_classes)
            gd_cli_die("%s: image %d has %s (the model's classes are 0..%d)", where, i,
                       data->labels[i] < 0 ? "no class label" : "a label past the model's classes", cfg->num_classes - 1);
}

/* A training run: its settings, the network and optimizer, and the per-step buffers. */
typedef struct {
    const gd_config *cfg;
    const char *mjson;
    const gd_dataset *data;
    int diffusion, B, noised, hflip;
    int64_t steps, ckpt_every, log_every, snap_every;
    uint64_t seed;
    double label_dropout, ect;
    gd_net *net;
    gd_diffusion *diff;
    gd_optim *opt;
    gd_param_ref *refs;
    float *x0, *noise, *dout;
    int32_t *idx, *labels;
    int *kk;
    gd_loss_terms *terms;
    int64_t perm_epoch;
    double mse_acc, vb_acc; /* diffusion loss terms since the last log line */
    double loss_acc;
    int64_t acc_n; /* steps since the last log line */
} trainer;

static void read_settings(trainer *tr, const gd_train_config *rc) {
    tr->B = rc->batch_size;
    tr->steps = rc->steps;
    tr->seed = rc->seed;
    tr->label_dropout = rc->label_dropout;
    tr->ect = rc->ect_lambda;
    tr->noised = rc->noised;
    /* random horizontal flips: Fashion-MNIST's classes are mirror-invariant, and the clean-image
       evaluator otherwise overfits within a few epochs */
    tr->hflip = rc->hflip;
    tr->ckpt_every = rc->checkpoint_every, tr->log_every = rc->log_every, tr->snap_every = rc->snapshot_every;
}

/* AdamW (and EMA) over every parameter of the net, set by the run's "optim" object. */
static gd_optim *new_optimizer(trainer *tr, const gd_train_config *rc) {
    const gd_optim_config ocfg = rc->optim;
    int np = gd_net_param_count(tr->net);
    gd_param_ref *refs = tr->refs = calloc((size_t)np, sizeof *refs);
    for (int i = 0; i < np; i++) {
        const char *name;
        float *w;
        const float *g;
        int64_t cnt;
        gd_net_param(tr->net, i, &name, &w, &g, &cnt);
        refs[i] = (gd_param_ref){name, w, g, cnt, gd_net_param_tensor(tr->net, i)->ndim > 1};
    }
    gd_optim *o = gd_optim_new(&ocfg, refs, np);
    if (!o) gd_cli_die("cannot set up the optimizer (out of memory?)"); /* the settings were checked */
    return o;
}

static void alloc_buffers(trainer *tr) {
    const int B = tr->B, per = tr->cfg->in_channels * tr->cfg->image_size * tr->cfg->image_size;
    tr->x0 = malloc(sizeof(float) * (size_t)B * per), tr->noise = malloc(sizeof(float) * (size_t)B * per);
    tr->idx = malloc(sizeof(int32_t) * (size_t)tr->data->n), tr->labels = malloc(sizeof(int32_t) * (size_t)B);
    tr->kk = malloc(sizeof(int) * (size_t)B);
    tr->dout = malloc(sizeof(float) * (size_t)gd_nelements(gd_net_output(tr->net)));
    tr->terms = malloc(sizeof *tr->terms * (size_t)B);
    tr->perm_epoch = -1;
    if (!tr->x0 || !tr->noise || !tr->idx || !tr->labels || !tr->kk || !tr->dout || !tr->terms)
        gd_cli_die("out of memory for batches of %d", B);
}

static void free_trainer(trainer *tr) {
    free(tr->x0);
    free(tr->noise);
    free(tr->idx);
    free(tr->labels);
    free(tr->kk);
    free(tr->dout);
    free(tr->terms);
    free(tr->refs);
    gd_optim_free(tr->opt);
    gd_net_free(tr->net);
    gd_diffusion_free(tr->diff);
}

/* Batch s of the run takes positions [s*B, s*B+B) of the concatenated epoch permutations. */
static void fill_batch(trainer *tr, int64_t s) {
    const gd_dataset *data = tr->data;
    const int B = tr->B;
    int32_t bidx[4096];
    for (int i = 0; i < B && i < 4096; i++) {
        int64_t pos = s * (int64_t)B + i, ep = pos / data->n;
        if (ep != tr->perm_epoch) {
            gd_dataset_permutation(data->n, tr->seed, (uint64_t)ep, tr->idx);
            tr->perm_epoch = ep;
        }
        bidx[i] = tr->idx[pos % data->n];
    }
    gd_dataset_batch(data, bidx, B, tr->x0, tr->labels);
}

/* Noises batch s (timesteps, noise, label dropout and flips drawn from (seed, s)), runs the
 * forward pass and returns the loss, its gradient left in tr->dout. */
static double forward_loss(trainer *tr, int64_t s) {
    const gd_config *cfg = tr->cfg;
    gd_net *net = tr->net;
    gd_diffusion *diff = tr->diff;
    const int B = tr->B, per = cfg->in_channels * cfg->image_size * cfg->image_size;
    float *x0 = tr->x0, *noise = tr->noise;
    int *kk = tr->kk;
    const gd_tensor *outt = gd_net_output(net);
    gd_rng r;
    step_rng(&r, tr->seed, s, 1);
    int64_t tt[4096];
    gd_rng_randint(&r, diff->K, tt, B);
    for (int i = 0; i < B; i++) kk[i] = (int)tt[i];
    double loss;
    if (tr->diffusion) {
        gd_rng_randn(&r, noise, (int64_t)B * per);
        gd_q_sample(diff, B, per, x0, noise, kk, gd_net_x(net));
        for (int i = 0; i < B; i++) gd_net_t(net)[i] = (float)diff->timestep_map[kk[i]];
        if (gd_net_y(net)) {
            for (int i = 0; i < B; i++) {
                uint32_t u = gd_rng_u32(&r);
                gd_net_y(net)[i] = (double)u / 4294967296.0 < tr->label_dropout ? cfg->num_classes : tr->labels[i];
            }
        }
        gd_net_forward(net, NULL, 0);
        loss = gd_hybrid_loss(diff, B, cfg->in_channels, cfg->image_size * cfg->image_size, cfg->learn_sigma,
                              outt->data, x0, gd_net_x(net), noise, kk, tr->terms, tr->dout);
        for (int i = 0; i < B; i++) tr->mse_acc += tr->terms[i].mse / B, tr->vb_acc += tr->terms[i].vb / B;
    } else {
        if (tr->noised) {
            gd_rng_randn(&r, noise, (int64_t)B * per);
            gd_q_sample(diff, B, per, x0, noise, kk, gd_net_x(net));
        } else {
            memcpy(gd_net_x(net), x0, sizeof(float) * (size_t)B * per);
            for (int i = 0; i < B; i++) kk[i] = 0;
        }
        if (tr->hflip) flip_some(&r, gd_net_x(net), B, cfg->in_channels * cfg->image_size, cfg->image_size);
        for (int i = 0; i < B; i++) gd_net_t(net)[i] = tr->noised ? (float)diff->timestep_map[kk[i]] : 0.0f;
        gd_net_forward(net, NULL, 0);
        loss = gd_ect_loss(B, cfg->num_classes, outt->data, tr->labels, tr->ect, NULL, tr->dout);
    }
    return loss;
}

/* Loads the checkpoint into the optimizer and checks what it read back against the run: the step
 * within the run's steps (batch positions are step * batch_size), and the open log window. */
static int64_t resume_from(trainer *tr, const char *ckpt, int quiet) {
    char err[600];
    if (gd_optim_load(tr->opt, ckpt, err, sizeof err)) gd_cli_die("%s", err);
    int64_t step = gd_optim_step_count(tr->opt);
    if (step > tr->steps)
        gd_cli_die("%s: the checkpoint is at step %lld, past the run's \"steps\" (%lld)", ckpt, (long long)step,
                   (long long)tr->steps);
    gd_st_file *f = gd_st_open(ckpt, err, sizeof err);
    if (!f) gd_cli_die("%s", err);
    const char *meta = gd_st_metadata(f, "train_log");
    gd_train_log_state st;
    if (meta && gd_train_log_state_parse(meta, step, &st, err, sizeof err)) gd_cli_die("%s: %s", ckpt, err);
    /* a window longer than log_every comes from an edited config: the next line starts afresh */
    if (meta && st.n < tr->log_every) tr->acc_n = st.n, tr->loss_acc = st.loss, tr->mse_acc = st.mse, tr->vb_acc = st.vb;
    gd_st_close(f);
    if (!quiet) fprintf(stderr, "ddpm-train: resumed %s at step %lld\n", ckpt, (long long)step);
    return step;
}

/* One line of log.jsonl that an interrupted run wrote for a step at most `step`. */
static int log_line_upto(const char *line, size_t len, int64_t step) {
    if (!len || line[len - 1] != '\n') return 0; /* cut short by a kill */
    cJSON *o = cJSON_Parse(line);
    const cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
    int keep = cJSON_IsNumber(s) && s->valuedouble >= 1 && s->valuedouble <= (double)step;
    cJSON_Delete(o);
    return keep;
}

/* On resume, log.jsonl keeps only the lines up to the checkpoint's step: the interrupted run
 * logged the later ones, and they are about to be logged again. Rewritten atomically. */
static void trim_log(const char *log_path, int64_t step) {
    FILE *f = fopen(log_path, "rb");
    if (!f) {
        if (errno == ENOENT) return;
        gd_cli_die("%s: %s", log_path, strerror(errno));
    }
    char err[600], *tmp, *line = NULL;
    FILE *w = gd_atomic_open(log_path, &tmp, err, sizeof err);
    if (!w) gd_cli_die("%s", err);
    size_t cap = 0;
    ssize_t n;
    long dropped = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (log_line_upto(line, (size_t)n, step)) fwrite(line, 1, (size_t)n, w);
        else dropped++;
    }
    int ok = !ferror(f);
    free(line);
    fclose(f);
    if (!ok) {
        gd_atomic_commit(w, tmp, log_path, 0, NULL, 0);
        gd_cli_die("%s: read error", log_path);
    }
    if (!dropped) { /* nothing to take back: the log stays as it is */
        gd_atomic_commit(w, tmp, log_path, 0, NULL, 0);
        return;
    }
    if (gd_atomic_commit(w, tmp, log_path, 1, err, sizeof err)) gd_cli_die("%s", err);
}

/* The checkpoint (with the open log window, when there is one) and the exported model. */
static void save_checkpoint(const trainer *tr, const char *ckpt, const char *model_out) {
    char err[600], state[256];
    const char *log_state = NULL;
    const gd_train_log_state st = {tr->acc_n, tr->loss_acc, tr->mse_acc, tr->vb_acc};
    if (tr->acc_n > 0 && !gd_train_log_state_format(&st, state, sizeof state)) log_state = state;
    if (gd_train_checkpoint_save(tr->opt, ckpt, tr->mjson, log_state, err, sizeof err)) gd_cli_die("%s", err);
    write_model(model_out, tr->opt, tr->net, tr->mjson);
}

/* The EMA weights at this step, kept for a training curve (FID and accuracy against steps). A resumed
 * run rewrites a snapshot it had already made with the same bytes (resume is exact). */
static void snapshot(trainer *tr, const char *out, int64_t step) {
    char dir[PATH_MAX], path[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/snapshots", out);
    make_out_dir(dir);
    snprintf(path, sizeof path, "%s/step_%06lld.safetensors", dir, (long long)step);
    write_model(path, tr->opt, tr->net, tr->mjson);
}

/* Steps from the checkpoint's step (or 0) to the end or --stop-after, logging and checkpointing. */
static void train(trainer *tr, const options *o, const char *out) {
    gd_optim *opt = tr->opt;
    gd_net *net = tr->net;
    const int B = tr->B;
    const int64_t steps = tr->steps;
    char err[600], ckpt[PATH_MAX], model_out[PATH_MAX], log_path[PATH_MAX];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out);
    snprintf(model_out, sizeof model_out, "%s/model.safetensors", out);
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", out);
    alloc_buffers(tr);
    int64_t start = 0;
    if (o->resume && !access(ckpt, F_OK)) start = resume_from(tr, ckpt, o->quiet);
    make_out_dir(out);
    if (o->resume) trim_log(log_path, start);
    FILE *logf = fopen(log_path, o->resume ? "a" : "w");
    if (!logf) gd_cli_die("%s: %s", log_path, strerror(errno));

    double t0 = gd_time_now();
    for (int64_t s = start; s < steps; s++) {
        if (o->stop_after >= 0 && s - start >= o->stop_after) { /* a planned stop: checkpoint where we are */
            save_checkpoint(tr, ckpt, model_out);
            break;
        }
        fill_batch(tr, s);
        double loss = forward_loss(tr, s);
        if (gd_net_backward(net, tr->dout, err, sizeof err)) gd_cli_die("backward: %s", err);
        double gnorm = gd_optim_step(opt);
        tr->loss_acc += loss;
        tr->acc_n++;
        int64_t done = s + 1;
        if (done % tr->log_every == 0 || done == steps) {
            const double acc_n = (double)tr->acc_n;
            double el = gd_time_now() - t0, sps = (double)(done - start) * B / el, eta = (double)(steps - done) * B / sps;
            fprintf(logf, "{\"step\": %lld, \"loss\": %.6f, \"mse\": %.6f, \"vb\": %.6f, \"grad_norm\": %.4f, \"lr\": %.3g, "
                          "\"samples_per_s\": %.2f}\n",
                    (long long)done, tr->loss_acc / acc_n, tr->mse_acc / acc_n, tr->vb_acc / acc_n, gnorm, gd_optim_lr(opt), sps);
            fflush(logf);
            if (!o->quiet)
                fprintf(stderr, "\rstep %lld/%lld  loss %.5f  %.1f samples/s  ETA %.0f min   ", (long long)done,
                        (long long)steps, tr->loss_acc / acc_n, sps, eta / 60);
            tr->loss_acc = tr->mse_acc = tr->vb_acc = 0;
            tr->acc_n = 0;
        }
        if (done % tr->ckpt_every == 0 || done == steps) save_checkpoint(tr, ckpt, model_out);
        if (tr->snap_every > 0 && (done % tr->snap_every == 0 || done == steps)) snapshot(tr, out, done);
    }
    if (start >= steps) /* a finished run: export the model again (e.g. after a config edit) */
        write_model(model_out, opt, net, tr->mjson);
    if (!o->quiet) fprintf(stderr, "\nddpm-train: step %lld; %s, %s\n", (long long)gd_optim_step_count(opt), ckpt, model_out);
    fclose(logf);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* --bench: the run's steps 0..STEPS (step 0 untimed, a warm-up), exactly as train() runs them but
 * without logging or checkpoints; one JSON line on stdout. */
static void bench(trainer *tr, const options *o, const char *run) {
    char err[600];
    alloc_buffers(tr);
    int64_t n = o->bench;
    double *dt = malloc(sizeof(double) * (size_t)n), total = 0;
    if (!dt) gd_cli_die("out of memory");
    for (int64_t s = 0; s <= n; s++) {
        double t0 = gd_time_now();
        fill_batch(tr, s);
        forward_loss(tr, s);
        if (gd_net_backward(tr->net, tr->dout, err, sizeof err)) gd_cli_die("backward: %s", err);
        gd_optim_step(tr->opt);
        if (s > 0) total += dt[s - 1] = gd_time_now() - t0;
    }
    qsort(dt, (size_t)n, sizeof *dt, cmp_double);
    double med = n % 2 ? dt[n / 2] : 0.5 * (dt[n / 2 - 1] + dt[n / 2]);
    int64_t params = 0;
    for (int i = 0; i < gd_net_param_count(tr->net); i++) params += gd_nelements(gd_net_param_tensor(tr->net, i));
    printf("{\"mode\": \"train\", \"config\": ");
    json_string(stdout, run);
    printf(", \"kind\": \"%s\", \"batch\": %d, \"threads\": %d, "
           "\"steps\": %lld, \"params\": %lld, \"median_s\": %.6f, \"mean_s\": %.6f, \"min_s\": %.6f, "
           "\"samples_per_s\": %.2f}\n",
           tr->diffusion ? "diffusion" : "classifier", tr->B, gd_get_threads(), (long long)n, (long long)params, med,
           total / (double)n, dt[0], tr->B / med);
    free(dt);
}

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-train");
    options o = {.stop_after = -1};
    gd_cli_parse(&SPEC, argc, argv, &o, NULL, 0);
    if (!o.run) gd_cli_die("need -c RUN.json (see --help)");
    if (o.bench && (o.resume || o.stop_after >= 0 || o.eval))
        gd_cli_die("--bench times steps and writes nothing: it does not go with --resume, --stop-after or --eval");
    if (o.threads > 0) gd_set_threads(o.threads);
    gd_train_config rc;
    load_run(o.run, &rc);
    if (o.eval) {
        int status = evaluate(&rc, o.eval);
        gd_train_config_free(&rc);
        return status;
    }
    gd_dataset data;
    load_data(&rc, &data);

    trainer tr = {.cfg = &rc.model, .mjson = rc.model_json, .data = &data, .diffusion = rc.diffusion};
    read_settings(&tr, &rc);
    char err[600];
    gd_model *m = gd_model_random(&rc.model, tr.seed + 1);
    tr.diff = gd_diffusion_new(rc.model.noise_schedule, rc.model.diffusion_steps, "", err, sizeof err);
    if (!tr.diff) gd_cli_die("%s", err);
    gd_model_make_trainable(m);
    tr.net = gd_net_new_train(m, tr.B, err, sizeof err);
    if (!tr.net) gd_cli_die("%s", err);
    tr.opt = new_optimizer(&tr, &rc);
    if (o.bench) bench(&tr, &o, o.run);
    else train(&tr, &o, rc.out);

    free_trainer(&tr);
    gd_model_free(m);
    gd_dataset_free(&data);
    gd_train_config_free(&rc);
    return 0;
}
