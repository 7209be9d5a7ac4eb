/* ddpm-convert: guided-diffusion / ED-DPM .pt checkpoints to safetensors files with their config
 * (and ImageNet class names) embedded, without Python: the same files, byte for byte, as
 * scripts/convert_checkpoint.py writes (gd_convert_checkpoint, include/gd_model.h). */
#include "gd_cli.h"
#include "gd_model.h"
#include "gd_safetensors.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOOL "ddpm-convert"
#define MAX_INPUTS 256
#define OUT_MAX (PATH_MAX + 1100)

typedef struct {
    const char *output, *dir, *dtype, *config, *flags, *class_names, *configs_dir;
    int no_class_names, list, quiet, verbose;
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {"-o", "--output", "OUT.safetensors", GD_CLI_STR, OPT(output), .help = "the output (one checkpoint only)"},
    {"-d", "--dir", "DIR", GD_CLI_STR, OPT(dir), .help = "output directory (default: models/ here, else beside the executable:\nwhere ddpm-sample --preset looks)"},
    {NULL, "--dtype", "f32|f16|bf16", GD_CLI_STR, OPT(dtype), .help = "storage dtype (default f32, as released; f16/bf16 halve the file and\nthe memory the weights take while sampling)"},
    {NULL, "--config", "CONFIG.json", GD_CLI_STR, OPT(config), .help = "model config (docs/config.md) instead of the released one"},
    {NULL, "--flags", "\"FLAGS\"", GD_CLI_STR, OPT(flags), .help = "the model's guided-diffusion flags, e.g. \"$MODEL_FLAGS\" from its README\n(a classifier's: \"--image_size 256 $CLASSIFIER_FLAGS\")"},
    {NULL, "--class-names", "FILE", GD_CLI_STR, OPT(class_names), .help = "file with one class name per line to embed"},
    {NULL, "--no-class-names", NULL, GD_CLI_SWITCH, OPT(no_class_names), .help = "embed no class names"},
    {NULL, "--configs-dir", "DIR", GD_CLI_STR, OPT(configs_dir), .help = "where checkpoints.json and imagenet_classes.txt are (default: configs/\nhere, else beside the executable)"},
    {NULL, "--list", NULL, GD_CLI_SWITCH, OPT(list), .help = "list the released checkpoints this tool knows"},
    {"-q", "--quiet", NULL, GD_CLI_SWITCH, OPT(quiet), .help = "no summary line"},
    {"-v", "--verbose", NULL, GD_CLI_SWITCH, OPT(verbose), .help = "the config embedded and, when it was inferred, the rule for each thing\nthe tensor shapes do not tell"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = TOOL " CKPT.pt [CKPT.pt ...] [-d DIR | -o OUT.safetensors] [--dtype f32|f16|bf16]\n"
             "                    [--config FILE | --flags \"FLAGS\"] [--class-names FILE | --no-class-names] [-q] [-v]\n"
             "       " TOOL " --list",
    .about = "Converts guided-diffusion / ED-DPM .pt checkpoints (torch.save of a state dict; fp16-trained ones\n"
             "are views into two flat storages) to safetensors with the model config embedded, so the file is all\n"
             "the tools need. The config comes from, in order: --config or --flags; the released checkpoint of\n"
             "the same file name (configs/checkpoints.json, --list); the released architecture with exactly the\n"
             "checkpoint's tensors; inference from the tensor names and shapes (-v says which rule settled what\n"
             "the shapes do not tell). The checkpoint must hold exactly that config's tensors, or nothing is\n"
             "written. 1000-class models get configs/imagenet_classes.txt as class names. Needs no Python; the\n"
             "output is byte for byte scripts/convert_checkpoint.py's. (ddpm-sample and ddpm-forward also read\n"
             "a .pt directly.)\n",
    .flags = FLAGS,
    .footer = "Output: OUT.safetensors (a temporary name, then renamed), by default DIR/<checkpoint stem>.safetensors.\n"
              "Errors: one line on stderr, exit status 2, nothing written for that checkpoint.\n\n"
              "example:\n"
              "  " TOOL " ~/Downloads/256x256_diffusion.pt ~/Downloads/256x256_classifier.pt --dtype f16\n",
};

/* models/ here, else beside the executable (build/ddpm-convert -> ./models). */
static const char *default_dir(void) {
    static char d[PATH_MAX + 16];
    struct stat st;
    if (!stat("models", &st) && S_ISDIR(st.st_mode)) return "models";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return "models";
    exe[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(exe, '/');
        if (s) *s = 0;
    }
    snprintf(d, sizeof d, "%s/models", exe);
    return d;
}

static void list_released(const char *configs_dir) {
    char err[600];
    if (gd_released_list(configs_dir, stdout, err, sizeof err)) gd_cli_die("%s", err);
}

static gd_st_dtype parse_dtype(const char *s) {
    if (!s || !strcmp(s, "f32")) return GD_ST_F32;
    if (!strcmp(s, "f16")) return GD_ST_F16;
    if (!strcmp(s, "bf16")) return GD_ST_BF16;
    gd_cli_die("--dtype: invalid choice '%s' (choose from f32, f16, bf16)", s);
}

/* splitext(basename(p))[0] */
static void stem_of(const char *p, char *buf, size_t n) {
    const char *b = strrchr(p, '/');
    b = b ? b + 1 : p;
    const char *s = b;
    while (*s == '.') s++;
    const char *dot = strrchr(s, '.');
    snprintf(buf, n, "%.*s", dot ? (int)(dot - b) : (int)strlen(b), b);
}

/* The directory an output goes to must exist; an output must not be its input. */
static void check_job(const char *in, const char *out) {
    char d[OUT_MAX], cwd[PATH_MAX];
    size_t l = strlen(out);
    if (l >= sizeof d) gd_cli_die("%s: output path too long", in);
    memcpy(d, out, l + 1);
    char *slash = strrchr(d, '/');
    if (slash) *slash = 0;
    if (!slash) snprintf(d, sizeof d, ".");
    else if (!d[0]) snprintf(d, sizeof d, "/");
    struct stat st, si, so;
    if (stat(d, &st) || !S_ISDIR(st.st_mode)) {
        if (d[0] != '/' && getcwd(cwd, sizeof cwd)) gd_cli_die("output directory %s/%s does not exist", cwd, d);
        gd_cli_die("output directory %s does not exist", d);
    }
    if (!strcmp(in, out) || (!stat(in, &si) && !stat(out, &so) && si.st_dev == so.st_dev && si.st_ino == so.st_ino))
        gd_cli_die("%s: output would overwrite the input", in);
}

/* The files conversions read: outputs may be none of them (gd_cli_check_files). */
static void register_inputs(const options *o, const char **pos, int n) {
    char label[PATH_MAX + 4], p[PATH_MAX + 32];
    for (int i = 0; i < n; i++) {
        snprintf(label, sizeof label, "'%s'", pos[i]);
        gd_cli_input(label, pos[i]);
    }
    gd_cli_input("--config", o->config);
    gd_cli_input("--class-names", o->class_names);
    const char *cd = o->configs_dir ? o->configs_dir : "configs";
    snprintf(p, sizeof p, "%s/checkpoints.json", cd);
    gd_cli_input("--configs-dir's checkpoints.json", p);
    snprintf(p, sizeof p, "%s/imagenet_classes.txt", cd);
    gd_cli_input("--configs-dir's imagenet_classes.txt", p);
}

static void report(const options *o, const char *in, const char *out, const gd_convert_info *info) {
    if (!o->quiet) {
        printf("%s -> %s: %s %lldx%lld, %d tensors, %lld parameters, %s, config from %s", in, out, info->model, info->image_size,
               info->image_size, info->tensors, info->params, o->dtype ? o->dtype : "f32", info->source);
        if (info->class_names) printf(", %d class names", info->class_names);
        printf("\n");
    }
    if (o->verbose) fprintf(stderr, "%s", info->notes);
}

int main(int argc, char **argv) {
    gd_cli_set_program(TOOL);
    options o = {0};
    const char *pos[MAX_INPUTS];
    int n = gd_cli_parse(&SPEC, argc, argv, &o, pos, MAX_INPUTS);
    if (o.list) {
        list_released(o.configs_dir);
        return 0;
    }
    if (!n) gd_cli_die("no checkpoint given (see --help)");
    if (o.output && n > 1) gd_cli_die("-o names one output; use -d DIR for several checkpoints");
    if (o.config && o.flags) gd_cli_die("--config and --flags both given");
    gd_convert_opts co = {o.config, o.flags, o.configs_dir, o.class_names, o.no_class_names, parse_dtype(o.dtype)};
    const char *dir = o.dir ? o.dir : default_dir();
    static char outs[MAX_INPUTS][OUT_MAX];
    static const char *staged[MAX_INPUTS];
    static gd_convert_info infos[MAX_INPUTS];
    register_inputs(&o, pos, n);
    for (int i = 0; i < n; i++) {
        char stem[1024], label[PATH_MAX + 16];
        stem_of(pos[i], stem, sizeof stem);
        if (o.output) snprintf(outs[i], sizeof outs[i], "%s", o.output);
        else if (snprintf(outs[i], sizeof outs[i], "%.*s/%s.safetensors", PATH_MAX, dir, stem) >= (int)sizeof outs[i])
            gd_cli_die("%s: output path too long", pos[i]);
        check_job(pos[i], outs[i]);
        snprintf(label, sizeof label, "of '%s'", pos[i]);
        staged[i] = gd_cli_output(label, outs[i]);
    }
    gd_cli_check_files();
    for (int i = 0; i < n; i++) { /* all converted before any is renamed: a failure leaves none */
        char err[2048];
        if (gd_convert_checkpoint(pos[i], staged[i], &co, &infos[i], err, sizeof err)) gd_cli_die("%s", err);
    }
    gd_cli_commit();
    for (int i = 0; i < n; i++) report(&o, pos[i], outs[i], &infos[i]);
    return 0;
}
