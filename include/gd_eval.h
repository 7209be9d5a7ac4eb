/* Sample-quality statistics in an evaluator network's feature space: Fréchet distance (FID),
 * k-NN precision/recall (Kynkäänniemi et al., as guided-diffusion's evaluator), an Inception-style
 * score and accuracy. Everything is accumulated in double. */
#ifndef GD_EVAL_H
#define GD_EVAL_H
#include "gd_inception.h"

#include <stddef.h>
#include <stdint.h>

/* Mean [d] and unbiased covariance [d, d] (divides by n - 1, as np.cov) of n feature rows.
 * Returns 0, or -1 when n < 2 or memory runs out. */
int gd_feature_stats(const float *feats, int64_t n, int d, double *mu, double *sigma);

/* The mean as guided-diffusion's evaluator.py takes it (np.mean of float32 features): rows added
 * in order in float32, then divided by float32(n). Moves an ImageNet FID by ~1e-6 relative
 * against the double mean of gd_feature_stats; the Inception path uses it to match evaluator.py. */
void gd_feature_mean_f32(const float *feats, int64_t n, int d, float *mu);

/* ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).
 * The trace term is sum_i sqrt(max(l_i, 0)) over the eigenvalues of B^T S2 B, B = V diag(sqrt w)
 * from S1 = V diag(w) V^T (LAPACK dsyevd twice): the spectrum of S1^(1/2) S2 S1^(1/2), i.e.
 * Tr(sqrtm(S1 S2)) without complex arithmetic. No eps offset: where scipy's sqrtm goes non-finite
 * (constant feature columns) guided-diffusion retries with +1e-6 I and lands ~1e-3 off the exact
 * value; this stays within 1e-9 of it (tests/fixtures/eval.safetensors, cases and errors there).
 * Returns 0, or -1 with a message in err (non-finite input, LAPACK failure). */
int gd_frechet_distance(int d, const double *mu1, const double *sigma1, const double *mu2, const double *sigma2,
                        double *fid, char *err, size_t errlen);

/* The same distance when the first side is n <= d feature rows x [n, d] (a small sample batch):
 * S1 = Ca^T Ca with Ca = (x - mean) / sqrt(n - 1) (np.cov's float64 mean) and the trace term from
 * the n x n matrix Ca S2 Ca^T, which has the nonzero spectrum of S1^(1/2) S2 S1^(1/2): no d x d
 * eigen-decomposition. mu1 is the mean the |mu1 - mu2|^2 term uses (evaluator.py's float32 one). */
int gd_frechet_distance_rows(int d, const float *x, int64_t n, const double *mu1, const double *mu2, const double *sigma2,
                             double *fid, char *err, size_t errlen);

/* Squared distance from each of the n rows of x to its k-th nearest other row (index k of the
 * sorted distances to its own set, index 0 being the row itself). */
int gd_knn_radii(const float *x, int64_t n, int d, int k, double *radii);

/* precision: the fraction of sample rows within (<=) the radius of at least one reference row;
 * recall: the fraction of reference rows within the radius of at least one sample row.
 * Radii from gd_knn_radii with k = 3 reproduce guided-diffusion's ManifoldEstimator (which uses
 * fp16 distances; these are exact in double). */
int gd_precision_recall(const float *ref, const double *ref_radii, int64_t nr, const float *samp,
                        const double *samp_radii, int64_t ns, int d, double *precision, double *recall);

/* exp(mean_n KL(p_n || mean p)) per consecutive chunk of `split` rows of softmax(logits),
 * averaged over chunks (guided-diffusion: split 5000; a shorter last chunk counts as one). */
double gd_inception_score(const float *logits, int64_t n, int k, int64_t split);

/* Scores of one run; NAN where not computed. */
typedef struct {
    double inception_score, fid, sfid, precision, recall, accuracy;
} gd_eval_scores;

/* The regression gate: json is a baseline object with any of "fid", "sfid", "inception_score",
 * "precision", "recall", "accuracy", each with its tolerance ("fid_tolerance_rel",
 * "sfid_tolerance_rel", "inception_score_tolerance_rel" relative; "precision_tolerance",
 * "recall_tolerance", "accuracy_tolerance" absolute; 0 when absent); other keys are ignored.
 * fid_tol >= 0 replaces the FID and sFID tolerances. Fails when FID/sFID rise above
 * base * (1 + tol) or the others fall below their limit. Returns 0 (pass) or 1 (regression) with
 * one line per checked score in report, or -1 with err (bad baseline, or a score it names that this
 * run lacks). */
int gd_eval_gate(const char *json, const gd_eval_scores *s, double fid_tol, char *report, size_t rlen, char *err,
                 size_t errlen);

/* The evaluator: a clean-image classifier (t = 0) planned once for batches of `batch`, giving the
 * pooled features (gd_net_features) and the logits of uint8 NHWC images, mapped to [-1, 1] as
 * x/127.5 - 1 like the training data. */
typedef struct gd_model gd_model;
typedef struct gd_evaluator gd_evaluator;
gd_evaluator *gd_evaluator_new(gd_model *m, int batch, char *err, size_t errlen);
void gd_evaluator_free(gd_evaluator *e);
int gd_evaluator_dim(const gd_evaluator *e);     /* feature length D */
int gd_evaluator_classes(const gd_evaluator *e); /* logits per image K */
/* feats [n, D] and logits [n, K] (either may be NULL); progress (may be NULL) after each batch.
 * Returns 0, or -1 with one line in err (image shape not the evaluator's). */
int gd_evaluator_run(gd_evaluator *e, const uint8_t *nhwc, int64_t n, int h, int w, int c, float *feats, float *logits,
                     void (*progress)(int64_t done, int64_t n, void *user), void *user, char *err, size_t errlen);
/* ---- the FID Inception's input preprocessing and batching (src/eval/inception_eval.c) ---- */
typedef enum {
    GD_INCEPTION_RESIZE_TF = 0, /* the graph's: TF1 legacy ResizeBilinear, then (x - 128) / 128 */
    GD_INCEPTION_RESIZE_PYTORCH /* pytorch-fid's: x / 255, half-pixel bilinear, then 2x - 1 */
} gd_inception_resize;

/* uint8 NHWC images (c = 3, or 1: replicated to RGB) of any size -> the network's input, float
 * NCHW [n,3,299,299]. The TF path is bit-exact with TF1's CPU kernel (no FMA contraction). */
void gd_inception_preprocess(gd_inception_resize mode, const uint8_t *nhwc, int n, int h, int w, int c, float *out);

/* Batches any number of images through preprocessing and the network (buffers planned once). */
typedef struct gd_inception_eval gd_inception_eval;
gd_inception_eval *gd_inception_eval_new(gd_inception *m, gd_inception_resize mode, char *err, size_t errlen);
void gd_inception_eval_free(gd_inception_eval *e);
int gd_inception_eval_run(gd_inception_eval *e, const uint8_t *nhwc, int64_t n, int h, int w, int c, float *pool,
                          float *spatial, float *logits, char *err, size_t errlen);
#endif
