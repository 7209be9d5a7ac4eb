#!/usr/bin/python3
"""Times the PyTorch reference (tests/reference/adm.py) on the CPU, for comparison with the C code.

    /usr/bin/python3 scripts/bench_torch.py --config adm64|adm64cls|small28|small28cls|FILE.json
        [--batch N] [--threads T] [--repeat R] [--mode unet|classifier|train]

FILE.json is a model config or a ddpm-train run config (configs/train_*.json: its "model" block).

unet mode:       model forward under torch.no_grad() (superres configs also get a low_res input).
train mode:      one training step: forward, a mean-square loss on the output, backward, AdamW.
classifier mode: classifier forward + d/dx sum_n log_softmax(logits)[n, y_n] (parameters do not
                 require grad, as in guided sampling only the input gradient is needed).
Random weights, model.eval(); one warm-up run, then R timed runs. Prints one JSON line:
{"median_s", "runs", "batch", "threads", "mode", "config", "params", "torch"}.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import adm  # noqa: E402

# Same content as configs/{adm64,adm64_classifier,small28,small28_classifier}.json
PRESETS = {
    "adm64": {
        "model": "unet", "image_size": 64, "in_channels": 3, "num_channels": 192,
        "num_res_blocks": 3, "channel_mult": "1,2,3,4", "attention_resolutions": "32,16,8",
        "num_heads": 4, "num_head_channels": 64, "num_heads_upsample": -1,
        "use_scale_shift_norm": True, "resblock_updown": True, "use_new_attention_order": True,
        "learn_sigma": True, "class_cond": True, "num_classes": 1000, "null_class": False,
        "dropout": 0.1, "use_fp16": True, "diffusion_steps": 1000, "noise_schedule": "cosine",
    },
    "adm64cls": {
        "model": "classifier", "image_size": 64, "in_channels": 3, "num_classes": 1000,
        "classifier_width": 128, "classifier_depth": 4, "classifier_channel_mult": "",
        "classifier_attention_resolutions": "32,16,8", "classifier_num_head_channels": 64,
        "classifier_use_scale_shift_norm": True, "classifier_resblock_updown": True,
        "classifier_pool": "attention",
    },
    "small28": {
        "model": "unet", "image_size": 28, "in_channels": 1, "num_channels": 64,
        "num_res_blocks": 2, "channel_mult": "1,2,2", "attention_resolutions": "14,7",
        "num_heads": 4, "num_head_channels": 32, "num_heads_upsample": -1,
        "use_scale_shift_norm": True, "resblock_updown": True, "use_new_attention_order": False,
        "learn_sigma": True, "class_cond": True, "num_classes": 10, "null_class": True,
        "dropout": 0.0, "use_fp16": False,
    },
    "small28cls": {
        "model": "classifier", "image_size": 28, "in_channels": 1, "num_classes": 10,
        "classifier_width": 32, "classifier_depth": 2, "classifier_channel_mult": "1,2,2",
        "classifier_attention_resolutions": "14,7", "classifier_num_head_channels": 32,
        "classifier_use_scale_shift_norm": True, "classifier_resblock_updown": True,
        "classifier_pool": "attention",
    },
}


def load_config(arg):
    if arg in PRESETS:
        return dict(PRESETS[arg])
    with open(arg) as f:
        d = json.load(f)
    # a ddpm-train run config (configs/train_*.json): its "model" block is the network
    if isinstance(d.get("model"), dict):
        d = d["model"]
    return d


def main():
    ap = argparse.ArgumentParser(description="time the PyTorch ADM reference")
    ap.add_argument("--config", required=True, help="preset (%s) or JSON file" % ", ".join(PRESETS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mode", choices=["unet", "classifier", "train"], default=None,
                    help="default: classifier for classifier configs, else unet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast(cpu, bfloat16) around the step (PyTorch's own bf16 path)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = load_config(a.config)
    full = adm.full_config(cfg)
    kind = full["model"]
    mode = a.mode or ("classifier" if kind == "classifier" else "unet")
    if mode != "train" and (mode == "classifier") != (kind == "classifier"):
        sys.exit("mode %s does not fit a %s config" % (mode, kind))

    model = adm.build_model(cfg)
    adm.init_random(model)
    if mode == "train":  # one optimisation step: forward, MSE on the output, backward, AdamW
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    else:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    nparams = sum(p.numel() for p in model.parameters())

    n, c, s = a.batch, int(full["in_channels"]), int(full["image_size"])
    x = torch.randn(n, c, s, s)
    t = torch.randint(0, 1000, (n,))
    y = None
    if kind == "classifier" or adm._bool(full.get("class_cond", False)):
        y = torch.randint(0, int(full["num_classes"]), (n,))
    low_res = torch.rand(n, c, s // 4, s // 4) * 2 - 1 if kind == "superres" else None

    def step():
        if mode == "train":
            opt.zero_grad()
            out = model(x, t) if kind == "classifier" else model(x, t, y)
            loss = (out.float() ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        if mode == "classifier":
            xi = x.clone().requires_grad_(True)
            logits = model(xi, t)
            lp = F.log_softmax(logits, dim=-1)
            (g,) = torch.autograd.grad(lp[torch.arange(n), y].sum(), xi)
            return g
        with torch.no_grad():
            if kind == "superres":
                return model(x, t, low_res, y)
            return model(x, t, y)

    if a.precision == "bf16":
        plain = step

        def step():
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                return plain()

    step()  # warm-up
    runs = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        step()
        runs.append(time.perf_counter() - t0)
    print(json.dumps({
        "median_s": statistics.median(runs), "runs": runs, "batch": a.batch,
        "threads": a.threads, "mode": mode, "config": a.config, "params": nparams, "precision": a.precision,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
