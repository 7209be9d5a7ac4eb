/* Training objectives, computed outside the graph: the loss and d(loss)/d(network output), which
 * seeds gd_net_backward. Formulas as improved-diffusion / guided-diffusion (gaussian_diffusion.py)
 * and ED-DPM's ECT. */
#ifndef GD_TRAIN_H
#define GD_TRAIN_H
#include "gd_diffusion.h"

#include <stdint.h>

typedef struct {
    double mse, vb, loss;
} gd_loss_terms;

/* The hybrid objective (learn_sigma, RESCALED_MSE): loss = mean_flat((eps - noise)^2) + vb * K/1000,
 * vb in bits per dimension = KL(q(x_{k-1}|x_k,x_0) || p(x_{k-1}|x_k)) for k > 0 and the
 * discretised-Gaussian decoder NLL at k = 0, with the model mean detached (only the learned-range
 * value v gets vb's gradient). That is L_simple + 0.001 * L_vlb for K = T = 1000 uniform steps.
 * Without learned sigma only the MSE. out [N, C or 2C, H, W]; x0, xt, noise [N, C, H, W]; k [N]
 * step indices of d. Writes per-sample terms (may be NULL), returns the batch mean of loss, and
 * d(mean loss)/d(out) into dout (may be NULL). */
double gd_hybrid_loss(const gd_diffusion *d, int N, int C, int HW, int learned_sigma, const float *out, const float *x0,
                      const float *xt, const float *noise, const int *k, gd_loss_terms *terms, float *dout);

/* Classifier: cross-entropy + lambda * (log K - H(p)) per sample (ECT; lambda 0 = plain CE).
 * Returns the batch mean; per_sample (may be NULL); dlogits = d(mean)/d(logits) (may be NULL). */
double gd_ect_loss(int N, int K, const float *logits, const int32_t *y, double lambda, double *per_sample,
                   float *dlogits);

/* x_t = sqrt(abar_k) x0 + sqrt(1 - abar_k) noise, per sample. */
void gd_q_sample(const gd_diffusion *d, int N, int per, const float *x0, const float *noise, const int *k, float *xt);
#endif
