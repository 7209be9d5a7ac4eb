/* ddpm-eval: FID, precision/recall, an Inception-style score and accuracy of a sample batch, in
 * the feature space of the evaluator classifier; --make-ref builds the reference statistics. */
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

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddpm-eval [options] SAMPLES\n"
            "Scores a batch of images in the feature space of an evaluator classifier (the pooled vector\n"
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
            "  --labels or the matching *-labels-idx1-ubyte*), or fashion-mnist:test / fashion-mnist:train.\n"
            "  --ref FILE            reference statistics (default " DEFAULT_REF ", built by make)\n"
            "  --make-ref OUT        write reference statistics of SAMPLES to OUT (.safetensors: mu,\n"
            "                        sigma, features) instead of scoring; e.g.\n"
            "                        ddpm-eval --make-ref ref.safetensors fashion-mnist:test\n"
            "  --evaluator PATH      evaluator classifier (default " DEFAULT_EVALUATOR ")\n"
            "  --labels FILE         labels for an IDX images file\n"
            "  --limit N             use the first N images\n"
            "  --no-pr               skip precision/recall (quadratic in the number of images)\n"
            "  --is-split N          images per Inception-score chunk (default 5000, as guided-diffusion)\n"
            "  --json                one JSON object on stdout instead of text\n"
            "  -b, --batch-size N    evaluator batch (default 100)\n"
            "  -t, --threads N       worker threads (default: all cores)\n"
            "  -q, --quiet           no progress on stderr\n"
            "  -h, --help            this help\n"
            "Exit status: 0 on success, 2 on bad input (one line on stderr).\n");
}

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
    r->n = cnt ? atoll(cnt) : 0;
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

int main(int argc, char **argv) {
    gd_cli_set_program("ddpm-eval");
    const char *samples = NULL, *ref_path = NULL, *make_ref = NULL, *evaluator = DEFAULT_EVALUATOR, *labels_path = NULL;
    long limit = -1, batch = 100, threads = 0, split = 5000;
    int json = 0, quiet = 0, no_pr = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--no-pr")) no_pr = 1;
        else if (a[0] == '-' && a[1]) {
            const char *v = i + 1 < argc ? argv[i + 1] : NULL;
            if (!v) gd_cli_die("%s needs a value (see --help)", a);
            i++;
            if (!strcmp(a, "--ref")) ref_path = v;
            else if (!strcmp(a, "--make-ref")) make_ref = v;
            else if (!strcmp(a, "--evaluator")) evaluator = v;
            else if (!strcmp(a, "--labels")) labels_path = v;
            else if (!strcmp(a, "--limit")) limit = gd_cli_long(a, v, 1, 2147483647L);
            else if (!strcmp(a, "--is-split")) split = gd_cli_long(a, v, 1, 2147483647L);
            else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) batch = gd_cli_long(a, v, 1, 4096);
            else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = gd_cli_long(a, v, 1, 1024);
            else gd_cli_die("unknown option %s (see --help)", a);
        } else if (!samples) samples = a;
        else gd_cli_die("one SAMPLES argument expected, got '%s' too", a);
    }
    if (!samples) {
        usage(stderr);
        return 2;
    }
    if (make_ref && ref_path) gd_cli_die("--make-ref writes reference statistics; --ref reads them: pick one");
    if (make_ref && !ends_with(make_ref, ".safetensors")) gd_cli_die("--make-ref: the output name must end in .safetensors");
    if (threads) gd_set_threads((int)threads);

    char err[1200], hash[17];
    gd_model *m = gd_model_load(evaluator, NULL, err, sizeof err);
    if (!m)
        gd_cli_die("%s%s", err,
            !strcmp(evaluator, DEFAULT_EVALUATOR) && access(evaluator, R_OK) ? " (run from the repository root, or pass --evaluator)" : "");
    if (file_hash(evaluator, hash)) gd_cli_die("%s: %s", evaluator, strerror(errno));
    const gd_config *cfg = gd_model_config(m);
    gd_evaluator *ev = gd_evaluator_new(m, (int)batch, err, sizeof err);
    if (!ev) gd_cli_die("%s: %s", evaluator, err);
    const int D = gd_evaluator_dim(ev), K = gd_evaluator_classes(ev);
    progress pr = {quiet || json, isatty(2), 0, "samples"};

    /* the reference first: a wrong or mismatched file fails before minutes of feature work */
    ref_stats r = {0};
    if (!make_ref) {
        if (!ref_path) ref_path = DEFAULT_REF;
        read_ref(ref_path, hash, ev, cfg->in_channels, cfg->image_size, &pr, &r);
    }
    gd_dataset d;
    load_images(samples, labels_path, cfg->in_channels, cfg->image_size, &d);
    int64_t n = limit > 0 && limit < d.n ? limit : d.n;
    if (n < 2) gd_cli_die("%s: at least 2 images needed, found %lld", samples, (long long)n);
    if (d.h != cfg->image_size || d.w != cfg->image_size || d.c != cfg->in_channels)
        gd_cli_die("%s: images are %dx%dx%d (HxWxC); the evaluator takes %dx%dx%d", samples, d.h, d.w, d.c, cfg->image_size,
            cfg->image_size, cfg->in_channels);
    float *feats = malloc(sizeof(float) * (size_t)n * D), *logits = malloc(sizeof(float) * (size_t)n * K);
    double *mu = malloc(sizeof(double) * D), *sigma = malloc(sizeof(double) * D * D);
    if (!feats || !logits || !mu || !sigma) gd_cli_die("out of memory");
    double t0 = gd_time_now();
    if (gd_evaluator_run(ev, d.images, n, d.h, d.w, d.c, feats, logits, on_batch, &pr, err, sizeof err))
        gd_cli_die("%s: %s", samples, err);
    if (gd_feature_stats(feats, n, D, mu, sigma)) gd_cli_die("out of memory");

    /* accuracy against the labels the samples carry */
    int64_t labelled = 0, correct = 0, *cl_n = calloc((size_t)K, sizeof(int64_t)), *cl_ok = calloc((size_t)K, sizeof(int64_t));
    if (!cl_n || !cl_ok) gd_cli_die("out of memory");
    for (int64_t i = 0; i < n; i++) {
        int y = d.labels ? d.labels[i] : -1;
        if (y < 0 || y >= K) continue;
        int best = 0;
        for (int c = 1; c < K; c++) best = logits[i * K + c] > logits[i * K + best] ? c : best;
        labelled++, correct += best == y;
        cl_n[y]++, cl_ok[y] += best == y;
    }
    double is = gd_inception_score(logits, n, K, split);

    double fid = NAN, prec = NAN, rec = NAN;
    if (make_ref) {
        r = (ref_stats){.dim = D, .n = n, .mu = mu, .sigma = sigma, .feats = feats};
        write_ref(make_ref, &r, evaluator, hash, samples, labelled ? (double)correct / labelled : NAN);
        r = (ref_stats){0};
    } else {
        if (gd_frechet_distance(D, mu, sigma, r.mu, r.sigma, &fid, err, sizeof err)) gd_cli_die("FID: %s", err);
        if (!no_pr && r.feats && n > 3) {
            double *rs = malloc(sizeof(double) * (size_t)n), *rr = malloc(sizeof(double) * (size_t)r.n);
            if (!rs || !rr || gd_knn_radii(feats, n, D, 3, rs) || gd_knn_radii(r.feats, r.n, D, 3, rr) ||
                gd_precision_recall(r.feats, rr, r.n, feats, rs, n, D, &prec, &rec))
                gd_cli_die("precision/recall: out of memory");
            free(rs);
            free(rr);
        }
    }
    double secs = gd_time_now() - t0;

    char name[128];
    if (json) {
        printf("{\"samples\": ");
        json_str(stdout, samples);
        printf(", \"count\": %lld, \"evaluator\": ", (long long)n);
        json_str(stdout, evaluator);
        printf(", \"feature_dim\": %d", D);
        if (make_ref) {
            printf(", \"reference_written\": ");
            json_str(stdout, make_ref);
        } else {
            printf(", \"ref\": ");
            json_str(stdout, ref_path);
            printf(", \"ref_count\": %lld, \"fid\": %.6f", (long long)r.n, fid);
            if (!isnan(prec)) printf(", \"precision\": %.6f, \"recall\": %.6f", prec, rec);
        }
        printf(", \"inception_score\": %.6f, \"is_split\": %ld, \"labelled\": %lld", is, split, (long long)labelled);
        if (labelled) {
            printf(", \"accuracy\": %.6f, \"per_class\": {", (double)correct / labelled);
            int first = 1;
            for (int c = 0; c < K; c++) {
                if (!cl_n[c]) continue;
                gd_config_class_name(cfg, c, name, sizeof name);
                printf("%s", first ? "" : ", ");
                json_str(stdout, name);
                printf(": {\"count\": %lld, \"accuracy\": %.6f}", (long long)cl_n[c], (double)cl_ok[c] / cl_n[c]);
                first = 0;
            }
            printf("}");
        }
        printf(", \"seconds\": %.2f}\n", secs);
    } else {
        printf("samples     %s: %lld images\n", samples, (long long)n);
        printf("evaluator   %s (%d-d features, %d classes)\n", evaluator, D, K);
        if (make_ref) printf("reference   written to %s\n", make_ref);
        else {
            printf("reference   %s (%lld images)\n", ref_path, (long long)r.n);
            printf("FID         %.4f\n", fid);
            if (!isnan(prec)) printf("precision   %.4f\nrecall      %.4f\n", prec, rec);
        }
        printf("IS          %.4f  (evaluator space, chunks of %ld)\n", is, split);
        if (labelled) {
            printf("accuracy    %.4f  (%lld labelled)\n", (double)correct / labelled, (long long)labelled);
            for (int c = 0; c < K; c++) {
                if (!cl_n[c]) continue;
                gd_config_class_name(cfg, c, name, sizeof name);
                printf("  %-14s %.4f  (%lld)\n", name, (double)cl_ok[c] / cl_n[c], (long long)cl_n[c]);
            }
        } else {
            printf("accuracy    - (no labels)\n");
        }
        printf("time        %.1f s\n", secs);
    }
    free(r.mu);
    free(r.sigma);
    free(r.feats);
    free(feats);
    free(logits);
    free(mu);
    free(sigma);
    free(cl_n);
    free(cl_ok);
    gd_dataset_free(&d);
    gd_evaluator_free(ev);
    gd_model_free(m);
    return 0;
}
