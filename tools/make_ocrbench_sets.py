#!/usr/bin/env python3
"""Makes the small OCRBench-format test set in tests/fixtures/ocrbench/, in every form qvl reads.

Two stages, because the machines differ:
  --stage local    (here: Debian python3-pil + fonts-dejavu-core) renders the text images and writes
                   json/OCRBench.json + json/<image folders>, and OCRBench.tsv exactly as VLMEvalKit
                   writes it (pandas to_csv(sep='\\t') = Python csv, QUOTE_MINIMAL, '\\n' line ends).
  --stage parquet  (GPU machine: pyarrow, maybe datasets/pandas) reads json/ back and writes the
                   Hugging Face-style parquet files in each pyarrow setting, plus bad/ files for error
                   tests, into --out (a folder that is then packed and committed).
The samples imitate OCRBench: several question types, an HME item with LaTeX backslashes and a
trailing newline, list answers, quotes of both kinds, a multi-line question, non-ASCII text, and two
questions sharing one image (VLMEvalKit then stores the second image as a reference to the first row).
"""
import argparse
import base64
import csv
import io
import json
import os
import sys

SAMPLES = [
    # (dataset_name, id, image_path, question, answers, type, text drawn in the image)
    ("IIIT5K", 918, "IIIT5K/test/918_1.png", "what is written in the image?", "CENTRE",
     "Regular Text Recognition", "CENTRE"),
    ("svtp", 12, "svtp/12.png", "what is written in the image?", "PARKING",
     "Irregular Text Recognition", "PARKING"),
    ("WordArt", 3, "WordArt/test/3.png", "what is written in the image?", "Dream",
     "Artistic Text Recognition", "Dream"),
    ("IAM", 77, "IAM/test/77.png", "what is written in the image?", "café",
     "Handwriting Recognition", "café"),
    ("ORAND", 5, "ORAND/test/5.png", "what is written in the image?", "5743",
     "Digit String Recognition", "5743"),
    ("NonSemanticText", 8, "NonSemanticText/8.png", "what is written in the image?", "xqzvt",
     "Non-Semantic Text Recognition", "xqzvt"),
    ("STVQA", 31, "STVQA/31.jpg", "Which stations does this line connect?",
     ["Chatswood Epping", "Chatswood, Epping"], "Scene Text-centric VQA", "Chatswood, Epping"),
    ("textVQA", 44, "textVQA/44.JPG", 'What does the "EXIT" sign\tsay below it?', "way out",
     "Scene Text-centric VQA", "EXIT: way out"),
    ("docVQA", 9, "docVQA/9.png", "What is the total revenue?\nAnswer with the amount.",
     "$506 million", "Doc-oriented VQA", "Revenue: $506 million"),
    ("ChartQA", 2, "ChartQA/2.png", "Whose bar is tallest?", "it's Tom's",
     "Doc-oriented VQA", "tallest: it's Tom's"),
    ("SROIE", 61, "SROIE/61.jpg", "What is the weight?", ["70.6g", "70.6 g"],
     "Key Information Extraction", "NET WT 70.6 g"),
    ("FUNSD", 17, "FUNSD/17.png", "Who signed the form?", 'O\'Neil "Jr"',
     "Key Information Extraction", 'Signed: O\'Neil "Jr"'),
    ("HME100k", 4, "HME100K/4.jpeg", "Please write out the expression of the formula in the image using LaTeX format.",
     ["y _ { 2 } = - 1\n", "y_2 = - 1\n"], "Handwritten Mathematical Expression Recognition", "y_2 = -1"),
    ("HME100k", 6, "HME100K/6.jpeg", "Please write out the expression of the formula in the image using LaTeX format.",
     "B a = C H = \\frac { 9 - 1 } { 2 } = 4\n", "Handwritten Mathematical Expression Recognition",
     "Ba = CH = (9-1)/2 = 4"),
    ("POIE", 70, "POIE/70.png", "What is the value of 'Energy'?", ["1046 kJ"],
     "Key Information Extraction", "Energy 1046 kJ"),
    # Same image as item 0: a second question on it (the real file has 930 images for 1000 items).
    ("IIIT5K", 918, "IIIT5K/test/918_1.png", "what is the first letter of the word in the image?", "C",
     "Regular Text Recognition", None),
]
# textVQA/44.JPG is written on disk as textVQA/44.jpg, so the loader must match the extension
# case-insensitively (the real OCRBench.json names .JPEG/.jpeg files that way).
DISK_NAME = {"textVQA/44.JPG": "textVQA/44.jpg"}


def render(text, path):
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 22)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font)
    img = Image.new("L", (x1 - x0 + 24, y1 - y0 + 20), 255)
    ImageDraw.Draw(img).text((12 - x0, 10 - y0), text, font=font, fill=0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.lower().endswith((".jpg", ".jpeg")):
        img.convert("RGB").save(path, format="JPEG", quality=85)
    else:
        img.save(path, format="PNG", optimize=True)


def stage_local(root):
    jdir = os.path.join(root, "json")
    items = []
    for i, (ds, sid, ipath, q, ans, typ, text) in enumerate(SAMPLES):
        items.append({"dataset_name": ds, "id": sid, "image_path": ipath, "question": q,
                      "answers": ans, "type": typ})
        if text is not None:
            render(text, os.path.join(jdir, DISK_NAME.get(ipath, ipath)))
    with open(os.path.join(jdir, "OCRBench.json"), "w", encoding="utf-8") as f:
        json.dump(items, f, ensure_ascii=False, indent=2)
    # VLMEvalKit TSV: index, image (base64, or the index of an earlier row with the same image),
    # question, answer (str() of a list), category.
    rows, first_row_of = [], {}
    for i, it in enumerate(items):
        ans = it["answers"] if isinstance(it["answers"], list) else [it["answers"]]
        if it["image_path"] in first_row_of:
            img = str(first_row_of[it["image_path"]])
        else:
            first_row_of[it["image_path"]] = i
            with open(os.path.join(jdir, DISK_NAME.get(it["image_path"], it["image_path"])), "rb") as f:
                img = base64.b64encode(f.read()).decode()
        rows.append([i, img, it["question"], str(ans), it["type"]])
    with open(os.path.join(root, "OCRBench.tsv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(["index", "image", "question", "answer", "category"])
        w.writerows(rows)
    print("wrote", len(items), "samples to", root)


def hf_table(root):
    """The samples as the Hugging Face export holds them: dataset, question, question_type,
    answer (list<string>), image (struct{bytes, path}); the image bytes are the files' bytes."""
    import pyarrow as pa
    jdir = os.path.join(root, "json")
    with open(os.path.join(jdir, "OCRBench.json"), encoding="utf-8") as f:
        items = json.load(f)
    cols = {"dataset": [], "question": [], "question_type": [], "answer": [], "image": []}
    for it in items:
        with open(os.path.join(jdir, DISK_NAME.get(it["image_path"], it["image_path"])), "rb") as f:
            data = f.read()
        cols["dataset"].append(it["dataset_name"])
        cols["question"].append(it["question"])
        cols["question_type"].append(it["type"])
        cols["answer"].append(it["answers"] if isinstance(it["answers"], list) else [it["answers"]])
        cols["image"].append({"bytes": data, "path": None})
    schema = pa.schema([("dataset", pa.string()), ("question", pa.string()),
                        ("question_type", pa.string()), ("answer", pa.list_(pa.string())),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    return pa.Table.from_pydict(cols, schema=schema), items


def stage_parquet(root, out):
    import pyarrow as pa
    import pyarrow.parquet as pq
    print("pyarrow", pa.__version__, "python", sys.version.split()[0])
    table, items = hf_table(root)
    pdir, bdir = os.path.join(out, "parquet"), os.path.join(out, "bad")
    os.makedirs(os.path.join(pdir, "split"), exist_ok=True)
    os.makedirs(bdir, exist_ok=True)
    variants = {
        "default_snappy": {},  # what datasets.to_parquet gets: snappy, dictionary, page v1
        "zstd": {"compression": "zstd"},
        "uncompressed": {"compression": "none"},
        "nodict": {"use_dictionary": False},
        "v2": {"data_page_version": "2.0"},
        "v2_zstd_nodict": {"data_page_version": "2.0", "compression": "zstd", "use_dictionary": False},
        "v2_uncompressed": {"data_page_version": "2.0", "compression": "none"},
        "format1": {"version": "1.0"},  # PLAIN_DICTIONARY pages
        "list_item": {"use_compliant_nested_type": False},  # answer.list.item (older pyarrow)
        "small_pages": {"row_group_size": 5, "data_page_size": 256, "write_batch_size": 2},
        "small_pages_v2": {"row_group_size": 7, "data_page_size": 256, "write_batch_size": 3,
                           "data_page_version": "2.0", "compression": "zstd"},
        # the image dictionary overflows its page limit: later pages fall back to PLAIN, as in
        # the real 1000-image export
        "dict_fallback": {"dictionary_pagesize_limit": 1024, "data_page_size": 2048, "write_batch_size": 2},
        "checksum_index": {"write_page_checksum": True, "write_page_index": True, "write_statistics": True},
    }
    for name, kw in variants.items():
        pq.write_table(table, os.path.join(pdir, name + ".parquet"), **kw)
    # 640 rows (the 16 samples 40 times, each with its own 6-byte "image"): long level runs and
    # 10-bit dictionary indices, still small
    rows = table.to_pylist()
    many = []
    for i in range(640):
        r = dict(rows[i % len(rows)])
        r["image"] = {"bytes": b"img%03d" % i, "path": None}
        many.append(r)
    pq.write_table(pa.Table.from_pylist(many, schema=table.schema), os.path.join(pdir, "many_rows.parquet"))
    half = len(items) // 2
    pq.write_table(table.slice(0, half), os.path.join(pdir, "split", "test-00000-of-00002.parquet"))
    pq.write_table(table.slice(half), os.path.join(pdir, "split", "test-00001-of-00002.parquet"))
    try:
        import datasets
        feats = datasets.Features({"dataset": datasets.Value("string"), "question": datasets.Value("string"),
                                   "question_type": datasets.Value("string"),
                                   "answer": datasets.Sequence(datasets.Value("string")),
                                   "image": datasets.Image()})
        d = datasets.Dataset.from_dict(table.to_pydict(), features=feats)
        d.to_parquet(os.path.join(pdir, "hf_datasets.parquet"))
        print("datasets", datasets.__version__, "wrote hf_datasets.parquet")
    except ImportError:
        print("datasets: not installed, no hf_datasets.parquet")
    except Exception as e:  # keep the other files if the datasets writer fails
        print("datasets writer failed:", repr(e))
    # Bad inputs: unsupported codec and encoding, a parquet that is not OCRBench, and nulls.
    pq.write_table(table.slice(0, 3), os.path.join(bdir, "gzip.parquet"), compression="gzip")
    pq.write_table(table.slice(0, 3), os.path.join(bdir, "delta.parquet"), use_dictionary=False,
                   column_encoding={"question": "DELTA_BYTE_ARRAY"})
    pq.write_table(table.slice(0, 3).select(["dataset", "question", "answer", "image"]), os.path.join(bdir, "not_ocrbench.parquet"))
    nulls = table.slice(0, 4).to_pylist()
    nulls[1]["question"] = None
    nulls[2]["answer"] = []
    nulls[3]["image"] = {"bytes": None, "path": "lost.png"}
    pq.write_table(pa.Table.from_pylist(nulls, schema=table.schema), os.path.join(bdir, "nulls.parquet"))
    # Does pandas write the same TSV bytes as stage_local (VLMEvalKit writes with pandas)?
    try:
        import pandas as pd
        with open(os.path.join(root, "OCRBench.tsv"), encoding="utf-8", newline="") as f:
            mine = f.read()
        rows = list(csv.reader(io.StringIO(mine), delimiter="\t"))
        df = pd.DataFrame(rows[1:], columns=rows[0])
        df["index"] = df["index"].astype(int)
        theirs = df.to_csv(sep="\t", index=False)
        print("pandas", pd.__version__, "TSV identical to ours:", theirs == mine)
        if theirs != mine:
            with open(os.path.join(out, "OCRBench_pandas.tsv"), "w", encoding="utf-8", newline="") as f:
                f.write(theirs)
    except ImportError:
        print("pandas: not installed")
    md = pq.ParquetFile(os.path.join(pdir, "dict_fallback.parquet")).metadata
    print("dict_fallback image.bytes encodings:", md.row_group(0).column(4).encodings)
    for dp, _, fs in sorted(os.walk(out)):
        for fn in sorted(fs):
            p = os.path.join(dp, fn)
            md = pq.ParquetFile(p).metadata if fn.endswith(".parquet") and "bad" not in dp else None
            print(os.path.relpath(p, out), os.path.getsize(p),
                  "" if md is None else "rows=%d rg=%d created_by=%s" % (md.num_rows, md.num_row_groups, md.created_by))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["local", "parquet"], required=True)
    ap.add_argument("--root", default="tests/fixtures/ocrbench")
    ap.add_argument("--out", help="parquet stage: output folder (default: --root)")
    a = ap.parse_args()
    if a.stage == "local":
        stage_local(a.root)
    else:
        stage_parquet(a.root, a.out or a.root)


if __name__ == "__main__":
    main()
