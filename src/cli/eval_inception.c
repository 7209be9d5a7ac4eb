/* ddpm-eval with the FID Inception: features of the samples (streamed from an .npz or a folder),
 * statistics as evaluations/evaluator.py computes them, scores against a reference batch
 * (guided-diffusion's VIRTUAL_*.npz layout), its printout, and the regression gate. */
#include "cli/eval_inception.h"
#include "gd_cli.h"
#include "gd_dataset.h"
#include "gd_eval.h"
#include "gd_image.h"
#include "gd_inception.h"
#include "gd_pt.h"
#include "gd_safetensors.h"
#include "gd_tensor.h"
#include "gd_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { P = GD_INCEPTION_POOL, S = GD_INCEPTION_SPATIAL, K = GD_INCEPTION_CLASSES };

int eval_is_inception(const char *evaluator, const char **weights) {
    *weights = NULL;
    if (!strcmp(evaluator, "inception:random")) return 1;
    if (!strcmp(evaluator, "inception")) {
        *weights = getenv("GD_INCEPTION_WEIGHTS");
        if (!*weights || !**weights)
            gd_cli_die("--evaluator inception: set GD_INCEPTION_WEIGHTS to the FID Inception weights "
                       "(pt_inception-2015-12-05-6726825d.pth, or its .safetensors from scripts/convert_inception.py; "
                       "see docs/evaluation.md), or pass the file itself");
        return 1;
    }
    FILE *f = fopen(evaluator, "rb");
    if (!f) return 0; /* the classifier path reports it */
    uint8_t head[512];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    char err[256];
    gd_st_file *st = gd_pt_sniff(head, n) ? gd_pt_open(evaluator, err, sizeof err) : gd_st_open(evaluator, err, sizeof err);
    int yes = st && gd_st_find(st, "Mixed_7c.branch_pool.conv.weight") != NULL;
    gd_st_close(st);
    if (yes) *weights = evaluator;
    return yes;
}

/* ---- images, a batch at a time ---- */

typedef struct {
    gd_npz_stream *npz;
    gd_dataset ds; /* a folder (decoded whole) */
    int64_t n, pos;
    int h, w, c;
    const char *name;
} source;

static void source_open(source *s, const char *spec, int limit) {
    memset(s, 0, sizeof *s);
    s->name = spec;
    char err[600];
    struct stat st;
    if (stat(spec, &st)) gd_cli_die("%s: %s", spec, strerror(errno));
    int n, h, w, c;
    if (S_ISDIR(st.st_mode)) {
        if (gd_dataset_load_folder(spec, 3, 0, &s->ds, err, sizeof err)) gd_cli_die("%s", err);
        n = s->ds.n, h = s->ds.h, w = s->ds.w, c = s->ds.c;
    } else {
        if (!(s->npz = gd_npz_stream_open(spec, &n, &h, &w, &c, err, sizeof err))) gd_cli_die("%s", err);
        if (c != 1 && c != 3) gd_cli_die("%s: arr_0 has %d channels; the Inception takes RGB (3) or gray (1)", spec, c);
    }
    s->n = limit > 0 && limit < n ? limit : n;
    s->h = h, s->w = w, s->c = c;
}

static void source_read(source *s, uint8_t *out, int k) {
    char err[600];
    if (s->npz) {
        if (gd_npz_stream_read(s->npz, out, k, err, sizeof err)) gd_cli_die("%s", err);
    } else {
        memcpy(out, s->ds.images + (size_t)s->pos * s->h * s->w * s->c, (size_t)k * s->h * s->w * s->c);
    }
    s->pos += k;
}

static void source_close(source *s) {
    gd_npz_stream_close(s->npz);
    if (!s->npz) gd_dataset_free(&s->ds);
}

typedef struct {
    int64_t n;
    float *pool, *spatial, *logits; /* [n, P], [n, S] or NULL, [n, K] or NULL */
} features;

static void progress_line(const char *what, int64_t done, int64_t n, double t0, int quiet) {
    static double last;
    double t = gd_time_now();
    int tty = isatty(2);
    if (quiet || (t - last < (tty ? 0.5 : 30.0) && done != n)) return;
    last = t;
    double rate = done / (t - t0 > 1e-9 ? t - t0 : 1e-9), eta = rate > 0 ? (n - done) / rate : 0;
    int w = 24, fill = n ? (int)(w * done / n) : w;
    char bar[32];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "%s%-10s [%s] %lld/%lld images, %.2f images/s, ETA %dh%02dm%02ds%s", tty ? "\r" : "", what, bar,
            (long long)done, (long long)n, rate, (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60),
            tty && done != n ? "" : "\n");
}

/* Runs every image of src through the network (and into wr when given, for --make-ref). */
static void extract(gd_inception_eval *ev, int batch, source *src, int want_spatial, int want_logits, gd_npz_writer *wr,
                    const char *what, int quiet, features *f) {
    f->n = src->n;
    f->pool = malloc(sizeof(float) * P * (size_t)f->n);
    f->spatial = want_spatial ? malloc(sizeof(float) * S * (size_t)f->n) : NULL;
    f->logits = want_logits ? malloc(sizeof(float) * K * (size_t)f->n) : NULL;
    uint8_t *buf = malloc((size_t)batch * src->h * src->w * src->c);
    if (!f->pool || (want_spatial && !f->spatial) || (want_logits && !f->logits) || !buf)
        gd_cli_die("out of memory for the features of %lld images", (long long)f->n);
    char err[600];
    double t0 = gd_time_now();
    for (int64_t i = 0; i < f->n; i += batch) {
        int k = (int)(f->n - i < batch ? f->n - i : batch);
        source_read(src, buf, k);
        if (wr && gd_npz_writer_images(wr, buf, k, err, sizeof err)) gd_cli_die("%s", err);
        if (gd_inception_eval_run(ev, buf, k, src->h, src->w, src->c, f->pool + i * P, f->spatial ? f->spatial + i * S : NULL,
                                  f->logits ? f->logits + i * K : NULL, err, sizeof err))
            gd_cli_die("%s: %s", src->name, err);
        progress_line(what, i + k, f->n, t0, quiet);
    }
    free(buf);
}

/* ---- the reference's features, cached: evaluator.py reruns 10,000 reference images (1.9 h on
 * 2 cores) on every evaluation; the cache key is the reference file's bytes, the weights and the
 * preprocessing ---- */

static int mkdirs(char *path) {
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            int bad = mkdir(path, 0755) != 0 && errno != EEXIST;
            *p = '/';
            if (bad) return -1;
        }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* DIR/inception-<weights>-<resize>-<fnv1a64 of the file>.safetensors, or "" when no cache dir */
static void cache_name(const char *ref, const gd_inception *net, int resize, char *out, size_t n) {
    const char *d = getenv("GD_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char dir[4096];
    if (d && *d) snprintf(dir, sizeof dir, "%s", d);
    else if (x && *x) snprintf(dir, sizeof dir, "%s/ddpm-eval", x);
    else if (h && *h) snprintf(dir, sizeof dir, "%s/.cache/ddpm-eval", h);
    else {
        out[0] = 0;
        return;
    }
    FILE *f = fopen(ref, "rb");
    uint64_t hash = 0xcbf29ce484222325ull;
    static unsigned char buf[1 << 16];
    size_t k;
    while (f && (k = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < k; i++) hash = (hash ^ buf[i]) * 0x100000001b3ull;
    if (f) fclose(f);
    if (!f || mkdirs(dir)) {
        out[0] = 0;
        return;
    }
    snprintf(out, n, "%s/inception-%s-%s-%016llx.safetensors", dir, gd_inception_weights_id(net), resize ? "pytorch" : "tf",
             (unsigned long long)hash);
}

/* 1 when the cache held the features (pool, and spatial when asked) of all n images */
static int cache_load(const char *path, int64_t n, int want_spatial, features *f) {
    char err[600];
    gd_st_file *st = path[0] ? gd_st_open(path, err, sizeof err) : NULL;
    if (!st) return 0;
    const gd_st_tensor *p = gd_st_find(st, "pool"), *s = gd_st_find(st, "spatial");
    int ok = p && p->dtype == GD_ST_F32 && p->ndim == 2 && p->shape[0] == n && p->shape[1] == P &&
             (!want_spatial || (s && s->dtype == GD_ST_F32 && s->ndim == 2 && s->shape[0] == n && s->shape[1] == S));
    if (ok) {
        f->n = n;
        f->pool = malloc(p->nbytes);
        f->spatial = want_spatial ? malloc(s->nbytes) : NULL;
        if (!f->pool || (want_spatial && !f->spatial)) gd_cli_die("out of memory for the reference features");
        memcpy(f->pool, p->data, p->nbytes);
        if (want_spatial) memcpy(f->spatial, s->data, s->nbytes);
    }
    gd_st_close(st);
    return ok;
}

static void cache_save(const char *path, const features *f, const char *ref) {
    if (!path[0]) return;
    char err[600];
    gd_st_writer *w = gd_st_writer_new();
    int64_t sp[2] = {f->n, P}, ss[2] = {f->n, S};
    if (w && !gd_st_writer_add(w, "pool", GD_ST_F32, 2, sp, f->pool) &&
        (!f->spatial || !gd_st_writer_add(w, "spatial", GD_ST_F32, 2, ss, f->spatial)) &&
        !gd_st_writer_meta(w, "reference", ref) && gd_st_writer_save(w, path, err, sizeof err))
        fprintf(stderr, "ddpm-eval: warning: reference features not cached: %s\n", err);
    gd_st_writer_free(w);
}

typedef struct {
    double *mu, *sigma; /* [d], [d, d] */
} gauss;

/* evaluator.py's statistics: the float32 mean, the float64 covariance */
static gauss stats_of(const float *x, int64_t n, int d) {
    gauss g = {malloc(sizeof(double) * d), malloc(sizeof(double) * (size_t)d * d)};
    float *m32 = malloc(sizeof(float) * d);
    if (!g.mu || !g.sigma || !m32 || gd_feature_stats(x, n, d, g.mu, g.sigma)) gd_cli_die("out of memory for statistics");
    gd_feature_mean_f32(x, n, d, m32);
    for (int j = 0; j < d; j++) g.mu[j] = m32[j];
    free(m32);
    return g;
}

static double *ref_array(const char *path, const char *name, int d, int square) {
    double *v;
    int nd;
    int64_t sh[4];
    char err[600];
    int rc = gd_npz_read_f64(path, name, &v, &nd, sh, err, sizeof err);
    if (rc < 0) gd_cli_die("%s", err);
    if (rc > 0) gd_cli_die("%s: has 'mu' but no '%s' (a reference batch holds mu, sigma, mu_s, sigma_s)", path, name);
    if (nd != 1 + square || sh[0] != d || (square && sh[1] != d))
        gd_cli_die("%s: '%s' must be [%d%s], as the Inception's %s features", path, name, d, square ? ", same" : "",
                   d == P ? "pool_3" : "spatial");
    for (int64_t i = 0; i < (int64_t)d * (square ? d : 1); i++)
        if (!isfinite(v[i])) gd_cli_die("%s: '%s' holds NaN or Inf", path, name);
    return v;
}

/* Python's repr of a float: the shortest decimal that reads back as the same double */
static void pyfloat(char *buf, size_t n, double v) {
    if (isnan(v)) {
        snprintf(buf, n, "nan");
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eninf")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static void json_num(FILE *f, const char *k, double v, int last) {
    char b[40];
    pyfloat(b, sizeof b, v);
    fprintf(f, "\"%s\": %s%s", k, isfinite(v) ? b : "null", last ? "" : ", ");
}

int eval_gate_file(const char *path, const gd_eval_scores *sc, double tolerance) {
    char err[600];
    FILE *f = fopen(path, "rb");
    if (!f) gd_cli_die("--baseline %s: %s", path, strerror(errno));
    static char js[1 << 16];
    size_t n = fread(js, 1, sizeof js - 1, f);
    int big = !feof(f);
    fclose(f);
    if (big) gd_cli_die("--baseline %s: larger than 64 KiB: not a baseline", path);
    js[n] = 0;
    char report[2048];
    int g = gd_eval_gate(js, sc, tolerance, report, sizeof report, err, sizeof err);
    if (g < 0) gd_cli_die("--baseline %s: %s", path, err);
    fputs(report, stderr);
    if (g) fprintf(stderr, "ddpm-eval: regression against %s\n", path);
    return g ? 1 : 0;
}

int eval_inception_run(const eval_inception_opts *o) {
    char err[600];
    int resize = !o->resize || !strcmp(o->resize, "tf") ? GD_INCEPTION_RESIZE_TF
                 : !strcmp(o->resize, "pytorch")        ? GD_INCEPTION_RESIZE_PYTORCH
                                                        : -1;
    if (resize < 0) gd_cli_die("--inception-resize: '%s' is not tf or pytorch", o->resize);
    int batch = o->batch > 0 ? o->batch : 16;
    gd_inception *net = o->weights ? gd_inception_load(o->weights, batch, err, sizeof err) : gd_inception_random(batch, err, sizeof err);
    if (!net) gd_cli_die("%s", err);
    if (!o->weights && !o->quiet)
        fprintf(stderr, "ddpm-eval: inception:random: deterministic random weights (tests and timing only; the scores mean nothing)\n");
    gd_inception_eval *ev = gd_inception_eval_new(net, resize, err, sizeof err);
    if (!ev) gd_cli_die("%s", err);
    int quiet = o->quiet || o->json;
    double t0 = gd_time_now();

    /* the reference first, so that a bad file fails before hours of sample features */
    gauss rp = {0}, rs = {0};
    features rf = {0};
    if (o->ref) {
        int has = gd_npz_has(o->ref, "mu", err, sizeof err);
        if (has < 0) gd_cli_die("%s", err);
        if (has) {
            rp = (gauss){ref_array(o->ref, "mu", P, 0), ref_array(o->ref, "sigma", P, 1)};
            rs = (gauss){ref_array(o->ref, "mu_s", S, 0), ref_array(o->ref, "sigma_s", S, 1)};
        }
        if (!has || !o->no_pr) {
            source src;
            source_open(&src, o->ref, 0);
            if (src.n < 2) gd_cli_die("%s: at least 2 reference images needed, found %lld", o->ref, (long long)src.n);
            char cpath[4600] = "";
            if (!o->no_cache) cache_name(o->ref, net, resize, cpath, sizeof cpath);
            if (cache_load(cpath, src.n, !has, &rf)) {
                if (!quiet) fprintf(stderr, "ddpm-eval: reference features of %lld images from the cache %s\n", (long long)rf.n, cpath);
            } else {
                extract(ev, batch, &src, !has, 0, NULL, "reference", quiet, &rf);
                cache_save(cpath, &rf, o->ref);
            }
            source_close(&src);
            if (!has) {
                rp = stats_of(rf.pool, rf.n, P);
                rs = stats_of(rf.spatial, rf.n, S);
            }
        }
    }

    source src;
    source_open(&src, o->samples, o->limit);
    if (src.n < 2) gd_cli_die("%s: at least 2 images needed, found %lld", o->samples, (long long)src.n);
    gd_npz_writer *wr = NULL;
    if (o->make_ref && !(wr = gd_npz_writer_open(o->make_ref, (int)src.n, src.h, src.w, src.c, err, sizeof err)))
        gd_cli_die("%s", err);
    features sf;
    extract(ev, batch, &src, 1, 1, wr, "samples", quiet, &sf);
    source_close(&src);
    gauss sp = stats_of(sf.pool, sf.n, P), ss = stats_of(sf.spatial, sf.n, S);

    if (wr) {
        int64_t s1[1] = {P}, s2[2] = {P, P}, t1[1] = {S}, t2[2] = {S, S};
        if (gd_npz_writer_f64(wr, "mu", sp.mu, 1, s1, err, sizeof err) || gd_npz_writer_f64(wr, "sigma", sp.sigma, 2, s2, err, sizeof err) ||
            gd_npz_writer_f64(wr, "mu_s", ss.mu, 1, t1, err, sizeof err) ||
            gd_npz_writer_f64(wr, "sigma_s", ss.sigma, 2, t2, err, sizeof err) || gd_npz_writer_commit(wr, err, sizeof err))
            gd_cli_die("%s", err);
        gd_cli_commit();
        if (!o->quiet)
            fprintf(stderr, "ddpm-eval: reference batch of %lld images (arr_0, mu, sigma, mu_s, sigma_s) written\n", (long long)sf.n);
    }

    gd_eval_scores sc = {NAN, NAN, NAN, NAN, NAN, NAN};
    sc.inception_score = gd_inception_score(sf.logits, sf.n, K, o->split > 0 ? o->split : 5000);
    if (rp.mu) {
        /* fewer samples than dimensions: the n x n route (same value, no 2048^2 eigen-decomposition) */
        int rows = sf.n <= S;
        if (rows ? gd_frechet_distance_rows(P, sf.pool, sf.n, sp.mu, rp.mu, rp.sigma, &sc.fid, err, sizeof err)
                 : gd_frechet_distance(P, sp.mu, sp.sigma, rp.mu, rp.sigma, &sc.fid, err, sizeof err))
            gd_cli_die("FID: %s", err);
        if (rows ? gd_frechet_distance_rows(S, sf.spatial, sf.n, ss.mu, rs.mu, rs.sigma, &sc.sfid, err, sizeof err)
                 : gd_frechet_distance(S, ss.mu, ss.sigma, rs.mu, rs.sigma, &sc.sfid, err, sizeof err))
            gd_cli_die("sFID: %s", err);
    }
    if (rf.pool && !o->no_pr) {
        double *rr = malloc(sizeof(double) * (size_t)rf.n), *sr = malloc(sizeof(double) * (size_t)sf.n);
        if (!rr || !sr || rf.n < 4 || sf.n < 4 || gd_knn_radii(rf.pool, rf.n, P, 3, rr) || gd_knn_radii(sf.pool, sf.n, P, 3, sr) ||
            gd_precision_recall(rf.pool, rr, rf.n, sf.pool, sr, sf.n, P, &sc.precision, &sc.recall))
            gd_cli_die("precision/recall: %s", rf.n < 4 || sf.n < 4 ? "needs at least 4 images on each side (k = 3)" : "out of memory");
        free(rr), free(sr);
    }
    double secs = gd_time_now() - t0;

    char a[40], b[40], c[40], d[40], e[40];
    pyfloat(a, sizeof a, sc.inception_score), pyfloat(b, sizeof b, sc.fid), pyfloat(c, sizeof c, sc.sfid);
    pyfloat(d, sizeof d, sc.precision), pyfloat(e, sizeof e, sc.recall);
    if (o->json) {
        printf("{");
        json_num(stdout, "inception_score", sc.inception_score, 0);
        json_num(stdout, "fid", sc.fid, 0);
        json_num(stdout, "sfid", sc.sfid, 0);
        json_num(stdout, "precision", sc.precision, 0);
        json_num(stdout, "recall", sc.recall, 0);
        printf("\"n_samples\": %lld, \"n_ref\": %lld, \"evaluator\": \"inception\", \"weights_id\": \"%s\", \"resize\": \"%s\", "
               "\"random_weights\": %s, \"seconds\": %.1f}\n",
               (long long)sf.n, (long long)rf.n, gd_inception_weights_id(net), resize ? "pytorch" : "tf", o->weights ? "false" : "true", secs);
    } else {
        /* evaluator.py's lines, in its order */
        printf("Inception Score: %s\n", a);
        if (rp.mu) printf("FID: %s\nsFID: %s\n", b, c);
        if (!isnan(sc.precision)) printf("Precision: %s\nRecall: %s\n", d, e);
        if (!o->quiet)
            fprintf(stderr, "ddpm-eval: %lld samples, %lld reference images, %s resize, weights %s, %.1f s\n", (long long)sf.n,
                    (long long)rf.n, resize ? "pytorch-fid" : "TF", gd_inception_weights_id(net), secs);
    }
    int status = o->baseline ? eval_gate_file(o->baseline, &sc, o->tolerance) : 0;
    free(sf.pool), free(sf.spatial), free(sf.logits), free(rf.pool), free(rf.spatial), free(rf.logits);
    free(sp.mu), free(sp.sigma), free(ss.mu), free(ss.sigma), free(rp.mu), free(rp.sigma), free(rs.mu), free(rs.sigma);
    gd_inception_eval_free(ev);
    gd_inception_free(net);
    return status;
}
