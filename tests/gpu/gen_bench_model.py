#!/usr/bin/env python3
"""The random-weight real-shape checkpoint of tools/gen_real_shape_models.py (same config, weights,
preprocessor/generation config and tokenizer), without the F32/BF16 reference passes that `gen`
adds for the parity check: a benchmark needs only the model, and the 8B F32 reference alone would
take most of a device call. Run on the GPU machine.
  gen_bench_model.py SIZE MODEL_DIR"""
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import gen_real_shape_models as g  # noqa: E402
from tokenizer_path import tokenizer_json  # noqa: E402


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in g.SIZES:
        print(__doc__)
        return 2
    import torch
    from transformers import Qwen3VLForConditionalGeneration
    size, mdir = sys.argv[1], sys.argv[2]
    t0 = time.time()
    tmp = mdir.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration(g.build_config(g.SIZES[size])).to(torch.bfloat16)
    g.init_weights(model, 1234)
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    for f in os.listdir(tmp):
        if f.endswith(".json") and f not in ("config.json", "model.safetensors.index.json"):
            os.remove(os.path.join(tmp, f))
    json.dump(g.PREPROC, open(os.path.join(tmp, "preprocessor_config.json"), "w"), indent=2)
    json.dump(g.GENCFG, open(os.path.join(tmp, "generation_config.json"), "w"), indent=2)
    shutil.copy(tokenizer_json(), os.path.join(tmp, "tokenizer.json"))
    shutil.rmtree(mdir, ignore_errors=True)
    os.replace(tmp, mdir)  # a half-written model never looks finished
    print("%s model written to %s in %.1f s" % (size, mdir, time.time() - t0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
