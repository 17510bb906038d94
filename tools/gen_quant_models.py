#!/usr/bin/env python3
"""Quantized Qwen3-VL checkpoints with random weights, in the three published formats, and their
transformers references. Run on the GPU machine (torch, transformers 5.x, safetensors; neither
compressed-tensors nor AutoAWQ is needed: the packers below are written from their source).

  gen_quant_models.py tiny OUTDIR
      OUTDIR/quant/<model>/            config.json (+ quantization_config), model.safetensors,
                                       generation_config.json; models:
        ct_asym   compressed-tensors pack-quantized, int4, group 32, asymmetric; vision blocks and the
                  main merger quantized too, ignore = lm_head + a "re:" regex for the deepstack mergers
        ct_sym    compressed-tensors pack-quantized, int4, group 128, symmetric; ignore lm_head and
                  re:model[.]visual[.].* (the usual layout of published checkpoints)
        awq       AutoAWQ GEMM, int4, group 32, zero point, fp16, modules_to_not_convert ["visual"]
        fp8       Qwen's fine-grained FP8: e4m3 weights, [128, 128] block scales (weight_scale_inv),
                  dynamic activations, modules_to_not_convert ["lm_head", "model.visual"]
      OUTDIR/quant/<model>/ref/dequant.safetensors   each quantized linear's reference dequantization
                                       (its Linear name + ".weight"), in the dtype the reference yields
      OUTDIR/quant/<model>/ref/<case>/ stages as qvl dumps them, logits_last, gen_tokens, gen_margins
      OUTDIR/quant/inputs/<case>/      input_ids, pixel_values, image_grid_thw (model independent)
    The reference is transformers in float32 on the dequantized weights (TF32 off, eager attention);
    for fp8 each quantized linear's input is fake-quantized first as transformers' finegrained_fp8
    act_quant does: per token, groups of 128, s = amax/448, e4m3(x / s) * s. The model runs on the
    host's CPU, and FP8 codes at exact rounding ties follow torch's float32 roundings there (the
    RMSNorm's row sum is vectorized: 16 lanes with AVX-512, 8 with AVX2), so qvl's CPU path matches
    the fp8 references of an AVX-512 host (docs/model.md 7.4).
  gen_quant_models.py real FORMAT OUTDIR [SIZE] [--group G] [--tf N]
      an 8B-shaped (or SIZE) random BF16 model (gen_real_shape_models' config, weights and seed) quantized
      in GPU memory to FORMAT (ct_sym, awq, fp8; --group overrides the int4 group size) into OUTDIR/model
      (with the tokenizer and processor files); with --tf N also the parity inputs (an image prompt plus
      N teacher-forced tokens) and the float32 / bfloat16 transformers references on the dequantized
      weights in gen_real_shape_models' layout (OUTDIR/ref_f32, OUTDIR/hf_bf16).

Every layout detail follows the reference code:
  compressed-tensors pack_to_int32: value + 2^(bits-1) as unsigned, element i of a row in bits
    4*(i%8) of word i/8; zero points packed the same way along dim 0 (pack_quantized.py); scale and
    zero point from calculate_qparams (min/max including 0, zp = q_min - round(min/scale)), scale in
    the weight dtype; dequantize: (x_q.to(scale.dtype) - zp.to(scale.dtype)) * scale.
  AutoAWQ GEMM: qweight [in, out/8] with out column AWQ_ORDER[i] in nibble i (order [0,2,4,6,1,3,5,7]),
    qzeros [in/group, out/8] packed the same way, scales fp16 [in/group, out]; pseudo_quantize_tensor's
    zero point scales; dequantize_gemm: (iweight - izeros) * scales in fp16, then transposed to [out, in].
  FP8: block amax/448 scales (weight_scale_inv, float32 [ceil(out/128), ceil(in/128)]), e4m3(w / s);
    dequantized as fp8.to(float32) * s.
"""
import json
import math
import os
import re
import shutil
import sys

import numpy as np
import torch

SEED = 4321
VOCAB = 1024
IMAGE_PAD, VIDEO_PAD, VSTART, VEND, IM_END, EOT = 1000, 1001, 1002, 1003, 1004, 1005
N_GEN = 12
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]

TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, mrope_section=[6, 5, 5])
VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, deepstack_visual_indexes=[0],
              num_position_embeddings=64)

FORMATS = {
    "ct_asym": dict(kind="ct", group=32, sym=False, dtype=torch.bfloat16,
                    ignore=["lm_head", "re:.*deepstack_merger_list.*"]),
    "ct_sym": dict(kind="ct", group=128, sym=True, dtype=torch.bfloat16, ignore=["lm_head", "re:model[.]visual[.].*"]),
    "awq": dict(kind="awq", group=32, dtype=torch.float16, skip=["visual"]),
    "fp8": dict(kind="fp8", block=[128, 128], dtype=torch.bfloat16, skip=["lm_head", "model.visual"]),
}
DTYPE_NAME = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


def log(*a):
    print(*a, flush=True)


# ---- which linears are quantized (the loaders' rules) ------------------------------------------

def linear_names(sd):
    """2-D '.weight' tensors of nn.Linear modules (not embeddings, norms or the patch Conv3d)."""
    out = []
    for k, v in sd.items():
        if not k.endswith(".weight") or v.dim() != 2:
            continue
        if "embed_tokens" in k or "pos_embed" in k:
            continue
        out.append(k[:-len(".weight")])
    return out


def is_quantized(fmt, name):
    f = FORMATS[fmt]
    if f["kind"] == "ct":  # compressed-tensors: exact names and "re:" patterns (re.match)
        for ig in f["ignore"]:
            if ig.startswith("re:"):
                if re.match(ig[3:], name):
                    return False
            elif ig == name:
                return False
        return True
    if name == "lm_head":  # transformers never converts the output head for awq / fp8
        return False
    return not any(s in name for s in f["skip"])


# ---- compressed-tensors pack-quantized -------------------------------------------------------

def ct_quantize(w, group, sym, dtype):
    """w [out, in] float32 -> (x_q int8 [out, in] in -8..7, scale [out, in/group] dtype, zp int8 or None)."""
    q_min, q_max = -8, 7
    out_f, in_f = w.shape
    g = w.reshape(out_f, in_f // group, group)
    mn = torch.clamp(g.amin(-1), max=0.0)
    mx = torch.clamp(g.amax(-1), min=0.0)
    if sym:
        amax = torch.maximum(mn.abs(), mx)
        scale = amax / ((q_max - q_min) / 2)
    else:
        scale = (mx - mn) / (q_max - q_min)
    scale = torch.where(scale == 0, torch.full_like(scale, torch.finfo(dtype).eps), scale)
    scale = scale.to(dtype)
    s32 = scale.float()
    if sym:
        zp = torch.zeros_like(s32)
    else:
        zp = torch.clamp(q_min - torch.round(mn / s32), q_min, q_max)
    xq = torch.clamp(torch.round(g / s32[..., None] + zp[..., None]), q_min, q_max)
    return xq.reshape(out_f, in_f).to(torch.int8), scale, (None if sym else zp.to(torch.int8))


def pack_to_int32(value, bits=4, packed_dim=1):
    """compressed-tensors' packer: unsigned value + 2^(bits-1), pack_factor elements per word."""
    offset = 1 << (bits - 1)
    v = (value.to(torch.int32) + offset) & ((1 << bits) - 1)
    if packed_dim == 0:
        v = v.t()
    v = v.contiguous()
    rows, cols = v.shape
    pf = 32 // bits
    pad = (-cols) % pf
    if pad:
        v = torch.nn.functional.pad(v, (0, pad))
    v = v.view(rows, -1, pf).to(torch.int64)
    shifts = torch.arange(pf, dtype=torch.int64, device=v.device) * bits
    packed = (v << shifts).sum(-1)
    packed = torch.where(packed >= 2 ** 31, packed - 2 ** 32, packed).to(torch.int32)
    if packed_dim == 0:
        packed = packed.t().contiguous()
    return packed


def ct_dequant(xq, scale, zp, group):
    """compressed-tensors dequantize (group strategy): in scale.dtype."""
    out_f, in_f = xq.shape
    x = xq.reshape(out_f, in_f // group, group).to(scale.dtype)
    if zp is not None:
        x = x - zp.to(scale.dtype)[..., None]
    return (x * scale[..., None]).reshape(out_f, in_f)


# ---- AutoAWQ GEMM ----------------------------------------------------------------------------

def awq_quantize(w, group):
    """pseudo_quantize_tensor with zero point (fp16): -> (intweight [out,in] 0..15, zeros [out,in/g], scales fp16 [out,in/g])."""
    out_f, in_f = w.shape
    g = w.to(torch.float16).float().reshape(-1, group)
    max_val, min_val = g.amax(1, keepdim=True), g.amin(1, keepdim=True)
    scales = ((max_val - min_val).clamp(min=1e-5) / 15).to(torch.float16).float()
    zeros = (-torch.round(min_val / scales)).clamp(0, 15)
    iw = torch.clamp(torch.round(g / scales) + zeros, 0, 15)
    return (iw.reshape(out_f, in_f).to(torch.int32), zeros.reshape(out_f, -1).to(torch.int32),
            scales.reshape(out_f, -1).to(torch.float16))


def awq_pack_cols(x):
    """[rows, cols] 0..15 -> int32 [rows, cols/8]: column 8j + AWQ_ORDER[i] in bits 4i of word j."""
    rows, cols = x.shape
    x = x.to(torch.int64).view(rows, cols // 8, 8)[:, :, AWQ_ORDER]
    shifts = torch.arange(8, dtype=torch.int64, device=x.device) * 4
    p = (x << shifts).sum(-1)
    return torch.where(p >= 2 ** 31, p - 2 ** 32, p).to(torch.int32)


def awq_unpack_cols(q):
    """AutoAWQ unpack_awq + reverse_awq_order: int32 [rows, cols/8] -> [rows, cols] 0..15."""
    shifts = torch.arange(0, 32, 4, device=q.device)
    iw = torch.bitwise_right_shift(q[:, :, None], shifts[None, None, :]).to(torch.int8).view(q.shape[0], -1)
    rev = torch.arange(iw.shape[1], dtype=torch.int32, device=q.device).view(-1, 8)[:, [0, 4, 1, 5, 2, 6, 3, 7]].view(-1)
    return torch.bitwise_and(iw[:, rev], 15)


def awq_dequant(qweight, qzeros, scales, group):
    """dequantize_gemm, then [in, out] -> [out, in]."""
    iw = awq_unpack_cols(qweight)
    iz = awq_unpack_cols(qzeros)
    sc = scales.repeat_interleave(group, dim=0)
    iz = iz.repeat_interleave(group, dim=0)
    return ((iw - iz) * sc).t().contiguous()


# ---- FP8 block ---------------------------------------------------------------------------------

def fp8_quantize(w, block):
    bn, bk = block
    out_f, in_f = w.shape
    nb, kb = -(-out_f // bn), -(-in_f // bk)
    wp = torch.nn.functional.pad(w.float(), (0, kb * bk - in_f, 0, nb * bn - out_f))
    blocks = wp.view(nb, bn, kb, bk)
    amax = blocks.abs().amax(dim=(1, 3))
    s = torch.where(amax == 0, torch.ones_like(amax), amax / 448.0)
    q = (blocks / s[:, None, :, None]).to(torch.float8_e4m3fn)
    q = q.view(nb * bn, kb * bk)[:out_f, :in_f].contiguous()
    return q, s.float().contiguous()


def fp8_dequant(q, s, block):
    bn, bk = block
    se = s.repeat_interleave(bn, 0).repeat_interleave(bk, 1)[:q.shape[0], :q.shape[1]]
    return q.to(torch.float32) * se


def act_fake_quant(x, bk=128):
    """transformers' act_quant then the block matmul's a_s factor: e4m3(x / (amax/448)) * (amax/448)."""
    shp = x.shape
    xf = x.float().reshape(-1, shp[-1] // bk, bk)
    s = xf.abs().amax(-1, keepdim=True) / 448.0
    q = (xf / s).to(torch.float8_e4m3fn).float()
    y = torch.nan_to_num(q * s, nan=0.0)
    return y.reshape(shp).to(x.dtype)


# ---- quantizing one state dict -------------------------------------------------------------

def quantize_state(fmt, sd, log_names=False):
    """sd: name -> tensor (the BF16 model). Returns (tensors to save, {linear: dequantized weight},
    quantization_config)."""
    f = FORMATS[fmt]
    dtype = f["dtype"]
    out, deq = {}, {}
    lin = set(linear_names(sd))
    for k, v in sd.items():
        name = k[:-len(".weight")] if k.endswith(".weight") else None
        if name in lin and is_quantized(fmt, name):
            w = v.float()
            if f["kind"] == "ct":
                xq, scale, zp = ct_quantize(w, f["group"], f["sym"], dtype)
                out[name + ".weight_packed"] = pack_to_int32(xq)
                out[name + ".weight_scale"] = scale.contiguous()
                out[name + ".weight_shape"] = torch.tensor(list(w.shape), dtype=torch.int64)
                if zp is not None:
                    out[name + ".weight_zero_point"] = pack_to_int32(zp, packed_dim=0)
                deq[name + ".weight"] = ct_dequant(xq, scale, zp, f["group"])
            elif f["kind"] == "awq":
                iw, zeros, scales = awq_quantize(w, f["group"])
                qweight = awq_pack_cols(iw.t().contiguous())          # [in, out/8]
                qzeros = awq_pack_cols(zeros.t().contiguous())        # [in/g, out/8]
                sc = scales.t().contiguous()                          # [in/g, out]
                out[name + ".qweight"], out[name + ".qzeros"], out[name + ".scales"] = qweight, qzeros, sc
                d = awq_dequant(qweight, qzeros, sc, f["group"])
                # the packing round trip must give back the quantizer's integers
                ref = ((iw - zeros.repeat_interleave(f["group"], 1)).to(torch.float16) *
                       scales.repeat_interleave(f["group"], 1))
                assert torch.equal(d, ref), name
                deq[name + ".weight"] = d
            else:
                q, s = fp8_quantize(w, f["block"])
                out[name + ".weight"], out[name + ".weight_scale_inv"] = q, s
                deq[name + ".weight"] = fp8_dequant(q, s, f["block"])
            if log_names:
                log(fmt, "quantized", name, tuple(w.shape))
        else:
            out[k] = v.to(dtype) if v.is_floating_point() else v
    if f["kind"] == "ct":
        qc = {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
              "config_groups": {"group_0": {"targets": ["Linear"], "format": "pack-quantized",
                                            "weights": {"num_bits": 4, "type": "int", "symmetric": f["sym"],
                                                        "group_size": f["group"], "strategy": "group",
                                                        "block_structure": None, "dynamic": False, "actorder": None,
                                                        "observer": "minmax", "observer_kwargs": {}},
                                            "input_activations": None, "output_activations": None}},
              "ignore": f["ignore"], "kv_cache_scheme": None, "sparsity_config": {}, "transform_config": {},
              "global_compression_ratio": None, "version": "0.12.2"}
    elif f["kind"] == "awq":
        qc = {"quant_method": "awq", "bits": 4, "group_size": f["group"], "version": "gemm", "zero_point": True,
              "modules_to_not_convert": f["skip"]}
    else:
        qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": f["block"],
              "modules_to_not_convert": f["skip"]}
    return out, deq, qc


def write_config(src_cfg_path, dst_dir, fmt, qc):
    cfg = json.load(open(src_cfg_path))
    cfg["quantization_config"] = qc
    dt = DTYPE_NAME[FORMATS[fmt]["dtype"]]
    for holder in (cfg, cfg.get("text_config", {})):
        for key in ("dtype", "torch_dtype"):
            if key in holder:
                holder[key] = dt
    cfg["dtype"] = dt
    json.dump(cfg, open(os.path.join(dst_dir, "config.json"), "w"), indent=2)


# ---- tiny fixtures ------------------------------------------------------------------------------

def build_tiny_config():
    from transformers import Qwen3VLConfig
    t, v = TEXT, VISION
    text = dict(vocab_size=VOCAB, hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
                num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
                num_key_value_heads=t["num_key_value_heads"], head_dim=t["head_dim"], hidden_act="silu",
                max_position_embeddings=262144, rms_norm_eps=1e-6, attention_bias=False,
                tie_word_embeddings=False, bos_token_id=EOT, eos_token_id=IM_END,
                rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": t["mrope_section"],
                                 "mrope_interleaved": True})
    vision = dict(depth=v["depth"], hidden_size=v["hidden_size"], hidden_act="gelu_pytorch_tanh",
                  intermediate_size=v["intermediate_size"], num_heads=v["num_heads"], in_channels=3, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=t["hidden_size"],
                  num_position_embeddings=v["num_position_embeddings"],
                  deepstack_visual_indexes=v["deepstack_visual_indexes"])
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD,
                         vision_start_token_id=VSTART, vision_end_token_id=VEND, tie_word_embeddings=False)


@torch.no_grad()
def init_weights(model, seed):
    """As tools/gen_tiny_models.py: linears N(0, 1/fan_in), norms 1 +- 0.1, biases N(0, 0.05^2),
    embeddings N(0, 0.2^2), position table N(0, 0.5^2), lm_head N(0, 0.5^2)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
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
            val = rn(1.0 / math.sqrt(p[0].numel()))
        p.copy_(val.to(p.dtype))


def save_npy(d, name, arr):
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, name + ".npy"), arr)


def make_inputs(root):
    """Two cases: one 64x96 image (grid 1x4x6, 6 image tokens) with text, and text only. Ids are
    ordinary random tokens below IMAGE_PAD around the special ones (no tokenizer: vocabulary 1024)."""
    rng = np.random.default_rng(SEED)
    cases = {}
    gh, gw = 4, 6
    px = rng.uniform(-1, 1, size=(gh * gw, 1536)).astype(np.float32)
    ids = list(rng.integers(0, 1000, 5)) + [VSTART] + [IMAGE_PAD] * (gh * gw // 4) + [VEND] + list(rng.integers(0, 1000, 9))
    cases["img"] = dict(input_ids=np.array(ids, np.int64), pixel_values=px, image_grid_thw=np.array([[1, gh, gw]], np.int64))
    cases["text"] = dict(input_ids=rng.integers(0, 1000, 17).astype(np.int64))
    for c, d in cases.items():
        for k, v in d.items():
            save_npy(os.path.join(root, "inputs", c), k, v)
    return cases


def reference(model, quantized_linears, fp8, cases, ref_root):
    """Runs the F32 model on every case: stage captures, last logits, greedy tokens and margins."""
    inner = model.model
    vis, lm = inner.visual, inner.language_model
    cap = {}

    def first(o):
        return o[0] if isinstance(o, (tuple, list)) else o

    def fwd_hook(name):
        def h(mod, args, out):
            cap[name] = first(out).detach().float().clone()
        return h

    hooks = [vis.merger.register_forward_hook(fwd_hook("vision.merger")),
             lm.norm.register_forward_hook(fwd_hook("text.norm"))]
    for i, b in enumerate(vis.blocks):
        hooks.append(b.register_forward_hook(fwd_hook("vision.block%d" % i)))
    for k, mg in enumerate(vis.deepstack_merger_list):
        hooks.append(mg.register_forward_hook(fwd_hook("vision.deepstack%d" % k)))
    for l, layer in enumerate(lm.layers):
        hooks.append(layer.register_forward_hook(fwd_hook("text.layer%d.out" % l)))
    if fp8:
        mods = dict(model.named_modules())
        for name in quantized_linears:
            hooks.append(mods[name].register_forward_pre_hook(lambda m, a: (act_fake_quant(a[0]),) + tuple(a[1:])))
    for cname, c in cases.items():
        inp = {"input_ids": torch.from_numpy(c["input_ids"])[None]}
        inp["attention_mask"] = torch.ones_like(inp["input_ids"])
        inp["mm_token_type_ids"] = (inp["input_ids"] == IMAGE_PAD).long()
        if "pixel_values" in c:
            inp["pixel_values"] = torch.from_numpy(c["pixel_values"])
            inp["image_grid_thw"] = torch.from_numpy(c["image_grid_thw"])
        d = os.path.join(ref_root, cname)
        cap.clear()
        with torch.no_grad():
            try:
                o = model(**inp, use_cache=False)
            except TypeError:
                inp.pop("mm_token_type_ids")
                o = model(**inp, use_cache=False)
        logits = o.logits[0, -1].float().numpy()
        for k, v in cap.items():
            a = v.numpy()
            if a.ndim == 3 and a.shape[0] == 1:
                a = a[0]
            save_npy(d, k, a.astype(np.float32))
        save_npy(d, "logits_last", logits.astype(np.float32))
        S = inp["input_ids"].shape[1]
        with torch.no_grad():
            g = model.generate(**inp, do_sample=False, max_new_tokens=N_GEN, output_logits=True,
                               return_dict_in_generate=True, temperature=None, top_p=None, top_k=None,
                               eos_token_id=None, pad_token_id=EOT)
        toks = g.sequences[0, S:].numpy().astype(np.int64)
        margins = []
        for i in range(len(toks)):
            v2 = torch.topk(g.logits[i][0].float(), 2).values
            margins.append(float(v2[0] - v2[1]))
        save_npy(d, "gen_tokens", toks)
        save_npy(d, "gen_margins", np.array(margins, np.float32))
        log(cname, "tokens", toks.tolist(), "min margin %.4f" % min(margins), "logits absmax %.3f" % np.abs(logits).max())
    for h in hooks:
        h.remove()


def tiny(out):
    from safetensors.torch import save_file, load_file
    from transformers import Qwen3VLForConditionalGeneration
    import transformers
    log("torch", torch.__version__, "transformers", transformers.__version__)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(8)
    root = os.path.join(out, "quant")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    cases = make_inputs(root)
    torch.manual_seed(SEED)
    base = Qwen3VLForConditionalGeneration(build_tiny_config()).float()
    init_weights(base, SEED)
    base_dir = os.path.join(out, "quant_base_tmp")
    base.to(torch.bfloat16).save_pretrained(base_dir, safe_serialization=True)
    sd = load_file(os.path.join(base_dir, "model.safetensors"))
    for fmt in FORMATS:
        try:
            one_tiny(fmt, root, base_dir, sd, cases, out)
        except Exception:
            import traceback
            traceback.print_exc()
            log(fmt, "FAILED")
    shutil.rmtree(base_dir, ignore_errors=True)
    log("done")


def one_tiny(fmt, root, base_dir, sd, cases, out):
    from safetensors.torch import save_file
    from transformers import Qwen3VLForConditionalGeneration
    mdir = os.path.join(root, fmt)
    os.makedirs(mdir)
    tensors, deq, qc = quantize_state(fmt, sd, log_names=(fmt == "ct_asym"))
    save_file(tensors, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    write_config(os.path.join(base_dir, "config.json"), mdir, fmt, qc)
    json.dump({"bos_token_id": EOT, "pad_token_id": EOT, "do_sample": False, "eos_token_id": [IM_END]},
              open(os.path.join(mdir, "generation_config.json"), "w"), indent=2)
    rdir = os.path.join(mdir, "ref")
    os.makedirs(rdir)
    save_file({k: v.contiguous() for k, v in deq.items()}, os.path.join(rdir, "dequant.safetensors"))
    # The reference model: float32 values of every stored 16-bit tensor, dequantized linears.
    full = {k: v.float() for k, v in tensors.items() if v.is_floating_point() and v.dtype != torch.float8_e4m3fn
            and not k.endswith("weight_scale") and not k.endswith("weight_scale_inv") and not k.endswith(".scales")}
    for k, v in deq.items():
        full[k] = v.float()
    fdir = os.path.join(out, "quant_f32_tmp")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(fdir)
    save_file({k: v.contiguous() for k, v in full.items()}, os.path.join(fdir, "model.safetensors"),
              metadata={"format": "pt"})
    shutil.copy(os.path.join(base_dir, "config.json"), os.path.join(fdir, "config.json"))
    model = Qwen3VLForConditionalGeneration.from_pretrained(fdir, dtype=torch.float32,
                                                            attn_implementation="eager").float().eval()
    for k, v in deq.items():  # the loaded model must hold exactly the dequantized weights
        assert torch.equal(model.get_parameter(k).detach(), v.float()), k
    qlin = [k[:-len(".weight")] for k in deq]
    log(fmt, "quantized linears:", len(qlin), "safetensors bytes:", os.path.getsize(os.path.join(mdir, "model.safetensors")))
    reference(model, qlin, FORMATS[fmt]["kind"] == "fp8", cases, rdir)
    shutil.rmtree(fdir, ignore_errors=True)


# ---- real-shape checkpoints -----------------------------------------------------------------------

def real(fmt, out, size="8B", group=None, n_tf=0):
    """The random BF16 checkpoint of gen_real_shape_models (seed 1234) quantized to fmt in memory on the
    GPU (no BF16 copy written) into OUT/model; with n_tf > 0 also the parity inputs and references of
    gen_real_shape_models.gen (OUT/input_ids, pixel_values, image_grid_thw, tf_ids; OUT/ref_f32 and
    OUT/hf_bf16), made by transformers on the checkpoint's values with the dequantized Linears (float32,
    then the same in bfloat16), for `qvl-gpu-tests gpu_real_shape` and `gen_real_shape_models.py compare`."""
    import time
    from safetensors.torch import save_file
    from transformers import Qwen3VLForConditionalGeneration
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_real_shape_models as g
    from tokenizer_path import tokenizer_json
    t0 = time.time()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if group:
        FORMATS[fmt] = dict(FORMATS[fmt], group=group)
    shutil.rmtree(out, ignore_errors=True)
    dst = os.path.join(out, "model")
    os.makedirs(dst)
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration(g.build_config(g.SIZES[size])).to(torch.bfloat16)
    g.init_weights(model, 1234)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if g.SIZES[size]["tie"]:
        sd.pop("lm_head.weight", None)
    bad = [k for k in sd if not k.startswith(("model.visual.", "model.language_model.", "lm_head."))]
    assert not bad, "unexpected parameter names: %s" % bad[:4]
    tensors, deq, qc = quantize_state(fmt, sd)
    del sd
    # shards of about 4 GB, as published checkpoints are split
    index, shard, size_b, shards = {"metadata": {}, "weight_map": {}}, {}, 0, []
    for k, v in tensors.items():
        shard[k] = v.contiguous().cpu()
        size_b += v.numel() * v.element_size()
        if size_b > 4 << 30:
            shards.append(shard)
            shard, size_b = {}, 0
    if shard:
        shards.append(shard)
    total = 0
    for i, sh in enumerate(shards):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        save_file(sh, os.path.join(dst, name), metadata={"format": "pt"})
        for k, v in sh.items():
            index["weight_map"][k] = name
            total += v.numel() * v.element_size()
    index["metadata"]["total_size"] = total
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"), indent=1)
    model.config.save_pretrained(dst)
    write_config(os.path.join(dst, "config.json"), dst, fmt, qc)
    json.dump(g.PREPROC, open(os.path.join(dst, "preprocessor_config.json"), "w"), indent=2)
    json.dump(g.GENCFG, open(os.path.join(dst, "generation_config.json"), "w"), indent=2)
    tok_path = tokenizer_json()
    shutil.copy(tok_path, os.path.join(dst, "tokenizer.json"))
    log(fmt, size, "group", FORMATS[fmt].get("group"), "quantized checkpoint:", dst, "%.2f GiB" % (total / 2 ** 30),
        "%.1f s" % (time.time() - t0))
    if n_tf <= 0:
        return
    # The reference model: the checkpoint's 16-bit values and the dequantized Linears, in float32.
    model.float()
    with torch.no_grad():
        for k, p in model.named_parameters():
            src = deq.get(k)
            if src is None:
                src = tensors.get(k)
            if src is None and k == "lm_head.weight":
                src = tensors["model.language_model.embed_tokens.weight"]
            p.copy_(src.to(p.device).float())
    del deq, tensors, shards
    torch.cuda.empty_cache()
    from tokenizers import Tokenizer
    px, grid = g.patchify(g.synth_image(1024, 768))
    n_img = grid[1] * grid[2] // 4
    chat = ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * n_img +
            "<|vision_end|>What is written in the image? Answer in detail.<|im_end|>\n<|im_start|>assistant\n")
    ids = Tokenizer.from_file(tok_path).encode(chat, add_special_tokens=False).ids
    tf = np.random.default_rng(7).integers(0, 151643, size=n_tf).astype(np.int64)
    n = len(ids)
    np.save(os.path.join(out, "input_ids.npy"), np.array(ids, dtype=np.int64))
    np.save(os.path.join(out, "pixel_values.npy"), px)
    np.save(os.path.join(out, "image_grid_thw.npy"), np.array([grid], dtype=np.int64))
    np.save(os.path.join(out, "tf_ids.npy"), tf)
    full = torch.tensor([ids + tf.tolist()], device="cuda")
    for tag, dtype in (("ref_f32", torch.float32), ("hf_bf16", torch.bfloat16)):
        t1 = time.time()
        model.to(dtype)
        reference_pass(model, os.path.join(out, tag), full, n, px, grid, dtype)
        log("%s: %.1f s, peak %.0f MiB" % (tag, time.time() - t1, torch.cuda.max_memory_allocated() / 2 ** 20))


def reference_pass(model, d, full, n, px, grid, dtype):
    """gen_real_shape_models.gen's capture: stages (prompt rows), top1 after the prompt and each
    continuation token, the last prompt row's logits."""
    inner = model.model
    vis, lm = inner.visual, inner.language_model
    cap = {}

    def hook(name, rows=None):
        def f(mod, args, o):
            x = (o[0] if isinstance(o, (tuple, list)) else o).detach()
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
           "mm_token_type_ids": (full == 151655).long()}
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
    os.makedirs(d, exist_ok=True)
    for k, v in cap.items():
        np.save(os.path.join(d, k + ".npy"), v)
    np.save(os.path.join(d, "top1.npy"), top1)
    np.save(os.path.join(d, "logits_last.npy"), last)
    del o, lg
    torch.cuda.empty_cache()


def main():
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "tiny":
        tiny(a[1])
    elif len(a) >= 3 and a[0] == "real" and a[1] in FORMATS:
        rest = a[3:]
        size = rest.pop(0) if rest and not rest[0].startswith("--") else "8B"
        opt = {k: int(v) for k, v in zip(rest[0::2], rest[1::2]) if k in ("--group", "--tf")}
        real(a[1], a[2], size, opt.get("--group"), opt.get("--tf", 0))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
