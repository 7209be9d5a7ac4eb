/* ddpm-forward: runs one ADM network (U-Net, super-resolution U-Net or noisy-image classifier)
 * on inputs read from a safetensors file and writes its outputs to another.
 *
 *   ddpm-forward -m MODEL.safetensors [-c CONFIG.json] -i INPUTS.safetensors -o OUT.safetensors
 *                [-t N] [-q] [-v]
 *
 * Inputs (by name; other tensors in the file are ignored):
 *   x        F32 [N,C,H,W]                 required
 *   t        I64, I32 or F32 [N]           required; original timesteps, 0 <= t < 100000
 *   y        I64 or I32 [N]                class-conditional U-Nets: required; unconditional: rejected;
 *                                          classifiers: optional, adds the input gradient `grad`
 *   low_res  F32 [N,C,small,small]         super-resolution models only, required there
 * Outputs: `out` F32 [N,out_channels,H,W] (U-Nets), or `logits` F32 [N,num_classes] plus, when y is
 * given, `grad` F32 [N,C,H,W] = d/dx log_softmax(logits)[n, y_n]. Metadata: config, tool.
 *
 * Every error is one line "ddpm-forward: ..." on stderr, exit status 2, and no output file. */
#include "gd_cli.h"
#include "gd_model.h"
#include "gd_safetensors.h"
#include "gd_tensor.h"

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

#define TOOL "ddpm-forward"
#define T_MAX 100000.0

static const char ABOUT[] = "Runs one guided-diffusion (ADM) network on a batch of inputs and writes its outputs.\n";

static const char FOOTER[] =
    "Errors print one line on stderr and exit with status 2; nothing is written.\n"
    "\n"
    "example:\n"
    "  " TOOL " -m tests/fixtures/unet_a.safetensors -i tests/fixtures/unet_a.io.safetensors \\\n"
    "      -o /tmp/unet_a.out.safetensors -t 4 -v\n";

/* ---- errors --------------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "[2,3,16,16]" */
static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ---- command line --------------------------------------------------------------------------- */

typedef struct {
    const char *model, *config, *flags, *inputs, *output, *precision;
    int threads; /* 0 = default */
    int quiet, verbose;
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-m", "--model", "PATH", GD_CLI_STR, OPT(model), .help = "weights (safetensors or a guided-diffusion .pt, state-dict names)"},
    {"-c", "--config", "PATH", GD_CLI_STR, OPT(config),
     .help = "model config JSON (default: the model file's __metadata__.config; for a\n"
     ".pt: the released checkpoint of its name, else inferred from its shapes)"},
    {NULL, "--flags", "\"FLAGS\"", GD_CLI_STR, OPT(flags), .help = "the model's guided-diffusion flags instead of a config (\"$MODEL_FLAGS\")"},
    {"-i", "--inputs", "PATH", GD_CLI_STR, OPT(inputs),
     .help = "inputs, read by name (other tensors are ignored):\n"
     "  x        F32 [N,C,H,W]            always\n"
     "  t        I64/I32/F32 [N]          always; original timesteps in [0, 100000)\n"
     "  y        I64/I32 [N]              class-conditional U-Nets (required);\n"
     "                                    classifiers (optional: adds grad)\n"
     "  low_res  F32 [N,C,small,small]    super-resolution models"},
    {"-o", "--output", "PATH", GD_CLI_STR, OPT(output),
     .help = "outputs (written atomically):\n"
     "  U-Nets:      out    F32 [N,out_channels,H,W]\n"
     "  classifiers: logits F32 [N,num_classes]; with y also\n"
     "               grad   F32 [N,C,H,W] = d/dx log_softmax(logits)[n, y_n]"},
    {"-t", "--threads", "N", GD_CLI_INT, OPT(threads), .lo = 1, .hi = 4096,
     .help = "worker threads (default: the OpenMP / OpenBLAS default)"},
    {NULL, "--precision", "fp32|bf16", GD_CLI_STR, OPT(precision), .help = "the convolutions' arithmetic: fp32 (default) or bf16 (AVX512-BF16\nGEMMs, fp32 accumulation; the rest stays fp32)"},
    {"-q", "--quiet", NULL, GD_CLI_SWITCH, OPT(quiet), .help = "no summary line on stdout"},
    {"-v", "--verbose", NULL, GD_CLI_SWITCH, OPT(verbose), .help = "build info, model summary and timings on stderr"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = TOOL " -m MODEL.safetensors [-c CONFIG.json] -i INPUTS.safetensors -o OUT.safetensors\n"
             "                    [-t N] [-q] [-v]",
    .about = ABOUT, .flags = FLAGS, .footer = FOOTER,
    .strict = 1, /* a repeated or empty flag is more likely a typo in a script than meant */
};

static void parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    gd_cli_parse(&SPEC, argc, argv, o, NULL, 0);
    if (!o->model) gd_cli_die("missing -m MODEL.safetensors (see --help)");
    if (!o->inputs) gd_cli_die("missing -i INPUTS.safetensors (see --help)");
    if (!o->output) gd_cli_die("missing -o OUT.safetensors (see --help)");
}

/* Refuses an output path whose directory does not exist, that names a directory, or that is one
 * of the files being read (checked before any work so a bad -o fails fast); returns the name the
 * output is written under until gd_cli_commit. */
static const char *check_output_path(const options *o) {
    const char *path = o->output;
    size_t len = strlen(path);
    if (path[len - 1] == '/') gd_cli_die("%s: output path names a directory", path);
    char *dir = strdup(path);
    if (!dir) gd_cli_die("out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        int e = errno;
        free(dir);
        gd_cli_die("%s: output directory does not exist or is not accessible: %s", path, strerror(e));
    }
    if (!S_ISDIR(st.st_mode)) {
        free(dir);
        gd_cli_die("%s: output directory is not a directory", path);
    }
    free(dir);
    struct stat so;
    if (!stat(path, &so) && S_ISDIR(so.st_mode)) gd_cli_die("%s: output path is a directory", path);
    gd_cli_input("--model", o->model);
    gd_cli_input("--inputs", o->inputs);
    gd_cli_input("--config", o->config);
    const char *staged = gd_cli_output("--output", path);
    gd_cli_check_files();
    return staged;
}

/* ---- inputs --------------------------------------------------------------------------------- */

static const char *kind_name(gd_net_kind k) {
    return k == GD_NET_UNET ? "unet" : k == GD_NET_SUPERRES ? "superres" : "classifier";
}

/* Checks an F32 image tensor's dtype and shape [N,C,S,S] and that its values are finite. */
static void check_image(const char *path, const gd_st_tensor *t, const char *name, int64_t N, int64_t C, int64_t S) {
    char got[160], want[160];
    int64_t ws[4] = {N, C, S, S};
    if (t->dtype != GD_ST_F32) gd_cli_die("%s: '%s' has dtype %s; want F32", path, name, gd_st_dtype_name(t->dtype));
    int ok = t->ndim == 4;
    for (int i = 0; ok && i < 4; i++)
        ok = t->shape[i] == ws[i];
    if (!ok)
        gd_cli_die("%s: '%s' has shape %s; the model needs %s", path, name, shape_str(got, sizeof got, t->ndim, t->shape),
            shape_str(want, sizeof want, 4, ws));
    for (int64_t i = 0; i < t->numel; i++) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        if (!isfinite(v)) gd_cli_die("%s: '%s' holds a non-finite value at flat index %lld", path, name, (long long)i);
    }
}

/* Reads element i of an integer or float tensor as a double (data may be unaligned). */
static double element(const gd_st_tensor *t, int64_t i) {
    const char *p = (const char *)t->data;
    switch (t->dtype) {
    case GD_ST_I64: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (double)v;
    }
    case GD_ST_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return (double)v;
    }
    case GD_ST_F32: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return (double)v;
    }
    default:
        return NAN;
    }
}

static void check_vector(const char *path, const gd_st_tensor *t, const char *name, int64_t N) {
    char got[160];
    if (t->ndim != 1 || t->shape[0] != N)
        gd_cli_die("%s: '%s' has shape %s; want [%lld] (one per sample of x)", path, name,
            shape_str(got, sizeof got, t->ndim, t->shape), (long long)N);
}

/* The inputs of one run: x decides the batch, everything else is checked against it and the config. */
typedef struct {
    const gd_st_tensor *x, *t, *y, *low_res;
    int64_t N;
} inputs;

static void find_x_t(const char *ip, gd_st_file *io, const gd_config *cfg, inputs *in) {
    const gd_st_tensor *x = gd_st_find(io, "x");
    if (!x)
        gd_cli_die("%s: no tensor 'x' (the noisy images, F32 [N,%d,%d,%d])", ip, cfg->in_channels, cfg->image_size,
            cfg->image_size);
    if (x->ndim != 4) {
        char got[160];
        gd_cli_die("%s: 'x' has shape %s; want [N,%d,%d,%d]", ip, shape_str(got, sizeof got, x->ndim, x->shape),
            cfg->in_channels, cfg->image_size, cfg->image_size);
    }
    int64_t N = x->shape[0];
    if (N < 1) gd_cli_die("%s: 'x' has an empty batch", ip);
    if (N > INT_MAX) gd_cli_die("%s: 'x' batch of %lld is too large", ip, (long long)N);
    check_image(ip, x, "x", N, cfg->in_channels, cfg->image_size);

    const gd_st_tensor *t = gd_st_find(io, "t");
    if (!t) gd_cli_die("%s: no tensor 't' (timesteps, [%lld])", ip, (long long)N);
    if (t->dtype != GD_ST_I64 && t->dtype != GD_ST_I32 && t->dtype != GD_ST_F32)
        gd_cli_die("%s: 't' has dtype %s; want I64, I32 or F32", ip, gd_st_dtype_name(t->dtype));
    check_vector(ip, t, "t", N);
    for (int64_t i = 0; i < N; i++) {
        double v = element(t, i);
        if (!isfinite(v) || v < 0 || v >= T_MAX) gd_cli_die("%s: t[%lld] = %g is outside [0, %g)", ip, (long long)i, v, T_MAX);
    }
    in->x = x, in->t = t, in->N = N;
}

static void find_y_low_res(const char *ip, gd_st_file *io, const gd_config *cfg, inputs *in) {
    const int cls = cfg->kind == GD_NET_CLASSIFIER, sr = cfg->kind == GD_NET_SUPERRES;
    const int64_t N = in->N;
    const gd_st_tensor *y = gd_st_find(io, "y");
    int want_y = cls ? y != NULL : cfg->class_cond;
    if (y && !want_y) gd_cli_die("%s: 'y' given, but the model is not class-conditional (class_cond false)", ip);
    if (!y && want_y) gd_cli_die("%s: no tensor 'y' (class labels, [%lld]); the model is class-conditional", ip, (long long)N);
    int64_t n_labels = cfg->num_classes + (!cls && cfg->null_class ? 1 : 0);
    if (y) {
        if (y->dtype != GD_ST_I64 && y->dtype != GD_ST_I32)
            gd_cli_die("%s: 'y' has dtype %s; want I64 or I32", ip, gd_st_dtype_name(y->dtype));
        check_vector(ip, y, "y", N);
        for (int64_t i = 0; i < N; i++) {
            double v = element(y, i);
            if (v < 0 || v >= (double)n_labels)
                gd_cli_die("%s: label y[%lld] = %.0f is outside [0, %lld)%s", ip, (long long)i, v, (long long)n_labels,
                    !cls && cfg->null_class ? " (num_classes plus the null class)" : "");
        }
    }

    const gd_st_tensor *lr = gd_st_find(io, "low_res");
    if (lr && !sr) gd_cli_die("%s: 'low_res' given, but the model is a %s, not a superres model", ip, kind_name(cfg->kind));
    if (!lr && sr)
        gd_cli_die("%s: no tensor 'low_res' (F32 [%lld,%d,%d,%d]); the model is a superres model", ip, (long long)N,
            cfg->in_channels, cfg->small_size, cfg->small_size);
    if (lr) check_image(ip, lr, "low_res", N, cfg->in_channels, cfg->small_size);
    in->y = y, in->low_res = lr;
}

static void fill_inputs(gd_net *net, const inputs *in) {
    memcpy(gd_net_x(net), in->x->data, in->x->nbytes);
    float *tn = gd_net_t(net);
    for (int64_t i = 0; i < in->N; i++)
        tn[i] = (float)element(in->t, i);
    if (in->y) {
        int32_t *yn = gd_net_y(net);
        if (!yn) gd_cli_die("internal error: the network has no label input");
        for (int64_t i = 0; i < in->N; i++)
            yn[i] = (int32_t)element(in->y, i);
    }
    if (in->low_res) {
        float *ln = gd_net_low_res(net);
        if (!ln) gd_cli_die("internal error: the network has no low_res input");
        memcpy(ln, in->low_res->data, in->low_res->nbytes);
    }
}

static void print_model_summary(const char *path, const gd_model *m, gd_net *net, int64_t N) {
    const gd_config *cfg = gd_model_config(m);
    const int cls = cfg->kind == GD_NET_CLASSIFIER;
    const gd_graph *g = gd_net_graph(net);
    fprintf(stderr,
            TOOL ": model %s: %s, image %dx%d, in_channels %d, model_channels %d, %s %d, %lld params, %d tensors\n",
            path, kind_name(cfg->kind), cfg->image_size, cfg->image_size, cfg->in_channels, cfg->model_channels,
            cls ? "classes" : "out_channels", cls ? cfg->num_classes : gd_config_out_channels(cfg),
            (long long)gd_model_param_count(m), gd_model_tensor_count(m));
    fprintf(stderr, TOOL ": batch %lld; graph %d nodes, arena %.1f MiB, %.3f GFLOP per forward; threads %d\n",
            (long long)N, gd_graph_n_nodes(g), (double)gd_graph_arena_bytes(g) / (1 << 20),
            gd_graph_flops(g) * 1e-9, gd_get_threads());
}

/* Runs the network: the gradient pass when grad is given, the forward alone otherwise or with -v
 * (a classifier's forward then is also timed on its own). Times are -1 for a pass not run. */
static void run_net(gd_net *net, float *grad, int verbose, double *t_fwd, double *t_grad) {
    *t_fwd = *t_grad = -1;
    double t0 = now_s();
    char err[512];
    if (grad) {
        if (gd_net_input_grad(net, grad, err, sizeof err)) gd_cli_die("gradient pass failed: %s", err);
        *t_grad = now_s() - t0;
    }
    if (!grad || verbose) {
        double t1 = now_s();
        if (gd_net_forward(net, err, sizeof err)) gd_cli_die("forward pass failed: %s", err);
        *t_fwd = now_s() - t1;
    }
}

/* Writes out/logits (and grad) with the config and tool as metadata; returns the seconds taken. */
static double write_outputs(const char *path, const gd_config *cfg, gd_net *net, const inputs *in, const float *grad) {
    const gd_tensor *out = gd_net_output(net);
    char err[1024];
    gd_st_writer *w = gd_st_writer_new();
    if (!w) gd_cli_die("out of memory");
    int bad = gd_st_writer_add(w, cfg->kind == GD_NET_CLASSIFIER ? "logits" : "out", GD_ST_F32, out->ndim, out->ne, out->data);
    if (grad) bad |= gd_st_writer_add(w, "grad", GD_ST_F32, 4, in->x->shape, grad);
    bad |= gd_st_writer_meta(w, "config", cfg->json ? cfg->json : "{}");
    bad |= gd_st_writer_meta(w, "tool", TOOL);
    if (bad) gd_cli_die("%s: could not collect the outputs (out of memory?)", path);
    double t0 = now_s();
    if (gd_st_writer_save(w, path, err, sizeof err)) gd_cli_die("%s", err);
    gd_st_writer_free(w);
    return now_s() - t0;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    gd_cli_set_program(TOOL);
    options o;
    parse_args(argc, argv, &o);
    const char *staged = check_output_path(&o);
    if (o.threads) gd_set_threads(o.threads);
    gd_cli_precision(o.precision);
    if (o.verbose) fprintf(stderr, TOOL ": %s\n" TOOL ": kernels: %s\n", gd_build_info(), gd_precision_kernels());

    char err[1024];
    double t0 = now_s();
    gd_load_opts lo = {.config_path = o.config, .flags = o.flags};
    if (o.config && o.flags) gd_cli_die("-c and --flags both given");
    gd_model *m = gd_model_load_opts(o.model, &lo, err, sizeof err);
    if (!m) gd_cli_die("%s", err);
    for (const char *l = gd_model_config_notes(m); o.verbose && *l;) { /* where the config came from, one line each */
        size_t n = strcspn(l, "\n");
        fprintf(stderr, TOOL ": %.*s\n", (int)n, l);
        l += n + (l[n] == '\n');
    }
    const gd_config *cfg = gd_model_config(m);
    const int cls = cfg->kind == GD_NET_CLASSIFIER;
    double t_load = now_s() - t0;

    gd_st_file *io = gd_st_open(o.inputs, err, sizeof err);
    if (!io) gd_cli_die("%s", err);
    inputs in;
    find_x_t(o.inputs, io, cfg, &in);
    find_y_low_res(o.inputs, io, cfg, &in);
    const int64_t N = in.N;

    /* Build and plan the network, then fill its inputs. */
    t0 = now_s();
    int with_grad = cls && in.y;
    gd_net *net = gd_net_new(m, (int)N, with_grad, err, sizeof err);
    if (!net) gd_cli_die("%s: %s", o.model, err);
    double t_plan = now_s() - t0;
    fill_inputs(net, &in);
    if (o.verbose) print_model_summary(o.model, m, net, N);

    float *grad = NULL;
    if (with_grad) {
        grad = malloc(sizeof(float) * (size_t)in.x->numel);
        if (!grad) gd_cli_die("out of memory for the gradient (%lld floats)", (long long)in.x->numel);
    }
    double t_fwd, t_grad; /* forward alone; forward + backward */
    run_net(net, grad, o.verbose, &t_fwd, &t_grad);
    double t_compute = with_grad ? t_grad : t_fwd;
    double t_save = write_outputs(staged, cfg, net, &in, grad);
    gd_cli_commit();

    if (o.verbose) {
        fprintf(stderr, TOOL ": timings: load %.3f s, plan %.3f s, forward %.3f s", t_load, t_plan, t_fwd);
        if (t_grad >= 0)
            fprintf(stderr, ", backward %.3f s (gradient pass incl. forward %.3f s, run first)",
                    t_grad > t_fwd ? t_grad - t_fwd : 0.0, t_grad);
        fprintf(stderr, ", write %.3f s\n", t_save);
    }
    if (!o.quiet) {
        const gd_tensor *out = gd_net_output(net);
        char s1[160], s2[160];
        printf("%s: %s F32 %s", o.output, cls ? "logits" : "out", shape_str(s1, sizeof s1, out->ndim, out->ne));
        if (grad) printf(", grad F32 %s", shape_str(s2, sizeof s2, 4, in.x->shape));
        printf(" (%s, batch %lld, %.3f s)\n", kind_name(cfg->kind), (long long)N, t_compute);
    }

    free(grad);
    gd_net_free(net);
    gd_st_close(io);
    gd_model_free(m);
    return 0;
}
