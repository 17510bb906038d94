#!/usr/bin/env python3
"""Kernel times of a `ncu --csv --metrics gpu__time_duration.sum` run of bench_gpu (QVL_NO_GRAPH=1,
QVL_BENCH_PROFILE=1), split per sample and stage: a sample starts at k_f32_to_bf16 (pixel upload),
the prefill at the first k_embed, decoding after the prefill's k_argmax.
    ncu_stages.py ncu.csv[.gz]"""
import collections, csv, gzip, sys

path = sys.argv[1]
text = (gzip.open(path, "rt") if path.endswith(".gz") else open(path)).read().splitlines()
rows = [r for r in csv.reader(text) if len(r) >= 15]
start = next(i for i, r in enumerate(rows) if r[0] == "ID")
hdr, rows = rows[start], rows[start + 1:]
kn, mv, gs = hdr.index("Kernel Name"), hdr.index("Metric Value"), hdr.index("Grid Size")
samples, phase = [], None
for r in rows:
    try:
        us = float(r[mv].replace(",", "")) / 1e3
    except ValueError:
        continue
    k = r[kn]
    if k.startswith("k_f32_to_bf16"):
        samples.append({"vision": [], "prefill": [], "decode": []})
        phase = "vision"
    if k.startswith("k_embed") and phase == "vision":
        phase = "prefill"
    if phase:
        samples[-1][phase].append((k, us, r[gs]))
    if k.startswith("k_argmax"):
        phase = "decode"
for i, s in enumerate(samples):
    for ph in ("vision", "prefill", "decode"):
        ks = s[ph]
        print(f"sample {i} {ph}: {len(ks)} kernels, {sum(u for _, u, _ in ks) / 1e3:.3f} ms")
        agg = collections.defaultdict(lambda: [0, 0.0])
        for k, u, g in ks:
            name = k.split("(")[0][:60] + (" grid " + g if "nvjet" in k or "gemv" in k else "")
            agg[name][0] += 1
            agg[name][1] += u
        for name, (c, t) in sorted(agg.items(), key=lambda x: -x[1][1])[:14]:
            print(f"    {t / 1e3:8.3f} ms {c:5d} x {t / c:7.2f} us  {name}")
