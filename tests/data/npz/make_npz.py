#!/usr/bin/env python3
"""Generates the .npz files that tests/test_image.c reads (run: /usr/bin/python3 make_npz.py).

Valid files come from numpy itself (np.savez / np.savez_compressed, plus hand-built members with
.npy version 2.0 and 3.0 headers). bad_*.npz must all be rejected by gd_read_npz. Everything is
deterministic: the data follow a formula that the C test recomputes, and every zip entry is dated
1980-01-01 (numpy does this too), so rerunning the script reproduces the same bytes (for the same
zlib).

Data: arr_0 = ((i * 37 + 11) % 256 for flat index i) as uint8 with shape (3, 4, 5, 3);
      labels int64 [7, -2, 2**40], int32 [7, -2, 123456]; gray = same formula, shape (2, 3, 4).
"""
import io
import os
import struct
import zipfile
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATE = (1980, 1, 1, 0, 0, 0)


def pattern(shape):
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.int64) * 37 + 11) % 256).astype(np.uint8).reshape(shape)


A = pattern((3, 4, 5, 3))
GRAY = pattern((2, 3, 4))
L64 = np.array([7, -2, 2**40], dtype=np.int64)
L32 = np.array([7, -2, 123456], dtype=np.int32)


def out(name):
    return os.path.join(HERE, name)


def savez(name, *arrays, compressed=False, **kw):
    (np.savez_compressed if compressed else np.savez)(out(name), *arrays, **kw)


def npy_bytes(arr, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, arr, version=version, allow_pickle=False)
    return b.getvalue()


def npy_raw(header, payload, version=(1, 0)):
    """A .npy member with an arbitrary header string (padded like numpy) and payload."""
    h = header.encode("latin1")
    if version == (1, 0):
        pre = 10
        hl = len(h) + 1
        pad = 64 - (pre + hl) % 64
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", hl + pad) + h + b" " * pad + b"\n" + payload
    pre = 12
    hl = len(h) + 1
    pad = 64 - (pre + hl) % 64
    return bytes([0x93]) + b"NUMPY" + bytes(version) + struct.pack("<I", hl + pad) + h + b" " * pad + b"\n" + payload


def zip_members(name, members, method=zipfile.ZIP_STORED):
    """members: list of (entry name, bytes). zipfile computes correct CRCs."""
    with zipfile.ZipFile(out(name), "w", compression=method) as z:
        for ename, data in members:
            zi = zipfile.ZipInfo(ename, date_time=DATE)
            zi.compress_type = method
            zi.external_attr = 0o600 << 16
            z.writestr(zi, data)


def patch(src, dst, edits):
    """Copies file src to dst with (offset, bytes) edits; negative offsets count from the end."""
    b = bytearray(open(out(src), "rb").read())
    for off, val in edits:
        if off < 0:
            off += len(b)
        b[off:off + len(val)] = val
    open(out(dst), "wb").write(bytes(b))


def layout(name):
    """Offsets of the interesting zip fields of file `name`."""
    b = open(out(name), "rb").read()
    eocd = b.rfind(b"PK\x05\x06")
    cd_off = struct.unpack_from("<I", b, eocd + 16)[0]
    ents = {}
    p = cd_off
    while b[p:p + 4] == b"PK\x01\x02":
        nl, xl, cl = struct.unpack_from("<HHH", b, p + 28)
        ename = b[p + 46:p + 46 + nl].decode()
        lho = struct.unpack_from("<I", b, p + 42)[0]
        lnl, lxl = struct.unpack_from("<HH", b, lho + 26)
        ents[ename] = dict(cd=p, lho=lho, data=lho + 30 + lnl + lxl)
        p += 46 + nl + xl + cl
    return b, eocd, cd_off, ents


def main():
    for f in os.listdir(HERE):
        if f.endswith(".npz"):
            os.remove(out(f))

    # ---- valid files (written by numpy) ----
    savez("savez_labels.npz", A, L64)
    savez("savez_nolabels.npz", A)
    savez("savez_compressed_labels_i4.npz", A, L32, compressed=True)
    savez("savez_compressed_nolabels.npz", A, compressed=True)
    savez("gray3d.npz", GRAY)
    savez("extra_member.npz", A, L64, np.zeros(2, np.float32))  # arr_2 is ignored
    zip_members("npy_v2.npz", [("arr_0.npy", npy_bytes(A, version=(2, 0))), ("arr_1.npy", npy_bytes(L64))])
    # version 3.0 is 2.0 with a UTF-8 header (numpy writes it only for non-Latin-1 field names)
    zip_members("npy_v3.npz", [("arr_0.npy", npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 3), }",
                                                     A.tobytes(), version=(3, 0)))])

    # ---- malformed: zip structure ----
    good = "savez_labels.npz"
    b, eocd, cd_off, ents = layout(good)
    a0 = ents["arr_0.npy"]
    open(out("bad_empty.npz"), "wb").write(b"")
    open(out("bad_not_zip.npz"), "wb").write(b"this is not a zip file, just some text padding it out\n")
    open(out("bad_truncated_half.npz"), "wb").write(b[: len(b) // 2])
    open(out("bad_truncated_tail.npz"), "wb").write(b[:-1])
    # the members are cut but the directory and end record are kept: offsets point past the end
    open(out("bad_truncated_members.npz"), "wb").write(b[cd_off:])
    patch(good, "bad_size_both_plus1.npz", [(a0["cd"] + 20, struct.pack("<II", 1 + struct.unpack_from("<I", b, a0["cd"] + 20)[0],
                                                                        1 + struct.unpack_from("<I", b, a0["cd"] + 24)[0]))])
    patch(good, "bad_size_stored_mismatch.npz", [(a0["cd"] + 24, struct.pack("<I", 1 + struct.unpack_from("<I", b, a0["cd"] + 24)[0]))])
    patch(good, "bad_size_huge.npz", [(a0["cd"] + 20, struct.pack("<II", 0xFFFFFFF0, 0xFFFFFFF0))])
    patch(good, "bad_size_small.npz", [(a0["cd"] + 20, struct.pack("<II", 40, 40))])
    patch(good, "bad_zip64_no_extra.npz", [(a0["cd"] + 20, struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF))])
    patch(good, "bad_local_offset.npz", [(a0["cd"] + 42, struct.pack("<I", 0x7FFFFFF0))])
    patch(good, "bad_local_sig.npz", [(a0["lho"], b"PK\x09\x09")])
    patch(good, "bad_cd_offset.npz", [(eocd + 16, struct.pack("<I", cd_off + 7))])
    patch(good, "bad_cd_count.npz", [(eocd + 8, struct.pack("<HH", 999, 999))])
    patch(good, "bad_multidisk.npz", [(eocd + 4, struct.pack("<H", 1))])
    patch(good, "bad_encrypted.npz", [(a0["cd"] + 8, b"\x01\x00"), (a0["lho"] + 6, b"\x01\x00")])
    patch(good, "bad_crc.npz", [(a0["data"] + 128 + 5, bytes([b[a0["data"] + 128 + 5] ^ 0x55]))])
    patch(good, "bad_method.npz", [(a0["cd"] + 10, b"\x0c\x00"), (a0["lho"] + 8, b"\x0c\x00")])
    zip_members("bad_duplicate.npz", [("arr_0.npy", npy_bytes(A)), ("arr_0.npy", npy_bytes(A))])

    cb, ceocd, ccd, cents = layout("savez_compressed_nolabels.npz")
    c0 = cents["arr_0.npy"]
    csize = struct.unpack_from("<I", cb, c0["cd"] + 20)[0]
    patch("savez_compressed_nolabels.npz", "bad_deflate_corrupt.npz",
          [(c0["data"], b"\xff\xff\xff\xff\xff\xff")])
    patch("savez_compressed_nolabels.npz", "bad_deflate_short.npz",
          [(c0["cd"] + 20, struct.pack("<I", csize - 20))])
    patch("savez_compressed_nolabels.npz", "bad_deflate_bomb.npz",
          [(c0["cd"] + 24, struct.pack("<I", 0xF0000000))])
    # raw deflate data whose stream is shorter than the declared uncompressed size
    short = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = npy_bytes(A)
    comp = short.compress(payload[:-30]) + short.flush()
    zip_members("bad_deflate_tmp.npz", [("arr_0.npy", payload)], method=zipfile.ZIP_DEFLATED)
    db, deocd, dcd, dents = layout("bad_deflate_tmp.npz")
    d0 = dents["arr_0.npy"]
    old = struct.unpack_from("<I", db, d0["cd"] + 20)[0]
    nb = bytearray(db[: d0["data"]] + comp + db[d0["data"] + old:])
    shift = len(comp) - old
    struct.pack_into("<I", nb, d0["lho"] + 18, len(comp))
    cdp = d0["cd"] + shift
    struct.pack_into("<I", nb, cdp + 20, len(comp))
    struct.pack_into("<I", nb, deocd + shift + 16, dcd + shift)
    open(out("bad_deflate_stream_short.npz"), "wb").write(bytes(nb))
    os.remove(out("bad_deflate_tmp.npz"))

    # ---- malformed: .npy contents (CRCs are right, so only the parser can object) ----
    payload = A.tobytes()
    hdr = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 3), }"
    savez("bad_dtype_f4.npz", A.astype(np.float32))
    savez("bad_dtype_i1.npz", A.astype(np.int8))
    savez("bad_labels_f8.npz", A, L64.astype(np.float64))
    savez("bad_labels_length.npz", A, np.arange(4, dtype=np.int64))
    savez("bad_labels_2d.npz", A, np.arange(3, dtype=np.int64).reshape(3, 1))
    savez("bad_fortran.npz", np.asfortranarray(A))
    savez("bad_ndim2.npz", A.reshape(12, 15))
    savez("bad_ndim5.npz", A.reshape(3, 4, 5, 3, 1))
    savez("bad_no_arr0.npz", images=A)
    mk = lambda name, h, p=payload, **kw: zip_members(name, [("arr_0.npy", npy_raw(h, p, **kw))])
    mk("bad_hdr_separator.npz", "{'descr': '|u1' 'fortran_order': False, 'shape': (3, 4, 5, 3), }")
    mk("bad_hdr_unclosed.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 3), ")
    mk("bad_hdr_extra_key.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 3), 'x': 1, }")
    mk("bad_hdr_missing_shape.npz", "{'descr': '|u1', 'fortran_order': False, }")
    mk("bad_hdr_duplicate_key.npz", "{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 3), }")
    mk("bad_hdr_not_dict.npz", "['descr', '|u1']")
    mk("bad_hdr_junk_after.npz", hdr + " junk")
    mk("bad_hdr_fortran_word.npz", "{'descr': '|u1', 'fortran_order': Falsey, 'shape': (3, 4, 5, 3), }")
    mk("bad_hdr_escape.npz", "{'descr': '|u\\x31', 'fortran_order': False, 'shape': (3, 4, 5, 3), }")
    mk("bad_hdr_non_ascii.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 3), } \xe9")
    mk("bad_shape_not_tuple.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (180), }", A.reshape(-1).tobytes())
    mk("bad_shape_negative.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (-3, 4, 5, 3), }")
    mk("bad_shape_float.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (3.0, 4, 5, 3), }")
    mk("bad_shape_overflow.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296, 3), }")
    mk("bad_shape_int_overflow.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999999, 1, 1, 1), }")
    mk("bad_shape_too_big_dim.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (3000000000, 1, 1, 1), }")
    mk("bad_shape_zero.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4, 5, 3), }", b"")
    mk("bad_shape_mismatch.npz", "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 5, 4), }")
    mk("bad_data_short.npz", hdr, payload[:-1])
    mk("bad_data_long.npz", hdr, payload + b"\x00")
    mk("bad_npy_version4.npz", hdr, version=(4, 0))
    zip_members("bad_npy_magic.npz", [("arr_0.npy", b"\x93NUMPX\x01\x00" + npy_bytes(A)[8:])])
    zip_members("bad_npy_short.npz", [("arr_0.npy", b"\x93NUMPY\x01")])
    big = npy_bytes(A)
    zip_members("bad_npy_header_len.npz", [("arr_0.npy", big[:8] + struct.pack("<H", 0xFFFF) + big[10:])])

    total = sum(os.path.getsize(out(f)) for f in os.listdir(HERE) if f.endswith(".npz"))
    print("wrote %d files, %d bytes" % (len([f for f in os.listdir(HERE) if f.endswith(".npz")]), total))


if __name__ == "__main__":
    main()
