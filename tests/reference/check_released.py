#!/usr/bin/python3
"""Every released ADM architecture, end to end: a checkpoint made by the PyTorch reference (adm.py)
with the released flags and random weights, saved as guided-diffusion's fp16 trainer saves it
(every tensor a view into one of two flat storages), converted by scripts/convert_checkpoint.py,
run by build/ddpm-forward, and compared with the reference's own forward pass on the same
(stored, rounded) weights.

    /usr/bin/python3 tests/reference/check_released.py [--only NAME[,NAME]] [--full] [--dtype f32|f16|bf16]
        [--batch N] [--threads T] [--keep DIR]

By default widths are scaled down (num_channels 64, classifier_width 64; every other flag as
released, image sizes included), which keeps each architecture's levels, attention placement,
head rule, QKV order and conditioning while the whole run takes a few minutes; --full uses the
released widths (the 256/512 models then need several GB and minutes each). Prints one line per
architecture: max |C - PyTorch| / max |PyTorch| for `out` (U-Nets), `logits` and `grad`
(classifiers), and both forward times. Not part of `make test` (needs PyTorch and minutes).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import adm  # noqa: E402
import safetensors_io as st  # noqa: E402

# one checkpoint per architecture (configs/checkpoints.json maps the other names onto these)
ARCHS = ["64x64_diffusion", "128x128_diffusion", "256x256_diffusion", "256x256_diffusion_uncond",
         "512x512_diffusion", "64_256_upsampler", "128_512_upsampler", "64x64_classifier",
         "128x128_classifier", "256x256_classifier", "512x512_classifier", "256x256_classifier+0.1ECT"]


def released_config(name):
    with open(os.path.join(ROOT, "configs", "checkpoints.json")) as f:
        entry = json.load(f)[name + ".pt"]
    with open(os.path.join(ROOT, "configs", entry["config"])) as f:
        cfg = json.load(f)
    cfg.update(entry.get("set", {}))
    return cfg


def trainer_layout(sd):
    """The state dict as guided-diffusion's MixedPrecisionTrainer saves it (master_params_to_state_dict):
    parameters flattened into one tensor for <= 1-D and one for >= 2-D, entries are views into them."""
    out = {}
    for group in ([k for k, v in sd.items() if v.ndim <= 1], [k for k, v in sd.items() if v.ndim > 1]):
        flat = torch.cat([sd[k].reshape(-1) for k in group])
        off = 0
        for k in group:
            n = sd[k].numel()
            out[k] = flat[off:off + n].view(sd[k].shape)
            off += n
    return {k: out[k] for k in sd}


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def run(name, args, tmp):
    cfg = released_config(name)
    if not args.full:
        key = "classifier_width" if cfg["model"] == "classifier" else "num_channels"
        cfg[key] = 64
    torch.manual_seed(args.seed)
    model = adm.init_random(adm.build_model(cfg)).eval()
    # (--infer: not the released name, which would select the released config and widths)
    pt = os.path.join(tmp, ("w64_" if args.infer else "") + name + ".pt")
    torch.save(trainer_layout(model.state_dict()), pt)
    cfg_path = os.path.join(tmp, name + ".json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    out_st = os.path.join(tmp, name + ".safetensors")
    if args.converter == "c":
        cmd = [os.path.join(ROOT, args.build, "ddpm-convert"), pt, "-o", out_st, "--dtype", args.dtype, "-q"]
    else:
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "convert_checkpoint.py"), pt, "-o", out_st,
               "--dtype", args.dtype, "-q"]
    if not args.full:  # the released name would select the released widths
        cmd += ["--config", cfg_path]
    t0 = time.time()
    if args.converter == "none":  # ddpm-forward reads the .pt itself
        out_st, forward_cfg = pt, ([] if args.full or args.infer else ["-c", cfg_path])
    else:
        subprocess.run(cmd, check=True)
        forward_cfg = []
    t_conv = time.time() - t0
    sizes = (os.path.getsize(pt), os.path.getsize(out_st))

    # the reference runs on the weights as stored (rounded to the storage dtype)
    if args.converter != "none":
        os.unlink(pt)
        tensors, meta = st.read(out_st)
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(torch.from_numpy(tensors[k].float32()))
        del tensors
    N, S, C = args.batch, cfg["image_size"], cfg.get("in_channels", 3)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(N, C, S, S, generator=g)
    t = torch.tensor([999, 10, 500, 250][:N], dtype=torch.int64)
    inputs = {"x": x, "t": t}
    cls = cfg["model"] == "classifier"
    if cls or cfg.get("class_cond"):
        inputs["y"] = torch.tensor([207, 1, 999, 281][:N], dtype=torch.int64)
    if cfg["model"] == "superres":
        s = cfg["small_size"]
        inputs["low_res"] = torch.rand(N, C, s, s, generator=g) * 2 - 1
    in_path, out_path = os.path.join(tmp, name + ".in.safetensors"), os.path.join(tmp, name + ".out.safetensors")
    st.write(in_path, {k: v.numpy() for k, v in inputs.items()})

    t0 = time.time()
    subprocess.run([os.path.join(ROOT, args.build, "ddpm-forward"), "-m", out_st, "-i", in_path, "-o", out_path,
                    "-t", str(args.threads), "-q"] + forward_cfg, check=True)
    t_c = time.time() - t0
    got, _ = st.read(out_path)

    torch.set_num_threads(args.threads)
    t0 = time.time()
    if cls:
        xi = x.clone().requires_grad_(True)
        logits = model(xi, t)
        sel = torch.log_softmax(logits, -1)[torch.arange(N), inputs["y"]]
        grad, = torch.autograd.grad(sel.sum(), xi)
        refs = {"logits": logits.detach().numpy(), "grad": grad.numpy()}
    else:
        with torch.no_grad():
            if cfg["model"] == "superres":
                o = model(x, t, inputs["low_res"], y=inputs.get("y"))
            else:
                o = model(x, t, y=inputs.get("y"))
        refs = {"out": o.numpy()}
    t_torch = time.time() - t0
    errs = {k: rel(got[k].numpy(), v) for k, v in refs.items()}
    params = sum(p.numel() for p in model.parameters())
    for p in (in_path, out_path):
        os.unlink(p)
    if not args.keep:
        os.unlink(out_st)
    return cfg, params, errs, t_conv, t_c, t_torch, sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma list of names (default: all %d)" % len(ARCHS))
    ap.add_argument("--full", action="store_true", help="released widths (needs GBs and minutes)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--keep", help="keep the converted files in this directory")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--converter", choices=["python", "c", "none"], default="python",
                    help="scripts/convert_checkpoint.py (default), ddpm-convert, or none: ddpm-forward reads the .pt")
    ap.add_argument("--infer", action="store_true", help="with --converter none: no config, ddpm-forward infers it from the shapes")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else ARCHS
    bad = 0
    tmp_ctx = tempfile.TemporaryDirectory() if not args.keep else None
    tmp = args.keep or tmp_ctx.name
    print("%-26s %-9s %5s %12s  %-34s %8s %8s %8s %s" % ("checkpoint", "model", "size", "params", "max rel err vs PyTorch",
                                                        "convert", "C s", "torch s", ".pt -> .safetensors"))
    for name in names:
        cfg, params, errs, t_conv, t_c, t_torch, sizes = run(name, args, tmp)
        ok = all(e <= args.tol for e in errs.values())
        bad += not ok
        print("%-26s %-9s %5d %12d  %-34s %7.1fs %7.2fs %7.2fs %.0f -> %.0f MB%s" % (
            name, cfg["model"], cfg["image_size"], params,
            ", ".join("%s %.1e" % kv for kv in errs.items()), t_conv, t_c, t_torch, sizes[0] / 1e6, sizes[1] / 1e6,
            "" if ok else "  FAIL"), flush=True)
    print("%s: %d of %d architectures within %.0e (%s weights%s)" % (
        "OK" if not bad else "FAIL", len(names) - bad, len(names), args.tol, args.dtype,
        ", released widths" if args.full else ", widths 64"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
