/* ddpm-eval: FID, precision/recall, an Inception-style score and accuracy of a sample batch, in
 * the feature space of the evaluator classifier; --make-ref builds the reference statistics. */
#include "cli/eval_inception.h"
#include "gd_cli.h"
#include "gd_dataset.h"
#include "gd_eval.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_safetensors.h"
#include "gd_tensor.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_EVALUATOR "models/fashion_evaluator.safetensors"
#define DEFAULT_REF "build/fashion_test_ref.safetensors"
#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    const char *samples, *ref, *make_ref, *evaluator, *labels, *resize, *baseline;
    int limit, batch, threads, split; /* limit -1: all; threads 0: all cores */
    int json, quiet, no_pr, no_cache;
    double tolerance; /* -1: the baseline's */
} options;

#define OPT(f) offsetof(options, f)
static const gd_cli_flag FLAGS[] = {
    {NULL, "--ref", "FILE", GD_CLI_STR, OPT(ref), .help = "reference statistics (default " DEFAULT_REF ", built by make)"},
    {NULL, "--make-ref", "OUT", GD_CLI_STR, OPT(make_ref),
     .help = "write reference statistics of SAMPLES to OUT (.safetensors: mu,\n"
             "sigma, features) instead of scoring; e.g.\n"
             "ddpm-eval --make-ref ref.safetensors fashion-mnist:test"},
    {NULL, "--evaluator", "PATH", GD_CLI_STR, OPT(evaluator),
     .help = "evaluator classifier (default " DEFAULT_EVALUATOR "), or the ImageNet\n"
             "evaluator: a file of the FID Inception's weights (pytorch-fid's .pth or its\n"
             ".safetensors), 'inception' ($GD_INCEPTION_WEIGHTS) or 'inception:random'\n"
             "(deterministic random weights, for tests and timing); see docs/evaluation.md"},
    {NULL, "--inception-resize", "tf|pytorch", GD_CLI_STR, OPT(resize),
     .help = "Inception input: the TF graph's own (legacy bilinear, (x-128)/128;\n"
             "default, = evaluator.py) or pytorch-fid's (x/255, half-pixel bilinear, 2x-1)"},
    {NULL, "--no-cache", NULL, GD_CLI_SWITCH, OPT(no_cache),
     .help = "Inception: do not read or write the reference batch's cached features\n"
             "($GD_CACHE_DIR, else $XDG_CACHE_HOME/ddpm-eval or ~/.cache/ddpm-eval; keyed by\n"
             "the reference file's bytes, the weights and the resize)"},
    {NULL, "--baseline", "FILE.json", GD_CLI_STR, OPT(baseline),
     .help = "regression gate: exit 1 when FID/sFID rise or IS, precision, recall,\n"
             "accuracy fall past the tolerances in FILE (see docs/evaluation.md)"},
    {NULL, "--tolerance", "REL", GD_CLI_DOUBLE, OPT(tolerance), .lo = 0, .hi = 100,
     .help = "relative FID/sFID tolerance of --baseline (default: the file's)"},
    {NULL, "--labels", "FILE", GD_CLI_STR, OPT(labels), .help = "labels for an IDX images file"},
    {NULL, "--limit", "N", GD_CLI_INT, OPT(limit), .lo = 1, .hi = 2147483647, .help = "use the first N images"},
    {NULL, "--no-pr", NULL, GD_CLI_SWITCH, OPT(no_pr), .help = "skip precision/recall (quadratic in the number of images)"},
    {NULL, "--is-split", "N", GD_CLI_INT, OPT(split), .lo = 1, .hi = 2147483647,
     .help = "images per Inception-score chunk (default 5000, as guided-diffusion)"},
    {NULL, "--json", NULL, GD_CLI_SWITCH, OPT(json), .help = "one JSON object on stdout instead of text"},
    {"-b", "--batch-size", "N", GD_CLI_INT, OPT(batch), .lo = 1, .hi = 4096,
     .help = "evaluator batch (default 100; Inception 16)"},
    {"-t", "--threads", "N", GD_CLI_INT, OPT(threads), .lo = 1, .hi = 1024, .help = "worker threads (default: all cores)"},
    {"-q", "--quiet", NULL, GD_CLI_SWITCH, OPT(quiet), .help = "no progress on stderr"},
    {0},
};
#undef OPT

static const gd_cli_spec SPEC = {
    .usage = "ddpm-eval [options] SAMPLES",
    .about = "Scores a batch of images in the feature space of an evaluator classifier (the pooled vector\n"
             "before its last layer) against reference statistics:\n"
             "  FID        Frechet distance of the feature Gaussians (double, LAPACK eigen-decompositions)\n"
             "  precision  fraction of samples inside the reference manifold (k = 3 nearest neighbours)\n"
             "  recall     fraction of reference images inside the samples' manifold (k = 3)\n"
             "  IS         exp(E KL(p(y|x) || p(y))) of the evaluator's predictions, chunks of --is-split\n"
             "  accuracy   evaluator top-1 against the samples' labels (arr_1, or classK in PNG names)\n"
             "These use the evaluator's features, not Inception's: compare numbers only between runs\n"
             "with the same evaluator and reference.\n"
             "SAMPLES: an .npz (arr_0 uint8 NHWC, arr_1 labels; ddpm-sample's or guided-diffusion's),\n"
             "  a folder of PNGs (flat, or one subfolder per class), an IDX images file (labels from\n"
             "  --labels or the matching *-labels-idx1-ubyte*), or fashion-mnist:test / fashion-mnist:train.\n",
    .flags = FLAGS,
    .footer = "With the Inception (ImageNet): SAMPLES and --ref are .npz batches (guided-diffusion's\n"
              "VIRTUAL_*.npz: its stored mu/sigma/mu_s/sigma_s give FID/sFID, its arr_0 precision/\n"
              "recall) or folders of images; the output is evaluator.py's Inception Score, FID,\n"
              "sFID, Precision, Recall; --make-ref OUT.npz writes a reference batch in that layout.\n"
              "  ddpm-eval --evaluator pt_inception-2015-12-05-6726825d.pth \\\n"
              "            --ref VIRTUAL_imagenet256_labeled.npz samples_50000x256x256x3.npz\n"
              "Exit status: 0 on success, 1 on a --baseline regression, 2 on bad input (one line on\n"
              "stderr).\n",
};

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* FNV-1a 64 of a file: ties reference statistics to the evaluator weights that made them. */
static int file_hash(const char *path, char out[17]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint64_t h = 1469598103934665603ull;
    unsigned char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < k; i++) h = (h ^ buf[i]) * 1099511628211ull;
    fclose(f);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return 0;
}

/* Images and labels (-1 = none) of SAMPLES, whatever its kind. */
static void load_images(const char *spec, const char *labels_path, int channels, int size, gd_dataset *d) {
    char err[1200], img[4096], lab[4096];
    memset(d, 0, sizeof *d);
    struct stat st;
    if (!strcmp(spec, "fashion-mnist:test") || !strcmp(spec, "fashion-mnist:train")) {
        const char *part = spec[14] == 't' && spec[15] == 'e' ? "t10k" : "train";
        snprintf(img, sizeof img, FASHION_DIR "/%s-images-idx3-ubyte.gz", part);
        snprintf(lab, sizeof lab, FASHION_DIR "/%s-labels-idx1-ubyte.gz", part);
        if (access(img, R_OK)) gd_cli_die("%s: %s not found (install Debian's dataset-fashion-mnist)", spec, img);
        if (gd_dataset_load_idx(img, lab, d, err, sizeof err)) gd_cli_die("%s", err);
        return;
    }
    if (stat(spec, &st)) gd_cli_die("%s: %s", spec, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (gd_dataset_load_folder(spec, channels, size, d, err, sizeof err)) gd_cli_die("%s", err);
        return;
    }
    if (ends_with(spec, ".npz")) {
        uint8_t *im;
        int64_t *l;
        int n, h, w, c;
        if (gd_read_npz(spec, &im, &n, &h, &w, &c, &l, err, sizeof err)) gd_cli_die("%s", err);
        d->images = im, d->n = n, d->h = h, d->w = w, d->c = c;
        d->labels = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        if (!d->labels) gd_cli_die("out of memory");
        int32_t mx = -1;
        for (int i = 0; i < n; i++) {
            d->labels[i] = l && l[i] >= 0 && l[i] < INT32_MAX ? (int32_t)l[i] : -1;
            mx = d->labels[i] > mx ? d->labels[i] : mx;
        }
        d->num_classes = mx + 1;
        free(l);
        return;
    }
    /* IDX: labels from --labels or the sibling file Fashion-MNIST's naming implies */
    snprintf(lab, sizeof lab, "%s", labels_path ? labels_path : spec);
    char *p = strstr(lab, "images-idx3");
    if (!labels_path && p) memcpy(p, "labels-idx1", 11);
    if (!labels_path && (!p || access(lab, R_OK))) gd_cli_die("%s: not an .npz or a folder; for IDX images pass --labels FILE", spec);
    if (gd_dataset_load_idx(spec, lab, d, err, sizeof err)) gd_cli_die("%s", err);
}

typedef struct {
    int quiet, tty;
    double last;
    const char *what;
} progress;

static void on_batch(int64_t done, int64_t n, void *user) {
    progress *p = user;
    double t = gd_time_now();
    if (p->quiet || (t - p->last < (p->tty ? 0.2 : 10.0) && done != n)) return;
    p->last = t;
    fprintf(stderr, "%s%s %lld/%lld images%s", p->tty ? "\r" : "", p->what, (long long)done, (long long)n,
            p->tty && done != n ? "" : "\n");
}

typedef struct {
    int dim;
    int64_t n;
    double *mu, *sigma;
    float *feats; /* NULL when the reference holds only mu/sigma */
    gd_st_file *file;
} ref_stats;

/* Every file the run reads, and --make-ref's output, which must be none of them (checked before
 * any work); returns the name --make-ref is written under until gd_cli_commit. */
static const char *register_files(const options *o) {
    gd_cli_input("--evaluator", o->evaluator);
    gd_cli_input("--ref", o->make_ref ? NULL : o->ref ? o->ref : DEFAULT_REF);
    if (strcmp(o->samples, "fashion-mnist:test") && strcmp(o->samples, "fashion-mnist:train")) gd_cli_input("SAMPLES", o->samples);
    gd_cli_input("--labels", o->labels);
    gd_cli_input("--baseline", o->baseline);
    const char *staged = o->make_ref ? gd_cli_output("--make-ref", o->make_ref) : NULL;
    gd_cli_check_files();
    return staged;
}

static void write_ref(const char *out, const ref_stats *r, const char *evaluator, const char *hash, const char *source,
                      double accuracy) {
    gd_st_writer *w = gd_st_writer_new();
    char err[600], num[32], acc[32];
    snprintf(acc, sizeof acc, "%.4f", accuracy);
    int64_t d = r->dim, dd[2] = {r->dim, r->dim}, fd[2] = {r->n, r->dim};
    snprintf(num, sizeof num, "%lld", (long long)r->n);
    const char *slash = strrchr(evaluator, '/');
    if (!w || gd_st_writer_add(w, "mu", GD_ST_F64, 1, &d, r->mu) || gd_st_writer_add(w, "sigma", GD_ST_F64, 2, dd, r->sigma) ||
        gd_st_writer_add(w, "features", GD_ST_F32, 2, fd, r->feats) || gd_st_writer_meta(w, "format", "ddpm-eval reference 1") ||
        gd_st_writer_meta(w, "evaluator", slash ? slash + 1 : evaluator) || gd_st_writer_meta(w, "evaluator_fnv1a64", hash) ||
        gd_st_writer_meta(w, "source", source) || gd_st_writer_meta(w, "count", num) ||
        (!isnan(accuracy) && gd_st_writer_meta(w, "accuracy", acc)))
        gd_cli_die("out of memory");
    if (gd_st_writer_save(w, out, err, sizeof err)) gd_cli_die("%s", err);
    gd_st_writer_free(w);
}

/* A --ref file: our .safetensors statistics, or an .npz image batch (guided-diffusion's reference
 * batches hold arr_0 images) whose statistics are computed here. */
static void read_ref(const char *path, const char *hash, gd_evaluator *ev, int channels, int size, progress *pr,
                     ref_stats *r) {
    char err[1200];
    memset(r, 0, sizeof *r);
    r->dim = gd_evaluator_dim(ev);
    if (ends_with(path, ".npz") || !ends_with(path, ".safetensors")) {
        gd_dataset d;
        load_images(path, NULL, channels, size, &d);
        if (d.n < 2) gd_cli_die("%s: a reference needs at least 2 images", path);
        r->n = d.n;
        r->mu = malloc(sizeof(double) * r->dim), r->sigma = malloc(sizeof(double) * r->dim * r->dim);
        r->feats = malloc(sizeof(float) * (size_t)d.n * r->dim);
        if (!r->mu || !r->sigma || !r->feats) gd_cli_die("out of memory");
        pr->what = "reference";
        if (gd_evaluator_run(ev, d.images, d.n, d.h, d.w, d.c, r->feats, NULL, on_batch, pr, err, sizeof err))
            gd_cli_die("%s: %s", path, err);
        if (gd_feature_stats(r->feats, r->n, r->dim, r->mu, r->sigma)) gd_cli_die("out of memory");
        gd_dataset_free(&d);
        return;
    }
    if (access(path, R_OK))
        gd_cli_die("%s: %s%s", path, strerror(errno),
            !strcmp(path, DEFAULT_REF) ? " (build it with `make ref`, which needs Debian's dataset-fashion-mnist)" : "");
    gd_st_file *f = gd_st_open(path, err, sizeof err);
    if (!f) gd_cli_die("%s", err);
    const char *fmt = gd_st_metadata(f, "format"), *h = gd_st_metadata(f, "evaluator_fnv1a64");
    if (!fmt || strcmp(fmt, "ddpm-eval reference 1")) gd_cli_die("%s: not ddpm-eval reference statistics (make them with --make-ref)", path);
    if (h && strcmp(h, hash))
        gd_cli_die("%s was made with a different evaluator (%s); rebuild it with --make-ref and this evaluator", path,
            gd_st_metadata(f, "evaluator") ? gd_st_metadata(f, "evaluator") : "?");
    const gd_st_tensor *mu = gd_st_find(f, "mu"), *sg = gd_st_find(f, "sigma"), *ft = gd_st_find(f, "features");
    int64_t D = r->dim;
    if (!mu || mu->dtype != GD_ST_F64 || mu->ndim != 1 || mu->shape[0] != D || !sg || sg->dtype != GD_ST_F64 ||
        sg->ndim != 2 || sg->shape[0] != D || sg->shape[1] != D)
        gd_cli_die("%s: needs F64 mu [%lld] and sigma [%lld, %lld] for this evaluator", path, (long long)D, (long long)D,
            (long long)D);
    r->mu = malloc(sizeof(double) * D), r->sigma = malloc(sizeof(double) * D * D);
    if (!r->mu || !r->sigma) gd_cli_die("out of memory");
    memcpy(r->mu, mu->data, sizeof(double) * D); /* the mapping may be unaligned for doubles */
    memcpy(r->sigma, sg->data, sizeof(double) * D * D);
    const char *cnt = gd_st_metadata(f, "count");
    char *end = NULL;
    errno = 0;
    r->n = cnt ? strtoll(cnt, &end, 10) : 0;
    if (cnt && (end == cnt || *end || errno || r->n < 0)) gd_cli_die("%s: metadata count '%s' is not a count of images", path, cnt);
    if (ft) {
        if (ft->dtype != GD_ST_F32 || ft->ndim != 2 || ft->shape[1] != D || ft->shape[0] < 4)
            gd_cli_die("%s: features must be F32 [N >= 4, %lld]", path, (long long)D);
        r->n = ft->shape[0];
        r->feats = malloc(ft->nbytes);
        if (!r->feats) gd_cli_die("out of memory");
        memcpy(r->feats, ft->data, ft->nbytes);
    }
    gd_st_close(f);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void parse_args(int argc, char **argv, options *o) {
    *o = (options){.evaluator = DEFAULT_EVALUATOR, .limit = -1, .batch = 0, .split = 5000, .tolerance = -1};
    const char *pos[2];
    int n = gd_cli_parse(&SPEC, argc, argv, o, pos, 2);
    if (n == 2) gd_cli_die("one SAMPLES argument expected, got '%s' too", pos[1]);
    if (n == 0) gd_cli_die("missing SAMPLES: an .npz, a folder of PNGs, an IDX file or fashion-mnist:test (see --help)");
    o->samples = pos[0];
    if (o->make_ref && o->ref) gd_cli_die("--make-ref writes reference statistics; --ref reads them: pick one");
}

/* What is printed: scores of the samples, and their accuracy per class against their labels. */
typedef struct {
    int64_t n, labelled, correct, *cl_n, *cl_ok;
    double is, fid, prec, rec, secs;
} scores;

/* Evaluator top-1 against the labels the samples carry (labels outside [0, K) do not count). */
static void count_correct(const gd_dataset *d, const float *logits, int K, scores *s) {
    s->labelled = s->correct = 0;
    s->cl_n = calloc((size_t)K, sizeof(int64_t)), s->cl_ok = calloc((size_t)K, sizeof(int64_t));
    if (!s->cl_n || !s->cl_ok) gd_cli_die("out of memory");
    for (int64_t i = 0; i < s->n; i++) {
        int y = d->labels ? d->labels[i] : -1;
        if (y < 0 || y >= K) continue;
        int best = 0;
        for (int c = 1; c < K; c++) best = logits[i * K + c] > logits[i * K + best] ? c : best;
        s->labelled++, s->correct += best == y;
        s->cl_n[y]++, s->cl_ok[y] += best == y;
    }
}

/* FID against the reference, and precision/recall when it holds features (unless --no-pr). */
static void compare_to_ref(const options *o, const ref_stats *r, const float *feats, int D, const double *mu,
                           const double *sigma, scores *s) {
    char err[1200];
    int64_t n = s->n;
    if (gd_frechet_distance(D, mu, sigma, r->mu, r->sigma, &s->fid, err, sizeof err)) gd_cli_die("FID: %s", err);
    if (!o->no_pr && r->feats && n > 3) {
        double *rs = malloc(sizeof(double) * (size_t)n), *rr = malloc(sizeof(double) * (size_t)r->n);
        if (!rs || !rr || gd_knn_radii(feats, n, D, 3, rs) || gd_knn_radii(r->feats, r->n, D, 3, rr) ||
            gd_precision_recall(r->feats, rr, r->n, feats, rs, n, D, &s->prec, &s->rec))
            gd_cli_die("precision/recall: out of memory");
        free(rs);
        free(rr);
    }
}

static void print_json(const options *o, const gd_config *cfg, int D, int K, const ref_stats *r, const scores *s) {
    char name[128];
    printf("{\"samples\": ");
    json_str(stdout, o->samples);
    printf(", \"count\": %lld, \"evaluator\": ", (long long)s->n);
    json_str(stdout, o->evaluator);
    printf(", \"feature_dim\": %d", D);
    if (o->make_ref) {
        printf(", \"reference_written\": ");
        json_str(stdout, o->make_ref);
    } else {
        printf(", \"ref\": ");
        json_str(stdout, o->ref);
        printf(", \"ref_count\": %lld, \"fid\": %.6f", (long long)r->n, s->fid);
        if (!isnan(s->prec)) printf(", \"precision\": %.6f, \"recall\": %.6f", s->prec, s->rec);
    }
    printf(", \"inception_score\": %.6f, \"is_split\": %d, \"labelled\": %lld", s->is, o->split, (long long)s->labelled);
    if (s->labelled) {
        printf(", \"accuracy\": %.6f, \"per_class\": {", (double)s->correct / s->labelled);
        int first = 1;
        for (int c = 0; c < K; c++) {
            if (!s->cl_n[c]) continue;
            gd_config_class_name(cfg, c, name, sizeof name);
            printf("%s", first ? "" : ", ");
            json_str(stdout, name);
            printf(": {\"count\": %lld, \"accuracy\": %.6f}", (long long)s->cl_n[c], (double)s->cl_ok[c] / s->cl_n[c]);
            first = 0;
        }
        printf("}");
    }
    printf(", \"seconds\": %.2f}\n", s->secs);
}

static void print_text(const options *o, const gd_config *cfg, int D, int K, const ref_stats *r, const scores *s) {
    char name[128];
    printf("samples     %s: %lld images\n", o->samples, (long long)s->n);
    printf("evaluator   %s (%d-d features, %d classes)\n", o->evaluator, D, K);
    if (o->make_ref) printf("reference   written to %s\n", o->make_ref);
    else {
        printf("reference   %s (%lld images)\n", o->ref, (long long)r->n);
        printf("FID         %.4f\n", s->fid);
        if (!isnan(s->prec)) printf("precision   %.4f\nrecall      %.4f\n", s->prec, s->rec);
    }
    printf("IS          %.4f  (evaluator space, chunks of %d)\n", s->is, o->split);
    if (s->labelled) {
        printf("accuracy    %.4f  (%lld labelled)\n", (double)s->correct / s->labelled, (long long)s->labelled);
        for (int c = 0; c < K; c++) {
            if (!s->cl_n[c]) continue;
            gd_config_class_name(cfg, c, name, sizeof name);
            printf("  %-14s %.4f  (%lld)\n", name, (double)s->cl_ok[c] / s->cl_n[c], (long long)s->cl_n[c]);
        }
    } else {
        printf("accuracy    - (no labels)\n");
    }
    printf("time        %.1f s\n", s->secs);
}

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-eval");
    options o;
    parse_args(argc, argv, &o);
    const char *weights;
    if (eval_is_inception(o.evaluator, &weights)) {
        if (o.labels) gd_cli_die("--labels: the Inception evaluator does not score accuracy");
        if (o.make_ref && !ends_with(o.make_ref, ".npz")) gd_cli_die("--make-ref: with the Inception the output is a reference batch, OUT.npz");
        gd_cli_input("--evaluator", weights);
        gd_cli_input("--ref", o.ref);
        gd_cli_input("SAMPLES", o.samples);
        gd_cli_input("--baseline", o.baseline);
        const char *staged = o.make_ref ? gd_cli_output("--make-ref", o.make_ref) : NULL;
        gd_cli_check_files();
        if (o.threads) gd_set_threads(o.threads);
        eval_inception_opts io = {o.samples, o.ref, staged, weights, o.resize, o.baseline, o.tolerance,
                                  o.limit, o.batch, o.split, o.json, o.quiet, o.no_pr, o.no_cache};
        return eval_inception_run(&io);
    }
    if (o.resize) gd_cli_die("--inception-resize: only with the Inception evaluator (--evaluator inception...)");
    if (o.make_ref && !ends_with(o.make_ref, ".safetensors")) gd_cli_die("--make-ref: the output name must end in .safetensors");
    if (!o.batch) o.batch = 100;
    const char *make_ref_staged = register_files(&o);
    if (o.threads) gd_set_threads(o.threads);

    char err[1200], hash[17];
    gd_model *m = gd_model_load(o.evaluator, NULL, err, sizeof err);
    if (!m)
        gd_cli_die("%s%s", err,
            !strcmp(o.evaluator, DEFAULT_EVALUATOR) && access(o.evaluator, R_OK) ? " (run from the repository root, or pass --evaluator)" : "");
    if (file_hash(o.evaluator, hash)) gd_cli_die("%s: %s", o.evaluator, strerror(errno));
    const gd_config *cfg = gd_model_config(m);
    gd_evaluator *ev = gd_evaluator_new(m, o.batch, err, sizeof err);
    if (!ev) gd_cli_die("%s: %s", o.evaluator, err);
    const int D = gd_evaluator_dim(ev), K = gd_evaluator_classes(ev);
    progress pr = {o.quiet || o.json, isatty(2), 0, "samples"};

    /* the reference first: a wrong or mismatched file fails before minutes of feature work */
    ref_stats r = {0};
    if (!o.make_ref) {
        if (!o.ref) o.ref = DEFAULT_REF;
        read_ref(o.ref, hash, ev, cfg->in_channels, cfg->image_size, &pr, &r);
    }
    gd_dataset d;
    load_images(o.samples, o.labels, cfg->in_channels, cfg->image_size, &d);
    int64_t n = o.limit > 0 && o.limit < d.n ? o.limit : d.n;
    if (n < 2) gd_cli_die("%s: at least 2 images needed, found %lld", o.samples, (long long)n);
    if (d.h != cfg->image_size || d.w != cfg->image_size || d.c != cfg->in_channels)
        gd_cli_die("%s: images are %dx%dx%d (HxWxC); the evaluator takes %dx%dx%d", o.samples, d.h, d.w, d.c, cfg->image_size,
            cfg->image_size, cfg->in_channels);
    float *feats = malloc(sizeof(float) * (size_t)n * D), *logits = malloc(sizeof(float) * (size_t)n * K);
    double *mu = malloc(sizeof(double) * D), *sigma = malloc(sizeof(double) * D * D);
    if (!feats || !logits || !mu || !sigma) gd_cli_die("out of memory");
    double t0 = gd_time_now();
    if (gd_evaluator_run(ev, d.images, n, d.h, d.w, d.c, feats, logits, on_batch, &pr, err, sizeof err))
        gd_cli_die("%s: %s", o.samples, err);
    if (gd_feature_stats(feats, n, D, mu, sigma)) gd_cli_die("out of memory");

    scores s = {.n = n, .fid = NAN, .prec = NAN, .rec = NAN};
    count_correct(&d, logits, K, &s);
    s.is = gd_inception_score(logits, n, K, o.split);
    if (o.make_ref) {
        r = (ref_stats){.dim = D, .n = n, .mu = mu, .sigma = sigma, .feats = feats};
        write_ref(make_ref_staged, &r, o.evaluator, hash, o.samples, s.labelled ? (double)s.correct / s.labelled : NAN);
        gd_cli_commit();
        r = (ref_stats){0};
    } else {
        compare_to_ref(&o, &r, feats, D, mu, sigma, &s);
    }
    s.secs = gd_time_now() - t0;
    if (o.json) print_json(&o, cfg, D, K, &r, &s);
    else print_text(&o, cfg, D, K, &r, &s);
    int status = 0;
    if (o.baseline) {
        gd_eval_scores sc = {s.is, s.fid, NAN, s.prec, s.rec, s.labelled ? (double)s.correct / s.labelled : NAN};
        status = eval_gate_file(o.baseline, &sc, o.tolerance);
    }

    free(r.mu);
    free(r.sigma);
    free(r.feats);
    free(feats);
    free(logits);
    free(mu);
    free(sigma);
    free(s.cl_n);
    free(s.cl_ok);
    gd_dataset_free(&d);
    gd_evaluator_free(ev);
    gd_model_free(m);
    return status;
}
