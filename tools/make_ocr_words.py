#!/usr/bin/env python3
"""Writes tools/ocr_words.txt: the word list of the synthetic OCR set (tools/render_ocr_set.py).

Words = the N most frequent English words of the Qwen tokenizer: its vocabulary is ordered by BPE
merge rank, so the lowest ids of the 'Ġword' tokens are the commonest words. A word is kept only if it
is 3..10 lower-case ASCII letters and appears in a real dictionary (Debian package wamerican,
/usr/share/dict/american-english), which drops code fragments such as 'int' or 'pro'.
Run: python3 tools/make_ocr_words.py [N]   (default 2000; needs only the standard library)."""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from tokenizer_path import tokenizer_json  # noqa: E402

TOKENIZER = tokenizer_json()  # unpacks models/tokenizer/tokenizer.json.xz if needed
DICT = "/usr/share/dict/american-english"
# Code words that are also dictionary words but would make the set look like source code.
SKIP = {"int", "pro", "con", "var", "def", "str", "len", "src", "img", "div", "nil", "args", "init",
        "const", "func", "bool", "enum", "impl", "elif", "println", "sizeof", "typedef", "struct"}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with open(TOKENIZER, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    with open(DICT, encoding="utf-8") as f:
        real = {w.strip() for w in f}
    ranked = sorted((i, t[1:]) for t, i in vocab.items()
                    if t.startswith("\u0120") and re.fullmatch(r"[a-z]{3,10}", t[1:]))
    words = [w for _, w in ranked if w in real and w not in SKIP][:n]
    if len(words) < n:
        sys.exit("make_ocr_words: only %d words found" % len(words))
    out = os.path.join(ROOT, "tools", "ocr_words.txt")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    os.replace(out + ".tmp", out)
    print("wrote %d words to %s" % (len(words), out))


if __name__ == "__main__":
    main()
