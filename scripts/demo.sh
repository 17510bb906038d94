#!/usr/bin/env bash
# The README's main command (`make demo`): the whole qvl pipeline on bundled data.
#  1. `qvl run` on the bundled tiny model and image: decode, preprocess, vision tower, chat prompt,
#     prefill, greedy decode, streaming.
#  2. `qvl eval` of the same model on the bundled 16-sample OCRBench-format set, printing the
#     evaluation report users know, per-category scores and the summary files.
# The tiny model has random weights (it exists to prove parity with transformers), so its answers
# are gibberish and its accuracy is about 0; the point is that every stage runs.
# Usage: scripts/demo.sh [path/to/qvl]   (default build/qvl)
set -euo pipefail
cd "$(dirname "$0")/.."
QVL=${1:-build/qvl}
MODEL=tests/fixtures/tiny/tied
IMAGE=tests/fixtures/tiny/images/shapes96x128.png
DATA=tests/fixtures/ocrbench/json/OCRBench.json
PROMPT="What is written here? Answer briefly."
OUT=${QVL_DEMO_OUT:-build/demo}

[ -x "$QVL" ] || { echo "demo: $QVL not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
echo "== qvl run --model $MODEL --image $IMAGE --prompt \"$PROMPT\" --max-new-tokens 24" >&2
"$QVL" run --model "$MODEL" --image "$IMAGE" --prompt "$PROMPT" --max-new-tokens 24 --device cpu
echo "== qvl eval --model $MODEL --data $DATA --max-new-tokens 16 --overwrite" >&2
"$QVL" eval --model "$MODEL" --data "$DATA" --max-new-tokens 16 --device cpu --overwrite \
    --out "$OUT/eval.jsonl" --summary "$OUT/eval.json"
echo "== results: $OUT/eval.jsonl (one line per sample), summary: $OUT/eval.json" >&2
