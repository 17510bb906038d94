#!/usr/bin/env python3
"""Reference ids for the tokenizer parity test, from the Hugging Face `tokenizers` library.
Run once on the GPU machine (it has `tokenizers`); commit its outputs. Reads
tests/fixtures/tokenizer/corpus.jsonl (tools/build_tokenizer_corpus.py) and writes to OUT_DIR:
  parity.jsonl  line i for corpus line i: {"ids": encode(text).ids,
                "dec": decode(ids) if it differs from text, "dec_skip": decode(ids, skip_special) if it
                differs from "dec"}
  decode.jsonl  random id sequences (byte tokens that split UTF-8 characters, specials, random ids):
                {"ids", "dec", "dec_skip"}
Usage: tools/gen_tokenizer_fixture.py OUT_DIR [tokenizer.json] [corpus.jsonl]"""
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main():
    out_dir = sys.argv[1]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tokenizer_path import tokenizer_json
    tok_path = sys.argv[2] if len(sys.argv) > 2 else tokenizer_json()  # unpacks tokenizer.json.xz if needed
    corpus = sys.argv[3] if len(sys.argv) > 3 else "tests/fixtures/tokenizer/corpus.jsonl"
    print("tokenizers", tokenizers.__version__)
    tok = Tokenizer.from_file(tok_path)
    with open(corpus, encoding="utf-8", newline="") as f:
        texts = [json.loads(line) for line in f.read().split("\n") if line]
    os.makedirs(out_dir, exist_ok=True)
    n_tokens = 0
    with open(os.path.join(out_dir, "parity.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            ids = tok.encode(t).ids
            n_tokens += len(ids)
            rec = {"ids": ids}
            dec = tok.decode(ids, skip_special_tokens=False)
            dec_skip = tok.decode(ids, skip_special_tokens=True)
            if dec != t:
                rec["dec"] = dec
            if dec_skip != dec:
                rec["dec_skip"] = dec_skip
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"parity.jsonl: {len(texts)} strings, {n_tokens} tokens")

    rng = random.Random(7)
    b2u = bytes_to_unicode()
    byte_ids = [tok.token_to_id(b2u[b]) for b in range(256)]
    specials = list(range(151643, 151669))
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    with open(os.path.join(out_dir, "decode.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for i in range(500):
            seq = []
            for _ in range(rng.randint(1, 16)):
                r = rng.random()
                if r < 0.5:
                    seq.append(byte_ids[rng.randint(0x80, 0xFF)])
                elif r < 0.65:
                    seq.append(rng.choice(specials))
                elif r < 0.8:
                    seq.append(byte_ids[rng.randint(0, 0x7F)])
                else:
                    seq.append(rng.randrange(vocab_size))
            rec = {"ids": seq, "dec": tok.decode(seq, skip_special_tokens=False),
                   "dec_skip": tok.decode(seq, skip_special_tokens=True)}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("decode.jsonl: 500 sequences")


if __name__ == "__main__":
    main()
