"""numpy port of the statistics of guided-diffusion's evaluations/evaluator.py (spec inception-fid.md §6).

    compute_statistics(acts, mu64=False) -> FIDStatistics(mu, sigma)
        mu = np.mean(acts, axis=0) of the float32 features, as the evaluator: float32 accumulation
             (numpy adds the rows in order, per column, in float32, then divides by float32(n));
             mu64=True: float64 mean instead (diagnostic)
        sigma = np.cov(acts, rowvar=False) (numpy promotes to float64; unbiased, n - 1)
    FIDStatistics.frechet_distance(other, eps=1e-6)   verbatim: diff = mu1 - mu2 (float32 when both mu
        are float32, so diff.dot(diff) is a float32 dot), covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2),
        disp=False); non-finite -> warn and retry with (sigma1 + eps I).dot(sigma2 + eps I); complex ->
        ValueError if the diagonal's imaginary part is not allclose(0, atol=1e-3), else the real part;
        |diff|^2 + tr sigma1 + tr sigma2 - 2 tr covmean.  The evaluator calls sample.frechet_distance(ref).
    frechet_distance_eigh(s1, s2, diff)   diagnostic: tr term = sum sqrt(max(l,0)) over the eigenvalues of
        s1^(1/2) s2 s1^(1/2) (s1^(1/2) from eigh), i.e. the route a C port typically takes.
    softmax32(logits)   float32: e = exp(l - max_k l), p = e * (1 / sum_k e)  (TF's CPU softmax order)
    inception_score(logits, split_size=5000, dtype=np.float32)   verbatim compute_inception_score on
        p = softmax: per consecutive chunk part of split_size rows (shorter last chunk = its own split):
        kl = part * (log(part) - log(mean(part, 0))); exp(mean(sum(kl, 1))); float(mean(scores)); all in
        float32 numpy as the evaluator (dtype=np.float64: the same in float64, diagnostic).
    ManifoldEstimator(variant="f64" | "f16" | "f16_acc32", nhood_sizes=(3,))  k-NN manifold, as the evaluator's
        (row_batch_size = col_batch_size = 10000: for n <= 10000 one tile):
        manifold_radii(x) -> radii [n, 1]: np.partition(D(x, x), kth=[0..3], axis=1)[:, 3] (self included
            at index 0); float32 for "f16" (as the evaluator stores them), float64 for "f64"
        evaluate_pr(f1, r1, f2, r2) -> (mean_j any_i D(f1_i, f2_j) <= r1_i, mean_i any_j D <= r2_j)
        compute_prec_recall(ref, samp) -> (precision, recall) = evaluate_pr(ref, r_ref, samp, r_samp)
      Distance tiles D(U, V):
        "f64": max(|u|^2 - 2 u.v + |v|^2, 0) in float64 from the float32 features
        "f16": the evaluator's DistanceBlock (TF: cast U, V to float16, _batch_pairwise_distances, if any
            entry is not finite recompute in float32).  TF's fp16 accumulation is not specified, so this port
            DEFINES each fp16 op as: exact result (or float32 op for the elementwise ones) rounded once to
            fp16 (round-to-nearest-even):
              u16 = fp16(u)                                   (per element)
              n_u = fp16(sum_k fp16(u16_k * u16_k))           (squares rounded to fp16; their sum
                                                                accumulated in float64, rounded once)
              m   = fp16(sum_k u16_k * v16_k)                 (products exact; accumulated in float64,
                                                                rounded once: matmul with wide accumulate)
              t   = fp16(2 * m)                               (exact unless it overflows to inf)
              D   = max(fp16(fp16(n_u - t) + n_v), 0)         (each op in float32, rounded to fp16:
                                                                numpy's float16 arithmetic)
            then cast to float32.  Fallback (any D not finite, i.e. fp16 overflow past 65504): the same
            formulas with float32 in place of fp16 (sum in float64, rounded once to float32).
        "f16_acc32": diagnostic only: as "f16" but the norms and the matmul accumulate in float32 (numpy
            sum / BLAS sgemm order) before the rounding to fp16, to show how sensitive the counts are.
"""
import warnings

import numpy as np
from scipy import linalg


class FIDStatistics:
    def __init__(self, mu, sigma):
        self.mu = mu
        self.sigma = sigma

    def frechet_distance(self, other, eps=1e-6, return_parts=False):
        mu1, sigma1 = self.mu, self.sigma
        mu2, sigma2 = other.mu, other.sigma
        mu1 = np.atleast_1d(mu1)
        mu2 = np.atleast_1d(mu2)
        sigma1 = np.atleast_2d(sigma1)
        sigma2 = np.atleast_2d(sigma2)
        assert mu1.shape == mu2.shape, "Training and test mean vectors have different lengths"
        assert sigma1.shape == sigma2.shape, "Training and test covariances have different dimensions"
        diff = mu1 - mu2
        retried = False
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        if not np.isfinite(covmean).all():
            warnings.warn("fid calculation produces singular product; adding %s to diagonal of cov estimates"
                          % eps)
            retried = True
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        max_imag = 0.0
        if np.iscomplexobj(covmean):
            max_imag = float(np.max(np.abs(covmean.imag)))
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise ValueError("Imaginary component {}".format(max_imag))
            covmean = covmean.real
        tr_covmean = np.trace(covmean)
        fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
        if return_parts:
            return fid, dict(dmu2=float(diff.dot(diff)), tr1=float(np.trace(sigma1)), tr2=float(np.trace(sigma2)),
                             tr_covmean=float(tr_covmean), retried=retried, max_imag=max_imag)
        return fid


def compute_statistics(acts, mu64=False):
    acts = np.asarray(acts)
    mu = np.mean(acts.astype(np.float64), axis=0) if mu64 else np.mean(acts, axis=0)
    sigma = np.cov(acts, rowvar=False)
    return FIDStatistics(mu, sigma)


def frechet_distance_eigh(sigma1, sigma2, diff):
    w, v = linalg.eigh(sigma1)
    b = v * np.sqrt(np.maximum(w, 0))[None, :]
    lam = linalg.eigvalsh(b.T @ sigma2 @ b)
    tr = float(np.sum(np.sqrt(np.maximum(lam, 0))))
    diff = np.asarray(diff, dtype=np.float64)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr)


# --------------------------------------------------------------------------------------------
# Inception score
# --------------------------------------------------------------------------------------------


def softmax32(logits, dtype=np.float32):
    x = np.asarray(logits).astype(dtype)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    inv = dtype(1) / e.sum(axis=1, keepdims=True)
    return e * inv


def inception_score(logits, split_size=5000, dtype=np.float32):
    preds = softmax32(logits, dtype)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------
# precision / recall
# --------------------------------------------------------------------------------------------


def distances_f64(u, v):
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    nu = np.sum(u * u, axis=1)[:, None]
    nv = np.sum(v * v, axis=1)[None, :]
    return np.maximum(nu - 2 * (u @ v.T) + nv, 0.0)


def _tile_lowp(u, v, dt, acc=np.float64):
    """The DistanceBlock formula with every op rounded to dt (float16 or float32), see the docstring.
    acc=np.float32: norms and matmul accumulated in float32 (BLAS order) instead: diagnostic only."""
    u = np.asarray(u, dtype=np.float32).astype(dt)
    v = np.asarray(v, dtype=np.float32).astype(dt)
    u64 = u.astype(acc)
    v64 = v.astype(acc)
    with np.errstate(over="ignore", invalid="ignore"):
        nu = np.sum((u * u).astype(acc), axis=1).astype(dt)[:, None]     # square in dt, sum wide
        nv = np.sum((v * v).astype(acc), axis=1).astype(dt)[None, :]
        m = (u64 @ v64.T).astype(dt)                                     # exact products, wide sum
        t = (np.float32(2) * m.astype(np.float32)).astype(dt)
        d = (nu.astype(np.float32) - t.astype(np.float32)).astype(dt)
        d = (d.astype(np.float32) + nv.astype(np.float32)).astype(dt)
        d = np.maximum(d, dt(0))
    return d


def distances_f16(u, v, info=None, acc=np.float64):
    d16 = _tile_lowp(u, v, np.float16, acc)
    if np.isfinite(d16).all():
        if info is not None:
            info["fallback"] = info.get("fallback", 0)
        return d16.astype(np.float32)
    if info is not None:
        info["fallback"] = info.get("fallback", 0) + 1
    return _tile_lowp(u, v, np.float32, acc)


class ManifoldEstimator:
    def __init__(self, variant="f64", row_batch_size=10000, col_batch_size=10000, nhood_sizes=(3,)):
        assert variant in ("f64", "f16", "f16_acc32")
        self.variant = variant
        self.row_batch_size = row_batch_size
        self.col_batch_size = col_batch_size
        self.nhood_sizes = list(nhood_sizes)
        self.num_nhoods = len(nhood_sizes)
        self.info = {}

    def distances(self, u, v):
        if self.variant == "f64":
            return distances_f64(u, v)
        acc = np.float32 if self.variant == "f16_acc32" else np.float64
        return distances_f16(u, v, self.info, acc)

    def manifold_radii(self, features):
        n = len(features)
        dt = np.float64 if self.variant == "f64" else np.float32
        radii = np.zeros([n, self.num_nhoods], dtype=dt)
        distance_batch = np.zeros([self.row_batch_size, n], dtype=dt)
        seq = np.arange(max(self.nhood_sizes) + 1, dtype=np.int32)
        for begin1 in range(0, n, self.row_batch_size):
            end1 = min(begin1 + self.row_batch_size, n)
            row_batch = features[begin1:end1]
            for begin2 in range(0, n, self.col_batch_size):
                end2 = min(begin2 + self.col_batch_size, n)
                distance_batch[0:end1 - begin1, begin2:end2] = self.distances(row_batch, features[begin2:end2])
            part = np.partition(distance_batch[0:end1 - begin1, :], seq, axis=1)
            radii[begin1:end1, :] = part[:, self.nhood_sizes]
        return radii

    def evaluate_pr(self, features_1, radii_1, features_2, radii_2):
        s1 = np.zeros([len(features_1), radii_2.shape[1]], dtype=bool)
        s2 = np.zeros([len(features_2), radii_1.shape[1]], dtype=bool)
        for b1 in range(0, len(features_1), self.row_batch_size):
            e1 = b1 + self.row_batch_size
            for b2 in range(0, len(features_2), self.col_batch_size):
                e2 = b2 + self.col_batch_size
                d = self.distances(features_1[b1:e1], features_2[b2:e2])[..., None]
                s1[b1:e1] |= np.any(d <= radii_2[b2:e2][None, :, :], axis=1)
                s2[b2:e2] |= np.any(d <= radii_1[b1:e1][:, None, :], axis=0)
        return (np.mean(s2.astype(np.float64), axis=0), np.mean(s1.astype(np.float64), axis=0), s2, s1)

    def compute_prec_recall(self, ref, samp, return_all=False):
        r_ref = self.manifold_radii(ref)
        r_samp = self.manifold_radii(samp)
        p, r, in_prec, in_rec = self.evaluate_pr(ref, r_ref, samp, r_samp)
        if return_all:
            return float(p[0]), float(r[0]), dict(r_ref=r_ref, r_samp=r_samp, n_precision=int(in_prec[:, 0].sum()),
                                                  n_recall=int(in_rec[:, 0].sum()))
        return float(p[0]), float(r[0])
