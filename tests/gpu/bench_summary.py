#!/usr/bin/env python3
"""Collects one size's logs of tests/gpu/bench_sizes.sh into DIR/../bench_SIZE.json and .md:
qvl (bench/bench_gpu.c) and transformers (bench/bench_gpu_ref.py via bench_ref_mem.py) side by
side: samples/s, mean latency, vision-tower ms, peak memory (qvl: plan, NVML process figure from
`qvl run` on the same plan with the workload's largest image, cudaMemGetInfo device used;
transformers: NVML process figure, torch max allocated / reserved). Missing logs give nulls.
  bench_summary.py SIZE DIR EVERY"""
import json
import os
import re
import sys


def json_line(path, engine):
    """The last JSON line of path whose "engine" is engine, or None."""
    found = None
    try:
        for line in open(path, errors="replace"):
            if line.startswith("{") and '"engine"' in line:
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if o.get("engine") == engine:
                    found = o
    except OSError:
        pass
    return found


def read(path):
    try:
        return open(path, errors="replace").read()
    except OSError:
        return ""


def fmt(v, spec="%.1f"):
    return spec % v if isinstance(v, (int, float)) else "-"


def rows_text(every):
    """'10' -> every 10th row ...; '20+10' -> every 20th row from row 10 ..."""
    n, _, k = every.partition("+")
    return "every %sth row%s of the OCRBench-shaped workload" % (n, " from row " + k if k else "")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    size, d, every = sys.argv[1], sys.argv[2], sys.argv[3]
    q = json_line(os.path.join(d, "qvl.log"), "qvl") or {}
    h = json_line(os.path.join(d, "hf.log"), "transformers-bf16-sdpa") or {}
    hm = json_line(os.path.join(d, "hf.log"), "transformers-mem") or {}
    m = re.search(r"max_model_len (\d+), max_pixels (\d+)", read(os.path.join(d, "qvl.log")))
    run = re.search(r"peak (\d+) MiB \(([^)]*)\)(?:, plan (\d+) MiB \(([-+0-9.]+)%\))?", read(os.path.join(d, "qvl_run.err")))
    try:
        plan = json.load(open(os.path.join(d, "qvl_mem.json")))
    except (OSError, ValueError):
        plan = {}
    detail = None
    for line in read(os.path.join(d, "memjson.log")).splitlines():
        if line.startswith("MEMJSON "):
            detail = json.loads(line[8:])
    qvl = {"samples": q.get("samples"), "new_tokens": q.get("new_tokens"), "samples_per_s": q.get("samples_per_s"),
           "mean_latency_ms": q.get("mean_latency_ms"), "mean_vision_ms": q.get("mean_vision_ms"),
           "mean_prefill_ms": q.get("mean_prefill_ms"), "mean_decode_ms": q.get("mean_decode_ms"),
           "max_model_len": int(m.group(1)) if m else None, "max_pixels": int(m.group(2)) if m else None,
           "peak_nvml_mib": float(run.group(1)) if run else None, "peak_nvml_measure": run.group(2) if run else None,
           "plan_mib": float(run.group(3)) if run and run.group(3) else None,
           "plan_minus_peak_percent": float(run.group(4)) if run and run.group(4) else None,
           "peak_cuda_device_used_mib": q.get("peak_device_used_mib"), "bench_plan_mib": q.get("plan_mib"),
           # bench_gpu's own NVML figure, once it prints one (the proposed bench_gpu.c change)
           "bench_peak_nvml_mib": q.get("peak_nvml_mib"), "bench_nvml_measure": q.get("nvml_measure"),
           "arena_mib": q.get("arena_mib"), "qvl_mem_plan": plan or None, "memory_detail": detail,
           "device": q.get("device")}
    if qvl["peak_nvml_mib"] is None and q.get("peak_nvml_mib"):  # no `qvl run` step: bench_gpu's own figure
        qvl["peak_nvml_mib"], qvl["peak_nvml_measure"] = float(q["peak_nvml_mib"]), q.get("nvml_measure")
        if q.get("plan_mib"):
            qvl["plan_mib"] = float(q["plan_mib"])
            qvl["plan_minus_peak_percent"] = 100.0 * (qvl["plan_mib"] - qvl["peak_nvml_mib"]) / qvl["peak_nvml_mib"]
        qvl["nvml_source"] = "bench_gpu"
    hf = {"samples": h.get("samples"), "samples_per_s": h.get("samples_per_s"), "mean_latency_ms": h.get("mean_latency_ms"),
          "mean_vision_ms": h.get("mean_vision_ms"), "peak_nvml_mib": hm.get("nvml_peak_mib"),
          "peak_nvml_measure": hm.get("nvml_measure"), "torch_max_allocated_mib": hm.get("torch_max_allocated_mib"),
          "torch_max_reserved_mib": hm.get("torch_max_reserved_mib"), "bench_peak_mib": h.get("peak_mib"),
          "peak_device_used_mib": h.get("peak_device_used_mib"), "device": h.get("device")}
    speed = qvl["samples_per_s"] / hf["samples_per_s"] if qvl["samples_per_s"] and hf["samples_per_s"] else None
    out = {"size": size, "every": every, "rows": rows_text(every),
           "qvl": qvl, "transformers": hf, "speedup": speed}
    base = os.path.join(os.path.dirname(os.path.abspath(d)), "bench_%s" % size)
    json.dump(out, open(base + ".json.tmp", "w"), indent=1)
    os.replace(base + ".json.tmp", base + ".json")
    md = ["# %s: qvl vs transformers (bf16, sdpa), %s, one run" % (size, rows_text(every)), "",
          "Device: %s" % (qvl["device"] or hf["device"] or "?"), "",
          "| engine | samples | samples/s | mean latency (ms) | vision tower (ms) | peak memory (MiB) |",
          "|---|---|---|---|---|---|",
          "| qvl | %s | %s | %s | %s | NVML %s (%s); plan %s (%s%%); cudaMemGetInfo device used %s |" % (
              fmt(qvl["samples"], "%d"), fmt(qvl["samples_per_s"], "%.2f"), fmt(qvl["mean_latency_ms"]),
              fmt(qvl["mean_vision_ms"]), fmt(qvl["peak_nvml_mib"], "%.0f"), qvl["peak_nvml_measure"] or "-",
              fmt(qvl["plan_mib"], "%.0f"), fmt(qvl["plan_minus_peak_percent"], "%+.1f"),
              fmt(qvl["peak_cuda_device_used_mib"], "%.0f")),
          "| transformers bf16 sdpa | %s | %s | %s | %s | NVML %s (%s); torch max allocated %s, reserved %s |" % (
              fmt(hf["samples"], "%d"), fmt(hf["samples_per_s"], "%.2f"), fmt(hf["mean_latency_ms"]),
              fmt(hf["mean_vision_ms"]), fmt(hf["peak_nvml_mib"], "%.0f"), hf["peak_nvml_measure"] or "-",
              fmt(hf["torch_max_allocated_mib"], "%.0f"), fmt(hf["torch_max_reserved_mib"], "%.0f")),
          "", "qvl / transformers: %s" % (fmt(speed, "%.2fx")), "",
          ("qvl's NVML figure is bench_gpu's own (its process, sampled after the timed rows); the plan is "
           "bench_gpu's (--max-model-len %s --max-pixels %s: the workload's largest image and longest prompt)."
           if qvl.get("nvml_source") == "bench_gpu" else
           "qvl's NVML figure comes from `qvl run` in its own process on the same plan as the benchmark "
           "(--max-model-len %s --max-pixels %s, the arena the benchmark reserved) with the workload's largest "
           "image; the plan is the engine's (CUDA context measured by NVML).") % (
              fmt(qvl["max_model_len"], "%d"), fmt(qvl["max_pixels"], "%d"))]
    open(base + ".md", "w").write("\n".join(md) + "\n")
    print("\n".join(md[4:7]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
