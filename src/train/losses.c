/* Training losses and their gradients w.r.t. the network output (see gd_train.h). Per-element
 * terms are computed in double. */
#include "gd_tensor.h"
#include "gd_train.h"

#include <math.h>
#include <string.h>

static double normal_kl(double m1, double lv1, double m2, double lv2) {
    return 0.5 * (-1.0 + lv2 - lv1 + exp(lv1 - lv2) + (m1 - m2) * (m1 - m2) * exp(-lv2));
}

/* improved-diffusion's approx_standard_normal_cdf (tanh form) and its derivative */
static double acdf(double x) { return 0.5 * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
static double acdf_d(double x) {
    double u = tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 - u * u) * sqrt(2.0 / M_PI) * (1.0 + 3.0 * 0.044715 * x * x);
}

/* -log p(x | N(mean, exp(2 ls))) discretised to 256 bins of [-1, 1], and d/d(ls). */
static double decoder_nll(double x, double mean, double ls, double *d_ls) {
    double cx = x - mean, inv = exp(-ls), pin = inv * (cx + 1.0 / 255.0), min = inv * (cx - 1.0 / 255.0);
    double cp = acdf(pin), cm = acdf(min);
    /* d(pin)/d(ls) = -pin, d(min)/d(ls) = -min */
    if (x < -0.999) {
        double v = cp > 1e-12 ? cp : 1e-12;
        *d_ls = cp > 1e-12 ? acdf_d(pin) * pin / cp : 0.0;
        return -log(v);
    }
    if (x > 0.999) {
        double v = 1.0 - cm > 1e-12 ? 1.0 - cm : 1e-12;
        *d_ls = 1.0 - cm > 1e-12 ? -acdf_d(min) * min / (1.0 - cm) : 0.0;
        return -log(v);
    }
    double delta = cp - cm, v = delta > 1e-12 ? delta : 1e-12;
    *d_ls = delta > 1e-12 ? (acdf_d(pin) * pin - acdf_d(min) * min) / delta : 0.0;
    return -log(v);
}

double gd_hybrid_loss(const gd_diffusion *d, int N, int C, int HW, int learned_sigma, const float *out, const float *x0,
                      const float *xt, const float *noise, const int *k, gd_loss_terms *terms, float *dout) {
    const int64_t per = (int64_t)C * HW, ostride = learned_sigma ? 2 * per : per;
    const double D = (double)per, vb_scale = d->K / 1000.0 / log(2.0);
    double total = 0;
    for (int n = 0; n < N; n++) {
        const int kn = k[n];
        const float *eps = out + n * ostride, *v = learned_sigma ? eps + per : NULL;
        const float *x0n = x0 + n * per, *xtn = xt + n * per, *nz = noise + n * per;
        float *deps = dout ? dout + n * ostride : NULL, *dv = dout && learned_sigma ? dout + n * ostride + per : NULL;
        double mse = 0, vb = 0;
        const double sra = d->sqrt_recip_alphas_cumprod[kn], srm1 = d->sqrt_recipm1_alphas_cumprod[kn];
        const double c1 = d->posterior_mean_coef1[kn], c2 = d->posterior_mean_coef2[kn];
        const double min_log = d->posterior_log_variance_clipped[kn], max_log = log(d->betas[kn]);
        for (int64_t i = 0; i < per; i++) {
            double e = (double)eps[i] - nz[i];
            mse += e * e;
            if (deps) deps[i] = (float)(2.0 * e / D / N);
            if (!learned_sigma) continue;
            double frac = ((double)v[i] + 1.0) / 2.0, lv = frac * max_log + (1.0 - frac) * min_log;
            double dlv_dv = 0.5 * (max_log - min_log), g;
            double px0 = sra * xtn[i] - srm1 * eps[i]; /* detached: no gradient to eps through vb */
            double model_mean = c1 * px0 + c2 * xtn[i];
            if (kn == 0) {
                double dls;
                vb += decoder_nll(x0n[i], model_mean, 0.5 * lv, &dls);
                g = 0.5 * dls;
            } else {
                double true_mean = c1 * x0n[i] + c2 * xtn[i], true_lv = min_log;
                vb += normal_kl(true_mean, true_lv, model_mean, lv);
                double dm = true_mean - model_mean;
                g = 0.5 * (1.0 - exp(true_lv - lv) - dm * dm * exp(-lv));
            }
            if (dv) dv[i] = (float)(g * dlv_dv * vb_scale / D / N);
        }
        mse /= D;
        vb = learned_sigma ? vb / D * vb_scale : 0.0;
        if (terms) terms[n] = (gd_loss_terms){mse, vb, mse + vb};
        total += mse + vb;
    }
    return total / N;
}

double gd_ect_loss(int N, int K, const float *logits, const int32_t *y, double lambda, double *per_sample,
                   float *dlogits) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (int64_t)n * K;
        double lse, h = gd_logits_entropy(z, K, &lse);
        double l = -(z[y[n]] - lse) + lambda * (log((double)K) - h);
        if (per_sample) per_sample[n] = l;
        total += l;
        if (!dlogits) continue;
        /* d(-H)/dz_c = p_c (log p_c + H) */
        for (int c = 0; c < K; c++) {
            double lp = z[c] - lse, p = exp(lp);
            dlogits[(int64_t)n * K + c] = (float)((p - (c == y[n]) + lambda * p * (lp + h)) / N);
        }
    }
    return total / N;
}

void gd_q_sample(const gd_diffusion *d, int N, int per, const float *x0, const float *noise, const int *k, float *xt) {
    for (int n = 0; n < N; n++) {
        const float a = (float)sqrt(d->alphas_cumprod[k[n]]), b = (float)sqrt(1.0 - d->alphas_cumprod[k[n]]);
        for (int i = 0; i < per; i++) xt[(int64_t)n * per + i] = a * x0[(int64_t)n * per + i] + b * noise[(int64_t)n * per + i];
    }
}
