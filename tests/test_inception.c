/* The FID Inception (src/nn/inception.c, src/eval/inception_eval.c) and evaluator.py's statistics
 * against tests/fixtures/inception*.safetensors, written by tests/reference/gen_inception_fixtures.py
 * from the project's own PyTorch port of pytorch-fid's FIDInception and a numpy port of
 * evaluator.py. Weights, images and features are regenerated here from the named deterministic
 * values both sides share (gdrand: src/util/rand_named.c), so nothing big is stored. */
#include "gd_eval.h"
#include "gd_inception.h"
#include "gd_safetensors.h"
#include "gd_util.h"
#include "test.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures/inception.safetensors"
#define FIX_STATS "tests/fixtures/inception_stats.safetensors"

static const gd_st_tensor *need(const gd_st_file *f, const char *name) {
    const gd_st_tensor *t = gd_st_find(f, name);
    CHECK(t != NULL, "fixture tensor '%s' missing", name);
    return t;
}

static float *f32_of(const gd_st_tensor *t) {
    float *p = malloc(t->nbytes);
    memcpy(p, t->data, t->nbytes);
    return p;
}

static double f64_of(const gd_st_file *f, const char *name) {
    const gd_st_tensor *t = need(f, name);
    double v = NAN;
    if (t && t->dtype == GD_ST_F64) memcpy(&v, t->data, 8);
    return v;
}

static int64_t i64_of(const gd_st_file *f, const char *name) {
    const gd_st_tensor *t = need(f, name);
    int64_t v = -1;
    if (t && t->dtype == GD_ST_I64) memcpy(&v, t->data, 8);
    return v;
}

/* tests/reference/inception.py test_images */
typedef struct {
    const char *name;
    int n, h, w;
} img_case;
static const img_case CASES[] = {{"noise64", 2, 64, 64}, {"checker32", 1, 32, 32}, {"noise512", 1, 512, 512},
                                 {"rect40x72", 1, 40, 72}, {"same299", 1, 299, 299}};

static uint8_t *make_images(const img_case *c) {
    size_t n = (size_t)c->n * c->h * c->w * 3;
    uint8_t *p = malloc(n);
    if (!strcmp(c->name, "checker32")) {
        for (int y = 0; y < c->h; y++)
            for (int x = 0; x < c->w; x++)
                for (int ch = 0; ch < 3; ch++) p[(y * c->w + x) * 3 + ch] = (uint8_t)((((y >> 2) ^ (x >> 2)) & 1) ? 255 - 40 * ch : 40 * ch);
        return p;
    }
    uint64_t h = gd_fnv1a64(c->name);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(gd_rand_named_u(h, i) * 256);
    return p;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return d / (m > 0 ? m : 1);
}

static void test_gdrand_weights(void) {
    CHECK(gd_fnv1a64("x") == 0xaf63f54c86021707ull, "fnv1a64(x) = %016llx", (unsigned long long)gd_fnv1a64("x"));
    const double want[4] = {0.201208233833313, 0.8085267543792725, 0.6433236002922058, 0.8281093835830688};
    for (int i = 0; i < 4; i++)
        CHECK(gd_rand_named_u(gd_fnv1a64("x"), (uint64_t)i) == want[i], "gdrand_u(x, %d) = %.17g", i,
              gd_rand_named_u(gd_fnv1a64("x"), (uint64_t)i));
    /* the written random weights, hashed in state-dict order, against the reference's sha256 */
    char err[256], path[] = "/tmp/gd_inception_rand_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    CHECK(gd_inception_write_random(path, err, sizeof err) == 0, "write_random: %s", err);
    gd_st_file *w = gd_st_open(path, err, sizeof err), *f = gd_st_open(FIX, err, sizeof err);
    CHECK(w && f, "open: %s", err);
    if (!w || !f) return;
    cJSON *list = cJSON_Parse(gd_st_metadata(f, "weights"));
    CHECK(cJSON_GetArraySize(list) == 472 && gd_st_count(w) == 472, "472 tensors (fixture %d, written %d)",
          cJSON_GetArraySize(list), gd_st_count(w));
    gd_sha256_ctx all;
    gd_sha256_init(&all);
    int bad = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const char *name = cJSON_GetArrayItem(e, 0)->valuestring, *hex = cJSON_GetArrayItem(e, 4)->valuestring;
        const gd_st_tensor *t = gd_st_find(w, name);
        if (!t) {
            CHECK(0, "written weights lack '%s'", name);
            bad++;
            continue;
        }
        uint8_t dg[32];
        char h[65];
        gd_sha256_ctx one;
        gd_sha256_init(&one);
        gd_sha256_update(&one, t->data, t->nbytes);
        gd_sha256_final(&one, dg);
        gd_sha256_hex(dg, h);
        if (strcmp(h, hex) && bad++ < 3) CHECK(0, "tensor '%s': sha256 %s, reference %s", name, h, hex);
        gd_sha256_update(&all, t->data, t->nbytes);
    }
    uint8_t dg[32];
    char h[65];
    gd_sha256_final(&all, dg);
    gd_sha256_hex(dg, h);
    CHECK(!strcmp(h, gd_st_metadata(f, "weights_sha256")), "all weights: sha256 %s, reference %s", h,
          gd_st_metadata(f, "weights_sha256"));
    if (!strcmp(h, gd_st_metadata(f, "weights_sha256")))
        printf("    random weights: 472 tensors, sha256 %.16s... = the PyTorch reference's\n", h);
    /* loading that file folds to the same network as generating it */
    gd_inception *a = gd_inception_load(path, 1, err, sizeof err), *b = gd_inception_random(1, err, sizeof err);
    CHECK(a && b && !strcmp(gd_inception_weights_id(a), gd_inception_weights_id(b)), "loaded = generated weights");
    gd_inception_free(a);
    gd_inception_free(b);
    cJSON_Delete(list);
    gd_st_close(w);
    gd_st_close(f);
    unlink(path);
}

static void test_resize(void) {
    char err[256];
    gd_st_file *f = gd_st_open(FIX, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++) {
        const img_case *c = &CASES[k];
        uint8_t *img = make_images(c);
        size_t nf = (size_t)c->n * 3 * 299 * 299;
        float *x = malloc(sizeof(float) * nf);
        gd_inception_preprocess(GD_INCEPTION_RESIZE_TF, img, c->n, c->h, c->w, 3, x);
        uint8_t dg[32];
        gd_sha256_ctx s;
        gd_sha256_init(&s);
        gd_sha256_update(&s, x, sizeof(float) * nf);
        gd_sha256_final(&s, dg);
        char key[96];
        snprintf(key, sizeof key, "resize.%s.sha256", c->name);
        const gd_st_tensor *t = need(f, key);
        snprintf(key, sizeof key, "resize.%s.sample", c->name);
        const gd_st_tensor *smp = need(f, key);
        int64_t diff = 0;
        if (smp)
            for (int64_t i = 0; i < smp->numel; i++) {
                float v;
                memcpy(&v, (const uint8_t *)smp->data + 4 * i, 4);
                diff += v != x[(size_t)i * 97];
            }
        CHECK(t && !memcmp(dg, t->data, 32), "TF resize %s (%dx%d -> 299): bytes differ from TF1's kernel (%lld of %lld sampled values)",
              c->name, c->h, c->w, (long long)diff, smp ? (long long)smp->numel : 0LL);
        printf("    TF1 legacy resize %-9s %3dx%-3d -> 299x299: sha256 of %zu floats identical\n", c->name, c->h, c->w, nf);
        if (!strcmp(c->name, "noise64")) {
            gd_inception_preprocess(GD_INCEPTION_RESIZE_PYTORCH, img, c->n, c->h, c->w, 3, x);
            const gd_st_tensor *p = need(f, "resize_pt.noise64.sample");
            double worst = 0;
            for (int64_t i = 0; p && i < p->numel; i++) {
                float v;
                memcpy(&v, (const uint8_t *)p->data + 4 * i, 4);
                if (fabs(v - x[(size_t)i * 97]) > worst) worst = fabs(v - x[(size_t)i * 97]);
            }
            printf("    pytorch-fid resize noise64: max |C - PyTorch| = %.2e (PyTorch's kernel is not the exact formula)\n", worst);
            CHECK(worst < 2e-5, "pytorch-fid resize: max error %.3e", worst);
        }
        free(x);
        free(img);
    }
    gd_st_close(f);
}

static void check_net(const gd_st_file *f, const char *net, const float *pool, const float *spatial, const float *logits,
                      int n) {
    const char *tap[3] = {"pool3", "spatial", "logits"};
    const float *got[3] = {pool, spatial, logits};
    int64_t dim[3] = {GD_INCEPTION_POOL, GD_INCEPTION_SPATIAL, GD_INCEPTION_CLASSES};
    printf("    %-11s", net);
    for (int i = 0; i < 3; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s.%s", net, tap[i]);
        const gd_st_tensor *t = need(f, key);
        if (!t || t->numel != n * dim[i]) {
            CHECK(0, "%s: fixture shape", key);
            continue;
        }
        float *ref = f32_of(t);
        double e = rel_err(got[i], ref, t->numel);
        printf("  %s %.2e", tap[i], e);
        CHECK(e <= 1e-4, "%s: max |C - PyTorch| / max |PyTorch| = %.3e > 1e-4", key, e);
        free(ref);
    }
    printf("   (max |C - ref| / max |ref|, bound 1e-4)\n");
}

static void test_network(void) {
    char err[256];
    gd_st_file *f = gd_st_open(FIX, err, sizeof err);
    gd_inception *m = gd_inception_random(2, err, sizeof err);
    CHECK(f && m, "%s", err);
    if (!f || !m) return;
    for (int mode = 0; mode < 2; mode++) {
        gd_inception_eval *e = gd_inception_eval_new(m, mode ? GD_INCEPTION_RESIZE_PYTORCH : GD_INCEPTION_RESIZE_TF, err, sizeof err);
        for (int k = 0; k < 3; k++) {
            if (mode && k) break; /* the PyTorch front: noise64 only */
            const img_case *c = &CASES[k];
            uint8_t *img = make_images(c);
            float *pool = malloc(sizeof(float) * GD_INCEPTION_POOL * c->n), *sp = malloc(sizeof(float) * GD_INCEPTION_SPATIAL * c->n),
                  *lg = malloc(sizeof(float) * GD_INCEPTION_CLASSES * c->n);
            CHECK(gd_inception_eval_run(e, img, c->n, c->h, c->w, 3, pool, sp, lg, err, sizeof err) == 0, "run: %s", err);
            char net[32];
            snprintf(net, sizeof net, "%s%s", c->name, mode ? "_pt" : "");
            check_net(f, net, pool, sp, lg, c->n);
            if (!mode && k == 0) {
                /* a sample's features do not depend on the batch it runs in: image 1 alone */
                float p1[GD_INCEPTION_POOL];
                CHECK(gd_inception_eval_run(e, img + 64 * 64 * 3, 1, 64, 64, 3, p1, NULL, NULL, err, sizeof err) == 0, "%s", err);
                CHECK(!memcmp(p1, pool + GD_INCEPTION_POOL, sizeof p1), "noise64 image 1: pool3 alone differs from in a batch of 2");
            }
            free(pool), free(sp), free(lg), free(img);
        }
        gd_inception_eval_free(e);
    }
    gd_inception_free(m);
    gd_st_close(f);
}

/* layer by layer, for locating a fault: the sampled outputs and sums of noise64 image 0 */
static void test_probes(void) {
    char err[256];
    setenv("GD_INCEPTION_PROBES", "1", 1);
    gd_inception *m = gd_inception_random(1, err, sizeof err);
    unsetenv("GD_INCEPTION_PROBES");
    gd_st_file *f = gd_st_open(FIX, err, sizeof err);
    CHECK(m && f, "%s", err);
    if (!m || !f) return;
    gd_inception_eval *e = gd_inception_eval_new(m, GD_INCEPTION_RESIZE_TF, err, sizeof err);
    uint8_t *img = make_images(&CASES[0]);
    CHECK(gd_inception_eval_run(e, img, 1, 64, 64, 3, NULL, NULL, NULL, err, sizeof err) == 0, "%s", err);
    const char *layers[] = {"Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                            "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                            "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"};
    double worst = 0;
    const char *wl = "";
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
        int64_t n = 0;
        const float *y = gd_inception_probe(m, layers[i], 1, &n);
        char key[96];
        snprintf(key, sizeof key, "probe.%s.sample", layers[i]);
        const gd_st_tensor *t = need(f, key);
        CHECK(y && t && t->numel == (n + 100) / 101, "%s: probe missing or of the wrong size", layers[i]);
        if (!y || !t || t->numel != (n + 100) / 101) continue;
        float *ref = f32_of(t), *got = malloc(sizeof(float) * (size_t)t->numel);
        for (int64_t k = 0; k < t->numel; k++) got[k] = y[k * 101];
        double r = rel_err(got, ref, t->numel), sum = 0;
        for (int64_t k = 0; k < n; k++) sum += y[k];
        snprintf(key, sizeof key, "probe.%s.sum", layers[i]);
        double want = f64_of(f, key);
        CHECK(r <= 1e-4 && fabs(sum - want) <= 1e-4 * fabs(want), "%s: sampled error %.2e, sum %.8g vs %.8g", layers[i], r,
              sum, want);
        if (r > worst) worst = r, wl = layers[i];
        free(ref), free(got);
    }
    printf("    18 layer outputs of noise64[0]: worst sampled max |C - ref| / max |ref| = %.2e (%s)\n", worst, wl);
    CHECK(gd_inception_probe(m, "no_such_layer", 1, &(int64_t){0}) == NULL, "unknown probe name");
    free(img);
    gd_inception_eval_free(e);
    gd_inception_free(m);
    gd_st_close(f);
}

/* features of inception_stats: float32(factor * u^2), u = gdrand_u(name, i) */
static float *feats(const char *name, int64_t n, int d, double factor) {
    float *p = malloc(sizeof(float) * (size_t)n * d);
    uint64_t h = gd_fnv1a64(name);
    for (int64_t i = 0; i < n * d; i++) {
        double u = gd_rand_named_u(h, (uint64_t)i);
        p[i] = (float)(factor * (u * u));
    }
    return p;
}

/* FID as evaluator.py takes it: float32 means, float64 covariances */
static double fid_eval(const float *a, int64_t na, const float *b, int64_t nb, int d, const gd_st_file *f,
                       const char *mua, const char *mub) {
    double *m1 = malloc(sizeof(double) * d), *m2 = malloc(sizeof(double) * d);
    double *s1 = malloc(sizeof(double) * d * d), *s2 = malloc(sizeof(double) * d * d), fid = NAN;
    float *f1 = malloc(sizeof(float) * d), *f2 = malloc(sizeof(float) * d);
    gd_feature_stats(a, na, d, m1, s1);
    gd_feature_stats(b, nb, d, m2, s2);
    gd_feature_mean_f32(a, na, d, f1);
    gd_feature_mean_f32(b, nb, d, f2);
    const gd_st_tensor *r1 = need(f, mua), *r2 = need(f, mub);
    CHECK(r1 && r2 && !memcmp(f1, r1->data, sizeof(float) * d) && !memcmp(f2, r2->data, sizeof(float) * d),
          "float32 means of %s / %s bit-exact with np.mean", mua, mub);
    for (int j = 0; j < d; j++) m1[j] = f1[j], m2[j] = f2[j];
    char err[256];
    CHECK(gd_frechet_distance(d, m1, s1, m2, s2, &fid, err, sizeof err) == 0, "%s", err);
    free(m1), free(m2), free(s1), free(s2), free(f1), free(f2);
    return fid;
}

static void test_statistics(void) {
    char err[256];
    gd_st_file *f = gd_st_open(FIX_STATS, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    int64_t nr = i64_of(f, "n_ref"), ns = i64_of(f, "n_samp"), nl = i64_of(f, "n_logits");
    int dp = (int)i64_of(f, "d_pool"), dsp = (int)i64_of(f, "d_spatial"), K = (int)i64_of(f, "n_classes");
    float *pr = feats("stats.pool.ref", nr, dp, 2.0), *ps = feats("stats.pool.samp", ns, dp, 2.2);
    float *sr = feats("stats.spatial.ref", nr, dsp, 1.0), *ss = feats("stats.spatial.samp", ns, dsp, 1.1);
    double fid = fid_eval(ps, ns, pr, nr, dp, f, "mu.samp", "mu.ref"), want = f64_of(f, "fid");
    double sfid = fid_eval(ss, ns, sr, nr, dsp, f, "mu_s.samp", "mu_s.ref"), swant = f64_of(f, "sfid");
    printf("    FID  %.10f  evaluator port %.10f  rel %.1e\n", fid, want, fabs(fid - want) / want);
    printf("    sFID %.10f  evaluator port %.10f  rel %.1e\n", sfid, swant, fabs(sfid - swant) / swant);
    CHECK(fabs(fid - want) <= 1e-6 * want && fabs(sfid - swant) <= 1e-6 * swant, "FID/sFID beyond 1e-6 relative");
    float *lg = malloc(sizeof(float) * (size_t)nl * K);
    uint64_t h = gd_fnv1a64("stats.logits");
    for (int64_t i = 0; i < nl * K; i++) lg[i] = (float)(12.0 * gd_rand_named_u(h, (uint64_t)i) - 6.0);
    double is = gd_inception_score(lg, nl, K, i64_of(f, "split_size")), iw = f64_of(f, "is"), i64 = f64_of(f, "is_f64");
    printf("    IS   %.10f  evaluator port (float32) %.10f, float64 %.10f\n", is, iw, i64);
    CHECK(fabs(is - i64) <= 1e-9 * i64 && fabs(is - iw) <= 1e-6 * iw, "IS beyond tolerance");
    /* precision/recall, double distances: identical counts */
    const char *which[2] = {"", "_same"};
    float *same = feats("stats.pool.samp", ns, dp, 2.0);
    double *rr = malloc(sizeof(double) * nr), *rs = malloc(sizeof(double) * ns);
    gd_knn_radii(pr, nr, dp, 3, rr);
    for (int v = 0; v < 2; v++) {
        const float *S = v ? same : ps;
        gd_knn_radii(S, ns, dp, 3, rs);
        double p, r;
        gd_precision_recall(pr, rr, nr, S, rs, ns, dp, &p, &r);
        char kp[64], kr[64], k16p[64], k16r[64];
        snprintf(kp, sizeof kp, "count_precision%s_f64", which[v]);
        snprintf(kr, sizeof kr, "count_recall%s_f64", which[v]);
        snprintf(k16p, sizeof k16p, "count_precision%s_f16", which[v]);
        snprintf(k16r, sizeof k16r, "count_recall%s_f16", which[v]);
        int64_t cp = (int64_t)llround(p * ns), cr = (int64_t)llround(r * nr);
        printf("    P/R%-6s counts %lld / %lld, evaluator port float64 %lld / %lld (its fp16 distances: %lld / %lld)\n",
               which[v], (long long)cp, (long long)cr, (long long)i64_of(f, kp), (long long)i64_of(f, kr),
               (long long)i64_of(f, k16p), (long long)i64_of(f, k16r));
        CHECK(cp == i64_of(f, kp) && cr == i64_of(f, kr), "precision/recall%s counts differ", which[v]);
    }
    /* the n x n route for small batches against the exact one: with both sides as rows,
     * Tr (S1 S2)^(1/2) = ||Cb Ca^T||_* (singular values, no squared spectrum); the d x d eigen route
     * loses ~sqrt(eps) on a rank-deficient S1 and is shown for comparison only */
    {
        int d = 300, n = 40, m = 500;
        double *m1 = malloc(sizeof(double) * d), *m2 = malloc(sizeof(double) * d), *s1 = malloc(sizeof(double) * d * d),
               *s2 = malloc(sizeof(double) * d * d), full, rows;
        float *xa = malloc(sizeof(float) * n * d), *xb = malloc(sizeof(float) * m * d);
        for (int i = 0; i < n; i++) memcpy(xa + i * d, ps + (int64_t)i * dp, sizeof(float) * d);
        for (int i = 0; i < m; i++) memcpy(xb + i * d, pr + (int64_t)i * dp, sizeof(float) * d);
        gd_feature_stats(xa, n, d, m1, s1);
        gd_feature_stats(xb, m, d, m2, s2);
        CHECK(gd_frechet_distance(d, m1, s1, m2, s2, &full, err, sizeof err) == 0 &&
                  gd_frechet_distance_rows(d, xa, n, m1, m2, s2, &rows, err, sizeof err) == 0,
              "%s", err);
        double *ca = malloc(sizeof(double) * n * d), *cb = malloc(sizeof(double) * m * d), *M = malloc(sizeof(double) * m * n),
               sv[40], tr1 = 0, tr2 = 0, dm = 0, nuc = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) ca[i * d + j] = (xa[i * d + j] - m1[j]) / sqrt(n - 1.0), tr1 += ca[i * d + j] * ca[i * d + j];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < d; j++) cb[i * d + j] = (xb[i * d + j] - m2[j]) / sqrt(m - 1.0), tr2 += cb[i * d + j] * cb[i * d + j];
        for (int j = 0; j < d; j++) dm += (m1[j] - m2[j]) * (m1[j] - m2[j]);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, d, 1.0, cb, d, ca, d, 0.0, M, n);
        CHECK(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', m, n, M, n, sv, NULL, m, NULL, n) == 0, "dgesdd");
        for (int i = 0; i < n; i++) nuc += sv[i];
        double exact = dm + tr1 + tr2 - 2 * nuc;
        printf("    FID of %d rows vs %d rows in %d-d: n x n route %.12f, singular values %.12f (d x d eigen route %.12f)\n", n,
               m, d, rows, exact, full);
        CHECK(fabs(rows - exact) <= 1e-10 * exact, "row route differs: %.15g vs %.15g", rows, exact);
        free(m1), free(m2), free(s1), free(s2), free(ca), free(cb), free(M), free(xa), free(xb);
    }
    free(pr), free(ps), free(sr), free(ss), free(lg), free(same), free(rr), free(rs);
    gd_st_close(f);
}

GD_TEST_TABLE(gd_tests_inception) = {
    {"inception: gdrand values and the random weights = the reference's", test_gdrand_weights},
    {"inception: TF1 legacy resize bit-exact, pytorch-fid resize", test_resize},
    {"inception: pool_3, spatial and logits vs PyTorch", test_network},
    {"inception: every block's output vs PyTorch (noise64 image 0)", test_probes},
    {"inception: FID, sFID, IS, precision/recall vs evaluator.py (numpy port)", test_statistics},
    {NULL, NULL},
};
