/* ddpm-bench: times a network with random weights, the C side of scripts/bench.sh. */
#include "gd_cli.h"
#include "gd_model.h"

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
    const char *config, *mode, *save;
    int batch, threads, repeat;
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-c", "--config", "CONFIG.json", GD_CLI_STR, OPT(config), .help = "the network's config (configs/*.json)"},
    {NULL, "--mode", "unet|classifier", GD_CLI_STR, OPT(mode), .help = "check that the config is this kind of network"},
    {NULL, "--batch", "N", GD_CLI_INT, OPT(batch), .lo = 1, .hi = INT_MAX, .help = "batch size (default 1)"},
    {"-t", "--threads", "THREADS", GD_CLI_INT, OPT(threads), .lo = 0, .hi = 4096,
     .help = "worker threads (default 0: the OpenMP / OpenBLAS default)"},
    {NULL, "--repeat", "R", GD_CLI_INT, OPT(repeat), .lo = 1, .hi = 1000, .help = "timed runs after one warm-up (default 3)"},
    {NULL, "--save-weights", "PATH", GD_CLI_STR, OPT(save), .help = "also write the random weights, config embedded"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = "ddpm-bench -c CONFIG.json [--mode unet|classifier] [--batch N] [-t THREADS] [--repeat R]\n"
             "                  [--save-weights PATH]",
    .about = "Times the network's forward pass (unet) or forward + input gradient (classifier) with random\n"
             "weights; prints one JSON line with the median seconds and effective GFLOP/s.\n",
    .flags = FLAGS,
    .footer = "example: ddpm-bench -c configs/adm64.json --batch 1 -t 2 --repeat 3\n",
};

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-bench");
    options o = {.batch = 1, .repeat = 3};
    gd_cli_parse(&SPEC, argc, argv, &o, NULL, 0);
    if (!o.config) gd_cli_die("missing -c CONFIG.json (see --help)");
    gd_cli_input("--config", o.config);
    const char *cfg_path = o.config, *mode = o.mode, *save = o.save ? gd_cli_output("--save-weights", o.save) : NULL;
    gd_cli_check_files();
    const int batch = o.batch, threads = o.threads, repeat = o.repeat;
    if (threads > 0) gd_set_threads(threads);
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
    double sorted[1000];
    memcpy(sorted, runs, sizeof(double) * (size_t)repeat);
    qsort(sorted, (size_t)repeat, sizeof(double), cmp);
    double med = repeat % 2 ? sorted[repeat / 2] : 0.5 * (sorted[repeat / 2 - 1] + sorted[repeat / 2]);
    double flops = gd_graph_flops(gd_net_graph(net));
    printf("{\"median_s\": %.6f, \"runs\": [", med);
    for (int r = 0; r < repeat; r++) printf("%s%.6f", r ? ", " : "", runs[r]);
    printf("], \"batch\": %d, \"threads\": %d, \"mode\": \"%s\", \"forward_gflop\": %.3f, \"gflops\": %.2f, "
           "\"params\": %lld, \"arena_mib\": %.1f}\n",
           batch, gd_get_threads(), cls ? "classifier" : "unet", flops * 1e-9, flops * 1e-9 / med * (cls ? 2 : 1),
           (long long)gd_model_param_count(m), gd_graph_arena_bytes(gd_net_graph(net)) / 1048576.0);
    free(runs);
    free(grad);
    gd_net_free(net);
    gd_model_free(m);
    gd_config_free(&cfg);
    return 0;
}
