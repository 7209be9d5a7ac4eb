#!/usr/bin/python3
"""Writes tests/fixtures/rng.safetensors: PyTorch CPU default-generator draws that src/util/rng.c must
reproduce bit for bit (tests/test_rng.c).

    /usr/bin/python3 tests/reference/gen_rng_fixtures.py [--out FILE]

Tensors:
  randn_s{S}_n{N}   F32 [N]  torch.manual_seed(S); torch.randn(N)
                             for S in SEEDS, N in SIZES (N < 16 takes torch's scalar
                             normal_distribution<double> path, N >= 16 the normal_fill path)
  seq_a, seq_b      F32 [2,3,16,16]  torch.manual_seed(7); a = randn(2,3,16,16); b = randn(2,3,16,16);
  seq_c             F32 [5]          c = randn(5)  (state carries across calls)
  seq_d             F32 [2]          d = randn(2)  (starts with the scalar path's cached second
                                     normal left by c, leaves another cached)
  seq_e             F32 [20]         e = randn(20) (normal_fill path: ignores the cache)
  seq_f             F32 [1]          f = randn(1)  (returns the value cached before e)
  randint_s3_h10    I64 [16]  torch.manual_seed(3); torch.randint(0, 10, (16,))
  randint_s3_h1000  I64 [7]   then torch.randint(0, 1000, (7,))
  randint_s3_hbig   I64 [5]   then torch.randint(0, 2**40 + 3, (5,))  (random64 path)
  u32_s5            I64 [8]   torch.manual_seed(5); torch.randint(0, 2**32 - 1, (8,))
                              (~ raw engine outputs, random() % (2^32 - 1))
__metadata__: torch version and ATen CPU capability the file was made with.

The float path for N >= 16 depends on torch's CPU kernel: with AVX2 (the normal case on x86-64)
it uses avx_mathfun.h's float log/sincos, which differ in the last bits from libm. Regenerate
with the default capability (do not set ATEN_CPU_CAPABILITY=default).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "rng.safetensors")

SEEDS = [0, 1, 42, 2**32 + 5, 123456789]
SIZES = [1, 3, 15, 16, 17, 31, 32, 100, 3 * 16 * 16, 1 * 28 * 28 * 4]


def cases():
    out = []
    for s in SEEDS:
        for n in SIZES:
            torch.manual_seed(s)
            out.append(("randn_s%d_n%d" % (s, n), torch.randn(n)))
    torch.manual_seed(7)
    out.append(("seq_a", torch.randn(2, 3, 16, 16)))
    out.append(("seq_b", torch.randn(2, 3, 16, 16)))
    out.append(("seq_c", torch.randn(5)))
    out.append(("seq_d", torch.randn(2)))
    out.append(("seq_e", torch.randn(20)))
    out.append(("seq_f", torch.randn(1)))
    torch.manual_seed(3)
    out.append(("randint_s3_h10", torch.randint(0, 10, (16,))))
    out.append(("randint_s3_h1000", torch.randint(0, 1000, (7,))))
    out.append(("randint_s3_hbig", torch.randint(0, 2**40 + 3, (5,))))
    torch.manual_seed(5)
    out.append(("u32_s5", torch.randint(0, 2**32 - 1, (8,))))
    for name, t in out:
        assert t.is_contiguous(), name
        assert t.dtype in (torch.float32, torch.int64), name
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = {"torch": torch.__version__,
            "cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "(default)")}
    try:
        meta["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        cfg = torch.__config__.show()
        for line in cfg.splitlines():
            if "CPU capability usage" in line:
                meta["cpu_capability"] = line.split(":", 1)[1].strip()
    n = st.write(args.out, cases(), meta)
    print("wrote %s (%d bytes, %d tensors, %s)" % (args.out, n, len(cases()), meta))


if __name__ == "__main__":
    main()
