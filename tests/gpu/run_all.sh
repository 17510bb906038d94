#!/usr/bin/env bash
# Every GPU test (the kernel harness gpu_backend_ops: every CUDA op vs the CPU op; tiny fixtures, memory plan vs NVML, the
# trained tiny OCR model against transformers' predictions; the batched backend, gpu_batch*, with the
# quantized int4/FP8 fixtures at 12 sequences in flight), then the batched eval benchmark
# (tests/gpu/bench_eval.sh: qvl eval vs transformers batched, EVAL_SIZES) and the 2B/4B/8B one-at-a-time
# benchmark, qvl and transformers side by side (tests/gpu/bench_sizes.sh), from ONE pack of prebuilt binaries (the
# working tree that travels is near its 64 MiB cap: carry the pack, never unpacked binaries).
#   here:  tar cJf .devcarry/qvl-gpu.tar.xz -C BUILD qvl qvl-gpu-tests bench_gpu -C "$PWD/.devcarry" lib
#   there: tests/gpu/run_all.sh .devcarry/qvl-gpu.tar.xz OUTDIR [SIZES="2B 4B 8B"] [SECONDS=540]
# OUTDIR gets gpu.txt, gpu_tests.log, eval_table.md, bench_<size>.md and all.tgz (every log and JSON): 9 files at most.
# Optional (environment):
#   EVAL_SIZES="2B"        sizes of the batched eval benchmark (bench_eval.sh; "" skips it); EVAL_HF=0 skips its
#                          transformers side
#   TEST_AB_ENV="QVL_X=1"  the tiny GPU tests (gpu_tiny*) once more with that environment (gpu_tests_ab.log)
#   AB_ENV, STEPS          passed to bench_sizes.sh (e.g. STEPS="gen qvl ab hf" AB_ENV=QVL_X=1)
#   SAMPLE_SIZE=2B         after the benchmark, `qvl run` on that size's model and a 1024x768 image,
#                          256 new tokens, greedy vs on-device sampling (Qwen3-VL's generation_config:
#                          t 0.7, top-k 20, top-p 0.8; and top-k off), tokens/s per setting (sampling.log)
set -o pipefail
PACK=${1:?PACK.tar.xz}; OUT=${2:?OUTDIR}; SIZES=${3:-"2B 4B 8B"}; BUDGET=${4:-540}; T0=$(date +%s)
B=/tmp/qvl_pack
mkdir -p "$OUT" "$B" && tar xJf "$PACK" -C "$B" || { echo "run_all: cannot unpack $PACK" >&2; exit 1; }
python3 tools/unpack_xz.py > /dev/null || exit 1   # tokenizer (the tiny fixtures link to it), tiny OCR checkpoint
export LD_LIBRARY_PATH=$B/lib QVL_BIN=$B/qvl PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
QVL_TEST_VERBOSE=1 timeout 300 "$B/qvl-gpu-tests" > "$OUT/gpu_tests.log" 2>&1 || rc=1
grep -h "^ok\|^FAIL\|passed,\|tiny-ocr" "$OUT/gpu_tests.log"
if [ -n "$TEST_AB_ENV" ]; then
    { echo "environment: $TEST_AB_ENV"; env $TEST_AB_ENV QVL_TEST_VERBOSE=1 timeout 120 "$B/qvl-gpu-tests" gpu_tiny; } \
        > "$OUT/gpu_tests_ab.log" 2>&1 || rc=1
    grep -h "^environment\|^ok\|^FAIL\|passed,\|tiny-ocr" "$OUT/gpu_tests_ab.log"
fi
mkdir -p "$OUT/bench"
if [ -n "${EVAL_SIZES-2B}" ]; then
    LIBS=$B/lib bash tests/gpu/bench_eval.sh "$PACK" "$OUT/bench/eval" "${EVAL_SIZES-2B}" 1 "${EVAL_HF:-1}" > "$OUT/bench/eval.log" 2>&1 || rc=1
    cp "$OUT/bench/eval/table.md" "$OUT/eval_table.md" 2>/dev/null && cat "$OUT/eval_table.md"
fi
KEEP_MODELS=$KEEP; [ -n "$SAMPLE_SIZE" ] && KEEP_MODELS=1
BIN=$B LIBS=$B/lib STEPS=${STEPS:-"gen qvl hf"} KEEP=$KEEP_MODELS DEADLINE=$((BUDGET - 40 - ($(date +%s) - T0))) \
    bash tests/gpu/bench_sizes.sh "$OUT/bench" $SIZES || rc=1
M=/tmp/qvl_bench_$SAMPLE_SIZE/model
if [ -n "$SAMPLE_SIZE" ] && [ -f "$M/config.json" ]; then
    python3 -c "from PIL import Image; import numpy as np; y, x = np.mgrid[0:768, 0:1024]; \
Image.fromarray(((x[..., None] * 7 + y[..., None] * 13 + np.arange(3) * 50) & 255).astype(np.uint8)).save('/tmp/qvl_sample.png')"
    for args in "" "--sample --temperature 0.7 --top-k 20 --top-p 0.8 --seed 1" "--sample --temperature 0.7 --top-k 0 --top-p 0.8 --seed 1" \
                "--repetition-penalty 1.05"; do
        echo "== qvl run ${args:-(greedy)}"
        timeout 60 "$B/qvl" run --device cuda --model "$M" --image /tmp/qvl_sample.png --prompt "What is written in the image?" \
            --max-new-tokens 256 $args 2>&1 >/dev/null | tail -1
    done > "$OUT/bench/sampling.log" 2>&1
    cat "$OUT/bench/sampling.log"
fi
[ -n "$KEEP" ] || rm -rf /tmp/qvl_bench_*
for s in $SIZES; do cp "$OUT/bench/bench_$s.md" "$OUT/" 2>/dev/null; done   # the JSON stays in all.tgz
tar czf "$OUT/all.tgz" -C "$OUT" gpu.txt gpu_tests.log $(cd "$OUT" && ls gpu_tests_ab.log 2>/dev/null) bench 2>/dev/null && rm -rf "$OUT/bench"
cat "$OUT"/bench_*.md "$OUT"/eval_table.md 2>/dev/null
exit $rc
