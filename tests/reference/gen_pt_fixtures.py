#!/usr/bin/python3
"""PyTorch checkpoint fixtures for the native .pt reader (tests/test_pt.c, include/gd_pt.h).

    /usr/bin/python3 tests/reference/gen_pt_fixtures.py [--out DIR]   # write (default: tests/data)
    /usr/bin/python3 tests/reference/gen_pt_fixtures.py --check       # regenerate in a temp dir, compare

DIR/pt/<name>.pt, each with DIR/pt/<name>.expected.safetensors holding what torch.load gives
(every tensor entry, in the dict's order, contiguous, same dtype), written with Debian's torch:
    adm_f32         model.state_dict() of a tiny ADM-like module (guided-diffusion names):
                    an OrderedDict with the _metadata BUILD, one storage per tensor
    adm_fp16train   the same dict as guided-diffusion's fp16 trainer saves it
                    (master_params_to_state_dict): every tensor a view at its own offset into one
                    of two flat storages (<= 1-D and >= 2-D parameters); saved to a file object, so
                    the archive prefix is "archive"
    extras          tensors plus entries that are not tensors (int, float, str, None, bool, a
                    big int, a list, a nested dict holding a tensor): skipped
    dtypes          f16, bf16, f64, i64, i32, u8; a transposed and a channels-last view (copied),
                    a slice at an offset, a 0-d scalar, an empty tensor, an expanded (stride 0)
                    view, an nn.Parameter (_rebuild_parameter)
    proto4          pickle_protocol=4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE, BINBYTES)
    deflated        adm_f32's members re-zipped deflated (torch writes stored members only)
    zip64           adm_fp16train's members in a zip64 archive (zip64 extra fields in every
                    header, zip64 end record), data.pkl deflated, storages stored
    empty           torch.save({})
DIR/pt/<name>.pkl: the data.pkl of a few of them, seeds for the fuzzer's pickle mode.
DIR/malformed_pt/*.pt: each must be refused with one line; DIR/malformed_pt/expected.txt lists
"<file> <text the message must contain>".
"""
import argparse
import collections
import io
import os
import struct
import sys
import tempfile
import zipfile
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402


# ---- the valid fixtures ------------------------------------------------------------------------

class Res(torch.nn.Module):
    def __init__(self, c, e):
        super().__init__()
        self.in_layers = torch.nn.Sequential(torch.nn.GroupNorm(4, c), torch.nn.SiLU(), torch.nn.Conv2d(c, c, 3, padding=1))
        self.emb_layers = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Linear(e, 2 * c))
        self.out_layers = torch.nn.Sequential(torch.nn.GroupNorm(4, c), torch.nn.SiLU(), torch.nn.Dropout(0.0),
                                              torch.nn.Conv2d(c, c, 3, padding=1))


class Attn(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = torch.nn.GroupNorm(4, c)
        self.qkv = torch.nn.Conv1d(c, 3 * c, 1)
        self.proj_out = torch.nn.Conv1d(c, c, 1)


class TinyADM(torch.nn.Module):
    """Only the parameter names and shapes matter (guided-diffusion's, in registration order)."""

    def __init__(self, c=8, e=16, classes=5):
        super().__init__()
        self.time_embed = torch.nn.Sequential(torch.nn.Linear(c, e), torch.nn.SiLU(), torch.nn.Linear(e, e))
        self.label_emb = torch.nn.Embedding(classes, e)
        self.input_blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Conv2d(3, c, 3, padding=1)),
                                                 torch.nn.Sequential(Res(c, e), Attn(c))])
        self.out = torch.nn.Sequential(torch.nn.GroupNorm(4, c), torch.nn.SiLU(), torch.nn.Conv2d(c, 3, 3, padding=1))


def tiny_model(seed):
    torch.manual_seed(seed)
    m = TinyADM()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m


def fp16_trainer_layout(model):
    """guided-diffusion fp16_util: master params flattened per group (<= 1-D, >= 2-D), the saved
    state dict's entries views into them (model.state_dict() with values replaced)."""
    sd = model.state_dict()
    named = list(model.named_parameters())
    for group in ([(n, p) for n, p in named if p.ndim <= 1], [(n, p) for n, p in named if p.ndim > 1]):
        flat = torch.cat([p.detach().reshape(-1) for _, p in group])
        off = 0
        for n, p in group:
            sd[n] = flat[off:off + p.numel()].view(p.shape)
            off += p.numel()
    return sd


def extras_dict():
    torch.manual_seed(3)
    return collections.OrderedDict([
        ("step", 1200), ("a.weight", torch.randn(3, 2)), ("lr", 1e-4), ("note", "ema 0.9999"),
        ("none", None), ("flag", True), ("big", 2 ** 70), ("list", [1, "x", 2.5]),
        ("nested", {"inner": torch.randn(2), "k": 1}), ("a.bias", torch.randn(3)),
    ])


def dtypes_dict():
    torch.manual_seed(4)
    base = torch.randn(6, 4)
    conv = torch.randn(4, 3, 2, 2).to(memory_format=torch.channels_last)
    return collections.OrderedDict([
        ("h", torch.randn(5).half()), ("bf", torch.randn(2, 3).bfloat16()), ("d", torch.randn(3).double()),
        ("l", torch.arange(-3, 4, dtype=torch.int64)), ("i", torch.tensor([7, -8, 2 ** 31 - 1], dtype=torch.int32)),
        ("u8", torch.arange(250, 256, dtype=torch.uint8)), ("transposed", base.t()), ("sliced", torch.randn(6, 4)[2:]),
        ("channels_last", conv), ("scalar", torch.tensor(2.5)), ("empty", torch.zeros(0, 3)),
        ("expanded", torch.arange(3.0).expand(2, 3)), ("param", torch.nn.Parameter(torch.randn(2, 2))),
        ("half_t", torch.randn(3, 2).half().t()),
    ])


def save(obj, path=None, **kw):
    """torch.save to bytes: to the file name (prefix = its stem) or, path None, to a file object."""
    if path is None:
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        return buf.getvalue()
    torch.save(obj, path, **kw)
    with open(path, "rb") as f:
        return f.read()


def members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def zip_bytes(mem, deflate=(), zip64=False, align=64, flags=0, local_extra=None):
    """A zip of (name, bytes) members: stored (data aligned to `align` like torch's writer, with an
    'FB' padding extra field) or deflated when the name is in `deflate` (or deflate is True);
    zip64=True puts zip64 extra fields (sizes, offsets as 0xFFFFFFFF) and the zip64 end record."""
    out, cd = bytearray(), bytearray()
    for name, data in mem:
        nb = name.encode()
        crc = zlib.crc32(data)
        method = 8 if (deflate is True or name in deflate) else 0
        if method:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        else:
            comp = data
        off = len(out)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(comp)) if zip64 else b""
        if align and not method:
            pad = (-(off + 30 + len(nb) + len(extra) + 4)) % align
            extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        if local_extra is not None:
            extra = local_extra
        big = 0xFFFFFFFF
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, flags, method, 0, 0x21, crc,
                           big if zip64 else len(comp), big if zip64 else len(data), len(nb), len(extra)) + nb + extra
        out += comp
        cx = struct.pack("<HHQQQ", 1, 24, len(data), len(comp), off) if zip64 else b""
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0300 | 45, 45 if zip64 else 20, flags, method, 0, 0x21,
                          crc, big if zip64 else len(comp), big if zip64 else len(data), len(nb), len(cx), 0, 0, 0,
                          0o600 << 16, big if zip64 else off) + nb + cx
    cd_off = len(out)
    out += cd
    n = len(mem)
    if zip64:
        z_off = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x0300 | 45, 45, 0, 0, n, n, len(cd), cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, z_off, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), cd_off, 0)
    return bytes(out)


ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
            torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def expected(obj):
    """The tensor entries of a loaded dict, in order, contiguous, as (dtype, shape, bytes) (so a
    0-d tensor keeps its shape ())."""
    out = []
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            t = v.detach().contiguous()
            raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
            out.append((k, (ST_DTYPE[t.dtype], list(t.shape), raw)))
    return out


PICKLE_SEEDS = ("adm_fp16train", "extras", "dtypes", "proto4")


def write_valid(out, tmp):
    d = os.path.join(out, "pt")
    os.makedirs(d, exist_ok=True)
    model = tiny_model(1)
    files = {}
    files["adm_f32"] = save(model.state_dict(), os.path.join(tmp, "adm_f32.pt"))
    files["adm_fp16train"] = save(fp16_trainer_layout(model))
    files["extras"] = save(extras_dict(), os.path.join(tmp, "extras.pt"))
    files["dtypes"] = save(dtypes_dict(), os.path.join(tmp, "dtypes.pt"))
    files["proto4"] = save({"w": torch.randn(2, 3, generator=torch.Generator().manual_seed(5)), "blob": b"\x00\x01",
                            "h": torch.ones(3).half()}, os.path.join(tmp, "proto4.pt"), pickle_protocol=4)
    files["deflated"] = zip_bytes(members(files["adm_f32"]), deflate=True)
    fp16_members = members(files["adm_fp16train"])
    files["zip64"] = zip_bytes(fp16_members, deflate=[n for n, _ in fp16_members if n.endswith("data.pkl")], zip64=True)
    files["empty"] = save({}, os.path.join(tmp, "empty.pt"))
    names = []
    for name, data in files.items():
        path = os.path.join(d, name + ".pt")
        with open(path, "wb") as f:
            f.write(data)
        obj = torch.load(path)  # torch reads every fixture back; that is what the C reader must give
        st.write(os.path.join(d, name + ".expected.safetensors"), expected(obj))
        names += [name + ".pt", name + ".expected.safetensors"]
        if name in PICKLE_SEEDS:  # data.pkl alone: seeds for tests/fuzz_pt.c's pickle mode
            with open(os.path.join(d, name + ".pkl"), "wb") as f:
                f.write([v for k, v in members(data) if k.endswith("/data.pkl")][0])
            names.append(name + ".pkl")
    return [os.path.join("pt", n) for n in names], files


# ---- the malformed corpus ----------------------------------------------------------------------

def P_str(s):
    b = s.encode() if isinstance(s, str) else s
    return b"X" + struct.pack("<I", len(b)) + b


def P_int(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -2 ** 31 <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def P_global(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def P_tuple(items):
    return b"(" + b"".join(items) + b"t"


def P_tensor(stype="FloatStorage", key="0", numel=4, offset=0, size=(4,), stride=(1,), nargs=6):
    pid = P_tuple([P_str("storage"), P_global("torch", stype), P_str(key), P_str("cpu"), P_int(numel)])
    args = [pid + b"Q", P_int(offset), P_tuple([P_int(s) for s in size]), P_tuple([P_int(s) for s in stride]),
            b"\x89", P_global("collections", "OrderedDict") + b")R"][:nargs]
    return P_global("torch._utils", "_rebuild_tensor_v2") + P_tuple(args) + b"R"


def P_dict(entries, body=None):
    """A state-dict pickle: OrderedDict() then SETITEMS of (key, value-bytes)."""
    items = b"".join(P_str(k) + v for k, v in entries) if body is None else body
    return b"\x80\x02" + P_global("collections", "OrderedDict") + b")R(" + items + b"u."


def archive(pkl, storages=(("0", struct.pack("<4f", 1, 2, 3, 4)),), prefix="m", extra=(), **kw):
    mem = [(prefix + "/data.pkl", pkl)] + [(prefix + "/data/" + k, v) for k, v in storages] + list(extra)
    mem.append((prefix + "/version", b"3\n"))
    return zip_bytes(mem, **kw)


def patch_central(data, name, field_off, fmt, value):
    """Overwrites a field (at field_off of its central header) of member `name`."""
    b = bytearray(data)
    pos = b.find(b"PK\x01\x02")
    while pos >= 0:
        nl = struct.unpack_from("<H", b, pos + 28)[0]
        if bytes(b[pos + 46:pos + 46 + nl]) == name.encode():
            struct.pack_into(fmt, b, pos + field_off, value)
            return bytes(b)
        pos = b.find(b"PK\x01\x02", pos + 4)
    raise KeyError(name)


def malformed_cases(valid, tmp):
    torch.manual_seed(6)
    f32 = save(collections.OrderedDict([("w", torch.randn(4, 4)), ("b", torch.randn(4))]), os.path.join(tmp, "zbase.pt"))
    one = [("w", P_tensor())]
    eocd = f32.rfind(b"PK\x05\x06")
    cd_off = struct.unpack_from("<I", f32, eocd + 16)[0]
    c = {}
    # zip level (from torch's own file, and crafted)
    c["zero_bytes"] = (b"", "not a PyTorch checkpoint")
    c["random_bytes"] = (bytes(range(7, 250, 3)) * 3, "not a PyTorch checkpoint")
    c["trunc_head"] = (f32[:100], "no end of central directory")
    c["trunc_tail"] = (f32[:-9], "no end of central directory")
    c["trunc_mid"] = (f32[:len(f32) // 2] + f32[eocd:], "lies outside the file")
    n0 = len(dict(members(f32))["zbase/data/0"])
    c["lying_usize"] = (patch_central(patch_central(f32, "zbase/data/0", 20, "<I", n0 + 4), "zbase/data/0", 24,
                                      "<I", n0 + 4), "holds %d bytes but its storage needs %d" % (n0 + 4, n0))
    c["lying_lho"] = (patch_central(f32, "zbase/data/1", 42, "<I", 200), "bad local header")
    b = bytearray(f32)  # torch's writer always adds the zip64 end record: lie in both
    struct.pack_into("<I", b, eocd + 16, cd_off - 1)
    z64 = f32.rfind(b"PK\x06\x06")
    struct.pack_into("<Q", b, z64 + 48, struct.unpack_from("<Q", f32, z64 + 48)[0] - 1)
    c["lying_cd_offset"] = (bytes(b), "bad central directory entry")
    c["pkl_past_end"] = (patch_central(f32, "zbase/data.pkl", 42, "<I", cd_off - 10), "outside the archive")
    b = bytearray(f32)
    lh = f32.find(b"zbase/data/0") - 30  # its local header; flip a byte of its data
    b[lh + 30 + struct.unpack_from("<H", f32, lh + 26)[0] + struct.unpack_from("<H", f32, lh + 28)[0] + 5] ^= 0x40
    c["crc_mismatch"] = (bytes(b), "CRC-32 mismatch")
    c["encrypted"] = (archive(P_dict(one), flags=1), "encrypted")
    c["no_data_pkl"] = (zip_bytes([("m/other.pkl", P_dict(one)), ("m/data/0", b"\0" * 16)]), "without <prefix>/data.pkl")
    c["duplicate_member"] = (archive(P_dict(one), extra=[("m/data/0", b"\0" * 16)]), "duplicate member m/data/0")
    c["two_data_pkl"] = (archive(P_dict(one), extra=[("n/data.pkl", P_dict(one))]), "more than one data.pkl")
    c["missing_storage"] = (archive(P_dict([("w", P_tensor(key="7"))])), "has no member m/data/7")
    c["big_endian"] = (archive(P_dict(one), extra=[("m/byteorder", b"big")]), "byteorder is not 'little'")
    c["zip64_no_extra"] = (patch_central(archive(P_dict(one)), "m/data/0", 24, "<I", 0xFFFFFFFF),
                           "missing or short zip64 extra field")
    z = archive(P_dict(one), deflate=["m/data.pkl"])
    c["bomb_ratio"] = (patch_central(z, "m/data.pkl", 24, "<I", 0x3FFFFFFF), "is impossible for")
    c["deflate_short"] = (patch_central(z, "m/data.pkl", 24, "<I", 4000), "deflate")
    zb = bytearray(z)
    zb[z.find(b"m/data.pkl") + 10] = 0xFF  # the first deflate block: reserved type 3
    c["bad_deflate"] = (bytes(zb), "corrupt deflate data")
    # pickle level
    c["os_system"] = (archive(P_dict([("w", P_global("posix", "system") + P_tuple([P_str("echo pwned")]) + b"R")])),
                      "global 'posix.system' is not allowed")
    c["builtins_eval_stack_global"] = (archive(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93(\x8c\x011tR."),
                                       "global 'builtins.eval' is not allowed")
    c["getattr"] = (archive(P_dict([("w", P_global("builtins", "getattr") + b")R")])),
                    "global 'builtins.getattr' is not allowed")
    c["torch_load_global"] = (archive(P_dict([("w", P_global("torch", "load") + b")R")])),
                              "global 'torch.load' is not allowed")
    c["inst_opcode"] = (archive(b"\x80\x02(iposix\nsystem\n."), "opcode 0x69 (INST) is not allowed")
    c["newobj_opcode"] = (archive(b"\x80\x02" + P_global("collections", "OrderedDict") + b")\x81."),
                          "opcode 0x81 (NEWOBJ) is not allowed")
    c["unknown_opcode"] = (archive(b"\x80\x02\xff."), "opcode 0xff (unknown) is not allowed")
    c["proto_9"] = (archive(b"\x80\x09}."), "unsupported pickle protocol 9")
    c["reduce_storage"] = (archive(P_dict([("w", P_global("torch", "FloatStorage") + b")R")])), "cannot be called")
    c["reduce_non_global"] = (archive(P_dict([("w", b"K\x01)R")])), "REDUCE calls an object of type int")
    c["build_on_list"] = (archive(P_dict([("w", b"]}b")])), "BUILD on an object of type list")
    c["deep_marks"] = (archive(b"\x80\x02" + b"(" * 100000 + b".", deflate=["m/data.pkl"]), "MARKs nested deeper")
    c["deep_stack"] = (archive(b"\x80\x02" + b"N" * 300000 + b".", deflate=["m/data.pkl"]), "stack deeper than")
    c["deep_lists"] = (archive(b"\x80\x02" + b"]" * 300 + b"a" * 299 + b".", deflate=["m/data.pkl"]),
                       "not a dict of tensors")
    c["memo_unset"] = (archive(P_dict([("w", b"h\x07")])), "memo index 7 is not set")
    c["memo_huge"] = (archive(P_dict([("w", b"N" + b"r\xf0\xff\xff\xff")])), "memo index 4294967280 is out of range")
    c["memo_long_get"] = (archive(P_dict([("w", b"j\x00\x00\x00\x10")])), "memo index 268435456 is not set")
    c["huge_string"] = (archive(b"\x80\x02X\xff\xff\xff\xff."), "too long")
    c["string_past_end"] = (archive(b"\x80\x02X\x00\x01\x00\x00abc."), "truncated")
    c["negative_binstring"] = (archive(b"\x80\x02T\xff\xff\xff\xff."), "negative string length")
    c["global_unterminated"] = (archive(b"\x80\x02c" + b"a" * 400), "GLOBAL name is unterminated")
    c["no_stop"] = (archive(P_dict(one)[:-1]), "ends without STOP")
    c["stack_underflow"] = (archive(b"\x80\x02R."), "stack underflow")
    c["setitems_odd"] = (archive(P_dict([], body=P_str("w"))), "odd number of items")
    c["setitem_on_list"] = (archive(b"\x80\x02]K\x01K\x02s."), "SETITEM(S) on an object of type list")
    c["not_dict"] = (archive(b"\x80\x02]."), "not a dict of tensors")
    c["dup_key"] = (archive(P_dict([("w", P_tensor()), ("w", P_tensor())])), "duplicate key 'w'")
    c["wrapper"] = (archive(b"\x80\x02}(" + P_str("model") + b"}(" + P_str("w") + P_tensor() + b"uK\x01K\x02u."),
                    "no tensor at the top level")
    c["tensor_key_int"] = (archive(b"\x80\x02}(K\x01" + P_tensor() + b"u."), "under a key of type int")
    c["nul_in_key"] = (archive(P_dict([("w\0x", P_tensor())])), "is not valid UTF-8 text")
    c["bad_utf8_key"] = (archive(P_dict([(b"w\xff", P_tensor())])), "is not valid UTF-8 text")
    c["persid_not_tuple"] = (archive(P_dict([("w", b"K\x01Q")])), "persistent id is not a 5-tuple")
    c["persid_bad_tag"] = (archive(P_dict([("w", P_tuple([P_str("strage"), P_global("torch", "FloatStorage"),
                                                          P_str("0"), P_str("cpu"), P_int(4)]) + b"Q")])),
                           "not a 'storage' record")
    c["persid_type_not_storage"] = (archive(P_dict([("w", P_tuple([P_str("storage"), P_global("collections", "OrderedDict"),
                                                                   P_str("0"), P_str("cpu"), P_int(4)]) + b"Q")])),
                                    "not a torch storage class")
    c["rebuild_3_args"] = (archive(P_dict([("w", P_tensor(nargs=3))])), "called with 3 arguments")
    # tensor views and storages
    c["view_past_storage"] = (archive(P_dict([("w", P_tensor(offset=1))])), "runs past its storage")
    c["offset_past_storage"] = (archive(P_dict([("w", P_tensor(offset=9, size=(0,)))])), "is outside the storage")
    c["stride_overflow"] = (archive(P_dict([("w", P_tensor(size=(2, 5), stride=(2 ** 62, 1)))])), "runs past its storage")
    c["negative_size"] = (archive(P_dict([("w", P_tensor(size=(-1,)))])), "tensor size[0] is negative")
    c["negative_stride"] = (archive(P_dict([("w", P_tensor(size=(2,), stride=(-1,)))])), "tensor stride[0] is negative")
    c["negative_offset"] = (archive(P_dict([("w", P_tensor(offset=-4))])), "storage offset -4")
    c["dims_mismatch"] = (archive(P_dict([("w", P_tensor(size=(2, 2), stride=(1,)))])), "2 dimensions but stride 1")
    c["too_many_dims"] = (archive(P_dict([("w", P_tensor(size=(1,) * 9, stride=(1,) * 9))])), "9 dimensions")
    c["huge_size"] = (archive(P_dict([("w", P_tensor(numel=2 ** 40, size=(2 ** 21, 2 ** 21), stride=(2 ** 21, 1)))])),
                      "more than 2^40 elements")
    c["huge_numel"] = (archive(P_dict([("w", P_tensor(numel=2 ** 62))])), "over 2^40")
    c["storage_numel_lie"] = (archive(P_dict([("w", P_tensor(numel=100, size=(100,)))])),
                              "holds 16 bytes but its storage needs 400")
    c["storage_type_conflict"] = (archive(P_dict([("w", P_tensor()), ("v", P_tensor(stype="HalfStorage", size=(2,)))])),
                                  "declared twice")
    c["overlap"] = (archive(P_dict([("a", P_tensor(numel=6, size=(4,))), ("b", P_tensor(numel=6, offset=2, size=(4,)))]),
                            storages=[("0", b"\0" * 24)]), "tensors 'a' and 'b' overlap")
    c["overlap_contained"] = (archive(P_dict([("a", P_tensor(numel=6, size=(6,))), ("b", P_tensor(numel=6, offset=1, size=(2,)))]),
                                      storages=[("0", b"\0" * 24)]), "overlap")
    c["float_storage_odd_bytes"] = (archive(P_dict(one), storages=[("0", b"\0" * 15)]), "holds 15 bytes")
    c["copy_over_budget"] = (archive(P_dict([("w", P_tensor(numel=1, size=(2 ** 24, 2 ** 10), stride=(0, 0)))]),
                                     storages=[("0", b"\0" * 4)]), "over the reader's limit")
    # the legacy format, refused
    c["legacy"] = (save({"w": torch.ones(2)}, _use_new_zipfile_serialization=False), "legacy torch.save format")
    return c


def write_malformed(out, valid, tmp):
    d = os.path.join(out, "malformed_pt")
    os.makedirs(d, exist_ok=True)
    cases = malformed_cases(valid, tmp)
    names = []
    lines = []
    for name, (data, why) in sorted(cases.items()):
        with open(os.path.join(d, name + ".pt"), "wb") as f:
            f.write(data)
        names.append(os.path.join("malformed_pt", name + ".pt"))
        lines.append("%s.pt %s\n" % (name, why))
    with open(os.path.join(d, "expected.txt"), "w") as f:
        f.writelines(lines)
    names.append(os.path.join("malformed_pt", "expected.txt"))
    return names


def write_all(out):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        names, valid = write_valid(out, tmp)
        return names + write_malformed(out, valid, tmp)


UNSTABLE = (os.path.join("malformed_pt", "legacy.pt"),)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data"))
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary folder and compare")
    a = ap.parse_args()
    if not a.check:
        names = write_all(a.out)
        print("%d files under %s" % (len(names), os.path.relpath(a.out, REPO)))
        return
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        for n in write_all(tmp):
            with open(os.path.join(tmp, n), "rb") as x:
                fresh = x.read()
            try:
                with open(os.path.join(a.out, n), "rb") as y:
                    old = y.read()
            except OSError:
                old = None
            if n in UNSTABLE:  # the legacy format pickles id()s as storage keys: compare its magic
                ok = old is not None and old[:16] == fresh[:16]
            else:
                ok = old == fresh
            ok_all &= ok
            if not ok:
                print("FAIL %s differs from a fresh run" % n)
    print("%s  pt fixtures %s" % ("OK  " if ok_all else "FAIL", "identical" if ok_all else "differ"))
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
