#!/usr/bin/python3
"""Writes the small test data for tests/test_dataset.c (run from anywhere; needs numpy and PIL).

  tiny-{images-idx3,labels-idx1}-ubyte[.gz]  3 images 4x5 (pixel k of the flattened array is
                                             (37 k + 11) % 256), labels 2, 0, 2
  bad/*                                      malformed IDX files (see BAD below)
  folder/{cat,dog}/img_{a,b}.png             8x8 PNGs in four colour types: RGB, L, RGBA, P
  folder_expected_{rgb,l}.bin                what PIL's convert("RGB") / convert("L") makes of
                                             them, in load order (cat/img_a, cat/img_b, dog/...)
  formats/x/{a.bmp,b.gif,c.jpg}              8x8 BMP, GIF and JPEG, and PIL's RGB decoding of
  formats_expected_rgb.bin                   them (the JPEG one is only approximately stb's)
  perm_ref.txt                               reference permutations: "n seed epoch p0 p1 ..."

Every file is deterministic (gzip mtime 0, no file name in the header, fixed RNG seed)."""
import gzip
import io
import os
import struct

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def write(rel, data):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def idx_images(n, h, w, pixels=None, magic=0x803):
    if pixels is None:
        pixels = bytes((37 * k + 11) % 256 for k in range(n * h * w))
    return struct.pack(">IIII", magic, n, h, w) + pixels


def idx_labels(labels, magic=0x801, n=None):
    return struct.pack(">II", magic, len(labels) if n is None else n) + bytes(labels)


# ---- IDX ----------------------------------------------------------------------------------
IMG = idx_images(3, 4, 5)
LAB = idx_labels([2, 0, 2])
write("tiny-images-idx3-ubyte", IMG)
write("tiny-labels-idx1-ubyte", LAB)
write("tiny-images-idx3-ubyte.gz", gz(IMG))
write("tiny-labels-idx1-ubyte.gz", gz(LAB))

BAD = {
    "images_bad_magic": struct.pack(">I", 0x804) + IMG[4:],        # 4 dimensions
    "images_float_type": struct.pack(">I", 0xD03) + IMG[4:],       # type 0x0D (float)
    "images_label_magic": idx_labels([1, 2, 3]),                    # a label file as images
    "labels_bad_magic": struct.pack(">I", 0x803) + LAB[4:],
    "images_short_header": IMG[:10],
    "images_truncated": IMG[:-5],
    "images_truncated.gz": gz(IMG[:-5]),
    "images_gzip_cut.gz": gz(IMG)[:-12],                           # stream ends mid-way
    "images_gzip_no_trailer.gz": gz(IMG)[:-4],                     # all data, no length field
    "images_gzip_bad_crc.gz": gz(IMG)[:-8] + bytes([gz(IMG)[-8] ^ 1]) + gz(IMG)[-7:],
    "images_trailing": IMG + b"\0",
    "labels_count2": idx_labels([2, 0]),                           # 2 labels for 3 images
    "labels_truncated": idx_labels([2, 0], n=3),
    "images_zero_count": idx_images(0, 4, 5),
    "images_zero_rows": idx_images(3, 0, 5, pixels=b""),
    "images_big_cols": struct.pack(">IIII", 0x803, 3, 4, 4097),
    "images_huge_count": struct.pack(">IIII", 0x803, 100000001, 28, 28),
}
for name, data in BAD.items():
    write("bad/" + name, data)

# ---- folder -------------------------------------------------------------------------------
rng = np.random.default_rng(20240607)
rgb = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
# Include colours where rounding matters: PIL's L is (19595 R + 38470 G + 7471 B + 2^15) >> 16;
# on the second four, (299 R + 587 G + 114 B) / 1000 is exactly k + 0.5 and PIL rounds down.
rgb[0][0, :8] = [[1, 0, 0], [0, 1, 1], [255, 255, 254], [128, 0, 255],
                 [0, 0, 250], [94, 88, 217], [156, 106, 181], [202, 70, 158]]
images = {
    "cat/img_a.png": Image.fromarray(rgb[0], "RGB"),
    "cat/img_b.png": Image.fromarray(rgb[1][:, :, 0], "L"),
    "dog/img_a.png": Image.fromarray(np.dstack([rgb[2], rgb[3][:, :, 0]]), "RGBA"),
    "dog/img_b.png": Image.fromarray(rgb[3], "RGB").quantize(16),  # palette ("P") PNG
}
exp_rgb, exp_l = b"", b""
for rel in sorted(images):
    im = images[rel]
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    write("folder/" + rel, buf.getvalue())
    back = Image.open(io.BytesIO(buf.getvalue()))
    assert back.mode == im.mode and back.size == (8, 8)
    exp_rgb += np.asarray(back.convert("RGB"), dtype=np.uint8).tobytes()
    exp_l += np.asarray(back.convert("L"), dtype=np.uint8).tobytes()
write("folder_expected_rgb.bin", exp_rgb)
write("folder_expected_l.bin", exp_l)

# The other formats stb is built with: formats/x/{a.bmp, b.gif, c.jpg}, 8x8; PIL's RGB decoding
# in formats_expected_rgb.bin (the JPEG's only approximately: decoders differ in rounding).
smooth = np.clip(np.add.outer(np.arange(8) * 24, np.arange(8) * 8)[:, :, None] + [0, 40, 90], 0, 255)
formats = {
    "x/a.bmp": (Image.fromarray(rgb[1], "RGB"), dict(format="BMP")),
    "x/b.gif": (Image.fromarray(rgb[2], "RGB").quantize(32), dict(format="GIF")),
    "x/c.jpg": (Image.fromarray(smooth.astype(np.uint8), "RGB"), dict(format="JPEG", quality=95, subsampling=0)),
}
exp = b""
for rel, (im, kw) in formats.items():
    buf = io.BytesIO()
    im.save(buf, **kw)
    write("formats/" + rel, buf.getvalue())
    exp += np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.uint8).tobytes()
write("formats_expected_rgb.bin", exp)

# ---- permutation reference (an independent implementation of src/io/dataset.c's) ------------
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def permutation(n, seed, epoch):
    state = seed ^ mix((epoch + GOLDEN) & M64)   # seed XOR first splitmix64 output for epoch

    def nxt():
        nonlocal state
        state = (state + GOLDEN) & M64
        return mix(state)

    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        threshold = (1 << 64) % bound         # rejection keeps j exactly uniform
        while True:
            r = nxt()
            if r >= threshold:
                break
        j = r % bound
        perm[i], perm[j] = perm[j], perm[i]
    return perm


lines = []
for n, seed, epoch in [(10, 0, 0), (10, 0, 1), (10, 1, 0), (16, 1234, 7), (1, 5, 5), (2, 3, 0),
                       (37, M64, M64), (100, 42, 3)]:
    lines.append(" ".join(str(v) for v in [n, seed, epoch] + permutation(n, seed, epoch)))
write("perm_ref.txt", ("\n".join(lines) + "\n").encode())
