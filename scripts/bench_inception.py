#!/usr/bin/python3
"""PyTorch side of the Inception benchmark: the FID Inception-v3 forward, batch B x 3 x 299 x 299.

    /usr/bin/python3 scripts/bench_inception.py [--batch B] [--threads T] [--repeat R]

The network is tests/reference/inception.py's FIDInception: pytorch-fid's fid_inception_v3 module
structure (FIDInceptionA/C/E_1/E_2, count_include_pad=False pools, BN eps 1e-3), rebuilt from the spec
because pytorch-fid itself is not packaged in Debian; same layers, same kernels (torch.nn Conv2d,
BatchNorm2d in eval mode, ReLU), so its speed is pytorch-fid's. Random weights, torch.no_grad(), one
warm-up then R timed runs. Prints one JSON line: {"median_s", "runs", "batch", "threads", "images_per_s"}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "reference"))
from inception import FIDInception  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = FIDInception().eval()
    x = torch.rand(a.batch, 3, 299, 299) * 2 - 1
    runs = []
    with torch.no_grad():
        net(x)
        for _ in range(a.repeat):
            t = time.perf_counter()
            net(x)
            runs.append(time.perf_counter() - t)
    med = sorted(runs)[len(runs) // 2] if len(runs) % 2 else sum(sorted(runs)[len(runs) // 2 - 1:len(runs) // 2 + 1]) / 2
    print(json.dumps({"median_s": med, "runs": runs, "batch": a.batch, "threads": a.threads,
                      "images_per_s": a.batch / med, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
