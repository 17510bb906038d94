#!/usr/bin/env python3
"""The transformers side of tests/gpu/bench_eval.sh at its best batched setting: bf16, sdpa, left
padding, greedy, max_new_tokens = min_new_tokens = NEW, on the same OCRBench.json dataset that
`qvl eval` reads (images loaded from disk, as qvl does). The batch is the largest of BATCHES that
runs the largest images of the dataset without running out of memory (tried on them first, largest
batch first); then the whole dataset runs in that batch, timed from loading the images to the last
token (HF_MAX_SECONDS caps that time: the samples done so far then count, "partial" says so). Prints one JSON line: samples/s, batch, peak memory (context + torch's peak reserved).
  bench_hf_batched.py MODEL_DIR OCRBench.json [NEW=8] [BATCHES=64,32,16,8,4,2,1]"""
import json
import os
import sys
import time


def main():
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration
    mdir, data = sys.argv[1], sys.argv[2]
    new = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    batches = [int(x) for x in (sys.argv[4] if len(sys.argv) > 4 else "64,32,16,8,4,2,1").split(",")]
    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    context_mib = (total - free) / 2**20
    items = json.load(open(data))
    base = os.path.dirname(data)
    paths = [os.path.join(base, it["image_path"]) if not os.path.isabs(it["image_path"]) else it["image_path"]
             for it in items]
    model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, dtype=torch.bfloat16,
                                                            attn_implementation="sdpa").cuda().eval()
    proc = AutoProcessor.from_pretrained(mdir)
    proc.tokenizer.padding_side = "left"

    def run(idx):
        imgs = [Image.open(paths[i]).convert("RGB") for i in idx]
        chats = ["<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" + items[i]["question"] +
                 "<|im_end|>\n<|im_start|>assistant\n" for i in idx]
        inp = proc(text=chats, images=imgs, return_tensors="pt", padding=True).to("cuda")
        with torch.no_grad():
            model.generate(**inp, max_new_tokens=new, min_new_tokens=new, do_sample=False)

    sizes = []
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            sizes.append((im.size[0] * im.size[1], i))
    largest = [i for _, i in sorted(sizes, reverse=True)]
    chosen = None
    for bs in batches:
        try:
            run(largest[:bs])
            torch.cuda.synchronize()
            chosen = bs
            break
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            print("batch %d: out of memory on the largest images" % bs, file=sys.stderr, flush=True)
    if chosen is None:
        raise SystemExit("bench_hf_batched: not even batch 1 fits")
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    done = 0
    cap = float(os.environ.get("HF_MAX_SECONDS", "0"))  # 0: no cap; else stop after the batch that passes it
    for s in range(0, len(items), chosen):
        run(list(range(s, min(s + chosen, len(items)))))
        done = min(s + chosen, len(items))
        if cap and time.perf_counter() - t0 > cap:
            break
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps({"engine": "transformers-bf16-sdpa-batched", "transformers": transformers.__version__,
                      "device": torch.cuda.get_device_name(0), "batch": chosen, "samples": done,
                      "partial": done < len(items),
                      "max_new_tokens": new, "seconds": dt, "samples_per_s": done / dt,
                      "peak_mib": context_mib + torch.cuda.max_memory_reserved() / 2**20}), flush=True)


if __name__ == "__main__":
    main()
