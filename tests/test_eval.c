/* Sample-quality statistics (include/gd_eval.h) against tests/fixtures/eval.safetensors, written by
 * tests/reference/gen_eval_fixtures.py from numpy/scipy (guided-diffusion's evaluator formulas):
 * mean/covariance vs np.mean/np.cov, FID vs the scipy route the fixture names as its target,
 * k = 3 manifold radii and precision/recall vs a float64 ManifoldEstimator, IS vs numpy. */
#include "gd_eval.h"
#include "gd_safetensors.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE "tests/fixtures/eval.safetensors"

static const gd_st_tensor *need(const gd_st_file *f, const char *group, const char *cname, const char *name,
                                gd_st_dtype dt) {
    char k[160];
    snprintf(k, sizeof k, "%s/%s%s%s", group, cname, *cname ? "/" : "", name);
    const gd_st_tensor *t = gd_st_find(f, k);
    CHECK(t != NULL, "fixture tensor '%s' missing", k);
    if (t) CHECK(t->dtype == dt, "fixture tensor '%s' has dtype %s", k, gd_st_dtype_name(t->dtype));
    return t && t->dtype == dt ? t : NULL;
}

/* Copies (the mapping may be unaligned for the dtype). */
static float *f32_copy(const gd_st_tensor *t) {
    float *p = malloc(t->nbytes);
    if (p) memcpy(p, t->data, t->nbytes);
    return p;
}

static double *f64_copy(const gd_st_tensor *t) {
    double *p = malloc(t->nbytes);
    if (p) memcpy(p, t->data, t->nbytes);
    return p;
}

static double f64_at(const gd_st_tensor *t, int64_t i) {
    double v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

/* max|a - b| / max|b| */
static double normwise_rel(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        num = d > num || isnan(d) ? d : num;
        den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return den > 0 ? num / den : num;
}

static gd_st_file *open_fixture(void) {
    char err[512];
    gd_st_file *f = gd_st_open(FIXTURE, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    return f;
}

static cJSON *cases_of(const gd_st_file *f, const char *key) {
    const char *js = gd_st_metadata(f, key);
    CHECK(js != NULL, "metadata '%s' missing", key);
    cJSON *c = js ? cJSON_Parse(js) : NULL;
    CHECK(cJSON_IsArray(c), "metadata '%s' is not a JSON list", key);
    return c;
}

/* One FID case's stored data. */
typedef struct {
    const char *name, *target;
    int d;
    int64_t n1, n2;
    float *a, *b;
    double *mu_a, *sigma_a, *mu_b, *sigma_b;
    double fid_target, fid_sqrtm, fid_eigh, fid_svd, tol_rel, tol_abs;
} fid_case;

static void fid_case_free(fid_case *c) {
    free(c->a), free(c->b), free(c->mu_a), free(c->sigma_a), free(c->mu_b), free(c->sigma_b);
}

static int fid_case_load(const gd_st_file *f, const cJSON *m, fid_case *c) {
    memset(c, 0, sizeof *c);
    c->name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
    c->target = cJSON_GetStringValue(cJSON_GetObjectItem(m, "target"));
    CHECK(c->name && c->target, "fid case without name/target");
    if (!c->name || !c->target) return -1;
    const cJSON *tr = cJSON_GetObjectItem(m, "tol_rel"), *ta = cJSON_GetObjectItem(m, "tol_abs");
    c->tol_rel = cJSON_IsNumber(tr) ? tr->valuedouble : -1;
    c->tol_abs = cJSON_IsNumber(ta) ? ta->valuedouble : -1;
    CHECK((c->tol_rel > 0) != (c->tol_abs > 0), "%s: need exactly one of tol_rel / tol_abs", c->name);
    const gd_st_tensor *a = need(f, "fid", c->name, "a", GD_ST_F32), *b = need(f, "fid", c->name, "b", GD_ST_F32),
                       *ma = need(f, "fid", c->name, "mu_a", GD_ST_F64),
                       *sa = need(f, "fid", c->name, "sigma_a", GD_ST_F64),
                       *mb = need(f, "fid", c->name, "mu_b", GD_ST_F64),
                       *sb = need(f, "fid", c->name, "sigma_b", GD_ST_F64),
                       *ft = need(f, "fid", c->name, "fid_target", GD_ST_F64),
                       *fq = need(f, "fid", c->name, "fid_sqrtm", GD_ST_F64),
                       *fe = need(f, "fid", c->name, "fid_eigh", GD_ST_F64),
                       *fs = need(f, "fid", c->name, "fid_svd", GD_ST_F64);
    if (!a || !b || !ma || !sa || !mb || !sb || !ft || !fq || !fe || !fs) return -1;
    c->d = (int)a->shape[1];
    c->n1 = a->shape[0];
    c->n2 = b->shape[0];
    CHECK(b->shape[1] == c->d && ma->numel == c->d && sa->numel == (int64_t)c->d * c->d, "%s: shapes", c->name);
    c->a = f32_copy(a), c->b = f32_copy(b), c->mu_a = f64_copy(ma), c->sigma_a = f64_copy(sa);
    c->mu_b = f64_copy(mb), c->sigma_b = f64_copy(sb);
    c->fid_target = f64_at(ft, 0), c->fid_sqrtm = f64_at(fq, 0), c->fid_eigh = f64_at(fe, 0);
    c->fid_svd = f64_at(fs, 0);
    return c->a && c->b && c->mu_a && c->sigma_a && c->mu_b && c->sigma_b ? 0 : -1;
}

/* Mean and unbiased covariance vs np.mean / np.cov: 1e-12 of the largest entry (off-diagonal
 * covariances of independent features are ~0, so entry-wise relative errors mean nothing). */
static void test_feature_stats(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    cJSON *cases = cases_of(f, "fid_cases"), *m;
    cJSON_ArrayForEach(m, cases) {
        fid_case c;
        if (fid_case_load(f, m, &c)) {
            fid_case_free(&c);
            continue;
        }
        int d = c.d;
        double *mu = malloc(sizeof(double) * d), *sg = malloc(sizeof(double) * d * d);
        double emu = 0, esg = 0;
        for (int s = 0; s < 2; s++) {
            const float *x = s ? c.b : c.a;
            CHECK(gd_feature_stats(x, s ? c.n2 : c.n1, d, mu, sg) == 0, "%s: gd_feature_stats failed", c.name);
            double e1 = normwise_rel(mu, s ? c.mu_b : c.mu_a, d), e2 = normwise_rel(sg, s ? c.sigma_b : c.sigma_a, (int64_t)d * d);
            CHECK(e1 <= 1e-12, "%s set %c: mean max|C-np|/max|np| = %.3g", c.name, s ? 'b' : 'a', e1);
            CHECK(e2 <= 1e-12, "%s set %c: covariance max|C-np.cov|/max|np.cov| = %.3g", c.name, s ? 'b' : 'a', e2);
            emu = e1 > emu ? e1 : emu;
            esg = e2 > esg ? e2 : esg;
        }
        printf("    %-25s mean %.2e  cov %.2e\n", c.name, emu, esg);
        free(mu);
        free(sg);
        fid_case_free(&c);
    }
    CHECK(gd_feature_stats((const float[]){1, 2}, 1, 2, (double[2]){0}, (double[4]){0}) == -1, "n = 1 accepted");
    cJSON_Delete(cases);
    gd_st_close(f);
}

/* FID from the stored numpy statistics and from the C statistics of the features, against the
 * fixture's target (the evaluator's scipy sqrtm route where that is accurate, else the svd route;
 * exactly 0 for identical sets, with an absolute tolerance). */
static void test_frechet_distance(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    cJSON *cases = cases_of(f, "fid_cases"), *m;
    int ncases = 0;
    cJSON_ArrayForEach(m, cases) {
        fid_case c;
        if (fid_case_load(f, m, &c)) {
            fid_case_free(&c);
            continue;
        }
        ncases++;
        int d = c.d;
        char err[256] = "";
        double fid = NAN, fid_own = NAN;
        CHECK(gd_frechet_distance(d, c.mu_a, c.sigma_a, c.mu_b, c.sigma_b, &fid, err, sizeof err) == 0, "%s: %s",
              c.name, err);
        double *mu1 = malloc(sizeof(double) * d), *s1 = malloc(sizeof(double) * d * d),
               *mu2 = malloc(sizeof(double) * d), *s2 = malloc(sizeof(double) * d * d);
        CHECK(gd_feature_stats(c.a, c.n1, d, mu1, s1) == 0 && gd_feature_stats(c.b, c.n2, d, mu2, s2) == 0,
              "%s: stats", c.name);
        CHECK(gd_frechet_distance(d, mu1, s1, mu2, s2, &fid_own, err, sizeof err) == 0, "%s: %s", c.name, err);
        int zero = c.tol_abs > 0;
        double den = zero ? 1.0 : fabs(c.fid_target);
        double e = fabs(fid - c.fid_target) / den, eo = fabs(fid_own - c.fid_target) / den;
        double tol = zero ? c.tol_abs : c.tol_rel;
        printf("    %-25s %s C %-19.12g  vs %s %.2e (own stats %.2e); vs sqrtm %+.2e eigh %+.2e svd %+.2e\n",
               c.name, zero ? "abs" : "rel", fid, c.target, e, eo, (fid - c.fid_sqrtm) / den,
               (fid - c.fid_eigh) / den, (fid - c.fid_svd) / den);
        CHECK(isfinite(fid) && e <= tol, "%s: FID %.17g vs %s route %.17g: %s error %.3g > %.1g", c.name, fid,
              c.target, c.fid_target, zero ? "abs" : "rel", e, tol);
        CHECK(isfinite(fid_own) && eo <= tol, "%s: FID from C stats %.17g vs %.17g: %s error %.3g > %.1g", c.name,
              fid_own, c.fid_target, zero ? "abs" : "rel", eo, tol);
        /* symmetric in its arguments */
        double fid_swap = NAN;
        gd_frechet_distance(d, c.mu_b, c.sigma_b, c.mu_a, c.sigma_a, &fid_swap, err, sizeof err);
        double es = fabs(fid_swap - c.fid_target) / den;
        CHECK(isfinite(fid_swap) && es <= tol, "%s: FID(b, a) %.17g vs %.17g: error %.3g", c.name, fid_swap,
              c.fid_target, es);
        free(mu1), free(s1), free(mu2), free(s2);
        fid_case_free(&c);
    }
    CHECK(ncases >= 9, "only %d FID cases", ncases);
    cJSON_Delete(cases);
    gd_st_close(f);
}

static void test_frechet_errors(void) {
    double mu[2] = {0, 0}, s[4] = {1, 0, 0, 1}, bad[4] = {1, 0, 0, NAN}, mbad[2] = {INFINITY, 0}, fid = 0;
    char err[128] = "";
    CHECK(gd_frechet_distance(2, mu, s, mu, bad, &fid, err, sizeof err) == -1 && err[0], "NaN covariance accepted");
    err[0] = 0;
    CHECK(gd_frechet_distance(2, mbad, s, mu, s, &fid, err, sizeof err) == -1 && err[0], "inf mean accepted");
    /* 2-d closed form: diagonal covariances -> |dmu|^2 + sum (sqrt a_i - sqrt b_i)^2 */
    double m1[2] = {1, 2}, m2[2] = {0, -1}, s1[4] = {4, 0, 0, 9}, s2[4] = {1, 0, 0, 16};
    CHECK(gd_frechet_distance(2, m1, s1, m2, s2, &fid, err, sizeof err) == 0, "%s", err);
    double want = 1 + 9 + 1 + 1;
    CHECK(fabs(fid - want) <= 1e-14 * want, "diagonal closed form: %.17g vs %g", fid, want);
}

typedef struct {
    const char *name;
    int d;
    int64_t nr, ns;
    float *ref, *samp;
    double *ref_radii, *samp_radii, precision, recall;
} pr_case;

static void pr_case_free(pr_case *c) { free(c->ref), free(c->samp), free(c->ref_radii), free(c->samp_radii); }

static int pr_case_load(const gd_st_file *f, const cJSON *m, pr_case *c) {
    memset(c, 0, sizeof *c);
    c->name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
    CHECK(c->name != NULL, "pr case without name");
    if (!c->name) return -1;
    const gd_st_tensor *r = need(f, "pr", c->name, "ref", GD_ST_F32), *s = need(f, "pr", c->name, "samp", GD_ST_F32),
                       *rr = need(f, "pr", c->name, "ref_radii", GD_ST_F64),
                       *sr = need(f, "pr", c->name, "samp_radii", GD_ST_F64),
                       *p = need(f, "pr", c->name, "precision", GD_ST_F64),
                       *rc = need(f, "pr", c->name, "recall", GD_ST_F64);
    if (!r || !s || !rr || !sr || !p || !rc) return -1;
    c->d = (int)r->shape[1], c->nr = r->shape[0], c->ns = s->shape[0];
    CHECK(s->shape[1] == c->d && rr->numel == c->nr && sr->numel == c->ns, "%s: shapes", c->name);
    c->ref = f32_copy(r), c->samp = f32_copy(s), c->ref_radii = f64_copy(rr), c->samp_radii = f64_copy(sr);
    c->precision = f64_at(p, 0), c->recall = f64_at(rc, 0);
    return c->ref && c->samp && c->ref_radii && c->samp_radii ? 0 : -1;
}

/* max |a - b| / |b| per element; b == 0 demands a == 0 */
static double elem_rel(const double *a, const double *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        double r = b[i] != 0 ? d / fabs(b[i]) : (d == 0 ? 0 : INFINITY);
        e = r > e || isnan(r) ? r : e;
    }
    return e;
}

/* k = 3 radii vs np.partition of the float64 squared distances; precision/recall exactly equal,
 * both from the C radii and from the stored ones. */
static void test_precision_recall(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    cJSON *cases = cases_of(f, "pr_cases"), *m;
    int ncases = 0;
    cJSON_ArrayForEach(m, cases) {
        pr_case c;
        if (pr_case_load(f, m, &c)) {
            pr_case_free(&c);
            continue;
        }
        ncases++;
        double *rr = malloc(sizeof(double) * c.nr), *sr = malloc(sizeof(double) * c.ns);
        CHECK(gd_knn_radii(c.ref, c.nr, c.d, 3, rr) == 0 && gd_knn_radii(c.samp, c.ns, c.d, 3, sr) == 0,
              "%s: gd_knn_radii failed", c.name);
        double er = elem_rel(rr, c.ref_radii, c.nr), es = elem_rel(sr, c.samp_radii, c.ns);
        CHECK(er <= 1e-12, "%s: ref radii max rel error %.3g", c.name, er);
        CHECK(es <= 1e-12, "%s: samp radii max rel error %.3g", c.name, es);
        double p = NAN, r = NAN, p2 = NAN, r2 = NAN;
        CHECK(gd_precision_recall(c.ref, rr, c.nr, c.samp, sr, c.ns, c.d, &p, &r) == 0, "%s: failed", c.name);
        CHECK(gd_precision_recall(c.ref, c.ref_radii, c.nr, c.samp, c.samp_radii, c.ns, c.d, &p2, &r2) == 0,
              "%s: failed", c.name);
        printf("    %-10s radii max rel %.2e / %.2e  precision %.6f (ref %.6f)  recall %.6f (ref %.6f)\n", c.name, er,
               es, p, c.precision, r, c.recall);
        CHECK(p == c.precision && r == c.recall, "%s: precision %.17g recall %.17g vs numpy %.17g %.17g", c.name, p,
              r, c.precision, c.recall);
        CHECK(p2 == c.precision && r2 == c.recall, "%s (stored radii): precision %.17g recall %.17g vs %.17g %.17g",
              c.name, p2, r2, c.precision, c.recall);
        free(rr), free(sr);
        pr_case_free(&c);
    }
    CHECK(ncases >= 3, "only %d precision/recall cases", ncases);
    CHECK(gd_knn_radii((const float[]){0, 1, 2}, 3, 1, 3, (double[3]){0}) == -1, "k >= n accepted");
    cJSON_Delete(cases);
    gd_st_close(f);
}

static void test_inception_score(void) {
    gd_st_file *f = open_fixture();
    if (!f) return;
    const gd_st_tensor *lg = need(f, "is", "", "logits", GD_ST_F32), *sp = need(f, "is", "", "split", GD_ST_I64),
                       *sc = need(f, "is", "", "score", GD_ST_F64);
    if (lg && sp && sc) {
        float *x = f32_copy(lg);
        CHECK(sp->numel == sc->numel && sp->numel >= 2, "split/score lengths");
        for (int64_t i = 0; i < sp->numel; i++) {
            int64_t split;
            memcpy(&split, (const char *)sp->data + 8 * i, 8);
            double got = gd_inception_score(x, lg->shape[0], (int)lg->shape[1], split), want = f64_at(sc, i);
            double e = fabs(got - want) / fabs(want);
            printf("    n %lld split %-5lld IS %.15g (numpy %.15g) rel %.2e\n", (long long)lg->shape[0],
                   (long long)split, got, want, e);
            CHECK(e <= 1e-12, "split %lld: IS %.17g vs numpy %.17g, rel error %.3g", (long long)split, got, want, e);
        }
        free(x);
    }
    gd_st_close(f);
}

GD_TEST_TABLE(gd_tests_eval) = {
    {"eval_feature_stats", test_feature_stats},
    {"eval_frechet_distance", test_frechet_distance},
    {"eval_frechet_errors", test_frechet_errors},
    {"eval_precision_recall", test_precision_recall},
    {"eval_inception_score", test_inception_score},
    {NULL, NULL},
};
