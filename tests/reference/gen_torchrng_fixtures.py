#!/usr/bin/python3
"""End-to-end fixtures for `ddpm-sample --rng torch`: a guided-diffusion run seeded with
torch.manual_seed(seed), down to the saved uint8 images.

    /usr/bin/python3 tests/reference/gen_torchrng_fixtures.py [--out DIR]   # write the fixtures
    /usr/bin/python3 tests/reference/gen_torchrng_fixtures.py --check       # regenerate, compare
    /usr/bin/python3 tests/reference/gen_torchrng_fixtures.py --run-c       # run each stored
                                   # command (needs `make`) and compare with the stored file

Writes DIR/torchrng_<case>.npz (np.savez): arr_0 uint8 [N,H,W,C] images, arr_1 int64 [N] labels
(as classifier_sample.py saves them), cmd = 0-d numpy unicode string: the C command line (run from
the repository root, plus --npz PATH) that must reproduce arr_0 / arr_1.

The random stream is guided-diffusion's (spec adm-reference.md 5.7, 6.1), on the CPU default
generator:
    torch.manual_seed(seed)                    once
    per batch of B (always full size, as classifier_sample.py; the output is trimmed to N):
        classes = torch.randint(0, K, (B,))    only when classes are random (K = num_classes)
        img = torch.randn(B, C, H, W)          p_sample_loop / ddim_sample_loop start
        per loop step k = K_steps-1 ... 0:     noise = torch.randn(B, C, H, W)  (randn_like(x) in
                                               p_sample / ddim_sample: drawn every step, also at
                                               k = 0 and for DDIM eta 0, where it is unused)
        images = ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8), NHWC
The networks and the classifier gradient draw nothing (eval mode, no dropout), so drawing each
step's noise when diffusion.py's loop asks for it (a lazy sequence, below) is the same stream.
"""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adm  # noqa: E402
import diffusion as D  # noqa: E402
import gen_traj_fixtures as G  # noqa: E402  (load_model: fixture networks into adm.build_model)

REPO = G.REPO
FIXTURES = G.FIXTURES

# cls: fixed label for every sample, or None = random (torch.randint per batch); n samples, batch b
CASES = [
    dict(name="ddpm_entropy", model="unet_a", classifier="cls_a", seed=42, sampler="ddpm", eta=0.0,
         respacing="10", guidance=["entropy"], scale=5.0, cfg_scale=1.0, cls=None, n=6, b=4),
    dict(name="ddim_cfg", model="unet_a", classifier=None, seed=7, sampler="ddim", eta=0.0,
         respacing="ddim10", guidance=["cfg"], scale=0.0, cfg_scale=2.0, cls=3, n=8, b=4),
]


def _num(v):
    return ("%g" % v)


def command(case):
    """The ddpm-sample command line (without --npz / -o) that must reproduce the fixture."""
    c = ["build/ddpm-sample", "-m", "tests/fixtures/%s.safetensors" % case["model"]]
    if case["classifier"]:
        c += ["--classifier", "tests/fixtures/%s.safetensors" % case["classifier"]]
    c += ["--guidance", ",".join(case["guidance"])]
    if "classifier" in case["guidance"] or "entropy" in case["guidance"]:
        c += ["--scale", _num(case["scale"])]
    if "cfg" in case["guidance"]:
        c += ["--cfg-scale", _num(case["cfg_scale"])]
    if case["sampler"] != "ddpm":
        c += ["--sampler", case["sampler"]]
        if case["eta"]:
            c += ["--eta", _num(case["eta"])]
    c += ["--respacing", case["respacing"]]
    if case["cls"] is not None:
        c += ["--class", str(case["cls"])]
    c += ["-n", str(case["n"]), "-b", str(case["b"]), "--seed", str(case["seed"]), "--rng", "torch",
          "-q"]
    return " ".join(c)


class _LazyNoise:
    """noise[j] = torch.randn(shape) drawn when the sampler loop first asks for step j (in order),
    i.e. guided-diffusion's per-step randn_like(x) from the global generator."""

    def __init__(self, n, shape):
        self.n, self.shape, self.drawn = n, shape, []

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        assert j == len(self.drawn), "noise must be drawn in loop order"
        self.drawn.append(torch.randn(*self.shape))
        return self.drawn[j]


def generate(case):
    """-> (images uint8 [N,H,W,C], labels int64 [N])."""
    torch.set_num_threads(1)
    model = G.load_model(case["model"])
    mcfg = model.cfg
    C, S = int(mcfg["in_channels"]), int(mcfg["image_size"])
    assert adm._bool(mcfg["class_cond"])
    K = int(mcfg["num_classes"])
    dif = D.create_diffusion(int(mcfg.get("diffusion_steps", 1000)), mcfg.get("noise_schedule", "linear"), case["respacing"],
                             "learned_range" if adm._bool(mcfg["learn_sigma"]) else "fixed_large")
    cls = G.load_model(case["classifier"]) if case["classifier"] else None
    if cls is not None:
        assert int(cls.cfg["num_classes"]) == K
    torch.manual_seed(case["seed"])
    images, labels = [], []
    done = 0
    while done < case["n"]:
        B = case["b"]  # classifier_sample.py always runs full batches and trims to num_samples
        if case["cls"] is None:
            y = torch.randint(0, K, (B,))
        else:
            y = torch.full((B,), int(case["cls"]), dtype=torch.int64)
        x_T = torch.randn(B, C, S, S)
        noise = _LazyNoise(dif.num_timesteps, (B, C, S, S))
        if "cfg" in case["guidance"]:
            assert adm._bool(mcfg["null_class"])
            model_fn = D.cfg_model_fn(model, y, K, case["cfg_scale"], C)
        else:
            model_fn = D.plain_model_fn(model, y)
        cond_fn = None
        if "classifier" in case["guidance"] or "entropy" in case["guidance"]:
            cond_fn = D.classifier_cond_fn(cls, y, case["scale"], entropy="entropy" in case["guidance"])
        if case["sampler"] == "ddpm":
            traj = dif.p_sample_loop(model_fn, x_T, noise, cond_fn, clip_denoised=True)
        else:
            traj = dif.ddim_sample_loop(model_fn, x_T, noise, cond_fn, eta=case["eta"],
                                        clip_denoised=True)
        assert len(noise.drawn) == dif.num_timesteps
        x = traj[-1]
        img = ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        images.append(img.numpy())
        labels.append(y.to(torch.int64).numpy())
        done += B
    return np.concatenate(images)[: case["n"]], np.concatenate(labels)[: case["n"]]


def path_of(out_dir, case):
    return os.path.join(out_dir, "torchrng_%s.npz" % case["name"])


def write_all(out_dir, quiet=False):
    for case in CASES:
        images, labels = generate(case)
        p = path_of(out_dir, case)
        np.savez(p, images, labels, cmd=np.array(command(case)))
        if not quiet:
            hist = np.bincount(images.ravel(), minlength=256)
            print("%s: images %s labels %s; %.0f%% of values at 0 or 255, mean %.1f\n  %s" % (
                os.path.relpath(p, REPO), images.shape, labels.tolist(),
                100.0 * (hist[0] + hist[255]) / images.size, images.mean(), command(case)))


def _load(p):
    with np.load(p) as z:
        return z["arr_0"], z["arr_1"], str(z["cmd"])


def check(out_dir):
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        write_all(tmp, quiet=True)
        for case in CASES:
            a, b = _load(path_of(tmp, case)), _load(path_of(out_dir, case))
            ok = (a[0].dtype == b[0].dtype and np.array_equal(a[0], b[0]) and
                  np.array_equal(a[1], b[1]) and a[1].dtype == b[1].dtype and a[2] == b[2])
            ok_all &= ok
            print("%-4s %s" % ("OK" if ok else "FAIL", os.path.basename(path_of(out_dir, case))))
    return ok_all


def run_c(out_dir):
    """Runs each stored command from the repository root and compares its --npz output."""
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            ref_img, ref_lab, cmd = _load(path_of(out_dir, case))
            npz, png = os.path.join(tmp, "x.npz"), os.path.join(tmp, "x.png")
            argv = shlex.split(cmd) + ["--npz", npz, "-o", png]
            r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL %s: exit %d: %s" % (case["name"], r.returncode, r.stderr.strip()))
                ok_all = False
                continue
            with np.load(npz) as z:
                img, lab = z["arr_0"], z["arr_1"]
            same_shape = img.shape == ref_img.shape and img.dtype == ref_img.dtype
            d = np.abs(img.astype(np.int16) - ref_img.astype(np.int16)) if same_shape else None
            labels_eq = lab.dtype == ref_lab.dtype and np.array_equal(lab, ref_lab)
            maxd = int(d.max()) if same_shape else -1
            ok = same_shape and labels_eq and maxd <= 1
            ok_all &= ok
            print("%-4s %s: max|diff| arr_0 = %d (%d of %d values differ), arr_1 equal: %s %s" % (
                "OK" if ok else "FAIL", case["name"], maxd,
                int((d != 0).sum()) if same_shape else -1, ref_img.size, labels_eq,
                "" if labels_eq else "(C %s vs ref %s)" % (lab.tolist(), ref_lab.tolist())))
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES, help="fixture directory (default tests/fixtures)")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare")
    ap.add_argument("--run-c", action="store_true",
                    help="run the stored C commands (build/ddpm-sample) and compare (max|diff| <= 1)")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.out) else 1)
    if a.run_c:
        sys.exit(0 if run_c(a.out) else 1)
    write_all(a.out)


if __name__ == "__main__":
    main()
