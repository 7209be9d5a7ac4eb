/* ddpm-quantize: W8A8 post-training quantization of a diffusion model and its classifier
 * (include/gd_quant.h): calibration from the model's own full-precision sampling, int8 weights
 * with their scales written into self-describing safetensors files that ddpm-sample runs on int8
 * GEMMs. */
#include "gd_cli.h"
#include "gd_model.h"
#include "gd_quant.h"
#include "gd_pipeline.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOOL "ddpm-quantize"

typedef struct {
    const char *model, *classifier, *output, *cls_output, *t_mode, *keep;
    int samples, steps, batch, threads, quiet;
    double t_mean, t_std, p;
    int seed;
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-m", "--model", "MODEL.safetensors", GD_CLI_STR, OPT(model), .help = "the diffusion model (default " GD_DEFAULT_MODEL ")"},
    {"-o", "--output", "OUT.safetensors", GD_CLI_STR, OPT(output), .help = "the quantized model (default: MODEL's name with .w8a8 before the extension)"},
    {"-c", "--classifier", "CLS.safetensors", GD_CLI_STR, OPT(classifier), .help = "also quantize this noise-aware classifier, calibrated on the same inputs"},
    {NULL, "--classifier-output", "OUT.safetensors", GD_CLI_STR, OPT(cls_output), .help = "the quantized classifier (default: its name with .w8a8)"},
    {NULL, "--calib-samples", "N", GD_CLI_INT, OPT(samples), .lo = 1, .hi = 1 << 20, .help = "calibration inputs (default 1024, PTQ4DM's)"},
    {NULL, "--calib-steps", "N", GD_CLI_INT, OPT(steps), .lo = 1, .hi = 4000, .help = "DDIM steps of the full-precision chains they come from (default 100)"},
    {NULL, "--calib-t", "normal|uniform", GD_CLI_STR, OPT(t_mode), .help = "each input's loop index (from x_T): PTQ4DM's normal draw N(mean, std) x steps\n(default), or uniform over the steps"},
    {NULL, "--calib-t-mean", "F", GD_CLI_DOUBLE, OPT(t_mean), .lo = -10, .hi = 10, .help = "mean of the normal draw, as a fraction of the steps (default 0.4)"},
    {NULL, "--calib-t-std", "F", GD_CLI_DOUBLE, OPT(t_std), .lo = 0, .hi = 10, .help = "its standard deviation (default 0.4)"},
    {NULL, "--lp", "P", GD_CLI_DOUBLE, OPT(p), .lo = 0.5, .hi = 8, .help = "the L_p error the range searches minimise (default 2.4, PTQ4DM's; 2 = MSE)"},
    {NULL, "--keep-float", "NAME,...", GD_CLI_STR, OPT(keep), .help = "more conv weights to keep in float (the first conv and the output head always are)"},
    {NULL, "--seed", "S", GD_CLI_INT, OPT(seed), .lo = 0, .hi = 2147483647, .help = "calibration noise, indices and labels (default 1)"},
    {"-b", "--batch-size", "N", GD_CLI_INT, OPT(batch), .lo = 1, .hi = 4096, .help = "network batch (default 64; never changes the result)"},
    {"-t", "--threads", "N", GD_CLI_INT, OPT(threads), .lo = 1, .hi = 1024, .help = "worker threads (default: all cores)"},
    {"-q", "--quiet", NULL, GD_CLI_SWITCH, OPT(quiet), .help = "no progress bar and no summary"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = TOOL " [-m MODEL] [-o OUT] [-c CLASSIFIER [--classifier-output OUT]] [--calib-samples N]\n"
             "                     [--calib-steps N] [--calib-t normal|uniform] [--lp P] [--keep-float NAMES] [-q]",
    .about = "Post-training W8A8 quantization (PTQ4DM) with real int8 arithmetic. Calibration inputs are x_t drawn\n"
             "from the model's own full-precision DDIM chains at timestep-aware loop indices; every convolution\n"
             "but the first and the output head gets int8 weights (symmetric, one scale per output channel) and\n"
             "a uint8 input quantizer (one scale and zero point per tensor), each range the least-L_p of 100\n"
             "candidates; attention's qkv and proj_out too. Norms, embeddings, linear layers, the attention\n"
             "products and softmax stay float. ddpm-sample, ddpm-forward and ddpm-bench run the output on VNNI\n"
             "int8 GEMMs with int32 accumulation (a scalar path elsewhere).\n",
    .flags = FLAGS,
    .footer = "Outputs are written under temporary names and renamed at the end: a failed run leaves none.\n"
              "Errors: one line on stderr, exit status 2.\n\n"
              "example:\n"
              "  " TOOL " -c models/fashion_classifier_ect.safetensors\n"
              "  ddpm-sample -m models/fashion_diffusion.w8a8.safetensors --classifier models/fashion_classifier_ect.w8a8.safetensors \\\n"
              "      --sampler ddim --steps 25 --guidance entropy --class sneaker\n",
};

/* a.safetensors -> a.w8a8.safetensors */
static char *default_out(const char *in) {
    size_t n = strlen(in);
    char *o = malloc(n + 16);
    if (!o) gd_cli_die("out of memory");
    const char *dot = strrchr(in, '.'), *slash = strrchr(in, '/');
    if (dot && (!slash || dot > slash)) snprintf(o, n + 16, "%.*s.w8a8%s", (int)(dot - in), in, dot);
    else snprintf(o, n + 16, "%s.w8a8", in);
    return o;
}

static void progress(void *user, const char *stage, int done, int total) {
    static const char *last;
    static double t0;
    if (stage != last) {
        if (last) fprintf(stderr, "\n");
        last = stage;
        t0 = gd_time_now();
    }
    double el = gd_time_now() - t0, eta = done > 0 ? el * (total - done) / done : 0;
    fprintf(stderr, "\r%-18s %6d/%d  %5.1f s  ETA %.0f s ", stage, done, total, el, eta);
}

int main(int argc, char **argv) {
    gd_cli_set_program(TOOL);
    options o = {.samples = 1024, .steps = 100, .batch = 64, .t_mean = 0.4, .t_std = 0.4, .p = 2.4, .seed = 1};
    const char *pos[1];
    if (gd_cli_parse(&SPEC, argc, argv, &o, pos, 1)) gd_cli_die("unexpected argument '%s' (the model is -m)", pos[0]);
    const char *model = o.model ? o.model : GD_DEFAULT_MODEL;
    if (o.cls_output && !o.classifier) gd_cli_die("--classifier-output without --classifier");
    int normal = 1;
    if (o.t_mode && !strcmp(o.t_mode, "uniform")) normal = 0;
    else if (o.t_mode && strcmp(o.t_mode, "normal")) gd_cli_die("--calib-t: invalid choice '%s' (choose from normal, uniform)", o.t_mode);
    const char *out = o.output ? o.output : default_out(model);
    const char *cout = o.classifier ? (o.cls_output ? o.cls_output : default_out(o.classifier)) : NULL;
    gd_cli_input("--model", model);
    gd_cli_input("--classifier", o.classifier);
    const char *out_tmp = gd_cli_output("--output", out);
    const char *cout_tmp = cout ? gd_cli_output("--classifier-output", cout) : NULL;
    gd_cli_check_files();
    if (o.threads) gd_set_threads(o.threads);
    char err[1024];
    gd_model *m = gd_model_load(model, NULL, err, sizeof err);
    if (!m) gd_cli_die("%s", err);
    gd_model *c = NULL;
    if (o.classifier && !(c = gd_model_load(o.classifier, NULL, err, sizeof err))) gd_cli_die("%s", err);
    /* a --keep-float typo fails here, not after minutes of calibration (the library checks again,
     * against the convolutions it saw) */
    for (const char *k = o.keep; k && *k;) {
        const char *e = strchr(k, ',');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(e ? e - k : (long)strlen(k)), k);
        int nd = 0;
        int64_t ne[4];
        int conv = gd_model_weight_f32(m, name, &nd, ne) && nd >= 3; /* conv weights are 3-D or 4-D */
        if (!conv && c) conv = gd_model_weight_f32(c, name, &nd, ne) && nd >= 3;
        if (!conv) {
            const char *also = c ? " or the classifier" : "";
            gd_model_free(c);
            gd_model_free(m);
            gd_cli_die("--keep-float: '%s' is not a convolution weight of the model%s", name, also);
        }
        k = e ? e + 1 : NULL;
    }
    gd_quant_opts q;
    gd_quant_defaults(&q);
    q.samples = o.samples, q.steps = o.steps, q.t_normal = normal, q.t_mean = o.t_mean, q.t_std = o.t_std, q.p = o.p;
    q.seed = (uint64_t)o.seed, q.batch = o.batch, q.keep = o.keep;
    if (!o.quiet && isatty(2)) q.progress = progress;
    gd_quant_report r;
    if (gd_quantize_models(m, c, &q, &r, err, sizeof err)) gd_cli_die("%s", err);
    if (q.progress) fprintf(stderr, "\n");
    if (gd_model_save(m, out_tmp, err, sizeof err)) gd_cli_die("%s", err);
    if (c && gd_model_save(c, cout_tmp, err, sizeof err)) gd_cli_die("%s", err);
    gd_cli_commit();
    if (!o.quiet) {
        printf("%s -> %s: %d convs int8, %d float; %d calibration inputs (%s t, %d DDIM steps), %.1f s calibration, %.1f s search\n",
               model, out, r.unet_layers, r.unet_float, r.calib_inputs, normal ? "normal" : "uniform", o.steps, r.t_calib_s,
               r.t_search_s);
        if (c) printf("%s -> %s: %d convs int8, %d float\n", o.classifier, cout, r.cls_layers, r.cls_float);
    }
    gd_model_free(c);
    gd_model_free(m);
    return 0;
}
