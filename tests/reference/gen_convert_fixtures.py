#!/usr/bin/python3
"""Fixtures for checkpoint conversion and the upsampling cascade (tests/test_convert.c).

    /usr/bin/python3 tests/reference/gen_convert_fixtures.py [--out DIR]   # write the fixtures
    /usr/bin/python3 tests/reference/gen_convert_fixtures.py --check       # regenerate, compare

Three miniatures of released architectures (the released flags of configs/<base>, with the
widths, depth, image size and attention resolutions made small enough to commit), each made by the
PyTorch reference (adm.py) with random weights, saved as guided-diffusion's fp16 trainer saves a
checkpoint (every tensor a view into one of two flat storages, at its own offset), and converted
by scripts/convert_checkpoint.py:

    conv_unet  configs/adm64.json (cosine, new QKV order, 64-ch heads -> 16)  16x16, F16 storage
    conv_sr    configs/adm64_256_upsampler.json (num_heads 4, legacy)         16 -> 32, BF16
    conv_cls   configs/adm256_classifier.json (attention pool, 64-ch heads -> 16)  16x16, F16
(one resolution level each, width 32: 1000-class label embeddings dominate their size)
All three have 1000 classes, so the converter embeds configs/imagenet_classes.txt.

conv_<name>.io.safetensors: inputs (x, t, y, low_res) and the reference's outputs on the stored,
rounded weights (out; logits and grad = d/dx sum_n log_softmax(logits)[n, y_n]).

conv_base.npz: two 16x16 images and labels (207, 1), as guided-diffusion's samplers write them.
conv_up.npz: what super_res_sample.py's loop gives for them with conv_sr (DDPM, respacing "4", no
guidance, clip), with the noise ddpm-sample's upsampler draws: sample i has its own PyTorch
generator seeded (seed + i) ^ 0x7570736d706c, x_T first, then one randn per step; arr_0 uint8
NHWC, arr_1 labels, cmd = the ddpm-sample command (plus --npz PATH) that must reproduce arr_0.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
sys.path.insert(0, HERE)
import adm  # noqa: E402
import diffusion as D  # noqa: E402
import safetensors_io as st  # noqa: E402
from check_released import trainer_layout  # noqa: E402

CASES = [
    dict(name="conv_unet", base="adm64.json", dtype="f16", seed=11,
         set=dict(image_size=16, num_channels=32, channel_mult="1", num_res_blocks=1, attention_resolutions="16",
                  num_head_channels=16)),
    dict(name="conv_sr", base="adm64_256_upsampler.json", dtype="bf16", seed=12,
         set=dict(image_size=32, small_size=16, num_channels=32, channel_mult="1", num_res_blocks=1,
                  attention_resolutions="32")),
    dict(name="conv_cls", base="adm256_classifier.json", dtype="f16", seed=13,
         set=dict(image_size=16, classifier_width=32, classifier_channel_mult="1", classifier_depth=1,
                  classifier_attention_resolutions="16", classifier_num_head_channels=16)),
]
UPSAMPLE_STREAM = 0x7570736D706C
UP_SEED, UP_RESPACING = 5, "4"
UP_CMD = ("build/ddpm-sample -m tests/fixtures/conv_sr.safetensors --base-npz tests/fixtures/conv_base.npz "
          "--upsample-respacing %s --seed %d -q" % (UP_RESPACING, UP_SEED))


def make_case(case, out_dir, tmp):
    with open(os.path.join(REPO, "configs", case["base"])) as f:
        cfg = json.load(f)
    cfg.update(case["set"])
    torch.manual_seed(case["seed"])
    model = adm.init_random(adm.build_model(cfg)).eval()
    pt = os.path.join(tmp, case["name"] + ".pt")
    torch.save(trainer_layout(model.state_dict()), pt)
    cfg_path = os.path.join(tmp, case["name"] + ".json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    out = os.path.join(out_dir, case["name"] + ".safetensors")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_checkpoint.py"), pt, "-o", out,
                    "--config", cfg_path, "--dtype", case["dtype"], "-q"], check=True)
    tensors, meta = st.read(out)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(torch.from_numpy(tensors[k].float32()))
    N, S, C = 2, cfg["image_size"], cfg["in_channels"]
    g = torch.Generator().manual_seed(case["seed"] + 100)
    io = {"x": torch.randn(N, C, S, S, generator=g), "t": torch.tensor([999, 37], dtype=torch.int64),
          "y": torch.tensor([207, 1], dtype=torch.int64)}
    if cfg["model"] == "superres":
        s = cfg["small_size"]
        io["low_res"] = torch.rand(N, C, s, s, generator=g) * 2 - 1
    if cfg["model"] == "classifier":
        x = io["x"].clone().requires_grad_(True)
        logits = model(x, io["t"])
        sel = torch.log_softmax(logits, -1)[torch.arange(N), io["y"]]
        grad, = torch.autograd.grad(sel.sum(), x)
        io["logits"], io["grad"] = logits.detach(), grad
    else:
        with torch.no_grad():
            args = (io["low_res"],) if cfg["model"] == "superres" else ()
            io["out"] = model(io["x"], io["t"], *args, y=io["y"])
    st.write(os.path.join(out_dir, case["name"] + ".io.safetensors"), {k: v.numpy() for k, v in io.items()},
             {"case": json.dumps({k: v for k, v in case.items()})})
    return model, cfg


class _PerSampleNoise:
    """noise[j] for loop step j: one randn per sample from that sample's own generator, in order."""

    def __init__(self, gens, n, shape):
        self.gens, self.n, self.shape, self.drawn = gens, n, shape, 0

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        assert j == self.drawn, "noise must be drawn in loop order"
        self.drawn += 1
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens])


def make_cascade(sr, cfg, out_dir):
    rng = np.random.RandomState(3)
    s, C = cfg["small_size"], cfg["in_channels"]
    # smooth images (a coarse grid, bilinearly enlarged) so the conditioning is not noise
    coarse = torch.from_numpy(rng.rand(2, C, 4, 4).astype(np.float32))
    base = (torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear") * 255).to(torch.uint8)
    base = base.permute(0, 2, 3, 1).contiguous().numpy()
    labels = np.array([207, 1], dtype=np.int64)
    np.savez(os.path.join(out_dir, "conv_base.npz"), base, labels)
    low_res = torch.from_numpy(base).float().permute(0, 3, 1, 2) / 127.5 - 1.0
    y = torch.from_numpy(labels)
    dif = D.create_diffusion(cfg["diffusion_steps"], cfg["noise_schedule"], UP_RESPACING, "learned_range")
    S = cfg["image_size"]
    gens = [torch.Generator().manual_seed((UP_SEED + i) ^ UPSAMPLE_STREAM) for i in range(2)]
    x_T = torch.stack([torch.randn((C, S, S), generator=g) for g in gens])
    noise = _PerSampleNoise(gens, dif.num_timesteps, (C, S, S))
    with torch.no_grad():
        traj = dif.p_sample_loop(lambda x, t: sr(x, t, low_res, y=y), x_T, noise, None, clip_denoised=True)
    img = ((traj[-1] + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    np.savez(os.path.join(out_dir, "conv_up.npz"), img, labels, cmd=np.array(UP_CMD))


def write_all(out_dir):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        models = {c["name"]: make_case(c, out_dir, tmp) for c in CASES}
    make_cascade(*models["conv_sr"], out_dir)


def files():
    return [c["name"] + s for c in CASES for s in (".safetensors", ".io.safetensors")] + ["conv_base.npz", "conv_up.npz"]


def check(out_dir):
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        write_all(tmp)
        for f in files():
            if f.endswith(".npz"):  # zip entries carry the time they were written: compare the arrays
                with np.load(os.path.join(tmp, f)) as a, np.load(os.path.join(out_dir, f)) as b:
                    ok = sorted(a.files) == sorted(b.files) and all(
                        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a.files)
            else:
                with open(os.path.join(tmp, f), "rb") as a, open(os.path.join(out_dir, f), "rb") as b:
                    ok = a.read() == b.read()
            ok_all &= ok
            print("%-4s %s%s" % ("OK" if ok else "FAIL", f, "" if ok else " differs from a fresh conversion"))
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES)
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.out) else 1)
    write_all(a.out)
    for f in files():
        print("%s  %d bytes" % (os.path.relpath(os.path.join(a.out, f), REPO), os.path.getsize(os.path.join(a.out, f))))


if __name__ == "__main__":
    main()
