#!/usr/bin/python3
"""Fixtures for the C port of guided-diffusion's ImageNet evaluator (TF 2015 Inception-v3, FID/sFID/IS/P-R;
spec /work/shared/spec/inception-fid.md).

    /usr/bin/python3 tests/reference/gen_inception_fixtures.py [--out DIR] [--check]

Writes DIR/inception.safetensors and DIR/inception_stats.safetensors.  Nothing big is stored: the weights,
the test images and the statistics features are all regenerated from "gdrand" (tests/reference/inception.py
docstring: fnv1a64 + splitmix64, value = float32(lo + (hi - lo) * u) in float64).

Weights (inception.WEIGHT_TABLE; 472 tensors named as pytorch-fid's released state dict, each drawn with
gdrand_uniform(<tensor name>, <PyTorch shape>, lo, hi)):
    *.conv.weight        lo = -b, hi = b, b = sqrt(6 / fan_in) (float64), fan_in = in * kh * kw
    *.bn.weight          [0.8, 1.2)       *.bn.bias          [-0.1, 0.1)
    *.bn.running_mean    [-0.1, 0.1)      *.bn.running_var   [0.5, 1.5)
    fc.weight [1008,2048] lo = -b, hi = b, b = sqrt(3 / 2048)       fc.bias [1008]  [-0.1, 0.1)
(the table of the brief, unchanged: activations stay healthy, see __metadata__["health"]).

Input cases (uint8 NHWC RGB): noise64 [2,64,64,3], checker32 [1,32,32,3], noise512 [1,512,512,3],
rect40x72 [1,40,72,3], same299 [1,299,299,3] (inception.test_images; noise = floor(gdrand_u(case, i) * 256),
checker32 pixel(y,x,c) = (((y>>2) ^ (x>>2)) & 1) ? 255 - 40c : 40c).

inception.safetensors:
    resize.<case>.sha256   U8 [32]  sha256 of the little-endian float32 bytes of tf_resize(case): NCHW
                                    [n,3,299,299], TF1 legacy ResizeBilinear then (r - 128) * 0.0078125
                                    (the bit-exactness test of the C resize), for all 5 cases
    resize.<case>.sample   F32 [m]  tf_resize(case).ravel()[::97]
    resize_pt.noise64.sample F32    pytorch_fid_resize(noise64).ravel()[::97] (x/255, F.interpolate bilinear
                                    align_corners=False, 2x - 1; PyTorch's kernel: compare with a tolerance)
    <net>.pool3    F32 [n,2048]     pool_3 (mean over Mixed_7c's 8x8)
    <net>.spatial  F32 [n,2023]     Mixed_6d.branch1x1 (after BN+ReLU) channels 0..6, NHWC order (h*17+w)*7+c
    <net>.logits   F32 [n,1008]     pool3 @ fc.weight^T (no bias)
        for <net> in noise64, checker32, noise512 (network input = tf_resize(case)) and noise64_pt (network
        input = pytorch_fid_resize(noise64))
    probe.<layer>.sample  F32 [m]   output.ravel()[::101] of <layer> for noise64 image 0 (NCHW, batch of 1)
    probe.<layer>.sum     F64 [1]   sum of that image's whole float32 output, accumulated in float64
        for <layer> in Conv2d_1a_3x3, Conv2d_2a_3x3, Conv2d_2b_3x3, maxpool1, Conv2d_3b_1x1, Conv2d_4a_3x3,
        maxpool2, Mixed_5b, Mixed_5c, Mixed_5d, Mixed_6a, Mixed_6b, Mixed_6c, Mixed_6d, Mixed_6e, Mixed_7a,
        Mixed_7b, Mixed_7c  (the layer outputs after BN+ReLU / pooling / concatenation)
    __metadata__: "gdrand" (definition, table, known values: fnv1a64("x"), gdrand_u("x", 0..3), first values
        of a few tensors and images), "weights" (JSON list [name, shape, lo, hi, sha256 of the tensor's
        float32 LE bytes] in state-dict order), "weights_sha256" (sha256 over all 472 tensors' bytes
        concatenated in that order), "f32_vs_f64" (per net and tap: max |torch float32 - torch float64| /
        max |float64|, the same weights and input run in float64), "health" (activation statistics),
        "cases", "tolerance".

inception_stats.safetensors (guided-diffusion evaluator.py statistics, tests/reference/evaluator_port.py):
  Features (float64 arithmetic as written, ONE rounding to float32; u = gdrand_u(name, i), i row-major):
    pool ref      [2200, 2048] = float32(2.0 * (u * u)),  name "stats.pool.ref"
    pool samp     [2100, 2048] = float32(2.2 * (u * u)),  name "stats.pool.samp"
    spatial ref   [2200, 2023] = float32(1.0 * (u * u)),  name "stats.spatial.ref"
    spatial samp  [2100, 2023] = float32(1.1 * (u * u)),  name "stats.spatial.samp"
    pool same     [2100, 2048] = float32(2.0 * (u * u)),  name "stats.pool.samp" (the samp u's, factor 2.0:
                                                          same distribution as ref, for a non-trivial P/R)
    logits        [6000, 1008] = float32(12.0 * u - 6.0), name "stats.logits"
  Stored (F64 [1] unless noted):
    fid            compute_statistics(samp).frechet_distance(compute_statistics(ref)) on the pool sets: mu =
                   np.mean of the float32 features (float32, rows added in order then / float32(n)), sigma =
                   np.cov(rowvar=False) (float64), scipy sqrtm route with the evaluator's retry/complex rules;
                   |dmu|^2 is numpy's float32 dot of the float32 mu difference
    sfid           the same on the spatial sets
    fid_mu64       fid with mu accumulated in float64 (so dmu and |dmu|^2 in float64)
    fid_eigh, sfid_eigh   diagnostic: trace term from the eigenvalues of s1^(1/2) s2 s1^(1/2) (float64 mu)
    is             compute_inception_score(logits, split_size=5000) in float32 numpy (splits 5000 + 1000)
    is_f64         diagnostic: the same in float64
    precision_f64, recall_f64   ManifoldEstimator k=3, float64 distances, pool ref vs pool samp
    precision_f16, recall_f16   the same with the evaluator's fp16 tile as evaluator_port defines it
    precision_same_f64, recall_same_f64, precision_same_f16, recall_same_f16   pool ref vs pool same
    dmu2_pool, tr_sigma_ref, tr_sigma_samp, tr_covmean   diagnostic parts of fid
    dmu2_spatial, tr_sigma_s_ref, tr_sigma_s_samp, tr_covmean_s   the same for sfid
    is_splits      F64 [2]  the two split scores (float32 values)
    mu.ref, mu.samp, mu_s.ref, mu_s.samp   F32 [d]  the float32 means (bit-exact target for the C mean)
    radii_f64.ref, radii_f64.samp  F64 [n]   k=3 radii, float64 variant (pool ref / pool samp)
    radii_f16.ref, radii_f16.samp  F32 [n]   the same, fp16 variant (values are fp16 numbers)
    I64 [1]: n_ref, n_samp, d_pool, d_spatial, n_logits, n_classes, split_size, k,
             count_precision_f64, count_recall_f64, count_precision_f16, count_recall_f16,
             count_precision_same_f64, count_recall_same_f64, count_precision_same_f16,
             count_recall_same_f16   (count_precision = samp rows inside some ref ball, count_recall = ref
             rows inside some samp ball; precision = count / n_samp, recall = count / n_ref)
  P/R use all rows (one 10000-row tile, as the evaluator).  __metadata__["stats"] holds the definitions, the
  fp16 diagnostics (no fallback tile; max fp16 norm; count changes when the fp16 tile's sums accumulate in
  float32 (f16_acc32), and matmul entries whose fp16 rounding depends on the float64 summation order).

--check  regenerates both files into a temp dir and compares with DIR (default tests/fixtures): prints
         "OK   <file> identical" when the bytes agree; otherwise integers/hashes/resize values must agree
         exactly and the float network outputs to TOL_NET (1e-5 relative to max |ref|, another CPU/ISA).
Single-threaded (torch and BLAS) so that the bytes are reproducible on one machine.
"""
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402
import inception as I  # noqa: E402
import evaluator_port as E  # noqa: E402

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
F_NET = "inception.safetensors"
F_STATS = "inception_stats.safetensors"
RESIZE_STRIDE = 97
PROBE_STRIDE = 101
CASES = ["noise64", "checker32", "noise512", "rect40x72", "same299"]
NET_CASES = ["noise64", "checker32", "noise512"]
TOL_NET = 1e-5          # --check across machines (torch float32 noise is ~1e-6)
TOL_C = 1e-4            # what the C side is asked to meet, relative to max |ref|

N_REF, N_SAMP, D_POOL, D_SPATIAL = 2200, 2100, 2048, 2023
N_LOGITS, N_CLASSES, SPLIT = 6000, 1008, 5000
FEATURES = {
    "pool.ref": ("stats.pool.ref", N_REF, D_POOL, 2.0),
    "pool.samp": ("stats.pool.samp", N_SAMP, D_POOL, 2.2),
    "spatial.ref": ("stats.spatial.ref", N_REF, D_SPATIAL, 1.0),
    "spatial.samp": ("stats.spatial.samp", N_SAMP, D_SPATIAL, 1.1),
    "pool.same": ("stats.pool.samp", N_SAMP, D_POOL, 2.0),
}


def _f64(x):
    return np.array([x], dtype=np.float64)


def _i64(x):
    return np.array([x], dtype=np.int64)


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).digest()


# --------------------------------------------------------------------------------------------
# inception.safetensors
# --------------------------------------------------------------------------------------------


def _run(net, x, probes=False):
    with torch.no_grad():
        return net(torch.from_numpy(x), probes=probes)


def build_net(log):
    t0 = time.time()
    sd = I.random_state_dict()
    net = I.build_network(sd)
    net64 = I.build_network(sd, torch.float64)
    imgs = I.test_images()
    tensors, f32v64, health = [], {}, {}

    inputs = {}
    for case in CASES:
        x = I.tf_resize(imgs[case])
        assert x.dtype == np.float32 and x.shape == (imgs[case].shape[0], 3, 299, 299)
        inputs[case] = x
        tensors.append(("resize.%s.sha256" % case, np.frombuffer(_sha(x), dtype=np.uint8)))
        tensors.append(("resize.%s.sample" % case, np.ascontiguousarray(x.ravel()[::RESIZE_STRIDE])))
    xpt = I.pytorch_fid_resize(imgs["noise64"])
    tensors.append(("resize_pt.noise64.sample", np.ascontiguousarray(xpt.ravel()[::RESIZE_STRIDE])))
    inputs["noise64_pt"] = xpt
    log("resize done (%.1fs)" % (time.time() - t0))

    probe_t = []
    for case in NET_CASES + ["noise64_pt"]:
        x = inputs[case]
        want_probes = case == "noise64"
        p3, sp, lg, inter = _run(net, x, probes=want_probes)
        p64, s64, l64, _ = _run(net64, x.astype(np.float64))
        outs = {"pool3": p3.numpy(), "spatial": sp.numpy(), "logits": lg.numpy()}
        refs = {"pool3": p64.numpy(), "spatial": s64.numpy(), "logits": l64.numpy()}
        f32v64[case] = {k: float(np.max(np.abs(outs[k] - refs[k])) / np.max(np.abs(refs[k]))) for k in outs}
        for k in ("pool3", "spatial", "logits"):
            tensors.append(("%s.%s" % (case, k), np.ascontiguousarray(outs[k], dtype=np.float32)))
        lg64 = outs["logits"].astype(np.float64)
        prob = np.exp(lg64 - lg64.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        p = outs["pool3"]
        health[case] = dict(pool3_min=float(p.min()), pool3_mean=float(p.mean()), pool3_max=float(p.max()),
                            pool3_frac_zero=float((p == 0).mean()),
                            spatial_mean=float(outs["spatial"].mean()), spatial_max=float(outs["spatial"].max()),
                            spatial_frac_zero=float((outs["spatial"] == 0).mean()),
                            logits_std=float(lg64.std()), softmax_max=[float(v) for v in prob.max(1)])
        if want_probes:
            layers = {}
            for name in I.PROBES:
                o = inter[name][0:1].numpy()
                probe_t.append(("probe.%s.sample" % name, np.ascontiguousarray(o.ravel()[::PROBE_STRIDE])))
                probe_t.append(("probe.%s.sum" % name, _f64(float(np.sum(o.astype(np.float64))))))
                layers[name] = dict(shape=list(o.shape[1:]), mean=float(o.mean()), max=float(o.max()),
                                    frac_zero=float((o == 0).mean()))
            health["layers_noise64_img0"] = layers
        log("network %s done (%.1fs)" % (case, time.time() - t0))
    tensors += probe_t

    names = list(sd)
    weights = []
    allh = hashlib.sha256()
    for k in names:
        v = sd[k]
        lo, hi = I.weight_range(k, v.shape)
        b = np.ascontiguousarray(v).astype("<f4").tobytes()
        allh.update(b)
        weights.append([k, list(v.shape), lo, hi, hashlib.sha256(b).hexdigest()])
    known = {
        "fnv1a64_x": "0x%016x" % I.fnv1a64(b"x"),
        "gdrand_u_x_0_3": [float(v) for v in I.gdrand_u("x", 4)],
        "gdrand_u24_x_0_3": [int(v) for v in I.gdrand_bits("x", 4)],
        "gdrand_u_empty_name_0_1": [float(v) for v in I.gdrand_u("", 2)],
    }
    for k in ("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_var", "fc.weight", "fc.bias"):
        v = sd[k].ravel()[:4]
        known[k + "[0:4]"] = [float(a) for a in v]
        known[k + "[0:4].bits"] = ["0x%08x" % int(a) for a in v.view(np.uint32)]
    known["noise64.pixels[0:8]"] = [int(a) for a in imgs["noise64"].ravel()[:8]]
    known["noise512.pixels[0:8]"] = [int(a) for a in imgs["noise512"].ravel()[:8]]
    gdrand = {
        "definition": I.__doc__.split("Random state dict")[0].strip(),
        "table": {"conv.weight": "lo=-b, hi=b, b=sqrt(6/fan_in) in float64, fan_in=in*kh*kw",
                  "bn.weight": [0.8, 1.2], "bn.bias": [-0.1, 0.1], "bn.running_mean": [-0.1, 0.1],
                  "bn.running_var": [0.5, 1.5], "fc.weight": "lo=-b, hi=b, b=sqrt(3/2048) in float64",
                  "fc.bias": [-0.1, 0.1]},
        "known": known,
    }
    cases = {
        "inputs": {c: list(imgs[c].shape) for c in CASES},
        "net_cases": {c: "tf_resize(%s)" % c for c in NET_CASES},
        "noise64_pt": "pytorch_fid_resize(noise64)",
        "resize_sample_stride": RESIZE_STRIDE, "probe_stride": PROBE_STRIDE, "probe_image": "noise64[0]",
        "spatial_layout": "Mixed_6d.branch1x1 channels 0..6, index (h*17+w)*7+c",
        "logits": "pool3 @ fc.weight^T, no bias",
        "bn_eps": I.BN_EPS,
    }
    md = {
        "generator": "tests/reference/gen_inception_fixtures.py",
        "gdrand": json.dumps(gdrand),
        "weights": json.dumps(weights),
        "weights_sha256": allh.hexdigest(),
        "cases": json.dumps(cases),
        "f32_vs_f64": json.dumps(f32v64),
        "health": json.dumps(health),
        "tolerance": "C network outputs vs these: max|c - ref| <= %g * max|ref| per tensor (torch float32 vs "
                     "float64 is in f32_vs_f64); resize.*.sha256 must match bit for bit; resize_pt.* is "
                     "PyTorch's own kernel (differs from the half-pixel formula by ~1e-5)" % TOL_C,
    }
    return tensors, md


# --------------------------------------------------------------------------------------------
# inception_stats.safetensors
# --------------------------------------------------------------------------------------------


def stats_features(key):
    name, n, d, f = FEATURES[key]
    u = I.gdrand_u(name, n * d)
    return (f * (u * u)).astype(np.float32).reshape(n, d)


def stats_logits():
    u = I.gdrand_u("stats.logits", N_LOGITS * N_CLASSES)
    return (12.0 * u - 6.0).astype(np.float32).reshape(N_LOGITS, N_CLASSES)


def _pr(variant, ref, samp):
    me = E.ManifoldEstimator(variant)
    p, r, info = me.compute_prec_recall(ref, samp, return_all=True)
    info["fallback"] = me.info.get("fallback", 0)
    return p, r, info


def _f16_order_fragility(u, v):
    """Matmul entries of the fp16 tile whose rounding to fp16 changes when the float64 sum is taken in
    another order (BLAS vs reversed k order)."""
    u16 = u.astype(np.float16).astype(np.float64)
    v16 = v.astype(np.float16).astype(np.float64)
    a = (u16 @ v16.T).astype(np.float16)
    b = (np.ascontiguousarray(u16[:, ::-1]) @ np.ascontiguousarray(v16[:, ::-1]).T).astype(np.float16)
    return int(np.sum(a != b))


def build_stats(log):
    t0 = time.time()
    f = {k: stats_features(k) for k in FEATURES}
    lg = stats_logits()
    log("stats features (%.1fs)" % (time.time() - t0))
    s_ref, s_samp = E.compute_statistics(f["pool.ref"]), E.compute_statistics(f["pool.samp"])
    ss_ref, ss_samp = E.compute_statistics(f["spatial.ref"]), E.compute_statistics(f["spatial.samp"])
    assert s_ref.mu.dtype == np.float32 and s_ref.sigma.dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a retry would be a surprise here: fail loudly
        fid, fp = s_samp.frechet_distance(s_ref, return_parts=True)
        sfid, sp = ss_samp.frechet_distance(ss_ref, return_parts=True)
    # fid_mu64: same sigmas (so the same covmean); mu from float64 means
    mu64_r = np.mean(f["pool.ref"].astype(np.float64), axis=0)
    mu64_s = np.mean(f["pool.samp"].astype(np.float64), axis=0)
    d64 = mu64_s - mu64_r
    fid_mu64 = float(d64.dot(d64) + fp["tr1"] + fp["tr2"] - 2 * fp["tr_covmean"])
    fid_eigh = E.frechet_distance_eigh(s_samp.sigma, s_ref.sigma, d64)
    ds64 = (np.mean(f["spatial.samp"].astype(np.float64), axis=0)
            - np.mean(f["spatial.ref"].astype(np.float64), axis=0))
    sfid_eigh = E.frechet_distance_eigh(ss_samp.sigma, ss_ref.sigma, ds64)
    log("fid/sfid (%.1fs)" % (time.time() - t0))

    is32 = E.inception_score(lg, SPLIT)
    is64 = E.inception_score(lg, SPLIT, dtype=np.float64)
    p32 = E.softmax32(lg)
    splits = []
    for i in range(0, N_LOGITS, SPLIT):
        part = p32[i:i + SPLIT]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        splits.append(float(np.exp(np.mean(np.sum(kl, 1)))))
    assert abs(np.float32(np.mean(np.array(splits, dtype=np.float32))) - is32) == 0

    pr = {}
    for case, samp in (("", f["pool.samp"]), ("same_", f["pool.same"])):
        for v in ("f64", "f16", "f16_acc32"):
            pr[case + v] = _pr(v, f["pool.ref"], samp)
    log("precision/recall (%.1fs)" % (time.time() - t0))
    max_norm16 = float(max(np.max(np.sum((x.astype(np.float16) * x.astype(np.float16)).astype(np.float64), 1))
                           for x in (f["pool.ref"], f["pool.samp"], f["pool.same"])))
    frag = {"ref_ref": _f16_order_fragility(f["pool.ref"], f["pool.ref"]),
            "ref_samp": _f16_order_fragility(f["pool.ref"], f["pool.samp"]),
            "ref_same": _f16_order_fragility(f["pool.ref"], f["pool.same"])}

    t = [("fid", _f64(fid)), ("sfid", _f64(sfid)), ("fid_mu64", _f64(fid_mu64)),
         ("fid_eigh", _f64(fid_eigh)), ("sfid_eigh", _f64(sfid_eigh)),
         ("is", _f64(is32)), ("is_f64", _f64(is64))]
    for case in ("", "same_"):
        for v in ("f64", "f16"):
            p, r, _ = pr[case + v]
            t += [("precision_%s%s" % (case, v), _f64(p)), ("recall_%s%s" % (case, v), _f64(r))]
    t += [("dmu2_pool", _f64(fp["dmu2"])), ("tr_sigma_ref", _f64(fp["tr2"])), ("tr_sigma_samp", _f64(fp["tr1"])),
          ("tr_covmean", _f64(fp["tr_covmean"])),
          ("dmu2_spatial", _f64(sp["dmu2"])), ("tr_sigma_s_ref", _f64(sp["tr2"])),
          ("tr_sigma_s_samp", _f64(sp["tr1"])), ("tr_covmean_s", _f64(sp["tr_covmean"])),
          ("is_splits", np.array(splits, dtype=np.float64)),
          ("mu.ref", s_ref.mu), ("mu.samp", s_samp.mu), ("mu_s.ref", ss_ref.mu), ("mu_s.samp", ss_samp.mu),
          ("radii_f64.ref", pr["f64"][2]["r_ref"][:, 0].copy()), ("radii_f64.samp", pr["f64"][2]["r_samp"][:, 0].copy()),
          ("radii_f16.ref", pr["f16"][2]["r_ref"][:, 0].copy()), ("radii_f16.samp", pr["f16"][2]["r_samp"][:, 0].copy())]
    t += [("n_ref", _i64(N_REF)), ("n_samp", _i64(N_SAMP)), ("d_pool", _i64(D_POOL)), ("d_spatial", _i64(D_SPATIAL)),
          ("n_logits", _i64(N_LOGITS)), ("n_classes", _i64(N_CLASSES)), ("split_size", _i64(SPLIT)), ("k", _i64(3))]
    for case in ("", "same_"):
        for v in ("f64", "f16"):
            info = pr[case + v][2]
            t += [("count_precision_%s%s" % (case, v), _i64(info["n_precision"])),
                  ("count_recall_%s%s" % (case, v), _i64(info["n_recall"]))]

    summary = dict(fid=float(fid), sfid=float(sfid), fid_mu64=fid_mu64, fid_eigh=fid_eigh, sfid_eigh=sfid_eigh,
                   fid_sqrtm_parts=fp, sfid_sqrtm_parts=sp, is_=is32, is_f64=is64, is_splits=splits)
    for k, (p, r, info) in pr.items():
        summary["pr_" + k] = dict(precision=p, recall=r, count_precision=info["n_precision"],
                                  count_recall=info["n_recall"], fallback_tiles=info["fallback"])
    summary["f16_max_norm"] = max_norm16
    summary["f16_matmul_entries_order_sensitive"] = frag
    md = {
        "generator": "tests/reference/gen_inception_fixtures.py",
        "features": json.dumps({k: dict(gdrand_name=v[0], n=v[1], d=v[2], factor=v[3],
                                        formula="float32(factor * (u * u)), u = gdrand_u(name, i) in float64")
                                for k, v in FEATURES.items()}),
        "logits": json.dumps(dict(gdrand_name="stats.logits", n=N_LOGITS, k=N_CLASSES,
                                  formula="float32(12.0 * u - 6.0)", split_size=SPLIT)),
        "definitions": E.__doc__,
        "stats": json.dumps(summary),
    }
    return t, md


# --------------------------------------------------------------------------------------------
# self-checks, compare, main
# --------------------------------------------------------------------------------------------


def selfcheck(log):
    ok = True

    def rep(name, good):
        nonlocal ok
        ok &= bool(good)
        log("%s %s" % ("ok  " if good else "FAIL", name))

    rep("gdrand: vectorised == scalar definition, pixels == floor(u*256)", I._selfcheck())
    net = I.FIDInception()
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    rep("state dict: 472 tensors, 23,885,392 floats, 94 BasicConv2d",
        len(sd) == 472 and sum(v.numel() for v in sd.values()) == 23885392
        and sum(k.endswith(".conv.weight") for k in sd) == 94)
    imgs = I.test_images()
    # legacy resize vs a scalar loop (independent, python floats rounded through np.float32 each op)
    img = imgs["rect40x72"][0]
    r = I.tf_resize_raw(imgs["rect40x72"])[0]
    f32 = np.float32
    good = True
    rng = np.random.default_rng(0)
    for _ in range(200):
        y, x = int(rng.integers(299)), int(rng.integers(299))
        sy, sx = f32(y) * (f32(40) / f32(299)), f32(x) * (f32(72) / f32(299))
        ly, lx = max(int(np.floor(sy)), 0), max(int(np.floor(sx)), 0)
        uy, ux = min(int(np.ceil(sy)), 39), min(int(np.ceil(sx)), 71)
        fy, fx = f32(sy - f32(np.floor(sy))), f32(sx - f32(np.floor(sx)))
        for c in range(3):
            tl, tr, bl, br = (f32(img[ly, lx, c]), f32(img[ly, ux, c]), f32(img[uy, lx, c]), f32(img[uy, ux, c]))
            top = f32(tl + f32(f32(tr - tl) * fx))
            bot = f32(bl + f32(f32(br - bl) * fx))
            good &= f32(top + f32(f32(bot - top) * fy)) == r[y, x, c]
    rep("tf_resize_raw == scalar loop on 200 random pixels of rect40x72", good)
    same = I.tf_resize(imgs["same299"])
    rep("tf_resize(same299) == (x - 128) / 128 exactly (identity resize)",
        np.array_equal(same, ((imgs["same299"].astype(np.float32) - 128) / 128).transpose(0, 3, 1, 2)))
    pt = I.pytorch_fid_resize(imgs["same299"])
    rep("pytorch_fid_resize(same299) == 2 x/255 - 1 (identity resize)",
        np.array_equal(pt, 2 * (imgs["same299"].astype(np.float32) / 255).transpose(0, 3, 1, 2) - 1))
    # avg pool excludes padding: corner of a constant map stays constant
    xx = torch.ones(1, 1, 5, 5)
    rep("avg pool count_include_pad=False keeps a constant map", torch.equal(I._avg3(xx), xx))
    # numpy mean of float32 = rows added in order in float32, / float32(n)
    a = stats_features("pool.ref")[:300, :64]
    acc = np.zeros(64, np.float32)
    for row in a:
        acc += row
    rep("np.mean(float32, axis=0) == sequential float32 row sum / float32(n)",
        np.array_equal(np.mean(a, axis=0), acc / np.float32(300)))
    # fp16 tile vs a direct per-entry evaluation of the definition
    u, v = stats_features("pool.ref")[:5, :], stats_features("pool.samp")[:4, :]
    d = E.distances_f16(u, v)
    good = True
    for i in range(5):
        for j in range(4):
            u16, v16 = u[i].astype(np.float16), v[j].astype(np.float16)
            nu = np.float16(np.sum((u16 * u16).astype(np.float64)))
            nv = np.float16(np.sum((v16 * v16).astype(np.float64)))
            m = np.float16(sum(float(p) * float(q) for p, q in zip(u16, v16)))
            t = np.float16(np.float32(2) * np.float32(m))
            e = np.float16(np.float32(np.float16(np.float32(nu) - np.float32(t))) + np.float32(nv))
            good &= np.float32(max(e, np.float16(0))) == d[i, j]
    rep("fp16 distance tile == per-entry evaluation of its definition", good)
    # P/R against itself = 1; IS of uniform logits = 1
    me = E.ManifoldEstimator("f64")
    a = stats_features("pool.ref")[:200]
    p, r = me.compute_prec_recall(a, a)
    rep("precision/recall of a set against itself == 1", p == 1 and r == 1)
    rep("IS of constant logits == 1", abs(E.inception_score(np.zeros((30, 7), np.float32), 7) - 1) < 1e-6)
    return ok


def _compare(got_path, want_path, fname):
    with open(got_path, "rb") as fh:
        got = fh.read()
    if not os.path.exists(want_path):
        return ["%s: missing in fixtures" % fname], "missing"
    with open(want_path, "rb") as fh:
        want = fh.read()
    if got == want:
        return [], "identical"
    gt, gm = st.loads(got)
    wt, wm = st.loads(want)
    errs = []
    if list(gt) != list(wt):
        return ["%s: tensor names differ" % fname], "differ"
    for k in gt:
        a, b = gt[k], wt[k]
        if a.dtype != b.dtype or a.shape != b.shape:
            errs.append("%s %s: dtype/shape differ" % (fname, k))
            continue
        if a.raw == b.raw:
            continue
        exact = a.dtype in ("U8", "I64") or k.startswith(("resize.", "gdrand")) or k.startswith("count_")
        if exact or k.startswith(("precision", "recall")):
            errs.append("%s %s: data differ" % (fname, k))
            continue
        x, y = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
        tol = TOL_NET if fname == F_NET else 1e-9
        err = float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-300))
        if err > tol:
            errs.append("%s %s: max rel diff %.3g > %g" % (fname, k, err, tol))
    for key in set(gm) | set(wm):
        if key in ("f32_vs_f64", "health", "stats"):
            continue  # measured numbers: reported, not compared
        if gm.get(key) != wm.get(key):
            errs.append("%s metadata %s differs" % (fname, key))
    return errs, "within tolerance"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    t0 = time.time()

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    ok = selfcheck(log if not args.check else (lambda m: print(m) if m.startswith("FAIL") else None))
    out = tempfile.mkdtemp(prefix="inception_fx_") if args.check else args.out
    try:
        tn, mn = build_net(log if not args.check else (lambda m: None))
        st.write(os.path.join(out, F_NET), tn, mn)
        ts, ms = build_stats(log if not args.check else (lambda m: None))
        st.write(os.path.join(out, F_STATS), ts, ms)
        if args.check:
            for fname in (F_NET, F_STATS):
                errs, how = _compare(os.path.join(out, fname), os.path.join(args.out, fname), fname)
                for e in errs:
                    print("FAIL " + e)
                if errs:
                    ok = False
                else:
                    print("OK   %s %s" % (fname, how))
        else:
            for fname in (F_NET, F_STATS):
                p = os.path.join(out, fname)
                print("wrote %s (%d bytes)" % (p, os.path.getsize(p)))
            print("f32_vs_f64:", mn["f32_vs_f64"])
            print("health:", json.dumps({k: v for k, v in json.loads(mn["health"]).items()
                                         if k != "layers_noise64_img0"}))
            print("layers:", json.dumps({k: (v["mean"], v["frac_zero"]) for k, v in
                                         json.loads(mn["health"])["layers_noise64_img0"].items()}))
            print("stats:", ms["stats"])
            print("known:", json.dumps(json.loads(mn["gdrand"])["known"]))
    finally:
        if args.check:
            shutil.rmtree(out, ignore_errors=True)
    if not args.quiet:
        print("%.1f s" % (time.time() - t0))
    if not ok:
        print("FAILED")
        sys.exit(1)


if __name__ == "__main__":
    main()
