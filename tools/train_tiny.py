#!/usr/bin/env python3
"""Trains the bundled tiny Qwen3-VL OCR model (models/qvl-tiny-ocr, issue 8) on the GPU machine.

A real Qwen3VLForConditionalGeneration (transformers 5.x) with the real vocabulary and tokenizer,
deepstack on, tiny widths (see CONFIG below: BF16 checkpoint <= 24 MB, the 151936 x 64 embedding
being most of it), trained from scratch on synthetic OCR samples drawn on the fly by
tools/render_ocr_set.py in DataLoader workers (fixed seeds), stopped by wall clock, then exported,
reloaded with from_pretrained and evaluated with transformers' greedy generate on the held-out set.

Run from the repo root (fonts: a folder with the DejaVu/Liberation .ttf files):
  python3 tools/train_tiny.py --fonts-dir .devcarry/fonts --out $OUT --budget-s 500 \
      [--heldout DIR (rendered there if DIR/OCRBench.json is missing)] \
      [--resume .devcarry/ckpt/model.safetensors.xz --stage 2]
Schedule: WSD (warmup, constant lr, linear decay over the last --decay-frac of the time), so a run
can be resumed in a later call; stage 1 starts with a curriculum (digit-heavy, clean renders).
Every --probe-every-s the first --probe-n held-out samples are decoded greedily (logged), so one
call tells whether the model reads.
Writes under --out: model.safetensors.part-* (split for the 16 MiB transfer limit; cat them back),
results.tar.gz (model folder configs, held-out set if it was rendered here, predictions, train log).

Speed: training uses the model's own modules but batches the vision tower over equal-sized images
(one SDPA call instead of HF's per-image loop) and computes the M-RoPE positions once per layout;
both are checked against the plain HF forward at start (printed max |diff| of the logits).
"""
import argparse
import copy
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
import traceback

T0 = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import render_ocr_set as R  # noqa: E402

from tokenizer_path import tokenizer_json  # noqa: E402

TOKENIZER_JSON = tokenizer_json()  # unpacks models/tokenizer/tokenizer.json.xz if needed
HELDOUT_SEED = 20261126
HELDOUT_N = 240
IMG, VSTART, VEND, IM_START, IM_END, PAD = 151655, 151652, 151653, 151644, 151645, 151643
MIN_PIXELS, MAX_PIXELS = 16384, 65536
CURRICULUM_WEIGHTS = [0.30, 0.55, 0.15]   # word, number, line (R.KIND_NAMES order)

# rope_theta 100 (not the released 5e6): with head_dim 32 and the interleaved mrope_section
# [6, 5, 5], the width axis gets the frequency indices 2, 5, 8, 11, 14 of 16, i.e. theta^(-i/16).
# At 5e6 these are 0.146, 0.008, 4.6e-4, ... rad per position: one usable frequency, so the decoder
# can hardly address "the next image column" by position. At 100 they are 0.56, 0.24, 0.10, 0.042,
# 0.018 (periods 11 to 350 columns: covers the 8..16 columns and ~80 tokens of these prompts).
TEXT_CONFIG = dict(
    vocab_size=151936, hidden_size=64, intermediate_size=192, num_hidden_layers=6,
    num_attention_heads=4, num_key_value_heads=2, head_dim=32, hidden_act="silu",
    max_position_embeddings=8192, rms_norm_eps=1e-6, attention_bias=False, attention_dropout=0.0,
    tie_word_embeddings=True, bos_token_id=PAD, eos_token_id=IM_END, pad_token_id=PAD,
    rope_parameters={"rope_type": "default", "rope_theta": 100.0, "mrope_section": [6, 5, 5],
                     "mrope_interleaved": True},
)
VISION_CONFIG = dict(
    depth=4, hidden_size=128, hidden_act="gelu_pytorch_tanh", intermediate_size=512, num_heads=4,
    in_channels=3, patch_size=16, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
    num_position_embeddings=576, deepstack_visual_indexes=[0, 1, 2],
)


def log(*a):
    print("[%6.1fs]" % (time.time() - T0), *a, flush=True)


def prompt_text(question, n_pads):
    return ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * n_pads + "<|vision_end|>"
            + question + "<|im_end|>\n<|im_start|>assistant\n")


def image_key(img, answer):
    return hashlib.blake2b(img.convert("RGB").tobytes() + b"\0" + answer.encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------
# Data: batches of one kind (equal image size), rendered in DataLoader workers.
def make_stream_class():
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class Stream(IterableDataset):
        def __init__(self, fonts_dir, batch, seed, heldout_keys, phase):
            self.fonts_dir, self.batch, self.seed, self.heldout_keys = fonts_dir, batch, seed, heldout_keys
            self.phase = phase   # shared multiprocessing.Value: 0 = curriculum, 1 = final mix

        def __iter__(self):
            from tokenizers import Tokenizer
            torch.set_num_threads(1)
            info = get_worker_info()
            wid = info.id if info is not None else 0
            rng = random.Random(self.seed * 7919 + wid)
            rend = R.Renderer(self.fonts_dir)
            tok = Tokenizer.from_file(TOKENIZER_JSON)
            prompt_ids = {}
            kinds = R.KIND_NAMES
            weights = [R.KINDS[k][0] for k in kinds]
            while True:
                easy = self.phase.value == 0
                # curriculum: mostly digit strings (the word prior is useless there, so the model
                # must look at the image), clean renders
                kind = rng.choices(kinds, weights=CURRICULUM_WEIGHTS if easy else weights)[0]
                _, W, H, q, _ = R.KINDS[kind]
                n_pads = (W // 32) * (H // 32)
                if kind not in prompt_ids:
                    prompt_ids[kind] = tok.encode(prompt_text(q, n_pads), add_special_tokens=False).ids
                p = prompt_ids[kind]
                raw, seqs, answers, clash = [], [], [], 0
                for _ in range(self.batch):
                    img, text, _ = rend.render(rng, kind, easy=easy)
                    b = img.tobytes()
                    if hashlib.blake2b(b + b"\0" + text.encode(), digest_size=16).hexdigest() in self.heldout_keys:
                        clash += 1
                        continue
                    raw.append(b)
                    answers.append(text)
                    seqs.append(p + tok.encode(text, add_special_tokens=False).ids + [IM_END])
                n = len(seqs)
                L = max(len(s) for s in seqs)
                ids = torch.full((n, L), PAD, dtype=torch.long)
                tgt = torch.full((n, L), -100, dtype=torch.long)
                for i, s in enumerate(seqs):
                    ids[i, :len(s)] = torch.tensor(s)
                    # hidden state at t predicts token t+1: train on the answer and its <|im_end|>
                    tgt[i, len(p) - 1:len(s) - 1] = torch.tensor(s[len(p):])
                pix = torch.frombuffer(bytearray(b"".join(raw)), dtype=torch.uint8).view(n, H, W, 3)
                ct, cl = ctc_targets(answers)
                yield {"kind": kind, "pixels": pix, "ids": ids, "tgt": tgt, "answers": answers,
                       "clash": clash, "prompt_len": len(p), "ctc_targets": torch.tensor(ct, dtype=torch.long),
                       "ctc_lengths": torch.tensor(cl, dtype=torch.long)}

    return Stream


# ---------------------------------------------------------------------------------------------
def patchify(pix_uint8):
    """[B,H,W,3] uint8 -> pixel_values [B*gh*gw, 1536] float32 exactly as the Qwen3-VL processor
    lays them out for an image that needs no resize (spec qwen3vl.md section 2.1)."""
    import torch
    B, H, W, _ = pix_uint8.shape
    x = (pix_uint8.float() - 127.5) / 127.5
    x = x.permute(0, 3, 1, 2)                                   # B,3,H,W
    x = x.unsqueeze(1).expand(B, 2, 3, H, W)                    # temporal duplication
    x = x.reshape(B, 2, 3, H // 32, 2, 16, W // 32, 2, 16)      # B,Tp,C,gh2,ih,py,gw2,iw,px
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)                    # B,gh2,gw2,ih,iw,C,Tp,py,px
    return x.reshape(B * (H // 16) * (W // 16), 1536)


def mrope_positions(L, s0, lh, lw):
    """(3, L) M-RoPE position ids for: s0 text tokens, an lh x lw image, then text (spec 5.4)."""
    import torch
    N = lh * lw
    pos = torch.empty(3, L, dtype=torch.long)
    pos[:, :s0] = torch.arange(s0)
    j = torch.arange(N)
    pos[0, s0:s0 + N] = s0
    pos[1, s0:s0 + N] = s0 + j // lw
    pos[2, s0:s0 + N] = s0 + j % lw
    nxt = s0 + max(lh, lw)
    pos[:, s0 + N:] = nxt + torch.arange(L - s0 - N)
    return pos


class FastForward:
    """Pure-torch forward of the whole model from its parameters (by checkpoint name), batched
    over equal-sized images: HF's reference path loops over images in Python (pos-embed, rotary,
    per-image attention), which would dominate a step of this tiny model. Follows the spec
    (qwen3vl.md sections 4-5) and is checked against the HF forward at start."""

    def __init__(self, model):
        self.P = dict(model.named_parameters())
        self.vc = model.config.vision_config
        self.tc = model.config.text_config
        self.cache = {}

    def p(self, name):
        return self.P[name]

    def _grid_tables(self, gh, gw, device):
        key = (gh, gw)
        if key not in self.cache:
            import torch
            G = int(self.vc.num_position_embeddings ** 0.5)
            hs = torch.linspace(0, G - 1, gh)
            ws = torch.linspace(0, G - 1, gw)
            h0, w0 = hs.int(), ws.int()
            h1, w1 = (h0 + 1).clamp(max=G - 1), (w0 + 1).clamp(max=G - 1)
            dh, dw = hs - h0, ws - w0
            idx = [(a[:, None] * G + b[None, :]).flatten() for a, b in ((h0, w0), (h0, w1), (h1, w0), (h1, w1))]
            wt = [(a[:, None] * b[None, :]).flatten() for a, b in ((1 - dh, 1 - dw), (1 - dh, dw), (dh, 1 - dw), (dh, dw))]
            order = torch.arange(gh * gw).view(gh // 2, 2, gw // 2, 2).permute(0, 2, 1, 3).flatten()
            idx = torch.stack([i[order] for i in idx]).to(device)
            wt = torch.stack([w[order] for w in wt]).to(device)
            hd = self.vc.hidden_size // self.vc.num_heads
            dim = hd // 2
            inv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
            rows = (order // gw).float()
            cols = (order % gw).float()
            theta = torch.cat([rows[:, None] * inv[None], cols[:, None] * inv[None]], dim=-1)
            emb = torch.cat([theta, theta], dim=-1)
            self.cache[key] = (idx, wt, emb.cos().to(device), emb.sin().to(device))
        return self.cache[key]

    @staticmethod
    def rotate_half(x):
        import torch
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def vision(self, pv, B, gh, gw):
        import torch
        import torch.nn.functional as F
        p, vc = self.p, self.vc
        D = vc.hidden_size
        nh = vc.num_heads
        hd = D // nh
        S = gh * gw
        idx, wt, cos, sin = self._grid_tables(gh, gw, pv.device)
        W = p("model.visual.patch_embed.proj.weight")
        x = F.linear(pv.to(W.dtype), W.reshape(D, -1), p("model.visual.patch_embed.proj.bias"))
        E = p("model.visual.pos_embed.weight")
        pos = (E[idx] * wt[:, :, None].to(E.dtype)).sum(0)
        x = (x.view(B, S, D) + pos[None]).view(B * S, D)
        deep = []
        ds_idx = list(vc.deepstack_visual_indexes)
        for i in range(vc.depth):
            pre = "model.visual.blocks.%d." % i
            y = F.layer_norm(x, (D,), p(pre + "norm1.weight"), p(pre + "norm1.bias"), 1e-6)
            qkv = F.linear(y, p(pre + "attn.qkv.weight"), p(pre + "attn.qkv.bias")).view(B, S, 3, nh, hd)
            q, k, v = qkv.unbind(2)
            dt = q.dtype
            q = (q.float() * cos[None, :, None] + self.rotate_half(q.float()) * sin[None, :, None]).to(dt)
            k = (k.float() * cos[None, :, None] + self.rotate_half(k.float()) * sin[None, :, None]).to(dt)
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               scale=hd ** -0.5)
            o = o.transpose(1, 2).reshape(B * S, D)
            x = x + F.linear(o, p(pre + "attn.proj.weight"), p(pre + "attn.proj.bias"))
            y = F.layer_norm(x, (D,), p(pre + "norm2.weight"), p(pre + "norm2.bias"), 1e-6)
            y = F.gelu(F.linear(y, p(pre + "mlp.linear_fc1.weight"), p(pre + "mlp.linear_fc1.bias")), approximate="tanh")
            x = x + F.linear(y, p(pre + "mlp.linear_fc2.weight"), p(pre + "mlp.linear_fc2.bias"))
            if i in ds_idx:
                mp = "model.visual.deepstack_merger_list.%d." % ds_idx.index(i)
                z = x.view(-1, 4 * D)
                z = F.layer_norm(z, (4 * D,), p(mp + "norm.weight"), p(mp + "norm.bias"), 1e-6)
                z = F.gelu(F.linear(z, p(mp + "linear_fc1.weight"), p(mp + "linear_fc1.bias")))
                deep.append(F.linear(z, p(mp + "linear_fc2.weight"), p(mp + "linear_fc2.bias")))
        mp = "model.visual.merger."
        z = F.layer_norm(x, (D,), p(mp + "norm.weight"), p(mp + "norm.bias"), 1e-6).view(-1, 4 * D)
        z = F.gelu(F.linear(z, p(mp + "linear_fc1.weight"), p(mp + "linear_fc1.bias")))
        return F.linear(z, p(mp + "linear_fc2.weight"), p(mp + "linear_fc2.bias")), deep

    def rms(self, x, w):
        import torch
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.tc.rms_norm_eps)
        return w * xf.to(x.dtype)

    def text(self, x, pos3, s0, deep):
        import torch
        import torch.nn.functional as F
        p, tc = self.p, self.tc
        B, L, D = x.shape
        nq, nkv, hd = tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim
        rp = getattr(tc, "rope_parameters", None) or {}
        theta = rp.get("rope_theta", 5000000.0)
        sec = rp.get("mrope_section", [24, 20, 20])
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float().to(x.device) / hd))
        fr = pos3.float()[..., None] * inv                       # 3,B,L,hd/2
        ft = fr[0].clone()
        for d, off in ((1, 1), (2, 2)):
            sl = slice(off, sec[d] * 3, 3)
            ft[..., sl] = fr[d][..., sl]
        emb = torch.cat([ft, ft], dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]        # B,1,L,hd
        for l in range(tc.num_hidden_layers):
            pre = "model.language_model.layers.%d." % l
            y = self.rms(x, p(pre + "input_layernorm.weight"))
            q = F.linear(y, p(pre + "self_attn.q_proj.weight")).view(B, L, nq, hd)
            k = F.linear(y, p(pre + "self_attn.k_proj.weight")).view(B, L, nkv, hd)
            v = F.linear(y, p(pre + "self_attn.v_proj.weight")).view(B, L, nkv, hd)
            q = self.rms(q, p(pre + "self_attn.q_norm.weight")).transpose(1, 2)
            k = self.rms(k, p(pre + "self_attn.k_norm.weight")).transpose(1, 2)
            v = v.transpose(1, 2)
            c, s = cos.to(q.dtype), sin.to(q.dtype)
            q = q * c + self.rotate_half(q) * s
            k = k * c + self.rotate_half(k) * s
            k = k.repeat_interleave(nq // nkv, dim=1)
            v = v.repeat_interleave(nq // nkv, dim=1)
            o = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=True, scale=hd ** -0.5)
            x = x + F.linear(o.transpose(1, 2).reshape(B, L, nq * hd), p(pre + "self_attn.o_proj.weight"))
            y = self.rms(x, p(pre + "post_attention_layernorm.weight"))
            g = F.silu(F.linear(y, p(pre + "mlp.gate_proj.weight")))
            x = x + F.linear(g * F.linear(y, p(pre + "mlp.up_proj.weight")), p(pre + "mlp.down_proj.weight"))
            if l < len(deep):   # image tokens are the contiguous positions [s0, s0+N) of every row
                N = deep[l].shape[0] // B
                x = x + F.pad(deep[l].view(B, N, D).to(x.dtype), (0, 0, s0, L - s0 - N))
        return self.rms(x, p("model.language_model.norm.weight"))

    def hidden(self, pv, ids, B, H, W, s0=4, with_image=False):
        """Final-norm hidden states [B, L, D] for a batch of equal-sized images (and, with
        with_image, the merged image tokens [B * N, D] the decoder received)."""
        import torch
        gh, gw = H // 16, W // 16
        img, deep = self.vision(pv, B, gh, gw)
        E = self.p("model.language_model.embed_tokens.weight")
        x = E[ids]
        N = img.shape[0] // B
        x = torch.cat([x[:, :s0], img.view(B, N, -1).to(x.dtype), x[:, s0 + N:]], dim=1)
        L = ids.shape[1]
        pos = mrope_positions(L, s0, gh // 2, gw // 2).to(ids.device)[:, None, :].expand(3, B, L)
        h = self.text(x, pos, s0, deep)
        return (h, img) if with_image else h


# ---------------------------------------------------------------------------------------------
# Auxiliary CTC loss (training only; its head is not part of the checkpoint). The decoder alone
# gives the vision tower a weak, diffuse signal: both earlier runs learned the answer prior and
# ignored the image. A linear head reads CTC_FRAMES frames per column of merged image tokens (the
# very tokens the decoder sees) and is trained with CTC on the answer's characters, so the image
# tokens must carry the characters, in order, left to right.
CTC_CHARS = " 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
CTC_ID = {c: i + 1 for i, c in enumerate(CTC_CHARS)}   # 0 = blank
CTC_OTHER = len(CTC_CHARS) + 1
CTC_CLASSES = len(CTC_CHARS) + 2
CTC_FRAMES = 4   # per 32-px token column: 8 px a frame, narrower than any character here


def ctc_targets(answers):
    return [CTC_ID.get(ch, CTC_OTHER) for a in answers for ch in a], [len(a) for a in answers]


def ctc_aux(head, img, B, H, W, targets, lengths):
    """CTC loss of the merged image tokens img [B * N, D] against the answers' characters, and the
    frame log-probabilities [B, T, C]."""
    import torch
    import torch.nn.functional as F
    gh2, gw2 = H // 32, W // 32
    z = img.view(B, gh2, gw2, -1).permute(0, 2, 1, 3).reshape(B, gw2, -1)
    lp = head(z.float()).view(B, gw2 * CTC_FRAMES, CTC_CLASSES).log_softmax(-1)
    T = gw2 * CTC_FRAMES
    il = torch.full((B,), T, dtype=torch.long)
    loss = F.ctc_loss(lp.transpose(0, 1), targets, il, lengths, blank=0, reduction="mean", zero_infinity=True)
    return loss, lp


def ctc_exact(lp, answers, n=64):
    """Greedy CTC decoding exact-match rate on the first n rows (a training-time read-out check)."""
    best = lp[:n].argmax(-1).tolist()
    inv = {v: k for k, v in CTC_ID.items()}
    ok = 0
    for row, ans in zip(best, answers[:n]):
        out, prev = [], 0
        for c in row:
            if c != prev and c != 0:
                out.append(inv.get(c, "?"))
            prev = c
        ok += "".join(out) == ans
    return ok / max(1, min(n, len(answers)))


def hf_hidden(model, pv, ids, B, H, W):
    """The same through the plain HF Qwen3VLModel forward (per-image loops; slow, reference)."""
    import torch
    grid = torch.tensor([[1, H // 16, W // 16]] * B, device=pv.device)
    out = model.model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv,
                      image_grid_thw=grid, mm_token_type_ids=(ids == IMG).long(), use_cache=False)
    return out.last_hidden_state


def probe_groups(heldout, n, tok):
    """The first n held-out samples grouped by kind (equal image sizes) for greedy_probe()."""
    import torch
    groups = {}
    for it, img, ans in heldout[:n]:
        kind = it["dataset_name"].replace("tiny-ocr-", "")
        groups.setdefault(kind, []).append((img.convert("RGB"), ans, it["question"]))
    out = {}
    for kind, rows in groups.items():
        W, H = rows[0][0].size
        pix = torch.stack([torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(H, W, 3)
                           for im, _, _ in rows])
        prompt = tok.encode(prompt_text(rows[0][2], (W // 32) * (H // 32)), add_special_tokens=False).ids
        out[kind] = (pix, prompt, [a for _, a, _ in rows], W, H)
    return out


def greedy_probe(fast, groups, tok, dev, max_new=24):
    """Batched greedy decoding with the training forward (no KV cache; the whole sequence is run
    again per token): a cheap in-training check that the model reads. Returns {kind: [ok, n]}."""
    import torch
    E = fast.p("model.language_model.embed_tokens.weight")
    res = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for kind, (pix, prompt, answers, W, H) in groups.items():
            B = pix.shape[0]
            pv = patchify(pix.to(dev))
            ids = torch.tensor([prompt] * B, device=dev)
            for _ in range(max_new):
                h = fast.hidden(pv, ids, B, H, W)
                nxt = (h[:, -1].float() @ E.float().t()).argmax(-1)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
                if bool(((ids[:, len(prompt):] == IM_END).any(1)).all()):
                    break
            ok = 0
            for r in range(B):
                gen = ids[r, len(prompt):].tolist()
                if IM_END in gen:
                    gen = gen[:gen.index(IM_END)]
                ok += tok.decode(gen, skip_special_tokens=True).strip() == answers[r]
            res[kind] = [ok, B]
    return res


# ---------------------------------------------------------------------------------------------
def write_model_folder(folder, model, tie_ok_note=""):
    """config.json, generation_config.json, preprocessor/tokenizer configs and model.safetensors."""
    import torch
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()
          if k != "lm_head.weight"}
    save_file(sd, os.path.join(folder, "model.safetensors.tmp"), metadata={"format": "pt"})
    os.replace(os.path.join(folder, "model.safetensors.tmp"), os.path.join(folder, "model.safetensors"))
    model.config.dtype = torch.bfloat16
    model.config.save_pretrained(folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    cfg["dtype"] = "bfloat16"
    cfg["torch_dtype"] = "bfloat16"
    json.dump(cfg, open(os.path.join(folder, "config.json"), "w"), indent=2, sort_keys=True)
    json.dump({"bos_token_id": PAD, "pad_token_id": PAD, "eos_token_id": [IM_END, PAD],
               "do_sample": False, "repetition_penalty": 1.0},
              open(os.path.join(folder, "generation_config.json"), "w"), indent=2)
    pre = {"image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
           "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
           "do_convert_rgb": True, "resample": 3, "image_mean": [0.5, 0.5, 0.5],
           "image_std": [0.5, 0.5, 0.5], "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
           "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}}
    json.dump(pre, open(os.path.join(folder, "preprocessor_config.json"), "w"), indent=2)
    vid = {"video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "patch_size": 16,
           "temporal_patch_size": 2, "merge_size": 2, "fps": 2,
           "size": {"shortest_edge": 4096, "longest_edge": 25165824}}
    json.dump(vid, open(os.path.join(folder, "video_preprocessor_config.json"), "w"), indent=2)
    tc = {"tokenizer_class": "Qwen2Tokenizer", "processor_class": "Qwen3VLProcessor",
          "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
          "model_max_length": 8192, "add_prefix_space": False, "errors": "replace",
          "split_special_tokens": False, "clean_up_tokenization_spaces": False}
    json.dump(tc, open(os.path.join(folder, "tokenizer_config.json"), "w"), indent=2)
    shutil.copy(os.path.join(HERE, "tiny_ocr_chat_template.jinja"), os.path.join(folder, "chat_template.jinja"))
    shutil.copy(TOKENIZER_JSON, os.path.join(folder, "tokenizer.json"))


def load_processor(folder):
    """AutoProcessor from the shipped folder; on failure an explicitly built one; None if both fail."""
    try:
        from transformers import AutoProcessor
        p = AutoProcessor.from_pretrained(folder)
        return p, "AutoProcessor.from_pretrained"
    except Exception:
        log("AutoProcessor failed:\n" + traceback.format_exc())
    try:
        from transformers import AutoTokenizer, Qwen3VLProcessor
        from transformers.models.qwen2_vl import image_processing_qwen2_vl as IP
        cls = getattr(IP, "Qwen2VLImageProcessor")
        ip = cls(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, patch_size=16,
                 temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        tok = AutoTokenizer.from_pretrained(folder)
        try:
            from transformers import Qwen3VLVideoProcessor
            vp = Qwen3VLVideoProcessor()
        except Exception:
            vp = None
        return Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp), "Qwen3VLProcessor(...)"
    except Exception:
        log("explicit processor failed:\n" + traceback.format_exc())
    return None, "none"


def load_heldout(folder):
    items = json.load(open(os.path.join(folder, "OCRBench.json")))
    from PIL import Image
    out = []
    for it in items:
        img = Image.open(os.path.join(folder, it["image_path"]))
        img.load()
        ans = it["answers"] if isinstance(it["answers"], str) else it["answers"][0]
        out.append((it, img, ans))
    return out


def ocrbench_hit(pred, answers):
    p = pred.lower().strip().replace("\n", " ")
    answers = [answers] if isinstance(answers, str) else answers
    return any(a.lower().strip().replace("\n", " ") in p for a in answers)


def evaluate(folder, heldout, device, deadline, log_every=60):
    """Greedy transformers predictions of the model folder on the held-out set."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration
    from tokenizers import Tokenizer
    model = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16).to(device).eval()
    emb = model.model.language_model.embed_tokens.weight
    tied = bool(torch.equal(model.lm_head.weight, emb))
    if not tied:
        log("WARNING: lm_head not tied after reload; tying by hand")
        model.lm_head.weight = emb
    proc, proc_kind = load_processor(folder)
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    chat_ok = None
    if proc is not None:
        try:
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is written in the image?"}]}]
            rendered = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            chat_ok = rendered == prompt_text("what is written in the image?", 1)
            log("chat template ok:", chat_ok, repr(rendered))
        except Exception:
            log("chat template failed:\n" + traceback.format_exc())
    preds = []
    n_ok = n_hit = 0
    t = time.time()
    for idx, (it, img, ans) in enumerate(heldout):
        if time.time() > deadline:
            log("eval deadline reached after %d samples" % idx)
            break
        q = it["question"]
        if proc is not None:
            enc = proc(text=[prompt_text(q, 1)], images=[img.convert("RGB")], return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items() if hasattr(v, "to")}
        else:
            W, H = img.size
            pix = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8).view(1, H, W, 3)
            ids = tok.encode(prompt_text(q, (W // 32) * (H // 32)), add_special_tokens=False).ids
            ids = torch.tensor([ids], device=device)
            enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                   "pixel_values": patchify(pix).to(device),
                   "image_grid_thw": torch.tensor([[1, H // 16, W // 16]], device=device)}
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=32, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, output_scores=True, return_dict_in_generate=True)
        gen = out.sequences[0, enc["input_ids"].shape[1]:].tolist()
        # transformers' own margin: top logit - second logit at each generated step (the answer and
        # its <|im_end|>), smallest over the steps; a near-tie here may flip under other BF16 kernels
        margins = []
        for sc in out.scores[:len(gen)]:
            top2 = sc[0].float().topk(2).values.tolist()
            margins.append((top2[0] - top2[1], top2[0]))
        mstep = min(range(len(margins)), key=lambda k: margins[k][0]) if margins else -1
        while gen and gen[-1] in (IM_END, PAD):
            gen = gen[:-1]
        pred = tok.decode(gen, skip_special_tokens=True)
        exact = pred.strip() == ans
        hit = ocrbench_hit(pred, it["answers"])
        n_ok += exact
        n_hit += hit
        preds.append({"index": idx, "id": it["id"], "image_path": it["image_path"], "type": it["type"],
                      "dataset_name": it["dataset_name"], "question": q, "answers": it["answers"],
                      "prediction": pred, "token_ids": gen, "exact_match": exact, "ocrbench_hit": hit,
                      "hf_min_margin": round(margins[mstep][0], 4) if margins else None,
                      "hf_min_margin_step": mstep, "hf_min_margin_logit": round(margins[mstep][1], 3) if margins else None})
        if idx % log_every == 0:
            log("eval %d: %r -> %r" % (idx, ans, pred))
    per = {}
    for p in preds:
        d = per.setdefault(p["dataset_name"], [0, 0])
        d[0] += p["exact_match"]
        d[1] += 1
    res = {"complete": len(preds) == len(heldout), "n": len(preds), "exact_match": n_ok, "accuracy": n_ok / max(1, len(preds)),
           "ocrbench_score": n_hit, "ocrbench_accuracy": n_hit / max(1, len(preds)),
           "per_dataset": {k: {"exact_match": v[0], "n": v[1], "accuracy": v[0] / v[1]} for k, v in per.items()},
           "processor": proc_kind, "chat_template_matches_spec": chat_ok, "lm_head_tied_on_load": tied,
           "eval_seconds": time.time() - t, "predictions": preds}
    log("held-out exact match %d/%d = %.4f, ocrbench-style %d/%d" % (n_ok, len(preds), res["accuracy"], n_hit, len(preds)))
    return res


# ---------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fonts-dir", default="/usr/share/fonts/truetype")
    ap.add_argument("--heldout", default=os.path.join(ROOT, "tests", "fixtures", "tiny-ocr-heldout"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/tiny-ocr")
    ap.add_argument("--budget-s", type=float, default=480, help="whole script wall clock, incl. eval")
    ap.add_argument("--eval-reserve-s", type=float, default=65)
    ap.add_argument("--resume", default="")
    ap.add_argument("--stage", type=int, default=1, help="1 = from scratch, 2.. = resumed (new data seed)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--decay-frac", type=float, default=0.25,
                    help="WSD schedule: warmup, constant, then linear decay over this last fraction of the training time")
    ap.add_argument("--curriculum-s", type=float, default=-1,
                    help="seconds of curriculum (digit-heavy, clean renders) at the start; default 12%% of the budget in stage 1, 0 when resumed")
    ap.add_argument("--ctc-weight", type=float, default=0.5, help="weight of the auxiliary CTC loss (0 = off)")
    ap.add_argument("--probe-n", type=int, default=60, help="held-out samples greedily decoded during training")
    ap.add_argument("--probe-every-s", type=float, default=45)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 4) - 2))
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    import torch
    import transformers
    import PIL
    import tokenizers
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "PIL": PIL.__version__,
                "tokenizers": tokenizers.__version__,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    log("versions", versions)
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    dev = "cuda"
    torch.manual_seed(a.seed + a.stage)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    # held-out set: reuse the committed one, else render it here (same PIL as the training data)
    rendered_heldout = False
    if not os.path.exists(os.path.join(a.heldout, "OCRBench.json")):
        R.write_set(a.heldout, HELDOUT_N, HELDOUT_SEED, a.fonts_dir)
        rendered_heldout = True
        log("rendered held-out set", a.heldout)
    heldout = load_heldout(a.heldout)
    heldout_keys = {image_key(img, ans) for _, img, ans in heldout}
    log("held-out samples", len(heldout))

    # model
    cfg = Qwen3VLConfig(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG, image_token_id=IMG,
                        video_token_id=151656, vision_start_token_id=VSTART, vision_end_token_id=VEND,
                        tie_word_embeddings=True)
    model = Qwen3VLForConditionalGeneration(cfg)
    emb = model.model.language_model.embed_tokens.weight
    if model.lm_head.weight is not emb:
        log("lm_head not tied at init; tying by hand")
        model.lm_head.weight = emb
    if a.resume:
        from safetensors.torch import load_file
        path = a.resume
        if path.endswith(".xz"):   # carried compressed to fit the transfer cap
            import lzma
            path = os.path.join(a.work, "resume.safetensors")
            with lzma.open(a.resume) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        sd = load_file(path)
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        log("resumed from", a.resume, "missing", missing, "unexpected", unexpected)
    model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log("parameters %d (bf16 %.2f MB)" % (n_params, n_params * 2 / 1e6))
    fast = FastForward(model)

    Stream = make_stream_class()
    import multiprocessing
    if a.curriculum_s < 0:
        a.curriculum_s = 0.12 * a.budget_s if not a.resume else 0.0
    phase = multiprocessing.Value("i", 0 if a.curriculum_s > 0 else 1)
    loader = torch.utils.data.DataLoader(Stream(a.fonts_dir, a.batch, a.seed * 100 + a.stage, heldout_keys, phase),
                                         batch_size=None, num_workers=a.workers, pin_memory=True,
                                         prefetch_factor=4, persistent_workers=False)
    it = iter(loader)

    # ---- checks on the first batches: patchify, token ids, positions, fast vs HF forward
    checks = {}
    use_fast = True
    torch.backends.cuda.matmul.allow_tf32 = False   # exact fp32 for the comparisons
    torch.backends.cudnn.allow_tf32 = False         # (HF's patch embedding is a Conv3d)
    from tokenizers import Tokenizer
    model.eval()
    try:
        # one sample per kind through the real processor and the plain HF forward, against the fast path
        tmpf = os.path.join(a.work, "proc-check")
        write_model_folder(tmpf, model)
        proc, pk = load_processor(tmpf)
        tok = Tokenizer.from_file(TOKENIZER_JSON)
        rend = R.Renderer(a.fonts_dir)
        rng = random.Random(99)
        for kind in R.KIND_NAMES:
            img, text, _ = rend.render(rng, kind)
            _, W, H, q, _ = R.KINDS[kind]
            pix = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(1, H, W, 3)
            mine_pv = patchify(pix)
            my_ids = tok.encode(prompt_text(q, (W // 32) * (H // 32)), add_special_tokens=False).ids \
                + tok.encode(text, add_special_tokens=False).ids + [IM_END]
            c = {}
            ids_t = torch.tensor([my_ids], device=dev)
            with torch.no_grad():
                try:
                    mine = fast.hidden(mine_pv.to(dev), ids_t, 1, H, W)
                except Exception:
                    log("fast forward failed:\n" + traceback.format_exc())
                    use_fast = False
                    mine = None
                if proc is not None:
                    enc = proc(text=[prompt_text(q, 1) + text + "<|im_end|>"], images=[img], return_tensors="pt")
                    c["pixel_maxdiff"] = (enc["pixel_values"].float() - mine_pv).abs().max().item()
                    c["ids_equal"] = enc["input_ids"][0].tolist() == my_ids
                    c["grid_equal"] = enc["image_grid_thw"][0].tolist() == [1, H // 16, W // 16]
                    if "mm_token_type_ids" in enc:
                        c["mm_token_type_ids_is_image_mask"] = bool(torch.equal(
                            enc["mm_token_type_ids"].long(), (enc["input_ids"] == IMG).long()))
                    enc = {k: v.to(dev) for k, v in enc.items() if hasattr(v, "to")}
                    try:
                        ref = model.model(**enc, use_cache=False).last_hidden_state
                        if mine is not None:
                            c["fast_vs_hf_hidden_maxdiff"] = (mine - ref).abs().max().item()
                            if not c["fast_vs_hf_hidden_maxdiff"] < 1e-2:
                                use_fast = False
                    except Exception:
                        log("HF forward failed:\n" + traceback.format_exc())
                        c["hf_forward_error"] = traceback.format_exc()[-1500:]
            checks[kind] = c
            log("check", kind, c)
    except Exception:
        log("checks failed:\n" + traceback.format_exc())
        checks["check_error"] = traceback.format_exc()[-2000:]
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    checks["training_path"] = "fast" if use_fast else "hf"
    log("training path:", checks["training_path"])
    # ---- training
    use_ctc = use_fast and a.ctc_weight > 0
    # input: one column of merged image tokens, 2 rows (every canvas is 64 px high) x out_hidden_size
    aux = torch.nn.Linear(2 * VISION_CONFIG["out_hidden_size"], CTC_FRAMES * CTC_CLASSES).to(dev)
    all_params = list(model.parameters()) + (list(aux.parameters()) if use_ctc else [])
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2] + ([aux.weight] if use_ctc else [])
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2] + ([aux.bias] if use_ctc else [])
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8, fused=True)
    train_start = time.time()
    train_end = T0 + a.budget_s - a.eval_reserve_s
    total = max(1.0, train_end - train_start)
    model.train()
    E = model.model.language_model.embed_tokens.weight
    step = samples = clash = 0
    seen_answers = set()
    ema = None
    ema_exact = None
    hist = []
    data_wait = 0.0
    last_log = time.time()
    lr_scale = 1.0
    restores = 0
    snap_params = [p_.detach().clone() for p_ in all_params]
    snap_opt = copy.deepcopy(opt.state_dict())
    snap_step = 0
    ema_ctc = None
    tok_probe = Tokenizer.from_file(TOKENIZER_JSON)
    probe = probe_groups(heldout, a.probe_n, tok_probe)
    last_probe = time.time()
    probes = []
    ema_kind = {}

    def run_probe():
        model.eval()
        r = greedy_probe(fast, probe, tok_probe, dev)
        model.train()
        ok, n = sum(v[0] for v in r.values()), sum(v[1] for v in r.values())
        rec = {"step": step, "samples": samples, "seconds": round(time.time() - train_start, 1),
               "greedy_exact": ok, "n": n, "by_kind": r}
        probes.append(rec)
        log("probe (greedy, first %d held-out): %d/%d %s" % (n, ok, n, r))

    while time.time() < train_end:
        if phase.value == 0 and time.time() - train_start > a.curriculum_s:
            phase.value = 1
            log("curriculum over at step %d (%d samples)" % (step, samples))
        tw = time.time()
        b = next(it)
        data_wait += time.time() - tw
        _, W, H, _, _ = R.KINDS[b["kind"]]
        B = b["ids"].shape[0]
        pix = b["pixels"].to(dev, non_blocking=True)
        ids = b["ids"].to(dev, non_blocking=True)
        tgt = b["tgt"].to(dev, non_blocking=True)
        frac = min(1.0, (time.time() - train_start) / total)
        # WSD: linear warmup, constant, linear decay to 2% over the last decay_frac of the time
        decay = 1.0 if frac < 1.0 - a.decay_frac else max(0.02, (1.0 - frac) / a.decay_frac)
        lr = lr_scale * a.lr * min(1.0, (step + 1) / a.warmup) * decay
        for g in opt.param_groups:
            g["lr"] = lr
        pl = b["prompt_len"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if use_fast:
                h, img_tok = fast.hidden(patchify(pix), ids, B, H, W, with_image=True)
            else:
                h = hf_hidden(model, patchify(pix), ids, B, H, W)
            # all rows of a batch share the prompt: the trained positions are the window [pl-1, L-1)
            logits = h[:, pl - 1:-1] @ E.t()
        y = tgt[:, pl - 1:-1]
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
        total_loss = loss
        if use_ctc:
            ctc_loss, ctc_lp = ctc_aux(aux, img_tok, B, H, W, b["ctc_targets"].to(dev, non_blocking=True),
                                       b["ctc_lengths"])
            total_loss = loss + a.ctc_weight * ctc_loss
        opt.zero_grad(set_to_none=True)
        total_loss.backward()
        torch.nn.utils.clip_grad_norm_(all_params, 1.0)
        opt.step()
        step += 1
        samples += B
        clash += b["clash"]
        seen_answers.update(b["answers"])
        if step % 25 == 0:
            lv = loss.item()
            if not math.isfinite(total_loss.item()):   # diverged: back to the last good snapshot, lower the lr
                restores += 1
                lr_scale *= 0.7
                with torch.no_grad():
                    for p_, s_ in zip(all_params, snap_params):
                        p_.copy_(s_)
                opt.load_state_dict(snap_opt)
                log("non-finite loss at step %d: restored snapshot of step %d, lr scale %.3g" % (step, snap_step, lr_scale))
                continue
            if step % 250 == 0:
                snap_params = [p_.detach().clone() for p_ in all_params]
                snap_opt = copy.deepcopy(opt.state_dict())
                snap_step = step
            with torch.no_grad():
                bad = ((logits.argmax(-1) != y) & (y != -100)).any(-1)
                ex = 1.0 - bad.float().mean().item()
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            ema_exact = ex if ema_exact is None else 0.9 * ema_exact + 0.1 * ex
            k = b["kind"]
            ema_kind[k] = ex if k not in ema_kind else 0.7 * ema_kind[k] + 0.3 * ex
            if use_ctc:
                ce_ = ctc_exact(ctc_lp.detach(), b["answers"])
                ema_ctc = ce_ if ema_ctc is None else 0.9 * ema_ctc + 0.1 * ce_
            if time.time() - last_log > 20:
                last_log = time.time()
                el = time.time() - train_start
                log("step %d samples %d loss %.4f tf-exact %.3f %s ctc %.3f ctc-exact %.3f lr %.2e  %.0f img/s data-wait %.0f%%"
                    % (step, samples, ema, ema_exact, {k_: round(v_, 3) for k_, v_ in ema_kind.items()},
                       ctc_loss.item() if use_ctc else 0.0, ema_ctc or 0.0, lr, samples / el, 100 * data_wait / el))
                hist.append({"step": step, "samples": samples, "seconds": round(el, 1), "loss": round(ema, 4),
                             "teacher_forced_exact": round(ema_exact, 4),
                             "teacher_forced_exact_by_kind": {k_: round(v_, 4) for k_, v_ in ema_kind.items()},
                             "ctc_exact": round(ema_ctc or 0.0, 4),
                             "lr": lr})
            if time.time() - last_probe > a.probe_every_s:
                run_probe()
                last_probe = time.time()
    train_s = time.time() - train_start
    try:
        run_probe()
    except Exception:
        log("final probe failed:\n" + traceback.format_exc())
    if not all(bool(torch.isfinite(p_).all()) for p_ in model.parameters()):
        restores += 1
        with torch.no_grad():
            for p_, s_ in zip(model.parameters(), snap_params):
                p_.copy_(s_)
        log("non-finite weights at the end: restored the snapshot of step %d" % snap_step)
    log("training done: %d steps, %d samples, %.1f s, held-out image clashes skipped %d" % (step, samples, train_s, clash))
    del it, loader

    # ---- export, reload, evaluate
    folder = os.path.join(a.work, "qvl-tiny-ocr")
    model.eval()
    write_model_folder(folder, model)
    log("model.safetensors bytes", os.path.getsize(os.path.join(folder, "model.safetensors")))
    res = {}
    try:
        res = evaluate(folder, heldout, dev, T0 + a.budget_s + 25)
    except Exception:
        log("evaluation failed:\n" + traceback.format_exc())
        res = {"error": traceback.format_exc()[-3000:]}
    held_answers = [ans for _, _, ans in heldout]
    unseen = [i for i, x in enumerate(held_answers) if x not in seen_answers]
    overlap = {"heldout_image_answer_pairs_drawn_in_training": clash,
               "heldout_answers_also_seen_as_training_answers": len(held_answers) - len(unseen),
               "heldout_answers_never_seen_in_training": len(unseen)}
    if "predictions" in res:
        overlap["exact_match_on_unseen_answers"] = sum(res["predictions"][i]["exact_match"] for i in unseen)
    train = {"stage": a.stage, "resumed_from": a.resume or None, "steps": step, "samples": samples,
             "train_seconds": round(train_s, 1), "nan_restores": restores, "batch": a.batch, "peak_lr": a.lr, "warmup": a.warmup,
             "schedule": "WSD, linear decay over the last %.0f%% of the time" % (100 * a.decay_frac),
             "curriculum_seconds": a.curriculum_s, "probes": probes,
             "aux_ctc_weight": a.ctc_weight if use_ctc else 0.0,
             "data_seed": a.seed * 100 + a.stage, "workers": a.workers, "history": hist,
             "checks": checks, "versions": versions, "argv": sys.argv, "parameters": n_params,
             "overlap": overlap, "script_seconds": round(time.time() - T0, 1)}
    log("overlap", overlap)
    res_out = dict(res)
    res_out["train"] = train
    with open(os.path.join(folder, "transformers_predictions.json"), "w") as f:
        json.dump(res_out, f, indent=1)
    # ---- hand back: split checkpoint + one tarball
    subprocess.run(["split", "-b", "12M", "-d", os.path.join(folder, "model.safetensors"),
                    os.path.join(a.out, "model.safetensors.part-")], check=True)
    with tarfile.open(os.path.join(a.out, "results.tar.gz"), "w:gz") as tf:
        for name in sorted(os.listdir(folder)):
            if name not in ("model.safetensors", "tokenizer.json"):
                tf.add(os.path.join(folder, name), arcname="model/" + name)
        if rendered_heldout:
            tf.add(a.heldout, arcname="heldout")
    log("done; accuracy", res.get("accuracy"), "script seconds %.1f" % (time.time() - T0))


if __name__ == "__main__":
    main()
