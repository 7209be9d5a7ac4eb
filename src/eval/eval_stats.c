/* FID, precision/recall, Inception-style score: the statistics of include/gd_eval.h. */
#include "gd_eval.h"
#include "gd_util.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int gd_feature_stats(const float *feats, int64_t n, int d, double *mu, double *sigma) {
    if (n < 2 || d < 1) return -1;
    double *xc = malloc(sizeof(double) * (size_t)n * (size_t)d);
    if (!xc) return -1;
    for (int j = 0; j < d; j++) mu[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += feats[i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) xc[i * d + j] = (double)feats[i * d + j] - mu[j];
    /* centred first: the textbook E[xx^T] - mu mu^T loses digits when |mu| >> spread */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)n, 1.0 / (double)(n - 1), xc, d, 0.0, sigma, d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) sigma[i * d + j] = sigma[j * d + i];
    free(xc);
    return 0;
}

void gd_feature_mean_f32(const float *feats, int64_t n, int d, float *mu) {
    for (int j = 0; j < d; j++) mu[j] = 0.0f;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += feats[i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= (float)n;
}

int gd_frechet_distance(int d, const double *mu1, const double *sigma1, const double *mu2, const double *sigma2,
                        double *fid, char *err, size_t errlen) {
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(sigma1[i]) || !isfinite(sigma2[i])) return fail(err, errlen, "covariance has non-finite entries");
    for (int i = 0; i < d; i++)
        if (!isfinite(mu1[i]) || !isfinite(mu2[i])) return fail(err, errlen, "mean has non-finite entries");
    size_t dd = (size_t)d * d;
    double *v = malloc(sizeof(double) * dd), *w = malloc(sizeof(double) * d), *b = malloc(sizeof(double) * dd),
           *t = malloc(sizeof(double) * dd);
    int rc = -1;
    if (!v || !w || !b || !t) {
        fail(err, errlen, "out of memory (%d-dimensional features)", d);
        goto done;
    }
    /* S1 = V diag(w) V^T, B = V diag(sqrt w): S1^(1/2) S2 S1^(1/2) = V (B^T S2 B) V^T has the
     * eigenvalues of the symmetric B^T S2 B */
    memcpy(v, sigma1, sizeof(double) * dd);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, v, d, w);
    if (info) {
        fail(err, errlen, "LAPACKE_dsyevd failed (info %d) on the first covariance", (int)info);
        goto done;
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) b[(size_t)i * d + j] = v[(size_t)i * d + j] * sqrt(w[j] > 0 ? w[j] : 0);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, sigma2, d, b, d, 0.0, t, d); /* S2 B */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, d, 1.0, b, d, t, d, 0.0, v, d);        /* B^T S2 B */
    for (int i = 0; i < d; i++) /* exact symmetry for dsyevd, which reads one triangle */
        for (int j = 0; j < i; j++) v[(size_t)i * d + j] = v[(size_t)j * d + i] = 0.5 * (v[(size_t)i * d + j] + v[(size_t)j * d + i]);
    info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', d, v, d, w);
    if (info) {
        fail(err, errlen, "LAPACKE_dsyevd failed (info %d) on S1^(1/2) S2 S1^(1/2)", (int)info);
        goto done;
    }
    double tr_covmean = 0, tr1 = 0, tr2 = 0, dm = 0;
    for (int i = 0; i < d; i++) {
        tr_covmean += sqrt(w[i] > 0 ? w[i] : 0);
        tr1 += sigma1[(size_t)i * d + i];
        tr2 += sigma2[(size_t)i * d + i];
        dm += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    }
    *fid = dm + tr1 + tr2 - 2 * tr_covmean;
    rc = 0;
done:
    free(v);
    free(w);
    free(b);
    free(t);
    return rc;
}

/* Squared distances between rows [r0, r0+nb) of a and all rows of b: n_a - 2 a.b + n_b, >= 0. */
static void sq_dists(const double *a, const double *na, int64_t r0, int64_t nb, const double *b, const double *nbv,
                     int64_t m, int d, double *out) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)m, d, -2.0, a + r0 * d, d, b, d, 0.0, out,
                (int)m);
#pragma omp parallel for
    for (int64_t i = 0; i < nb; i++)
        for (int64_t j = 0; j < m; j++) {
            double v = out[i * m + j] + na[r0 + i] + nbv[j];
            out[i * m + j] = v > 0 ? v : 0;
        }
}

static double *widen(const float *x, int64_t n, int d, double **norms) {
    double *y = malloc(sizeof(double) * (size_t)n * d), *nr = malloc(sizeof(double) * (size_t)n);
    if (!y || !nr) {
        free(y);
        free(nr);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) y[i * d + j] = x[i * d + j], s += (double)x[i * d + j] * x[i * d + j];
        nr[i] = s;
    }
    *norms = nr;
    return y;
}

enum { ROW_BLOCK = 1024 };

int gd_knn_radii(const float *x, int64_t n, int d, int k, double *radii) {
    if (k < 0 || k >= n) return -1;
    double *nx, *X = widen(x, n, d, &nx), *blk = X ? malloc(sizeof(double) * ROW_BLOCK * (size_t)n) : NULL;
    if (!blk) {
        free(X);
        if (X) free(nx);
        return -1;
    }
    for (int64_t r0 = 0; r0 < n; r0 += ROW_BLOCK) {
        int64_t nb = n - r0 < ROW_BLOCK ? n - r0 : ROW_BLOCK;
        sq_dists(X, nx, r0, nb, X, nx, n, d, blk);
#pragma omp parallel for
        for (int64_t i = 0; i < nb; i++) radii[r0 + i] = gd_select_kth(blk + i * n, n, k);
    }
    free(blk);
    free(X);
    free(nx);
    return 0;
}

int gd_precision_recall(const float *ref, const double *ref_radii, int64_t nr, const float *samp,
                        const double *samp_radii, int64_t ns, int d, double *precision, double *recall) {
    double *na, *nb, *A = widen(ref, nr, d, &na), *B = A ? widen(samp, ns, d, &nb) : NULL;
    double *blk = B ? malloc(sizeof(double) * ROW_BLOCK * (size_t)ns) : NULL;
    char *ref_in = blk ? calloc((size_t)nr, 1) : NULL, *samp_in = ref_in ? calloc((size_t)ns, 1) : NULL;
    int rc = -1;
    if (!samp_in) goto done;
    for (int64_t r0 = 0; r0 < nr; r0 += ROW_BLOCK) {
        int64_t m = nr - r0 < ROW_BLOCK ? nr - r0 : ROW_BLOCK;
        sq_dists(A, na, r0, m, B, nb, ns, d, blk);
#pragma omp parallel for
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < ns && !ref_in[r0 + i]; j++) ref_in[r0 + i] = blk[i * ns + j] <= samp_radii[j];
#pragma omp parallel for
        for (int64_t j = 0; j < ns; j++)
            for (int64_t i = 0; i < m && !samp_in[j]; i++) samp_in[j] = blk[i * ns + j] <= ref_radii[r0 + i];
    }
    int64_t cp = 0, cr = 0;
    for (int64_t j = 0; j < ns; j++) cp += samp_in[j];
    for (int64_t i = 0; i < nr; i++) cr += ref_in[i];
    *precision = (double)cp / (double)ns;
    *recall = (double)cr / (double)nr;
    rc = 0;
done:
    if (A) free(na);
    if (B) free(nb);
    free(A);
    free(B);
    free(blk);
    free(ref_in);
    free(samp_in);
    return rc;
}

double gd_inception_score(const float *logits, int64_t n, int k, int64_t split) {
    if (n < 1 || k < 1 || split < 1) return NAN;
    double *p = malloc(sizeof(double) * (size_t)n * k), *marg = malloc(sizeof(double) * k);
    if (!p || !marg) {
        free(p);
        free(marg);
        return NAN;
    }
    for (int64_t i = 0; i < n; i++) {
        double mx = logits[i * k], s = 0;
        for (int c = 1; c < k; c++) mx = logits[i * k + c] > mx ? logits[i * k + c] : mx;
        for (int c = 0; c < k; c++) s += p[i * k + c] = exp((double)logits[i * k + c] - mx);
        for (int c = 0; c < k; c++) p[i * k + c] /= s;
    }
    double total = 0;
    int64_t chunks = 0;
    for (int64_t c0 = 0; c0 < n; c0 += split, chunks++) {
        int64_t m = n - c0 < split ? n - c0 : split;
        for (int c = 0; c < k; c++) marg[c] = 0;
        for (int64_t i = c0; i < c0 + m; i++)
            for (int c = 0; c < k; c++) marg[c] += p[i * k + c];
        for (int c = 0; c < k; c++) marg[c] /= (double)m;
        double kl = 0;
        for (int64_t i = c0; i < c0 + m; i++)
            for (int c = 0; c < k; c++)
                if (p[i * k + c] > 0) kl += p[i * k + c] * (log(p[i * k + c]) - log(marg[c]));
        total += exp(kl / (double)m);
    }
    free(p);
    free(marg);
    return total / (double)chunks;
}

int gd_frechet_distance_rows(int d, const float *x, int64_t n, const double *mu1, const double *mu2, const double *sigma2,
                             double *fid, char *err, size_t errlen) {
    if (n < 2 || n > d) return fail(err, errlen, "the row route needs 2 <= n <= d rows (n %lld, d %d)", (long long)n, d);
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(sigma2[i])) return fail(err, errlen, "covariance has non-finite entries");
    for (int i = 0; i < d; i++)
        if (!isfinite(mu1[i]) || !isfinite(mu2[i])) return fail(err, errlen, "mean has non-finite entries");
    double *ca = malloc(sizeof(double) * (size_t)n * d), *t = malloc(sizeof(double) * (size_t)n * d),
           *m = malloc(sizeof(double) * (size_t)(n * n)), *w = malloc(sizeof(double) * (size_t)n),
           *mean = calloc((size_t)d, sizeof(double));
    int rc = -1;
    if (!ca || !t || !m || !w || !mean) {
        fail(err, errlen, "out of memory (%d-dimensional features)", d);
        goto done;
    }
    /* Ca = (x - mean) / sqrt(n - 1) with np.cov's float64 mean, so S1 = Ca^T Ca; the nonzero
     * eigenvalues of S1^(1/2) S2 S1^(1/2) are those of the n x n matrix Ca S2 Ca^T */
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= (double)n;
    double s = 1.0 / sqrt((double)(n - 1)), tr1 = 0, tr2 = 0, dm = 0, tr_covmean = 0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            ca[i * d + j] = ((double)x[i * d + j] - mean[j]) * s;
            tr1 += ca[i * d + j] * ca[i * d + j];
        }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, d, d, 1.0, ca, d, sigma2, d, 0.0, t, d); /* Ca S2 */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, d, 1.0, t, d, ca, d, 0.0, m, (int)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) m[i * n + j] = m[j * n + i] = 0.5 * (m[i * n + j] + m[j * n + i]);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)n, m, (lapack_int)n, w);
    if (info) {
        fail(err, errlen, "LAPACKE_dsyevd failed (info %d) on Ca S2 Ca^T", (int)info);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) tr_covmean += sqrt(w[i] > 0 ? w[i] : 0);
    for (int i = 0; i < d; i++) {
        tr2 += sigma2[(size_t)i * d + i];
        dm += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    }
    *fid = dm + tr1 + tr2 - 2 * tr_covmean;
    rc = 0;
done:
    free(ca), free(t), free(m), free(w), free(mean);
    return rc;
}
