#!/usr/bin/env python3
"""Unpacks the large files git stores xz-compressed, next to their .xz, where they are missing:
models/tokenizer/tokenizer.json (the real Qwen3 tokenizer) and models/qvl-tiny-ocr/model.safetensors
(the bundled tiny OCR model). `make` does the same (the Makefile's UNPACKED); this is for machines
where make is not run, e.g. the GPU box: `python3 tools/unpack_xz.py` prints the unpacked paths."""
import lzma
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKED = ["models/tokenizer/tokenizer.json", "models/qvl-tiny-ocr/model.safetensors"]


def unpack(path):
    """Returns path, unpacking path + '.xz' into place first if path is missing (atomic rename)."""
    if os.path.exists(path):
        return path
    tmp = "%s.tmp%d" % (path, os.getpid())
    with lzma.open(path + ".xz", "rb") as src, open(tmp, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
    os.replace(tmp, path)  # readers never see a partial file
    return path


if __name__ == "__main__":
    for rel in PACKED:
        print(unpack(os.path.join(ROOT, rel)))
