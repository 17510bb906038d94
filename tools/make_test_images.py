#!/usr/bin/python3
"""Writes the image-pipeline test images to tests/fixtures/image/images/ (committed; re-run only to
change the set). Needs numpy + PIL (Debian: python3-numpy python3-pil), jpegtran
(libjpeg-turbo-progs) and cc + libjpeg for the YCCK helper. Deterministic content (seeded).

Every decoder path of src/image/ is covered (JPEG 4:2:0/4:2:2/4:4:4/progressive/gray/CMYK/YCCK/
restart markers, PNG all colour types and bit depths incl. interlaced and tRNS, WebP lossy/lossless
with and without alpha, GIF incl. interlaced/transparent/animated, BMP 1/4/8/16/24/32-bit), sizes
from 1x1 and 10x500 up to 8000x6000 (smooth content so the files stay small), and bad inputs.
The reference outputs for these files are made on the GPU machine by tools/gen_image_fixtures.py."""
import io, os, struct, subprocess, sys, tempfile, zlib

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "image", "images")


def rng(seed):
    return np.random.RandomState(seed)


def photo(w, h, seed=0):
    """Smooth colour gradients + waves + mild noise (a stand-in for photographs)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / (w / 3.0 + 1) + seed) * np.cos(y / (h / 2.0 + 1))
    g = 255 * x / max(w - 1, 1)
    b = 255 * y / max(h - 1, 1)
    a = np.stack([r, g, b], -1) + rng(seed).normal(0, 6, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def smooth(w, h):
    """Large images: pure gradients, which PNG/JPEG compress to almost nothing."""
    x = (np.arange(w) * 255 // max(w - 1, 1)).astype(np.uint8)
    y = (np.arange(h) * 255 // max(h - 1, 1)).astype(np.uint8)
    a = np.empty((h, w, 3), np.uint8)
    a[:, :, 0] = x[None, :]
    a[:, :, 1] = y[:, None]
    a[:, :, 2] = 128
    return a


def text(w, h, seed=0, lines=None):
    """Black text on white with a few coloured boxes (OCR-like: sharp edges)."""
    im = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    r = rng(seed)
    words = ["CENTRE", "FRIEND", "Qwen3-VL", "invoice 2024", "TOTAL $12.50", "hello world", "OCR bench"]
    for i in range(lines or max(1, h // 14)):
        d.text((int(r.randint(0, max(1, w // 4))), 2 + i * 14), " ".join(r.choice(words, 3)), fill=(0, 0, 0))
    for _ in range(3):
        x0, y0 = int(r.randint(0, w)), int(r.randint(0, h))
        d.rectangle([x0, y0, x0 + w // 8, y0 + h // 10], outline=tuple(int(v) for v in r.randint(0, 255, 3)))
    return np.asarray(im)


def noise(w, h, seed=0):
    return rng(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


# ---------------------------------------------------------------- raw writers (formats PIL can't write)
def png_chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)


def pack_rows(a, depth):
    """a: [h, w, c] ints -> list of packed row bytes (big-endian 16-bit, MSB-first sub-byte)."""
    rows = []
    for row in a:
        flat = row.reshape(-1)
        if depth == 16:
            rows.append(flat.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(flat.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            n = (len(flat) + per - 1) // per
            out = bytearray(n)
            for i, v in enumerate(flat):
                out[i // per] |= int(v) << (8 - depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, a, ctype, depth, interlace=False, plte=None, trns=None):
    """a: [h, w, channels] sample values. Filter 0 on every row."""
    h, w = a.shape[:2]
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += b"".join(b"\0" + r for r in pack_rows(sub, depth))
    else:
        raw = b"".join(b"\0" + r for r in pack_rows(a, depth))
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        data += png_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    data += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    open(path, "wb").write(data)


def write_bmp(path, a, bits, palette=None, masks=None, top_down=False):
    """a: [h, w] indices (bits <= 8) or [h, w] uint16 (16) or [h, w, 3] RGB (24)."""
    h, w = a.shape[:2]
    stride = (w * bits + 31) // 32 * 4
    rows = []
    for row in a:
        if bits <= 8:
            b = pack_rows(row.reshape(1, w, 1), bits)[0]
        elif bits == 16:
            b = row.astype("<u2").tobytes()
        else:
            b = row[:, ::-1].astype(np.uint8).tobytes()
        rows.append(b + b"\0" * (stride - len(b)))
    if not top_down:
        rows = rows[::-1]
    pal = b"".join(bytes([c[2], c[1], c[0], 0]) for c in palette) if palette is not None else b""
    extra = b"".join(struct.pack("<I", m) for m in masks) if masks else b""
    off = 14 + 40 + len(extra) + len(pal)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bits, 3 if masks else 0,
                       stride * h, 2835, 2835, len(palette) if palette is not None else 0, 0)
    body = b"".join(rows)
    open(path, "wb").write(b"BM" + struct.pack("<IHHI", off + len(body), 0, 0, off) + info + extra + pal + body)


def save(name, arr_or_im, **kw):
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    im.save(os.path.join(OUT, name), **kw)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    P = lambda n: os.path.join(OUT, n)
    # ---- JPEG
    save("jpeg_420_text_800x600.jpg", text(800, 600, 1), quality=90)
    save("jpeg_444_photo_333x217.jpg", photo(333, 217, 2), quality=92, subsampling=0)
    save("jpeg_422_photo_257x131.jpg", photo(257, 131, 3), quality=85, subsampling=1)
    save("jpeg_progressive_640x480.jpg", photo(640, 480, 4), quality=80, progressive=True)
    save("jpeg_progressive_odd_1001x999.jpg", text(1001, 999, 5), quality=75, progressive=True)
    save("jpeg_gray_300x200.jpg", Image.fromarray(photo(300, 200, 6)).convert("L"), quality=90)
    save("jpeg_cmyk_200x150.jpg", Image.fromarray(photo(200, 150, 7)).convert("CMYK"), quality=90)
    cmyk = np.asarray(Image.fromarray(photo(160, 120, 8)).convert("CMYK"))
    with tempfile.TemporaryDirectory() as td:
        exe = os.path.join(td, "ycck")
        subprocess.check_call(["cc", "-O1", "-o", exe, os.path.join(ROOT, "tools", "make_ycck_jpeg.c"), "-ljpeg"])
        raw = os.path.join(td, "in.cmyk")
        cmyk.tofile(raw)
        subprocess.check_call([exe, "160", "120", raw, P("jpeg_ycck_160x120.jpg")])
    save("tmp_restart.jpg", photo(400, 300, 9), quality=88)
    subprocess.check_call(["jpegtran", "-restart", "1", "-outfile", P("jpeg_restart_400x300.jpg"), P("tmp_restart.jpg")])
    os.remove(P("tmp_restart.jpg"))
    save("jpeg_1x1.jpg", np.array([[[200, 30, 90]]], np.uint8), quality=95)
    save("jpeg_10x500.jpg", photo(10, 500, 10), quality=90)
    save("jpeg_ocr_131x58.jpg", text(131, 58, 11, lines=3), quality=90)
    save("jpeg_large_4000x3000.jpg", smooth(4000, 3000), quality=60)
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation: rotate 90; the reference does NOT apply it
    save("jpeg_exif_rotate_240x160.jpg", photo(240, 160, 12), quality=90, exif=ex.tobytes())
    # ---- PNG (PIL)
    save("png_rgb_text_1280x720.png", text(1280, 720, 13))
    rgba = np.dstack([photo(320, 240, 14), rng(14).randint(0, 256, (240, 320)).astype(np.uint8)])
    save("png_rgba_320x240.png", Image.fromarray(rgba, "RGBA"))
    save("png_gray_256x256.png", Image.fromarray(photo(256, 256, 15)).convert("L"))
    save("png_la_200x100.png", Image.fromarray(photo(200, 100, 16)).convert("LA"))
    save("png_palette_300x200.png", Image.fromarray(photo(300, 200, 17)).quantize(256))
    pal = Image.fromarray(text(120, 80, 18)).quantize(16)
    save("png_palette_trns_120x80.png", pal, transparency=0)
    save("png_gray1_100x50.png", Image.fromarray(text(100, 50, 19)).convert("1"))
    save("png_1x1.png", np.array([[[10, 250, 128]]], np.uint8))
    save("png_wide_500x10.png", photo(500, 10, 20))
    save("png_min_branch_100x100.png", noise(100, 100, 21))
    save("png_doc_1700x2200.png", text(1700, 2200, 22))
    save("png_huge_8000x6000.png", smooth(8000, 6000), optimize=True)
    save("png_max_branch_5000x4000.png", smooth(5000, 4000)[:, ::-1].copy(), optimize=True)
    save("png_aspect_ok_64x12800.png", text(64, 12800, 23))
    save("png_aspect_bad_3x700.png", photo(3, 700, 24))
    save("png_noise_odd_311x187.png", noise(311, 187, 25))
    # ---- PNG (raw writer: bit depths and layouts PIL does not write)
    g = photo(64, 64, 26)[:, :, :1]
    write_png(P("png_gray2_64x64.png"), g // 64, 0, 2)
    write_png(P("png_gray4_65x33.png"), photo(65, 33, 27)[:, :, :1] // 16, 0, 4)
    plte4 = rng(28).randint(0, 256, (16, 3))
    write_png(P("png_pal4_50x40.png"), rng(29).randint(0, 16, (40, 50, 1)), 3, 4, plte=plte4)
    write_png(P("png_rgb16_120x90.png"), rng(30).randint(0, 65536, (90, 120, 3)), 2, 16)
    write_png(P("png_rgba16_90x60.png"), rng(31).randint(0, 65536, (60, 90, 4)), 6, 16)
    g16 = rng(32).randint(0, 65536, (64, 128, 1))
    g16[:, :64] //= 200  # half of the values below 256: PIL's I;16 -> RGB clamps the rest to 255
    write_png(P("png_gray16_128x64.png"), g16, 0, 16)
    write_png(P("png_la16_64x48.png"), rng(33).randint(0, 65536, (48, 64, 2)), 4, 16)
    write_png(P("png_interlaced_rgb_233x177.png"), photo(233, 177, 34), 2, 8, interlace=True)
    plte = rng(35).randint(0, 256, (256, 3))
    write_png(P("png_interlaced_pal_70x50.png"), rng(36).randint(0, 256, (50, 70, 1)), 3, 8, interlace=True, plte=plte)
    write_png(P("png_interlaced_gray1_33x17.png"), rng(37).randint(0, 2, (17, 33, 1)), 0, 1, interlace=True)
    write_png(P("png_rgb_trns_100x100.png"), photo(100, 100, 38), 2, 8, trns=struct.pack(">HHH", 128, 128, 128))
    write_png(P("png_gray_trns_40x40.png"), photo(40, 40, 39)[:, :, :1], 0, 8, trns=struct.pack(">H", 0))
    # ---- WebP
    save("webp_lossy_300x200.webp", photo(300, 200, 40), quality=80)
    wa = np.dstack([photo(200, 150, 41), np.tile(np.arange(200, dtype=np.uint8), (150, 1))])
    save("webp_lossy_alpha_200x150.webp", Image.fromarray(wa, "RGBA"), quality=80)
    save("webp_lossless_256x128.webp", text(256, 128, 42), lossless=True)
    wa2 = np.dstack([photo(99, 77, 43), rng(43).randint(0, 256, (77, 99)).astype(np.uint8)])
    save("webp_lossless_alpha_99x77.webp", Image.fromarray(wa2, "RGBA"), lossless=True)
    # ---- GIF
    save("gif_200x100.gif", Image.fromarray(photo(200, 100, 44)).quantize(200))
    save("gif_interlaced_150x150.gif", Image.fromarray(text(150, 150, 45)).quantize(64), interlace=True)
    save("gif_trns_80x60.gif", Image.fromarray(photo(80, 60, 46)).quantize(32), transparency=3)
    frames = [Image.fromarray(photo(64, 64, s)).quantize(64) for s in (47, 48, 49)]
    frames[0].save(P("gif_anim_64x64.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    # ---- BMP
    save("bmp24_123x45.bmp", photo(123, 45, 50))
    save("bmp8_pal_100x80.bmp", Image.fromarray(photo(100, 80, 51)).quantize(100))
    save("bmp1_64x33.bmp", Image.fromarray(text(64, 33, 52)).convert("1"))
    save("bmp32_70x50.bmp", Image.fromarray(np.dstack([photo(70, 50, 53), np.full((50, 70), 7, np.uint8)]), "RGBA"))
    write_bmp(P("bmp4_31x17.bmp"), rng(54).randint(0, 16, (17, 31)), 4, palette=rng(55).randint(0, 256, (16, 3)))
    write_bmp(P("bmp16_565_40x30.bmp"), rng(56).randint(0, 65536, (30, 40)), 16, masks=(0xF800, 0x7E0, 0x1F))
    write_bmp(P("bmp16_555_41x29.bmp"), rng(57).randint(0, 32768, (29, 41)), 16)
    write_bmp(P("bmp24_topdown_50x20.bmp"), photo(50, 20, 58), 24, top_down=True)
    # ---- wrong extension, unsupported, bad
    save("png_named_as.jpg", photo(90, 70, 59), format="PNG")
    save("unsupported_tiff_32x32.tiff", photo(32, 32, 60))
    good_jpg = open(P("jpeg_progressive_640x480.jpg"), "rb").read()
    open(P("bad_truncated.jpg"), "wb").write(good_jpg[: len(good_jpg) // 2])
    base_jpg = open(P("jpeg_444_photo_333x217.jpg"), "rb").read()
    open(P("bad_truncated_baseline.jpg"), "wb").write(base_jpg[: len(base_jpg) * 2 // 3])
    good_png = open(P("png_rgb_text_1280x720.png"), "rb").read()
    open(P("bad_truncated.png"), "wb").write(good_png[: len(good_png) // 2])
    i = good_png.index(b"IDAT") + 40
    open(P("bad_corrupt.png"), "wb").write(good_png[:i] + bytes(rng(61).randint(0, 256, 64).astype(np.uint8)) + good_png[i + 64:])
    hdr = lambda w, h: b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    open(P("bad_zero_size.png"), "wb").write(hdr(0, 10) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b""))
    open(P("bad_huge_100000x100000.png"), "wb").write(hdr(100000, 100000) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))
    j = bytearray(open(P("jpeg_1x1.jpg"), "rb").read())
    k = j.index(b"\xff\xc0")
    j[k + 5:k + 9] = struct.pack(">HH", 65000, 65000)
    open(P("bad_huge_65000x65000.jpg"), "wb").write(bytes(j))
    open(P("bad_empty.png"), "wb").write(b"")
    open(P("bad_text.jpg"), "wb").write(b"this is not an image\n")
    gif = open(P("gif_200x100.gif"), "rb").read()
    open(P("bad_truncated.gif"), "wb").write(gif[: len(gif) // 2])
    webp = open(P("webp_lossy_300x200.webp"), "rb").read()
    open(P("bad_truncated.webp"), "wb").write(webp[: len(webp) // 2])
    bmp = open(P("bmp24_123x45.bmp"), "rb").read()
    open(P("bad_truncated.bmp"), "wb").write(bmp[: len(bmp) // 2])
    total = sum(os.path.getsize(P(f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} images, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
