#!/usr/bin/python3
"""Training-loss fixtures for the C tests (losses.py; improved-diffusion hybrid loss and ED-DPM ECT).

    /usr/bin/python3 tests/reference/gen_loss_fixtures.py [--out DIR] [--check]

Writes DIR/loss_hybrid.safetensors, for every case in CASES (tensor names prefixed "<case>/"):
    x_start          F32 [N,C,H,W]  float32(k) / 127.5 - 1 in float32 arithmetic (image_datasets.py),
                                    k uint8; every sample has k = 0, 255 (edge bins) and 1, 254
    noise            F32 [N,C,H,W]  N(0,1)
    t                I64 [N]        per-sample timestep (index into the case's schedule)
    x_t              F32 [N,C,H,W]  q_sample(x_start, t, noise) in float32 with float32-rounded
                                    coefficients sqrt(abar[t]), sqrt(1-abar[t])
    model_out        F32 [N,2C,H,W] [eps | v]: eps = noise + s_n * N(0,1), v ~ U(-1.2, 1.2)
    mse, vb, loss    F64 [N]        per-sample terms (vb already multiplied by vb_weight)
    vb_bpd           F64 [N]        vb before the weight (decoder NLL where t == 0, else KL; bits/dim)
    kl_bpd           F64 [N]        the KL branch for every sample
    decoder_nll_bpd  F64 [N]        the decoder-NLL branch for every sample
    grad             F32 [N,2C,H,W] d(sum_n loss_n)/d model_out (eps channels: MSE only, the vb
                                    term sees eps detached; v channels: vb only)
The outputs are evaluated in float64 from the stored float32 inputs (x_t taken as stored, not
recomputed).  __metadata__: "cases" = JSON list of {name, noise_schedule, diffusion_steps, lam_mode,
lambda, vb_weight, t, eps_scale, seed, f32_vs_f64_max_rel}, "conventions" = the formulas.

and DIR/loss_ect.safetensors:
    logits  F32 [N,10]   rows of very different sharpness (incl. a large offset row)
    labels  I64 [N]
    ce      F64 [N]      -log_softmax(logits)[n, y_n]
    ent     F64 [N]      log C - H(softmax(logits_n)) (natural log; = KL(p || uniform))
    ect     F64 [N]      ce + lambda * ent, lambda = 0.1
    grad    F32 [N,10]   d(mean_n ect_n)/d logits
    grad_ce F32 [N,10]   d(mean_n ce_n)/d logits
    __metadata__: lambda, num_classes, reduction notes, f32_vs_f64_max_rel.

--check  regenerates in memory and compares with the files (bytes, else F64 rel 1e-12 / F32 rel 1e-6,
         integers and metadata exactly), replays the outputs from each file's stored inputs, and runs
         the self-checks.  Self-checks also run on every default run.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion as D  # noqa: E402
import losses as L  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
TOL_F64 = 1e-12
TOL_F32 = 1e-6

N, C, H, W = 6, 1, 4, 4
LAMBDA_HYBRID = 0.001
LAMBDA_ECT = 0.1
NUM_CLASSES = 10

CASES = [
    dict(name="linear", noise_schedule="linear", diffusion_steps=1000, lam_mode="rescaled_mse",
         t=[0, 1, 500, 999, 0, 250], eps_scale=[1.0, 0.5, 1.0, 1.0, 2.0, 0.5], seed=3001),
    dict(name="cosine", noise_schedule="cosine", diffusion_steps=1000, lam_mode="rescaled_mse",
         t=[0, 1, 500, 999, 998, 100], eps_scale=[1.0, 0.5, 1.0, 1.0, 2.0, 0.5], seed=3002),
    # T != 1000: RESCALED_MSE weight T/1000 = 0.1 differs from MSE's 1 (vb_bpd holds the unweighted term)
    dict(name="linear_T100", noise_schedule="linear", diffusion_steps=100, lam_mode="rescaled_mse",
         t=[0, 1, 50, 99, 0, 25], eps_scale=[1.0, 0.5, 1.0, 1.0, 2.0, 0.5], seed=3003),
]
ECT_SEED = 3100
OUT_KEYS = ("mse", "vb", "loss", "vb_bpd", "kl_bpd", "decoder_nll_bpd")

CONVENTIONS = """\
improved-diffusion training_losses, EPSILON + LEARNED_RANGE, per sample n (means over C,H,W):
  mse = mean (noise - eps)^2
  frozen_out = cat[eps.detach(), v];  frac = (v+1)/2;  logvar = frac*log(beta[t]) + (1-frac)*plvc[t]
  x0_hat = sqrt(1/abar[t]) x_t - sqrt(1/abar[t]-1) eps   (NOT clipped: clip_denoised=False)
  mu = coef1[t] x0_hat + coef2[t] x_t;  mu_q = coef1[t] x_start + coef2[t] x_t;  logvar_q = plvc[t]
  kl_bpd = mean 0.5*(-1 + logvar - logvar_q + exp(logvar_q - logvar) + (mu_q - mu)^2 exp(-logvar)) / ln2
  decoder_nll_bpd = -mean log P_disc(x_start | mu, log_scale = logvar/2) / ln2, P_disc with the tanh CDF
    approx 0.5(1+tanh(sqrt(2/pi)(x+0.044715x^3))), bin +-1/255, edges x<-0.999 / x>0.999 open, clamp 1e-12
  vb_bpd = decoder_nll_bpd if t == 0 else kl_bpd;  vb = vb_weight * vb_bpd;  loss = mse + vb
  vb_weight: loss_type MSE -> 1; RESCALED_MSE -> T/1000 (= lambda*T with lambda = 0.001); T = num_timesteps
  lambda = 0.001: E_t~U{0..T-1}[T vb_bpd] = L_vlb (bits/dim, prior L_T dropped), so
  E[loss] = L_simple + 0.001 L_vlb; at T = 1000 MSE and RESCALED_MSE coincide (weight 1).
  Schedule arrays: diffusion.py (float64; plvc = posterior_log_variance_clipped, plvc[0] = log beta~_1)."""


def _stats_case(case):
    return {k: case[k] for k in ("name", "noise_schedule", "diffusion_steps", "lam_mode", "t",
                                 "eps_scale", "seed")}


def make_inputs(case):
    rng = np.random.default_rng(case["seed"])
    k = rng.integers(0, 256, size=(N, C, H, W))
    k[:, 0, 0, 0] = 0
    k[:, 0, 0, 1] = 255
    k[:, 0, 0, 2] = 1
    k[:, 0, 0, 3] = 254
    x_start = k.astype(np.float32) / np.float32(127.5) - np.float32(1)
    noise = rng.standard_normal((N, C, H, W)).astype(np.float32)
    z = rng.standard_normal((N, C, H, W)).astype(np.float32)
    v = rng.uniform(-1.2, 1.2, size=(N, C, H, W)).astype(np.float32)
    s = np.array(case["eps_scale"], dtype=np.float32).reshape(N, 1, 1, 1)
    eps = (noise + s * z).astype(np.float32)
    model_out = np.concatenate([eps, v], axis=1)
    t = np.array(case["t"], dtype=np.int64)
    diff = D.create_diffusion(case["diffusion_steps"], case["noise_schedule"])
    with torch.no_grad():
        x_t = L.q_sample(diff, torch.from_numpy(x_start), torch.from_numpy(t),
                         torch.from_numpy(noise)).numpy()
    assert x_t.dtype == np.float32
    return dict(x_start=x_start, noise=noise, t=t, x_t=x_t, model_out=model_out)


def eval_hybrid(inp, diff, lam_mode, dtype):
    """-> (dict of per-sample outputs as float64 numpy, grad numpy, vb_weight)."""
    mo = torch.tensor(inp["model_out"], dtype=dtype, requires_grad=True)
    args = [torch.tensor(inp[k], dtype=dtype) for k in ("x_start", "x_t")]
    t = torch.from_numpy(np.asarray(inp["t"], dtype=np.int64))
    noise = torch.tensor(inp["noise"], dtype=dtype)
    out = L.hybrid_loss(mo, args[0], args[1], t, noise, diff, lam_mode)
    (g,) = torch.autograd.grad(out["loss"].sum(), mo)
    res = {k: out[k].detach().double().numpy() for k in OUT_KEYS}
    return res, g.double().numpy(), out["vb_weight"]


def _rel(a, b):
    """max|a - b| / max|b| (tensor-relative; used for gradients)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _erel(a, b):
    """max_i |a_i - b_i| / |b_i| (element-wise; per-sample losses span 5 orders of magnitude)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float((np.abs(a - b) / np.maximum(np.abs(b), 1e-300)).max())


def hybrid_file():
    tensors, cases_meta = [], []
    for case in CASES:
        inp = make_inputs(case)
        diff = D.create_diffusion(case["diffusion_steps"], case["noise_schedule"])
        ref, grad, w = eval_hybrid(inp, diff, case["lam_mode"], torch.float64)
        f32, g32, _ = eval_hybrid(inp, diff, case["lam_mode"], torch.float32)
        assert np.isfinite(grad).all() and all(np.isfinite(ref[k]).all() for k in OUT_KEYS)
        meta = _stats_case(case)
        meta.update(lam_mode=case["lam_mode"], vb_weight=w,
                    **{"lambda": LAMBDA_HYBRID if case["lam_mode"] == "rescaled_mse" else None})
        meta["f32_vs_f64_max_rel"] = {k: _erel(f32[k], ref[k]) for k in ("mse", "vb", "loss")}
        meta["f32_vs_f64_max_rel"]["grad"] = _rel(g32, grad)
        cases_meta.append(meta)
        p = case["name"] + "/"
        for k in ("x_start", "noise", "t", "x_t", "model_out"):
            tensors.append((p + k, inp[k]))
        for k in OUT_KEYS:
            tensors.append((p + k, ref[k].astype(np.float64)))
        tensors.append((p + "grad", grad.astype(np.float32)))
    md = {"cases": json.dumps(cases_meta), "conventions": CONVENTIONS,
          "shape": json.dumps({"N": N, "C": C, "H": H, "W": W}),
          "grad": "d(sum_n loss_n)/d model_out, float64 autograd rounded to F32"}
    return tensors, md


def ect_inputs():
    rng = np.random.default_rng(ECT_SEED)
    scale = np.array([0.05, 1.0, 2.0, 4.0, 8.0, 30.0]).reshape(N, 1)
    logits = (rng.standard_normal((N, NUM_CLASSES)) * scale).astype(np.float32)
    logits[5] += np.float32(100.0)  # offset row: needs the max-subtracted log_softmax
    labels = rng.integers(0, NUM_CLASSES, size=N).astype(np.int64)
    labels[3] = int(np.argmax(logits[3]))  # confident and right
    labels[4] = int(np.argmin(logits[4]))  # confident and wrong
    return dict(logits=logits, labels=labels)


def eval_ect(inp, dtype):
    z = torch.tensor(inp["logits"], dtype=dtype, requires_grad=True)
    y = torch.from_numpy(np.asarray(inp["labels"], dtype=np.int64))
    out = L.ect_loss(z, y, LAMBDA_ECT)
    (g,) = torch.autograd.grad(out["loss"].mean(), z)
    z2 = torch.tensor(inp["logits"], dtype=dtype, requires_grad=True)
    (gce,) = torch.autograd.grad(L.ce_loss(z2, y).mean(), z2)
    res = {"ce": out["ce"], "ent": out["ent"], "ect": out["loss"]}
    return ({k: v.detach().double().numpy() for k, v in res.items()}, g.double().numpy(),
            gce.double().numpy())


def ect_file():
    inp = ect_inputs()
    ref, g, gce = eval_ect(inp, torch.float64)
    f32, g32, gce32 = eval_ect(inp, torch.float32)
    fl = {k: _erel(f32[k], ref[k]) for k in ref}
    fl["grad"] = _rel(g32, g)
    fl["grad_ce"] = _rel(gce32, gce)
    tensors = [("logits", inp["logits"]), ("labels", inp["labels"])]
    tensors += [(k, ref[k]) for k in ("ce", "ent", "ect")]
    tensors += [("grad", g.astype(np.float32)), ("grad_ce", gce.astype(np.float32))]
    md = {"lambda": repr(LAMBDA_ECT), "num_classes": str(NUM_CLASSES), "seed": str(ECT_SEED),
          "formula": "ect_n = ce_n + lambda*(log C + sum_c p_c log p_c), p = softmax(logits_n), "
                     "natural log, C = logit width; training loss = mean_n ect_n",
          "grad": "d(mean_n ect_n)/d logits (grad_ce: d(mean_n ce_n)/d logits), float64 autograd "
                  "rounded to F32",
          "f32_vs_f64_max_rel": json.dumps(fl)}
    return tensors, md


FILES = {"loss_hybrid.safetensors": hybrid_file, "loss_ect.safetensors": ect_file}


# --------------------------------------------------------------------------------------------
# self-checks
# --------------------------------------------------------------------------------------------


def _phi_approx(x):
    return 0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _scalar_vb_bpd(diff, x0, xt, eps, v, t):
    """Pure-Python float64 re-derivation of vb_bpd for one sample (flat lists)."""
    b = diff.betas[t]
    plvc = diff.posterior_log_variance_clipped[t]
    c1, c2 = diff.posterior_mean_coef1[t], diff.posterior_mean_coef2[t]
    ab = diff.alphas_cumprod[t]
    kl = nll = 0.0
    for a0, at, e, vv in zip(x0, xt, eps, v):
        f = (vv + 1) / 2
        lv = f * math.log(b) + (1 - f) * plvc
        xh = math.sqrt(1 / ab) * at - math.sqrt(1 / ab - 1) * e
        mu = c1 * xh + c2 * at
        muq = c1 * a0 + c2 * at
        kl += 0.5 * (-1 + lv - plvc + math.exp(plvc - lv) + (muq - mu) ** 2 * math.exp(-lv))
        inv = math.exp(-0.5 * lv)
        cp = _phi_approx(inv * (a0 - mu + 1 / 255))
        cm = _phi_approx(inv * (a0 - mu - 1 / 255))
        if a0 < -0.999:
            lp = math.log(max(cp, 1e-12))
        elif a0 > 0.999:
            lp = math.log(max(1 - cm, 1e-12))
        else:
            lp = math.log(max(cp - cm, 1e-12))
        nll -= lp
    n = len(x0)
    kl, nll = kl / n / math.log(2), nll / n / math.log(2)
    return (nll if t == 0 else kl), kl, nll


def selfcheck(verbose=True):
    ok = True

    def report(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        if verbose or not good:
            print("%s %-70s %.3g (tol %.0e)" % ("ok  " if good else "FAIL", name, err, tol))

    f64 = torch.float64
    for case in CASES:
        diff = D.create_diffusion(case["diffusion_steps"], case["noise_schedule"])
        inp = make_inputs(case)
        T = diff.num_timesteps
        x0 = torch.tensor(inp["x_start"], dtype=f64)
        noise = torch.tensor(inp["noise"], dtype=f64)
        t = torch.from_numpy(inp["t"])
        xt = L.q_sample(diff, x0, t, noise)  # float64: x_t consistent with (x0, noise) exactly
        eps = torch.tensor(inp["model_out"][:, :C], dtype=f64)
        tpos = t > 0
        tag = case["name"]

        # (1) v = -1: model variance = true posterior variance -> KL = mean term only, and in eps
        #     terms KL = beta^2 / (2 beta~ alpha (1 - abar)) * mse  (Ho et al.'s L_t weight)
        mo = torch.cat([eps, -torch.ones_like(eps)], 1)
        out = L.hybrid_loss(mo, x0, xt, t, noise, diff, "mse")
        tn = t.numpy()
        b = diff.betas[tn]
        pv = diff.posterior_variance[tn]
        with np.errstate(divide="ignore"):  # t = 0 entries (beta~_0 = 0) are computed, then masked
            wt = b ** 2 / (2 * pv * (1 - b) * (1 - diff.alphas_cumprod[tn]))
        want = out["mse"].numpy() * wt / math.log(2)
        report("%s: v=-1 vb_bpd == beta^2/(2 beta~ alpha (1-abar)) mse / ln2 (t>0)" % tag,
               _erel(out["vb_bpd"].numpy()[tpos], want[tpos]), 1e-9)
        mu_q, _ = L.q_posterior(diff, x0, xt, t)
        mu, _, _ = L.p_mean_variance_learned_range(diff, mo, xt, t)
        mean_only = L.mean_flat(0.5 * (mu_q - mu) ** 2 / L.extract(
            diff.posterior_variance, t, xt)) / math.log(2)
        report("%s: v=-1 vb_bpd == mean term (mu_q-mu)^2/(2 beta~) only (t>0)" % tag,
               _erel(out["vb_bpd"][tpos].numpy(), mean_only[tpos].numpy()), 1e-9)

        # (2) eps = noise, v = -1: identical Gaussians -> KL = 0 (t>0), mse = 0
        mo = torch.cat([noise, -torch.ones_like(noise)], 1)
        out = L.hybrid_loss(mo, x0, xt, t, noise, diff, "mse")
        report("%s: eps=noise, v=-1: |kl_bpd| (t>0), |mse|" % tag,
               float(max(out["kl_bpd"][tpos].abs().max(), out["mse"].abs().max())), 1e-12)

        # (3) eps = noise, v = +1 (var = beta): KL = variance term 0.5(-1 + log b - log b~ + b~/b)
        mo = torch.cat([noise, torch.ones_like(noise)], 1)
        out = L.hybrid_loss(mo, x0, xt, t, noise, diff, "mse")
        with np.errstate(divide="ignore"):
            want = 0.5 * (-1 + np.log(b) - np.log(pv) + pv / b) / math.log(2)
        # (relative, floored at 1e-6: at linear t=999 beta~/beta = 1 - 8e-7, the KL is 2.4e-13 and
        #  carries ~1e-16 absolute round-off from -1 + x + e^-x)
        d = np.abs(out["kl_bpd"].numpy() - want)[tpos] / np.maximum(np.abs(want[tpos]), 1e-6)
        report("%s: eps=noise, v=+1: kl_bpd == variance-only KL (t>0)" % tag,
               float(d.max()), 1e-9)

        # (4) lambda arithmetic: 0.001 == rescaled_mse; mse -> weight 1
        mo = torch.tensor(inp["model_out"], dtype=f64)
        xt_s = torch.tensor(inp["x_t"], dtype=f64)
        a = L.hybrid_loss(mo, x0, xt_s, t, noise, diff, "rescaled_mse")
        bb = L.hybrid_loss(mo, x0, xt_s, t, noise, diff, 0.001)
        m = L.hybrid_loss(mo, x0, xt_s, t, noise, diff, "mse")
        err = max(_erel(a["loss"], bb["loss"]), _erel(a["vb"], a["vb_bpd"] * T / 1000.0),
                  _erel(m["vb"], m["vb_bpd"]), _erel(a["mse"] + a["vb"], a["loss"]))
        report("%s: lambda=0.001 == rescaled_mse (weight %g); mse weight 1" % (tag, T / 1000.0),
               err, 1e-15)

        # (5) pure-Python re-derivation of vb_bpd / kl / nll from the stored inputs
        worst = 0.0
        for n in range(N):
            ref = _scalar_vb_bpd(diff, inp["x_start"][n].ravel().astype(float).tolist(),
                                 inp["x_t"][n].ravel().astype(float).tolist(),
                                 inp["model_out"][n, :C].ravel().astype(float).tolist(),
                                 inp["model_out"][n, C:].ravel().astype(float).tolist(), int(tn[n]))
            got = (a["vb_bpd"][n], a["kl_bpd"][n], a["decoder_nll_bpd"][n])
            worst = max(worst, max(abs(float(g) - r) / max(abs(r), 1e-300) for g, r in zip(got, ref)))
        report("%s: scalar re-derivation of vb_bpd, kl_bpd, decoder_nll_bpd" % tag, worst, 1e-10)

        # (6) gradient: eps channels = MSE gradient only (vb sees eps detached); v channels vs
        #     central finite differences of sum(loss)
        _, grad, w = eval_hybrid(inp, diff, case["lam_mode"], f64)
        want_eps = (-2.0 * (inp["noise"].astype(np.float64) - inp["model_out"][:, :C].astype(np.float64))
                    / (C * H * W))
        report("%s: grad eps channels == -2(noise-eps)/(CHW)" % tag,
               _rel(grad[:, :C], want_eps), 1e-14)
        mo_np = inp["model_out"].astype(np.float64)
        fd = np.zeros_like(mo_np[:, C:])
        h = 1e-4  # sum(loss) reaches ~700 (cosine t=999): smaller steps are round-off bound
        for idx in np.ndindex(fd.shape):
            full = (idx[0], idx[1] + C) + idx[2:]
            vals = []
            for sgn in (1, -1):
                mm = mo_np.copy()
                mm[full] += sgn * h
                vals.append(float(L.hybrid_loss(torch.from_numpy(mm), x0, xt_s, t, noise, diff,
                                                case["lam_mode"])["loss"].sum()))
            fd[idx] = (vals[0] - vals[1]) / (2 * h)
        report("%s: grad v channels vs central differences" % tag, _rel(grad[:, C:], fd), 1e-6)

    # (7) tanh CDF approximation vs the exact normal CDF (documentation number)
    xs = np.linspace(-8, 8, 16001)
    err = max(abs(_phi_approx(x) - 0.5 * math.erfc(-x / math.sqrt(2))) for x in xs)
    report("approx_standard_normal_cdf max |error| vs erfc CDF on [-8,8]", err, 2e-4)

    # (8) ECT vs a numpy re-derivation: ce, ent, grad = (p - onehot + lam p (log p + H)) / N
    inp = ect_inputs()
    res, g, gce = eval_ect(inp, f64)
    z = inp["logits"].astype(np.float64)
    zs = z - z.max(1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(1, keepdims=True))
    p = np.exp(logp)
    Hn = -(p * logp).sum(1)
    y = inp["labels"]
    onehot = np.eye(NUM_CLASSES)[y]
    ce = -logp[np.arange(N), y]
    ent = math.log(NUM_CLASSES) - Hn
    want_g = (p - onehot + LAMBDA_ECT * p * (logp + Hn[:, None])) / N
    err = max(_erel(res["ce"], ce), _erel(res["ent"], ent), _erel(res["ect"], ce + LAMBDA_ECT * ent),
              _rel(g, want_g), _rel(gce, (p - onehot) / N))
    report("ECT: ce, ent, ect, grad, grad_ce vs numpy derivation", err, 1e-12)
    report("ECT: ent >= 0 (KL(p||U))", float(max(0.0, -res["ent"].min())), 1e-15)
    return ok


# --------------------------------------------------------------------------------------------
# check / replay
# --------------------------------------------------------------------------------------------


def _compare(name, got_t, want_t):
    """got/want: dict name -> st.Tensor.  Returns list of error lines."""
    errs = []
    if list(got_t) != list(want_t):
        return ["%s: tensor names differ" % name]
    for k in got_t:
        a, b = got_t[k], want_t[k]
        if a.dtype != b.dtype or a.shape != b.shape:
            errs.append("%s/%s: dtype/shape %s%s vs %s%s" % (name, k, a.dtype, a.shape, b.dtype, b.shape))
            continue
        if a.raw == b.raw:
            continue
        if a.dtype in ("F64", "F32"):
            r = (_erel if a.dtype == "F64" else _rel)(a.numpy(), b.numpy())
            tol = TOL_F64 if a.dtype == "F64" else TOL_F32
            if r > tol:
                errs.append("%s/%s: max rel diff %.3g > %g" % (name, k, r, tol))
        else:
            errs.append("%s/%s: integer data differ" % (name, k))
    return errs


def replay(path, fname):
    """Recompute the outputs from the inputs stored in the file."""
    ts, md = st.read(path)
    errs = []
    if fname == "loss_hybrid.safetensors":
        for cm in json.loads(md["cases"]):
            p = cm["name"] + "/"
            inp = {k: ts[p + k].numpy() for k in ("x_start", "noise", "t", "x_t", "model_out")}
            diff = D.create_diffusion(cm["diffusion_steps"], cm["noise_schedule"])
            ref, grad, w = eval_hybrid(inp, diff, cm["lam_mode"], torch.float64)
            if w != cm["vb_weight"]:
                errs.append("%s: vb_weight %r vs %r" % (p, w, cm["vb_weight"]))
            for k in OUT_KEYS:
                if _erel(ref[k], ts[p + k].numpy()) > TOL_F64:
                    errs.append("%s%s: replay differs" % (p, k))
            if _rel(grad.astype(np.float32), ts[p + "grad"].numpy()) > TOL_F32:
                errs.append("%sgrad: replay differs" % p)
    else:
        inp = {"logits": ts["logits"].numpy(), "labels": ts["labels"].numpy()}
        ref, g, gce = eval_ect(inp, torch.float64)
        for k in ("ce", "ent", "ect"):
            if _erel(ref[k], ts[k].numpy()) > TOL_F64:
                errs.append("%s: replay differs" % k)
        for k, v in (("grad", g), ("grad_ce", gce)):
            if _rel(v.astype(np.float32), ts[k].numpy()) > TOL_F32:
                errs.append("%s: replay differs" % k)
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bad = False
    for fname, fn in FILES.items():
        tensors, md = fn()
        data = st.dumps(tensors, md)
        path = os.path.join(args.out, fname)
        if args.check:
            if not os.path.exists(path):
                print("FAIL %s: missing" % fname)
                bad = True
                continue
            with open(path, "rb") as f:
                old = f.read()
            if old == data:
                errs = []
                how = "identical"
            else:
                got_t, got_md = st.loads(data)
                want_t, want_md = st.loads(old)
                errs = _compare(fname, got_t, want_t)
                for k in set(got_md) | set(want_md):
                    if k not in ("cases", "f32_vs_f64_max_rel") and got_md.get(k) != want_md.get(k):
                        errs.append("%s: metadata %s differs" % (fname, k))
                how = "within tolerance"
            errs += replay(path, fname)
            for e in errs:
                print("FAIL " + e)
            if errs:
                bad = True
            else:
                print("OK   %s %s, replay OK" % (fname, how))
        else:
            with open(path, "wb") as f:
                f.write(data)
            ts, md2 = st.loads(data)
            print("wrote %s (%d bytes, %d tensors)" % (path, len(data), len(ts)))
            if fname == "loss_hybrid.safetensors":
                for cm in json.loads(md2["cases"]):
                    p = cm["name"] + "/"
                    print("  %-12s T=%d %s weight %g  t=%s" % (cm["name"], cm["diffusion_steps"],
                                                              cm["lam_mode"], cm["vb_weight"], cm["t"]))
                    for k in ("mse", "vb_bpd", "kl_bpd", "decoder_nll_bpd", "loss"):
                        print("    %-16s %s" % (k, np.array2string(ts[p + k].numpy(), precision=5,
                                                                   max_line_width=200)))
                    print("    f32 vs f64 max rel: %s" % cm["f32_vs_f64_max_rel"])
            else:
                for k in ("labels", "ce", "ent", "ect"):
                    print("  %-6s %s" % (k, np.array2string(ts[k].numpy(), precision=5,
                                                           max_line_width=200)))
                print("  f32 vs f64 max rel: %s" % md2["f32_vs_f64_max_rel"])
    print("self-checks:")
    if not selfcheck(verbose=True):
        bad = True
    if bad:
        print("FAILED")
        sys.exit(1)


if __name__ == "__main__":
    main()
