#!/usr/bin/python3
"""Sampler trajectory fixtures and schedule arrays for the C tests.

    /usr/bin/python3 tests/reference/gen_traj_fixtures.py [--out DIR] [--check] [--selfcheck]

Uses the committed fixture networks (tests/fixtures/{unet_a,unet_b,cls_a,cls_b}.safetensors, loaded
into adm.build_model) and diffusion.py.  For every case in CASES it writes DIR/traj_<case>.safetensors:
    x_T    F32 [N,C,H,W]      torch.manual_seed(seed); randn
    noise  F32 [K,N,C,H,W]    noise[j] = Gaussian draw of loop iteration j (j = 0: highest respaced
                              step); drawn right after x_T; present even where unused (DDIM eta 0)
    y      I64 [N]            randint(0, 10) drawn after noise (model label and classifier label)
    traj   F32 [K+1,N,C,H,W]  traj[0] = x_T, traj[j] = sample after j iterations (float32 run)
    __metadata__ {"case": json.dumps(case)}; case = model, classifier, sampler, eta, respacing,
        noise_schedule, diffusion_steps, guidance, scale, cfg_scale, clip_denoised, eds_t_range,
        then model_var_type, timestep_map, null_label, seed.
Cases in the same group share the seed (same x_T / noise / y), so e.g. ddpm_classifier and
ddpm_none differ only by the guidance.
and DIR/schedules.safetensors (float64 arrays, see SCHEDULE_DOC).

--check      regenerates into a temp dir and compares (floats max|a-b|/max|b| <= 1e-6, F64 <= 1e-12,
             integers and metadata exactly)
--selfcheck  consistency checks of the sampler (scale 0 == unguided, EDS outside its t-range ==
             plain guidance, an independent numpy float64 re-derivation of the DDPM/DDIM steps)
The default run prints per case max|x_final|, the guidance effect against the unguided run with
the same noise, and the float32-vs-float64 difference of the trajectory.
"""
import argparse
import copy
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adm  # noqa: E402
import diffusion as D  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
BATCH = 2
CHECK_TOL = 1e-6
CHECK_TOL_F64 = 1e-12


def _case(name, model, seed, respacing, sampler="ddpm", classifier=None, guidance=(), scale=0.0,
          cfg_scale=1.0, eta=0.0, noise_schedule="linear", var="learned_range",
          eds_t_range=(0, 1000)):
    return dict(name=name, model=model, classifier=classifier, sampler=sampler, eta=eta,
                respacing=respacing, noise_schedule=noise_schedule, guidance=list(guidance),
                scale=scale, cfg_scale=cfg_scale, eds_t_range=list(eds_t_range),
                model_var_type=var, seed=seed)


# Scales: the random fixture classifiers have input gradients of order 1e-3..1e-2; the scales below
# move the final samples by 50-150 % of max|x| (rms 5-12 %) against the unguided run with the same
# noise (measured numbers: README / default run).  <sampler>_classifier and <sampler>_entropy use
# the same scale, so their difference is the pure EDS factor (only ~1.007 for these near-uniform
# random classifiers: ~0.6 % of max|x| on the final sample).
A6, A7D, A43 = 2001, 2002, 2005
CASES = [
    _case("ddpm_none", "unet_a", A6, "6"),
    _case("ddpm_classifier", "unet_a", A6, "6", classifier="cls_a", guidance=["classifier"],
          scale=30.0),
    _case("ddpm_entropy", "unet_a", A6, "6", classifier="cls_a", guidance=["entropy"], scale=30.0),
    _case("ddpm_cfg", "unet_a", A6, "6", guidance=["cfg"], cfg_scale=3.0),
    _case("ddim_none", "unet_a", A7D, "ddim7", sampler="ddim"),
    _case("ddim_classifier", "unet_a", A7D, "ddim7", sampler="ddim", classifier="cls_a",
          guidance=["classifier"], scale=10.0),
    _case("ddim_entropy", "unet_a", A7D, "ddim7", sampler="ddim", classifier="cls_a",
          guidance=["entropy"], scale=10.0),
    _case("ddim_cfg", "unet_a", A7D, "ddim7", sampler="ddim", guidance=["cfg"], cfg_scale=3.0),
    _case("ddim_eta", "unet_a", A7D, "ddim7", sampler="ddim", eta=0.5),
    _case("ddpm_fixed_large", "unet_b", 2003, "5", noise_schedule="cosine", var="fixed_large"),
    _case("ddpm_fixed_small_classifier", "unet_b", 2004, "7", classifier="cls_b",
          guidance=["classifier"], scale=10.0, var="fixed_small"),
    _case("ddpm_entropy_trange", "unet_a", A43, "4,3", classifier="cls_a", guidance=["entropy"],
          scale=60.0, eds_t_range=(0, 500)),
    _case("ddpm_cfg_entropy", "unet_a", A6, "6", classifier="cls_a", guidance=["cfg", "entropy"],
          scale=30.0, cfg_scale=2.0),
]

SCHEDULE_DOC = (
    "float64 schedule arrays (diffusion.py). Unspaced, for S in linear,cosine and T in 1000,100: "
    "'S_T/betas', 'S_T/alphas_cumprod', 'S_T/posterior_log_variance_clipped', "
    "'S_T/posterior_mean_coef1', 'S_T/posterior_mean_coef2'. Respaced (T=1000), for R in "
    "250,100,50,25,ddim25,ddim50,'10,10,5': 'S_1000/R/timestep_map' (I64, ascending original "
    "steps) and 'S_1000/R/betas' (respaced betas, SpacedDiffusion rule).")
SCHEDULE_RESPACINGS = ["250", "100", "50", "25", "ddim25", "ddim50", "10,10,5"]


# --------------------------------------------------------------------------------------------
# models and one case
# --------------------------------------------------------------------------------------------

_MODELS = {}


def load_model(name, dtype=torch.float32):
    key = (name, dtype)
    if key not in _MODELS:
        if (name, torch.float32) not in _MODELS:
            ts, md = st.read(os.path.join(FIXTURES, name + ".safetensors"))
            cfg = json.loads(md["config"])
            m = adm.build_model(cfg)
            m.load_state_dict({k: torch.from_numpy(v.float32()) for k, v in ts.items()}, strict=True)
            m.eval()
            m.cfg = adm.full_config(cfg)
            _MODELS[(name, torch.float32)] = m
        if dtype != torch.float32:
            m = copy.deepcopy(_MODELS[(name, torch.float32)]).to(dtype)
            m.cfg = _MODELS[(name, torch.float32)].cfg
            _MODELS[key] = m
    return _MODELS[key]


def make_diffusion(case):
    return D.create_diffusion(1000, case["noise_schedule"], case["respacing"], case["model_var_type"])


def make_inputs(case, dif):
    cfg = load_model(case["model"]).cfg
    c, s, n, k = int(cfg["in_channels"]), int(cfg["image_size"]), BATCH, dif.num_timesteps
    torch.manual_seed(case["seed"])
    x_T = torch.randn(n, c, s, s)
    noise = torch.randn(k, n, c, s, s)
    y = torch.randint(0, 10, (n,))
    return x_T, noise, y


def run_case(case, x_T, noise, y, dtype=torch.float32, stats=None, **override):
    """Trajectory tensor [K+1, N, C, H, W] (in `dtype`).  override: scale, cfg_scale, guidance,
    eds_t_range replace the case's values (used for the effect measurements and self-checks)."""
    c = dict(case, **override)
    dif = make_diffusion(c)
    model = load_model(c["model"], dtype)
    mcfg = model.cfg
    C = int(mcfg["in_channels"])
    cond = adm._bool(mcfg["class_cond"])
    if "cfg" in c["guidance"]:
        assert cond and adm._bool(mcfg["null_class"])
        model_fn = D.cfg_model_fn(model, y, int(mcfg["num_classes"]), c["cfg_scale"], C)
    else:
        model_fn = D.plain_model_fn(model, y if cond else None)
    cond_fn = None
    if "classifier" in c["guidance"] or "entropy" in c["guidance"]:
        cls = load_model(c["classifier"], dtype)
        cond_fn = D.classifier_cond_fn(cls, y, c["scale"], entropy="entropy" in c["guidance"],
                                       eds_t_range=tuple(c["eds_t_range"]), stats=stats)
    x = x_T.to(dtype)
    if c["sampler"] == "ddpm":
        traj = dif.p_sample_loop(model_fn, x, noise, cond_fn, clip_denoised=True)
    else:
        traj = dif.ddim_sample_loop(model_fn, x, noise, cond_fn, eta=c["eta"], clip_denoised=True)
    return torch.stack(traj)


def case_metadata(case, dif):
    mcfg = load_model(case["model"]).cfg
    null = (int(mcfg["num_classes"]) if adm._bool(mcfg["class_cond"]) and
            adm._bool(mcfg["null_class"]) else None)
    meta = dict(model=case["model"], classifier=case["classifier"], sampler=case["sampler"],
                eta=case["eta"], respacing=case["respacing"], noise_schedule=case["noise_schedule"],
                diffusion_steps=1000, guidance=case["guidance"], scale=case["scale"],
                cfg_scale=case["cfg_scale"], clip_denoised=True, eds_t_range=case["eds_t_range"],
                model_var_type=case["model_var_type"],
                timestep_map=[int(v) for v in dif.timestep_map], null_label=null,
                seed=case["seed"])
    return meta


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _rms_rel(a, b):
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def generate_case(case, measure=False):
    """-> (tensors list, metadata, report dict)."""
    dif = make_diffusion(case)
    x_T, noise, y = make_inputs(case, dif)
    traj = run_case(case, x_T, noise, y)
    tensors = [("x_T", x_T), ("noise", noise), ("y", y.to(torch.int64)), ("traj", traj.float())]
    meta = {"case": json.dumps(case_metadata(case, dif))}
    rep = {"K": dif.num_timesteps, "max_abs_final": float(traj[-1].abs().max())}
    if measure:
        fin = traj[-1]
        g = case["guidance"]
        if g:
            base = run_case(case, x_T, noise, y, guidance=[])[-1]
            rep["effect_vs_unguided"] = (_rel(fin, base), _rms_rel(fin, base))
        if "cfg" in g and len(g) > 1:
            only = run_case(case, x_T, noise, y, guidance=["cfg"])[-1]
            rep["effect_vs_cfg_only"] = (_rel(fin, only), _rms_rel(fin, only))
        if "entropy" in g:
            plain = run_case(case, x_T, noise, y,
                             guidance=[v if v != "entropy" else "classifier" for v in g])[-1]
            rep["eds_vs_plain_classifier"] = (_rel(fin, plain), _rms_rel(fin, plain))
            if list(case["eds_t_range"]) != [0, 1000]:
                full = run_case(case, x_T, noise, y, eds_t_range=[0, 1000])[-1]
                rep["eds_range_vs_full_range"] = (_rel(fin, full), _rms_rel(fin, full))
            stats = []
            run_case(case, x_T, noise, y, stats=stats)
            f = [v for _, fs in stats if fs is not None for v in fs]
            rep["eds_factor_range"] = (min(f), max(f)) if f else None
        t64 = run_case(case, x_T.double(), noise.double(), y, dtype=torch.float64)
        rep["f32_vs_f64_traj_max_rel"] = max(_rel(traj[j].double(), t64[j])
                                             for j in range(1, len(traj)))
    return tensors, meta, rep


# --------------------------------------------------------------------------------------------
# schedules.safetensors
# --------------------------------------------------------------------------------------------


def schedule_tensors():
    out = []
    for s in ("linear", "cosine"):
        for T in (1000, 100):
            d = D.Diffusion(D.get_named_beta_schedule(s, T))
            for a in ("betas", "alphas_cumprod", "posterior_log_variance_clipped",
                      "posterior_mean_coef1", "posterior_mean_coef2"):
                out.append(("%s_%d/%s" % (s, T, a), np.asarray(getattr(d, a), dtype=np.float64)))
        for r in SCHEDULE_RESPACINGS:
            d = D.create_diffusion(1000, s, r)
            out.append(("%s_1000/%s/timestep_map" % (s, r), d.timestep_map.astype(np.int64)))
            out.append(("%s_1000/%s/betas" % (s, r), d.betas.astype(np.float64)))
    return out


def schedule_crosscheck():
    """Spec 5.8 step lists and 5.9 test vectors.  Returns list of (label, ok, detail)."""
    res = []

    def eq(label, got, want, rel=0.0):
        if isinstance(want, float):
            ok = got == want if rel == 0 else abs(got - want) <= rel * abs(want)
            ulps = abs(got - want) / (math.ulp(want) or 1)
            res.append((label, ok, "%r vs spec %r (%.0f ulp)" % (got, want, ulps)))
        else:
            res.append((label, got == want, "" if got == want else "%r vs %r" % (got, want)))

    lists = {
        "50": [0, 20, 41, 61, 82, 102, 122, 143, 163, 183, 204, 224, 245, 265, 285, 306, 326, 347,
               367, 387, 408, 428, 449, 469, 489, 510, 530, 550, 571, 591, 612, 632, 652, 673, 693,
               714, 734, 754, 775, 795, 816, 836, 856, 877, 897, 917, 938, 958, 979, 999],
        "25": [0, 42, 83, 125, 166, 208, 250, 291, 333, 375, 416, 458, 500, 541, 583, 624, 666, 708,
               749, 791, 832, 874, 916, 957, 999],
        "ddim25": list(range(0, 1000, 40)), "ddim50": list(range(0, 1000, 20)),
        "ddim100": list(range(0, 1000, 10)), "ddim250": list(range(0, 1000, 4)),
    }
    for r, want in lists.items():
        eq("steps %s" % r, sorted(D.space_timesteps(1000, r)), want)
    s250 = sorted(D.space_timesteps(1000, "250"))
    eq("steps 250 head/tail/sum", (s250[:6], s250[-4:], sum(s250)),
       ([0, 4, 8, 12, 16, 20], [987, 991, 995, 999], 124875))
    s100 = sorted(D.space_timesteps(1000, "100"))
    eq("steps 100 head/tail/sum", (s100[:8], s100[-4:], sum(s100)),
       ([0, 10, 20, 30, 40, 50, 61, 71], [969, 979, 989, 999], 49950))
    eq("steps 1000 / ''", (len(D.space_timesteps(1000, "1000")), len(D.space_timesteps(1000, ""))),
       (1000, 1000))
    vec = {
        "linear": dict(b=(1e-4, 1.1991991991991993e-4, 0.02),
                       ac=(0.9999, 0.07858724288177824, 4.035829765375676e-05),
                       plvc=(-9.81672513529567, -3.912023829100455),
                       r250b=(9.999999999998899e-05, 5.990655644756426e-04, 0.07751934499235003),
                       r250p=(-9.364628159803084, -2.557231152560974),
                       d25=(0.02013508946067577, 0.5326018230995546, 8.741305391053614e-05),
                       r25=(0.021950284036596157, 0.5643941915982558)),
        "cosine": dict(b=(4.128422482196914e-05, 4.614175273665033e-05, 0.999),
                       ac=(0.999958715775178, 0.4938435904406382, 2.4287669070348567e-09),
                       plvc=(-10.734082532465003, -0.0010029266746731796),
                       r250b=(4.128422482196914e-05, 2.1369723387476558e-04, 0.9999374992411221),
                       r250p=(-10.271626109313454, -1.0136083710146037e-04),
                       d25=(0.005623664058181266, 0.7553555484248476, 0.003689611469036907),
                       r25=(0.006107473408492936, 0.9999994322968777)),
    }
    for s, v in vec.items():
        d = D.Diffusion(D.get_named_beta_schedule(s, 1000))
        for i, w in zip((0, 1, 999), v["b"]):
            eq("%s betas[%d]" % (s, i), float(d.betas[i]), w)
        for i, w in zip((0, 499, 999), v["ac"]):
            eq("%s alphas_cumprod[%d]" % (s, i), float(d.alphas_cumprod[i]), w)
        for i, w in zip((0, 999), v["plvc"]):
            eq("%s plvc[%d]" % (s, i), float(d.posterior_log_variance_clipped[i]), w)
        eq("%s plvc[0]==plvc[1]" % s, float(d.posterior_log_variance_clipped[0]),
           float(d.posterior_log_variance_clipped[1]))
        r = D.create_diffusion(1000, s, "250")
        for i, w in zip((0, 1, 249), v["r250b"]):
            eq("%s '250' betas'[%d]" % (s, i), float(r.betas[i]), w)
        for i, w in zip((0, 249), v["r250p"]):
            eq("%s '250' plvc'[%d]" % (s, i), float(r.posterior_log_variance_clipped[i]), w)
        r = D.create_diffusion(1000, s, "ddim25")
        eq("%s 'ddim25' betas'[1]" % s, float(r.betas[1]), v["d25"][0])
        eq("%s 'ddim25' betas'[24]" % s, float(r.betas[24]), v["d25"][1])
        eq("%s 'ddim25' alphas_cumprod'[24]" % s, float(r.alphas_cumprod[24]), v["d25"][2])
        r = D.create_diffusion(1000, s, "25")
        eq("%s '25' betas'[1]" % s, float(r.betas[1]), v["r25"][0])
        eq("%s '25' betas'[24]" % s, float(r.betas[24]), v["r25"][1])
    b = D.get_named_beta_schedule("linear", 1000)
    eq("linear betas == np.linspace", bool(np.array_equal(b, np.linspace(1e-4, 0.02, 1000))), True)
    b = D.get_named_beta_schedule("linear", 100)
    eq("linear T=100 == np.linspace(1e-3, 0.2)",
       bool(np.array_equal(b, np.linspace(10 * 1e-4, 10 * 0.02, 100))), True)
    return res


# --------------------------------------------------------------------------------------------
# write / check
# --------------------------------------------------------------------------------------------


def write_all(out_dir, quiet=False, measure=False):
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    reports = []
    for case in CASES:
        tensors, meta, rep = generate_case(case, measure=measure)
        fn = "traj_%s.safetensors" % case["name"]
        nb = st.write(os.path.join(out_dir, fn), tensors, meta)
        total += nb
        rep["bytes"] = nb
        reports.append((case, rep))
        if not quiet:
            line = "%-28s K=%d %6d B  max|x_final|=%.4f" % (fn, rep["K"], nb, rep["max_abs_final"])
            for k in ("effect_vs_unguided", "effect_vs_cfg_only", "eds_vs_plain_classifier",
                      "eds_range_vs_full_range"):
                if k in rep:
                    line += "  %s=%.4f (rms %.4f)" % (k, rep[k][0], rep[k][1])
            if rep.get("eds_factor_range"):
                line += "  eds_factor=[%.5f, %.5f]" % rep["eds_factor_range"]
            if "f32_vs_f64_traj_max_rel" in rep:
                line += "  f32/f64=%.2g" % rep["f32_vs_f64_traj_max_rel"]
            print(line)
    nb = st.write(os.path.join(out_dir, "schedules.safetensors"), schedule_tensors(),
                  {"doc": SCHEDULE_DOC})
    total += nb
    if not quiet:
        print("%-28s %d B   (total %d B)" % ("schedules.safetensors", nb, total))
    return reports


def _compare_file(new_path, old_path):
    if not os.path.exists(old_path):
        return False, "missing"
    a, ma = st.read(new_path)
    b, mb = st.read(old_path)
    if ma != mb:
        return False, "metadata differs"
    if list(a) != list(b):
        return False, "tensor names/order differ"
    worst = 0.0
    for k in a:
        ta, tb = a[k], b[k]
        if ta.dtype != tb.dtype or ta.shape != tb.shape:
            return False, "%s: %s%s vs %s%s" % (k, ta.dtype, list(ta.shape), tb.dtype,
                                               list(tb.shape))
        if ta.dtype in ("F32", "F16", "BF16", "F64"):
            va, vb = ta.numpy().astype(np.float64), tb.numpy().astype(np.float64)
            den = np.abs(vb).max() if vb.size else 0.0
            err = (np.abs(va - vb).max() / den if den > 0 else np.abs(va - vb).max()) if va.size else 0.0
            worst = max(worst, err)
            tol = CHECK_TOL_F64 if ta.dtype == "F64" else CHECK_TOL
            if not err <= tol:
                return False, "%s: rel err %.3g > %g" % (k, err, tol)
        elif ta.raw != tb.raw:
            return False, "%s: integer values differ" % k
    return True, "%d tensors, max rel err %.3g" % (len(a), worst)


def check(out_dir):
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        write_all(tmp, quiet=True)
        for fn in ["traj_%s.safetensors" % c["name"] for c in CASES] + ["schedules.safetensors"]:
            ok, msg = _compare_file(os.path.join(tmp, fn), os.path.join(out_dir, fn))
            ok_all &= ok
            print("%-4s %-40s %s" % ("OK" if ok else "FAIL", fn, msg))
    for label, ok, detail in schedule_crosscheck():
        ok_all &= ok
        if not ok:
            print("FAIL schedule cross-check %s %s" % (label, detail))
    print("%-4s schedule cross-checks against spec 5.8/5.9" % ("OK" if ok_all else "FAIL"))
    return ok_all


# --------------------------------------------------------------------------------------------
# self-checks
# --------------------------------------------------------------------------------------------


def _np_reference_traj(case, x_T, noise, y):
    """Independent float64 numpy re-derivation of the loop from the spec formulas, with the
    networks evaluated in float64 (used only to validate diffusion.py's float64 path)."""
    dif = make_diffusion(case)
    model = load_model(case["model"], torch.float64)
    mcfg = model.cfg
    C = int(mcfg["in_channels"])
    cond = adm._bool(mcfg["class_cond"])
    cls = load_model(case["classifier"], torch.float64) if case["classifier"] else None
    betas = dif.betas
    ab = np.cumprod(1 - betas)
    abp = np.concatenate([[1.0], ab[:-1]])
    pv = betas * (1 - abp) / (1 - ab)
    plvc = np.log(np.concatenate([[pv[1]], pv[1:]]))
    c1 = betas * np.sqrt(abp) / (1 - ab)
    c2 = (1 - abp) * np.sqrt(1 - betas) / (1 - ab)
    K = len(betas)
    x = x_T.double().numpy()
    out = [x]
    yy = y.numpy()

    def net(xn, tt, lab):
        with torch.no_grad():
            xt = torch.from_numpy(xn)
            tv = torch.full((xn.shape[0],), float(tt), dtype=torch.float64)
            return (model(xt, tv, torch.from_numpy(lab)) if cond else model(xt, tv)).numpy()

    def grad(xn, tt):
        xt = torch.from_numpy(xn).requires_grad_(True)
        lg = cls(xt, torch.full((xn.shape[0],), float(tt), dtype=torch.float64))
        lp = torch.log_softmax(lg, -1)
        g = torch.autograd.grad(lp[torch.arange(len(yy)), torch.from_numpy(yy)].sum(), xt)[0].numpy()
        s = np.full(len(yy), case["scale"])
        if "entropy" in case["guidance"] and case["eds_t_range"][0] <= tt < case["eds_t_range"][1]:
            p = np.exp(lp.detach().numpy())
            H = -(p * np.log(p)).sum(-1)
            s = s * np.log(p.shape[-1]) / np.maximum(H, 1e-8)
        return g * s[:, None, None, None]

    for j, k in enumerate(range(K - 1, -1, -1)):
        tt = int(dif.timestep_map[k])
        o = net(x, tt, yy)
        if "cfg" in case["guidance"]:
            ou = net(x, tt, np.full_like(yy, int(mcfg["num_classes"])))
            w = case["cfg_scale"]
            o = np.concatenate([ou[:, :C] + w * (o[:, :C] - ou[:, :C]), o[:, C:]], 1)
        eps = o[:, :C]
        if case["model_var_type"] == "learned_range":
            f = (o[:, C:] + 1) / 2
            logv = f * np.log(betas[k]) + (1 - f) * plvc[k]
        elif case["model_var_type"] == "fixed_large":
            logv = np.full_like(x, np.log(pv[1] if k == 0 else betas[k]))
        else:
            logv = np.full_like(x, plvc[k])
        var = np.exp(logv) if case["model_var_type"] != "fixed_small" else np.full_like(x, pv[k])
        x0 = np.clip(x / np.sqrt(ab[k]) - np.sqrt(1 / ab[k] - 1) * eps, -1, 1)
        z = noise[j].double().numpy()
        guided = cls is not None and case["scale"] != 0
        if case["sampler"] == "ddpm":
            mean = c1[k] * x0 + c2[k] * x
            if guided:
                mean = mean + var * grad(x, tt)
            x = mean + (k != 0) * np.exp(0.5 * logv) * z
        else:
            e = (x / np.sqrt(ab[k]) - x0) / np.sqrt(1 / ab[k] - 1)
            if guided:
                e = e - np.sqrt(1 - ab[k]) * grad(x, tt)
                x0 = (x - np.sqrt(1 - ab[k]) * e) / np.sqrt(ab[k])
            sig = case["eta"] * np.sqrt((1 - abp[k]) / (1 - ab[k])) * np.sqrt(1 - ab[k] / abp[k])
            x = x0 * np.sqrt(abp[k]) + np.sqrt(1 - abp[k] - sig ** 2) * e + (k != 0) * sig * z
        out.append(x)
    return np.stack(out)


def selfcheck():
    torch.set_num_threads(1)
    ok_all = True

    def report(label, ok, detail):
        nonlocal ok_all
        ok_all &= ok
        print("%-4s %-60s %s" % ("OK" if ok else "FAIL", label, detail))

    byname = {c["name"]: c for c in CASES}
    # 1. guidance scale 0 == unguided (DDPM exactly: mean + var*0; DDIM only up to the
    #    eps <-> x0 round trip of condition_score)
    for gname, nname in (("ddpm_classifier", "ddpm_none"), ("ddpm_entropy", "ddpm_none"),
                         ("ddim_classifier", "ddim_none"), ("ddim_entropy", "ddim_none")):
        c = byname[gname]
        dif = make_diffusion(c)
        x_T, noise, y = make_inputs(c, dif)
        t0 = run_case(c, x_T, noise, y, scale=0.0)
        tn = run_case(byname[nname], x_T, noise, y)
        err = float((t0 - tn).abs().max())
        exact = c["sampler"] == "ddpm"
        report("%s with scale 0 == %s" % (gname, nname), err == 0 if exact else err < 1e-5,
               "max|diff| = %.3g%s" % (err, "" if exact else " (DDIM: eps/x0 round trip)"))
    # 2. EDS with an empty t-range == plain classifier guidance (exactly)
    c = byname["ddpm_entropy"]
    dif = make_diffusion(c)
    x_T, noise, y = make_inputs(c, dif)
    a = run_case(c, x_T, noise, y, eds_t_range=[0, 0])
    b = run_case(c, x_T, noise, y, guidance=["classifier"])
    report("ddpm_entropy with eds_t_range [0,0) == classifier", bool((a == b).all()),
           "max|diff| = %.3g" % float((a - b).abs().max()))
    # 3. ddpm_entropy_trange: EDS steps exactly those with t < 500
    c = byname["ddpm_entropy_trange"]
    dif = make_diffusion(c)
    x_T, noise, y = make_inputs(c, dif)
    stats = []
    run_case(c, x_T, noise, y, stats=stats)
    kinds = [(int(t), fs is not None) for t, fs in stats]
    want = [(int(t), t < 500) for t in dif.timestep_map[::-1]]
    report("ddpm_entropy_trange EDS applied exactly at t<500", kinds == want, str(kinds))
    # 4. cfg_scale 1 == no cfg (the uncond pass is skipped)
    c = byname["ddpm_cfg"]
    dif = make_diffusion(c)
    x_T, noise, y = make_inputs(c, dif)
    a = run_case(c, x_T, noise, y, cfg_scale=1.0)
    b = run_case(byname["ddpm_none"], x_T, noise, y)
    report("ddpm_cfg with cfg_scale 1 == ddpm_none", bool((a == b).all()), "")
    # 5. independent numpy float64 loop vs diffusion.py float64 path, every case
    for c in CASES:
        dif = make_diffusion(c)
        x_T, noise, y = make_inputs(c, dif)
        t64 = run_case(c, x_T.double(), noise.double(), y, dtype=torch.float64).numpy()
        ref = _np_reference_traj(c, x_T, noise, y)
        err = float(np.abs(t64 - ref).max() / np.abs(ref).max())
        report("%s: diffusion.py f64 == numpy re-derivation" % c["name"], err < 1e-10,
               "max rel %.3g" % err)
    # 6. the committed files replay: traj[j+1] from traj[j] with one step (float32)
    for c in CASES:
        path = os.path.join(FIXTURES, "traj_%s.safetensors" % c["name"])
        if not os.path.exists(path):
            continue
        ts, md = st.read(path)
        traj = torch.from_numpy(ts["traj"].numpy())
        noise = torch.from_numpy(ts["noise"].numpy())
        y = torch.from_numpy(ts["y"].numpy())
        meta = json.loads(md["case"])
        dif = make_diffusion(c)
        worst = 0.0
        for j in range(traj.shape[0] - 1):
            one = dict(c)
            sub = D.Diffusion(dif.betas, dif.model_var_type, dif.timestep_map)
            k = dif.num_timesteps - 1 - j
            mcfg = load_model(c["model"]).cfg
            C = int(mcfg["in_channels"])
            model = load_model(c["model"])
            cond = adm._bool(mcfg["class_cond"])
            mf = (D.cfg_model_fn(model, y, int(mcfg["num_classes"]), one["cfg_scale"], C)
                  if "cfg" in one["guidance"] else D.plain_model_fn(model, y if cond else None))
            cf = None
            if one["classifier"] and ("classifier" in one["guidance"] or "entropy" in one["guidance"]):
                cf = D.classifier_cond_fn(load_model(one["classifier"]), y, one["scale"],
                                          "entropy" in one["guidance"], tuple(one["eds_t_range"]))
            with torch.no_grad():
                if one["sampler"] == "ddpm":
                    nxt = sub.p_sample(mf, traj[j], k, noise[j], cf)
                else:
                    nxt = sub.ddim_sample(mf, traj[j], k, noise[j], cf, one["eta"])
            worst = max(worst, _rel(nxt, traj[j + 1]))
        ok = worst == 0 and meta["timestep_map"] == [int(v) for v in dif.timestep_map]
        report("%s: committed file replays step by step" % c["name"], ok, "max rel %.3g" % worst)
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", default=FIXTURES, help="fixture directory (default tests/fixtures)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with --out")
    ap.add_argument("--selfcheck", action="store_true", help="sampler consistency checks")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.out) else 1)
    if a.selfcheck:
        sys.exit(0 if selfcheck() else 1)
    write_all(a.out, measure=True)
    bad = [(lbl, d) for lbl, ok, d in schedule_crosscheck() if not ok]
    n = len(schedule_crosscheck())
    print("schedule cross-checks: %d/%d match spec 5.8/5.9%s" % (
        n - len(bad), n, "".join("\n  MISMATCH %s: %s" % b for b in bad)))


if __name__ == "__main__":
    main()
