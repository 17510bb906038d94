#!/usr/bin/env bash
# The README's main command (`make demo`): the whole qvl pipeline on the CPU with the bundled
# trained tiny Qwen3-VL (models/qvl-tiny-ocr, a demo and a pipeline test, not a useful OCR model).
#  1. `qvl run` on one held-out image: decode, preprocess, vision tower, chat prompt, prefill,
#     greedy decode, streaming.
#  2. `qvl eval` on the whole held-out set (tests/fixtures/tiny-ocr-heldout, OCRBench's original
#     format, never seen in training), printing the evaluation report and writing the summary files.
#  3. If python3 is there: how many predictions are identical to transformers' (the fixture's
#     transformers_predictions.json, computed on a GPU in bf16).
# Usage: scripts/demo.sh [path/to/qvl]   (default build/qvl)
set -euo pipefail
cd "$(dirname "$0")/.."
QVL=${1:-build/qvl}
MODEL=models/qvl-tiny-ocr
SET=tests/fixtures/tiny-ocr-heldout
IMAGE=$SET/images/00001.png
OUT=${QVL_DEMO_OUT:-build/demo}

[ -x "$QVL" ] || { echo "demo: $QVL not built (run make)" >&2; exit 1; }
[ -f "$MODEL/tokenizer.json" ] || { echo "demo: $MODEL/tokenizer.json missing (run make)" >&2; exit 1; }
mkdir -p "$OUT"
echo "== qvl run --model $MODEL --image $IMAGE --prompt \"what is written in the image?\"" >&2
"$QVL" run --model "$MODEL" --image "$IMAGE" --prompt "what is written in the image?" --max-new-tokens 32 --device cpu
echo "== qvl eval --model $MODEL --data $SET/OCRBench.json (240 held-out samples, CPU)" >&2
"$QVL" eval --model "$MODEL" --data "$SET/OCRBench.json" --max-new-tokens 32 --device cpu --overwrite \
    --out "$OUT/tiny-ocr-eval.jsonl" --summary "$OUT/tiny-ocr-eval.json"
echo "== results: $OUT/tiny-ocr-eval.jsonl (one line per sample), summary: $OUT/tiny-ocr-eval.json" >&2
if command -v python3 >/dev/null; then
    python3 - "$SET/transformers_predictions.json" "$OUT/tiny-ocr-eval.jsonl" <<'EOF'
import json, sys
ref = {p["index"]: p for p in json.load(open(sys.argv[1]))["predictions"]}
rows = [r for r in map(json.loads, open(sys.argv[2])) if "index" in r]
same = sum(r["prediction"] == ref[r["index"]]["prediction"] for r in rows)
ours = sum(r["prediction"].strip() == r["answers"][0] for r in rows)
theirs = sum(ref[r["index"]]["exact_match"] for r in rows)
print("== parity with transformers (bf16, GPU): %d/%d predictions identical; exact match qvl %d/%d, "
      "transformers %d/%d" % (same, len(rows), ours, len(rows), theirs, len(rows)), file=sys.stderr)
EOF
fi
