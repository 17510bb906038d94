#!/usr/bin/env bash
# The README's main command (`make demo`): the whole qvl pipeline in one run on the bundled tiny
# model - image decode, preprocess, vision tower, chat prompt, prefill, greedy decode, streaming.
# The tiny model has random weights, so its answer is gibberish; the point is that every stage runs.
# Usage: scripts/demo.sh [path/to/qvl]   (default build/qvl)
set -euo pipefail
cd "$(dirname "$0")/.."
QVL=${1:-build/qvl}
MODEL=tests/fixtures/tiny/tied
IMAGE=tests/fixtures/tiny/images/shapes96x128.png
PROMPT="What is written here? Answer briefly."

[ -x "$QVL" ] || { echo "demo: $QVL not built (run make)" >&2; exit 1; }
echo "== qvl run --model $MODEL --image $IMAGE --prompt \"$PROMPT\" --max-new-tokens 24" >&2
"$QVL" run --model "$MODEL" --image "$IMAGE" --prompt "$PROMPT" --max-new-tokens 24 --device cpu
echo "== the same with --json" >&2
"$QVL" run --model "$MODEL" --image "$IMAGE" --prompt "$PROMPT" --max-new-tokens 24 --device cpu --json
