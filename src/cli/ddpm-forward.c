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

static const char USAGE[] =
    "usage: " TOOL " -m MODEL.safetensors [-c CONFIG.json] -i INPUTS.safetensors -o OUT.safetensors\n"
    "                    [-t N] [-q] [-v]\n"
    "\n"
    "Runs one guided-diffusion (ADM) network on a batch of inputs and writes its outputs.\n"
    "\n"
    "  -m, --model PATH     weights (safetensors, guided-diffusion state-dict names)\n"
    "  -c, --config PATH    model config JSON (default: the model file's __metadata__.config)\n"
    "  -i, --inputs PATH    inputs, read by name (other tensors are ignored):\n"
    "                         x        F32 [N,C,H,W]            always\n"
    "                         t        I64/I32/F32 [N]          always; original timesteps in [0, 100000)\n"
    "                         y        I64/I32 [N]              class-conditional U-Nets (required);\n"
    "                                                           classifiers (optional: adds grad)\n"
    "                         low_res  F32 [N,C,small,small]    super-resolution models\n"
    "  -o, --output PATH    outputs (written atomically):\n"
    "                         U-Nets:      out    F32 [N,out_channels,H,W]\n"
    "                         classifiers: logits F32 [N,num_classes]; with y also\n"
    "                                      grad   F32 [N,C,H,W] = d/dx log_softmax(logits)[n, y_n]\n"
    "  -t, --threads N      worker threads (default: the OpenMP / OpenBLAS default)\n"
    "  -q, --quiet          no summary line on stdout\n"
    "  -v, --verbose        build info, model summary and timings on stderr\n"
    "  -h, --help           this help\n"
    "\n"
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
    const char *model, *config, *inputs, *output;
    int threads; /* 0 = default */
    int quiet, verbose;
} options;

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void parse_args(int argc, char **argv, options *o) {
    static const struct {
        char s;
        const char *l;
        int has_arg;
    } flags[] = {
        {'m', "model", 1},   {'c', "config", 1}, {'i', "inputs", 1},  {'o', "output", 1},
        {'t', "threads", 1}, {'q', "quiet", 0},  {'v', "verbose", 0}, {'h', "help", 0},
    };
    const int nflags = (int)(sizeof flags / sizeof *flags);
    int seen[sizeof flags / sizeof *flags] = {0};
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        int f = -1;
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            for (int k = 0; k < nflags; k++)
                if (strlen(flags[k].l) == len && !strncmp(a + 2, flags[k].l, len)) f = k;
            if (f < 0) gd_cli_die("unknown option '%.200s' (see --help)", a);
            if (eq) {
                if (!flags[f].has_arg) gd_cli_die("option '--%s' takes no value", flags[f].l);
                val = eq + 1;
            }
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (int k = 0; k < nflags; k++)
                if (flags[k].s == a[1]) f = k;
            if (f < 0) gd_cli_die("unknown option '%.200s' (see --help)", a);
        } else if (a[0] == '-' && a[1] && a[1] != '-') {
            gd_cli_die("unknown option '%.200s' (give each option separately, e.g. '-t 4'; see --help)", a);
        } else {
            gd_cli_die("unexpected argument '%.200s' (see --help)", a);
        }
        if (flags[f].s == 'h') {
            fputs(USAGE, stdout);
            exit(0);
        }
        if (flags[f].has_arg && !val) {
            if (i + 1 >= argc) gd_cli_die("option '%s' needs a value", a);
            val = argv[++i];
        }
        if (seen[f]++) gd_cli_die("option '--%s' given more than once", flags[f].l);
        if (flags[f].has_arg && !*val) gd_cli_die("option '--%s' has an empty value", flags[f].l);
        long n;
        switch (flags[f].s) {
        case 'm':
            o->model = val;
            break;
        case 'c':
            o->config = val;
            break;
        case 'i':
            o->inputs = val;
            break;
        case 'o':
            o->output = val;
            break;
        case 't':
            if (parse_int(val, 1, 4096, &n)) gd_cli_die("--threads wants an integer from 1 to 4096, got '%.200s'", val);
            o->threads = (int)n;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'v':
            o->verbose = 1;
            break;
        }
    }
    if (!o->model) gd_cli_die("missing -m MODEL.safetensors (see --help)");
    if (!o->inputs) gd_cli_die("missing -i INPUTS.safetensors (see --help)");
    if (!o->output) gd_cli_die("missing -o OUT.safetensors (see --help)");
}

/* Refuses an output path whose directory does not exist, that names a directory, or that is one
 * of the files being read (checked before any work so a bad -o fails fast). */
static void check_output_path(const options *o) {
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
    if (stat(path, &so) != 0) return; /* a new file */
    if (S_ISDIR(so.st_mode)) gd_cli_die("%s: output path is a directory", path);
    const char *reads[] = {o->model, o->inputs, o->config};
    for (int k = 0; k < 3; k++) {
        struct stat sr;
        if (reads[k] && stat(reads[k], &sr) == 0 && sr.st_dev == so.st_dev && sr.st_ino == so.st_ino)
            gd_cli_die("%s: output would overwrite the input file '%s'", path, reads[k]);
    }
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

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    gd_cli_set_program(TOOL);
    options o;
    parse_args(argc, argv, &o);
    check_output_path(&o);
    if (o.threads) gd_set_threads(o.threads);
    if (o.verbose) fprintf(stderr, TOOL ": %s\n", gd_build_info());

    char err[1024];
    double t0 = now_s();
    gd_model *m = gd_model_load(o.model, o.config, err, sizeof err);
    if (!m) gd_cli_die("%s", err);
    const gd_config *cfg = gd_model_config(m);
    const int cls = cfg->kind == GD_NET_CLASSIFIER, sr = cfg->kind == GD_NET_SUPERRES;
    double t_load = now_s() - t0;

    gd_st_file *io = gd_st_open(o.inputs, err, sizeof err);
    if (!io) gd_cli_die("%s", err);
    const char *ip = o.inputs;

    /* x decides the batch; everything else is checked against it and the config. */
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

    /* Build and plan the network, then fill its inputs. */
    t0 = now_s();
    int with_grad = cls && y;
    gd_net *net = gd_net_new(m, (int)N, with_grad, err, sizeof err);
    if (!net) gd_cli_die("%s: %s", o.model, err);
    double t_plan = now_s() - t0;

    memcpy(gd_net_x(net), x->data, x->nbytes);
    float *tn = gd_net_t(net);
    for (int64_t i = 0; i < N; i++)
        tn[i] = (float)element(t, i);
    if (y) {
        int32_t *yn = gd_net_y(net);
        if (!yn) gd_cli_die("internal error: the network has no label input");
        for (int64_t i = 0; i < N; i++)
            yn[i] = (int32_t)element(y, i);
    }
    if (lr) {
        float *ln = gd_net_low_res(net);
        if (!ln) gd_cli_die("internal error: the network has no low_res input");
        memcpy(ln, lr->data, lr->nbytes);
    }

    if (o.verbose) {
        const gd_graph *g = gd_net_graph(net);
        fprintf(stderr,
                TOOL ": model %s: %s, image %dx%d, in_channels %d, model_channels %d, %s %d, %lld params, %d tensors\n",
                o.model, kind_name(cfg->kind), cfg->image_size, cfg->image_size, cfg->in_channels, cfg->model_channels,
                cls ? "classes" : "out_channels", cls ? cfg->num_classes : gd_config_out_channels(cfg),
                (long long)gd_model_param_count(m), gd_model_tensor_count(m));
        fprintf(stderr, TOOL ": batch %lld; graph %d nodes, arena %.1f MiB, %.3f GFLOP per forward; threads %d\n",
                (long long)N, gd_graph_n_nodes(g), (double)gd_graph_arena_bytes(g) / (1 << 20),
                gd_graph_flops(g) * 1e-9, gd_get_threads());
    }

    /* Run. */
    const gd_tensor *out = gd_net_output(net);
    float *grad = NULL;
    double t_fwd = -1, t_grad = -1; /* forward alone; forward + backward */
    t0 = now_s();
    if (with_grad) {
        grad = malloc(sizeof(float) * (size_t)x->numel);
        if (!grad) gd_cli_die("out of memory for the gradient (%lld floats)", (long long)x->numel);
        if (gd_net_input_grad(net, grad)) gd_cli_die("gradient pass failed: %s", gd_last_error());
        t_grad = now_s() - t0;
    }
    if (!with_grad || o.verbose) { /* with -v a classifier's forward is also timed on its own */
        double t1 = now_s();
        if (gd_net_forward(net)) gd_cli_die("forward pass failed: %s", gd_last_error());
        t_fwd = now_s() - t1;
    }
    double t_compute = with_grad ? t_grad : t_fwd;

    /* Write. */
    gd_st_writer *w = gd_st_writer_new();
    if (!w) gd_cli_die("out of memory");
    const char *out_name = cls ? "logits" : "out";
    int bad = gd_st_writer_add(w, out_name, GD_ST_F32, out->ndim, out->ne, out->data);
    if (grad) bad |= gd_st_writer_add(w, "grad", GD_ST_F32, 4, x->shape, grad);
    bad |= gd_st_writer_meta(w, "config", cfg->json ? cfg->json : "{}");
    bad |= gd_st_writer_meta(w, "tool", TOOL);
    if (bad) gd_cli_die("%s: could not collect the outputs (out of memory?)", o.output);
    t0 = now_s();
    if (gd_st_writer_save(w, o.output, err, sizeof err)) gd_cli_die("%s", err);
    double t_save = now_s() - t0;

    if (o.verbose) {
        fprintf(stderr, TOOL ": timings: load %.3f s, plan %.3f s, forward %.3f s", t_load, t_plan, t_fwd);
        if (t_grad >= 0)
            fprintf(stderr, ", backward %.3f s (gradient pass incl. forward %.3f s, run first)",
                    t_grad > t_fwd ? t_grad - t_fwd : 0.0, t_grad);
        fprintf(stderr, ", write %.3f s\n", t_save);
    }
    if (!o.quiet) {
        char s1[160], s2[160];
        printf("%s: %s F32 %s", o.output, out_name, shape_str(s1, sizeof s1, out->ndim, out->ne));
        if (grad) printf(", grad F32 %s", shape_str(s2, sizeof s2, 4, x->shape));
        printf(" (%s, batch %lld, %.3f s)\n", kind_name(cfg->kind), (long long)N, t_compute);
    }

    gd_st_writer_free(w);
    free(grad);
    gd_net_free(net);
    gd_st_close(io);
    gd_model_free(m);
    return 0;
}
