#!/usr/bin/env python3
"""Reference half of the tokenizer benchmark (bench/bench_tokenizer.c is the qvl half): load time
of tokenizer.json and single-call encode throughput with the Hugging Face `tokenizers` library,
on the same text (the parity corpus joined by "\\n" and repeated to >= 4 MiB). Also prints the id
count and a hash of the ids, which bench_tokenizer.c must reproduce.
Usage: bench/bench_tokenizer_ref.py [tokenizer.json] [corpus.jsonl]"""
import json
import os
import statistics
import sys
import time

import tokenizers
from tokenizers import Tokenizer

BENCH_BYTES = 4 << 20


def bench_text(corpus):
    with open(corpus, encoding="utf-8", newline="") as f:
        lines = [json.loads(line) for line in f.read().split("\n") if line]
    unit = "\n".join(lines) + "\n"
    reps = -(-BENCH_BYTES // len(unit.encode("utf-8")))
    return unit * reps, lines


def ids_hash(ids):
    h = 0
    for i in ids:
        h = (h * 1000003 + i) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    tok_path = sys.argv[1] if len(sys.argv) > 1 else "models/tokenizer/tokenizer.json"
    corpus = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/tokenizer/corpus.jsonl"
    print(f"tokenizers {tokenizers.__version__}, RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS')}")
    loads = []
    for _ in range(5):
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(tok_path)
        loads.append(time.perf_counter() - t0)
    text, lines = bench_text(corpus)
    nbytes = len(text.encode("utf-8"))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ids = tok.encode(text).ids
        times.append(time.perf_counter() - t0)
    best = min(times)
    batch = lines * max(1, nbytes // len(("\n".join(lines)).encode("utf-8")))
    t0 = time.perf_counter()
    tok.encode_batch(batch)
    tb = time.perf_counter() - t0
    print(json.dumps({
        "load_ms_min": round(min(loads) * 1e3, 1), "load_ms_median": round(statistics.median(loads) * 1e3, 1),
        "text_bytes": nbytes, "ids": len(ids), "ids_hash": ids_hash(ids),
        "encode_s_best": round(best, 4), "encode_MBps": round(nbytes / best / 1e6, 2),
        "encode_batch_lines": len(batch), "encode_batch_MBps_all_cores": round(nbytes / tb / 1e6, 2)}))


if __name__ == "__main__":
    main()
