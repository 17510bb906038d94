#!/usr/bin/env python3
"""Path of the real Qwen3 tokenizer, models/tokenizer/tokenizer.json.

Git stores it xz-compressed (models/tokenizer/tokenizer.json.xz, 1.4 MB instead of 11.4 MB) so the
working tree that travels to the GPU machine stays small. `make` unpacks it here; on machines where
make is not run (the GPU box), tokenizer_json() unpacks it (tools/unpack_xz.py) on first use.
Run as a script, it unpacks (if needed) and prints the path."""
import os

from unpack_xz import ROOT, unpack

TOKENIZER_DIR = os.path.join(ROOT, "models", "tokenizer")


def tokenizer_json():
    """Returns the path of tokenizer.json, unpacking tokenizer.json.xz into place if it is missing."""
    return unpack(os.path.join(TOKENIZER_DIR, "tokenizer.json"))


if __name__ == "__main__":
    print(tokenizer_json())
