/* ddpm-sample: DDPM/DDIM sampling with classifier, entropy-aware (EDS) and classifier-free
 * guidance; presets for the released guided-diffusion / ED-DPM checkpoints; the upsampling
 * cascade (a base model, then a super-resolution model conditioned on its samples, as
 * guided-diffusion's super_res_sample.py); writes a PNG grid (parameters in a tEXt chunk and a
 * JSON sidecar), optional per-sample PNGs and a guided-diffusion compatible .npz. */
#include "gd_cli.h"
#include "gd_guidance.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_sample.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "models/fashion_diffusion.safetensors"
#define DEFAULT_CLASSIFIER "models/fashion_classifier_ce.safetensors"
#define MAX_CLASSIFIERS 8
#define MAX_LABELS 4096
/* the upsampler's noise for sample i comes from seed S+i xor this, a stream apart from the base's */
#define UPSAMPLE_STREAM 0x7570736d706cull

typedef struct {
    const char *model, *model_config, *classifier_config, *out, *npz, *save_each, *classes, *respacing;
    const char *classifiers[MAX_CLASSIFIERS];
    int t_lo[MAX_CLASSIFIERS], t_hi[MAX_CLASSIFIERS];
    int n_classifiers;
    int num_samples, batch_size, steps, threads, grid_cols, quiet, verbose, ddim, rng_torch, clip;
    int use_classifier, use_entropy, use_cfg, uncond;
    int eds_lo, eds_hi;
    double eta, scale, cfg_scale;
    unsigned long long seed;
    int seed_given;
    long long first; /* index of the first sample (sharded runs): seeds, class cycling and names follow it */
    /* presets and the cascade */
    const char *preset, *models_dir, *upsampler, *upsampler_config, *base_npz, *save_base, *up_respacing;
    int up_steps, list_presets;
    /* which settings the command line gave (a preset fills in the others) */
    int given_n, given_sampler, given_steps, given_guidance, given_scale;
} opts;

static const char *prog = "ddpm-sample";

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddpm-sample [options]\n"
            "Samples images from an ADM diffusion model (guided-diffusion architecture), optionally guided,\n"
            "optionally upsampled by a super-resolution model.\n\n"
            "model\n"
            "      --preset NAME         a released checkpoint with its recommended settings (configs/presets/;\n"
            "                            --list-presets shows them); options given beside it override them\n"
            "      --models-dir DIR      where --preset finds converted checkpoints (default models/)\n"
            "  -m, --model PATH          diffusion model (safetensors; default " DEFAULT_MODEL ")\n"
            "      --model-config PATH   its config, when not embedded in the file\n"
            "      --classifier PATH[@LO:HI]  noise-aware classifier for guidance (default " DEFAULT_CLASSIFIER ");\n"
            "                            repeat with @LO:HI original-timestep ranges for multiple experts\n"
            "      --classifier-config PATH  classifier config, when not embedded\n"
            "upsampling (guided-diffusion's super_res_sample.py: DDPM, unguided)\n"
            "      --upsampler PATH      super-resolution model run on every sample of the base model\n"
            "      --upsampler-config PATH  its config, when not embedded\n"
            "      --base-npz PATH       upsample these images (arr_0 NHWC uint8, labels arr_1) instead of\n"
            "                            sampling a base model; with -m SUPERRES.safetensors or a cascade preset\n"
            "      --upsample-respacing STR  the upsampler's timestep_respacing (default 250)\n"
            "      --upsample-steps N    the same as --upsample-respacing N\n"
            "      --save-base PATH      also write the base model's samples (.npz) of a cascade\n"
            "sampling\n"
            "      --class C             class id or name (when the model's or classifier's config has\n"
            "                            class_names), a comma list (cycled), or 'random' (default)\n"
            "  -n, --num-samples N       number of images (default 16; with --base-npz, its image count)\n"
            "  -b, --batch-size N        images per network call (default 16); does not change the images\n"
            "      --steps N             sampling steps (default 250 for ddpm, 25 for ddim)\n"
            "      --respacing STR       guided-diffusion timestep_respacing (N, ddimN, or section counts);\n"
            "                            overrides --steps\n"
            "      --sampler ddpm|ddim   ancestral DDPM (default) or DDIM\n"
            "      --eta X               DDIM eta (default 0)\n"
            "      --no-clip             do not clip the predicted x0 to [-1, 1]\n"
            "      --uncond              run a null-class model unconditionally: the model sees the null\n"
            "                            label, --class only sets the guidance target and stored labels\n"
            "guidance\n"
            "      --guidance LIST       none (default), classifier, entropy, cfg, or a comma list such as\n"
            "                            cfg,entropy. classifier: ADM classifier guidance with --scale;\n"
            "                            entropy: the same, rescaled per sample by log(C)/H(p(y|x_t)) (EDS);\n"
            "                            cfg: classifier-free guidance with --cfg-scale (needs a null class)\n"
            "      --scale S             classifier scale (default 1)\n"
            "      --cfg-scale W         eps = eps(null) + W (eps(y) - eps(null)) (default 3; 1 = off)\n"
            "      --eds-t-range LO:HI   apply the entropy rescaling only for original t in [LO, HI)\n"
            "randomness\n"
            "      --seed S              base seed (default: from the clock; printed). Sample i uses seed S+i.\n"
            "      --first-index I       number the samples from I (seed S+I.., class list position, file names);\n"
            "                            scripts/sample_batch.sh uses it to split one run into shards\n"
            "      --rng per-sample|torch  per-sample generators (default), or one PyTorch generator for the\n"
            "                            batch exactly as guided-diffusion draws (torch.manual_seed(S));\n"
            "                            an upsampler always draws per sample\n"
            "output\n"
            "  -o, --output PATH         PNG grid (default samples.png; parameters in a tEXt chunk and PATH.json)\n"
            "      --grid-cols N         grid columns (default: about square)\n"
            "      --save-each DIR       also one PNG per sample in DIR\n"
            "      --npz PATH            guided-diffusion .npz: arr_0 uint8 NHWC, arr_1 int64 labels\n"
            "  -t, --threads N           worker threads (default: all cores)\n"
            "  -q, --quiet               no progress bar or summary\n"
            "  -v, --verbose             build info, model summary and timings\n"
            "      --list-presets        the presets and what they run\n"
            "  -h, --help                this help\n\n"
            "Bad input prints one line on stderr and exits with status 2, leaving no output file.\n\n"
            "examples:\n"
            "  ddpm-sample --class 7 --steps 250 --guidance entropy -o sneakers.png\n"
            "  ddpm-sample -m model.safetensors --sampler ddim --steps 25 --guidance cfg --cfg-scale 2 -n 64\n"
            "  ddpm-sample --preset imagenet256 --class \"golden retriever\" -n 4 -o retrievers.png\n"
            "  ddpm-sample --preset imagenet64-256 --class 207 -n 4 -o up.png --save-base base64.npz\n"
            "  ddpm-sample --preset imagenet64-256 --base-npz base64.npz -o up.png\n");
}

static void parse_range(const char *flag, const char *v, int *lo, int *hi) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    char *colon = strchr(buf, ':');
    if (!colon) gd_cli_die("%s: want LO:HI, got '%s'", flag, v);
    *colon = 0;
    *lo = (int)gd_cli_long(flag, buf, 0, 1000000);
    *hi = (int)gd_cli_long(flag, colon + 1, 0, 1000000);
    if (*lo >= *hi) gd_cli_die("%s: empty range %d:%d", flag, *lo, *hi);
}

static void set_guidance(opts *o, const char *guidance) {
    o->use_classifier = o->use_entropy = o->use_cfg = 0;
    char g[256];
    snprintf(g, sizeof g, "%s", guidance);
    for (char *tok = strtok(g, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "none")) continue;
        if (!strcmp(tok, "classifier")) o->use_classifier = 1;
        else if (!strcmp(tok, "entropy")) o->use_classifier = o->use_entropy = 1;
        else if (!strcmp(tok, "cfg")) o->use_cfg = 1;
        else gd_cli_die("--guidance: unknown mode '%s' (none, classifier, entropy, cfg)", tok);
    }
}

static void set_sampler(opts *o, const char *sampler) {
    if (!strcmp(sampler, "ddim")) o->ddim = 1;
    else if (!strcmp(sampler, "ddpm")) o->ddim = 0;
    else gd_cli_die("--sampler: '%s' is not ddpm or ddim", sampler);
}

static void parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->num_samples = 16;
    o->batch_size = 16;
    o->scale = 1.0;
    o->cfg_scale = 3.0;
    o->clip = 1;
    o->eds_hi = 1 << 30;
    o->out = "samples.png";
    const char *guidance = "none", *sampler = "ddpm", *rng = "per-sample";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { o->quiet = 1; continue; }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { o->verbose = 1; continue; }
        if (!strcmp(a, "--no-clip")) { o->clip = 0; continue; }
        if (!strcmp(a, "--uncond")) { o->uncond = 1; continue; }
        if (!strcmp(a, "--list-presets")) { o->list_presets = 1; continue; }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s, l) (!strcmp(a, s) || !strcmp(a, l))
        int known = IS("-m", "--model") || IS("--model-config", "--model-config") || IS("--classifier", "--classifier") ||
                    IS("--classifier-config", "--classifier-config") || IS("--class", "--class") ||
                    IS("-n", "--num-samples") || IS("-b", "--batch-size") || IS("--steps", "--steps") ||
                    IS("--respacing", "--respacing") || IS("--sampler", "--sampler") || IS("--eta", "--eta") ||
                    IS("--guidance", "--guidance") || IS("--scale", "--scale") || IS("--cfg-scale", "--cfg-scale") ||
                    IS("--eds-t-range", "--eds-t-range") || IS("--seed", "--seed") || IS("--rng", "--rng") || IS("--first-index", "") ||
                    IS("-o", "--output") || IS("--grid-cols", "--grid-cols") || IS("--save-each", "--save-each") ||
                    IS("--npz", "--npz") || IS("-t", "--threads") || IS("--preset", "") || IS("--models-dir", "") ||
                    IS("--upsampler", "") || IS("--upsampler-config", "") || IS("--base-npz", "") || IS("--save-base", "") ||
                    IS("--upsample-respacing", "") || IS("--upsample-steps", "");
        if (!known) gd_cli_die("unknown option '%s' (see --help)", a);
        if (!v) gd_cli_die("%s needs a value", a);
        i++;
        if (IS("-m", "--model")) o->model = v;
        else if (IS("--model-config", "")) o->model_config = v;
        else if (IS("--classifier-config", "")) o->classifier_config = v;
        else if (IS("--classifier", "")) {
            if (o->n_classifiers == MAX_CLASSIFIERS) gd_cli_die("at most %d classifiers", MAX_CLASSIFIERS);
            int k = o->n_classifiers++;
            char *at = strrchr(v, '@');
            o->t_lo[k] = 0;
            o->t_hi[k] = 1 << 30;
            if (at) {
                parse_range("--classifier", at + 1, &o->t_lo[k], &o->t_hi[k]);
                char *p = strndup(v, (size_t)(at - v));
                o->classifiers[k] = p; /* lives until exit */
            } else {
                o->classifiers[k] = v;
            }
        } else if (IS("--class", "")) o->classes = v;
        else if (IS("-n", "--num-samples")) o->num_samples = (int)gd_cli_long(a, v, 1, 10000000), o->given_n = 1;
        else if (IS("-b", "--batch-size")) o->batch_size = (int)gd_cli_long(a, v, 1, 4096);
        else if (IS("--steps", "")) o->steps = (int)gd_cli_long(a, v, 1, 100000), o->given_steps = 1;
        else if (IS("--respacing", "")) o->respacing = v, o->given_steps = 1;
        else if (IS("--sampler", "")) sampler = v, o->given_sampler = 1;
        else if (IS("--eta", "")) o->eta = gd_cli_double(a, v, 0, 10);
        else if (IS("--guidance", "")) guidance = v, o->given_guidance = 1;
        else if (IS("--scale", "")) o->scale = gd_cli_double(a, v, -1e6, 1e6), o->given_scale = 1;
        else if (IS("--cfg-scale", "")) o->cfg_scale = gd_cli_double(a, v, -1e6, 1e6);
        else if (IS("--eds-t-range", "")) parse_range(a, v, &o->eds_lo, &o->eds_hi);
        else if (IS("--seed", "")) {
            char *end;
            errno = 0;
            o->seed = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-') gd_cli_die("--seed: '%s' is not a non-negative integer", v);
            o->seed_given = 1;
        } else if (IS("--rng", "")) rng = v;
        else if (IS("--first-index", "")) o->first = (int)gd_cli_long(a, v, 0, 2000000000);
        else if (IS("-o", "--output")) o->out = v;
        else if (IS("--grid-cols", "")) o->grid_cols = (int)gd_cli_long(a, v, 1, 4096);
        else if (IS("--save-each", "")) o->save_each = v;
        else if (IS("--npz", "")) o->npz = v;
        else if (IS("-t", "--threads")) o->threads = (int)gd_cli_long(a, v, 1, 1024);
        else if (IS("--preset", "")) o->preset = v;
        else if (IS("--models-dir", "")) o->models_dir = v;
        else if (IS("--upsampler", "")) o->upsampler = v;
        else if (IS("--upsampler-config", "")) o->upsampler_config = v;
        else if (IS("--base-npz", "")) o->base_npz = v;
        else if (IS("--save-base", "")) o->save_base = v;
        else if (IS("--upsample-respacing", "")) o->up_respacing = v;
        else if (IS("--upsample-steps", "")) o->up_steps = (int)gd_cli_long(a, v, 1, 100000);
#undef IS
    }
    set_sampler(o, sampler);
    if (!strcmp(rng, "torch")) o->rng_torch = 1;
    else if (strcmp(rng, "per-sample")) gd_cli_die("--rng: '%s' is not per-sample or torch", rng);
    set_guidance(o, guidance);
    if (o->eta != 0 && !o->ddim) gd_cli_die("--eta applies to --sampler ddim only");
    if (o->first && o->rng_torch) gd_cli_die("--first-index needs per-sample generators (not --rng torch)");
    if (o->up_steps && o->up_respacing) gd_cli_die("--upsample-steps and --upsample-respacing both given");
}

/* Fails early, before any sampling, if path cannot be created. */
static void check_writable(const char *flag, const char *path) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) gd_cli_die("%s: '%s' is a directory", flag, path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    if (!*dir) snprintf(dir, sizeof dir, "/");
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) gd_cli_die("%s: directory '%s' does not exist", flag, dir);
    if (access(dir, W_OK)) gd_cli_die("%s: directory '%s' is not writable", flag, dir);
}

static int file_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int dir_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static gd_model *load(const char *what, const char *path, const char *cfg) {
    char err[600];
    if (!file_exists(path)) gd_cli_die("%s '%s' not found", what, path);
    gd_model *m = gd_model_load(path, cfg, err, sizeof err);
    if (!m) gd_cli_die("%s", err);
    return m;
}

/* ---- presets --------------------------------------------------------------------------------- */

/* The folder of this executable's parent (build/ddpm-sample -> the project root), so presets and
 * models are found from any working directory. */
static const char *exe_root(void) {
    static char root[PATH_MAX];
    if (root[0]) return root;
    ssize_t n = readlink("/proc/self/exe", root, sizeof root - 1);
    if (n <= 0) return strcpy(root, ".");
    root[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(root, '/');
        if (!s) return strcpy(root, ".");
        *s = 0;
    }
    if (!root[0]) strcpy(root, "/");
    return root;
}

static const char *presets_dir(void) {
    static char d[PATH_MAX + 32];
    if (dir_exists("configs/presets")) return "configs/presets";
    snprintf(d, sizeof d, "%s/configs/presets", exe_root());
    return dir_exists(d) ? d : NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "a, b, c" of the preset names in dir (or "" when there is none). */
static void preset_names(const char *dir, char *buf, size_t n) {
    buf[0] = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    char *names[256];
    int k = 0;
    for (struct dirent *e; d && (e = readdir(d)) && k < 256;) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) names[k++] = strndup(e->d_name, l - 5);
    }
    if (d) closedir(d);
    qsort(names, (size_t)k, sizeof *names, cmp_str);
    for (int i = 0; i < k; i++) {
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "", names[i]);
        free(names[i]);
    }
}

static char *slurp_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = 2 * cap + 8192;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

typedef struct {
    char name[128], path[PATH_MAX + 160];
    cJSON *js;
    const char *description, *model, *classifier, *upsampler, *guidance, *sampler, *respacing, *up_respacing, *download;
    const char *expect_schedule;
    int expect_depth;
    double scale;
    int has_scale;
} preset;

static const char *pstr(const cJSON *o, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return NULL;
    if (!cJSON_IsString(v) || !v->valuestring[0]) gd_cli_die("preset %s: \"%s\" must be a non-empty string", path, key);
    return v->valuestring;
}

static void load_preset(const char *arg, preset *p) {
    memset(p, 0, sizeof *p);
    if (!arg || !*arg) gd_cli_die("--preset needs a name (see --list-presets)");
    size_t l = strlen(arg);
    if (strchr(arg, '/') || (l > 5 && !strcmp(arg + l - 5, ".json"))) {
        snprintf(p->path, sizeof p->path, "%s", arg);
        const char *b = strrchr(arg, '/');
        snprintf(p->name, sizeof p->name, "%s", b ? b + 1 : arg);
        char *dot = strrchr(p->name, '.');
        if (dot && !strcmp(dot, ".json")) *dot = 0;
    } else {
        const char *dir = presets_dir();
        if (!dir) gd_cli_die("--preset %s: no configs/presets folder here or beside the executable", arg);
        snprintf(p->path, sizeof p->path, "%s/%s.json", dir, arg);
        snprintf(p->name, sizeof p->name, "%s", arg);
        if (!file_exists(p->path)) {
            char names[4096];
            preset_names(dir, names, sizeof names);
            gd_cli_die("unknown preset '%s'; the presets are: %s", arg, names);
        }
    }
    char *txt = slurp_text(p->path);
    if (!txt) gd_cli_die("--preset: cannot read %s", p->path);
    p->js = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(p->js)) gd_cli_die("preset %s is not a JSON object", p->path);
    p->description = pstr(p->js, "description", p->path);
    p->model = pstr(p->js, "model", p->path);
    p->classifier = pstr(p->js, "classifier", p->path);
    p->upsampler = pstr(p->js, "upsampler", p->path);
    p->guidance = pstr(p->js, "guidance", p->path);
    p->sampler = pstr(p->js, "sampler", p->path);
    p->respacing = pstr(p->js, "respacing", p->path);
    p->up_respacing = pstr(p->js, "upsampler_respacing", p->path);
    p->download = pstr(p->js, "download", p->path);
    if (!p->model) gd_cli_die("preset %s: no \"model\"", p->path);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p->js, "scale");
    if (s && !cJSON_IsNumber(s)) gd_cli_die("preset %s: \"scale\" must be a number", p->path);
    if (s) p->scale = s->valuedouble, p->has_scale = 1;
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(p->js, "expect");
    p->expect_schedule = ex ? pstr(ex, "noise_schedule", p->path) : NULL;
    const cJSON *dep = ex ? cJSON_GetObjectItemCaseSensitive(ex, "classifier_depth") : NULL;
    p->expect_depth = cJSON_IsNumber(dep) ? dep->valueint : 0;
}

static void list_presets(void) {
    const char *dir = presets_dir();
    if (!dir) gd_cli_die("--list-presets: no configs/presets folder here or beside the executable");
    char names[4096];
    preset_names(dir, names, sizeof names);
    for (char *tok = strtok(names, ", "); tok; tok = strtok(NULL, ", ")) {
        preset p;
        load_preset(tok, &p);
        printf("%-30s %s\n", tok, p.description ? p.description : "");
        printf("%-30s   %s%s%s%s%s, %s %s, guidance %s", "", p.model, p.classifier ? " + " : "",
               p.classifier ? p.classifier : "", p.upsampler ? " -> " : "", p.upsampler ? p.upsampler : "",
               p.sampler ? p.sampler : "ddpm", p.respacing ? p.respacing : "250", p.guidance ? p.guidance : "none");
        if (p.has_scale && p.guidance && strcmp(p.guidance, "none")) printf(" scale %g", p.scale);
        printf("\n");
        cJSON_Delete(p.js);
    }
}

/* The converted file of a released checkpoint: DIR/<name>.safetensors, DIR = --models-dir, else
 * models/ here, else models/ beside the executable. */
static void model_file(const opts *o, const char *stem, char *buf, size_t n) {
    if (o->models_dir) {
        snprintf(buf, n, "%s/%s.safetensors", o->models_dir, stem);
        return;
    }
    snprintf(buf, n, "models/%s.safetensors", stem);
    if (file_exists(buf)) return;
    char alt[PATH_MAX + 200];
    snprintf(alt, sizeof alt, "%s/models/%s.safetensors", exe_root(), stem);
    if (file_exists(alt)) snprintf(buf, n, "%s", alt);
}

/* ---- class names ----------------------------------------------------------------------------- */

typedef struct {
    char **names; /* NULL when no config has them */
    int n;
} class_names;

/* The first of the configs that has class names. */
static class_names find_class_names(const gd_config **cfgs, int n) {
    class_names cn = {NULL, 0};
    for (int i = 0; i < n && !cn.n; i++)
        if (cfgs[i]) {
            cn.n = gd_config_class_names(cfgs[i], &cn.names);
            if (cn.n < 0) gd_cli_die("out of memory");
        }
    return cn;
}

static const char *class_name(const class_names *cn, int64_t k) { return k >= 0 && k < cn->n ? cn->names[k] : NULL; }

static int class_id(const class_names *cn, const char *tok, int K) {
    if (tok[0] >= '0' && tok[0] <= '9') return (int)gd_cli_long("--class", tok, 0, K - 1);
    int id = -1, other = -1;
    for (int k = 0; k < cn->n && k < K; k++)
        if (gd_class_name_equal(cn->names[k], tok)) {
            if (id < 0) id = k;
            else if (other < 0) other = k;
        }
    if (other >= 0) gd_cli_die("--class: '%s' names classes %d and %d; give the id", tok, id, other);
    if (id >= 0) return id;
    if (!cn->n) gd_cli_die("--class: unknown class '%s' (the model has no class names; give an id in [0, %d])", tok, K - 1);
    char list[1200] = "";
    int shown = 0;
    if (cn->n <= 20) { /* a short list: all of it */
        for (int k = 0; k < cn->n; k++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", cn->names[k]);
        gd_cli_die("--class: unknown class '%s'; the model's classes: %s", tok, list);
    }
    for (int k = 0; k < cn->n && shown < 12; k++) { /* a long one: the names that contain it */
        const char *h = cn->names[k];
        size_t lt = strlen(tok);
        int hit = 0;
        for (const char *s = h; *s && !hit; s++) hit = !strncasecmp(s, tok, lt);
        if (hit) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d %s", shown++ ? ", " : "", k, h);
    }
    if (shown) gd_cli_die("--class: unknown class '%s'; did you mean: %s", tok, list);
    gd_cli_die("--class: unknown class '%s' (%d class names, e.g. 0 %s, 1 %s; configs/imagenet_classes.txt lists ImageNet's)", tok,
        cn->n, cn->names[0], cn->names[1]);
    return -1;
}

/* ---- progress -------------------------------------------------------------------------------- */

typedef struct {
    int quiet, total, done;
    double t0, last;
    int tty;
} progress;

static void on_step(void *user, int done, int total) {
    (void)done;
    (void)total;
    progress *p = user;
    p->done++;
    double t = gd_time_now();
    /* a bar on a terminal; in logs and pipes one line every 10 s */
    double every = p->tty ? 0.1 : 10.0;
    if (p->quiet || (t - p->last < every && p->done != p->total)) return;
    p->last = t;
    double rate = p->done / (t - p->t0), eta = (p->total - p->done) / (rate > 0 ? rate : 1);
    int w = 30, fill = (int)((double)p->done / p->total * w);
    fprintf(stderr, "%s[%.*s%*s] %d/%d steps  %.2f it/s  ETA %.0fs %s", p->tty ? "\r" : "", fill,
            "##############################", w - fill, "", p->done, p->total, rate, eta,
            p->tty && p->done != p->total ? "" : "\n");
}

/* ---- one sampling stage (the base model, or the upsampler on the base model's images) ---------- */

typedef struct {
    gd_model *model;
    gd_diffusion *diff;
    int ddim, clip;
    float eta;
    /* guidance: base stage only (super_res_sample.py runs its upsampler unguided) */
    gd_model **cls;
    int n_cls, use_classifier, use_entropy, use_cfg, uncond;
    /* superres: the base images, NHWC uint8, sample i conditioned on image i % low_count */
    const uint8_t *low_nhwc;
    int low_count;
    uint64_t stream;  /* xor'ed into the per-sample seeds */
    int rng_torch;
    double t_plan, t_sample;
} stage;

/* Samples N images into `images` (NHWC uint8). Labels of random-class torch runs are drawn here
 * (guided-diffusion draws them from the same generator, per batch, before the noise). */
static void run_stage(stage *st, const opts *o, int N, int B, int64_t *labels, int random_class, int K, progress *pr,
                      uint8_t *images) {
    const gd_config *mc = gd_model_config(st->model);
    const int C = mc->in_channels, S = mc->image_size, per = C * S * S;
    const int ls = mc->small_size, lper = C * ls * ls;
    char err[600];
    float *x = malloc(sizeof(float) * (size_t)B * per);
    int32_t *y = calloc((size_t)B, sizeof(int32_t)), *ynull = calloc((size_t)B, sizeof(int32_t));
    uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)B);
    if (!x || !y || !ynull || !seeds) gd_cli_die("out of memory for a batch of %d", B);
    for (int i = 0; i < B; i++) ynull[i] = mc->num_classes; /* the null label's index */
    gd_net_denoiser den = {0};
    gd_classifier_guidance guide[MAX_CLASSIFIERS];
    memset(guide, 0, sizeof guide);
    gd_rng_noise noise = {0};
    gd_sampler *smp = NULL;
    int planned_b = 0, nb = (N + B - 1) / B;
    gd_rng torch_gen;
    gd_rng_seed(&torch_gen, o->seed);
    for (int b = 0; b < nb; b++) {
        /* --rng torch runs every batch at full size and drops the extra images of the last one, as
         * guided-diffusion's classifier_sample.py does: its generator stream then matches. */
        int n0 = b * B, nkeep = N - n0 < B ? N - n0 : B, nbat = st->rng_torch ? B : nkeep;
        if (nbat != planned_b) { /* plan once per distinct batch size (at most two) */
            double t0 = gd_time_now();
            gd_sampler_free(smp);
            gd_net_denoiser_free(&den);
            gd_rng_noise_free(&noise);
            for (int i = 0; i < st->n_cls; i++) gd_classifier_guidance_free(&guide[i]);
            if (gd_net_denoiser_init(&den, st->model, nbat, st->uncond ? ynull : y, st->use_cfg ? (float)o->cfg_scale : 1.0f,
                                     err, sizeof err))
                gd_cli_die("%s", err);
            gd_guidance *chain = NULL;
            for (int i = st->use_classifier ? st->n_cls - 1 : -1; i >= 0; i--) {
                if (gd_classifier_guidance_init(&guide[i], st->cls[i], nbat, y, (float)o->scale, st->use_entropy, err, sizeof err))
                    gd_cli_die("%s", err);
                guide[i].t_lo = o->t_lo[i];
                guide[i].t_hi = o->t_hi[i];
                guide[i].eds_t_lo = o->eds_lo;
                guide[i].eds_t_hi = o->eds_hi;
                guide[i].base.next = chain;
                chain = &guide[i].base;
            }
            if (gd_rng_noise_init(&noise, nbat, per, !st->rng_torch)) gd_cli_die("out of memory");
            gd_sampler_params sp = {.diffusion = st->diff,
                                    .var_type = mc->learn_sigma ? GD_VAR_LEARNED_RANGE
                                                : mc->sigma_small ? GD_VAR_FIXED_SMALL
                                                                  : GD_VAR_FIXED_LARGE,
                                    .ddim = st->ddim, .eta = st->eta, .clip_denoised = st->clip,
                                    .N = nbat, .C = C, .H = S, .W = S,
                                    .model = &den.base, .guidance = chain, .noise = &noise.base,
                                    .progress = on_step, .progress_user = pr};
            smp = gd_sampler_new(&sp);
            if (!smp) gd_cli_die("out of memory");
            planned_b = nbat;
            st->t_plan += gd_time_now() - t0;
        }
        double t0 = gd_time_now();
        if (st->rng_torch) { /* guided-diffusion: one generator for the run; per batch labels, then randn */
            noise.gens[0] = torch_gen;
            if (random_class) gd_rng_randint(&noise.gens[0], K, labels + n0, nbat);
        } else {
            for (int i = 0; i < nbat; i++) seeds[i] = (o->seed + (unsigned long long)(o->first + n0 + i)) ^ st->stream;
            gd_rng_noise_seed(&noise, seeds);
        }
        for (int i = 0; i < nbat; i++) y[i] = (int32_t)labels[n0 + i];
        if (den.low_res) /* super_res_sample.py: low_res = uint8 / 127.5 - 1, NHWC -> NCHW */
            for (int i = 0; i < nbat; i++) {
                const uint8_t *im = st->low_nhwc + (size_t)((n0 + i) % st->low_count) * lper;
                for (int c = 0; c < C; c++)
                    for (int p = 0; p < ls * ls; p++)
                        den.low_res[(size_t)i * lper + (size_t)c * ls * ls + p] = (float)im[p * C + c] / 127.5f - 1.0f;
            }
        if (gd_sampler_run(smp, x)) gd_cli_die("sampling failed: %s", gd_last_error());
        if (st->rng_torch) torch_gen = noise.gens[0];
        gd_to_uint8(x, nkeep, C, S, S, images + (size_t)n0 * per);
        st->t_sample += gd_time_now() - t0;
    }
    gd_sampler_free(smp);
    gd_net_denoiser_free(&den);
    gd_rng_noise_free(&noise);
    for (int i = 0; i < st->n_cls; i++) gd_classifier_guidance_free(&guide[i]);
    free(x);
    free(y);
    free(ynull);
    free(seeds);
}

/* guided-diffusion's timestep_respacing for a step count (ddimN when it strides evenly). */
static gd_diffusion *make_diffusion(const gd_config *mc, const char *respacing, int steps, int ddim, char *resp, size_t n) {
    if (respacing) snprintf(resp, n, "%s", respacing);
    else {
        snprintf(resp, n, "%s%d", ddim ? "ddim" : "", steps);
        unsigned char *keep = malloc((size_t)mc->diffusion_steps);
        char e2[256];
        if (ddim && gd_space_timesteps(mc->diffusion_steps, resp, keep, e2, sizeof e2) < 0)
            snprintf(resp, n, "%d", steps); /* no even stride: fall back to sections */
        free(keep);
    }
    char err[600];
    gd_diffusion *diff = gd_diffusion_new(mc->noise_schedule, mc->diffusion_steps, resp, err, sizeof err);
    if (!diff) gd_cli_die("%s", err);
    return diff;
}

int main(int argc, char **argv) {
    gd_cli_set_program(prog);
    opts o;
    parse_args(argc, argv, &o);
    if (o.list_presets) {
        list_presets();
        return 0;
    }
    double t_start = gd_time_now();
    if (o.threads) gd_set_threads(o.threads);

    /* ---- preset: fills in what the command line left open ---- */
    preset ps = {0};
    char model_buf[PATH_MAX + 200], cls_buf[PATH_MAX + 200], up_buf[PATH_MAX + 200];
    int preset_classifier = 0, preset_model = 0;
    if (o.preset) {
        load_preset(o.preset, &ps);
        if (!o.given_guidance && ps.guidance && !o.base_npz) set_guidance(&o, ps.guidance);
        if (!o.given_sampler && ps.sampler) set_sampler(&o, ps.sampler);
        if (!o.given_steps && ps.respacing) o.respacing = ps.respacing;
        if (!o.given_scale && ps.has_scale) o.scale = ps.scale;
        if (!o.up_respacing && !o.up_steps && ps.up_respacing) o.up_respacing = ps.up_respacing;
        /* the files it needs that are missing, and how to make them */
        const char *stems[3] = {NULL, NULL, NULL};
        char *bufs[3] = {model_buf, cls_buf, up_buf};
        if (!o.model && !o.base_npz) stems[0] = ps.model, preset_model = 1;
        if (!o.n_classifiers && o.use_classifier && ps.classifier && !o.base_npz) stems[1] = ps.classifier, preset_classifier = 1;
        if (!o.upsampler && ps.upsampler) stems[2] = ps.upsampler;
        if (o.base_npz && !ps.upsampler && !o.upsampler)
            gd_cli_die("--base-npz: preset %s has no upsampler (the cascade presets: imagenet64-256, imagenet128-512)", ps.name);
        char missing[2048] = "", pts[2048] = "";
        int nmiss = 0;
        for (int i = 0; i < 3; i++) {
            if (!stems[i]) continue;
            model_file(&o, stems[i], bufs[i], sizeof model_buf);
            if (file_exists(bufs[i])) continue;
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", nmiss ? " and " : "", bufs[i]);
            snprintf(pts + strlen(pts), sizeof pts - strlen(pts), " %s.pt", stems[i]);
            nmiss++;
        }
        if (nmiss) {
            const char *dir = o.models_dir ? o.models_dir : "models";
            gd_cli_die("preset %s needs %s, which %s missing; download%s (%s) and convert %s: python3 scripts/convert_checkpoint.py%s -d %s",
                ps.name, missing, nmiss > 1 ? "are" : "is", pts, ps.download ? ps.download : "see configs/checkpoints.json",
                nmiss > 1 ? "them" : "it", pts, dir);
        }
        if (stems[0]) o.model = model_buf;
        if (stems[1]) {
            o.classifiers[0] = cls_buf;
            o.t_lo[0] = 0, o.t_hi[0] = 1 << 30;
            o.n_classifiers = 1;
        }
        if (stems[2]) o.upsampler = up_buf;
    }
    check_writable("--output", o.out);
    char sidecar[PATH_MAX];
    snprintf(sidecar, sizeof sidecar, "%s.json", o.out);
    if (o.npz) check_writable("--npz", o.npz);
    if (o.save_base) check_writable("--save-base", o.save_base);
    if (o.save_each) {
        struct stat st;
        if (stat(o.save_each, &st) || !S_ISDIR(st.st_mode)) gd_cli_die("--save-each: '%s' is not a directory", o.save_each);
        if (access(o.save_each, W_OK)) gd_cli_die("--save-each: '%s' is not writable", o.save_each);
    }

    /* ---- models ---- */
    gd_model *model = NULL, *up = NULL;
    const gd_config *mc = NULL, *uc = NULL;
    const char *model_path = o.model ? o.model : DEFAULT_MODEL;
    if (o.upsampler) {
        up = load("upsampler", o.upsampler, o.upsampler_config);
        uc = gd_model_config(up);
        if (uc->kind != GD_NET_SUPERRES) gd_cli_die("%s: not a super-resolution model (model \"superres\")", o.upsampler);
    }
    if (!o.base_npz || !up) {
        if (!o.model && !file_exists(DEFAULT_MODEL))
            gd_cli_die("no model given (-m) and no default model at " DEFAULT_MODEL "; pass -m MODEL.safetensors or --preset NAME");
        model = load("model", model_path, o.model_config);
        mc = gd_model_config(model);
        if (mc->kind == GD_NET_SUPERRES) {
            if (up) gd_cli_die("%s is a super-resolution model; give the base model with -m and the upsampler with --upsampler", model_path);
            if (!o.base_npz) gd_cli_die("%s is a super-resolution model: give the images to upsample with --base-npz", model_path);
            up = model, uc = mc, model = NULL, mc = NULL; /* upsample only */
            if (o.upsampler_config) gd_cli_die("--upsampler-config: the upsampler is -m; use --model-config");
        } else if (mc->kind != GD_NET_UNET) {
            gd_cli_die("%s: not a diffusion U-Net (model \"classifier\")", model_path);
        }
    }
    if (o.base_npz && mc) gd_cli_die("--base-npz needs an upsampler: -m SUPERRES.safetensors, --upsampler PATH or a cascade preset");
    if (!mc && (o.use_classifier || o.use_cfg || o.n_classifiers))
        gd_cli_die("guidance applies to a base model; the upsampler runs unguided (as guided-diffusion's super_res_sample.py)");
    if (!mc && o.save_base) gd_cli_die("--save-base: there is no base stage with --base-npz");
    if (ps.js && preset_model && mc && ps.expect_schedule && strcmp(mc->noise_schedule, ps.expect_schedule))
        gd_cli_die("preset %s expects a %s noise schedule but %s has %s; was it converted from the right checkpoint?", ps.name,
            ps.expect_schedule, model_path, mc->noise_schedule);
    if (mc && o.use_cfg && !mc->null_class) gd_cli_die("--guidance cfg needs a model trained with a null class (config null_class)");
    if (o.uncond && !mc) gd_cli_die("--uncond applies to a base model, not to an upsampler");
    if (o.uncond && !mc->null_class) gd_cli_die("--uncond needs a model trained with a null class (config null_class)");
    if (o.uncond && o.use_cfg) gd_cli_die("--uncond and --guidance cfg exclude each other (cfg mixes both passes itself)");
    gd_model *cls[MAX_CLASSIFIERS] = {0};
    if (mc && o.use_classifier) {
        if (!o.n_classifiers) {
            o.classifiers[0] = DEFAULT_CLASSIFIER;
            o.t_lo[0] = 0;
            o.t_hi[0] = 1 << 30;
            o.n_classifiers = 1;
            if (!file_exists(DEFAULT_CLASSIFIER))
                gd_cli_die("--guidance %s needs a classifier: pass --classifier PATH (no default at " DEFAULT_CLASSIFIER ")",
                    o.use_entropy ? "entropy" : "classifier");
        }
        for (int i = 0; i < o.n_classifiers; i++) {
            cls[i] = load("classifier", o.classifiers[i], o.classifier_config);
            const gd_config *cc = gd_model_config(cls[i]);
            if (cc->kind != GD_NET_CLASSIFIER) gd_cli_die("%s: not a classifier", o.classifiers[i]);
            if (cc->image_size != mc->image_size || cc->in_channels != mc->in_channels)
                gd_cli_die("classifier %s sees %dx%dx%d images, the model makes %dx%dx%d", o.classifiers[i], cc->in_channels,
                    cc->image_size, cc->image_size, mc->in_channels, mc->image_size, mc->image_size);
            if (mc->class_cond && cc->num_classes != mc->num_classes)
                gd_cli_die("classifier %s has %d classes, the model %d", o.classifiers[i], cc->num_classes, mc->num_classes);
            if (cc->has_schedule &&
                (cc->diffusion_steps != mc->diffusion_steps || strcmp(cc->noise_schedule, mc->noise_schedule)))
                gd_cli_die("classifier %s was trained for a %s schedule of %d steps, the model uses %s with %d",
                    o.classifiers[i], cc->noise_schedule, cc->diffusion_steps, mc->noise_schedule, mc->diffusion_steps);
            if (preset_classifier && ps.expect_depth && cc->num_res_blocks != ps.expect_depth)
                gd_cli_die("preset %s expects a classifier of depth %d but %s has %d; was it converted from the right checkpoint?",
                    ps.name, ps.expect_depth, o.classifiers[i], cc->num_res_blocks);
        }
    } else if (o.n_classifiers) {
        gd_cli_die("--classifier given without --guidance classifier or entropy");
    }
    if (up && mc && (uc->small_size != mc->image_size || uc->in_channels != mc->in_channels))
        gd_cli_die("upsampler %s takes %dx%dx%d images, the base model makes %dx%dx%d", o.upsampler, uc->in_channels, uc->small_size,
            uc->small_size, mc->in_channels, mc->image_size, mc->image_size);
    if (up && mc && uc->class_cond && (mc->class_cond || o.use_classifier) &&
        uc->num_classes != (o.use_classifier ? gd_model_config(cls[0])->num_classes : mc->num_classes))
        gd_cli_die("upsampler %s has %d classes, the base model's labels have %d", o.upsampler, uc->num_classes,
            o.use_classifier ? gd_model_config(cls[0])->num_classes : mc->num_classes);

    /* ---- base images to upsample ---- */
    uint8_t *base_in = NULL;
    int64_t *base_labels = NULL;
    int base_n = 0;
    if (o.base_npz) {
        int h, w, c;
        char err[600];
        if (gd_read_npz(o.base_npz, &base_in, &base_n, &h, &w, &c, &base_labels, err, sizeof err)) gd_cli_die("%s", err);
        if (h != uc->small_size || w != uc->small_size || c != uc->in_channels)
            gd_cli_die("--base-npz: %s holds %dx%dx%d images; the upsampler takes %dx%dx%d", o.base_npz, h, w, c, uc->small_size,
                uc->small_size, uc->in_channels);
        if (!base_n) gd_cli_die("--base-npz: %s holds no images", o.base_npz);
        if (!o.given_n) o.num_samples = base_n;
    }

    /* ---- labels and seeds ---- */
    const gd_config *name_src[3] = {mc, o.use_classifier && cls[0] ? gd_model_config(cls[0]) : NULL, uc};
    class_names cn = find_class_names(name_src, 3);
    int K = mc ? (o.use_classifier ? gd_model_config(cls[0])->num_classes : mc->num_classes) : uc->num_classes;
    int labelled = mc ? mc->class_cond || o.use_classifier || (up && uc->class_cond) : uc->class_cond || base_labels != NULL;
    if (o.classes && !labelled)
        gd_cli_die("--class: the model is unconditional and no classifier guidance was asked");
    int N = o.num_samples, B = o.batch_size < N ? o.batch_size : N;
    if (!o.seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o.seed = ((unsigned long long)ts.tv_sec * 1000003ull ^ (unsigned long long)ts.tv_nsec) % 1000000000ull;
    }
    int list[MAX_LABELS], nlist = 0, random_class = !o.classes || !strcmp(o.classes, "random");
    if (!random_class) {
        char buf[16384];
        snprintf(buf, sizeof buf, "%s", o.classes);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            while (*tok == ' ') tok++;
            if (nlist == MAX_LABELS) gd_cli_die("--class: at most %d classes in a list", MAX_LABELS);
            list[nlist++] = class_id(&cn, tok, K);
        }
        if (!nlist) gd_cli_die("--class: empty list");
    }
    if (!mc && random_class && uc->class_cond && !base_labels)
        gd_cli_die("the upsampler is class-conditional and %s has no labels (arr_1); pass --class", o.base_npz);
    for (int i = 0; !mc && random_class && base_labels && i < base_n; i++)
        if (base_labels[i] < 0 || base_labels[i] >= K)
            gd_cli_die("--base-npz: label %lld of image %d is not in [0, %d)", (long long)base_labels[i], i, K);

    /* ---- schedules ---- */
    char resp[64] = "", up_resp[64] = "";
    gd_diffusion *diff = NULL, *up_diff = NULL;
    if (mc) diff = make_diffusion(mc, o.respacing, o.steps ? o.steps : o.ddim ? 25 : 250, o.ddim, resp, sizeof resp);
    if (up) up_diff = make_diffusion(uc, o.up_respacing, o.up_steps ? o.up_steps : 250, 0, up_resp, sizeof up_resp);

    int64_t *labels = calloc((size_t)((N + B - 1) / B * B), sizeof(int64_t)); /* room for a full last batch */
    if (!labels) gd_cli_die("out of memory for %d samples", N);
    for (int i = 0; i < (N + B - 1) / B * B; i++) {
        unsigned long long gi = (unsigned long long)(o.first + i); /* the sample's global index */
        if (!random_class) {
            labels[i] = list[gi % (unsigned long long)nlist];
        } else if (!mc) { /* upsampling given images: their labels */
            labels[i] = base_labels ? base_labels[i % base_n] : 0;
        } else if (!o.rng_torch) { /* per sample, from its own seed, so it can be regenerated alone */
            gd_rng r;
            gd_rng_seed(&r, (o.seed + gi) ^ 0x6c6162656cull);
            gd_rng_randint(&r, K, &labels[i], 1);
        }
    }

    /* ---- sampling ---- */
    const gd_config *oc = up ? uc : mc; /* the images written */
    const int C = oc->in_channels, S = oc->image_size, per = C * S * S;
    int nb = (N + B - 1) / B;
    progress pr = {o.quiet, nb * ((diff ? diff->K : 0) + (up_diff ? up_diff->K : 0)), 0, gd_time_now(), 0, isatty(2)};
    if (!o.quiet) {
        if (ps.js) fprintf(stderr, "%s: preset %s: %s\n", prog, ps.name, ps.description ? ps.description : "");
        if (labelled && cn.n) { /* the classes, by name */
            char line[1024] = "";
            int shown = 0;
            for (int i = 0; i < N && i < 100000 && shown < 8; i++) {
                int dup = 0;
                for (int j = 0; j < i && !dup; j++) dup = labels[j] == labels[i];
                if (dup) continue;
                const char *nm = class_name(&cn, labels[i]);
                snprintf(line + strlen(line), sizeof line - strlen(line), "%s%lld (%s)", shown++ ? ", " : "",
                         (long long)labels[i], nm ? nm : "?");
            }
            int distinct = 0;
            for (int i = 0; i < N && i < 100000; i++) {
                int dup = 0;
                for (int j = 0; j < i && !dup; j++) dup = labels[j] == labels[i];
                distinct += !dup;
                if (distinct > 8) break;
            }
            fprintf(stderr, "%s: class%s %s%s\n", prog, shown > 1 ? "es" : "", line, distinct > 8 ? ", ..." : "");
        } else if (nlist == 1) {
            fprintf(stderr, "%s: class %d\n", prog, list[0]);
        }
        if (mc)
            fprintf(stderr, "%s: seed %llu, %d samples, %s %s (%d steps), guidance %s%s%s%s\n", prog, o.seed, N,
                    o.ddim ? "ddim" : "ddpm", resp, diff->K, o.use_classifier || o.use_cfg ? "" : "none",
                    o.use_entropy ? "entropy" : o.use_classifier ? "classifier" : "", o.use_classifier && o.use_cfg ? "+" : "",
                    o.use_cfg ? "cfg" : "");
        if (up)
            fprintf(stderr, "%s: %supsampling %dx%d -> %dx%d, ddpm %s (%d steps)\n", prog, mc ? "then " : "", uc->small_size,
                    uc->small_size, S, S, up_resp, up_diff->K);
        if (!mc) fprintf(stderr, "%s: seed %llu, %d samples from the images of %s\n", prog, o.seed, N, o.base_npz);
    }
    if (o.verbose) {
        fprintf(stderr, "%s: %s\n", prog, gd_build_info());
        if (mc)
            fprintf(stderr, "%s: model %s: %dx%dx%d, %d channels, class_cond %d, learn_sigma %d, %s schedule, %d steps\n", prog,
                    model_path, mc->in_channels, mc->image_size, mc->image_size, mc->model_channels, mc->class_cond,
                    mc->learn_sigma, mc->noise_schedule, mc->diffusion_steps);
        if (up)
            fprintf(stderr, "%s: upsampler %s: %d -> %d, %d channels, class_cond %d, %s schedule\n", prog, o.upsampler ? o.upsampler : model_path,
                    uc->small_size, uc->image_size, uc->model_channels, uc->class_cond, uc->noise_schedule);
    }
    uint8_t *base_images = NULL, *images = malloc((size_t)N * per);
    if (!images) gd_cli_die("out of memory for %d samples", N);
    stage sb = {0}, su = {0};
    if (mc) {
        base_images = up ? malloc((size_t)N * mc->in_channels * mc->image_size * mc->image_size) : images;
        if (!base_images) gd_cli_die("out of memory for %d samples", N);
        sb = (stage){.model = model, .diff = diff, .ddim = o.ddim, .clip = o.clip, .eta = (float)o.eta, .cls = cls,
                     .n_cls = o.n_classifiers, .use_classifier = o.use_classifier, .use_entropy = o.use_entropy,
                     .use_cfg = o.use_cfg, .uncond = o.uncond, .rng_torch = o.rng_torch};
        run_stage(&sb, &o, N, B, labels, random_class, K, &pr, base_images);
    }
    if (up) {
        su = (stage){.model = up, .diff = up_diff, .ddim = 0, .clip = o.clip, .low_nhwc = mc ? base_images : base_in,
                     .low_count = mc ? N : base_n, .stream = UPSAMPLE_STREAM};
        run_stage(&su, &o, N, B, labels, 0, K, &pr, images);
    }

    /* ---- outputs ---- */
    double t0 = gd_time_now();
    char err[600];
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "tool", "ddpm-sample");
    if (ps.js) cJSON_AddStringToObject(js, "preset", ps.name);
    if (mc) {
        cJSON_AddStringToObject(js, "model", model_path);
        cJSON *ca = cJSON_AddArrayToObject(js, "classifiers");
        for (int i = 0; o.use_classifier && i < o.n_classifiers; i++) cJSON_AddItemToArray(ca, cJSON_CreateString(o.classifiers[i]));
        cJSON_AddStringToObject(js, "sampler", o.ddim ? "ddim" : "ddpm");
        cJSON_AddStringToObject(js, "respacing", resp);
        cJSON_AddNumberToObject(js, "steps", diff->K);
        cJSON_AddNumberToObject(js, "eta", o.eta);
    } else {
        cJSON_AddStringToObject(js, "base_npz", o.base_npz);
    }
    if (up) {
        cJSON_AddStringToObject(js, "upsampler", o.upsampler ? o.upsampler : model_path);
        cJSON_AddStringToObject(js, "upsampler_respacing", up_resp);
        cJSON_AddNumberToObject(js, "upsampler_steps", up_diff->K);
        cJSON_AddNumberToObject(js, "base_size", uc->small_size);
    }
    cJSON_AddBoolToObject(js, "clip_denoised", o.clip);
    cJSON_AddBoolToObject(js, "unconditional_model", o.uncond);
    cJSON *ga = cJSON_AddArrayToObject(js, "guidance");
    if (o.use_classifier) cJSON_AddItemToArray(ga, cJSON_CreateString(o.use_entropy ? "entropy" : "classifier"));
    if (o.use_cfg) cJSON_AddItemToArray(ga, cJSON_CreateString("cfg"));
    cJSON_AddNumberToObject(js, "scale", o.scale);
    cJSON_AddNumberToObject(js, "cfg_scale", o.use_cfg ? o.cfg_scale : 1.0);
    cJSON_AddNumberToObject(js, "seed", (double)o.seed);
    cJSON_AddStringToObject(js, "rng", o.rng_torch ? "torch" : "per-sample");
    cJSON_AddNumberToObject(js, "num_samples", N);
    cJSON_AddNumberToObject(js, "first_index", (double)o.first);
    cJSON_AddNumberToObject(js, "batch_size", B);
    if (nlist == 1 && class_name(&cn, list[0])) cJSON_AddStringToObject(js, "class_name", class_name(&cn, list[0]));
    if (labelled) {
        cJSON *la = cJSON_AddArrayToObject(js, "labels");
        for (int i = 0; i < N && i < 100000; i++) cJSON_AddItemToArray(la, cJSON_CreateNumber((double)labels[i]));
        if (cn.n) {
            cJSON *na = cJSON_AddArrayToObject(js, "label_names");
            for (int i = 0; i < N && i < 100000; i++) {
                const char *nm = class_name(&cn, labels[i]);
                cJSON_AddItemToArray(na, nm ? cJSON_CreateString(nm) : cJSON_CreateNull());
            }
        }
    }
    char *params = cJSON_PrintUnformatted(js);
    if (gd_write_png_grid(o.out, images, N, S, S, C, o.grid_cols, "parameters", params, err, sizeof err)) gd_cli_die("%s", err);
    gd_cli_remove_on_error(o.out);
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", sidecar, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", params) < 0 || fclose(f) || rename(tmp, sidecar)) {
        unlink(tmp);
        gd_cli_die("cannot write %s", sidecar);
    }
    gd_cli_remove_on_error(sidecar);
    if (o.npz) {
        if (gd_write_npz(o.npz, images, N, S, S, C, labelled ? labels : NULL, err, sizeof err)) gd_cli_die("%s", err);
        gd_cli_remove_on_error(o.npz);
    }
    if (o.save_base) {
        if (gd_write_npz(o.save_base, base_images, N, mc->image_size, mc->image_size, mc->in_channels, labelled ? labels : NULL,
                         err, sizeof err))
            gd_cli_die("%s", err);
        gd_cli_remove_on_error(o.save_base);
    }
    for (int i = 0; o.save_each && i < N; i++) {
        char p[PATH_MAX + 64];
        long long gi = o.first + i;
        if (labelled)
            snprintf(p, sizeof p, "%s/sample_%06lld_seed%llu_class%d.png", o.save_each, gi, o.seed + (unsigned long long)gi,
                     (int)labels[i]);
        else
            snprintf(p, sizeof p, "%s/sample_%06lld_seed%llu.png", o.save_each, gi, o.seed + (unsigned long long)gi);
        if (gd_write_png_grid(p, images + (size_t)i * per, 1, S, S, C, 1, "parameters", params, err, sizeof err)) gd_cli_die("%s", err);
    }
    double t_write = gd_time_now() - t0;
    if (!o.quiet) {
        int steps = nb * ((diff ? diff->K : 0) + (up_diff ? up_diff->K : 0));
        printf("%s: %d samples, seed %llu -> %s%s%s (%.1f s, %.3f s/step", prog, N, o.seed, o.out, o.npz ? ", " : "",
               o.npz ? o.npz : "", gd_time_now() - t_start, (sb.t_sample + su.t_sample) / steps);
        if (mc && up)
            printf("; base %.3f s/step, upsampler %.3f s/step", sb.t_sample / (nb * diff->K), su.t_sample / (nb * up_diff->K));
        printf(")\n");
    }
    if (o.verbose)
        fprintf(stderr, "%s: timings: load+plan %.2f s, sampling %.2f s, writing %.2f s\n", prog, sb.t_plan + su.t_plan,
                sb.t_sample + su.t_sample, t_write);
    free(params);
    cJSON_Delete(js);
    cJSON_Delete(ps.js);
    for (int i = 0; i < o.n_classifiers; i++) gd_model_free(cls[i]);
    gd_model_free(model);
    gd_model_free(up);
    gd_diffusion_free(diff);
    gd_diffusion_free(up_diff);
    free(cn.names);
    free(labels);
    if (base_images != images) free(base_images);
    free(images);
    free(base_in);
    free(base_labels);
    return 0;
}
