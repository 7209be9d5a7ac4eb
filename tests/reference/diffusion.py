"""Independent reference for guided-diffusion's GaussianDiffusion + SpacedDiffusion samplers.

Written from the shared spec (adm-reference.md section 5, 6.1, 11; guidance-methods.md 1a, 3), not
from guided-diffusion's code.  Only the sampling side is implemented (EPSILON prediction).

Schedules
    get_named_beta_schedule(name, T)         "linear" | "cosine" -> float64 betas
    space_timesteps(T, section_counts)       "N,M,..." | [N, M, ...] | "ddimN" -> set of kept steps
    create_diffusion(steps, noise_schedule, timestep_respacing, model_var_type)
        -> Diffusion (respaced; timestep_respacing "" keeps all steps)
Every schedule array is a float64 numpy array; `Diffusion.extract(arr, k, x)` indexes it with the
respaced step k and casts the value to x's dtype (float32 for the reference run, as guided-diffusion's
_extract_into_tensor does with `.float()`), so coefficients are rounded to float32 before they multiply
float32 tensors.  A float64 x keeps them in float64 (used to measure the float32 noise floor).

Sampling (k = respaced index, K-1 ... 0; the networks see the ORIGINAL step timestep_map[k], as float)
    model_fn(x, t_orig) -> model output [N, C or 2C, H, W]
    cond_fn(x, t_orig)  -> guidance gradient, already multiplied by the guidance scale
    p_sample_loop(model_fn, x_T, noise, cond_fn=None, clip_denoised=True) -> [x_T, x_after_1, ...]
    ddim_sample_loop(model_fn, x_T, noise, cond_fn=None, eta=0.0, clip_denoised=True) -> same
`noise[j]` is the Gaussian draw of loop iteration j (j = 0 is the highest step k = K-1); it replaces
guided-diffusion's randn_like (drawn but unused at k = 0, and for DDIM with eta = 0).

Guidance
    plain_model_fn(model, y=None)                       model(x, t[, y])
    cfg_model_fn(model, y, null_label, cfg_scale, C)    eps = eps_u + w (eps_c - eps_u), variance
                                                        channels from the conditional pass; w = 1
                                                        returns the conditional pass unchanged
    classifier_cond_fn(classifier, y, scale, entropy=False, eds_t_range=(0, 1000))
        scale * d/dx sum_n log_softmax(classifier(x, t))[n, y_n]; with entropy=True each sample's
        gradient is further multiplied by log(K) / max(H_n, 1e-8) (H_n = entropy of the same
        forward's softmax, no gradient through it), only when eds_t_range[0] <= t < eds_t_range[1].
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

LEARNED_RANGE = "learned_range"
FIXED_LARGE = "fixed_large"
FIXED_SMALL = "fixed_small"
VAR_TYPES = (LEARNED_RANGE, FIXED_LARGE, FIXED_SMALL)

# --------------------------------------------------------------------------------------------
# schedules (spec 5.1, 5.8)
# --------------------------------------------------------------------------------------------


def _linspace(start, end, n):
    """numpy.linspace(start, end, n) for float64: betas[i] = i*step + start, last = end."""
    if n == 1:
        return np.array([start], dtype=np.float64)
    step = (end - start) / (n - 1)
    out = np.array([i * step + start for i in range(n)], dtype=np.float64)
    out[-1] = end
    return out


def _log(a):
    """Element-wise natural log through libm (math.log).  numpy's vectorised np.log can differ from
    libm by 1 ulp (e.g. linear T=1000 posterior_log_variance_clipped[999]); a C port uses log()."""
    return np.array([math.log(v) for v in np.asarray(a, dtype=np.float64)], dtype=np.float64)


def _cosine_alpha_bar(tau):
    return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2


def get_named_beta_schedule(name, num_timesteps):
    T = int(num_timesteps)
    if name == "linear":
        scale = 1000 / T
        return _linspace(scale * 0.0001, scale * 0.02, T)
    if name == "cosine":
        betas = []
        for i in range(T):
            t1 = i / T
            t2 = (i + 1) / T
            betas.append(min(1 - _cosine_alpha_bar(t2) / _cosine_alpha_bar(t1), 0.999))
        return np.array(betas, dtype=np.float64)
    raise ValueError("unknown beta schedule %r" % name)


def space_timesteps(num_timesteps, section_counts):
    """Set of original step indices to keep (spec 5.8)."""
    T = int(num_timesteps)
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            want = int(section_counts[len("ddim"):])
            for stride in range(1, T):
                if len(range(0, T, stride)) == want:
                    return set(range(0, T, stride))
            raise ValueError("cannot create exactly %d steps with an integer stride" % want)
        if section_counts == "":
            section_counts = [T]
        else:
            section_counts = [int(v) for v in section_counts.split(",")]
    counts = [int(v) for v in section_counts]
    size_per = T // len(counts)
    extra = T % len(counts)
    start = 0
    keep = []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError("cannot divide section of %d steps into %d" % (size, count))
        frac_stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            keep.append(start + round(cur))  # Python round: half to even
            cur += frac_stride
        start += size
    return set(keep)


# --------------------------------------------------------------------------------------------
# diffusion arrays (spec 5.2) and respacing (spec 5.8)
# --------------------------------------------------------------------------------------------


class Diffusion:
    """GaussianDiffusion built from (possibly respaced) betas; timestep_map[k] = original step."""

    def __init__(self, betas, model_var_type=LEARNED_RANGE, timestep_map=None):
        if model_var_type not in VAR_TYPES:
            raise ValueError("model_var_type %r" % model_var_type)
        betas = np.array(betas, dtype=np.float64)
        assert betas.ndim == 1 and (betas > 0).all() and (betas <= 1).all()
        self.model_var_type = model_var_type
        self.num_timesteps = len(betas)
        self.timestep_map = (np.arange(len(betas), dtype=np.int64) if timestep_map is None
                             else np.array(timestep_map, dtype=np.int64))
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = _log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas)
                                     / (1.0 - self.alphas_cumprod))
        self.log_betas = _log(betas)
        large = np.append(self.posterior_variance[1], betas[1:])
        self.fixed_large_variance = large
        self.fixed_large_log_variance = _log(large)

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def extract(arr, k, x):
        """arr[k] (float64) cast to x's dtype, shaped to broadcast over x (same k for the batch)."""
        return torch.tensor(float(arr[k]), dtype=torch.float64).to(x.dtype)

    def t_orig(self, k, x):
        """Original timestep fed to the networks, as float (dtype of x), one per sample."""
        return torch.full((x.shape[0],), float(self.timestep_map[k]), dtype=x.dtype)

    def predict_xstart_from_eps(self, x, k, eps):
        return (self.extract(self.sqrt_recip_alphas_cumprod, k, x) * x
                - self.extract(self.sqrt_recipm1_alphas_cumprod, k, x) * eps)

    def predict_eps_from_xstart(self, x, k, xstart):
        return ((self.extract(self.sqrt_recip_alphas_cumprod, k, x) * x - xstart)
                / self.extract(self.sqrt_recipm1_alphas_cumprod, k, x))

    def q_posterior_mean(self, xstart, x, k):
        return (self.extract(self.posterior_mean_coef1, k, x) * xstart
                + self.extract(self.posterior_mean_coef2, k, x) * x)

    # ---- p_mean_variance (spec 5.5) ----------------------------------------------------------
    def p_mean_variance(self, model_fn, x, k, clip_denoised=True):
        out = model_fn(x, self.t_orig(k, x))
        C = x.shape[1]
        if self.model_var_type == LEARNED_RANGE:
            assert out.shape[1] == 2 * C, "learned_range needs 2C output channels"
            eps, v = out[:, :C], out[:, C:]
            min_log = self.extract(self.posterior_log_variance_clipped, k, x)
            max_log = self.extract(self.log_betas, k, x)
            frac = (v + 1) / 2
            log_var = frac * max_log + (1 - frac) * min_log
            var = torch.exp(log_var)
        else:
            assert out.shape[1] == C, "fixed variance needs C output channels"
            eps = out
            if self.model_var_type == FIXED_LARGE:
                va, lva = self.fixed_large_variance, self.fixed_large_log_variance
            else:
                va, lva = self.posterior_variance, self.posterior_log_variance_clipped
            var = self.extract(va, k, x) * torch.ones_like(x)
            log_var = self.extract(lva, k, x) * torch.ones_like(x)
        xstart = self.predict_xstart_from_eps(x, k, eps)
        if clip_denoised:
            xstart = xstart.clamp(-1, 1)
        mean = self.q_posterior_mean(xstart, x, k)
        return {"mean": mean, "variance": var, "log_variance": log_var, "pred_xstart": xstart}

    # ---- guidance (spec 5.6) -----------------------------------------------------------------
    def condition_mean(self, cond_fn, out, x, k):
        grad = cond_fn(x, self.t_orig(k, x))
        return out["mean"] + out["variance"] * grad

    def condition_score(self, cond_fn, out, x, k):
        alpha_bar = self.extract(self.alphas_cumprod, k, x)
        eps = self.predict_eps_from_xstart(x, k, out["pred_xstart"])
        eps = eps - torch.sqrt(1 - alpha_bar) * cond_fn(x, self.t_orig(k, x))
        new = dict(out)
        new["pred_xstart"] = self.predict_xstart_from_eps(x, k, eps)  # not re-clipped
        new["mean"] = self.q_posterior_mean(new["pred_xstart"], x, k)
        return new

    # ---- samplers (spec 5.7) -----------------------------------------------------------------
    def p_sample(self, model_fn, x, k, noise, cond_fn=None, clip_denoised=True):
        out = self.p_mean_variance(model_fn, x, k, clip_denoised)
        mean = out["mean"]
        if cond_fn is not None:
            mean = self.condition_mean(cond_fn, out, x, k)
        nonzero = 1.0 if k != 0 else 0.0
        return mean + nonzero * torch.exp(0.5 * out["log_variance"]) * noise

    def ddim_sample(self, model_fn, x, k, noise, cond_fn=None, eta=0.0, clip_denoised=True):
        out = self.p_mean_variance(model_fn, x, k, clip_denoised)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, k)
        eps = self.predict_eps_from_xstart(x, k, out["pred_xstart"])
        ab = self.extract(self.alphas_cumprod, k, x)
        ab_prev = self.extract(self.alphas_cumprod_prev, k, x)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        mean_pred = out["pred_xstart"] * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma ** 2) * eps
        nonzero = 1.0 if k != 0 else 0.0
        return mean_pred + nonzero * sigma * noise

    def _loop(self, step, x_T, noise):
        K = self.num_timesteps
        assert len(noise) >= K, "need one noise tensor per step"
        traj = [x_T]
        x = x_T
        with torch.no_grad():
            for j, k in enumerate(range(K - 1, -1, -1)):
                x = step(x, k, noise[j].to(x.dtype))
                traj.append(x)
        return traj

    def p_sample_loop(self, model_fn, x_T, noise, cond_fn=None, clip_denoised=True):
        """-> list of K+1 tensors: x_T, then the sample after each iteration."""
        return self._loop(lambda x, k, z: self.p_sample(model_fn, x, k, z, cond_fn, clip_denoised),
                          x_T, noise)

    def ddim_sample_loop(self, model_fn, x_T, noise, cond_fn=None, eta=0.0, clip_denoised=True):
        return self._loop(
            lambda x, k, z: self.ddim_sample(model_fn, x, k, z, cond_fn, eta, clip_denoised),
            x_T, noise)


def respaced_betas(base_betas, use_timesteps):
    """(new_betas, timestep_map) as SpacedDiffusion builds them (spec 5.8)."""
    alphas_cumprod = np.cumprod(1.0 - np.asarray(base_betas, dtype=np.float64))
    last = 1.0
    new_betas, tmap = [], []
    for i, ac in enumerate(alphas_cumprod):
        if i in use_timesteps:
            new_betas.append(1 - ac / last)
            last = ac
            tmap.append(i)
    return np.array(new_betas, dtype=np.float64), np.array(tmap, dtype=np.int64)


def create_diffusion(steps=1000, noise_schedule="linear", timestep_respacing="",
                     model_var_type=LEARNED_RANGE):
    base = get_named_beta_schedule(noise_schedule, steps)
    if not timestep_respacing:
        timestep_respacing = [steps]
    use = space_timesteps(steps, timestep_respacing)
    betas, tmap = respaced_betas(base, use)
    return Diffusion(betas, model_var_type, tmap)


# --------------------------------------------------------------------------------------------
# guidance functions
# --------------------------------------------------------------------------------------------


def plain_model_fn(model, y=None):
    def fn(x, t):
        return model(x, t) if y is None else model(x, t, y)
    return fn


def cfg_model_fn(model, y, null_label, cfg_scale, channels):
    """Classifier-free guidance on the epsilon channels (guidance-methods.md 3, SDM form)."""
    w = float(cfg_scale)
    if w == 1.0:
        return plain_model_fn(model, y)

    def fn(x, t):
        out_c = model(x, t, y)
        out_u = model(x, t, torch.full_like(y, int(null_label)))
        ec, eu = out_c[:, :channels], out_u[:, :channels]
        eps = eu + w * (ec - eu)
        return torch.cat([eps, out_c[:, channels:]], dim=1)
    return fn


def classifier_cond_fn(classifier, y, scale, entropy=False, eds_t_range=(0, 1000), stats=None):
    """scale * grad_x log p(y|x_t) (per sample); entropy=True: EDS scale log(K)/max(H, 1e-8).

    The EDS factor is computed in float64 from the forward's logits (no gradient), combined with
    `scale` in float64 and rounded once to x's dtype before multiplying the gradient.  `stats`, if
    a list, receives (t, per-sample entropy factor or None) per call."""
    s = float(scale)

    def fn(x, t):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logits = classifier(x_in, t)
            logp = F.log_softmax(logits, dim=-1)
            sel = logp[torch.arange(x.shape[0]), y].sum()
            (g,) = torch.autograd.grad(sel, x_in)
        t0 = float(t[0])
        use_eds = entropy and eds_t_range[0] <= t0 < eds_t_range[1]
        if use_eds:
            with torch.no_grad():
                lp = F.log_softmax(logits.detach().double(), dim=-1)
                H = -(lp.exp() * lp).sum(dim=-1)
                factor = math.log(logits.shape[-1]) / torch.clamp(H, min=1e-8)
            sc = (s * factor).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
            if stats is not None:
                stats.append((t0, factor.tolist()))
        else:
            sc = torch.tensor(s, dtype=torch.float64).to(x.dtype)
            if stats is not None:
                stats.append((t0, None))
        return g * sc
    return fn
