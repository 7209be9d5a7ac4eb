"""Independent reference for the training losses: improved-diffusion's hybrid objective
(L_simple + lambda * L_vlb, learned-range variance) and ED-DPM's ECT classifier loss.

Written from improved-diffusion's `gaussian_diffusion.py` / `losses.py` semantics (training_losses,
_vb_terms_bpd, normal_kl, discretized_gaussian_log_likelihood with the tanh CDF approximation,
mean_flat) and guidance-methods.md section 1b.  Schedules come from diffusion.py (float64 arrays).

Everything works per sample and in the dtype of the inputs: coefficients are float64 numpy values
indexed with each sample's t and cast to the tensor dtype (improved-diffusion's
_extract_into_tensor does `.float()`), so a float64 call gives the float64 "truth" and a float32
call reproduces the PyTorch float32 run.  All functions are differentiable with autograd.

Diffusion side (EPSILON prediction, LEARNED_RANGE variance, model_out = [eps | v], 2C channels)

    q_sample(diffusion, x_start, t, noise)
        x_t = sqrt(abar[t]) * x_start + sqrt(1 - abar[t]) * noise
    hybrid_loss(model_out, x_start, x_t, t, noise, diffusion, lam_mode="mse") -> dict, each [N]:
        mse   = mean_{C,H,W} (noise - eps)^2
        vb_bpd= L_t in bits/dim, computed with eps DETACHED (frozen_out = cat[eps.detach(), v]),
                clip_denoised=False:
                  t > 0:  mean_{C,H,W} KL( q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t) ) / ln 2
                  t == 0: mean_{C,H,W} -log p_disc(x_0 | mu, sigma) / ln 2   (decoder NLL)
        vb    = vb_weight * vb_bpd
        loss  = mse + vb
        (also kl_bpd / decoder_nll_bpd: both branches for every sample, and vb_weight)
    lam_mode (how improved-diffusion's loss_type scales the vb term; T = diffusion.num_timesteps):
        "mse"           vb_weight = 1           loss_type MSE (guided-diffusion default,
                                                rescale_learned_sigmas=False)
        "rescaled_mse"  vb_weight = T / 1000.0  loss_type RESCALED_MSE (improved-diffusion default,
                                                rescale_learned_sigmas=True)
        float lam       vb_weight = lam * T     (lam = 0.001 is "rescaled_mse")
    Why lambda = 0.001: with t ~ Uniform{0..T-1}, T * vb_bpd(t) is an unbiased estimate of
    L_vlb = L_0 + ... + L_{T-1} (bits/dim; the prior term L_T has no parameters and is dropped), so
    E_t[mse + (T/1000) vb_bpd] = L_simple + 0.001 * L_vlb.  For T = 1000 both modes give weight 1;
    plain "mse" means lambda = 1/T in general.

Classifier side (guidance-methods.md 1b; ED-DPM scripts/classifier_train_ECT.py)

    ce_loss(logits, labels)                  -> [N]  -log_softmax(logits)[n, y_n]
    ect_loss(logits, labels, lam=0.1)        -> dict, each [N]:
        ce, ent = log C - H(p) = log C + sum_c p_c log p_c  (= KL(p || uniform) >= 0), loss = ce + lam*ent
        C = logits.shape[-1] (ED-DPM uses its NUM_CLASSES constant = the logit width); p = softmax,
        log p = log_softmax (as the ED-DPM script).  The training loss is the batch mean.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

LN2 = math.log(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

LAM_MODES = ("mse", "rescaled_mse")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def extract(arr, t, x):
    """arr[t_n] (float64 numpy) cast to x's dtype, shaped [N, 1, 1, ...] to broadcast over x."""
    t = torch.as_tensor(t, dtype=torch.int64).reshape(-1)
    vals = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))[t]
    return vals.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def mean_flat(x):
    """Mean over every dimension but the first."""
    return x.mean(dim=list(range(1, x.dim())))


def vb_weight(diffusion, lam_mode):
    T = diffusion.num_timesteps
    if isinstance(lam_mode, str):
        if lam_mode == "mse":
            return 1.0
        if lam_mode == "rescaled_mse":
            return T / 1000.0
        raise ValueError("lam_mode %r (want %s or a float lambda)" % (lam_mode, LAM_MODES))
    return float(lam_mode) * T


# --------------------------------------------------------------------------------------------
# forward process and posterior
# --------------------------------------------------------------------------------------------


def sqrt_alphas_cumprod(diffusion):
    return np.sqrt(diffusion.alphas_cumprod)


def sqrt_one_minus_alphas_cumprod(diffusion):
    return np.sqrt(1.0 - diffusion.alphas_cumprod)


def q_sample(diffusion, x_start, t, noise):
    return (extract(sqrt_alphas_cumprod(diffusion), t, x_start) * x_start
            + extract(sqrt_one_minus_alphas_cumprod(diffusion), t, x_start) * noise)


def q_posterior(diffusion, x_start, x_t, t):
    """(mean, log_variance_clipped) of q(x_{t-1} | x_t, x_0)."""
    mean = (extract(diffusion.posterior_mean_coef1, t, x_t) * x_start
            + extract(diffusion.posterior_mean_coef2, t, x_t) * x_t)
    logvar = extract(diffusion.posterior_log_variance_clipped, t, x_t) * torch.ones_like(x_t)
    return mean, logvar


def p_mean_variance_learned_range(diffusion, model_out, x_t, t, clip_denoised=False):
    """(mean, log_variance, pred_xstart) for EPSILON + LEARNED_RANGE (spec 5.5) with per-sample t."""
    C = x_t.shape[1]
    assert model_out.shape[1] == 2 * C, "learned_range needs 2C output channels"
    eps, v = model_out[:, :C], model_out[:, C:]
    min_log = extract(diffusion.posterior_log_variance_clipped, t, x_t)
    max_log = extract(diffusion.log_betas, t, x_t)
    frac = (v + 1) / 2
    logvar = frac * max_log + (1 - frac) * min_log
    xstart = (extract(diffusion.sqrt_recip_alphas_cumprod, t, x_t) * x_t
              - extract(diffusion.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)
    if clip_denoised:
        xstart = xstart.clamp(-1, 1)
    mean = (extract(diffusion.posterior_mean_coef1, t, x_t) * xstart
            + extract(diffusion.posterior_mean_coef2, t, x_t) * x_t)
    return mean, logvar, xstart


# --------------------------------------------------------------------------------------------
# likelihood pieces (improved_diffusion/losses.py semantics)
# --------------------------------------------------------------------------------------------


def normal_kl(mean1, logvar1, mean2, logvar2):
    """Element-wise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    """0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))  (the GELU tanh approximation)."""
    return 0.5 * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Element-wise log P(bin of x) in nats; x = uint8 / 127.5 - 1, bins of half-width 1/255,
    the two edge bins (x < -0.999, x > 0.999) extend to -inf / +inf; probabilities floored at 1e-12."""
    assert x.shape == means.shape == log_scales.shape
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def vb_terms_bpd(diffusion, model_out, x_start, x_t, t):
    """improved-diffusion _vb_terms_bpd with clip_denoised=False, per sample.
    Returns (output, kl_bpd, decoder_nll_bpd); output = decoder NLL where t == 0, else the KL."""
    t = torch.as_tensor(t, dtype=torch.int64).reshape(-1)
    true_mean, true_logvar = q_posterior(diffusion, x_start, x_t, t)
    mean, logvar, _ = p_mean_variance_learned_range(diffusion, model_out, x_t, t, clip_denoised=False)
    kl = mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / LN2
    nll = -mean_flat(discretized_gaussian_log_likelihood(x_start, mean, 0.5 * logvar)) / LN2
    return torch.where(t == 0, nll, kl), kl, nll


def hybrid_loss(model_out, x_start, x_t, t, noise, diffusion, lam_mode="mse"):
    """Per-sample improved-diffusion training_losses for EPSILON + LEARNED_RANGE with loss_type
    MSE ("mse") / RESCALED_MSE ("rescaled_mse") / explicit lambda (float).  See module doc."""
    t = torch.as_tensor(t, dtype=torch.int64).reshape(-1)
    C = x_t.shape[1]
    assert model_out.shape == (x_t.shape[0], 2 * C, *x_t.shape[2:])
    eps, v = model_out[:, :C], model_out[:, C:]
    frozen = torch.cat([eps.detach(), v], dim=1)  # the vb term only trains the variance
    vb_bpd, kl, nll = vb_terms_bpd(diffusion, frozen, x_start, x_t, t)
    w = vb_weight(diffusion, lam_mode)
    vb = vb_bpd * w
    mse = mean_flat((noise - eps) ** 2)
    return {"mse": mse, "vb": vb, "loss": mse + vb, "vb_bpd": vb_bpd, "kl_bpd": kl,
            "decoder_nll_bpd": nll, "vb_weight": w}


# --------------------------------------------------------------------------------------------
# classifier losses
# --------------------------------------------------------------------------------------------


def ce_loss(logits, labels):
    """Per-sample cross entropy -log softmax(logits)[n, y_n]."""
    return F.cross_entropy(logits, torch.as_tensor(labels, dtype=torch.int64), reduction="none")


def ect_loss(logits, labels, lam=0.1):
    """Per-sample ECT loss CE + lam * (log C - H(softmax(logits)))."""
    ce = ce_loss(logits, labels)
    log_p = F.log_softmax(logits, dim=-1)
    p = F.softmax(logits, dim=-1)
    ent = math.log(logits.shape[-1]) + (log_p * p).sum(dim=-1)
    return {"ce": ce, "ent": ent, "loss": ce + lam * ent}
