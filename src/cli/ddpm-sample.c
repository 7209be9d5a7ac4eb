/* ddpm-sample: DDPM/DDIM sampling with classifier, entropy-aware (EDS) and classifier-free
 * guidance; writes a PNG grid (parameters in a tEXt chunk and a JSON sidecar), optional
 * per-sample PNGs and a guided-diffusion compatible .npz. */
#include "gd_guidance.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_sample.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "models/fashion_diffusion.safetensors"
#define DEFAULT_CLASSIFIER "models/fashion_classifier_ce.safetensors"
#define MAX_CLASSIFIERS 8
#define MAX_LABELS 4096

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
} opts;

static const char *prog = "ddpm-sample";

static void die(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    fprintf(stderr, "%s: %s\n", prog, buf);
    exit(2);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddpm-sample [options]\n"
            "Samples images from an ADM diffusion model (guided-diffusion architecture), optionally guided.\n\n"
            "model\n"
            "  -m, --model PATH          diffusion model (safetensors; default " DEFAULT_MODEL ")\n"
            "      --model-config PATH   its config, when not embedded in the file\n"
            "      --classifier PATH[@LO:HI]  noise-aware classifier for guidance (default " DEFAULT_CLASSIFIER ");\n"
            "                            repeat with @LO:HI original-timestep ranges for multiple experts\n"
            "      --classifier-config PATH  classifier config, when not embedded\n"
            "sampling\n"
            "      --class C             class id or name (when the model's config has class_names), a comma\n"
            "                            list (cycled), or 'random' (default)\n"
            "  -n, --num-samples N       number of images (default 16)\n"
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
            "                            batch exactly as guided-diffusion draws (torch.manual_seed(S))\n"
            "output\n"
            "  -o, --output PATH         PNG grid (default samples.png; parameters in a tEXt chunk and PATH.json)\n"
            "      --grid-cols N         grid columns (default: about square)\n"
            "      --save-each DIR       also one PNG per sample in DIR\n"
            "      --npz PATH            guided-diffusion .npz: arr_0 uint8 NHWC, arr_1 int64 labels\n"
            "  -t, --threads N           worker threads (default: all cores)\n"
            "  -q, --quiet               no progress bar or summary\n"
            "  -v, --verbose             build info, model summary and timings\n"
            "  -h, --help                this help\n\n"
            "Bad input prints one line on stderr and exits with status 2, leaving no output file.\n\n"
            "examples:\n"
            "  ddpm-sample --class 7 --steps 250 --guidance entropy -o sneakers.png\n"
            "  ddpm-sample -m model.safetensors --sampler ddim --steps 25 --guidance cfg --cfg-scale 2 -n 64\n");
}

static int parse_int(const char *flag, const char *v, int lo, int hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) die("%s: '%s' is not an integer in [%d, %d]", flag, v, lo, hi);
    return (int)x;
}

static double parse_double(const char *flag, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi)) die("%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
    return x;
}

static void parse_range(const char *flag, const char *v, int *lo, int *hi) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    char *colon = strchr(buf, ':');
    if (!colon) die("%s: want LO:HI, got '%s'", flag, v);
    *colon = 0;
    *lo = parse_int(flag, buf, 0, 1000000);
    *hi = parse_int(flag, colon + 1, 0, 1000000);
    if (*lo >= *hi) die("%s: empty range %d:%d", flag, *lo, *hi);
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
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s, l) (!strcmp(a, s) || !strcmp(a, l))
        int known = IS("-m", "--model") || IS("--model-config", "--model-config") || IS("--classifier", "--classifier") ||
                    IS("--classifier-config", "--classifier-config") || IS("--class", "--class") ||
                    IS("-n", "--num-samples") || IS("-b", "--batch-size") || IS("--steps", "--steps") ||
                    IS("--respacing", "--respacing") || IS("--sampler", "--sampler") || IS("--eta", "--eta") ||
                    IS("--guidance", "--guidance") || IS("--scale", "--scale") || IS("--cfg-scale", "--cfg-scale") ||
                    IS("--eds-t-range", "--eds-t-range") || IS("--seed", "--seed") || IS("--rng", "--rng") || IS("--first-index", "") ||
                    IS("-o", "--output") || IS("--grid-cols", "--grid-cols") || IS("--save-each", "--save-each") ||
                    IS("--npz", "--npz") || IS("-t", "--threads");
        if (!known) die("unknown option '%s' (see --help)", a);
        if (!v) die("%s needs a value", a);
        i++;
        if (IS("-m", "--model")) o->model = v;
        else if (IS("--model-config", "")) o->model_config = v;
        else if (IS("--classifier-config", "")) o->classifier_config = v;
        else if (IS("--classifier", "")) {
            if (o->n_classifiers == MAX_CLASSIFIERS) die("at most %d classifiers", MAX_CLASSIFIERS);
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
        else if (IS("-n", "--num-samples")) o->num_samples = parse_int(a, v, 1, 10000000);
        else if (IS("-b", "--batch-size")) o->batch_size = parse_int(a, v, 1, 4096);
        else if (IS("--steps", "")) o->steps = parse_int(a, v, 1, 100000);
        else if (IS("--respacing", "")) o->respacing = v;
        else if (IS("--sampler", "")) sampler = v;
        else if (IS("--eta", "")) o->eta = parse_double(a, v, 0, 10);
        else if (IS("--guidance", "")) guidance = v;
        else if (IS("--scale", "")) o->scale = parse_double(a, v, -1e6, 1e6);
        else if (IS("--cfg-scale", "")) o->cfg_scale = parse_double(a, v, -1e6, 1e6);
        else if (IS("--eds-t-range", "")) parse_range(a, v, &o->eds_lo, &o->eds_hi);
        else if (IS("--seed", "")) {
            char *end;
            errno = 0;
            o->seed = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-') die("--seed: '%s' is not a non-negative integer", v);
            o->seed_given = 1;
        } else if (IS("--rng", "")) rng = v;
        else if (IS("--first-index", "")) o->first = parse_int(a, v, 0, 2000000000);
        else if (IS("-o", "--output")) o->out = v;
        else if (IS("--grid-cols", "")) o->grid_cols = parse_int(a, v, 1, 4096);
        else if (IS("--save-each", "")) o->save_each = v;
        else if (IS("--npz", "")) o->npz = v;
        else if (IS("-t", "--threads")) o->threads = parse_int(a, v, 1, 1024);
#undef IS
    }
    if (!strcmp(sampler, "ddim")) o->ddim = 1;
    else if (strcmp(sampler, "ddpm")) die("--sampler: '%s' is not ddpm or ddim", sampler);
    if (!strcmp(rng, "torch")) o->rng_torch = 1;
    else if (strcmp(rng, "per-sample")) die("--rng: '%s' is not per-sample or torch", rng);
    char g[256];
    snprintf(g, sizeof g, "%s", guidance);
    for (char *tok = strtok(g, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "none")) continue;
        if (!strcmp(tok, "classifier")) o->use_classifier = 1;
        else if (!strcmp(tok, "entropy")) o->use_classifier = o->use_entropy = 1;
        else if (!strcmp(tok, "cfg")) o->use_cfg = 1;
        else die("--guidance: unknown mode '%s' (none, classifier, entropy, cfg)", tok);
    }
    if (o->eta != 0 && !o->ddim) die("--eta applies to --sampler ddim only");
    if (o->first && o->rng_torch) die("--first-index needs per-sample generators (not --rng torch)");
    if (o->batch_size > o->num_samples) o->batch_size = o->num_samples;
}

/* Fails early, before any sampling, if path cannot be created. */
static void check_writable(const char *flag, const char *path) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) die("%s: '%s' is a directory", flag, path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    if (!*dir) snprintf(dir, sizeof dir, "/");
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) die("%s: directory '%s' does not exist", flag, dir);
    if (access(dir, W_OK)) die("%s: directory '%s' is not writable", flag, dir);
}

static int file_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static gd_model *load(const char *what, const char *path, const char *cfg) {
    char err[600];
    if (!file_exists(path)) die("%s '%s' not found", what, path);
    gd_model *m = gd_model_load(path, cfg, err, sizeof err);
    if (!m) die("%s", err);
    return m;
}

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

int main(int argc, char **argv) {
    opts o;
    parse_args(argc, argv, &o);
    double t_start = gd_time_now();
    if (o.threads) gd_set_threads(o.threads);
    check_writable("--output", o.out);
    char sidecar[PATH_MAX];
    snprintf(sidecar, sizeof sidecar, "%s.json", o.out);
    if (o.npz) check_writable("--npz", o.npz);
    if (o.save_each) {
        struct stat st;
        if (stat(o.save_each, &st) || !S_ISDIR(st.st_mode)) die("--save-each: '%s' is not a directory", o.save_each);
        if (access(o.save_each, W_OK)) die("--save-each: '%s' is not writable", o.save_each);
    }

    /* ---- models ---- */
    const char *model_path = o.model ? o.model : DEFAULT_MODEL;
    if (!o.model && !file_exists(DEFAULT_MODEL))
        die("no model given (-m) and no default model at " DEFAULT_MODEL "; the default Fashion-MNIST models are "
            "made by scripts/train_fashion.sh (not shipped yet) - pass -m MODEL.safetensors");
    gd_model *model = load("model", model_path, o.model_config);
    const gd_config *mc = gd_model_config(model);
    if (mc->kind != GD_NET_UNET) die("%s: not a diffusion U-Net (model \"%s\")", model_path, mc->kind == GD_NET_CLASSIFIER ? "classifier" : "superres");
    if (o.use_cfg && !mc->null_class) die("--guidance cfg needs a model trained with a null class (config null_class)");
    if (o.uncond && !mc->null_class) die("--uncond needs a model trained with a null class (config null_class)");
    if (o.uncond && o.use_cfg) die("--uncond and --guidance cfg exclude each other (cfg mixes both passes itself)");
    gd_model *cls[MAX_CLASSIFIERS] = {0};
    if (o.use_classifier) {
        if (!o.n_classifiers) {
            o.classifiers[0] = DEFAULT_CLASSIFIER;
            o.t_lo[0] = 0;
            o.t_hi[0] = 1 << 30;
            o.n_classifiers = 1;
            if (!file_exists(DEFAULT_CLASSIFIER))
                die("--guidance %s needs a classifier: pass --classifier PATH (no default at " DEFAULT_CLASSIFIER ")",
                    o.use_entropy ? "entropy" : "classifier");
        }
        for (int i = 0; i < o.n_classifiers; i++) {
            cls[i] = load("classifier", o.classifiers[i], o.classifier_config);
            const gd_config *cc = gd_model_config(cls[i]);
            if (cc->kind != GD_NET_CLASSIFIER) die("%s: not a classifier", o.classifiers[i]);
            if (cc->image_size != mc->image_size || cc->in_channels != mc->in_channels)
                die("classifier %s sees %dx%dx%d images, the model makes %dx%dx%d", o.classifiers[i], cc->in_channels,
                    cc->image_size, cc->image_size, mc->in_channels, mc->image_size, mc->image_size);
            if (mc->class_cond && cc->num_classes != mc->num_classes)
                die("classifier %s has %d classes, the model %d", o.classifiers[i], cc->num_classes, mc->num_classes);
            if (cc->has_schedule &&
                (cc->diffusion_steps != mc->diffusion_steps || strcmp(cc->noise_schedule, mc->noise_schedule)))
                die("classifier %s was trained for a %s schedule of %d steps, the model uses %s with %d",
                    o.classifiers[i], cc->noise_schedule, cc->diffusion_steps, mc->noise_schedule, mc->diffusion_steps);
        }
    } else if (o.n_classifiers) {
        die("--classifier given without --guidance classifier or entropy");
    }
    int K = o.use_classifier ? gd_model_config(cls[0])->num_classes : mc->num_classes;
    int labelled = mc->class_cond || o.use_classifier;
    if (o.classes && !labelled) die("--class: the model is unconditional and no classifier guidance was asked");

    /* ---- schedule ---- */
    char resp[64];
    if (o.respacing) snprintf(resp, sizeof resp, "%s", o.respacing);
    else {
        int steps = o.steps ? o.steps : o.ddim ? 25 : 250;
        snprintf(resp, sizeof resp, "%s%d", o.ddim ? "ddim" : "", steps);
        unsigned char *keep = malloc((size_t)mc->diffusion_steps);
        char e2[256];
        if (o.ddim && gd_space_timesteps(mc->diffusion_steps, resp, keep, e2, sizeof e2) < 0)
            snprintf(resp, sizeof resp, "%d", steps); /* no even stride: fall back to sections */
        free(keep);
    }
    char err[600];
    gd_diffusion *diff = gd_diffusion_new(mc->noise_schedule, mc->diffusion_steps, resp, err, sizeof err);
    if (!diff) die("%s", err);

    /* ---- labels and seeds ---- */
    int N = o.num_samples, B = o.batch_size;
    if (!o.seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o.seed = ((unsigned long long)ts.tv_sec * 1000003ull ^ (unsigned long long)ts.tv_nsec) % 1000000000ull;
    }
    int64_t *labels = calloc((size_t)((N + B - 1) / B * B), sizeof(int64_t)); /* room for a full last batch */
    int list[MAX_LABELS], nlist = 0, random_class = !o.classes || !strcmp(o.classes, "random");
    if (!random_class) {
        char buf[16384];
        snprintf(buf, sizeof buf, "%s", o.classes);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (nlist == MAX_LABELS) die("--class: at most %d classes in a list", MAX_LABELS);
            int id = tok[0] >= '0' && tok[0] <= '9' ? parse_int("--class", tok, 0, K - 1) : gd_config_class_id(mc, tok);
            if (id < 0) {
                char names[1024] = "", nb[128];
                for (int k = 0; k < K && gd_config_class_name(mc, k, nb, sizeof nb) == 0; k++)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "", nb);
                die("--class: unknown class '%s'%s%s", tok, *names ? "; the model's classes: " : " (the model has no class names)", names);
            }
            list[nlist++] = id;
        }
        if (!nlist) die("--class: empty list");
    }
    for (int i = 0; i < (N + B - 1) / B * B; i++) {
        unsigned long long gi = (unsigned long long)(o.first + i); /* the sample's global index */
        if (!random_class) {
            labels[i] = list[gi % (unsigned long long)nlist];
        } else if (!o.rng_torch) { /* per sample, from its own seed, so it can be regenerated alone */
            gd_rng r;
            gd_rng_seed(&r, (o.seed + gi) ^ 0x6c6162656cull);
            gd_rng_randint(&r, K, &labels[i], 1);
        }
    }

    /* ---- sampling ---- */
    const int C = mc->in_channels, S = mc->image_size, per = C * S * S;
    uint8_t *images = malloc((size_t)N * per);
    float *x = malloc(sizeof(float) * (size_t)B * per);
    int32_t *y = calloc((size_t)B, sizeof(int32_t)), *ynull = calloc((size_t)B, sizeof(int32_t));
    if (!labels || !images || !x || !y || !ynull) die("out of memory for %d samples", N);
    int nb = (N + B - 1) / B;
    progress pr = {o.quiet, nb * diff->K, 0, gd_time_now(), 0, isatty(2)};
    if (!o.quiet) {
        char cname[160] = "";
        if (nlist == 1 && !gd_config_class_name(mc, list[0], cname + 2, sizeof cname - 4)) {
            cname[0] = ' ', cname[1] = '(';
            strcat(cname, ")");
        }
        if (nlist == 1)
            fprintf(stderr, "%s: class %d%s\n", prog, list[0], cname);
        fprintf(stderr, "%s: seed %llu, %d samples, %s %s (%d steps), guidance %s%s%s%s\n", prog, o.seed, N,
                o.ddim ? "ddim" : "ddpm", resp, diff->K, o.use_classifier || o.use_cfg ? "" : "none",
                o.use_entropy ? "entropy" : o.use_classifier ? "classifier" : "", o.use_classifier && o.use_cfg ? "+" : "",
                o.use_cfg ? "cfg" : "");
    }
    if (o.verbose) {
        fprintf(stderr, "%s: %s\n", prog, gd_build_info());
        fprintf(stderr, "%s: model %s: %dx%dx%d, %d channels, class_cond %d, learn_sigma %d, %s schedule, %d steps\n", prog,
                model_path, C, S, S, mc->model_channels, mc->class_cond, mc->learn_sigma, mc->noise_schedule,
                mc->diffusion_steps);
    }
    double t_plan = 0, t_sample = 0;
    gd_net_denoiser den = {0};
    gd_classifier_guidance guide[MAX_CLASSIFIERS];
    memset(guide, 0, sizeof guide);
    gd_rng_noise noise = {0};
    gd_sampler *smp = NULL;
    int planned_b = 0;
    uint64_t seeds[4096];
    gd_rng torch_gen;
    gd_rng_seed(&torch_gen, o.seed);
    for (int b = 0; b < nb; b++) {
        /* --rng torch runs every batch at full size and drops the extra images of the last one, as
         * guided-diffusion's classifier_sample.py does: its generator stream then matches. */
        int n0 = b * B, nkeep = N - n0 < B ? N - n0 : B, nbat = o.rng_torch ? B : nkeep;
        if (nbat != planned_b) { /* plan once per distinct batch size (at most two) */
            double t0 = gd_time_now();
            gd_sampler_free(smp);
            gd_net_denoiser_free(&den);
            gd_rng_noise_free(&noise);
            for (int i = 0; i < o.n_classifiers; i++) gd_classifier_guidance_free(&guide[i]);
            for (int i = 0; i < nbat; i++) ynull[i] = mc->num_classes; /* the null label's index */
            if (gd_net_denoiser_init(&den, model, nbat, o.uncond ? ynull : y, o.use_cfg ? (float)o.cfg_scale : 1.0f, err, sizeof err)) die("%s", err);
            gd_guidance *chain = NULL;
            for (int i = o.use_classifier ? o.n_classifiers - 1 : -1; i >= 0; i--) {
                if (gd_classifier_guidance_init(&guide[i], cls[i], nbat, y, (float)o.scale, o.use_entropy, err, sizeof err))
                    die("%s", err);
                guide[i].t_lo = o.t_lo[i];
                guide[i].t_hi = o.t_hi[i];
                guide[i].eds_t_lo = o.eds_lo;
                guide[i].eds_t_hi = o.eds_hi;
                guide[i].base.next = chain;
                chain = &guide[i].base;
            }
            if (gd_rng_noise_init(&noise, nbat, per, !o.rng_torch)) die("out of memory");
            gd_sampler_params sp = {.diffusion = diff,
                                    .var_type = mc->learn_sigma ? GD_VAR_LEARNED_RANGE
                                                : mc->sigma_small ? GD_VAR_FIXED_SMALL
                                                                  : GD_VAR_FIXED_LARGE,
                                    .ddim = o.ddim, .eta = (float)o.eta, .clip_denoised = o.clip,
                                    .N = nbat, .C = C, .H = S, .W = S,
                                    .model = &den.base, .guidance = chain, .noise = &noise.base,
                                    .progress = on_step, .progress_user = &pr};
            smp = gd_sampler_new(&sp);
            if (!smp) die("out of memory");
            planned_b = nbat;
            t_plan += gd_time_now() - t0;
        }
        double t0 = gd_time_now();
        if (o.rng_torch) { /* guided-diffusion: one generator for the run; per batch labels, then randn */
            noise.gens[0] = torch_gen;
            if (random_class) gd_rng_randint(&noise.gens[0], K, labels + n0, nbat);
        } else {
            for (int i = 0; i < nbat; i++) seeds[i] = o.seed + (unsigned long long)(o.first + n0 + i);
            gd_rng_noise_seed(&noise, seeds);
        }
        for (int i = 0; i < nbat; i++) y[i] = (int32_t)labels[n0 + i];
        if (gd_sampler_run(smp, x)) die("sampling failed: %s", gd_last_error());
        if (o.rng_torch) torch_gen = noise.gens[0];
        gd_to_uint8(x, nkeep, C, S, S, images + (size_t)n0 * per);
        t_sample += gd_time_now() - t0;
    }

    /* ---- outputs ---- */
    double t0 = gd_time_now();
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "tool", "ddpm-sample");
    cJSON_AddStringToObject(js, "model", model_path);
    cJSON *ca = cJSON_AddArrayToObject(js, "classifiers");
    for (int i = 0; o.use_classifier && i < o.n_classifiers; i++) cJSON_AddItemToArray(ca, cJSON_CreateString(o.classifiers[i]));
    cJSON_AddStringToObject(js, "sampler", o.ddim ? "ddim" : "ddpm");
    cJSON_AddStringToObject(js, "respacing", resp);
    cJSON_AddNumberToObject(js, "steps", diff->K);
    cJSON_AddNumberToObject(js, "eta", o.eta);
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
    char cn[128];
    if (nlist == 1 && !gd_config_class_name(mc, list[0], cn, sizeof cn)) cJSON_AddStringToObject(js, "class_name", cn);
    if (labelled) {
        cJSON *la = cJSON_AddArrayToObject(js, "labels");
        for (int i = 0; i < N && i < 100000; i++) cJSON_AddItemToArray(la, cJSON_CreateNumber((double)labels[i]));
    }
    char *params = cJSON_PrintUnformatted(js);
    if (gd_write_png_grid(o.out, images, N, S, S, C, o.grid_cols, "parameters", params, err, sizeof err)) die("%s", err);
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", sidecar, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", params) < 0 || fclose(f) || rename(tmp, sidecar)) {
        unlink(tmp);
        unlink(o.out);
        die("cannot write %s", sidecar);
    }
    if (o.npz && gd_write_npz(o.npz, images, N, S, S, C, labelled ? labels : NULL, err, sizeof err)) die("%s", err);
    for (int i = 0; o.save_each && i < N; i++) {
        char p[PATH_MAX + 64];
        long long gi = o.first + i;
        if (labelled)
            snprintf(p, sizeof p, "%s/sample_%06lld_seed%llu_class%d.png", o.save_each, gi, o.seed + (unsigned long long)gi,
                     (int)labels[i]);
        else
            snprintf(p, sizeof p, "%s/sample_%06lld_seed%llu.png", o.save_each, gi, o.seed + (unsigned long long)gi);
        if (gd_write_png_grid(p, images + (size_t)i * per, 1, S, S, C, 1, "parameters", params, err, sizeof err)) die("%s", err);
    }
    double t_write = gd_time_now() - t0;
    if (!o.quiet)
        printf("%s: %d samples, seed %llu -> %s%s%s (%.1f s, %.3f s/step)\n", prog, N, o.seed, o.out, o.npz ? ", " : "",
               o.npz ? o.npz : "", gd_time_now() - t_start, t_sample / (nb * diff->K));
    if (o.verbose)
        fprintf(stderr, "%s: timings: load+plan %.2f s, sampling %.2f s, writing %.2f s\n", prog, t_plan, t_sample, t_write);
    free(params);
    cJSON_Delete(js);
    gd_sampler_free(smp);
    gd_net_denoiser_free(&den);
    gd_rng_noise_free(&noise);
    for (int i = 0; i < o.n_classifiers; i++) {
        gd_classifier_guidance_free(&guide[i]);
        gd_model_free(cls[i]);
    }
    gd_model_free(model);
    gd_diffusion_free(diff);
    free(labels);
    free(ynull);
    free(images);
    free(x);
    free(y);
    return 0;
}
