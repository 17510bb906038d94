#!/usr/bin/env python3
"""Reference outputs for the image pipeline (tests/test_image_parity.c), made on the GPU machine with
the reference stack: PIL Image.open + the transformers 5.x Qwen2-VL image processor (torchvision
backend) built from Qwen3-VL's released preprocessor_config.json.

usage: gen_image_fixtures.py OUT_DIR [--bench-dir DIR [--shapes ocrbench_shapes.tsv] [--bench-only]] [--dry]
Reads tests/fixtures/image/images/ (made by tools/make_test_images.py) and writes into OUT_DIR:
  manifest.json                per image: PIL mode/size or PIL's error, grid_thw, resized size,
                               SHA-256 of the decoded RGB, of the resized uint8 image and of the
                               float32 pixel_values, PIL-resize-vs-reference statistics;
                               option cases; smart_resize cases; library versions
  <name>.decoded.png           PIL's RGB decode (lossy formats, FULL_DECODED)
  <name>.resized.png           the reference's resized uint8 image (FULL_RESIZED), recovered exactly
                               from pixel_values (x = v*127.5+127.5)
  <name>.rows.png              for every image: sampled rows (ROW_FRACTIONS) of decoded then resized
With --bench-dir it also writes synthetic OCRBench-sized JPEGs (--shapes, default bench/workload/ocrbench_shapes.tsv)
there and times the reference on them (bench/README.md). --dry replaces the processor with a numpy
re-implementation (PIL resize) so the script can be checked where torch is missing."""
import hashlib, io, json, math, os, sys, tempfile, time

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IMAGES = os.path.join(ROOT, "tests", "fixtures", "image", "images")
SMALL = 150_000
ROW_FRACTIONS = (0.0, 0.13, 0.29, 0.37, 0.5, 0.71, 0.88, 1.0)   # sampled rows: round(f * (h - 1))
# Full decoded + resized references (PNG) only where a decoder or the resize is most likely to
# differ (lossy decoders whose library versions vary, colour conversions, noise); everything else
# is checked by SHA-256 plus sampled rows, to keep the fixtures small.
FULL_DECODED = lambda name, pixels: pixels <= SMALL and name.startswith(("jpeg_", "webp_lossy"))
FULL_RESIZED = {"png_noise_odd_311x187.png", "jpeg_ocr_131x58.jpg", "png_min_branch_100x100.png", "jpeg_1x1.jpg"}
PREPROC = {  # Qwen/Qwen3-VL-*-Instruct preprocessor_config.json
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
}
# Pixel-option cases: (name, image, min_pixels, max_pixels)
OPTION_CASES = [
    ("min4096", "jpeg_ocr_131x58.jpg", 4096, 16777216),
    ("max_tokens_256", "png_rgb_text_1280x720.png", 65536, 256 * 1024),
    ("max_tokens_64", "jpeg_420_text_800x600.jpg", 65536, 64 * 1024),
    ("min_big", "png_gray_256x256.png", 1048576, 16777216),
    ("max_small", "png_doc_1700x2200.png", 4096, 100000),
]


def log(*a):
    print(*a, flush=True)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def rows_of(a):
    h = a.shape[0]
    idx = sorted(set(int(round(f * (h - 1))) for f in ROW_FRACTIONS))
    return idx, a[idx]


def unpatchify(pv, gh, gw, m=2, p=16, tp=2):
    """pixel_values [gh*gw, 3*tp*p*p] -> float32 [gh*p, gw*p, 3] (temporal copy 0); checks both copies agree."""
    x = pv.reshape(gh // m, gw // m, m, m, 3, tp, p, p)
    assert np.array_equal(x[:, :, :, :, :, 0], x[:, :, :, :, :, 1]), "temporal copies differ"
    x = x[:, :, :, :, :, 0]                      # [bh, bw, ih, iw, c, py, px]
    x = x.transpose(0, 2, 5, 1, 3, 6, 4)          # [bh, ih, py, bw, iw, px, c]
    return x.reshape(gh * p, gw * p, 3)


def to_uint8(v):
    """Inverse of (x - 127.5) / 127.5 in float32; asserts the forward formula reproduces v bit for bit."""
    x = np.rint(v.astype(np.float64) * 127.5 + 127.5)
    assert x.min() >= 0 and x.max() <= 255
    u = x.astype(np.uint8)
    fwd = (u.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    return u, bool(np.array_equal(fwd.view(np.uint32), v.view(np.uint32)))


class Reference:
    def __init__(self, dry):
        self.dry = dry
        self.versions = {"numpy": np.__version__, "PIL": Image.__version__ if hasattr(Image, "__version__") else "?"}
        import PIL
        from PIL import features
        self.versions["PIL"] = PIL.__version__
        for f in ("jpg", "zlib", "webp"):
            try:
                self.versions["PIL_" + f] = features.version(f)
            except Exception as e:
                self.versions["PIL_" + f] = repr(e)
        if dry:
            return
        import torch, torchvision, transformers
        from transformers.models.qwen2_vl import image_processing_qwen2_vl as ipq
        torch.set_num_threads(1)
        self.torch = torch
        self.versions.update(torch=torch.__version__, torchvision=torchvision.__version__,
                             transformers=transformers.__version__)
        try:
            self.versions["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except Exception as e:
            self.versions["torch_cpu_capability"] = repr(e)
        self.procs = {}
        self.proc = self.processor(65536, 16777216)
        self.versions["processor_class"] = type(self.proc).__module__ + "." + type(self.proc).__name__
        self.smart_resize = ipq.smart_resize
        log("processor:", self.versions["processor_class"], "smart_resize from", ipq.__file__)

    def processor(self, mn, mx):
        """The processor AutoImageProcessor builds from a preprocessor_config.json with these bounds."""
        if (mn, mx) not in self.procs:
            from transformers import AutoImageProcessor
            d = tempfile.mkdtemp()
            cfg = dict(PREPROC, size={"longest_edge": mx, "shortest_edge": mn})
            json.dump(cfg, open(os.path.join(d, "preprocessor_config.json"), "w"))
            self.procs[(mn, mx)] = AutoImageProcessor.from_pretrained(d)
        return self.procs[(mn, mx)]

    def process(self, im, min_pixels=65536, max_pixels=16777216):
        """-> (pixel_values float32 [N,1536], grid [t,h,w])"""
        if self.dry:
            rgb = np.asarray(im.convert("RGB"))
            h, w = dry_smart_resize(rgb.shape[0], rgb.shape[1], 32, min_pixels, max_pixels)
            r = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))
            v = (r.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
            gh, gw = h // 16, w // 16
            x = v.reshape(gh // 2, 2, 16, gw // 2, 2, 16, 3).transpose(0, 3, 1, 4, 6, 2, 5)[:, :, :, :, :, None]
            x = np.repeat(x, 2, axis=5).reshape(gh * gw, 1536)
            return np.ascontiguousarray(x), [1, gh, gw]
        out = self.processor(min_pixels, max_pixels)(images=[im], return_tensors="pt")
        pv = out["pixel_values"].numpy()
        assert pv.dtype == np.float32
        return np.ascontiguousarray(pv), [int(v) for v in out["image_grid_thw"][0].tolist()]

    def sresize(self, h, w, mn, mx):
        f = dry_smart_resize if self.dry else self.smart_resize
        return f(h, w, factor=32, min_pixels=mn, max_pixels=mx) if not self.dry else f(h, w, 32, mn, mx)


def dry_smart_resize(height, width, factor, min_pixels, max_pixels):
    if max(height, width) / min(height, width) > 200:
        raise ValueError("absolute aspect ratio must be smaller than 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def save_png(path, a):
    Image.fromarray(np.ascontiguousarray(a)).save(path, compress_level=9)


def one_image(ref, out, name, min_pixels=65536, max_pixels=16777216, tag=None):
    rec = {"file": name}
    path = os.path.join(IMAGES, name)
    try:
        im = Image.open(path)
        rec["mode"], rec["size"] = im.mode, list(im.size)
        rgb = np.asarray(im.convert("RGB"))
    except Exception as e:
        rec["pil_error"] = f"{type(e).__name__}: {e}"
        return rec
    base = os.path.join(out, tag or name)
    h0, w0 = rgb.shape[:2]
    rec["decoded_sha256"] = sha(rgb.tobytes())
    if FULL_DECODED(name, h0 * w0) and not tag:
        save_png(base + ".decoded.png", rgb)
    try:
        t = time.perf_counter()
        pv, grid = ref.process(Image.open(path), min_pixels, max_pixels)
        rec["ref_seconds"] = round(time.perf_counter() - t, 4)
    except Exception as e:
        rec["ref_error"] = f"{type(e).__name__}: {e}"
        return rec
    gh, gw = grid[1], grid[2]
    rh, rw = gh * 16, gw * 16
    resized, exact = to_uint8(unpatchify(pv, gh, gw))
    rec.update(grid_thw=grid, resized=[rh, rw], num_patches=int(pv.shape[0]),
               pixel_values_sha256=sha(pv.tobytes()), resized_sha256=sha(resized.tobytes()),
               normalize_is_x_minus_127_5_div_127_5=exact)
    # The reference's resize vs PIL's own Image.resize(BICUBIC) on the same decoded RGB.
    if (rh, rw) != (h0, w0):
        pil = np.asarray(Image.fromarray(rgb).resize((rw, rh), Image.BICUBIC))
        d = np.abs(pil.astype(np.int16) - resized.astype(np.int16))
        rec["pil_resize_vs_ref"] = {"max_abs": int(d.max()), "n_diff": int((d > 0).sum()), "n": int(d.size)}
    if tag:
        return rec
    if name in FULL_RESIZED:
        save_png(base + ".resized.png", resized)
    if True:
        di, dr = rows_of(rgb)
        ri, rr = rows_of(resized)
        rec["rows"] = {"decoded": di, "resized": ri}
        # one PNG: decoded rows then resized rows, each padded to the wider width
        W = max(w0, rw)
        strip = np.zeros((len(di) + len(ri), W, 3), np.uint8)
        strip[: len(di), :w0] = dr
        strip[len(di):, :rw] = rr
        save_png(base + ".rows.png", strip)
    return rec


# Direct resize probes: noise inputs resized by torchvision (as the processor calls it) to sizes where
# only one axis changes, both change, strong downscales and upscales. Inputs and outputs stored as PNG.
PROBE_INPUTS = {"noise45x61": (45, 61, 101), "noise150x200": (150, 200, 102)}   # name: (h, w, seed)
PROBE_SIZES = {"noise45x61": [(45, 100), (90, 61), (20, 61), (45, 17), (90, 122), (23, 30), (200, 7), (7, 200), (1, 1)],
               "noise150x200": [(37, 29), (150, 64), (64, 200), (300, 199), (149, 201), (16, 16)]}


def torchvision_resize(a, oh, ow, rec):
    """uint8 HWC -> uint8 HWC through torchvision's resize as the processor calls it."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF
    t = torch.from_numpy(a).permute(2, 0, 1).contiguous()
    r = TF.resize(t, [oh, ow], interpolation=InterpolationMode.BICUBIC, antialias=True)
    rec["torchvision_dtype"] = str(r.dtype)
    f = torch.nn.functional.interpolate(t[None], size=(oh, ow), mode="bicubic", antialias=True)[0]
    rec["interpolate_equal"] = bool(torch.equal(f, r))
    return r.permute(1, 2, 0).numpy()


def resize_probes(ref, out):
    recs = []
    for name, (h, w, seed) in PROBE_INPUTS.items():
        a = np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)
        save_png(os.path.join(out, f"probe_{name}.png"), a)
        for (oh, ow) in PROBE_SIZES[name]:
            rec = {"input": name, "out": [oh, ow]}
            recs.append(rec)
            pil = np.asarray(Image.fromarray(a).resize((ow, oh), Image.BICUBIC))
            try:
                r = pil if ref.dry else torchvision_resize(a, oh, ow, rec)
            except Exception as e:  # torch 2.11 asserts on a 1x1 output; the processor never asks for one
                rec["ref_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                log("probe", name, oh, ow, rec)
                continue
            save_png(os.path.join(out, f"probe_{name}_{oh}x{ow}.png"), r)
            d = np.abs(pil.astype(np.int16) - r.astype(np.int16))
            rec["pil_vs_ref"] = {"max_abs": int(d.max()), "n_diff": int((d > 0).sum()), "n": int(d.size)}
            log("probe", name, oh, ow, rec)
    return recs


def smart_resize_cases(ref):
    r = np.random.RandomState(7)
    sizes = [(1, 1), (1, 200), (1, 201), (10, 500), (31, 31), (32, 32), (48, 48), (80, 80), (112, 112),
             (16, 3200), (3200, 16), (255, 256), (256, 256), (8000, 6000), (6000, 8000), (4096, 4096),
             (4097, 4096), (100000, 600), (58, 131), (69, 243), (33, 172), (1080, 1920), (2200, 1700)]
    sizes += [(int(a), int(b)) for a, b in r.randint(1, 3000, (150, 2))]
    sizes += [(int(a), int(b)) for a, b in r.randint(1, 20000, (60, 2))]
    sizes += [(int(a) * 16, int(b) * 16) for a, b in r.randint(1, 300, (60, 2))]  # ties of x/32 = k+0.5
    limits = [(65536, 16777216), (4096, 16777216), (65536, 262144), (3136, 12845056), (1, 1024), (200704, 1003520)]
    cases = []
    for i, (h, w) in enumerate(sizes):
        for mn, mx in (limits if i < 40 else [limits[i % len(limits)]]):
            try:
                rh, rw = ref.sresize(h, w, mn, mx)
                cases.append([h, w, mn, mx, int(rh), int(rw)])
            except Exception as e:
                cases.append([h, w, mn, mx, -1, -1])
    return cases


def make_bench_images(bench_dir, tsv):
    os.makedirs(bench_dir, exist_ok=True)
    shapes = []
    for line in open(tsv).read().splitlines()[1:]:
        f = line.split("\t")
        shapes.append((int(f[3]), int(f[4])))
    import multiprocessing as mp
    jobs = [(i, w, h, os.path.join(bench_dir, f"{i:04d}.jpg")) for i, (w, h) in enumerate(shapes)]
    with mp.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        pool.map(_make_bench_image, jobs, chunksize=4)
    return [j[3] for j in jobs]


def _make_bench_image(job):
    i, w, h, p = job
    y, x = np.mgrid[0:h, 0:w]
    base = (200 + 40 * np.sin(x / 23.0 + i) * np.cos(y / 17.0)).astype(np.uint8)
    a = np.repeat(base[:, :, None], 3, 2)
    a[(x // 7 + y // 11 + i) % 5 == 0] = (20, 20, 20)   # dark strokes, text-like edges
    Image.fromarray(a).save(p, quality=90)


def bench_reference(ref, files):
    import multiprocessing as mp
    res = {}
    sub = files[::4]
    t = time.perf_counter()
    for p in sub:
        ref.process(Image.open(p))
    res["single_thread_images"] = len(sub)
    res["single_thread_s"] = time.perf_counter() - t
    res["single_thread_ms_per_image"] = 1000 * res["single_thread_s"] / len(sub)
    n = os.cpu_count() or 1
    with mp.get_context("fork").Pool(n) as pool:
        pool.map(_bench_worker, files[:n])  # warm up
        t = time.perf_counter()
        pool.map(_bench_worker, files, chunksize=8)
        res[f"pool_{n}_processes_s"] = time.perf_counter() - t
    res["images"] = len(files)
    res["cpus"] = n
    return res


_REF = None


def _bench_worker(p):
    _REF.process(Image.open(p))


def main():
    global _REF
    args = sys.argv[1:]
    dry = "--dry" in args
    bench_dir = args[args.index("--bench-dir") + 1] if "--bench-dir" in args else None
    out = args[0]
    os.makedirs(out, exist_ok=True)
    ref = Reference(dry)
    _REF = ref
    log("versions:", json.dumps(ref.versions))
    manifest = {"versions": ref.versions, "preprocessor_config": PREPROC, "small_limit": SMALL,
                "row_fractions": ROW_FRACTIONS, "images": [], "options": [], "smart_resize": []}
    dump = lambda: json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=1)
    if "--bench-only" not in args:
        for name in sorted(os.listdir(IMAGES)):
            t = time.perf_counter()
            rec = one_image(ref, out, name)
            manifest["images"].append(rec)
            log(f"{name:40s} {time.perf_counter() - t:6.2f}s", rec.get("grid_thw"), rec.get("pil_error", ""),
                rec.get("ref_error", ""), rec.get("pil_resize_vs_ref", ""))
        for tag, name, mn, mx in OPTION_CASES:
            rec = one_image(ref, out, name, mn, mx, tag=tag)
            rec.update(case=tag, min_pixels=mn, max_pixels=mx)
            manifest["options"].append(rec)
            log("option", tag, rec.get("grid_thw"), rec.get("ref_error", ""))
        dump()  # written after every stage, so a run cut short still leaves its results
        manifest["resize_probes"] = resize_probes(ref, out)
        manifest["smart_resize"] = smart_resize_cases(ref)
        log("smart_resize cases:", len(manifest["smart_resize"]))
        dump()
    if bench_dir:
        tsv = args[args.index("--shapes") + 1] if "--shapes" in args else os.path.join(ROOT, "bench", "workload", "ocrbench_shapes.tsv")
        files = make_bench_images(bench_dir, tsv)
        manifest["bench_reference"] = bench_reference(ref, files)
        log("bench reference:", json.dumps(manifest["bench_reference"]))
    dump()
    log("wrote", out)


if __name__ == "__main__":
    main()
