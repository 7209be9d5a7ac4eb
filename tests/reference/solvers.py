"""Independent PyTorch reference of the fast diffusion-ODE solvers (DPM-Solver++, UniPC).

Written from the shared spec `fast-solvers.md` (section numbers below refer to it), not from
dpm-solver's `dpm_solver_pytorch.py` or UniPC's `uni_pc.py`.  Everything is computed in the
`dtype` of the noise schedule (float32 like the reference; float64 for the sensitivity runs of
spec section 11), except the networks, which always run in float32.

Noise schedule (section 2)
    NoiseScheduleVP(alphas_cumprod, clip_lambda=True, dtype=torch.float32)
        alphas_cumprod: guided-diffusion's DOUBLE cumulative product (diffusion.py).  The knot
        table log_alpha_n = 0.5*log(alphas_cumprod[n]) is computed in double, the trailing entries
        with lambda_n < -5.1 (strictly) are dropped when clip_lambda (N' = total_N: linear-1000
        keeps 1000, cosine-1000 keeps 996), then t_n = (n+1)/N' (linspace(0, 1, N'+1)[1:] in
        `dtype`) and log_alpha_n are stored in `dtype`.
        PROJECT DECISION: clip_lambda=True is used for EVERY solver, UniPC included (the C tool
        uses dpm-solver's newer clipped schedule everywhere; uni_pc.py's own copy does not clip,
        which only matters for schedules that reach lambda < -5.1, e.g. cosine; on linear-1000
        nothing is clipped and the schedule equals uni_pc.py's).
    .marginal_log_mean_coeff(t)  piecewise-linear in t through the knots (see _interp)
    .marginal_alpha(t) = exp(log a),  .marginal_std(t) = sqrt(1 - exp(2 log a))
    .marginal_lambda(t) = log a - 0.5*log(1 - exp(2 log a))
    .inverse_lambda(lam): log a = -0.5*logaddexp(0, -2 lam), then t from the same table read the
        other way (piecewise linear in log a)
    .model_time(t) = (t - 1/N') * 1000  (section 3: what U-Net AND classifier receive, in dtype)

_interp(x, xp, yp) (xp ascending): segment k = clamp(#{j: xp[j] <= x} - 1, 0, K-2), i.e. x in
[xp[k], xp[k+1]); outside the table the outermost segment is extended (no clamping); value
yp[k] + ((x - xp[k]) * (yp[k+1] - yp[k])) / (xp[k+1] - xp[k]) evaluated left to right in dtype.
(The reference finds the segment with a sort whose tie order is unspecified; at a knot the two
choices differ by <= 1 ulp of log alpha.)

Time grids (section 5): time_grid(ns, skip, t_start, t_end, S) -> S+1 times in dtype
    "uniform": linspace(t_start, t_end, S+1)
    "logsnr":  lambda(t_start), lambda(t_end) in dtype, linspace between them, inverse_lambda
    "quadratic": linspace(sqrt(t_start), sqrt(t_end), S+1) ** 2   (sqrt of the python doubles)
    torch.linspace in dtype (CPU: start + i*step for i < S/2, end - (S-i)*step after).

Model wrapper (section 4): GuidedModel
    eps    = first C channels of the U-Net output (learned sigma dropped)
    cfg    = ONE U-Net call on the 2N batch [x | x] with labels [y | null], eps = e_u + w(e_c - e_u)
             on the eps channels (w = 1: the conditional call alone, as the reference does)
    G      = guidance term already scaled (gen_traj_fixtures / diffusion.classifier_cond_fn:
             s * grad log p(y|x), EDS: s * c_b * grad log p with c_b = log K / max(H, 1e-8)),
             evaluated at the fractional t_in (U-Net and classifier see the same t_in)
    eps~   = eps - sigma_t * G             (also after cfg: eps_cfg - sigma_t * G)
    x0     = (x - sigma_t * eps~) / alpha_t, then correct: "none" | "clip" (clamp [-1, 1]) |
             "dynamic" (section 7: per sample q = ratio-quantile of |x0| with linear
             interpolation at position ratio*(n-1) computed in dtype, s = max(q, max_val),
             x0 = clamp(x0, -s, s) / s)
    In float64 mode x is rounded to float32 for the networks, t_in is rounded to float32, and the
    outputs are widened back to float64.

Solvers (every sample() returns (x_final, traj, t_in): traj[0] = x_T, traj[j] = x after outer
step j, t_in = the network time of every model evaluation in order, len = NFE; the final output
is x(t_end), no denoise_to_zero; data prediction throughout):
    dpmpp_multistep(model, ns, x, steps, order=2|3, skip, lower_order_final=True,
                    solver_type="dpmsolver"|"taylor")                    section 6, NFE = S
        lower_order_final lowers the final orders only when S < 10 (the reference's condition)
    dpmpp_singlestep(model, ns, x, steps, order=1|2|3, skip, solver_type) section 8, NFE = S
        order schedule of section 8; outer grid K+1 points in lambda for logsnr, else the
        (S+1)-point grid at the cumulative sums of the orders; inner points from
        time_grid(skip, s, t, order) (r1 = 1/2 in lambda up to rounding for logsnr, uniform in t
        otherwise), s1 = inverse_lambda(lambda_s + r1 h)
    unipc_multistep(model, ns, x, steps, order=1|2|3, skip, variant="bh1"|"bh2",
                    lower_order_final=True, corrector=True)               section 9, NFE = S
        lower_order_final always (no S < 10 condition); corrector off at the last step; the
        history holds the corrector's model value (evaluated at the predicted x); rho = [1/2]
        for the order-2 predictor and order-1 corrector, otherwise float32 (dtype) solves.
    sample(name, ...) dispatches "dpm++2m", "dpm++3m", "dpm++2s", "unipc".
"""
import math

import numpy as np
import torch

LAMBDA_CLIP = -5.1


# --------------------------------------------------------------------------------------------
# noise schedule (spec 2, 3)
# --------------------------------------------------------------------------------------------


def _interp(x, xp, yp):
    """Piecewise-linear interpolation, extended linearly outside [xp[0], xp[-1]] (xp ascending)."""
    K = xp.numel()
    flat = x.reshape(-1)
    k = torch.searchsorted(xp, flat, right=True) - 1
    k = k.clamp(0, K - 2)
    x0, x1, y0, y1 = xp[k], xp[k + 1], yp[k], yp[k + 1]
    return (y0 + (flat - x0) * (y1 - y0) / (x1 - x0)).reshape(x.shape)


class NoiseScheduleVP:
    """Discrete VP schedule over guided-diffusion's double alphas_cumprod (spec 2)."""

    def __init__(self, alphas_cumprod, clip_lambda=True, dtype=torch.float32):
        ac = np.asarray(alphas_cumprod, dtype=np.float64)
        log_alpha = np.array([0.5 * math.log(v) for v in ac], dtype=np.float64)
        if clip_lambda:
            lam = np.array([la - 0.5 * math.log(1.0 - math.exp(2.0 * la)) for la in log_alpha])
            n_drop = 0
            while n_drop < len(lam) and lam[len(lam) - 1 - n_drop] < LAMBDA_CLIP:
                n_drop += 1
            # only a trailing run is dropped (lambda decreases with n)
            log_alpha = log_alpha[:len(log_alpha) - n_drop]
        self.dtype = dtype
        self.total_N = len(log_alpha)
        self.T = 1.0
        self.t_array = torch.linspace(0.0, 1.0, self.total_N + 1, dtype=dtype)[1:].contiguous()
        self.log_alpha_array = torch.tensor(log_alpha, dtype=torch.float64).to(dtype)
        self._la_flip = torch.flip(self.log_alpha_array, [0]).contiguous()
        self._t_flip = torch.flip(self.t_array, [0]).contiguous()

    def _t(self, t):
        return torch.as_tensor(t, dtype=self.dtype)

    def marginal_log_mean_coeff(self, t):
        return _interp(self._t(t), self.t_array, self.log_alpha_array)

    def marginal_alpha(self, t):
        return torch.exp(self.marginal_log_mean_coeff(t))

    def marginal_std(self, t):
        return torch.sqrt(1.0 - torch.exp(2.0 * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t):
        la = self.marginal_log_mean_coeff(t)
        return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))

    def inverse_lambda(self, lam):
        lam = self._t(lam)
        la = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        return _interp(la, self._la_flip, self._t_flip)

    def model_time(self, t):
        """t_in = (t - 1/N') * 1000, in dtype (spec 3)."""
        return (self._t(t) - 1.0 / self.total_N) * 1000.0

    def t_end(self):
        return 1.0 / self.total_N


# --------------------------------------------------------------------------------------------
# time grids (spec 5)
# --------------------------------------------------------------------------------------------

SKIP_TYPES = ("uniform", "logsnr", "quadratic")


def time_grid(ns, skip, t_start, t_end, n):
    """n+1 grid times from t_start to t_end (python floats), in ns.dtype."""
    dt = ns.dtype
    if skip == "uniform":
        return torch.linspace(t_start, t_end, n + 1, dtype=dt)
    if skip == "logsnr":
        lam_T = ns.marginal_lambda(torch.tensor(t_start, dtype=dt)).item()
        lam_0 = ns.marginal_lambda(torch.tensor(t_end, dtype=dt)).item()
        return ns.inverse_lambda(torch.linspace(lam_T, lam_0, n + 1, dtype=dt))
    if skip == "quadratic":
        return torch.linspace(t_start ** 0.5, t_end ** 0.5, n + 1, dtype=dt).pow(2)
    raise ValueError("unknown time schedule %r" % skip)


# --------------------------------------------------------------------------------------------
# model wrapper (spec 4, 7)
# --------------------------------------------------------------------------------------------


def quantile_linear(a, ratio):
    """Per-row quantile of a [B, n] tensor with linear interpolation (position ratio*(n-1))."""
    n = a.shape[1]
    srt, _ = torch.sort(a, dim=1)
    pos = torch.tensor(ratio, dtype=a.dtype) * (n - 1)
    lo = int(math.floor(float(pos)))
    hi = min(lo + 1, n - 1)
    w = pos - lo
    return srt[:, lo] + w * (srt[:, hi] - srt[:, lo])


def dynamic_threshold(x0, ratio=0.995, max_val=1.0):
    b = x0.shape[0]
    q = quantile_linear(x0.abs().reshape(b, -1), ratio)
    s = torch.maximum(q, torch.full_like(q, max_val)).view(-1, *([1] * (x0.dim() - 1)))
    return torch.clamp(x0, -s, s) / s


class GuidedModel:
    """Guided data prediction for the solvers.

    unet: float32 U-Net; channels: C; y: labels [N] or None (unconditional U-Net);
    cond_fn: G(x32, t32) -> already-scaled guidance gradient (float32) or None;
    cfg_scale, null_label: classifier-free guidance (only when cfg_scale != 1);
    correct: "none" | "clip" | "dynamic"; thr_ratio, thr_max: dynamic thresholding parameters.
    """

    def __init__(self, ns, unet, channels, y=None, cond_fn=None, cfg_scale=1.0, null_label=None,
                 correct="clip", thr_ratio=0.995, thr_max=1.0):
        self.ns = ns
        self.unet = unet
        self.C = int(channels)
        self.y = y
        self.cond_fn = cond_fn
        self.cfg_scale = float(cfg_scale)
        self.null_label = null_label
        self.correct = correct
        self.thr_ratio = thr_ratio
        self.thr_max = thr_max
        self.t_in = []
        if self.cfg_scale != 1.0:
            assert y is not None and null_label is not None, "cfg needs labels and a null label"

    def _net(self, x32, t32):
        with torch.no_grad():
            if self.cfg_scale != 1.0:
                n = x32.shape[0]
                lab = torch.cat([self.y, torch.full_like(self.y, int(self.null_label))])
                out = self.unet(torch.cat([x32, x32]), torch.cat([t32, t32]), lab)[:, :self.C]
                ec, eu = out[:n], out[n:]
                return eu + self.cfg_scale * (ec - eu)
            out = self.unet(x32, t32) if self.y is None else self.unet(x32, t32, self.y)
            return out[:, :self.C]

    def eps(self, x, t):
        """Guided noise prediction at the continuous time t (0-dim tensor)."""
        ns = self.ns
        t_in = ns.model_time(t)
        t32 = t_in.reshape(1).to(torch.float32).expand(x.shape[0]).contiguous()
        self.t_in.append(float(t32[0]))
        x32 = x.to(torch.float32)
        e = self._net(x32, t32).to(x.dtype)
        if self.cond_fn is not None:
            g = self.cond_fn(x32, t32).detach().to(x.dtype)
            e = e - ns.marginal_std(t) * g
        return e

    def x0(self, x, t):
        ns = self.ns
        e = self.eps(x, t)
        x0 = (x - ns.marginal_std(t) * e) / ns.marginal_alpha(t)
        if self.correct == "clip":
            x0 = x0.clamp(-1.0, 1.0)
        elif self.correct == "dynamic":
            x0 = dynamic_threshold(x0, self.thr_ratio, self.thr_max)
        elif self.correct != "none":
            raise ValueError("correct %r" % self.correct)
        return x0


class GaussianModel:
    """Exact data prediction for Gaussian data x0 ~ N(mu, diag(s^2)) (closed-form self-check):
    eps(x, t) = sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2)."""

    def __init__(self, ns, mu, s):
        self.ns = ns
        self.mu = mu
        self.s = s
        self.t_in = []

    def x0(self, x, t):
        ns = self.ns
        self.t_in.append(float(ns.model_time(t)))
        a, sg = ns.marginal_alpha(t), ns.marginal_std(t)
        e = sg * (x - a * self.mu) / (a * a * self.s ** 2 + sg * sg)
        return (x - sg * e) / a

    def exact(self, x_T, t_T, t_e):
        ns = self.ns
        aT, sT = ns.marginal_alpha(t_T), ns.marginal_std(t_T)
        ae, se = ns.marginal_alpha(t_e), ns.marginal_std(t_e)
        z = (x_T - aT * self.mu) / torch.sqrt(aT ** 2 * self.s ** 2 + sT ** 2)
        return ae * self.mu + torch.sqrt(ae ** 2 * self.s ** 2 + se ** 2) * z


# --------------------------------------------------------------------------------------------
# DPM-Solver++ multistep (spec 6)
# --------------------------------------------------------------------------------------------


def dpmpp_first_update(ns, x, s, t, m_s):
    """Order 1 (= DDIM): x_t = (sigma_t/sigma_s) x - alpha_t phi1 m_s, phi1 = expm1(-h)."""
    h = ns.marginal_lambda(t) - ns.marginal_lambda(s)
    phi_1 = torch.expm1(-h)
    return (ns.marginal_std(t) / ns.marginal_std(s)) * x - (ns.marginal_alpha(t) * phi_1) * m_s


def _dpmpp_multistep_update(ns, x, ms, ts, t, order, solver_type):
    """ms, ts: history, oldest first (at least `order` entries); returns x at t."""
    if order == 1:
        return dpmpp_first_update(ns, x, ts[-1], t, ms[-1])
    lam_t = ns.marginal_lambda(t)
    lam_0 = ns.marginal_lambda(ts[-1])
    lam_1 = ns.marginal_lambda(ts[-2])
    alpha_t = ns.marginal_alpha(t)
    h = lam_t - lam_0
    phi_1 = torch.expm1(-h)
    base = (ns.marginal_std(t) / ns.marginal_std(ts[-1])) * x - (alpha_t * phi_1) * ms[-1]
    r0 = (lam_0 - lam_1) / h
    D0 = (ms[-1] - ms[-2]) / r0
    if order == 2:
        if solver_type == "dpmsolver":
            return base - (alpha_t * phi_1) * (0.5 * D0)
        if solver_type == "taylor":
            return base + (alpha_t * (phi_1 / h + 1.0)) * D0
        raise ValueError("solver_type %r" % solver_type)
    if order == 3:
        lam_2 = ns.marginal_lambda(ts[-3])
        r1 = (lam_1 - lam_2) / h
        D1 = (ms[-2] - ms[-3]) / r1
        Dp = D0 + (r0 / (r0 + r1)) * (D0 - D1)
        Dpp = (D0 - D1) / (r0 + r1)
        phi_2 = phi_1 / h + 1.0
        phi_3 = phi_2 / h - 0.5
        return base + (alpha_t * phi_2) * Dp - (alpha_t * phi_3) * Dpp
    raise ValueError("order %r" % order)


def dpmpp_multistep(model, ns, x, steps, order=2, skip="uniform", lower_order_final=True,
                    solver_type="dpmsolver", t_start=None, t_end=None):
    t_start = ns.T if t_start is None else t_start
    t_end = ns.t_end() if t_end is None else t_end
    assert steps >= order and order in (1, 2, 3)
    ts = time_grid(ns, skip, t_start, t_end, steps)
    traj = [x]
    hist_t = [ts[0]]
    hist_m = [model.x0(x, ts[0])]
    for i in range(1, steps + 1):
        if i < order:
            p = i
        elif lower_order_final and steps < 10:
            p = min(order, steps + 1 - i)
        else:
            p = order
        x = _dpmpp_multistep_update(ns, x, hist_m, hist_t, ts[i], p, solver_type)
        traj.append(x)
        if i < steps:
            hist_t.append(ts[i])
            hist_m.append(model.x0(x, ts[i]))
            hist_t, hist_m = hist_t[-order:], hist_m[-order:]
    return x, traj, list(model.t_in)


# --------------------------------------------------------------------------------------------
# DPM-Solver++ singlestep (spec 8)
# --------------------------------------------------------------------------------------------


def singlestep_orders(steps, order):
    if order == 3:
        K = steps // 3 + 1
        if steps % 3 == 0:
            return [3] * (K - 2) + [2, 1]
        if steps % 3 == 1:
            return [3] * (K - 1) + [1]
        return [3] * (K - 1) + [2]
    if order == 2:
        return [2] * (steps // 2) + ([1] if steps % 2 else [])
    if order == 1:
        return [1] * steps
    raise ValueError("order %r" % order)


def _dpmpp_singlestep_update(model, ns, x, s, t, order, r1, r2, solver_type):
    lam_s, lam_t = ns.marginal_lambda(s), ns.marginal_lambda(t)
    h = lam_t - lam_s
    sig_s = ns.marginal_std(s)
    alpha_t = ns.marginal_alpha(t)
    phi_1 = torch.expm1(-h)
    m_s = model.x0(x, s)
    base = (ns.marginal_std(t) / sig_s) * x - (alpha_t * phi_1) * m_s
    if order == 1:
        return base
    s1 = ns.inverse_lambda(lam_s + r1 * h)
    phi_11 = torch.expm1(-r1 * h)
    u1 = (ns.marginal_std(s1) / sig_s) * x - (ns.marginal_alpha(s1) * phi_11) * m_s
    m_s1 = model.x0(u1, s1)
    if order == 2:
        if solver_type == "dpmsolver":
            return base - (0.5 / r1) * (alpha_t * phi_1) * (m_s1 - m_s)
        if solver_type == "taylor":
            return base + (1.0 / r1) * (alpha_t * (phi_1 / h + 1.0)) * (m_s1 - m_s)
        raise ValueError("solver_type %r" % solver_type)
    # order 3, "dpmsolver" type (spec 8)
    s2 = ns.inverse_lambda(lam_s + r2 * h)
    phi_12 = torch.expm1(-r2 * h)
    alpha_s2 = ns.marginal_alpha(s2)
    u2 = ((ns.marginal_std(s2) / sig_s) * x - (alpha_s2 * phi_12) * m_s
          + (r2 / r1) * (alpha_s2 * (phi_12 / (r2 * h) + 1.0)) * (m_s1 - m_s))
    m_s2 = model.x0(u2, s2)
    return base + (1.0 / r2) * (alpha_t * (phi_1 / h + 1.0)) * (m_s2 - m_s)


def dpmpp_singlestep(model, ns, x, steps, order=2, skip="uniform", solver_type="dpmsolver",
                     t_start=None, t_end=None):
    t_start = ns.T if t_start is None else t_start
    t_end = ns.t_end() if t_end is None else t_end
    orders = singlestep_orders(steps, order)
    K = len(orders)
    if skip == "logsnr":
        outer = time_grid(ns, skip, t_start, t_end, K)
    else:
        full = time_grid(ns, skip, t_start, t_end, steps)
        outer = full[torch.tensor([0] + list(np.cumsum(orders)), dtype=torch.long)]
    traj = [x]
    for j, p in enumerate(orders):
        s, t = outer[j], outer[j + 1]
        r1 = r2 = None
        if p > 1:
            inner = time_grid(ns, skip, s.item(), t.item(), p)
            lam = ns.marginal_lambda(inner)
            h = lam[-1] - lam[0]
            r1 = (lam[1] - lam[0]) / h
            r2 = (lam[2] - lam[0]) / h if p > 2 else None
        x = _dpmpp_singlestep_update(model, ns, x, s, t, p, r1, r2, solver_type)
        traj.append(x)
    return x, traj, list(model.t_in)


# --------------------------------------------------------------------------------------------
# UniPC multistep, data prediction (spec 9)
# --------------------------------------------------------------------------------------------


def _unipc_update(model, ns, x, ms, ts, t, order, variant, use_corrector):
    """One UniPC update to t with order p (history oldest first).  -> (x_t, m_t or None)."""
    dt = ns.dtype
    lam_t = ns.marginal_lambda(t)
    lam_0 = ns.marginal_lambda(ts[-1])
    m0 = ms[-1]
    alpha_t = ns.marginal_alpha(t)
    h = lam_t - lam_0
    rks, Ds = [], []
    for k in range(1, order):
        rk = (ns.marginal_lambda(ts[-(k + 1)]) - lam_0) / h
        rks.append(rk.reshape(()))
        Ds.append((ms[-(k + 1)] - m0) / rk)
    rks.append(torch.tensor(1.0, dtype=dt))
    nodes = torch.stack(rks).to(dt)
    hh = -h
    h_phi_1 = torch.expm1(hh)
    if variant == "bh1":
        B = hh
    elif variant == "bh2":
        B = torch.expm1(hh)
    else:
        raise ValueError("variant %r" % variant)
    g = h_phi_1 / hh - 1.0
    fact = 1
    R, b = [], []
    for i in range(1, order + 1):
        R.append(nodes ** (i - 1))
        b.append((g * fact / B).reshape(()))
        fact *= i + 1
        g = g / hh - 1.0 / fact
    R = torch.stack(R)
    b = torch.stack(b).to(dt)
    x_base = (ns.marginal_std(t) / ns.marginal_std(ts[-1])) * x - (alpha_t * h_phi_1) * m0
    if order == 1:
        x_pred = x_base
    else:
        if order == 2:
            rho_p = torch.tensor([0.5], dtype=dt)
        else:
            rho_p = torch.linalg.solve(R[:-1, :-1], b[:-1])
        res = sum(rho_p[k] * Ds[k] for k in range(order - 1))
        x_pred = x_base - (alpha_t * B) * res
    if not use_corrector:
        return x_pred, None
    m_t = model.x0(x_pred, t)
    if order == 1:
        rho_c = torch.tensor([0.5], dtype=dt)
    else:
        rho_c = torch.linalg.solve(R, b)
    corr = rho_c[-1] * (m_t - m0)
    if order > 1:
        corr = sum(rho_c[k] * Ds[k] for k in range(order - 1)) + corr
    return x_base - (alpha_t * B) * corr, m_t


def unipc_multistep(model, ns, x, steps, order=2, skip="uniform", variant="bh2",
                    lower_order_final=True, corrector=True, t_start=None, t_end=None):
    t_start = ns.T if t_start is None else t_start
    t_end = ns.t_end() if t_end is None else t_end
    assert steps >= order and order in (1, 2, 3)
    ts = time_grid(ns, skip, t_start, t_end, steps)
    traj = [x]
    hist_t = [ts[0]]
    hist_m = [model.x0(x, ts[0])]
    for i in range(1, steps + 1):
        if i < order:
            p = i
        elif lower_order_final:
            p = min(order, steps + 1 - i)
        else:
            p = order
        use_c = corrector and i < steps
        x, m_t = _unipc_update(model, ns, x, hist_m, hist_t, ts[i], p, variant, use_c)
        traj.append(x)
        if i < steps:
            if m_t is None:
                m_t = model.x0(x, ts[i])
            hist_t.append(ts[i])
            hist_m.append(m_t)
            hist_t, hist_m = hist_t[-order:], hist_m[-order:]
    return x, traj, list(model.t_in)


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------

SOLVERS = ("dpm++2m", "dpm++3m", "dpm++2s", "unipc")


def sample(solver, model, ns, x, steps, order=None, skip="uniform", variant=None,
           lower_order_final=True):
    """-> (x_final, traj list [K+1], t_in list [NFE])."""
    if solver == "dpm++2m":
        return dpmpp_multistep(model, ns, x, steps, 2, skip, lower_order_final)
    if solver == "dpm++3m":
        return dpmpp_multistep(model, ns, x, steps, 3, skip, lower_order_final)
    if solver == "dpm++2s":
        return dpmpp_singlestep(model, ns, x, steps, 2, skip)
    if solver == "unipc":
        return unipc_multistep(model, ns, x, steps, order or 2, skip, variant or "bh2",
                               lower_order_final)
    raise ValueError("solver %r" % solver)
