#!/usr/bin/env python3
"""GPU benchmark, transformers side (bf16, sdpa): the same rows, synthetic images and token counts as
bench/bench_gpu.c, one sample at a time, each timed from the image in memory (a PIL image) to the last
generated token: processor (resize + patchify + tokenization) + generate(min_new_tokens = max_new_tokens
= answer tokens + 1, greedy). Vision-tower time from CUDA events around model.visual. Peak memory:
device memory in use (total - free) right after CUDA initialisation (the context) + torch's peak
reserved memory, and the highest device-used value sampled after each request.
  bench_gpu_ref.py MODEL_DIR TSV [every=10, or N+K: every Nth row from row K] [new_tokens=0]"""
import json
import sys
import time

import numpy as np


def synth_image(w, h, idx):
    y, x = np.mgrid[0:h, 0:w]
    c = np.arange(3)[None, None, :]
    return ((x[..., None] * 7 + y[..., None] * 13 + c * 50 + idx) & 255).astype(np.uint8)


def parse_every(arg):
    """'N' -> (N, 0); 'N+K' -> (N, K): every Nth row from row K (bench_gpu.c reads it the same way)."""
    n, _, k = arg.partition("+")
    every, first = int(n), int(k or 0)
    if every < 1 or first < 0:
        raise SystemExit("bench_gpu_ref: every: %r is not N or N+K" % arg)
    return every, first


def main():
    import torch
    import transformers
    import PIL
    from PIL import Image
    from tokenizers import Tokenizer
    from transformers import Qwen3VLForConditionalGeneration
    mdir, tsv = sys.argv[1], sys.argv[2]
    every, first = parse_every(sys.argv[3] if len(sys.argv) > 3 else "10")
    fixed_new = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    print("torch", torch.__version__, "transformers", transformers.__version__, "PIL", PIL.__version__,
          "device", torch.cuda.get_device_name(0), flush=True)
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    context_mib = (total - free) / 2**20
    tok = Tokenizer.from_file(mdir + "/tokenizer.json")
    rows = []
    with open(tsv) as f:
        next(f)
        for r, line in enumerate(f):
            if r < first or (r - first) % every:
                continue
            fl = line.rstrip("\n").split("\t")
            q, a = json.loads(fl[5]), json.loads(fl[6])
            n_new = fixed_new if fixed_new > 0 else len(tok.encode(a, add_special_tokens=False).ids) + 1
            rows.append((int(fl[0]), int(fl[3]), int(fl[4]), q, n_new))
    t0 = time.time()
    model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    processor, how = None, ""
    try:
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained(mdir)
        how = "AutoProcessor " + type(processor).__name__
    except Exception as e:
        how = "AutoProcessor failed (%s); " % repr(e)[:120]
        from transformers import Qwen3VLProcessor, PreTrainedTokenizerFast, AutoImageProcessor
        processor = Qwen3VLProcessor(image_processor=AutoImageProcessor.from_pretrained(mdir),
                                     tokenizer=PreTrainedTokenizerFast(tokenizer_file=mdir + "/tokenizer.json"),
                                     video_processor=None)
        how += "explicit Qwen3VLProcessor with " + type(processor.image_processor).__name__
    print("load %.1f s; processor: %s" % (time.time() - t0, how), flush=True)
    ev = {}

    def pre(mod, args, kwargs):
        ev["a"] = torch.cuda.Event(enable_timing=True)
        ev["a"].record()

    def post(mod, args, out):
        ev["b"] = torch.cuda.Event(enable_timing=True)
        ev["b"].record()
    model.model.visual.register_forward_pre_hook(pre, with_kwargs=True)
    model.model.visual.register_forward_hook(post)
    torch.cuda.reset_peak_memory_stats()
    peak_used = 0.0
    n = 0
    s_lat = s_vis = s_pre = 0.0
    total_new = 0
    for i in [-1] + list(range(len(rows))):
        idx, w, h, q, n_new = rows[max(i, 0)]
        img = Image.fromarray(synth_image(w, h, idx))
        torch.cuda.synchronize()
        a = time.perf_counter()
        chat = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" + q + "<|im_end|>\n<|im_start|>assistant\n"
        inp = processor(text=[chat], images=[img], return_tensors="pt").to("cuda")
        b = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inp, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
        torch.cuda.synchronize()
        e = time.perf_counter()
        vis_ms = ev["a"].elapsed_time(ev["b"])
        fr, tot = torch.cuda.mem_get_info()
        peak_used = max(peak_used, (tot - fr) / 2**20)
        got = out.shape[1] - inp["input_ids"].shape[1]
        if i >= 0:
            n += 1
            total_new += n_new
            s_lat += e - a
            s_pre += b - a
            s_vis += vis_ms
            print("sample %d %dx%d tokens %d new %d latency_ms %.2f pre %.2f vision %.2f" % (
                idx, w, h, inp["input_ids"].shape[1], got, 1e3 * (e - a), 1e3 * (b - a), vis_ms), flush=True)
    peak = context_mib + torch.cuda.max_memory_reserved() / 2**20
    print(json.dumps({"engine": "transformers-bf16-sdpa", "device": torch.cuda.get_device_name(0), "samples": n,
                      "new_tokens": total_new, "samples_per_s": n / s_lat, "mean_latency_ms": 1e3 * s_lat / n,
                      "mean_preprocess_ms": 1e3 * s_pre / n, "mean_vision_ms": s_vis / n, "context_mib": context_mib,
                      "peak_mib": peak, "peak_device_used_mib": peak_used}), flush=True)


if __name__ == "__main__":
    main()
