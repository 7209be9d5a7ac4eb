#!/usr/bin/python3
"""Sample-quality statistics fixtures for the C tests (include/gd_eval.h: FID, k-NN precision/recall, IS).

    /usr/bin/python3 tests/reference/gen_eval_fixtures.py [--out DIR] [--check]

Writes DIR/eval.safetensors.  Features/logits are stored F32; every reference number is computed in
float64 numpy/scipy from the stored float32 values.

FID, for every case in FID_CASES (names prefixed "fid/<case>/"):
    a, b              F32 [n1,d], [n2,d]  the two feature sets
    mu_a, mu_b        F64 [d]             np.mean(x.astype(float64), axis=0)
    sigma_a, sigma_b  F64 [d,d]           np.cov(x.astype(float64), rowvar=False)   (unbiased, n - 1)
    fid_sqrtm         F64 [1]   guided-diffusion FIDStatistics.frechet_distance on (mu, sigma): covmean =
                                scipy.linalg.sqrtm(s1.dot(s2), disp=False); if not all finite, recomputed
                                as sqrtm((s1 + 1e-6 I).dot(s2 + 1e-6 I)); complex -> real part (raises if
                                any |imag| on the diagonal > 1e-3); |dmu|^2 + tr s1 + tr s2 - 2 tr covmean
    fid_eigh          F64 [1]   same formula, trace term sum sqrt(max(l, 0)) over scipy.linalg.eigvalsh of
                                s1^(1/2) s2 s1^(1/2), s1^(1/2) = V diag(sqrt w) V^T from scipy.linalg.eigh
                                (the C code takes the eigenvalues of B^T s2 B, B = V diag(sqrt w), instead:
                                same matrix up to the rotation V, but graded, which LAPACK resolves better)
    fid_svd           F64 [1]   trace term = sum of singular values of Cb Ca^T, Ca = (a - mu_a)/sqrt(n1-1),
                                so s1 = Ca^T Ca, s2 = Cb^T Cb and Tr (s1 s2)^(1/2) = ||Cb Ca^T||_* exactly:
                                no squared spectrum, the accurate route (error ~ eps, not sqrt(eps))
    fid_target        F64 [1]   the value the C code must match: fid_sqrtm where it agrees with fid_svd to
                                1e-8 relative, else fid_svd (the sqrtm route is inaccurate there: see the
                                case's "target_note"); exactly 0 for identical sets
__metadata__["fid_cases"] = JSON list of {name, n1, n2, d, seed, what, fid_sqrtm, fid_eigh, fid_svd,
fid_mp50 (d <= 32: mpmath 50-digit eigen route on the stored sigmas), sqrtm_errest (scipy's own second
return value, which scipy 1.10 computes as ||X^2 - A||_F^2 / ||A||_F), sqrtm_residual (||X^2 - A||_F /
||A||_F of the first sqrtm), sqrtm_eps_retry, sqrtm_max_abs_imag, eig range of sigma_a / sigma_b,
target, target_note, tol_rel or tol_abs}.

Precision/recall, for every case in PR_CASES ("pr/<case>/"):
    ref, samp               F32 [nr,d], [ns,d]
    ref_radii, samp_radii   F64 [nr], [ns]  k = 3 radius: np.partition(D, kth=[0,1,2,3], axis=1)[:, 3] of the
                                            squared distances of the row to its own set (index 0 = itself)
    precision, recall       F64 [1]         fraction of samp rows with D(ref_i, samp_j) <= ref_radii[i] for
                                            some i; fraction of ref rows with D <= samp_radii[j] for some j
Squared distances are max(||u||^2 - 2 u.v + ||v||^2, 0) in float64 (guided-diffusion's ManifoldEstimator
with nhood_sizes=(3,); the evaluator itself computes them in fp16).  __metadata__["pr_cases"] = JSON list
of {name, nr, ns, d, seed, what, precision, recall, n_precision, n_recall, min_rel_margin (min over all
cross pairs of |D - radius| / radius, > 1e-9 for the float-valued cases), n_ties (pairs with D == radius
exactly), precision_strict / recall_strict (with < instead of <=)}.

Inception score ("is/"):
    logits  F32 [1234,10]
    split   I64 [S]     chunk sizes
    score   F64 [S]     guided-diffusion compute_inception_score on p = softmax(float64(logits)): per
                        consecutive chunk of `split` rows, exp(mean_n sum_k p (log p - log mean_n p)); mean
                        over chunks (the shorter last chunk counts as one)

--check  regenerates in memory and compares with the file (bytes, else F64 rel 1e-12 / F32 bytes /
         integers exactly, metadata numbers rel 1e-9), replays every reference number from the file's
         stored features, and runs the self-checks.  Self-checks also run on every default run.
"""
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # reproducible BLAS sums; the machine is shared

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
FNAME = "eval.safetensors"
TOL_F64 = 1e-12
TOL_META = 1e-9
FID_EPS = 1e-6          # guided-diffusion's retry offset
SQRTM_OK_REL = 1e-8     # sqrtm route is the target when within this of the accurate svd route
FID_TOL_REL = 1e-6      # the requirement for the C code
K_NN = 3

FID_CASES = [
    dict(name="well", d=16, n1=400, n2=400, seed=4001,
         what="well-conditioned: N(0,I) vs 0.3 + z M / 2 (different means and covariances)"),
    dict(name="offset", d=16, n1=400, n2=350, seed=4002,
         what="correlated (z L), |mu| ~ 300 per feature, spread ~1 (E[xx^T] - mu mu^T would lose ~1e-10 "
              "of the covariance: tests centring), mean offset 4 per feature "
              "(|dmu|^2 dominates the FID)"),
    dict(name="rank_deficient", d=32, n1=20, n2=24, seed=4003,
         what="n < d: sigma_a rank 19, sigma_b rank 23 (exactly singular covariances)"),
    dict(name="spectrum", d=32, n1=200, n2=200, seed=4004,
         what="both covariances have eigenvalues spanning ~1e-10..1 (logspace), different eigenvectors"),
    dict(name="spectrum_shared", d=32, n1=200, n2=200, seed=4005,
         what="eigenvalues ~1e-10..1 with the SAME eigenvectors: s1 s2 has eigenvalues ~1e-20, which "
              "scipy's Schur sqrtm and the rotate-back eigh route resolve only to ~1e-16 absolute, so their "
              "square roots err by ~1e-8 each; on this small FID (0.03) that is ~3e-7 relative"),
    dict(name="dead_units", d=32, n1=200, n2=150, seed=4006,
         what="ReLU features with dead units (exactly constant columns): a's last 4, b's first 3; "
              "s1 s2 then has a non-trivial nilpotent part at 0, scipy's sqrtm returns non-finite "
              "values and the evaluator retries with the 1e-6 offset"),
    dict(name="identical", d=16, n1=300, n2=300, seed=4007,
         what="b = a: FID = 0 exactly"),
    dict(name="identical_rank_deficient", d=32, n1=20, n2=20, seed=4008,
         what="b = a with n < d: FID = 0; the eigen/Schur routes leave ~sqrt(eps) per null direction"),
    dict(name="d128", d=128, n1=1000, n2=350, seed=4009,
         what="evaluator-sized: ReLU(z W + c) features, d = 128, n = 1000 vs 350"),
]

PR_CASES = [
    dict(name="overlap", d=8, nr=300, ns=250, seed=4101,
         what="ref N(0,I); samp half N(0.5, I), half N(3, 0.25 I): partially overlapping"),
    dict(name="duplicates", d=8, nr=200, ns=150, seed=4102,
         what="quarter-integer features (all distances exact in double, so ties are real): rows "
              "repeated 2x and 4x inside each set (4 copies -> radius 0) and samp rows copied from ref "
              "(D = 0 <= radius 0 decides them); <= vs < changes the result"),
    dict(name="blocked", d=4, nr=1100, ns=1030, seed=4103,
         what="more than 1024 rows in each set (the C code's row block), N(0,I) vs N(0.2, 1.1^2 I)"),
]

IS_SEED = 4201
IS_N, IS_K = 1234, 10
IS_SPLITS = [500, 617, 1, 5000]

CONVENTIONS = """\
FID (guided-diffusion evaluations/evaluator.py FIDStatistics.frechet_distance):
  mu = mean(acts, 0), sigma = np.cov(acts, rowvar=False) (unbiased), float64 from the F32 features
  covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
  if not isfinite(covmean).all(): covmean = sqrtm((sigma1 + 1e-6 I).dot(sigma2 + 1e-6 I))
  complex -> real part (ValueError if any |imag| on the diagonal > 1e-3)
  fid = |mu1 - mu2|^2 + tr sigma1 + tr sigma2 - 2 tr covmean
Precision/recall (ManifoldEstimator, nhood_sizes=(3,), clamp_to_percentile=None):
  D(u, v) = max(|u|^2 - 2 u.v + |v|^2, 0) (here float64; the evaluator uses fp16)
  radius_i = np.partition(D(x_i, X), kth=[0,1,2,3])[3]  (own set; index 0 is x_i itself)
  precision = mean_j any_i D(ref_i, samp_j) <= r_ref_i;  recall = mean_i any_j D(ref_i, samp_j) <= r_samp_j
Inception score (compute_inception_score): per consecutive chunk of split rows of p = softmax(logits),
  exp(mean_n sum_k p_nk (log p_nk - log mean_n p_nk)); score = mean over chunks."""


# --------------------------------------------------------------------------------------------
# reference computations
# --------------------------------------------------------------------------------------------


def feature_stats(x):
    x = np.asarray(x, dtype=np.float64)
    return np.mean(x, axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def fid_sqrtm(mu1, s1, mu2, s2):
    """guided-diffusion's frechet_distance, verbatim apart from the extra diagnostics returned."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean, errest = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
        A = s1.dot(s2)
        residual = float(np.linalg.norm(covmean.dot(covmean) - A) / np.linalg.norm(A))
        retry = not np.isfinite(covmean).all()
        if retry:
            offset = np.eye(s1.shape[0]) * FID_EPS
            covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component %g" % np.max(np.abs(covmean.imag)))
        max_imag = float(np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    fid = diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    errest, residual = (float(v) if np.isfinite(v) else None for v in (errest, residual))  # JSON: no NaN
    return float(fid), dict(sqrtm_errest=errest, sqrtm_residual=residual,
                            sqrtm_eps_retry=bool(retry), sqrtm_max_abs_imag=max_imag)


def fid_eigh(mu1, s1, mu2, s2):
    w, v = scipy.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = scipy.linalg.eigvalsh(r @ s2 @ r)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def fid_svd(a, b):
    """From the features: Tr (s1 s2)^(1/2) = nuclear norm of Cb Ca^T (s = C^T C)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    ca = (a - mu1) / np.sqrt(len(a) - 1)
    cb = (b - mu2) / np.sqrt(len(b) - 1)
    sv = scipy.linalg.svdvals(cb @ ca.T)
    diff = mu1 - mu2
    return float(diff.dot(diff) + (ca * ca).sum() + (cb * cb).sum() - 2 * sv.sum())


def fid_mp(mu1, s1, mu2, s2, dps=50):
    """mpmath eigen route on the stored float64 sigmas (slow: only for d <= 32)."""
    import mpmath as mp
    with mp.workdps(dps):
        S1, S2 = mp.matrix(s1.tolist()), mp.matrix(s2.tolist())
        e, V = mp.eigsy(S1)
        R = V * mp.diag([mp.sqrt(x) if x > 0 else mp.mpf(0) for x in e]) * V.T
        lam = mp.eigsy(R * S2 * R, eigvals_only=True)
        tr = mp.fsum(mp.sqrt(x) for x in lam if x > 0)
        dm = mp.fsum((mp.mpf(float(x)) - mp.mpf(float(y))) ** 2 for x, y in zip(mu1, mu2))
        t1 = mp.fsum(mp.mpf(float(s1[i, i])) for i in range(len(mu1)))
        t2 = mp.fsum(mp.mpf(float(s2[i, i])) for i in range(len(mu1)))
        return float(dm + t1 + t2 - 2 * tr)


def sq_dists(u, v):
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    nu = (u * u).sum(1)
    nv = (v * v).sum(1)
    return np.maximum(nu[:, None] - 2 * u @ v.T + nv[None, :], 0.0)


def knn_radii(x, k=K_NN):
    return np.partition(sq_dists(x, x), kth=list(range(k + 1)), axis=1)[:, k]


def precision_recall(ref, r_ref, samp, r_samp, strict=False):
    D = sq_dists(ref, samp)
    cmp = np.less if strict else np.less_equal
    samp_in = cmp(D, r_ref[:, None]).any(0)
    ref_in = cmp(D, r_samp[None, :]).any(1)
    return float(np.mean(samp_in)), float(np.mean(ref_in)), int(samp_in.sum()), int(ref_in.sum())


def pr_margins(ref, r_ref, samp, r_samp):
    D = sq_dists(ref, samp)
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = np.abs(D - r_ref[:, None]) / r_ref[:, None]
        m2 = np.abs(D - r_samp[None, :]) / r_samp[None, :]
    m = np.concatenate([m1.ravel(), m2.ravel()])
    m = m[np.isfinite(m) & (m > 0)]
    ties = int((D == r_ref[:, None]).sum() + (D == r_samp[None, :]).sum())
    return float(m.min()), ties


def softmax64(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def inception_score(logits, split_size):
    preds = softmax64(logits)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _orth(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def fid_inputs(case):
    rng = np.random.default_rng(case["seed"])
    d, n1, n2, name = case["d"], case["n1"], case["n2"], case["name"]
    z1 = rng.standard_normal((n1, d))
    z2 = rng.standard_normal((n2, d))
    if name == "well":
        a = z1
        b = 0.3 + z2 @ rng.standard_normal((d, d)) / 2
    elif name == "offset":
        base = 300 + 50 * rng.standard_normal(d)
        L1 = np.tril(rng.standard_normal((d, d))) / 2 + np.eye(d)
        L2 = np.tril(rng.standard_normal((d, d))) / 2 + np.eye(d)
        a = base + z1 @ L1.T
        b = base + 4 + z2 @ L2.T
    elif name == "rank_deficient":
        a = z1
        b = 0.1 + 1.2 * z2 @ (np.eye(d) + 0.3 * rng.standard_normal((d, d)))
    elif name in ("spectrum", "spectrum_shared"):
        lam = np.logspace(0, -10, d)
        q1 = _orth(rng, d)
        q2 = q1 if name == "spectrum_shared" else _orth(rng, d)
        a = (z1 * np.sqrt(lam)) @ q1.T
        b = 0.01 + (z2 * np.sqrt(lam)) @ q2.T
    elif name == "dead_units":
        W = rng.standard_normal((d, d)) / np.sqrt(d)
        a = np.maximum(z1 @ W + 0.3, 0)
        b = np.maximum(z2 @ W + 0.2, 0)
        a[:, d - 4:] = 0
        b[:, :3] = 0
    elif name in ("identical", "identical_rank_deficient"):
        a = z1 @ (np.eye(d) + 0.3 * rng.standard_normal((d, d))) + 1
        b = a
    elif name == "d128":
        W = rng.standard_normal((d, d)) / np.sqrt(d)
        a = np.maximum(z1 @ W + 0.2, 0)
        b = np.maximum(1.1 * z2 @ W + 0.3, 0)
    else:
        raise ValueError(name)
    return a.astype(np.float32), np.array(b, dtype=np.float32)


def _quarter(rng, shape):
    return (rng.integers(-12, 13, size=shape) / 4.0).astype(np.float32)


def pr_inputs(case):
    """-> (ref, samp, seed actually used): float-valued cases are redrawn until every cross pair sits
    more than 1e-9 relative from the radius it is compared with."""
    name, d, nr, ns = case["name"], case["d"], case["nr"], case["ns"]
    for seed in range(case["seed"], case["seed"] + 20):
        rng = np.random.default_rng(seed)
        if name == "overlap":
            ref = rng.standard_normal((nr, d))
            h = ns // 2
            samp = np.concatenate([0.5 + rng.standard_normal((h, d)),
                                   3 + 0.5 * rng.standard_normal((ns - h, d))])
        elif name == "duplicates":
            ref = _quarter(rng, (nr, d))
            samp = _quarter(rng, (ns, d)) + np.float32(0.75)
            ref[1:4] = ref[0]          # 4 copies: radius 0
            ref[10:20] = ref[20:30]    # pairs
            samp[1:4] = samp[0]        # 4 copies in samp
            samp[30:40] = samp[40:50]
            samp[5] = ref[0]           # D = 0 to a radius-0 ref row
            samp[50:70] = ref[100:120]  # copies of single ref rows
            samp[6] = ref[12]
            ref[150] = samp[0]         # D = 0 to a radius-0 samp row
        elif name == "blocked":
            ref = rng.standard_normal((nr, d))
            samp = 0.2 + 1.1 * rng.standard_normal((ns, d))
        else:
            raise ValueError(name)
        ref = np.asarray(ref, dtype=np.float32)
        samp = np.asarray(samp, dtype=np.float32)
        if name == "duplicates":
            return ref, samp, seed
        margin, _ = pr_margins(ref, knn_radii(ref), samp, knn_radii(samp))
        if margin > 1e-9:
            return ref, samp, seed
    raise RuntimeError("no seed gave a 1e-9 margin")


def is_logits():
    rng = np.random.default_rng(IS_SEED)
    scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(IS_N, 1)))
    bias = np.linspace(-1, 1, IS_K)
    z = rng.standard_normal((IS_N, IS_K)) * scale + bias
    z[0] = 0                 # uniform row
    z[1, 3] += 40            # one-hot-like row
    z[2] += 1000             # needs the max subtraction
    z[3] = -z[3] * 20        # sharp row
    return z.astype(np.float32)


# --------------------------------------------------------------------------------------------
# file
# --------------------------------------------------------------------------------------------


def fid_reference(case, a, b, with_mp=True):
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    f_sq, diag = fid_sqrtm(mu1, s1, mu2, s2)
    f_eig = fid_eigh(mu1, s1, mu2, s2)
    f_svd = fid_svd(a, b)
    meta = dict(fid_sqrtm=f_sq, fid_eigh=f_eig, fid_svd=f_svd)
    if with_mp and case["d"] <= 32:
        meta["fid_mp50"] = fid_mp(mu1, s1, mu2, s2)
    meta.update(diag)
    ea, eb = np.linalg.eigvalsh(s1), np.linalg.eigvalsh(s2)
    meta["eig_sigma_a"] = [float(ea[0]), float(ea[-1])]
    meta["eig_sigma_b"] = [float(eb[0]), float(eb[-1])]
    scale = float(np.trace(s1) + np.trace(s2))
    if case["name"].startswith("identical"):
        target = 0.0
        # FID = 0 has no relative scale: every route returns the round-off residue of
        # tr s1 + tr s2 - 2 tr covmean, so the tolerance is absolute, relative to tr s1 + tr s2.
        if case["name"] == "identical":
            meta["tol_abs"] = 1e-10 * scale
            meta["target_note"] = ("FID = 0 exactly (b = a); tol_abs = 1e-10 (tr s1 + tr s2): all routes "
                                   "are at the ~1e-14 round-off of the cancelling traces")
        else:
            meta["tol_abs"] = 1e-7 * scale
            meta["target_note"] = ("FID = 0 exactly (b = a); the svd route gives ~1e-14, but scipy's sqrtm "
                                   "(%.2g) and the eigen route (%.2g) keep ~sqrt(eps |s|) per null direction "
                                   "(13 here); tol_abs = 1e-7 (tr s1 + tr s2) admits that" % (f_sq, f_eig))
        meta["target"] = "zero"
    else:
        sq_ok = abs(f_sq - f_svd) <= SQRTM_OK_REL * abs(f_svd)
        target = f_sq if sq_ok else f_svd
        meta["target"] = "sqrtm" if sq_ok else "svd"
        meta["tol_rel"] = FID_TOL_REL
        if sq_ok:
            meta["target_note"] = "scipy sqrtm route (the evaluator's) agrees with the svd route to %.1e" % (
                abs(f_sq - f_svd) / abs(f_svd))
        else:
            why = ("non-finite first sqrtm, so the evaluator's value carries the 1e-6 offset"
                   if diag["sqrtm_eps_retry"] else "sqrt(eps)-level loss in the Schur square root")
            meta["target_note"] = ("scipy sqrtm route is off the accurate svd route by %.2e relative (%s); "
                                   "the C code must match fid_svd" % ((f_sq - f_svd) / f_svd, why))
    return (mu1, s1, mu2, s2), target, meta


def build(with_mp=True):
    tensors, fid_meta, pr_meta = [], [], []
    for case in FID_CASES:
        a, b = fid_inputs(case)
        (mu1, s1, mu2, s2), target, meta = fid_reference(case, a, b, with_mp)
        p = "fid/%s/" % case["name"]
        tensors += [(p + "a", a), (p + "b", b), (p + "mu_a", mu1), (p + "sigma_a", s1), (p + "mu_b", mu2),
                    (p + "sigma_b", s2)]
        for k in ("fid_sqrtm", "fid_eigh", "fid_svd"):
            tensors.append((p + k, np.array([meta[k]], dtype=np.float64)))
        tensors.append((p + "fid_target", np.array([target], dtype=np.float64)))
        m = {k: case[k] for k in ("name", "n1", "n2", "d", "seed", "what")}
        m.update(meta)
        fid_meta.append(m)
    for case in PR_CASES:
        ref, samp, seed = pr_inputs(case)
        r_ref, r_samp = knn_radii(ref), knn_radii(samp)
        prec, rec, cp, cr = precision_recall(ref, r_ref, samp, r_samp)
        ps, rs, _, _ = precision_recall(ref, r_ref, samp, r_samp, strict=True)
        margin, ties = pr_margins(ref, r_ref, samp, r_samp)
        p = "pr/%s/" % case["name"]
        tensors += [(p + "ref", ref), (p + "samp", samp), (p + "ref_radii", r_ref), (p + "samp_radii", r_samp),
                    (p + "precision", np.array([prec])), (p + "recall", np.array([rec]))]
        m = {k: case[k] for k in ("name", "nr", "ns", "d", "what")}
        m.update(seed=seed, precision=prec, recall=rec, n_precision=cp, n_recall=cr, min_rel_margin=margin,
                 n_ties=ties, precision_strict=ps, recall_strict=rs,
                 n_zero_radii=int((r_ref == 0).sum() + (r_samp == 0).sum()))
        pr_meta.append(m)
    logits = is_logits()
    scores = np.array([inception_score(logits, s) for s in IS_SPLITS], dtype=np.float64)
    tensors += [("is/logits", logits), ("is/split", np.array(IS_SPLITS, dtype=np.int64)), ("is/score", scores)]
    md = {"fid_cases": json.dumps(fid_meta), "pr_cases": json.dumps(pr_meta),
          "is": json.dumps({"n": IS_N, "k": IS_K, "seed": IS_SEED, "split": IS_SPLITS,
                            "score": scores.tolist()}),
          "k": str(K_NN), "conventions": CONVENTIONS}
    return tensors, md


# --------------------------------------------------------------------------------------------
# self-checks
# --------------------------------------------------------------------------------------------


def _r(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def selfcheck(fid_meta, verbose=True):
    ok = True

    def report(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        if verbose or not good:
            print("%s %-78s %.3g (tol %.0e)" % ("ok  " if good else "FAIL", name, err, tol))

    # FID: the svd route against mpmath on the stored sigmas; the sqrtm route against the svd route
    for m in fid_meta:
        zero = m["target"] == "zero"
        if "fid_mp50" in m:
            # Where a covariance is exactly singular (n <= d), the stored (rounded) sigma has +-1e-17
            # eigenvalues in its null space, and Tr (s1 s2)^(1/2) moves by ~sqrt(eps) under that
            # rounding: the mpmath value of the stored sigmas and the svd value of the features then
            # differ at that level.  Elsewhere they agree to round-off.
            singular = min(m["n1"], m["n2"]) <= m["d"]
            err = abs(m["fid_svd"] - m["fid_mp50"]) / (1.0 if zero else abs(m["fid_mp50"]))
            report("fid %s: svd route vs mpmath 50 digits (%s)" % (m["name"], "abs" if zero else "rel"), err,
                   1e-8 if singular and not zero else 1e-12)
        if not zero:
            report("fid %s: eigh route vs svd route (rel; documentation)" % m["name"],
                   _r(m["fid_eigh"], m["fid_svd"]), 1e-6)
    # FID is symmetric, invariant to a common shift/rotation, and 0 for a set against itself
    rng = np.random.default_rng(1)
    a = rng.standard_normal((60, 6))
    b = 1 + rng.standard_normal((50, 6)) @ rng.standard_normal((6, 6))
    q = _orth(rng, 6)
    s = [feature_stats(x) for x in (a, b, a @ q.T + 7, b @ q.T + 7)]
    f = fid_sqrtm(*s[0], *s[1])[0]
    err = max(_r(fid_sqrtm(*s[1], *s[0])[0], f), _r(fid_sqrtm(*s[2], *s[3])[0], f), _r(fid_eigh(*s[0], *s[1]), f),
              _r(fid_svd(a, b), f))
    report("fid: symmetric, rotation/shift invariant, routes agree (well-conditioned)", err, 1e-12)
    # 1-d closed form: (m1-m2)^2 + (s1 - s2)^2 with s the standard deviations
    x, y = rng.standard_normal((40, 1)), 2 + 3 * rng.standard_normal((30, 1))
    s1, s2 = x.std(ddof=1), y.std(ddof=1)
    report("fid: 1-d closed form (dm^2 + (sd1 - sd2)^2)",
           _r(fid_sqrtm(*feature_stats(x), *feature_stats(y))[0], (x.mean() - y.mean()) ** 2 + (s1 - s2) ** 2),
           1e-13)

    # k-NN: radii from direct differences and a sort; precision/recall from a loop
    ref = rng.standard_normal((40, 3)).astype(np.float32)
    samp = (0.5 + rng.standard_normal((30, 3))).astype(np.float32)
    r64 = ref.astype(np.float64)
    direct = ((r64[:, None, :] - r64[None, :, :]) ** 2).sum(-1)
    report("knn radii vs direct-difference distances + full sort (rel)",
           float(np.max(np.abs(knn_radii(ref) - np.sort(direct, 1)[:, 3]) / np.sort(direct, 1)[:, 3])), 1e-13)
    rr, rs = knn_radii(ref), knn_radii(samp)
    pr = precision_recall(ref, rr, samp, rs)
    s64 = samp.astype(np.float64)
    cnt_p = sum(any(((s64[j] - r64[i]) ** 2).sum() <= rr[i] for i in range(40)) for j in range(30))
    cnt_r = sum(any(((s64[j] - r64[i]) ** 2).sum() <= rs[j] for j in range(30)) for i in range(40))
    report("precision/recall vs a direct double loop (count mismatch)",
           abs(pr[2] - cnt_p) + abs(pr[3] - cnt_r), 0)
    report("precision/recall of a set against itself == 1",
           abs(precision_recall(ref, rr, ref, rr)[0] - 1) + abs(precision_recall(ref, rr, ref, rr)[1] - 1), 0)

    # IS: split 1 -> 1; uniform logits -> 1; vs scipy.stats.entropy formulation
    import scipy.special
    import scipy.stats
    lg = is_logits()
    report("IS split 1 == 1", abs(inception_score(lg, 1) - 1), 1e-15)
    report("IS uniform logits == 1", abs(inception_score(np.zeros((7, 4), np.float32), 3) - 1), 1e-15)
    p = scipy.special.softmax(lg.astype(np.float64), axis=1)
    sc = []
    for i in range(0, IS_N, 500):
        part = p[i:i + 500]
        sc.append(np.exp(np.mean(scipy.stats.entropy(part.T, part.mean(0)[:, None]))))
    report("IS split 500 vs scipy.special.softmax + scipy.stats.entropy", _r(inception_score(lg, 500), np.mean(sc)),
           1e-13)
    return ok


# --------------------------------------------------------------------------------------------
# check / replay
# --------------------------------------------------------------------------------------------


def _compare_meta(got, want, path=""):
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return ["%s: keys differ" % path]
        return sum((_compare_meta(got[k], want[k], path + "." + k) for k in want), [])
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return ["%s: lengths differ" % path]
        return sum((_compare_meta(g, w, "%s[%d]" % (path, i)) for i, (g, w) in enumerate(zip(got, want))), [])
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        # near-zero values (identical sets, eigenvalues of singular covariances) are round-off
        if abs(got - want) <= TOL_META * abs(want) or max(abs(got), abs(want)) < 1e-9:
            return []
        return ["%s: %r vs %r" % (path, got, want)]
    return [] if got == want else ["%s: %r vs %r" % (path, got, want)]


def _compare(got_t, want_t):
    errs = []
    if list(got_t) != list(want_t):
        return ["tensor names differ"]
    for k in got_t:
        a, b = got_t[k], want_t[k]
        if a.dtype != b.dtype or a.shape != b.shape:
            errs.append("%s: dtype/shape differ" % k)
        elif a.raw != b.raw:
            if a.dtype != "F64":
                errs.append("%s: data differ" % k)
            else:
                x, y = a.numpy(), b.numpy()
                zero = k.endswith("fid_target") or "/identical" in k and k.endswith(("fid_sqrtm", "fid_eigh",
                                                                                     "fid_svd"))
                err = float(np.max(np.abs(x - y)) / (1.0 if zero else max(np.max(np.abs(y)), 1e-300)))
                if err > (1e-9 if zero else TOL_F64):
                    errs.append("%s: max diff %.3g" % (k, err))
    return errs


def replay(path):
    """Recompute every reference number from the features stored in the file."""
    ts, md = st.read(path)
    errs = []
    for m in json.loads(md["fid_cases"]):
        p = "fid/%s/" % m["name"]
        a, b = ts[p + "a"].numpy(), ts[p + "b"].numpy()
        mu1, s1 = feature_stats(a)
        mu2, s2 = feature_stats(b)
        for k, v in (("mu_a", mu1), ("sigma_a", s1), ("mu_b", mu2), ("sigma_b", s2)):
            st_v = ts[p + k].numpy()
            if np.max(np.abs(st_v - v)) > TOL_F64 * np.max(np.abs(v)):
                errs.append(p + k + ": replay differs")
        zero = m["target"] == "zero"
        for k, v in (("fid_sqrtm", fid_sqrtm(mu1, s1, mu2, s2)[0]), ("fid_eigh", fid_eigh(mu1, s1, mu2, s2)),
                     ("fid_svd", fid_svd(a, b))):
            got = float(ts[p + k].numpy()[0])
            if (abs(got - v) > 1e-9) if zero else (_r(got, v) > 1e-10):
                errs.append("%s%s: replay %r vs stored %r" % (p, k, v, got))
        tgt = float(ts[p + "fid_target"].numpy()[0])
        want = 0.0 if zero else float(ts[p + "fid_" + m["target"]].numpy()[0])
        if tgt != want:
            errs.append(p + "fid_target is not fid_" + m["target"])
    for m in json.loads(md["pr_cases"]):
        p = "pr/%s/" % m["name"]
        ref, samp = ts[p + "ref"].numpy(), ts[p + "samp"].numpy()
        rr, rs = knn_radii(ref), knn_radii(samp)
        for k, v in (("ref_radii", rr), ("samp_radii", rs)):
            if np.max(np.abs(ts[p + k].numpy() - v) / np.maximum(v, 1e-300)) > TOL_F64:
                errs.append(p + k + ": replay differs")
        prec, rec, _, _ = precision_recall(ref, ts[p + "ref_radii"].numpy(), samp, ts[p + "samp_radii"].numpy())
        if prec != ts[p + "precision"].numpy()[0] or rec != ts[p + "recall"].numpy()[0]:
            errs.append(p + "precision/recall: replay differs")
    lg = ts["is/logits"].numpy()
    for s, v in zip(ts["is/split"].numpy(), ts["is/score"].numpy()):
        if _r(inception_score(lg, int(s)), v) > TOL_F64:
            errs.append("is/score split %d: replay differs" % s)
    return errs


def _print_summary(md):
    print("  FID                       target   fid_target         sqrtm-svd  eigh-svd   svd-mp50   "
          "sqrtm resid  retry")
    for m in json.loads(md["fid_cases"]):
        tv = 0.0 if m["target"] == "zero" else m["fid_" + m["target"]]
        den = 1.0 if m["target"] == "zero" else abs(m["fid_svd"])
        mp = "%10.2e" % ((m["fid_svd"] - m["fid_mp50"]) / den) if "fid_mp50" in m else "         -"
        print("  %-25s %-6s %18.12g %10.2e %10.2e %s %11.2e  %s" % (
            m["name"], m["target"], tv, (m["fid_sqrtm"] - m["fid_svd"]) / den, (m["fid_eigh"] - m["fid_svd"]) / den,
            mp, float("nan") if m["sqrtm_residual"] is None else m["sqrtm_residual"], m["sqrtm_eps_retry"]))
    for m in json.loads(md["pr_cases"]):
        print("  PR %-10s seed %d precision %.6f recall %.6f  (strict <: %.6f %.6f)  min rel margin %.2e, "
              "%d exact ties, %d zero radii" % (m["name"], m["seed"], m["precision"], m["recall"],
                                               m["precision_strict"], m["recall_strict"], m["min_rel_margin"],
                                               m["n_ties"], m["n_zero_radii"]))
    d = json.loads(md["is"])
    print("  IS splits %s -> %s" % (d["split"], ["%.12g" % s for s in d["score"]]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    tensors, md = build()
    data = st.dumps(tensors, md)
    path = os.path.join(args.out, FNAME)
    bad = False
    if args.check:
        if not os.path.exists(path):
            print("FAIL %s: missing" % FNAME)
            sys.exit(1)
        with open(path, "rb") as f:
            old = f.read()
        if old == data:
            errs, how = [], "identical"
        else:
            got_t, got_md = st.loads(data)
            want_t, want_md = st.loads(old)
            errs = _compare(got_t, want_t)
            if set(got_md) != set(want_md):
                errs.append("metadata keys differ")
            for k in set(got_md) & set(want_md):
                if k in ("fid_cases", "pr_cases", "is"):
                    errs += ["metadata %s%s" % (k, e) for e in
                             _compare_meta(json.loads(got_md[k]), json.loads(want_md[k]))]
                elif got_md[k] != want_md[k]:
                    errs.append("metadata %s differs" % k)
            how = "within tolerance"
        errs += replay(path)
        for e in errs:
            print("FAIL " + e)
        if errs:
            bad = True
        else:
            print("OK   %s %s, replay OK" % (FNAME, how))
    else:
        with open(path, "wb") as f:
            f.write(data)
        ts, _ = st.loads(data)
        print("wrote %s (%d bytes, %d tensors)" % (path, len(data), len(ts)))
        _print_summary(md)
    print("self-checks:")
    if not selfcheck(json.loads(md["fid_cases"])):
        bad = True
    if bad:
        print("FAILED")
        sys.exit(1)


if __name__ == "__main__":
    main()
