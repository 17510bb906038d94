#!/usr/bin/env python3
"""Exhaustive code point sweep for the tokenizer: every Unicode scalar value c (surrogates
excluded) is encoded inside the probe  "a" + c + "1" + c + " " + c + c + "\\n" + c  with the
Hugging Face `tokenizers` library, so c's regex class (\\p{L}, \\p{N}, \\s, other), its NFC behaviour
next to a letter and its byte-level BPE are all exercised. Writes to OUT_DIR:
  codepoint_blocks.txt  one line per block of 256 code points: "<first cp hex> <hash hex>", the hash
                        combining the per-code-point id hashes (committed; tests compare to it)
  codepoint_hashes.bin  the per-code-point hashes, uint64 little-endian, 0x110000 of them (for
                        finding the exact code points of a differing block; not committed)
  split_blocks.txt      the same for the pre-tokenizer alone (no normalizer): per code point, a hash of
                        the byte lengths of the pieces the Split regex cuts SPLIT_PROBE into; this is
                        where a letter/number/space/other class difference shows (committed)
  split_hashes.bin      per-code-point split hashes (not committed)
  categories.txt        this Python's Unicode version and general categories as ranges
                        "<first hex> <last hex> <category>" (to classify differing code points)
Usage: tools/gen_tokenizer_codepoints.py OUT_DIR [tokenizer.json]"""
import os
import struct
import sys
import unicodedata

import tokenizers
from tokenizers import Tokenizer

M = 0xFFFFFFFFFFFFFFFF


def probe(c):
    return "a" + c + "1" + c + " " + c + c + "\n" + c


def split_probe(c):
    return "a" + c + c + "'s" + c + "1" + c + "\n" + c + "x " + c + "  " + c


def ids_hash(ids):
    h = len(ids)
    for i in ids:
        h = (h * 1000003 + i) & M
    return h


def main():
    out_dir = sys.argv[1]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tokenizer_path import tokenizer_json
    tok_path = sys.argv[2] if len(sys.argv) > 2 else tokenizer_json()  # unpacks tokenizer.json.xz if needed
    print("tokenizers", tokenizers.__version__)
    tok = Tokenizer.from_file(tok_path)
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    hashes = [0] * 0x110000
    step = 65536
    for k in range(0, len(cps), step):
        chunk = cps[k:k + step]
        encs = tok.encode_batch([probe(chr(cp)) for cp in chunk])
        for cp, e in zip(chunk, encs):
            hashes[cp] = ids_hash(e.ids)
    split = [0] * 0x110000
    pre = tok.pre_tokenizer
    for cp in cps:
        pieces = pre.pre_tokenize_str(split_probe(chr(cp)))
        split[cp] = ids_hash([len(p) for p, _ in pieces])  # ByteLevel pieces: one char per byte
    os.makedirs(out_dir, exist_ok=True)
    for name, hs in (("codepoint", hashes), ("split", split)):
        with open(os.path.join(out_dir, name + "_hashes.bin"), "wb") as f:
            f.write(struct.pack("<%dQ" % len(hs), *hs))
        with open(os.path.join(out_dir, name + "_blocks.txt"), "w") as f:
            for b in range(0, 0x110000, 256):
                h = 0
                for cp in range(b, b + 256):
                    h = (h * 1000003 + hs[cp]) & M
                f.write("%06x %016x\n" % (b, h))
    with open(os.path.join(out_dir, "categories.txt"), "w") as f:
        f.write("# unicodedata %s\n" % unicodedata.unidata_version)
        start, cat = 0, unicodedata.category(chr(0))
        for cp in range(1, 0x110001):
            c = unicodedata.category(chr(cp)) if cp < 0x110000 else None
            if c != cat:
                f.write("%x %x %s\n" % (start, cp - 1, cat))
                start, cat = cp, c
    print("swept", len(cps), "code points; unicodedata", unicodedata.unidata_version)


if __name__ == "__main__":
    main()
