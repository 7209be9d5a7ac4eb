/* ddpm-bench: times a network with random weights, the C side of scripts/bench.sh. */
#include "gd_cli.h"
#include "gd_inception.h"
#include "gd_model.h"
#include "gd_quant.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const char *config, *mode, *save, *precision;
    int batch, threads, repeat;
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-c", "--config", "CONFIG.json", GD_CLI_STR, OPT(config), .help = "the network's config (configs/*.json)"},
    {NULL, "--mode", "unet|classifier|inception", GD_CLI_STR, OPT(mode),
     .help = "check that the config is this kind of network; inception: the FID\n"
             "Inception-v3 forward on 299x299 inputs (random weights, no -c)"},
    {NULL, "--batch", "N", GD_CLI_INT, OPT(batch), .lo = 1, .hi = INT_MAX, .help = "batch size (default 1)"},
    {"-t", "--threads", "THREADS", GD_CLI_INT, OPT(threads), .lo = 0, .hi = 4096,
     .help = "worker threads (default 0: the OpenMP / OpenBLAS default)"},
    {NULL, "--precision", "fp32|bf16|w8a8|w8a8+bf16", GD_CLI_STR, OPT(precision), .help = "the convolutions' arithmetic: fp32 (default), bf16 (AVX512-BF16\nGEMMs, fp32 accumulation; the rest stays fp32), w8a8 (the random weights\nquantized as ddpm-quantize does, without calibration: int8 GEMMs) or\nw8a8+bf16 (int8 convs, the attention products and float convs in bf16)"},
    {NULL, "--repeat", "R", GD_CLI_INT, OPT(repeat), .lo = 1, .hi = 1000, .help = "timed runs after one warm-up (default 3)"},
    {NULL, "--save-weights", "PATH", GD_CLI_STR, OPT(save), .help = "also write the random weights, config embedded"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = "ddpm-bench -c CONFIG.json [--mode unet|classifier] [--batch N] [-t THREADS] [--repeat R]\n"
             "                  [--save-weights PATH]\n"
             "       ddpm-bench --mode inception [--batch N] [-t THREADS] [--repeat R]",
    .about = "Times the network's forward pass (unet) or forward + input gradient (classifier) with random\n"
             "weights; prints one JSON line with the median seconds and effective GFLOP/s.\n",
    .flags = FLAGS,
    .footer = "example: ddpm-bench -c configs/adm64.json --batch 1 -t 2 --repeat 3\n",
};

static double median(double *runs, int repeat) {
    double sorted[1000];
    memcpy(sorted, runs, sizeof(double) * (size_t)repeat);
    qsort(sorted, (size_t)repeat, sizeof(double), cmp);
    return repeat % 2 ? sorted[repeat / 2] : 0.5 * (sorted[repeat / 2 - 1] + sorted[repeat / 2]);
}

/* The FID Inception's forward on batch x 3 x 299 x 299 (the network alone, as the PyTorch side). */
static int bench_inception(int batch, int repeat) {
    char err[512];
    gd_inception *m = gd_inception_random(batch, err, sizeof err);
    if (!m) gd_cli_die("%s", err);
    size_t nx = (size_t)batch * 3 * GD_INCEPTION_SIZE * GD_INCEPTION_SIZE;
    float *x = malloc(sizeof(float) * nx), *pool = malloc(sizeof(float) * GD_INCEPTION_POOL * (size_t)batch);
    double *runs = malloc(sizeof(double) * (size_t)repeat);
    if (!x || !pool || !runs) gd_cli_die("out of memory");
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < nx; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
    }
    for (int r = -1; r < repeat; r++) {
        double t0 = gd_time_now();
        if (gd_inception_forward(m, x, batch, pool, NULL, NULL, err, sizeof err)) gd_cli_die("%s", err);
        if (r >= 0) runs[r] = gd_time_now() - t0;
    }
    double med = median(runs, repeat), flops = gd_inception_flops(m);
    printf("{\"median_s\": %.6f, \"runs\": [", med);
    for (int r = 0; r < repeat; r++) printf("%s%.6f", r ? ", " : "", runs[r]);
    printf("], \"batch\": %d, \"threads\": %d, \"mode\": \"inception\", \"precision\": \"%s\", \"forward_gflop\": %.3f, \"gflops\": %.2f, "
           "\"images_per_s\": %.3f, \"arena_mib\": %.1f}\n",
           batch, gd_get_threads(), gd_get_precision() == GD_PRECISION_BF16 ? "bf16" : "fp32", flops * 1e-9, flops * 1e-9 / med, batch / med, gd_inception_arena_bytes(m) / 1048576.0);
    free(x), free(pool), free(runs);
    gd_inception_free(m);
    return 0;
}

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-bench");
    options o = {.batch = 1, .repeat = 3};
    gd_cli_parse(&SPEC, argc, argv, &o, NULL, 0);
    if (o.mode && !strcmp(o.mode, "inception")) {
        if (o.config || o.save) gd_cli_die("--mode inception takes no -c / --save-weights");
        if (o.threads > 0) gd_set_threads(o.threads);
        gd_cli_precision(o.precision);
        return bench_inception(o.batch, o.repeat);
    }
    if (!o.config) gd_cli_die("missing -c CONFIG.json (see --help)");
    gd_cli_input("--config", o.config);
    const char *cfg_path = o.config, *mode = o.mode, *save = o.save ? gd_cli_output("--save-weights", o.save) : NULL;
    gd_cli_check_files();
    const int batch = o.batch, threads = o.threads, repeat = o.repeat;
    if (threads > 0) gd_set_threads(threads);
    /* w8a8+bf16: the int8 convolutions, and what stays float (attention products, the first and
     * last convs, the classifier's gradient) on the bf16 kernel, as ddpm-sample --precision bf16
     * runs a ddpm-quantize file */
    const int w8a8 = o.precision && (!strcmp(o.precision, "w8a8") || !strcmp(o.precision, "w8a8+bf16"));
    const int w8a8_bf16 = w8a8 && o.precision[4] == '+';
    if (o.precision && *o.precision && !w8a8 && strcmp(o.precision, "fp32") && strcmp(o.precision, "bf16"))
        gd_cli_die("--precision: '%s' is not fp32, bf16, w8a8 or w8a8+bf16", o.precision);
    gd_cli_precision(w8a8 ? NULL : o.precision);
    char err[512];
    gd_config cfg;
    if (gd_config_load(cfg_path, &cfg, err, sizeof err)) gd_cli_die("%s", err);
    int cls = cfg.kind == GD_NET_CLASSIFIER;
    /* what is held is freed before each gd_cli_die: LeakSanitizer counts what only a register
     * still points to as lost, and its exit status 1 would replace our 2 */
    if (mode && strcmp(mode, cls ? "classifier" : "unet")) {
        gd_config_free(&cfg);
        gd_cli_die("--mode %s does not match the config's model", mode);
    }
    gd_model *m = gd_model_random(&cfg, 1234);
    int qlayers = 0;
    if (m && w8a8) { /* the weights exist after a first build; the int8 ones replace them before the timed one */
        gd_net *n1 = gd_net_new(m, 1, 0, err, sizeof err);
        int rc = n1 ? 0 : -1;
        gd_net_free(n1);
        if (rc || gd_quantize_quick(m, &qlayers, err, sizeof err)) {
            gd_model_free(m);
            gd_config_free(&cfg);
            gd_cli_die("%s", err);
        }
        if (w8a8_bf16) gd_cli_precision("bf16"); /* after the calibration, which runs fp32 */
    }
    gd_net *net = m ? gd_net_new(m, batch, cls, err, sizeof err) : NULL;
    if (!net) {
        if (!m) snprintf(err, sizeof err, "%s: out of memory for the random weights", cfg_path);
        gd_model_free(m);
        gd_config_free(&cfg);
        gd_cli_die("%s", err);
    }
    int64_t nx = (int64_t)batch * cfg.in_channels * cfg.image_size * cfg.image_size;
    float *x = gd_net_x(net), *grad = malloc(sizeof(float) * (size_t)nx);
    if (!grad) gd_cli_die("out of memory");
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < nx; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
    }
    for (int i = 0; i < batch; i++) {
        gd_net_t(net)[i] = (float)(500 + i);
        if (gd_net_y(net)) gd_net_y(net)[i] = i % cfg.num_classes;
    }
    if (gd_net_low_res(net))
        memset(gd_net_low_res(net), 0, sizeof(float) * (size_t)batch * cfg.in_channels * cfg.small_size * cfg.small_size);
    if (save && gd_model_save(m, save, err, sizeof err)) gd_cli_die("%s", err);
    double *runs = malloc(sizeof(double) * (size_t)repeat);
    if (!runs) gd_cli_die("out of memory");
    for (int r = -1; r < repeat; r++) { /* r = -1 is the warm-up */
        double t0 = gd_time_now();
        int rc = cls ? gd_net_input_grad(net, grad, err, sizeof err) : gd_net_forward(net, err, sizeof err);
        if (rc) gd_cli_die("%s", err);
        if (r >= 0) runs[r] = gd_time_now() - t0;
    }
    gd_cli_commit(); /* the weights, once the timing ran */
    double med = median(runs, repeat);
    double flops = gd_graph_flops(gd_net_graph(net));
    printf("{\"median_s\": %.6f, \"runs\": [", med);
    for (int r = 0; r < repeat; r++) printf("%s%.6f", r ? ", " : "", runs[r]);
    printf("], \"batch\": %d, \"threads\": %d, \"mode\": \"%s\", \"precision\": \"%s\", \"forward_gflop\": %.3f, \"gflops\": %.2f, "
           "\"params\": %lld, \"arena_mib\": %.1f}\n",
           batch, gd_get_threads(), cls ? "classifier" : "unet", w8a8_bf16 ? "w8a8+bf16" : w8a8 ? "w8a8" : gd_get_precision() == GD_PRECISION_BF16 ? "bf16" : "fp32", flops * 1e-9, flops * 1e-9 / med * (cls ? 2 : 1),
           (long long)gd_model_param_count(m), gd_graph_arena_bytes(gd_net_graph(net)) / 1048576.0);
    free(runs);
    free(grad);
    gd_net_free(net);
    gd_model_free(m);
    gd_config_free(&cfg);
    return 0;
}
