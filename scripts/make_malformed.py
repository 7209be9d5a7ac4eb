#!/usr/bin/env python3
"""Writes the fixed safetensors test corpus (pure python3, no numpy).

  tests/data/valid_small.safetensors   two tensors + __metadata__, opens cleanly
  tests/data/malformed/*.safetensors   each must be rejected by gd_st_open with an error

Run from anywhere; paths are relative to the project root. Output is deterministic.
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
MAL = os.path.join(DATA, "malformed")


def pad8(header: bytes) -> bytes:
    return header + b" " * (-len(header) % 8)


def st_bytes(header, data=b"", pad=True, length=None):
    """header: dict / str / bytes. length overrides the 8-byte header length field."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    if pad:
        header = pad8(header)
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def valid_small():
    a = f32(1.0, 2.0, 3.0, 4.0, 5.0, 6.0)          # "a": F32 [2,3], 24 bytes
    b = bytes([1, 2, 3, 4, 5])                      # "b": U8 [5], 5 bytes
    hdr = {
        "__metadata__": {"format": "pt", "note": "gd test"},
        "a": t("F32", [2, 3], 0, 24),
        "b": t("U8", [5], 24, 29),
    }
    return st_bytes(hdr, a + b)


def malformed():
    ok_data = f32(1.0, 2.0, 3.0, 4.0)               # 16 bytes
    good = st_bytes({"x": t("F32", [4], 0, 16)}, ok_data)
    files = {}
    files["empty"] = b""
    files["seven_bytes"] = b"\x10\x00\x00\x00\x00\x00\x00"
    files["truncated_file"] = good[: len(good) - 5]       # data section shorter than offsets
    files["truncated_header"] = good[:8 + 10]               # header length points past EOF
    files["huge_header_len"] = st_bytes({"x": t("F32", [4], 0, 16)}, ok_data,
                                        length=0xFFFFFFFFFFFFFFFF)
    files["header_len_zero"] = st_bytes(b"", ok_data, pad=False, length=0)
    files["header_not_json"] = st_bytes(b"this is not json at all", ok_data)
    files["header_json_array"] = st_bytes(b"[1,2,3]", ok_data)
    files["header_trailing_junk"] = st_bytes(b'{"x":{"dtype":"F32","shape":[4],'
                                             b'"data_offsets":[0,16]}}xyz', ok_data)
    files["header_not_utf8"] = st_bytes(b'{"x\xff\xfe":{"dtype":"F32","shape":[4],'
                                        b'"data_offsets":[0,16]}}', ok_data)
    files["header_nan"] = st_bytes(b'{"x":{"dtype":"F32","shape":[NaN],'
                                   b'"data_offsets":[0,16]}}', ok_data)
    files["nested_junk"] = st_bytes(b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}", ok_data)
    files["unknown_dtype"] = st_bytes({"x": t("F8_E4M3", [16], 0, 16)}, ok_data)
    files["dtype_not_string"] = st_bytes({"x": t(4, [4], 0, 16)}, ok_data)
    files["negative_shape"] = st_bytes({"x": t("F32", [-4], 0, 16)}, ok_data)
    files["non_integer_shape"] = st_bytes({"x": t("F32", [2.5, 2], 0, 16)}, ok_data)
    files["shape_too_many_dims"] = st_bytes({"x": t("F32", [1] * 9 + [4], 0, 16)}, ok_data)
    files["shape_product_overflow"] = st_bytes(
        {"x": t("F32", [2 ** 32, 2 ** 32, 2 ** 32, 0], 0, 0)}, ok_data)
    files["shape_too_many_elements"] = st_bytes(
        {"x": t("U8", [2 ** 21, 2 ** 21], 0, 16)}, ok_data)
    files["shape_huge_double"] = st_bytes(
        b'{"x":{"dtype":"F32","shape":[1e300],"data_offsets":[0,16]}}', ok_data)
    files["offsets_past_end"] = st_bytes({"x": t("F32", [25], 0, 100)}, ok_data)
    files["offsets_size_mismatch"] = st_bytes({"x": t("F32", [3], 0, 16)}, ok_data)
    files["offsets_begin_after_end"] = st_bytes({"x": t("F32", [0], 16, 0)}, ok_data)
    files["offsets_three_values"] = st_bytes(
        b'{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16,32]}}', ok_data)
    files["offsets_negative"] = st_bytes({"x": t("F32", [4], -16, 0)}, ok_data)
    files["missing_shape"] = st_bytes({"x": {"dtype": "F32", "data_offsets": [0, 16]}},
                                      ok_data)
    files["entry_not_object"] = st_bytes({"x": [1, 2, 3]}, ok_data)
    files["duplicate_tensor"] = st_bytes(
        b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        b'"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', ok_data)
    files["duplicate_field"] = st_bytes(
        b'{"x":{"dtype":"F32","dtype":"U8","shape":[4],"data_offsets":[0,16]}}', ok_data)
    files["metadata_not_object"] = st_bytes(
        {"__metadata__": ["a", "b"], "x": t("F32", [4], 0, 16)}, ok_data)
    files["metadata_value_not_string"] = st_bytes(
        {"__metadata__": {"epochs": 3}, "x": t("F32", [4], 0, 16)}, ok_data)
    return files


def write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)


def main():
    os.makedirs(MAL, exist_ok=True)
    for name in os.listdir(MAL):                 # keep the corpus exactly what this script makes
        if name.endswith(".safetensors"):
            os.remove(os.path.join(MAL, name))
    files = malformed()
    for name, data in sorted(files.items()):
        write(os.path.join(MAL, name + ".safetensors"), data)
    write(os.path.join(DATA, "valid_small.safetensors"), valid_small())
    print("wrote %d malformed files to %s and %s" % (
        len(files), os.path.relpath(MAL, ROOT),
        os.path.relpath(os.path.join(DATA, "valid_small.safetensors"), ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
