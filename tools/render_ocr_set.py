#!/usr/bin/env python3
"""Synthetic OCR set for the bundled tiny Qwen3-VL (models/qvl-tiny-ocr, issue 8).

One sample = one image with a word, a number or a short line of words, rendered with PIL in one of
several Debian fonts (DejaVu, Liberation), at a random size, colour, position and slight rotation,
then optionally blurred and noised; plus an OCRBench recognition question and its answer.
Image canvases are fixed (256x64 for words and numbers, 512x64 for lines) so that the Qwen3-VL
preprocessor keeps them as they are (multiples of 32 inside the shipped pixel limits).

Deterministic: sample i of a set depends only on (seed, i) and the PIL/FreeType version.
The training script (tools/train_tiny.py) imports render_sample() to draw training samples on the fly.

CLI (writes a held-out set in OCRBench's original format: DIR/OCRBench.json + DIR/images/*.png):
  python3 tools/render_ocr_set.py --out DIR --n 240 --seed 20261126 [--fonts-dir /usr/share/fonts/truetype]
Fonts: Debian packages fonts-dejavu-core, fonts-dejavu-extra, fonts-liberation (or a folder holding
the same .ttf files, e.g. carried to a machine without them).
"""
import argparse
import json
import os
import random
import sys

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS_FILE = os.path.join(HERE, "ocr_words.txt")

FONT_FILES = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansCondensed-Oblique.ttf",
    "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf",
    "LiberationSerif-Italic.ttf", "LiberationMono-Regular.ttf", "LiberationSansNarrow-Regular.ttf",
]

# kind -> (probability, canvas width, canvas height, question, OCRBench type)
KINDS = {
    "word": (0.45, 256, 64, "what is written in the image?", "Regular Text Recognition"),
    "number": (0.25, 256, 64, "what is the number in the image?", "Digit String Recognition"),
    "line": (0.30, 512, 64, "what is written in the image?", "Regular Text Recognition"),
}
KIND_NAMES = list(KINDS)
MARGIN = 6


def find_fonts(fonts_dir):
    """Paths of FONT_FILES found (recursively) under fonts_dir; exits if none of them is there."""
    found = {}
    for root, _, files in os.walk(fonts_dir):
        for name in files:
            if name in FONT_FILES and name not in found:
                found[name] = os.path.join(root, name)
    paths = [found[n] for n in FONT_FILES if n in found]
    if not paths:
        sys.exit("render_ocr_set: no font of %s under %s" % (FONT_FILES, fonts_dir))
    return paths


def load_words(path=WORDS_FILE):
    with open(path, encoding="utf-8") as f:
        return [w.strip() for w in f if w.strip()]


class Renderer:
    """Holds the fonts (cached per size) and the word list; render() draws one sample."""

    def __init__(self, fonts_dir, words=None):
        self.font_paths = find_fonts(fonts_dir)
        self.words = words if words is not None else load_words()
        self._fonts = {}
        self._noise_lut = {}

    def font(self, path, size):
        key = (path, size)
        f = self._fonts.get(key)
        if f is None:
            f = self._fonts[key] = ImageFont.truetype(path, size)
        return f

    # -- text content ---------------------------------------------------------------------------
    def _case(self, rng, w, style):
        if style == "upper":
            return w.upper()
        if style == "title":
            return w[:1].upper() + w[1:]
        return w

    def _number(self, rng):
        n = rng.randint(1, 8)
        first = str(rng.randint(1, 9)) if n > 1 else str(rng.randint(0, 9))
        return first + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))

    def text_for(self, rng, kind):
        if kind == "number":
            return self._number(rng)
        style = rng.choices(["lower", "upper", "title"], weights=[5, 3, 2])[0]
        if kind == "word":
            return self._case(rng, rng.choice(self.words), style)
        parts = [self._case(rng, rng.choice(self.words), style) for _ in range(rng.randint(2, 3))]
        if rng.random() < 0.2:
            parts[rng.randrange(len(parts))] = self._number(rng)
        return " ".join(parts)

    # -- image ----------------------------------------------------------------------------------
    def _colours(self, rng):
        lo = lambda: rng.randint(0, 90)      # noqa: E731
        hi = lambda: rng.randint(165, 255)   # noqa: E731
        if rng.random() < 0.7:
            return (hi(), hi(), hi()), (lo(), lo(), lo())   # light background, dark text
        return (lo(), lo(), lo()), (hi(), hi(), hi())       # dark background, light text

    def _noise(self, rng, w, h, amp):
        """Grey uniform noise in [-amp, amp] as an RGB image centred on 128 (seeded, unlike PIL's
        effect_noise; grey so that the PNG files of the held-out set stay small)."""
        lut = self._noise_lut.get(amp)
        if lut is None:
            lut = self._noise_lut[amp] = [128 + round(amp * (u - 127.5) / 127.5) for u in range(256)]
        grey = Image.frombytes("L", (w, h), rng.randbytes(w * h)).point(lut)
        return Image.merge("RGB", (grey, grey, grey))

    def render(self, rng, kind=None, easy=False):
        """Returns (PIL RGB image, answer text, kind). easy=True (training curriculum only): no
        rotation, blur or noise."""
        if kind is None:
            kind = rng.choices(KIND_NAMES, weights=[KINDS[k][0] for k in KIND_NAMES])[0]
        _, W, H, _, _ = KINDS[kind]
        text = self.text_for(rng, kind)
        path = rng.choice(self.font_paths)
        size = rng.randint(20, 40)
        mask = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(mask)
        for _ in range(8):   # shrink until it fits the canvas
            font = self.font(path, size)
            x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
            tw, th = x1 - x0, y1 - y0
            if (tw <= W - 2 * MARGIN and th <= H - 2 * MARGIN) or size <= 12:
                break
            size = max(12, min(size - 1, int(size * min((W - 2 * MARGIN) / tw, (H - 2 * MARGIN) / th))))
        x = rng.randint(MARGIN, max(MARGIN, W - MARGIN - tw)) - x0
        y = rng.randint(MARGIN // 2, max(MARGIN // 2, H - MARGIN // 2 - th)) - y0
        draw.text((x, y), text, fill=255, font=font)
        if not easy:
            max_angle = 3.0 if kind != "line" else 1.5
            angle = rng.uniform(-max_angle, max_angle)
            mask = mask.rotate(angle, resample=Image.BILINEAR, center=(x + x0 + tw / 2, y + y0 + th / 2))
        bg, fg = self._colours(rng)
        # Blur the one-channel mask, not the RGB image: compositing is linear in the mask, so the
        # picture is the same up to rounding, at a third of the cost (the renderer feeds the GPU).
        if not easy and rng.random() < 0.4:
            mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        img = Image.composite(Image.new("RGB", (W, H), fg), Image.new("RGB", (W, H), bg), mask)
        if not easy and rng.random() < 0.5:
            img = ImageChops.add(img, self._noise(rng, W, H, rng.randint(3, 12)), 1.0, -128)
        return img, text, kind


def sample_rng(seed, index):
    """The RNG of sample `index` of the set `seed` (independent of how many samples are drawn)."""
    return random.Random(seed * 1_000_003 + index)


def question_of(kind):
    return KINDS[kind][3]


def write_set(out_dir, n, seed, fonts_dir):
    """Renders n samples into out_dir in OCRBench's original format; returns the item list."""
    r = Renderer(fonts_dir)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    items = []
    for i in range(n):
        img, text, kind = r.render(sample_rng(seed, i))
        rel = "images/%05d.png" % i
        img.save(os.path.join(out_dir, rel), optimize=True)
        items.append({"dataset_name": "tiny-ocr-" + kind, "id": i, "image_path": rel,
                      "question": KINDS[kind][3], "answers": text, "type": KINDS[kind][4]})
    tmp = os.path.join(out_dir, "OCRBench.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(items, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "OCRBench.json"))
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (OCRBench.json + images/)")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--fonts-dir", default="/usr/share/fonts/truetype")
    a = ap.parse_args()
    items = write_set(a.out, a.n, a.seed, a.fonts_dir)
    kinds = {}
    for it in items:
        kinds[it["dataset_name"]] = kinds.get(it["dataset_name"], 0) + 1
    print("wrote %d samples to %s %s" % (len(items), a.out, kinds))


if __name__ == "__main__":
    main()
