#!/usr/bin/env python3
"""Writes the libFuzzer seed corpora tests/fuzz/<harness>/seed-* from the committed fixtures
(tests/fixtures, models/): small valid inputs of every parser. Run from the repository root:
    python3 tools/fuzz_seeds.py [QVL_BIN]
Inputs that once found a bug are kept beside them as tests/fuzz/<harness>/regress-* and are never
touched here. With QVL_BIN (a built qvl), the tokenizer cache seed is written too, by qvl itself
(the cache layout is qvl's own): the cache of the cut-down tokenizer.json below."""
import base64
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "tests", "fuzz")


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def seeds_safetensors():
    # The three smallest tensors of the tiny test checkpoint, with their real names and bytes.
    raw = read("tests/fixtures/tiny/tied/model.safetensors")
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    items = sorted((v["data_offsets"][1] - v["data_offsets"][0], k) for k, v in h.items() if k != "__metadata__")
    picked = []
    for _, k in items[:3]:
        v = h[k]
        a, b = v["data_offsets"]
        picked.append((k, v["dtype"], v["shape"], raw[8 + n + a:8 + n + b]))
    put("safetensors", "tiny-3", safetensors(picked, h.get("__metadata__")))
    # Every dtype qvl reads, two elements each, one scalar and an empty tensor.
    t = [("f32", "F32", [2], struct.pack("<2f", 1.5, -2)), ("f16", "F16", [2], struct.pack("<2H", 0x3c00, 0xfc00)),
         ("bf16", "BF16", [1, 2], struct.pack("<2H", 0x3f80, 0x7fc0)), ("i32", "I32", [2], struct.pack("<2i", -1, 7)),
         ("i64", "I64", [2], struct.pack("<2q", 1 << 40, -3)), ("u8", "U8", [2], b"\x00\xff"),
         ("i8", "I8", [2], b"\x80\x7f"), ("f8", "F8_E4M3", [2, 1], b"\x7e\xff"), ("scalar", "F32", [], struct.pack("<f", 3)),
         ("empty", "BF16", [0, 4], b"")]
    put("safetensors", "dtypes", safetensors(t, {"format": "pt"}))


def seeds_config():
    for name, path in [("tiny-ocr", "models/qvl-tiny-ocr/config.json"), ("2b", "tests/fixtures/configs/2b/config.json"),
                       ("8b-tf5", "tests/fixtures/configs/8b-tf5/config.json"),
                       ("awq", "tests/fixtures/quant/awq/config.json"), ("fp8", "tests/fixtures/quant/fp8/config.json"),
                       ("ct-asym", "tests/fixtures/quant/ct_asym/config.json")]:
        put("config", "m-" + name, b"m" + read(path))
    put("config", "p-tiny-ocr", b"p" + read("models/qvl-tiny-ocr/preprocessor_config.json"))
    put("config", "g-tiny-ocr", b"g" + read("models/qvl-tiny-ocr/generation_config.json"))
    put("config", "g-awq", b"g" + read("tests/fixtures/quant/awq/generation_config.json"))


def small_tokenizer():
    """Qwen3's tokenizer.json cut down to its first 400 tokens (all 256 byte tokens among them), the
    merges among those, and the special tokens renumbered after them."""
    full = json.loads(lzma.decompress(read("models/tokenizer/tokenizer.json.xz")))
    vocab = {k: v for k, v in full["model"]["vocab"].items() if v < 400}
    merges = []
    for m in full["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])
    added = []
    for i, t in enumerate(full["added_tokens"][:6]):
        t = dict(t)
        t["id"] = 400 + i
        added.append(t)
    small = dict(full)
    small["model"] = dict(full["model"], vocab=vocab, merges=merges)
    small["added_tokens"] = added
    return json.dumps(small, ensure_ascii=False, separators=(",", ":")).encode()


def seeds_tokenizer():
    tok = small_tokenizer()
    os.makedirs(os.path.join(OUT, "tokenizer_cache"), exist_ok=True)
    put("tokenizer_json", "qwen3-400", tok)
    if len(sys.argv) > 1:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tokenizer.json")
            with open(path, "wb") as f:
                f.write(tok)
            subprocess.run([sys.argv[1], "tokenize", "--tokenizer", path], input=b"hi", check=True,
                           stdout=subprocess.DEVNULL, env=dict(os.environ, QVL_CACHE_DIR=os.path.join(tmp, "cache")))
            (name,) = os.listdir(os.path.join(tmp, "cache"))
            shutil.copy(os.path.join(tmp, "cache", name), os.path.join(OUT, "tokenizer_cache", "seed-qwen3-400.bin"))
    texts = ["Hello world", "<|im_start|>user\nWhat is written in the image?<|im_end|>\n<|im_start|>assistant\n",
             "The quick brown fox jumps over the lazy dog.  \n\n\t 12345 1.5e-3",
             "\u4f60\u597d\uff0c\u4e16\u754c\uff01 \u3053\u3093\u306b\u3061\u306f \uc548\ub155\ud558\uc138\uc694",
             "e\u0301 \u00e9 \ufb01 \u212b \U0001F600\U0001F1E9\U0001F1EA \u0627\u0644\u0633\u0644\u0627\u0645",
             "  leading spaces   and trailing   ", "it's don't I'M we'll 's", "<|vision_start|><|image_pad|><|vision_end|>"]
    for i, t in enumerate(texts):
        put("tokenize_encode", "text-%d" % i, t)
    # Decode: flags byte, then int32 ids (bit 1 set: raw ids, else modulo ~the vocabulary).
    put("tokenize_decode", "hello", b"\x00" + struct.pack("<4i", 9707, 1879, 0, 151643))
    put("tokenize_decode", "special-skip", b"\x01" + struct.pack("<5i", 151644, 872, 198, 151645, 151668))
    put("tokenize_decode", "split-utf8", b"\x00" + struct.pack("<6i", 160, 233, 17, 94, 151000, 151935))
    put("tokenize_decode", "negative-raw", b"\x02" + struct.pack("<3i", 5, -1, 2**31 - 1))


def seeds_images():
    d = "tests/fixtures/image/images/"
    files = {"image_png": ["png_1x1.png", "png_interlaced_gray1_33x17.png", "png_gray2_64x64.png",
                           "png_palette_trns_120x80.png", "png_gray4_65x33.png", "png_pal4_50x40.png",
                           "png_gray_trns_40x40.png", "bad_truncated.png", "bad_zero_size.png",
                           "bad_huge_100000x100000.png"],
             "image_jpeg": ["jpeg_1x1.jpg", "jpeg_10x500.jpg", "jpeg_ocr_131x58.jpg", "jpeg_ycck_160x120.jpg",
                            "bad_huge_65000x65000.jpg"],
             "image_webp": ["webp_lossless_256x128.webp", "webp_lossy_alpha_200x150.webp", "bad_truncated.webp"],
             "image_gif": ["gif_interlaced_150x150.gif", "gif_trns_80x60.gif", "gif_anim_64x64.gif"],
             "image_bmp": ["bmp1_64x33.bmp", "bmp4_31x17.bmp", "bmp16_565_40x30.bmp", "bmp16_555_41x29.bmp",
                           "bmp24_topdown_50x20.bmp", "bmp8_pal_100x80.bmp"]}
    for h, names in files.items():
        for n in names:
            put(h, n, read(d + n))


def seeds_datasets():
    lines = read("tests/fixtures/ocrbench/OCRBench.tsv").split(b"\n")
    put("dataset_tsv", "ocrbench-3", b"\n".join(lines[:4]) + b"\n")
    head, row = lines[0].split(b"\t"), lines[1].split(b"\t")
    row[head.index(b"answer")] = b"""["it's", 'B a = \\\\frac { 1 } { 2 }\\n', u'\\u00e9\\x41', r'\\d' 'x',]"""
    put("dataset_tsv", "answer-literals", lines[0] + b"\n" + b"\t".join(row) + b"\n")
    js = json.loads(read("tests/fixtures/tiny-ocr-heldout/OCRBench.json"))
    put("dataset_json", "tiny-ocr-3", json.dumps(js[:3], indent=1))
    off = json.loads(read("tests/fixtures/ocrbench/official/OCRBench.json"))
    put("dataset_json", "official-2", json.dumps(off[:2], ensure_ascii=False))
    for n in ["many_rows.parquet", "v2_zstd_nodict.parquet"]:
        put("dataset_parquet", n, read("tests/fixtures/ocrbench/parquet/" + n))


def seeds_eval():
    settings = {"model": "qvl-tiny-ocr", "data": "OCRBench.json", "max_new_tokens": 128, "seed": 0}
    rec = {"index": 3, "type": "Regular Text Recognition", "dataset": "IIIT5K", "question": "what is written?",
           "answers": ["CENTRE", "centre"], "prediction": "centre", "correct": 1, "status": "ok",
           "prompt_tokens": 40, "image_tokens": 24, "generated_tokens": 3, "latency_s": 0.25, "ttft_s": 0.1,
           "wall_s": 0.26, "peak_memory_mib": 512.5}
    skipped = {"index": 7, "answers": ["x"], "prediction": "", "correct": 0, "status": "skipped",
               "reason": "prompt too long"}
    lines = [json.dumps({"qvl_run": settings}), json.dumps(rec), json.dumps(skipped)]
    put("results", "two-records", "\n".join(lines) + "\n")
    put("results", "truncated-tail", "\n".join(lines[:2]) + "\n" + lines[2][:30])
    for i, s in enumerate(["['CENTRE']", '["it\'s"]', "['B a = \\\\frac { 1 } { 2 }\\n']", "('a', 'b',)",
                           "u'\\u00e9' r'\\x' '\\101\\x41\\U0001F600'", "['\\\n', \"\\N\"]"]):
        put("pylit", "lit-%d" % i, s)


def seeds_serve():
    png = read("tests/fixtures/image/images/png_1x1.png")
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    bodies = {
        "text": {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hi"}]},
        "image": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                             {"type": "text", "text": "What is written?"}]}],
                  "temperature": 0, "max_tokens": 32},
        "sampling": {"messages": [{"role": "user", "content": "Hi"}], "stream": True,
                     "stream_options": {"include_usage": True}, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
                     "seed": 42, "stop": ["\n\n", "END"], "presence_penalty": 0.5, "frequency_penalty": 0.1,
                     "max_completion_tokens": 8},
        "assistant-turns": {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                         {"role": "user", "content": [{"type": "text", "text": "c"}]}],
                            "stop": "x"},
    }
    for name, b in bodies.items():
        put("serve_chat", name, json.dumps(b))
    gif = read("tests/fixtures/image/images/gif_trns_80x60.gif")
    for name, u in [("png", url), ("gif", "data:image/gif;base64," + base64.b64encode(gif).decode()),
                    ("params", "data:image/png;name=x.png;charset=binary;BASE64," + base64.b64encode(png).decode()),
                    ("not-base64", "data:image/png,abc"), ("file", "file:///etc/passwd"),
                    ("remote", "https://example.com/a.png"), ("path", "images/00000.png")]:
        put("serve_media", name, u)


if __name__ == "__main__":
    seeds_safetensors()
    seeds_config()
    seeds_tokenizer()
    seeds_images()
    seeds_datasets()
    seeds_eval()
    seeds_serve()
