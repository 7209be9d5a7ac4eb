"""Minimal safetensors writer/reader (pure Python + numpy; torch only for optional helpers).

File layout: u64 little-endian header length L, L bytes of UTF-8 JSON (padded with spaces so that
8 + L is a multiple of 8), then the data section.  The JSON maps each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section; tensors are
stored contiguously in the order given, little-endian, row-major) plus an optional "__metadata__"
object of string -> string.

    write(path, tensors, metadata=None)
        tensors: dict (ordered) or list of (name, value).  value is a numpy array (float32, float16,
        int64, int32, uint8, float64), a torch tensor (any of those or bfloat16), or a
        (dtype_str, shape, raw_bytes) triple.
    read(path) -> (tensors, metadata)
        tensors: dict name -> Tensor(dtype, shape, raw) with .numpy() (BF16 -> float32) and
        .float32() helpers; key order = data-offset order.
"""
import json
import struct

import numpy as np

# dtype string -> (numpy dtype of the raw element, element size)
_NP = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; converted by Tensor.numpy()
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}
_FROM_NP = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def bf16_bits_to_f32(bits):
    """uint16 array of bfloat16 bit patterns -> float32 array (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> uint16 bfloat16 bits, round-to-nearest-even (matches torch .to(bfloat16))."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = 0x7FC0
    return r


class Tensor:
    __slots__ = ("dtype", "shape", "raw")

    def __init__(self, dtype, shape, raw):
        self.dtype = dtype
        self.shape = tuple(int(s) for s in shape)
        self.raw = raw

    def numpy(self):
        """Array in its own dtype, except BF16 which is widened (exactly) to float32."""
        a = np.frombuffer(self.raw, dtype=_NP[self.dtype]).reshape(self.shape)
        if self.dtype == "BF16":
            return bf16_bits_to_f32(a).reshape(self.shape)
        if self.dtype == "BOOL":
            return a.astype(bool)
        return a.copy()

    def float32(self):
        return self.numpy().astype(np.float32)

    def torch(self):
        import torch
        if self.dtype == "BF16":
            bits = np.frombuffer(self.raw, dtype=np.int16).reshape(self.shape).copy()
            return torch.from_numpy(bits).view(torch.bfloat16)
        return torch.from_numpy(self.numpy())

    def __repr__(self):
        return "Tensor(%s, %s)" % (self.dtype, list(self.shape))


def _encode(value):
    """-> (dtype_str, shape, bytes)."""
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], str):
        dt, shape, raw = value
        return dt, [int(s) for s in shape], bytes(raw)
    if isinstance(value, Tensor):
        return value.dtype, list(value.shape), bytes(value.raw)
    try:
        import torch
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                return "BF16", list(t.shape), t.view(torch.int16).numpy().astype("<i2").tobytes()
            value = t.numpy()
    except ImportError:
        pass
    a = np.ascontiguousarray(value)
    if a.dtype not in _FROM_NP:
        raise TypeError("unsupported dtype %s" % a.dtype)
    dt = _FROM_NP[a.dtype]
    return dt, list(a.shape), a.astype(_NP[dt] if dt != "BOOL" else np.uint8).tobytes()


def dumps(tensors, metadata=None):
    items = list(tensors.items()) if isinstance(tensors, dict) else list(tensors)
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("__metadata__ must map str -> str")
        header["__metadata__"] = dict(metadata)
    chunks = []
    off = 0
    for name, value in items:
        if name == "__metadata__" or name in header:
            raise ValueError("bad or duplicate tensor name %r" % name)
        dt, shape, raw = _encode(value)
        n = 1
        for s in shape:
            n *= s
        if len(raw) != n * _NP[dt].itemsize:
            raise ValueError("%s: %d bytes for shape %s %s" % (name, len(raw), shape, dt))
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-(8 + len(hj))) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(chunks)


def write(path, tensors, metadata=None):
    data = dumps(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def loads(buf):
    buf = memoryview(buf)
    if len(buf) < 8:
        raise ValueError("file shorter than 8 bytes")
    (hlen,) = struct.unpack("<Q", buf[:8])
    if hlen > len(buf) - 8:
        raise ValueError("header length %d exceeds file size" % hlen)
    header = json.loads(bytes(buf[8:8 + hlen]).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    data = buf[8 + hlen:]
    meta = header.pop("__metadata__", None) or {}
    entries = []
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _NP:
            raise ValueError("%s: unknown dtype %r" % (name, dt))
        shape = [int(s) for s in info["shape"]]
        b, e = (int(v) for v in info["data_offsets"])
        n = 1
        for s in shape:
            if s < 0:
                raise ValueError("%s: negative dimension" % name)
            n *= s
        if not (0 <= b <= e <= len(data)) or e - b != n * _NP[dt].itemsize:
            raise ValueError("%s: bad data_offsets %s" % (name, [b, e]))
        entries.append((b, e, name, dt, shape))
    entries.sort()
    pos = 0
    out = {}
    for b, e, name, dt, shape in entries:
        if b != pos:
            raise ValueError("%s: data not contiguous (gap or overlap at %d)" % (name, b))
        pos = e
        out[name] = Tensor(dt, shape, bytes(data[b:e]))
    if pos != len(data):
        raise ValueError("%d trailing bytes after the last tensor" % (len(data) - pos))
    return out, meta


def read(path):
    with open(path, "rb") as f:
        return loads(f.read())


if __name__ == "__main__":
    import sys
    for p in sys.argv[1:]:
        ts, md = read(p)
        print(p)
        for k, v in md.items():
            print("  __metadata__[%s] = %s" % (k, v if len(v) < 200 else v[:200] + "..."))
        for k, v in ts.items():
            a = v.float32() if v.dtype in ("F32", "F16", "BF16", "F64") else v.numpy()
            print("  %-50s %-4s %-18s max|.|=%g" % (k, v.dtype, list(v.shape),
                                                    float(np.abs(a).max()) if a.size else 0.0))
