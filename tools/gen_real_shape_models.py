#!/usr/bin/env python3
"""Real-shape random-weight Qwen3-VL checkpoints (2B / 4B / 8B dimensions of docs/model.md 1.2)
and transformers references for the CUDA backend's parity check. Run on the GPU machine.

  gen_real_shape_models.py gen SIZE OUTDIR [--tf 2000] [--image 1024x768]
      OUTDIR/model/           config.json, BF16 safetensors, preprocessor/generation config, tokenizer.json
      OUTDIR/input_ids.npy    the prompt (chat template, one synthetic image), int64
      OUTDIR/pixel_values.npy, image_grid_thw.npy
      OUTDIR/tf_ids.npy       the teacher-forced continuation (random ordinary tokens), int64
      OUTDIR/ref_f32/, OUTDIR/hf_bf16/   stages named as qvl dumps them (prompt rows only), logits_last,
                              top1 (argmax at the last prompt position and after each continuation token)
    The F32 reference is transformers with float32 weights (the BF16 checkpoint's values) and TF32 off;
    transformers BF16 is the same checkpoint loaded in bfloat16, sdpa attention, as users run it.
  gen_real_shape_models.py compare OUTDIR
      reads OUTDIR/qvl/ (written by `qvl-gpu-tests gpu_real_shape` with QVL_REAL_DIR=OUTDIR) and prints,
      per stage, the relative L2 error against F32 of qvl and of transformers BF16, and the teacher-forced
      top-1 agreement of both; writes OUTDIR/parity.json; exit 1 if qvl is worse than 1.5x transformers.
"""
import json
import math
import os
import shutil
import sys
import time

import numpy as np

IMAGE_PAD, VIDEO_PAD, VSTART, VEND = 151655, 151656, 151652, 151653
IM_START, IM_END, EOT = 151644, 151645, 151643
VOCAB = 151936

SIZES = {
    "2B": dict(D=2048, I=6144, L=28, H=16, tie=True, vd=24, vD=1024, vI=4096, ds=[5, 11, 17]),
    "4B": dict(D=2560, I=9728, L=36, H=32, tie=True, vd=24, vD=1024, vI=4096, ds=[5, 11, 17]),
    "8B": dict(D=4096, I=12288, L=36, H=32, tie=False, vd=27, vD=1152, vI=4304, ds=[8, 16, 24]),
}
PREPROC = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "do_convert_rgb": True, "resample": 3,
    "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
}
GENCFG = {"bos_token_id": EOT, "pad_token_id": EOT, "do_sample": False, "eos_token_id": [IM_END, EOT]}


def log(*a):
    print(*a, flush=True)


def build_config(s):
    from transformers import Qwen3VLConfig
    text = dict(vocab_size=VOCAB, hidden_size=s["D"], intermediate_size=s["I"], num_hidden_layers=s["L"],
                num_attention_heads=s["H"], num_key_value_heads=8, head_dim=128, hidden_act="silu",
                max_position_embeddings=262144, rms_norm_eps=1e-6, attention_bias=False,
                tie_word_embeddings=s["tie"], bos_token_id=EOT, eos_token_id=IM_END,
                rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
                                 "mrope_interleaved": True})
    vision = dict(depth=s["vd"], hidden_size=s["vD"], hidden_act="gelu_pytorch_tanh", intermediate_size=s["vI"],
                  num_heads=16, in_channels=3, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  out_hidden_size=s["D"], num_position_embeddings=2304, deepstack_visual_indexes=s["ds"])
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD,
                         vision_start_token_id=VSTART, vision_end_token_id=VEND, tie_word_embeddings=s["tie"])


def init_weights(model, seed):
    """Linears ~ N(0, 1/fan_in), norms 1 +- 0.1, biases N(0, 0.05^2), embeddings N(0, 0.2^2), the vision
    position table N(0, 0.5^2), a separate lm_head N(0, 0.5^2 / sqrt(D)) (as the tiny fixtures, scaled)."""
    import torch
    g = torch.Generator(device="cuda").manual_seed(seed)
    done = set()
    with torch.no_grad():
        for name, p in model.named_parameters(remove_duplicate=False):
            if id(p) in done:
                continue
            done.add(id(p))
            if "norm" in name and name.endswith("weight"):
                std, mean = 0.1, 1.0
            elif name.endswith("bias"):
                std, mean = 0.05, 0.0
            elif "pos_embed" in name:
                std, mean = 0.5, 0.0
            elif "embed_tokens" in name:
                std, mean = 0.2, 0.0
            elif name.startswith("lm_head"):
                std, mean = 0.5 / math.sqrt(math.sqrt(p.shape[1])), 0.0
            else:
                std, mean = 1.0 / math.sqrt(p[0].numel()), 0.0
            v = torch.randn(p.shape, generator=g, device="cuda", dtype=torch.float32) * std + mean
            p.copy_(v.to(p.dtype))


def synth_image(w, h, idx=0):
    y, x = np.mgrid[0:h, 0:w]
    c = np.arange(3)[None, None, :]
    return ((x[..., None] * 7 + y[..., None] * 13 + c * 50 + idx) & 255).astype(np.uint8)


def patchify(a):
    """Spec 2.1 for an image whose sides are multiples of 32 within the pixel limits (no resize)."""
    h, w = a.shape[:2]
    x = (a.astype(np.float32) / 255.0 - 0.5) / 0.5
    f = np.stack([x.transpose(2, 0, 1)] * 2)
    gh, gw = h // 16, w // 16
    f = f.reshape(1, 2, 3, gh // 2, 2, 16, gw // 2, 2, 16).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return f.reshape(gh * gw, 1536).astype(np.float32), [1, gh, gw]


def write_model(size, mdir):
    """Writes the random-weight BF16 checkpoint of SIZE (seed 1234) into the existing folder mdir:
    config, safetensors, preprocessor/generation config, tokenizer.json. Returns the tokenizer path."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration(build_config(SIZES[size])).to(torch.bfloat16)
    init_weights(model, 1234)
    model.save_pretrained(mdir, safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    for f in os.listdir(mdir):
        if f.endswith(".json") and f not in ("config.json", "model.safetensors.index.json"):
            os.remove(os.path.join(mdir, f))
    json.dump(PREPROC, open(os.path.join(mdir, "preprocessor_config.json"), "w"), indent=2)
    json.dump(GENCFG, open(os.path.join(mdir, "generation_config.json"), "w"), indent=2)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tokenizer_path import tokenizer_json
    tok_path = tokenizer_json()  # unpacks tokenizer.json.xz if needed
    shutil.copy(tok_path, os.path.join(mdir, "tokenizer.json"))
    return tok_path


def gen(size, out, n_tf, image):
    import torch
    import transformers
    from transformers import Qwen3VLForConditionalGeneration
    from tokenizers import Tokenizer
    log("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
        "numpy", np.__version__, "device", torch.cuda.get_device_name(0))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    mdir = os.path.join(out, "model")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(mdir)
    t0 = time.time()
    tok_path = write_model(size, mdir)
    log("%s checkpoint written in %.1f s:" % (size, time.time() - t0), sorted(os.listdir(mdir)))

    w, h = (int(v) for v in image.split("x"))
    px, grid = patchify(synth_image(w, h))
    n_img = grid[1] * grid[2] // 4
    chat = ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * n_img +
            "<|vision_end|>What is written in the image? Answer in detail.<|im_end|>\n<|im_start|>assistant\n")
    ids = Tokenizer.from_file(tok_path).encode(chat, add_special_tokens=False).ids
    assert sum(1 for i in ids if i == IMAGE_PAD) == n_img
    rng = np.random.default_rng(7)
    tf = rng.integers(0, 151643, size=n_tf).astype(np.int64)
    n = len(ids)
    np.save(os.path.join(out, "input_ids.npy"), np.array(ids, dtype=np.int64))
    np.save(os.path.join(out, "pixel_values.npy"), px)
    np.save(os.path.join(out, "image_grid_thw.npy"), np.array([grid], dtype=np.int64))
    np.save(os.path.join(out, "tf_ids.npy"), tf)
    log("prompt %d tokens (%d image), continuation %d" % (n, n_img, n_tf))

    full = torch.tensor([ids + tf.tolist()], device="cuda")
    for tag, dtype in (("ref_f32", torch.float32), ("hf_bf16", torch.bfloat16)):
        t0 = time.time()
        model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, dtype=dtype, attn_implementation="sdpa").cuda().eval()
        inner = model.model
        vis, lm = inner.visual, inner.language_model
        cap = {}

        def first(o):
            return o[0] if isinstance(o, (tuple, list)) else o

        def hook(name, rows=None):
            def f(mod, args, o):
                x = first(o).detach()
                if x.dim() == 3:
                    x = x[0]
                if rows is not None:
                    x = x[:rows]
                cap[name] = x.float().cpu().numpy()
            return f
        hs = [vis.merger.register_forward_hook(hook("vision.merger")), lm.norm.register_forward_hook(hook("text.norm", n))]
        for k, mg in enumerate(vis.deepstack_merger_list):
            hs.append(mg.register_forward_hook(hook("vision.deepstack%d" % k)))
        for l, layer in enumerate(lm.layers):
            hs.append(layer.register_forward_hook(hook("text.layer%d.out" % l, n)))
        inp = {"input_ids": full, "attention_mask": torch.ones_like(full),
               "pixel_values": torch.from_numpy(px).cuda().to(dtype), "image_grid_thw": torch.tensor([grid], device="cuda"),
               "mm_token_type_ids": (full == IMAGE_PAD).long()}
        with torch.no_grad():
            try:
                o = model(**inp, use_cache=False)
            except TypeError:
                inp.pop("mm_token_type_ids")
                o = model(**inp, use_cache=False)
            lg = o.logits[0]
            top1 = lg[n - 1:].float().argmax(dim=-1).to(torch.int32).cpu().numpy()
            last = lg[n - 1].float().cpu().numpy()
        for x in hs:
            x.remove()
        d = os.path.join(out, tag)
        os.makedirs(d, exist_ok=True)
        for k, v in cap.items():
            np.save(os.path.join(d, k + ".npy"), v)
        np.save(os.path.join(d, "top1.npy"), top1)
        np.save(os.path.join(d, "logits_last.npy"), last)
        log("%s: %d stages, %d top-1 positions, logits dtype %s, %.1f s, peak %.0f MiB" % (
            tag, len(cap), len(top1), o.logits.dtype, time.time() - t0, torch.cuda.max_memory_allocated() / 2**20))
        del model, o, lg
        torch.cuda.empty_cache()


def rel_l2(a, ref):
    a = a.astype(np.float64).reshape(-1)
    ref = ref.astype(np.float64).reshape(-1)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30))


def compare(out):
    ref, hf, q = (os.path.join(out, x) for x in ("ref_f32", "hf_bf16", "qvl"))
    rows, ok = [], True
    names = sorted(f[:-4] for f in os.listdir(ref) if f.endswith(".npy") and f[:-4] not in ("top1",))
    def order(nm):
        if nm.startswith("vision"):
            return (0, nm)
        if nm.startswith("text.layer"):
            return (1, int(nm.split(".")[1][5:]))
        return (2, nm)
    for nm in sorted(names, key=order):
        if not os.path.exists(os.path.join(q, nm + ".npy")):
            log("%-22s missing from qvl" % nm)
            ok = False
            continue
        r = np.load(os.path.join(ref, nm + ".npy"))
        eh = rel_l2(np.load(os.path.join(hf, nm + ".npy")), r)
        qa = np.load(os.path.join(q, nm + ".npy"))
        if qa.size != r.size:
            log("%-22s size %d vs ref %d" % (nm, qa.size, r.size))
            ok = False
            continue
        eq = rel_l2(qa, r)
        ratio = eq / max(eh, 1e-30)
        good = ratio <= 1.5
        ok = ok and good
        rows.append({"stage": nm, "qvl_rel_l2": eq, "hf_bf16_rel_l2": eh, "ratio": ratio})
        log("%-22s qvl %.3e  transformers-bf16 %.3e  ratio %.2f %s" % (nm, eq, eh, ratio, "" if good else "  <-- FAIL"))
    t_ref = np.load(os.path.join(ref, "top1.npy"))
    t_hf = np.load(os.path.join(hf, "top1.npy"))
    t_q = np.load(os.path.join(q, "top1.npy"))
    m = min(len(t_ref), len(t_q))
    a_q = float(np.mean(t_q[:m] == t_ref[:m]))
    a_hf = float(np.mean(t_hf[:m] == t_ref[:m]))
    good = (1 - a_q) <= 1.5 * (1 - a_hf) + 1e-12
    ok = ok and good
    log("teacher-forced top-1 agreement with F32 over %d positions: qvl %.4f, transformers-bf16 %.4f %s" % (
        m, a_q, a_hf, "" if good else "<-- FAIL"))
    res = {"stages": rows, "positions": m, "qvl_top1_agree": a_q, "hf_bf16_top1_agree": a_hf, "pass": ok}
    json.dump(res, open(os.path.join(out, "parity.json"), "w"), indent=1)
    log("PARITY", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def main():
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "gen":
        n_tf = int(a[a.index("--tf") + 1]) if "--tf" in a else 2000
        image = a[a.index("--image") + 1] if "--image" in a else "1024x768"
        gen(a[1], a[2], n_tf, image)
        return 0
    if len(a) == 2 and a[0] == "compare":
        return compare(a[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
