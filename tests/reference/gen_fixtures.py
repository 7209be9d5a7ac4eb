#!/usr/bin/python3
"""Generates the tiny-model fixtures the C tests compare against.

    /usr/bin/python3 tests/reference/gen_fixtures.py [--out DIR] [--check]

For every config in FIXTURES (seeded, one thread):
  DIR/<name>.safetensors      every state-dict tensor, in the fixture's storage dtype,
                              __metadata__ = {"config": json.dumps(cfg)}
  DIR/<name>.io.safetensors   inputs x (F32 [N,C,H,W]), t (I64 [N]), y (I64 [N], class-cond or
                              classifier), low_res (F32, superres); outputs computed in float32
                              with the stored (rounded) weights:
                                unet/superres: out (F32)
                                classifier:    logits (F32 [N,K]) and
                                               grad = d/dx sum_n log_softmax(logits)[n, y_n] (F32)
  DIR/manifest.json           configs, storage dtypes, parameter counts, max |output|, and the
                              relative difference between the float32 output and a float64
                              evaluation of the same weights (a floor for C tolerances).
--check regenerates into a temporary directory and compares with DIR
(max|a-b| / max|b| <= 1e-6 per tensor; integer tensors and metadata exactly).
"""
import argparse
import json
import os
import re
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adm  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures")
BATCH = 2
CHECK_TOL = 1e-6

# name, seed, storage dtype, config, extra input settings
FIXTURES = [
    dict(name="unet_a", seed=1001, storage="F16", t=[17, 503], y=[3, 10],
         cfg=dict(model="unet", image_size=16, in_channels=3, num_channels=32,
                  channel_mult="1,1", num_res_blocks=1, attention_resolutions="8",
                  num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True,
                  use_new_attention_order=True, learn_sigma=True, class_cond=True,
                  num_classes=10, null_class=True)),
    dict(name="unet_b", seed=1002, storage="BF16", t=[17, 503],
         cfg=dict(model="unet", image_size=28, in_channels=1, num_channels=32,
                  channel_mult="1,2,1", num_res_blocks=1, attention_resolutions="7,14",
                  num_heads=2, num_heads_upsample=1, num_head_channels=-1,
                  use_scale_shift_norm=False, resblock_updown=False,
                  use_new_attention_order=False, learn_sigma=False, class_cond=False)),
    dict(name="sr_a", seed=1003, storage="F16", t=[17, 503], y=[7, 2], low_res=8,
         cfg=dict(model="superres", image_size=16, in_channels=3, num_channels=32,
                  channel_mult="1,1", num_res_blocks=1, attention_resolutions="8",
                  num_heads=2, use_scale_shift_norm=True, resblock_updown=True,
                  learn_sigma=True, class_cond=True, num_classes=10, small_size=8)),
    dict(name="cls_a", seed=1004, storage="F32", t=[17, 503],
         cfg=dict(model="classifier", image_size=16, in_channels=3, num_classes=10,
                  classifier_width=32, classifier_depth=1, classifier_channel_mult="1,1",
                  classifier_attention_resolutions="16,8", classifier_num_head_channels=16,
                  classifier_use_scale_shift_norm=True, classifier_resblock_updown=True,
                  classifier_pool="attention")),
    dict(name="cls_b", seed=1005, storage="F16", t=[0, 999],
         cfg=dict(model="classifier", image_size=28, in_channels=1, num_classes=10,
                  classifier_width=32, classifier_depth=1, classifier_channel_mult="1,1,2",
                  classifier_attention_resolutions="7", classifier_num_head_channels=32,
                  classifier_use_scale_shift_norm=False, classifier_resblock_updown=False,
                  classifier_pool="adaptive")),
]

_TORCH_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def _run(model, model_kind, inputs, dtype):
    """Forward (and classifier input-gradient) in `dtype`. Returns dict of float32 numpy."""
    m = model.to(dtype)
    x = inputs["x"].to(dtype)
    t = inputs["t"]
    if model_kind == "classifier":
        x = x.clone().requires_grad_(True)
        logits = m(x, t)
        y = inputs["y"]
        lp = F.log_softmax(logits, dim=-1)
        sel = lp[torch.arange(x.shape[0]), y].sum()
        (grad,) = torch.autograd.grad(sel, x)
        return {"logits": logits.detach().float().numpy(), "grad": grad.float().numpy()}
    with torch.no_grad():
        if model_kind == "superres":
            out = m(x, t, inputs["low_res"].to(dtype), inputs.get("y"))
        else:
            out = m(x, t, inputs.get("y"))
    return {"out": out.float().numpy()}


def generate(fx):
    """-> (weights dict name->torch tensor in storage dtype, io dict, manifest entry)."""
    torch.manual_seed(fx["seed"])
    cfg = fx["cfg"]
    kind = cfg["model"]
    model = adm.build_model(cfg)
    adm.init_random(model)
    model.eval()
    sdt = _TORCH_DT[fx["storage"]]
    stored = {k: v.detach().to(sdt).contiguous() for k, v in model.state_dict().items()}
    # compute with the rounded weights
    model.load_state_dict({k: v.float() for k, v in stored.items()}, strict=True)

    full = adm.full_config(cfg)
    g = torch.Generator().manual_seed(fx["seed"] + 500000)
    n, c, s = BATCH, int(full["in_channels"]), int(full["image_size"])
    inputs = {"x": torch.randn(n, c, s, s, generator=g),
              "t": torch.tensor(fx["t"], dtype=torch.int64)}
    if kind == "superres":
        r = fx["low_res"]
        inputs["low_res"] = torch.rand(n, c, r, r, generator=g) * 2 - 1
    if kind == "classifier":
        inputs["y"] = torch.randint(0, int(full["num_classes"]), (n,), generator=g)
    elif adm._bool(full["class_cond"]):
        inputs["y"] = torch.tensor(fx["y"], dtype=torch.int64)

    out32 = _run(model, kind, inputs, torch.float32)
    out64 = _run(model, kind, inputs, torch.float64)

    io = {k: v for k, v in inputs.items()}
    io.update({k: torch.from_numpy(v) for k, v in out32.items()})

    nparams, ntensors = adm.count(model)
    entry = {
        "name": fx["name"],
        "model": kind,
        "storage_dtype": fx["storage"],
        "seed": fx["seed"],
        "config": cfg,
        "weights": fx["name"] + ".safetensors",
        "io": fx["name"] + ".io.safetensors",
        "parameters": nparams,
        "tensors": ntensors,
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "outputs": {},
    }
    for k, v in out32.items():
        ref = out64[k]
        entry["outputs"][k] = {
            "shape": list(v.shape),
            "max_abs": float(np.abs(v).max()),
            "f32_vs_f64_max_rel": float(np.abs(v - ref).max() / np.abs(ref).max()),
        }
    return stored, io, entry


def write_all(out_dir, quiet=False):
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    manifest = {"generator": "tests/reference/gen_fixtures.py", "batch": BATCH, "fixtures": []}
    for fx in FIXTURES:
        stored, io, entry = generate(fx)
        meta = {"config": json.dumps(fx["cfg"])}
        wb = st.write(os.path.join(out_dir, entry["weights"]), stored, meta)
        ib = st.write(os.path.join(out_dir, entry["io"]), io)
        entry["weights_bytes"] = wb
        entry["io_bytes"] = ib
        manifest["fixtures"].append(entry)
        if not quiet:
            print("%-7s %-10s %-4s %8d params %4d tensors  weights %7d B  io %6d B  %s" % (
                entry["name"], entry["model"], entry["storage_dtype"], entry["parameters"],
                entry["tensors"], wb, ib,
                "  ".join("%s max|.|=%.4g f64rel=%.2g" % (k, o["max_abs"], o["f32_vs_f64_max_rel"])
                          for k, o in entry["outputs"].items())))
    text = json.dumps(manifest, indent=2)
    # keep short numeric lists (shapes, timesteps) on one line
    text = re.sub(r"\[\s*(-?[0-9.e+-]+(?:,\s*-?[0-9.e+-]+)*)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        f.write(text + "\n")
    return manifest


def _compare_file(new_path, old_path):
    """-> (ok, message)."""
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
            err = np.abs(va - vb).max() / den if den > 0 else np.abs(va - vb).max() if va.size else 0.0
            worst = max(worst, err)
            if not err <= CHECK_TOL:
                return False, "%s: rel err %.3g > %g" % (k, err, CHECK_TOL)
        elif ta.raw != tb.raw:
            return False, "%s: integer values differ" % k
    return True, "%d tensors, max rel err %.3g" % (len(a), worst)


def check(out_dir):
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        new = write_all(tmp, quiet=True)
        for entry in new["fixtures"]:
            for key in ("weights", "io"):
                fn = entry[key]
                ok, msg = _compare_file(os.path.join(tmp, fn), os.path.join(out_dir, fn))
                ok_all &= ok
                print("%-4s %-26s %s" % ("OK" if ok else "FAIL", fn, msg))
        mpath = os.path.join(out_dir, "manifest.json")
        try:
            with open(mpath) as f:
                old = json.load(f)
            same = [e["config"] for e in old["fixtures"]] == [e["config"] for e in new["fixtures"]]
            msg = "configs match" if same else "configs differ"
        except (OSError, ValueError, KeyError) as e:
            same, msg = False, "unreadable: %s" % e
        ok_all &= same
        print("%-4s %-26s %s" % ("OK" if same else "FAIL", "manifest.json", msg))
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", default=DEFAULT_OUT, help="fixture directory (default tests/fixtures)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with --out")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.out) else 1)
    write_all(a.out)


if __name__ == "__main__":
    main()
