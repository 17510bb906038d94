#!/usr/bin/env python3
"""NFC sweep against the reference normalizer (the Rust `tokenizers` NFC, Unicode data of its
build): for every Unicode scalar value c, the NFD of c alone and the NFC of the probe
  "a" + c + U+0323 + c + U+093C + U+0301 + c + U+05B0 + c
(marks of combining classes 220, 230, 7 and 10 around c, so c's canonical combining class and
its compositions with a show). Writes OUT_DIR/nfc_sweep.txt: one line "<cp hex> <NFD hex cps> <NFC
probe hex cps>" for each code point where NFD(c) != c or NFC changes the probe (every other code
point has NFD(c) = c and an unchanged probe); qvl compares its own (utf8proc) results with it.
Usage: tools/gen_tokenizer_nfc_sweep.py OUT_DIR"""
import os
import sys

import tokenizers
from tokenizers import normalizers


def probe(c):
    return "a" + c + "\u0323" + c + "\u093c\u0301" + c + "\u05b0" + c


def hexs(s):
    return ",".join("%X" % ord(ch) for ch in s)


def main():
    out_dir = sys.argv[1]
    print("tokenizers", tokenizers.__version__)
    nfc, nfd = normalizers.NFC(), normalizers.NFD()
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    with open(os.path.join(out_dir, "nfc_sweep.txt"), "w") as f:
        for cp in range(0x110000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            c = chr(cp)
            d = nfd.normalize_str(c)
            p = nfc.normalize_str(probe(c))
            if d != c or p != probe(c):
                f.write("%X %s %s\n" % (cp, hexs(d), hexs(p)))
                n += 1
    print("swept all code points;", n, "lines")


if __name__ == "__main__":
    main()
