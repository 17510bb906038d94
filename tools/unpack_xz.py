#!/usr/bin/env python3
"""Unpacks the large files git stores xz-compressed, next to their .xz, where they are missing or stale:
models/tokenizer/tokenizer.json (the real Qwen3 tokenizer) and models/qvl-tiny-ocr/model.safetensors
(the bundled tiny OCR model). `make` does the same (the Makefile's UNPACKED); this is for machines
where make is not run, e.g. the GPU box: `python3 tools/unpack_xz.py` prints the unpacked paths.
Stale: the file was unpacked from another .xz (e.g. a new checkpoint committed while the GPU box
kept the old unpacked file between runs): PATH.xz-sha256 records the sha256 of the .xz it came
from, and a file without that record or with a different one is unpacked again."""
import hashlib
import lzma
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKED = ["models/tokenizer/tokenizer.json", "models/qvl-tiny-ocr/model.safetensors"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unpack(path):
    """Returns path, unpacking path + '.xz' into place first if path is missing or was unpacked
    from another .xz (atomic rename)."""
    stamp, want = path + ".xz-sha256", sha256(path + ".xz")
    try:
        with open(stamp) as f:
            have = f.read().strip()
    except OSError:
        have = None
    if os.path.exists(path) and have == want:
        return path
    tmp = "%s.tmp%d" % (path, os.getpid())
    with lzma.open(path + ".xz", "rb") as src, open(tmp, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
    os.replace(tmp, path)  # readers never see a partial file
    with open(stamp + ".tmp%d" % os.getpid(), "w") as f:
        f.write(want + "\n")
    os.replace(stamp + ".tmp%d" % os.getpid(), stamp)
    return path


if __name__ == "__main__":
    for rel in PACKED:
        print(unpack(os.path.join(ROOT, rel)))
