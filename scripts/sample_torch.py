#!/usr/bin/python3
"""guided-diffusion's classifier_sample.py flow on the project's PyTorch reference, on the CPU, for
speed and memory comparisons with `ddpm-sample` (run both under /usr/bin/time -v).

    /usr/bin/python3 scripts/sample_torch.py --model M.pt --model-config configs/adm256.json
        [--classifier C.pt --classifier-config configs/adm256_classifier.json --scale 1.0]
        [--respacing ddim2 --ddim] [-n 1] [--class 207] [--threads 2] [--seed 0]

As classifier_sample.py does: build the model, load_state_dict(torch.load(path)) (strict), eval;
the same for the classifier; then ddim_sample_loop / p_sample_loop with cond_fn = scale * grad log
p(y|x_t), computed in float32 (CPU PyTorch has no fp16 convolutions, so use_fp16 cannot apply).
The sampler is tests/reference/diffusion.py, the networks tests/reference/adm.py. Prints one JSON
line: seconds per step (sampling time / steps, as ddpm-sample reports it), each step's seconds,
load seconds.
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import adm  # noqa: E402
import diffusion as D  # noqa: E402


def load(pt, config):
    with open(config) as f:
        cfg = json.load(f)
    model = adm.build_model(cfg)
    model.load_state_dict(torch.load(pt, map_location="cpu"), strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, adm.full_config(cfg)


class _Noise:
    def __init__(self, n, shape, stamps):
        self.n, self.shape, self.stamps = n, shape, stamps

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        self.stamps.append(time.perf_counter())  # one draw per loop step: a step clock
        return torch.randn(*self.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-config", required=True)
    ap.add_argument("--classifier")
    ap.add_argument("--classifier-config")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--respacing", default="ddim2")
    ap.add_argument("--ddim", action="store_true")
    ap.add_argument("-n", type=int, default=1)
    ap.add_argument("--class", dest="cls", type=int, default=207)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    model, mc = load(a.model, a.model_config)
    classifier = load(a.classifier, a.classifier_config)[0] if a.classifier else None
    t_load = time.perf_counter() - t0
    dif = D.create_diffusion(int(mc.get("diffusion_steps", 1000)), mc.get("noise_schedule", "linear"), a.respacing,
                             "learned_range" if adm._bool(mc["learn_sigma"]) else "fixed_large")
    C, S = int(mc["in_channels"]), int(mc["image_size"])
    y = torch.full((a.n,), a.cls, dtype=torch.int64)
    model_fn = D.plain_model_fn(model, y if adm._bool(mc["class_cond"]) else None)
    cond_fn = D.classifier_cond_fn(classifier, y, a.scale) if classifier is not None else None
    stamps = []
    x_T = torch.randn(a.n, C, S, S)
    t1 = time.perf_counter()
    with torch.no_grad():
        loop = dif.ddim_sample_loop if a.ddim else dif.p_sample_loop
        traj = loop(model_fn, x_T, _Noise(dif.num_timesteps, (a.n, C, S, S), stamps), cond_fn, clip_denoised=True)
    t_end = time.perf_counter()
    # stamps[j]: when step j starts (its noise is drawn as the loop calls the step)
    ends = stamps[1:] + [t_end]
    steps = [e - b for b, e in zip(stamps, ends)]
    img = ((traj[-1] + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    print(json.dumps({"s_per_step": (t_end - t1) / dif.num_timesteps, "step_s": steps, "sampling_s": t_end - t1,
                      "load_s": t_load, "threads": a.threads, "n": a.n,
                      "mean_pixel": float(img.float().mean()), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
