#!/usr/bin/python3
"""The W8A8 quantizer's formulas in numpy/Python, and the fixture tests/test_quant.c checks the C
implementation (src/train/quant_math.c) against, number for number.

    /usr/bin/python3 tests/reference/gen_quant_fixtures.py [--out DIR]   # write tests/fixtures/quant.safetensors
    /usr/bin/python3 tests/reference/gen_quant_fixtures.py --check       # regenerate, compare bit for bit

Written from include/gd_quant.h's definitions (PTQ4DM / QDrop's "mse" range initialisation, 100
shrinking candidates, L_p error with p = 2.4; also p = 2):

weights (symmetric int8 per output channel): m = max|w|; for i < 100, s_i = m (1 - 0.01 i) / 127;
    err_i = sum_j |w_j - clip(rint(w_j / s_i), -127, 127) s_i|^p; s = the first s_i of least err;
    stored as float32; q = clip(rint(w / float64(float32 s)), -127, 127).  m = 0 gives s = 1.
activations (affine uint8 per tensor, on a 2048-bin histogram):
    lo = min(0, min x), hi = max(0, max x); bin = clip(floor((x - lo) / (hi - lo) * 2048), 0, 2047);
    c_k = lo + (k + 0.5) (hi - lo) / 2048; for a_i = 1 - 0.01 i: s = a (hi - lo) / 255,
    z = clip(rint(-a lo / s), 0, 255), err = sum_k n_k |c_k - (clip(rint(c_k / s) + z, 0, 255) - z) s|^p.

Sums run left to right in float64 with math.pow, as the C loops do, so the chosen scales are the
same bits, not merely close.
"""
import argparse
import math
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "quant.safetensors")
BINS = 2048
CAND = 100


def weight_scale(w, p):
    m = max(abs(float(v)) for v in w)
    if not m > 0:
        return 1.0
    best, best_s = math.inf, m / 127.0
    for i in range(CAND):
        s = m * (1.0 - 0.01 * i) / 127.0
        e = 0.0
        for v in w:
            v = float(v)
            q = min(127.0, max(-127.0, float(np.rint(v / s))))
            e += math.pow(abs(v - q * s), p)
        if e < best:
            best, best_s = e, s
    return best_s


def weight_row(w, scale32):
    s = float(scale32)
    return np.array([min(127, max(-127, int(np.rint(float(v) / s)))) for v in w], dtype=np.int32)


def histogram(x):
    x = x.astype(np.float64)
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    w = hi - lo
    b = np.floor((x - lo) / w * BINS)
    b = np.clip(b, 0, BINS - 1).astype(np.int64)
    return lo, hi, np.bincount(b, minlength=BINS).astype(np.int64)


def act_params(lo, hi, counts, p):
    w = hi - lo
    best, bs, bz = math.inf, 1.0, 0
    for i in range(CAND):
        a = 1.0 - 0.01 * i
        s = a * w / 255.0
        z = int(min(255.0, max(0.0, float(np.rint(-(a * lo) / s)))))
        e = 0.0
        for k in range(BINS):
            n = int(counts[k])
            if not n:
                continue
            c = lo + (k + 0.5) * w / BINS
            xq = (min(255.0, max(0.0, float(np.rint(c / s)) + z)) - z) * s
            e += n * math.pow(abs(c - xq), p)
        if e < best:
            best, bs, bz = e, s, z
    return bs, bz, best


def inputs():
    rng = np.random.default_rng(20261203)
    n = 75
    rows = [rng.normal(0, 0.05, n), rng.uniform(-1, 1, n), rng.normal(0, 0.02, n), np.zeros(n), rng.laplace(0, 0.1, n),
            rng.normal(0, 1e-4, n)]
    rows[2][7] = 0.9  # an outlier: the search clips it
    W = np.stack(rows).astype(np.float32)
    # activations: SiLU of a normal (a long positive tail, a small negative lobe) with a few outliers
    z = rng.normal(0.3, 1.2, 16000)
    X = (z / (1 + np.exp(-z))).astype(np.float32)
    X[:5] = [9.5, -0.27, 7.25, 12.0, -0.2]
    return W, X


def build():
    W, X = inputs()
    out = {"weights": W, "acts": X}
    lo, hi, counts = histogram(X)
    out["hist_range"] = np.array([lo, hi], dtype=np.float64)
    out["hist_counts"] = counts
    for tag, p in (("p24", 2.4), ("p2", 2.0)):
        sc = np.array([weight_scale(r, p) for r in W], dtype=np.float64)
        out["w_scale_" + tag] = sc
        out["w_q_" + tag] = np.stack([weight_row(r, np.float32(s)) for r, s in zip(W, sc)]).astype(np.int32)
        s, z, e = act_params(lo, hi, counts, p)
        out["a_scale_" + tag] = np.array([s], dtype=np.float64)
        out["a_zero_" + tag] = np.array([z], dtype=np.int32)
        out["a_err_" + tag] = np.array([e], dtype=np.float64)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(FIXTURE))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    t = build()
    if a.check:
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "quant.safetensors")
            safetensors_io.write(p, list(t.items()))
            same = open(p, "rb").read() == open(FIXTURE, "rb").read()
        print("quant.safetensors:", "identical" if same else "DIFFERS")
        sys.exit(0 if same else 1)
    os.makedirs(a.out, exist_ok=True)
    p = os.path.join(a.out, "quant.safetensors")
    safetensors_io.write(p, list(t.items()))
    print(p, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main()
