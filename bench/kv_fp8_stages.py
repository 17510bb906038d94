#!/usr/bin/env python3
"""Per-stage relative L2 of the FP8 KV cache's activations against the float32 cache's, from two
QVL_DUMP folders per prompt (bench/kv_fp8_cpu.sh writes them). Standard library only (.npy float32).

usage: kv_fp8_stages.py DUMP_ROOT  (DUMP_ROOT/<sample>/{bf16,fp8}/<stage>.npy)
Prints one row per stage: the mean and worst relative L2 over the prompts (worst sample named)."""
import array
import ast
import math
import os
import sys


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise SystemExit(f"{path}: not a .npy file")
    hlen = int.from_bytes(data[8:10], "little") if data[6] == 1 else int.from_bytes(data[8:12], "little")
    off = 10 if data[6] == 1 else 12
    header = ast.literal_eval(data[off:off + hlen].decode("latin1"))
    if header["descr"] not in ("<f4", "|f4"):
        raise SystemExit(f"{path}: {header['descr']}, not float32")
    a = array.array("f")
    a.frombytes(data[off + hlen:])
    return a


def rel_l2(ref, got):
    num = sum((float(g) - float(r)) ** 2 for r, g in zip(ref, got))
    den = sum(float(r) ** 2 for r in ref)
    return math.sqrt(num / den) if den > 0 else 0.0


def stage_key(name):
    # text.embed, text.layer0.in, text.layer0.out, ..., text.norm; vision stages first
    parts = name.replace(".npy", "").split(".")
    order = {"embed": -1, "norm": 10**6}
    if parts[0] == "vision":
        return (0, name)
    if len(parts) >= 2 and parts[1].startswith("layer"):
        return (1, int(parts[1][5:]) * 2 + (parts[2] == "out"), name)
    return (1, order.get(parts[1], 0), name)


def main():
    root = sys.argv[1]
    rows = {}
    for sample in sorted(os.listdir(root)):
        a, b = os.path.join(root, sample, "bf16"), os.path.join(root, sample, "fp8")
        if not os.path.isdir(a) or not os.path.isdir(b):
            continue
        for name in os.listdir(a):
            if not name.endswith(".npy") or not os.path.exists(os.path.join(b, name)):
                continue
            rows.setdefault(name, []).append((rel_l2(read_npy(os.path.join(a, name)), read_npy(os.path.join(b, name))),
                                              sample))
    print("| stage | prompts | mean rel. L2 | worst rel. L2 (prompt) |")
    print("|---|---|---|---|")
    for name in sorted(rows, key=stage_key):
        v = rows[name]
        worst = max(v)
        print(f"| {name[:-4]} | {len(v)} | {sum(x for x, _ in v) / len(v):.3e} | {worst[0]:.3e} ({worst[1]}) |")


if __name__ == "__main__":
    main()
