#!/usr/bin/python3
"""Converts pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth) to safetensors.

    python3 scripts/convert_inception.py pt_inception-2015-12-05-6726825d.pth [-o OUT.safetensors]

Not needed when the .pth is a zip-format torch.save (PyTorch >= 1.6): ddpm-eval --evaluator reads it
directly (src/io/pt.c). This script covers the legacy pickle format, which the native reader refuses.
The file must hold exactly the 472 tensors of pytorch-fid's fid_inception_v3() (94 BasicConv2d units x
conv.weight + bn.{weight,bias,running_mean,running_var}, fc.weight [1008,2048], fc.bias [1008]);
bn.num_batches_tracked entries are dropped. Tensors are written float32, in the file's order, with their
state-dict names; the C loader folds the BatchNorms at load (src/nn/inception.c).

Output: OUT.safetensors (default: the input name with .safetensors), written to a temporary name and
renamed. Errors: one line on stderr, exit status 2, nothing written. Needs PyTorch (python3-torch).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))


def die(msg):
    sys.stderr.write("convert_inception.py: %s\n" % msg)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pth")
    ap.add_argument("-o", "--out")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        die("needs PyTorch (Debian: apt-get install python3-torch)")
    import safetensors_io
    from inception import build_network

    out = a.out or os.path.splitext(a.pth)[0] + ".safetensors"
    try:
        sd = torch.load(a.pth, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file is one error line
        die("%s: cannot load: %s" % (a.pth, e))
    if not isinstance(sd, dict):
        die("%s: not a state dict" % a.pth)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    want = build_network().state_dict()
    want = {k: v for k, v in want.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        die("%s: not the FID Inception: %d tensors missing (e.g. %s), %d unexpected (e.g. %s)"
            % (a.pth, len(missing), missing[:1], len(extra), extra[:1]))
    for k, v in want.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            die("%s: tensor '%s' is %s, expected %s" % (a.pth, k, list(sd[k].shape), list(v.shape)))
    tensors = [(k, sd[k].detach().to(torch.float32).contiguous().numpy()) for k in sd]
    tmp = out + ".tmp%d" % os.getpid()
    try:
        safetensors_io.write(tmp, tensors, {"source": os.path.basename(a.pth), "format": "pytorch-fid FID Inception"})
        os.replace(tmp, out)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        die("%s: %s" % (out, e))
    print("%s: %d tensors -> %s" % (a.pth, len(tensors), out))


if __name__ == "__main__":
    main()
