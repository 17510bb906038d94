#!/usr/bin/env python3
"""Builds the tiny random-weight Qwen3-VL checkpoints and reference tensors of tests/fixtures/tiny/.

Run on the GPU machine (torch + transformers 5.x); the reference itself runs on the CPU in float32
(no TF32, deterministic):   python3 tools/gen_tiny_models.py OUTDIR
OUTDIR receives tiny/ (run it with OUTDIR = tests/fixtures so the tokenizer symlink resolves):
  tied/, untied/            model folders: config.json, model.safetensors (BF16), preprocessor_config.json,
                            generation_config.json, tokenizer.json -> relative symlink to models/tokenizer
  images/*.png              synthetic test images
  ref/<case>/               model-independent inputs: prompt.txt, input_ids, pixel_values, image_grid_thw
  ref/<case>/<model>/       reference tensors named as qvl dumps them (QVL_DUMP), see NAMES below.
Two models: "tied" (2B/4B-style, lm_head tied to embed_tokens) and "untied" (8B-style, lm_head.weight
stored). Both use the real vocabulary (151936) and the real special-token ids. Weights are drawn with
a larger spread than the default init so greedy choices are rarely near-ties.
"""
import inspect
import json
import math
import os
import shutil
import sys

import numpy as np
import torch

SEED = 1234
VOCAB = 151936
IMAGE_PAD, VIDEO_PAD, VSTART, VEND = 151655, 151656, 151652, 151653
IM_START, IM_END, EOT = 151644, 151645, 151643
N_GEN = 32

MODELS = {
    # 2B/4B-style: tied lm_head, 3 deepstack taps, text head_dim 32 with mrope [6,5,5] (sum 16 = 32/2).
    "tied": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, mrope_section=[6, 5, 5]),
        vision=dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, deepstack_visual_indexes=[1, 2, 3]),
        tie=True),
    # 8B-style: separate lm_head, 2 deepstack taps, head_dim 16 with mrope [4,2,2] (sum 8 = 16/2).
    "untied": dict(
        text=dict(hidden_size=16, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, mrope_section=[4, 2, 2]),
        vision=dict(depth=3, hidden_size=48, intermediate_size=80, num_heads=2, deepstack_visual_indexes=[0, 2]),
        tie=False),
}

# (name, height, width): aligned sizes keep the resize an identity; 80x112 exercises the resize.
IMAGES = [("grad64", 64, 64), ("shapes96x128", 96, 128), ("tall128x64", 128, 64), ("odd80x112", 80, 112)]

CASES = [
    ("img_square", ["grad64"], "Describe this image."),
    ("img_wide", ["shapes96x128"], "What is written here? Answer briefly."),
    ("img_resize", ["odd80x112"], "How many shapes?"),
    ("two_images", ["grad64", "tall128x64"], "Compare the two pictures."),
    ("text_only", [], "Hello, who are you?"),
]
FULL_LOGITS_CASE = "img_wide"     # full last-position logits stored for this case only (size budget)
TOPK = 256

PREPROC = {
    "size": {"longest_edge": 16777216, "shortest_edge": 4096},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "do_convert_rgb": True, "resample": 3,
    "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
}
GENCFG = {"bos_token_id": EOT, "pad_token_id": EOT, "do_sample": True, "eos_token_id": [IM_END, EOT],
          "temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.0}


def log(*a):
    print(*a, flush=True)


def make_image(name, h, w):
    """Deterministic synthetic RGB image: gradients, stripes and filled shapes."""
    rng = np.random.default_rng(sum(map(ord, name)))
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    img = np.stack([r, g, b], -1)
    for _ in range(4):
        cy, cx, rad = rng.integers(0, h), rng.integers(0, w), rng.integers(6, 20)
        col = rng.integers(0, 256, 3)
        m = (y - cy) ** 2 + (x - cx) ** 2 < rad ** 2
        img[m] = col
    img += rng.normal(0, 8, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def build_config(spec):
    from transformers import Qwen3VLConfig, Qwen3VLTextConfig
    t, v = spec["text"], spec["vision"]
    text = dict(vocab_size=VOCAB, hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
                num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
                num_key_value_heads=t["num_key_value_heads"], head_dim=t["head_dim"], hidden_act="silu",
                max_position_embeddings=262144, rms_norm_eps=1e-6, attention_bias=False,
                tie_word_embeddings=spec["tie"], bos_token_id=EOT, eos_token_id=IM_END)
    rope = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": t["mrope_section"],
            "mrope_interleaved": True}
    if "rope_parameters" in inspect.signature(Qwen3VLTextConfig.__init__).parameters:
        text["rope_parameters"] = rope
    else:
        text["rope_theta"] = 5000000.0
        text["rope_scaling"] = {k: rope[k] for k in ("rope_type", "mrope_section", "mrope_interleaved")}
    vision = dict(depth=v["depth"], hidden_size=v["hidden_size"], hidden_act="gelu_pytorch_tanh",
                  intermediate_size=v["intermediate_size"], num_heads=v["num_heads"], in_channels=3,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  out_hidden_size=t["hidden_size"], num_position_embeddings=2304,
                  deepstack_visual_indexes=v["deepstack_visual_indexes"])
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_PAD,
                         video_token_id=VIDEO_PAD, vision_start_token_id=VSTART, vision_end_token_id=VEND,
                         tie_word_embeddings=spec["tie"])


@torch.no_grad()
def init_weights(model, seed):
    """Wider-than-default init: linears ~ N(0, 1/fan_in), norms 1 +- 0.1, biases N(0, 0.05^2),
    embeddings N(0, 0.2^2), the learned vision pos-embed table N(0, 0.5^2), lm_head N(0, 0.5^2)."""
    g = torch.Generator().manual_seed(seed)
    done = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in done:
            continue
        done.add(id(p))
        def rn(std):
            return torch.randn(p.shape, generator=g, dtype=torch.float32) * std
        if "norm" in name and name.endswith("weight"):
            val = 1.0 + rn(0.1)
        elif name.endswith("bias"):
            val = rn(0.05)
        elif "pos_embed" in name:
            val = rn(0.5)
        elif "embed_tokens" in name:
            val = rn(0.2)
        elif name.startswith("lm_head"):
            val = rn(0.5)
        else:
            fan_in = p[0].numel()
            val = rn(1.0 / math.sqrt(fan_in))
        p.copy_(val.to(p.dtype))


def save_npy(d, name, arr):
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, name + ".npy"), arr)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out"
    root = os.path.join(out, "tiny")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    import transformers
    log("torch", torch.__version__, "transformers", transformers.__version__, "numpy", np.__version__)
    try:
        import PIL, tokenizers
        log("PIL", PIL.__version__, "tokenizers", tokenizers.__version__)
    except Exception as e:  # noqa
        log("version probe:", e)
    torch.manual_seed(SEED)
    torch.set_num_threads(8)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(repo, "tools"))
    from tokenizer_path import tokenizer_json
    tok_path = tokenizer_json()  # unpacks tokenizer.json.xz if needed

    from PIL import Image
    img_dir = os.path.join(root, "images")
    os.makedirs(img_dir)
    pil = {}
    for name, h, w in IMAGES:
        Image.fromarray(make_image(name, h, w)).save(os.path.join(img_dir, name + ".png"))
        pil[name] = Image.open(os.path.join(img_dir, name + ".png"))
        pil[name].load()

    from transformers import Qwen3VLForConditionalGeneration
    model_dirs = {}
    for mname, spec in MODELS.items():
        cfg = build_config(spec)
        torch.manual_seed(SEED)
        model = Qwen3VLForConditionalGeneration(cfg).float()
        init_weights(model, SEED + (0 if spec["tie"] else 1))
        mdir = os.path.join(root, mname)
        model.to(torch.bfloat16).save_pretrained(mdir, safe_serialization=True)
        for f in os.listdir(mdir):
            if f.endswith(".json") and f not in ("config.json",):
                os.remove(os.path.join(mdir, f))
        with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
            json.dump(PREPROC, f, indent=2)
        with open(os.path.join(mdir, "generation_config.json"), "w") as f:
            json.dump(GENCFG, f, indent=2)
        # tokenizer.json: relative symlink to the shared copy (tests/fixtures/tiny/<m>/ is 4 deep).
        os.symlink("../../../../models/tokenizer/tokenizer.json", os.path.join(mdir, "tokenizer.json"))
        model_dirs[mname] = mdir
        from safetensors import safe_open
        with safe_open(os.path.join(mdir, "model.safetensors"), "pt") as sf:
            keys = sorted(sf.keys())
            log(mname, "tensors:", len(keys), "lm_head present:", "lm_head.weight" in keys,
                "dtypes:", sorted({str(sf.get_tensor(k).dtype) for k in keys}))
        log(mname, "config.json:", open(os.path.join(mdir, "config.json")).read())

    # Processor: the real Qwen3VLProcessor if it builds offline from the fixture folder; else a
    # manual path (spec section 3 prompt, tokenizers BPE, image processor or a numpy patchify).
    from tokenizers import Tokenizer
    bpe = Tokenizer.from_file(tok_path)
    processor = None
    try:
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained(model_dirs["tied"])
        log("processor:", type(processor).__name__, type(processor.image_processor).__name__)
    except Exception as e:
        log("AutoProcessor failed:", repr(e)[:300])
        try:
            from transformers import Qwen3VLProcessor, PreTrainedTokenizerFast, AutoImageProcessor
            tk = PreTrainedTokenizerFast(tokenizer_file=tok_path)
            ip = AutoImageProcessor.from_pretrained(model_dirs["tied"])
            vp = None
            try:
                from transformers import Qwen3VLVideoProcessor
                vp = Qwen3VLVideoProcessor()
            except Exception as e2:
                log("video processor:", repr(e2)[:200])
            processor = Qwen3VLProcessor(image_processor=ip, tokenizer=tk, video_processor=vp)
            log("processor (explicit):", type(processor).__name__, type(ip).__name__)
        except Exception as e3:
            log("explicit processor failed:", repr(e3)[:300])

    def prompt_for(images, text):
        vis = "<|vision_start|><|image_pad|><|vision_end|>" * len(images)
        return "<|im_start|>user\n" + vis + text + "<|im_end|>\n<|im_start|>assistant\n"

    def manual_inputs(images, text):
        grids, rows = [], []
        for im in images:
            a = np.asarray(im.convert("RGB"))
            h0, w0 = a.shape[:2]
            h, w = round(h0 / 32) * 32, round(w0 / 32) * 32
            h, w = max(h, 32), max(w, 32)
            if (h, w) != (h0, w0):
                a = np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC))
            x = (a.astype(np.float32) - 127.5) / 127.5          # [h, w, 3]
            f = np.stack([x.transpose(2, 0, 1)] * 2)           # [Tp, C, h, w]
            gh, gw = h // 16, w // 16
            f = f.reshape(1, 2, 3, gh // 2, 2, 16, gw // 2, 2, 16).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
            rows.append(f.reshape(gh * gw, 1536))
            grids.append([1, gh, gw])
        s = prompt_for(images, text)
        for g in grids:
            s = s.replace("<|image_pad|>", "<|placeholder|>" * (g[1] * g[2] // 4), 1)
        s = s.replace("<|placeholder|>", "<|image_pad|>")
        ids = bpe.encode(s, add_special_tokens=False).ids
        d = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        d["mm_token_type_ids"] = (d["input_ids"] == IMAGE_PAD).long()
        if images:
            d["pixel_values"] = torch.from_numpy(np.concatenate(rows))
            d["image_grid_thw"] = torch.tensor(grids)
        return d

    ref = os.path.join(root, "ref")
    inputs_by_case = {}
    for cname, imnames, text in CASES:
        images = [pil[n] for n in imnames]
        man = manual_inputs(images, text)
        inp = None
        if processor is not None:
            try:
                kw = dict(text=[prompt_for(images, text)], return_tensors="pt")
                if images:
                    kw["images"] = images
                inp = dict(processor(**kw))
            except Exception as e:
                log(cname, "processor call failed:", repr(e)[:300])
        if inp is None:
            inp = man
            log(cname, "inputs: MANUAL (spec section 3 + numpy patchify)")
        else:
            same_ids = torch.equal(inp["input_ids"], man["input_ids"])
            same_px = ("pixel_values" not in inp) or (inp["pixel_values"].shape == man["pixel_values"].shape and
                                                      float((inp["pixel_values"] - man["pixel_values"]).abs().max()) == 0.0)
            log(cname, "inputs: Qwen3VLProcessor; manual ids agree:", same_ids, "manual pixels agree:", same_px)
            if "mm_token_type_ids" not in inp:
                inp["mm_token_type_ids"] = man["mm_token_type_ids"]
        inputs_by_case[cname] = inp
        d = os.path.join(ref, cname)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "prompt.txt"), "w") as f:
            json.dump({"text": text, "images": [n + ".png" for n in imnames], "chat": prompt_for(images, text)}, f)
        save_npy(d, "input_ids", inp["input_ids"][0].numpy().astype(np.int64))
        if images:
            save_npy(d, "pixel_values", inp["pixel_values"].float().numpy())
            save_npy(d, "image_grid_thw", inp["image_grid_thw"].numpy().astype(np.int64))
        log(cname, "S =", inp["input_ids"].shape[1], "grids:", inp.get("image_grid_thw"))

    for mname, mdir in model_dirs.items():
        try:
            model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager")
        except TypeError:
            model = Qwen3VLForConditionalGeneration.from_pretrained(mdir, torch_dtype=torch.float32, attn_implementation="eager")
        model = model.float().eval()
        inner = model.model
        vis, lm = inner.visual, inner.language_model
        log(mname, "param dtype:", next(model.parameters()).dtype, "text inv_freq dtype:", lm.rotary_emb.inv_freq.dtype,
            "vision inv_freq dtype:", vis.rotary_pos_emb.inv_freq.dtype,
            "tied:", model.lm_head.weight.data_ptr() == lm.embed_tokens.weight.data_ptr())
        cap = {}

        def first(o):
            return o[0] if isinstance(o, (tuple, list)) else o

        def fwd_hook(name):
            def h(mod, args, out):
                cap[name] = first(out).detach().float().clone()
            return h

        def pre_hook(name, argi=0):
            def h(mod, args, kwargs):
                x = args[argi] if len(args) > argi else kwargs.get("hidden_states")
                cap[name] = x.detach().float().clone()
            return h

        def rope_hook(mod, args, kwargs):
            pid = args[1] if len(args) > 1 else kwargs.get("position_ids")
            cap["position_ids"] = pid.detach().clone()

        hooks = [vis.patch_embed.register_forward_hook(fwd_hook("vision.patch_embed")),
                 vis.blocks[0].register_forward_pre_hook(pre_hook("vision.embed"), with_kwargs=True),
                 vis.merger.register_forward_hook(fwd_hook("vision.merger")),
                 lm.layers[0].register_forward_pre_hook(pre_hook("text.embed"), with_kwargs=True),
                 lm.norm.register_forward_hook(fwd_hook("text.norm")),
                 lm.rotary_emb.register_forward_pre_hook(rope_hook, with_kwargs=True)]
        for i, b in enumerate(vis.blocks):
            hooks.append(b.register_forward_hook(fwd_hook("vision.block%d" % i)))
        for k, mg in enumerate(vis.deepstack_merger_list):
            hooks.append(mg.register_forward_hook(fwd_hook("vision.deepstack%d" % k)))
        for l, layer in enumerate(lm.layers):
            hooks.append(layer.register_forward_pre_hook(pre_hook("text.layer%d.in" % l), with_kwargs=True))
            hooks.append(layer.register_forward_hook(fwd_hook("text.layer%d.out" % l)))

        for cname, imnames, text in CASES:
            inp = inputs_by_case[cname]
            d = os.path.join(ref, cname, mname)
            cap.clear()
            with torch.no_grad():
                try:
                    o = model(**inp, use_cache=False)
                except TypeError:
                    o = model(**{k: v for k, v in inp.items() if k != "mm_token_type_ids"}, use_cache=False)
                if imnames:
                    fn = None
                    for nm in ("fast_pos_embed_interpolate", "pos_embed_interpolate", "interpolate_pos_embed",
                               "get_pos_embeds", "compute_pos_embeds"):
                        fn = fn or getattr(vis, nm, None)
                    try:
                        cap["vision.pos_embed"] = first(fn(inp["image_grid_thw"])).float()
                    except Exception as e:
                        log("pos-embed interpolation method not found:", repr(e)[:100],
                            [n for n in dir(vis) if "pos" in n.lower()])
            logits = o.logits[0, -1].float().numpy()
            for k, v in cap.items():
                if k == "position_ids":
                    pid = v[:, 0, :] if v.dim() == 3 else v
                    save_npy(d, "position_ids", pid.numpy().astype(np.int64))
                else:
                    a = v.numpy()
                    if a.ndim == 3 and a.shape[0] == 1:
                        a = a[0]
                    save_npy(d, k, a.astype(np.float32))
            if cname == FULL_LOGITS_CASE:
                save_npy(d, "logits_last", logits.astype(np.float32))
            top = np.argsort(-logits, kind="stable")[:TOPK]
            save_npy(d, "logits_top_ids", top.astype(np.int64))
            save_npy(d, "logits_top_vals", logits[top].astype(np.float32))
            save_npy(d, "logits_stats", np.array([np.abs(logits).max(), logits.mean(), logits.std()], np.float32))

            # Greedy generation; margins are from the teacher-forced reference logits of each step.
            S = inp["input_ids"].shape[1]
            with torch.no_grad():
                kw = dict(do_sample=False, max_new_tokens=N_GEN, output_logits=True, return_dict_in_generate=True,
                          temperature=None, top_p=None, top_k=None)
                try:
                    try:
                        g = model.generate(**inp, **kw)
                    except TypeError:
                        g = model.generate(**{k: v for k, v in inp.items() if k != "mm_token_type_ids"}, **kw)
                    toks = g.sequences[0, S:].numpy().astype(np.int64)
                    step_logits = [g.logits[i][0].float() for i in range(len(toks))]
                    log(cname, mname, "generation: model.generate (KV cache)")
                except Exception as e:
                    # Fallback: greedy by full recomputation (no cache), same positions as decode.
                    log(cname, mname, "generate failed (%s); greedy by full forward" % repr(e)[:200])
                    cur = dict(inp)
                    toks, step_logits = [], []
                    for _ in range(N_GEN):
                        lg = model(**cur, use_cache=False).logits[0, -1].float()
                        t = int(torch.argmax(lg))
                        toks.append(t)
                        step_logits.append(lg)
                        if t in (IM_END, EOT):
                            break
                        one = torch.tensor([[t]])
                        cur["input_ids"] = torch.cat([cur["input_ids"], one], 1)
                        cur["attention_mask"] = torch.ones_like(cur["input_ids"])
                        if "mm_token_type_ids" in cur:
                            cur["mm_token_type_ids"] = torch.cat([cur["mm_token_type_ids"], torch.zeros_like(one).to(cur["mm_token_type_ids"].dtype)], 1)
                    toks = np.array(toks, np.int64)
            margins, top1 = [], []
            for step in range(len(toks)):
                lg = step_logits[step]
                v2 = torch.topk(lg, 2).values
                margins.append(float(v2[0] - v2[1]))
                top1.append(float(v2[0]))
                if int(torch.argmax(lg)) != int(toks[step]):
                    log(cname, mname, "WARNING: step %d token %d is not the argmax of its logits" % (step, toks[step]))
            if len(toks) > 0:
                gl0 = step_logits[0].numpy()
                log(cname, mname, "generate step0 vs forward logits max diff:", float(np.abs(gl0 - logits).max()))
            save_npy(d, "gen_tokens", toks)
            save_npy(d, "gen_margins", np.array(margins, np.float32))
            save_npy(d, "gen_top1", np.array(top1, np.float32))
            log(cname, mname, "tokens:", toks.tolist())
            log(cname, mname, "min margin: %.5f  n<1e-3: %d  logits absmax %.3f" %
                (min(margins) if margins else -1, sum(m < 1e-3 for m in margins), np.abs(logits).max()))
            log(cname, mname, "captured:", sorted(cap.keys()))
        for h in hooks:
            h.remove()
    log("done")


if __name__ == "__main__":
    main()
