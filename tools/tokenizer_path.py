#!/usr/bin/env python3
"""Path of the real Qwen3 tokenizer, models/tokenizer/tokenizer.json.

Git stores it xz-compressed (models/tokenizer/tokenizer.json.xz, 1.4 MB instead of 11.4 MB) so the
working tree that travels to the GPU machine stays small. `make` unpacks it here; on machines where
make is not run (the GPU box), tokenizer_json() unpacks it with Python's lzma on first use.
Run as a script, it unpacks (if needed) and prints the path."""
import lzma
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(ROOT, "models", "tokenizer")


def tokenizer_json():
    """Returns the path of tokenizer.json, unpacking tokenizer.json.xz into place if it is missing."""
    path = os.path.join(TOKENIZER_DIR, "tokenizer.json")
    if os.path.exists(path):
        return path
    tmp = "%s.tmp%d" % (path, os.getpid())
    with lzma.open(path + ".xz", "rb") as src, open(tmp, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
    os.replace(tmp, path)  # atomic: readers never see a partial file
    return path


if __name__ == "__main__":
    print(tokenizer_json())
