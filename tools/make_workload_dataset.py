#!/usr/bin/env python3
"""The OCRBench-shaped workload (bench/workload/ocrbench_shapes.tsv) as a dataset `qvl eval` reads:
OCRBench.json plus one PNG per row of exactly the row's size (a synthetic texture: content does not
matter to speed or memory with random weights). Every EVERY-th row; nothing is rewritten when
OUTDIR/OCRBench.json exists.
  make_workload_dataset.py TSV EVERY OUTDIR      (prints the path of OCRBench.json)"""
import json
import os
import sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    tsv, every, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    path = os.path.join(out, "OCRBench.json")
    if not os.path.exists(path):
        os.makedirs(os.path.join(out, "images"), exist_ok=True)
        rows = [line.rstrip("\n").split("\t") for line in open(tsv)][1:]
        items = []
        for i, r in enumerate(rows):
            if i % every:
                continue
            idx, w, h = int(r[0]), int(r[3]), int(r[4])
            y, x = np.mgrid[0:h, 0:w]
            rgb = ((x[..., None] * 7 + y[..., None] * 13 + np.arange(3) * 50 + idx) & 255).astype(np.uint8)
            name = "images/%05d.png" % idx
            Image.fromarray(rgb).save(os.path.join(out, name), compress_level=1)
            items.append({"dataset_name": r[1], "id": idx, "image_path": name, "question": json.loads(r[5]),
                          "answers": json.loads(r[6]), "type": r[2]})
        with open(path + ".partial", "w") as f:
            json.dump(items, f)
        os.replace(path + ".partial", path)
        print("data: %d samples in %s" % (len(items), out), file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
