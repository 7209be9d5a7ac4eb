#!/usr/bin/python3
"""Writes the generated seeds of tests/data/fuzz/ (run from anywhere; deterministic).

  idx/*    inputs of tests/fuzz_idx.c: a 2-byte little-endian length L, a labels file (L bytes),
           then an images file; pairs built from tests/data/dataset/, bad_* the malformed ones.
  image/*  inputs of tests/fuzz_image.c: ok_* valid PNG (every colour type, 2/8/16 bits, Adam7,
           tRNS), JPEG (gray, 4:2:0, 4:4:4 optimised, progressive, restart markers, CMYK), BMP
           (1, 8, 24, 32 bits) and GIF files; bad_* hostile 28x28 ones (an IDAT asking for 2 GiB
           in 167 bytes, an IHDR claiming 100000x100000, a bad CRC, truncations, a palette index
           past PLTE, a JPEG DC table of 765 codes, a scan using undefined tables).
  image_expected_rgb.bin  PIL's convert("RGB") of the ok_* images (tests/test_fuzz_corpus.c)
  npz/*    inputs of tests/fuzz_npz.c: copies of tests/data/npz/ files (made by
           tests/data/npz/make_npz.py; bad_* malformed) and zip64_labels.npz.
repro_* files would be fuzzer finds, kept as they were (none so far)."""
import gzip
import io
import os
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DS = os.path.join(HERE, "..", "dataset")


def read(rel):
    with open(os.path.join(DS, rel), "rb") as f:
        return f.read()


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


def pair(labels, images):
    assert len(labels) < 65536
    return struct.pack("<H", len(labels)) + labels + images


def make_idx_corpus():
    li, ii = read("tiny-labels-idx1-ubyte"), read("tiny-images-idx3-ubyte")
    lg, ig = read("tiny-labels-idx1-ubyte.gz"), read("tiny-images-idx3-ubyte.gz")
    write("idx/tiny_raw", pair(li, ii))
    write("idx/tiny_gzip", pair(lg, ig))
    write("idx/tiny_mixed", pair(li, ig))
    n, h, w = 2, 28, 28
    pix = bytes((k * 29 + 3) % 256 for k in range(n * h * w))
    write("idx/two_28x28_gzip", pair(gz(struct.pack(">II", 0x801, n) + bytes([9, 255])),
                                     gz(struct.pack(">IIII", 0x803, n, h, w) + pix)))
    write("idx/bad_empty_labels", pair(b"", ii))
    write("idx/bad_swapped", pair(ii, li))
    for name in sorted(os.listdir(os.path.join(DS, "bad"))):
        data = read("bad/" + name)
        if name.startswith("images_"):
            write("idx/bad_" + name, pair(lg if name.endswith(".gz") else li, data))
        else:
            write("idx/bad_" + name, pair(data, ii))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_parts(data):
    """[(type, payload)] of a PNG file."""
    out, pos = [], 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def jpeg_segments(data):
    """[(marker, bytes)] up to SOS; the rest (scan data and EOI) as (0xDA, bytes)."""
    out, pos = [], 2
    while True:
        m = data[pos + 1]
        if m == 0xDA:
            out.append((m, data[pos:]))
            return out
        n = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        out.append((m, data[pos:pos + 2 + n]))
        pos += 2 + n


def pil(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def make_image_corpus():
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(11)

    def arr(h, w, c):
        y, x = np.mgrid[0:h, 0:w]
        a = np.stack([(x * 9 + y * 5 + 40 * k) % 256 for k in range(c)], -1) + rng.integers(0, 30, (h, w, c))
        return np.clip(a, 0, 255).astype(np.uint8)

    rgb, gray = Image.fromarray(arr(16, 16, 3)), Image.fromarray(arr(16, 16, 1)[:, :, 0])
    g28 = Image.fromarray(arr(28, 28, 1)[:, :, 0])
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    I = "image/"
    # valid files: every PNG colour type and depth family, JPEG processes, BMP depths, GIF
    write(I + "ok_gray8.png", pil(gray, "PNG"))
    write(I + "ok_gray2.png", pil(gray.point(lambda v: v // 64 * 85), "PNG", bits=2))
    write(I + "ok_gray16.png", pil(Image.fromarray(arr(16, 16, 1)[:, :, 0].astype(np.uint16) * 257), "PNG"))
    write(I + "ok_rgb_adam7.png", adam7(rgb))
    write(I + "ok_rgba.png", pil(rgb.convert("RGBA"), "PNG"))
    write(I + "ok_la.png", pil(gray.convert("LA"), "PNG"))
    write(I + "ok_pal4_trns.png", pil(pal, "PNG", bits=4, transparency=3))
    write(I + "ok_gray.jpg", pil(g28, "JPEG", quality=90))
    write(I + "ok_420.jpg", pil(rgb, "JPEG", quality=80))
    write(I + "ok_444_optimized.jpg", pil(rgb, "JPEG", quality=95, subsampling=0, optimize=True))
    write(I + "ok_progressive.jpg", pil(rgb, "JPEG", quality=85, progressive=True))
    write(I + "ok_restart.jpg", jpeg_with_restarts(Image.fromarray(arr(32, 32, 3)), 1))
    write(I + "ok_cmyk.jpg", pil(rgb.convert("CMYK"), "JPEG"))
    write(I + "ok_24.bmp", pil(rgb, "BMP"))
    write(I + "ok_pal8.bmp", pil(pal, "BMP"))
    write(I + "ok_1bit.bmp", pil(gray.convert("1"), "BMP"))
    write(I + "ok_32.bmp", pil(rgb.convert("RGBA"), "BMP"))
    write(I + "ok_frame.gif", pil(pal, "GIF"))
    write(I + "ok_anim.gif", pil(pal, "GIF", save_all=True, append_images=[pal.rotate(90)], interlace=True))

    # hostile files, 28x28 so that ddpm-eval (28x28 gray) reaches the decoder
    p28 = pil(g28, "PNG")
    parts = png_parts(p28)
    ihdr = png_chunk(b"IHDR", parts[0][1])
    idat = b"".join(d for t, d in parts if t == b"IDAT")
    sig = p28[:8]
    # the report's case: an IDAT whose length asks for 2 GiB, in a 167-byte file
    big = sig + ihdr + struct.pack(">I", 0x7FFFFFFF) + b"IDAT" + idat[:167 - 8 - 25 - 8]
    write(I + "bad_idat_2gib.png", big[:167])
    huge = struct.pack(">IIBBBBB", 100000, 100000, 8, 6, 0, 0, 0)
    write(I + "bad_ihdr_huge.png", (sig + png_chunk(b"IHDR", huge) + png_chunk(b"IDAT", idat[:110]) +
                                    png_chunk(b"IEND", b""))[:167])
    # a 4096x4096 16-bit RGBA header (what a 4096 loader accepts) over 111 bytes of image data
    write(I + "bad_ihdr_4096.png", (sig + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4096, 4096, 16, 6, 0, 0, 0)) +
                                    png_chunk(b"IDAT", idat[:110]) + png_chunk(b"IEND", b""))[:167])
    write(I + "bad_crc.png", p28[:-20] + bytes([p28[-20] ^ 1]) + p28[-19:])
    write(I + "bad_truncated.png", p28[:len(p28) // 2])
    pal2 = pil(Image.fromarray((arr(28, 28, 1)[:, :, 0] // 16).astype(np.uint8), "P"), "PNG")
    pp = png_parts(pal2)
    write(I + "bad_palette_index.png", sig + b"".join(png_chunk(t, d[:6] if t == b"PLTE" else d) for t, d in pp))
    j28 = pil(g28, "JPEG", quality=90)
    segs = jpeg_segments(j28)
    head = b"".join(b for m, b in segs if m != 0xDA)
    scan = segs[-1][1]
    # a DC table of 765 codes: stb writes its symbols past the table into its decode offsets
    counts = bytes([0] * 13 + [255, 255, 255])
    dht = b"\xff\xc4" + struct.pack(">H", 2 + 17 + 765) + b"\x00" + counts + b"\x7f" * 765
    write(I + "bad_huffman_overflow.jpg", j28[:2] + head + dht + scan)
    write(I + "bad_undefined_table.jpg", j28[:2] + b"".join(b for m, b in segs if m not in (0xC4, 0xDA)) + scan)
    write(I + "bad_truncated.jpg", j28[:len(head) + (len(j28) - len(head)) // 2])
    b28 = pil(Image.fromarray(arr(28, 28, 3)), "BMP")
    write(I + "bad_truncated.bmp", b28[:len(b28) - 200])
    gif = pil(Image.fromarray(arr(28, 28, 1)[:, :, 0]).convert("P"), "GIF")
    write(I + "bad_truncated.gif", gif[:len(gif) * 2 // 3])
    # what PIL's convert("RGB") makes of the ok_* files (sorted by name; 16-bit gray as v >> 8,
    # the loader's documented rule, where PIL would clip)
    exp = b""
    for name in sorted(os.listdir(os.path.join(HERE, "image"))):
        if name.startswith("ok_"):
            im = Image.open(os.path.join(HERE, "image", name))
            if im.mode in ("I", "I;16"):
                exp += np.repeat((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)[:, :, None], 3, 2).tobytes()
            else:
                exp += np.asarray(im.convert("RGB")).tobytes()
    write("image_expected_rgb.bin", exp)


ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
          14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46,
          53, 60, 61, 54, 47, 55, 62, 63]


def jpeg_with_restarts(im, interval):
    """A baseline JPEG with a restart marker every `interval` MCUs (Pillow 9.4 writes none): PIL's
    tables and frame header (4:2:0), our own DCT and Huffman coding of the pixels."""
    segs = jpeg_segments(pil(im, "JPEG", quality=85))
    head = [b for m, b in segs if m != 0xDA]
    sos = segs[-1][1][:2 + struct.unpack(">H", segs[-1][1][2:4])[0]]
    q, huff, sof = {}, {}, None
    for m, b in segs:
        p = b[4:]
        if m == 0xDB:
            while p:
                q[p[0] & 15] = np.array(list(p[1:65]), float)
                p = p[65:]
        elif m == 0xC4:
            while p:
                cnt, n = p[1:17], sum(p[1:17])
                vals, codes, code, k = p[17:17 + n], {}, 0, 0
                for length in range(1, 17):
                    for _ in range(cnt[length - 1]):
                        codes[vals[k]] = (code, length)
                        code, k = code + 1, k + 1
                    code <<= 1
                huff[(p[0] >> 4, p[0] & 15)] = codes
                p = p[17 + n:]
        elif m == 0xC0:
            sof = p
    comps = [(sof[7 + 3 * i] >> 4, sof[7 + 3 * i] & 15, sof[8 + 3 * i]) for i in range(sof[5])]
    tabs = [(sos[6 + 2 * i] >> 4, sos[6 + 2 * i] & 15) for i in range(sos[4])]
    hmax, vmax = max(c[0] for c in comps), max(c[1] for c in comps)
    ycc = np.asarray(im.convert("YCbCr"), float) - 128
    C = np.array([[(np.sqrt(0.5) if u == 0 else 1) * np.cos((2 * x + 1) * u * np.pi / 16) / 2 for x in range(8)]
                  for u in range(8)])
    out, acc, nacc, preds = bytearray(), 0, 0, [0] * len(comps)

    def put(code, length):
        nonlocal acc, nacc
        acc, nacc = acc << length | code, nacc + length
        while nacc >= 8:
            byte = acc >> (nacc - 8) & 255
            out.extend([byte, 0] if byte == 255 else [byte])
            nacc -= 8

    def mag(v):
        n = int(abs(v)).bit_length()
        return n, (v if v >= 0 else v + (1 << n) - 1)

    mw, mh = 8 * hmax, 8 * vmax
    mcus = [(mx, my) for my in range(-(-im.height // mh)) for mx in range(-(-im.width // mw))]
    for i, (mx, my) in enumerate(mcus):
        for ci, (hs, vs, tq) in enumerate(comps):
            plane = ycc[:, :, ci]
            if (hs, vs) != (hmax, vmax):  # box-filtered chroma
                plane = plane.reshape(plane.shape[0] * vs // vmax, vmax // vs, plane.shape[1] * hs // hmax,
                                      hmax // hs).mean((1, 3))
            for by in range(vs):
                for bx in range(hs):
                    y0, x0 = (my * vs + by) * 8, (mx * hs + bx) * 8
                    blk = np.zeros((8, 8))
                    part = plane[y0:y0 + 8, x0:x0 + 8]
                    blk[:part.shape[0], :part.shape[1]] = part
                    coef = np.round((C @ blk @ C.T).flatten()[ZIGZAG] / q[tq]).astype(int)
                    n, bits = mag(coef[0] - preds[ci])
                    preds[ci] = coef[0]
                    put(*huff[(0, tabs[ci][0])][n]), put(bits, n)
                    run = 0
                    for k in range(1, 64):
                        if coef[k] == 0:
                            run += 1
                            continue
                        while run > 15:
                            put(*huff[(1, tabs[ci][1])][0xF0])
                            run -= 16
                        n, bits = mag(coef[k])
                        put(*huff[(1, tabs[ci][1])][run << 4 | n]), put(bits, n)
                        run = 0
                    if run:
                        put(*huff[(1, tabs[ci][1])][0])
        if (i + 1) % interval == 0 and i + 1 < len(mcus):
            if nacc:
                put((1 << (8 - nacc)) - 1, 8 - nacc)
            out.extend([0xFF, 0xD0 + ((i + 1) // interval - 1) % 8])
            preds = [0] * len(comps)
    if nacc:
        put((1 << (8 - nacc)) - 1, 8 - nacc)
    dri = b"\xff\xdd\x00\x04" + struct.pack(">H", interval)
    return b"\xff\xd8" + b"".join(head) + dri + sos + bytes(out) + b"\xff\xd9"


def adam7(im):
    """An interlaced 8-bit RGB PNG (PIL does not write Adam7)."""
    a = np.asarray(im)
    h, w, _ = a.shape
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = a[y0::dy, x0::dx]
        if sub.size:
            prev = None
            for f, row in enumerate(sub):
                line = row.tobytes()
                ft = f % 5
                raw += bytes([ft]) + png_filter(ft, line, prev, 3)
                prev = line
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9)) +
            png_chunk(b"IEND", b""))


def png_filter(ft, line, prev, bpp):
    prev = prev or bytes(len(line))
    out = bytearray(len(line))
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if ft == 0:
            p = 0
        elif ft == 1:
            p = a
        elif ft == 2:
            p = b
        elif ft == 3:
            p = (a + b) // 2
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            p = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (line[i] - p) % 256
    return bytes(out)


NPZ_COPIES = """savez_labels savez_nolabels savez_compressed_labels_i4 savez_compressed_nolabels gray3d extra_member
npy_v2 npy_v3 bad_crc bad_deflate_bomb bad_deflate_corrupt bad_cd_offset bad_duplicate bad_encrypted bad_hdr_escape
bad_labels_length bad_local_offset bad_multidisk bad_npy_version4 bad_shape_overflow bad_size_huge bad_truncated_half
bad_zip64_no_extra bad_not_zip bad_fortran bad_dtype_f4 bad_ndim5 bad_data_short""".split()


def make_npz_corpus():
    import zipfile
    for name in NPZ_COPIES:
        with open(os.path.join(HERE, "..", "npz", name + ".npz"), "rb") as f:
            write("npz/%s.npz" % name, f.read())
    # np.savez's layout with zip64 extra fields in every header (numpy writes them in local ones)
    a = (np.arange(2 * 3 * 4 * 3) * 7 % 256).astype(np.uint8).reshape(2, 3, 4, 3)
    with zipfile.ZipFile(os.path.join(HERE, "npz", "zip64_labels.npz"), "w", zipfile.ZIP_STORED) as z:
        for name, arr in (("arr_0.npy", a), ("arr_1.npy", np.array([1, 0], dtype=np.int64))):
            b = io.BytesIO()
            np.lib.format.write_array(b, arr)
            with z.open(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
                f.write(b.getvalue())


if __name__ == "__main__":
    make_npz_corpus()
    make_idx_corpus()
    make_image_corpus()
