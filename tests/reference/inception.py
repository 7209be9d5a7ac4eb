"""Reference for the ImageNet evaluator's network: TF 2015 Inception-v3 as pytorch-fid's FIDInception
(spec /work/shared/spec/inception-fid.md §2-§5), its TF1 legacy input resize, pytorch-fid's resize,
and the deterministic "gdrand" weights/inputs that the C tests regenerate bit-exactly.

gdrand (all arithmetic mod 2^64 on unsigned 64-bit integers):
    fnv1a64(bytes):  h = 0xcbf29ce484222325; for each byte b: h ^= b; h = h * 0x100000001b3
    splitmix64(z):   z = z + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
                     z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)
    gdrand_u(name, i) = (splitmix64(fnv1a64(utf8(name)) + i * 0x9E3779B97F4A7C15) >> 40) * 2^-24
                        (a multiple of 2^-24 in [0, 1), exact in float32 and float64)
    uniform [lo, hi): value[i] = float32(lo + (hi - lo) * gdrand_u(name, i)), evaluated in float64 as
                        written ((hi - lo) first, then the multiply, then the add; no FMA), one rounding
                        to float32 at the end.  i = flat row-major index in the PyTorch layout.

Random state dict (WEIGHT_TABLE; 472 tensors, pytorch-fid's released names), each tensor T drawn with
gdrand_uniform(T's name, T's shape, lo, hi):
    P.conv.weight [out,in,kh,kw]   lo = -b, hi = b, b = sqrt(6 / (in*kh*kw)) in float64
    P.bn.weight                    [0.8, 1.2)
    P.bn.bias                      [-0.1, 0.1)
    P.bn.running_mean              [-0.1, 0.1)
    P.bn.running_var               [0.5, 1.5)
    fc.weight [1008,2048]          lo = -b, hi = b, b = sqrt(3 / 2048) in float64
    fc.bias [1008]                 [-0.1, 0.1)

Test images (uint8 NHWC RGB), see test_images():
    noise64   [2,64,64,3]    floor(gdrand_u("noise64", i) * 256)
    checker32 [1,32,32,3]    (((y>>2) ^ (x>>2)) & 1) ? 255 - 40c : 40c
    noise512  [1,512,512,3]  floor(gdrand_u("noise512", i) * 256)
    rect40x72 [1,40,72,3]    floor(gdrand_u("rect40x72", i) * 256)   (H = 40, W = 72)
    same299   [1,299,299,3]  floor(gdrand_u("same299", i) * 256)
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

M64 = (1 << 64) - 1
FNV_OFFSET = 0xcbf29ce484222325
FNV_PRIME = 0x100000001b3
GOLDEN = 0x9E3779B97F4A7C15
SM_M1 = 0xBF58476D1CE4E5B9
SM_M2 = 0x94D049BB133111EB
BN_EPS = 0.001
SIZE = 299

# (suffix, lo, hi); None = symmetric +-sqrt(gain / fan_in) with the gain given
WEIGHT_TABLE = {
    "conv.weight": ("he", 6.0),
    "bn.weight": (0.8, 1.2),
    "bn.bias": (-0.1, 0.1),
    "bn.running_mean": (-0.1, 0.1),
    "bn.running_var": (0.5, 1.5),
    "fc.weight": ("he", 3.0),
    "fc.bias": (-0.1, 0.1),
}


# --------------------------------------------------------------------------------------------
# gdrand
# --------------------------------------------------------------------------------------------


def fnv1a64(data):
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & M64
    return h


def splitmix64_int(z):
    """Scalar Python-int version (for documentation/self-check)."""
    z = (z + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * SM_M1) & M64
    z = ((z ^ (z >> 27)) * SM_M2) & M64
    return z ^ (z >> 31)


def gdrand_u_int(name, i):
    """Scalar reference: the 24-bit integer k with gdrand_u = k * 2^-24."""
    return splitmix64_int((fnv1a64(name.encode("utf-8")) + i * GOLDEN) & M64) >> 40


def gdrand_bits(name, n, start=0):
    """uint64 array of the 24-bit integers for indices start .. start+n-1."""
    h = np.uint64(fnv1a64(name.encode("utf-8")))
    with np.errstate(over="ignore"):
        z = np.arange(start, start + n, dtype=np.uint64)
        z *= np.uint64(GOLDEN)
        z += h
        z += np.uint64(GOLDEN)
        z ^= z >> np.uint64(30)
        z *= np.uint64(SM_M1)
        z ^= z >> np.uint64(27)
        z *= np.uint64(SM_M2)
        z ^= z >> np.uint64(31)
    return z >> np.uint64(40)


def gdrand_u(name, n):
    """float64 array gdrand_u(name, 0..n-1) (exact multiples of 2^-24)."""
    return gdrand_bits(name, n).astype(np.float64) * (2.0 ** -24)


def gdrand_uniform(name, shape, lo, hi):
    """float32 array of `shape`: float32(lo + (hi - lo) * u) computed in float64."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = gdrand_u(name, n)
    lo = float(lo)
    span = float(hi) - lo
    return (lo + span * u).astype(np.float32).reshape(shape)


def gdrand_pixels(name, shape):
    """uint8 array floor(gdrand_u * 256) = the top 8 of the 24 bits."""
    n = int(np.prod(shape))
    return (gdrand_bits(name, n) >> np.uint64(16)).astype(np.uint8).reshape(shape)


def weight_range(name, shape):
    """(lo, hi) of WEIGHT_TABLE for a state-dict entry."""
    if name == "fc.weight" or name == "fc.bias":
        rule = WEIGHT_TABLE[name]
    else:
        rule = WEIGHT_TABLE[".".join(name.split(".")[-2:])]
    if rule[0] == "he":
        fan_in = int(np.prod(shape[1:]))
        b = math.sqrt(rule[1] / fan_in)
        return -b, b
    return rule


# --------------------------------------------------------------------------------------------
# network (pytorch-fid's fid_inception_v3 names and structure)
# --------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)
        self.last_branch1x1 = None

    def forward(self, x):
        b1 = self.branch1x1(x)
        self.last_branch1x1 = b1
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(_avg3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class FIDInceptionE(nn.Module):
    """pool='avg' = FIDInceptionE_1 (Mixed_7b), pool='max' = FIDInceptionE_2 (Mixed_7c)."""

    def __init__(self, cin, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            bp = _avg3(x)
        else:
            bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        bp = self.branch_pool(bp)
        return torch.cat([b1, b3, bd, bp], 1)


PROBES = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]


class FIDInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = FIDInceptionA(192, 32)
        self.Mixed_5c = FIDInceptionA(256, 64)
        self.Mixed_5d = FIDInceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, 128)
        self.Mixed_6c = FIDInceptionC(768, 160)
        self.Mixed_6d = FIDInceptionC(768, 160)
        self.Mixed_6e = FIDInceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, "avg")
        self.Mixed_7c = FIDInceptionE(2048, "max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x, probes=False):
        """x: NCHW network input (already resized/normalised).
        -> (pool_3 [N,2048], spatial [N,2023], logits_unbiased [N,1008], dict of intermediates or None)."""
        inter = {} if probes else None
        for name in PROBES:
            x = getattr(self, name)(x)
            if probes:
                inter[name] = x
        pool3 = x.mean(dim=(2, 3))
        b1 = self.Mixed_6d.last_branch1x1
        spatial = b1[:, :7].permute(0, 2, 3, 1).reshape(b1.shape[0], 17 * 17 * 7)
        logits = pool3 @ self.fc.weight.t()
        return pool3, spatial, logits, inter


def random_state_dict():
    """The gdrand state dict (numpy float32 arrays), in FIDInception's state_dict order."""
    net = FIDInception()
    sd = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        lo, hi = weight_range(k, tuple(v.shape))
        sd[k] = gdrand_uniform(k, tuple(v.shape), lo, hi)
    return sd


def build_network(sd=None, dtype=torch.float32):
    net = FIDInception()
    if sd is None:
        sd = random_state_dict()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return net.to(dtype).eval()


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------


def _legacy_axis(n_in, n_out=SIZE):
    scale = np.float32(n_in) / np.float32(n_out)
    s = np.arange(n_out).astype(np.float32) * scale           # float32 multiply
    fl = np.floor(s)
    lower = np.maximum(fl.astype(np.int64), 0)
    upper = np.minimum(np.ceil(s).astype(np.int64), n_in - 1)
    lerp = (s - fl).astype(np.float32)
    return lower, upper, lerp


def tf_resize_raw(img):
    """TF1 legacy ResizeBilinear (align_corners=False, half_pixel_centers=False) of uint8/float NHWC to
    299x299, float32 NHWC, 0..255 range (spec §2.2)."""
    x = np.asarray(img).astype(np.float32)
    n, h, w, c = x.shape
    ly, uy, fy = _legacy_axis(h)
    lx, ux, fx = _legacy_axis(w)
    fx = fx[None, None, :, None]
    fy = fy[None, :, None, None]
    top_rows, bot_rows = x[:, ly], x[:, uy]
    tl, tr = top_rows[:, :, lx], top_rows[:, :, ux]
    bl, br = bot_rows[:, :, lx], bot_rows[:, :, ux]
    top = tl + (tr - tl) * fx
    bottom = bl + (br - bl) * fx
    out = top + (bottom - top) * fy
    assert out.dtype == np.float32
    return out


def tf_resize(img):
    """Network input of the TF path: legacy resize, then (r - 128) * 0.0078125 (Sub, Mul in float32),
    returned as float32 NCHW [N,3,299,299]."""
    r = tf_resize_raw(img)
    r = (r - np.float32(128)) * np.float32(0.0078125)
    return np.ascontiguousarray(r.transpose(0, 3, 1, 2), dtype=np.float32)


def pytorch_fid_resize(img):
    """pytorch-fid's path: x/255 (float32, NCHW), F.interpolate bilinear align_corners=False to 299, 2x - 1."""
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(img).transpose(0, 3, 1, 2))).float() / 255
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (2 * x - 1).numpy()


def test_images():
    """The five input cases (uint8 NHWC), see the module docstring."""
    y = np.arange(32)[:, None, None]
    x = np.arange(32)[None, :, None]
    c = np.arange(3)[None, None, :]
    on = ((y >> 2) ^ (x >> 2)) & 1
    checker = np.where(on == 1, 255 - 40 * c, 40 * c).astype(np.uint8)[None]
    return {
        "noise64": gdrand_pixels("noise64", (2, 64, 64, 3)),
        "checker32": checker,
        "noise512": gdrand_pixels("noise512", (1, 512, 512, 3)),
        "rect40x72": gdrand_pixels("rect40x72", (1, 40, 72, 3)),
        "same299": gdrand_pixels("same299", (1, 299, 299, 3)),
    }


def _selfcheck():
    # vectorised gdrand vs the scalar definition, pixels = floor(u * 256)
    for name in ("x", "Conv2d_1a_3x3.conv.weight", "noise64"):
        k = gdrand_bits(name, 9)
        assert [int(v) for v in k] == [gdrand_u_int(name, i) for i in range(9)], name
        u = gdrand_u(name, 9)
        assert np.array_equal(np.floor(u * 256).astype(np.uint8), gdrand_pixels(name, (9,)))
    return True


if __name__ == "__main__":
    _selfcheck()
    sd = random_state_dict()
    print("%d tensors, %d floats" % (len(sd), sum(v.size for v in sd.values())))
    print("gdrand_u('x', 0..3) =", list(gdrand_u("x", 4)))
