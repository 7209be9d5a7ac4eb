#!/usr/bin/python3
"""Writes tests/fixtures/optim.safetensors: a short training run through torch.optim.AdamW
(foreach=False, i.e. _single_tensor_adamw), torch.nn.utils.clip_grad_norm_ and guided-diffusion's
update_ema, which src/train/optim.c must reproduce (tests/test_optim.c).

    /usr/bin/python3 tests/reference/gen_optim_fixtures.py [--out FILE] [--check]

Setup: two parameters, "a" F32 [37] with weight decay and "b" F32 [5, 7] without (two param
groups, weight_decay 0.05 and 0).  AdamW(lr, betas=(0.9, 0.999), eps=1e-8); the learning rate of
each step is set on both groups from lr_at() below, which is the C schedule (gd_optim_lr)
written in the same double arithmetic; clip_grad_norm_(parameters, 1.0) before each step;
ema = ema * rate + (1 - rate) * param (rate 0.99) after each step, starting from the initial
weights.  STEPS random gradient sets, N(0, 0.1^2), set 2 and set 4 scaled by 10 and 30 so that
clipping triggers.

Tensors (K = 0 .. STEPS-1, P in a, b):
  w0/P           initial weights
  g{K}/P         raw gradient of step K (before clipping)
  w{K+1}/P       weights after step K
  m{K+1}/P, v{K+1}/P   exp_avg, exp_avg_sq after step K
  ema{K+1}/P     EMA after step K
  norm           F32 [STEPS]  total norm returned by clip_grad_norm_ at each step
  lr             F64 [STEPS]  learning rate used at each step
__metadata__: the config (JSON), torch version.
"""
import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "optim.safetensors")

CFG = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05, warmup_steps=2, total_steps=6,
           decay_kind=2, final_frac=0.1, clip_norm=1.0, ema_rate=0.99)
STEPS = 6
SCALE = {2: 10.0, 4: 30.0}


def lr_at(c, s):
    """Learning rate of the step with 0-based index s; identical to sched_lr() in src/train/optim.c:
    linear warm-up lr*(s+1)/warmup for s < warmup, then constant (decay_kind 0), or linear (1) /
    cosine (2) decay from lr at s = warmup to lr*final_frac at s = total_steps (held after)."""
    lr, w, tot = c["lr"], c["warmup_steps"], c["total_steps"]
    if w > 0 and s < w:
        return lr * float(s + 1) / float(w)
    w = max(w, 0)
    if c["decay_kind"] == 0 or tot <= w:
        return lr
    p = float(s - w) / float(tot - w)
    if p > 1.0:
        p = 1.0
    f = 1.0 - p if c["decay_kind"] == 1 else 0.5 * (1.0 + math.cos(math.pi * p))
    return lr * (c["final_frac"] + (1.0 - c["final_frac"]) * f)


def generate():
    torch.manual_seed(1234)
    c = CFG
    a = torch.nn.Parameter(torch.randn(37) * 0.5)
    b = torch.nn.Parameter(torch.randn(5, 7) * 0.5)
    params = [("a", a), ("b", b)]
    opt = torch.optim.AdamW([{"params": [a], "weight_decay": c["weight_decay"]},
                             {"params": [b], "weight_decay": 0.0}],
                            lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                            weight_decay=c["weight_decay"], foreach=False)
    ema = [p.detach().clone() for _, p in params]
    out = []
    for n, p in params:
        out.append(("w0/" + n, p.detach().clone()))
    norms, lrs = [], []
    for k in range(STEPS):
        grads = [torch.randn(p.shape) * 0.1 * SCALE.get(k, 1.0) for _, p in params]
        for (n, p), g in zip(params, grads):
            out.append(("g%d/%s" % (k, n), g.clone()))
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], c["clip_norm"])
        lr = lr_at(c, k)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        with torch.no_grad():
            for e, (_, p) in zip(ema, params):
                e.mul_(c["ema_rate"]).add_(p, alpha=1 - c["ema_rate"])
        norms.append(float(norm))
        lrs.append(lr)
        for (n, p), e in zip(params, ema):
            s = opt.state[p]
            out.append(("w%d/%s" % (k + 1, n), p.detach().clone()))
            out.append(("m%d/%s" % (k + 1, n), s["exp_avg"].clone()))
            out.append(("v%d/%s" % (k + 1, n), s["exp_avg_sq"].clone()))
            out.append(("ema%d/%s" % (k + 1, n), e.clone()))
        print("step %d  lr %.9g  norm %.9g%s" % (k, lr, float(norm), "  (clipped)" if norm > c["clip_norm"] else ""))
    out.append(("norm", np.array(norms, dtype=np.float32)))
    out.append(("lr", np.array(lrs, dtype=np.float64)))
    meta = {"config": json.dumps(CFG, sort_keys=True), "torch": torch.__version__}
    return out, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="regenerate into a temp file and compare")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, meta = generate()
    if args.check:
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "optim.safetensors")
            st.write(p, tensors, meta)
            same = open(p, "rb").read() == open(DEFAULT_OUT, "rb").read()
        print("%s optim.safetensors %s" % ("OK  " if same else "DIFF", "identical" if same else "differs"))
        return 0 if same else 1
    st.write(args.out, tensors, meta)
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
