#!/usr/bin/python3
"""Reference-batch .npz fixtures for the streaming reader and writer (tests/test_npz_stream.c).

    /usr/bin/python3 tests/reference/gen_npz_stream_fixtures.py [--out DIR]   # write the fixtures
    /usr/bin/python3 tests/reference/gen_npz_stream_fixtures.py --check       # regenerate, compare

Laid out as guided-diffusion's evaluator reference batches (VIRTUAL_*.npz: arr_0 uint8 NHWC, then
mu, sigma, mu_s, sigma_s), in miniature.  Every value follows a formula the C test recomputes:

npz_ref_small.npz             np.savez(path, arr_0, mu=..., sigma=..., mu_s=..., sigma_s=...): stored
                              members; numpy 1.24 writes the keyword arrays first, arr_0.npy last:
    arr_0    uint8   [5,6,7,3]  arr_0.flat[i] = (i * 7 + 3) % 251
    mu       '<f8'   [4]        mu[i] = (i - 1.5) / 3
    sigma    '<f8'   [4,4]      sigma[i,j] = 1 / (i + j + 1) - (i == j)
    mu_s     '<f4'   [3]        mu_s[i] = float32(1 / (i + 3))
    sigma_s  '<f4'   [3,3]      sigma_s[i,j] = float32((i - j) / 7)
npz_ref_small_compressed.npz  np.savez_compressed of the same (deflated members)
npz_ref_small_nhw.npz         np.savez_compressed: arr_0 uint8 [4,5,6] (NHW, one channel) with
                              arr_0.flat[i] = (i * 7 + 3) % 251; members the readers must refuse:
    fortran  '<f8'   [3,2]      np.asfortranarray(arange(6).reshape(3, 2))  (fortran_order True)
    big      '>f8'   [2]        [1, 2] big-endian
    ints     '<i8'   [2]        [1, 2]
    five     '<f8'   [1,1,1,1,2] five dimensions

The divisions are float64 (numpy), float32 values are float64 results rounded once, as C's
(float)(1.0 / (i + 3)) rounds.  All three files together are below 20 KB.

--check  regenerates in a temporary folder and compares every array (dtype, shape, Fortran flag,
         values bit for bit) and the member order with the committed files (zip entries carry the
         time they were written, so the bytes differ).
"""
import argparse
import os
import sys
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
FILES = ["npz_ref_small.npz", "npz_ref_small_compressed.npz", "npz_ref_small_nhw.npz"]
MAX_TOTAL = 20 * 1024


def images(shape):
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.int64) * 7 + 3) % 251).astype(np.uint8).reshape(shape)


def ref_arrays():
    i4 = np.arange(4, dtype=np.float64)
    i3 = np.arange(3, dtype=np.float64)
    mu = (i4 - 1.5) / 3
    sigma = 1.0 / (i4[:, None] + i4[None, :] + 1) - np.eye(4)
    mu_s = (1.0 / (i3 + 3)).astype(np.float32)
    sigma_s = ((i3[:, None] - i3[None, :]) / 7).astype(np.float32)
    return dict(arr_0=images((5, 6, 7, 3)), mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)


def nhw_arrays():
    return dict(arr_0=images((4, 5, 6)),
                fortran=np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2)),
                big=np.array([1.0, 2.0], dtype=">f8"),
                ints=np.array([1, 2], dtype="<i8"),
                five=np.array([1.0, 2.0]).reshape(1, 1, 1, 1, 2))


def write_all(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    ref = ref_arrays()
    arr0 = ref.pop("arr_0")
    np.savez(os.path.join(out_dir, FILES[0]), arr0, **ref)  # positional -> arr_0 (written after the keywords)
    np.savez_compressed(os.path.join(out_dir, FILES[1]), arr0, **ref)
    nhw = nhw_arrays()
    np.savez_compressed(os.path.join(out_dir, FILES[2]), nhw.pop("arr_0"), **nhw)


def self_check(out_dir):
    """The properties the C test relies on."""
    ok = True
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in FILES)
    if total >= MAX_TOTAL:
        print("FAIL fixtures are %d bytes (limit %d)" % (total, MAX_TOTAL))
        ok = False
    for f, method in zip(FILES, (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(os.path.join(out_dir, f)) as z:
            if any(i.compress_type != method for i in z.infolist()):
                print("FAIL %s: members are not all %s" % (f, "stored" if method == zipfile.ZIP_STORED else "deflated"))
                ok = False
    with np.load(os.path.join(out_dir, FILES[2]), allow_pickle=False) as a:
        if not (a["fortran"].flags.f_contiguous and not a["fortran"].flags.c_contiguous):
            print("FAIL 'fortran' was not saved in Fortran order")
            ok = False
    return ok


def same(a, b):
    return (a.dtype == b.dtype and a.shape == b.shape and a.flags.f_contiguous == b.flags.f_contiguous
            and a.tobytes(order="A") == b.tobytes(order="A"))


def check(out_dir):
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        write_all(tmp)
        ok_all &= self_check(tmp)
        for f in FILES:
            path_new, path_old = os.path.join(tmp, f), os.path.join(out_dir, f)
            if not os.path.exists(path_old):
                print("FAIL %s is missing" % f)
                ok_all = False
                continue
            with zipfile.ZipFile(path_new) as za, zipfile.ZipFile(path_old) as zb:
                ok = za.namelist() == zb.namelist()
            with np.load(path_new, allow_pickle=False) as a, np.load(path_old, allow_pickle=False) as b:
                ok = ok and a.files == b.files and all(same(a[k], b[k]) for k in a.files)
            ok_all &= ok
            print("%-4s %s%s" % ("OK" if ok else "FAIL", f, "" if ok else " differs from a fresh run"))
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=FIXTURES)
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.out) else 1)
    write_all(a.out)
    if not self_check(a.out):
        sys.exit(1)
    for f in FILES:
        print("%s  %d bytes" % (os.path.relpath(os.path.join(a.out, f), REPO), os.path.getsize(os.path.join(a.out, f))))


if __name__ == "__main__":
    main()
