#!/usr/bin/env bash
# One device call at the end of a step: every GPU test (tiny fixtures, memory plan vs NVML, the
# trained tiny OCR model against transformers' predictions) and the 2B/4B/8B benchmark, qvl and
# transformers side by side (tests/gpu/bench_sizes.sh), from ONE pack of prebuilt binaries (the
# working tree that travels is near its 64 MiB cap: carry the pack, never unpacked binaries).
#   here:  tar cJf .devcarry/final.tar.xz -C BUILD qvl qvl-gpu-tests bench_gpu -C "$PWD/.devcarry" lib
#   there: tests/gpu/final_session.sh .devcarry/final.tar.xz OUTDIR [SIZES="2B 4B 8B"] [SECONDS=540]
# OUTDIR gets gpu.txt, gpu_tests.log, bench_<size>.md and all.tgz (every log and JSON): 8 files at most.
set -o pipefail
PACK=${1:?PACK.tar.xz}; OUT=${2:?OUTDIR}; SIZES=${3:-"2B 4B 8B"}; BUDGET=${4:-540}; T0=$(date +%s)
B=/tmp/qvl_final
mkdir -p "$OUT" "$B" && tar xJf "$PACK" -C "$B" || { echo "final_session: cannot unpack $PACK" >&2; exit 1; }
python3 tools/unpack_xz.py > /dev/null || exit 1   # tokenizer (the tiny fixtures link to it), tiny OCR checkpoint
export LD_LIBRARY_PATH=$B/lib QVL_BIN=$B/qvl PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
QVL_TEST_VERBOSE=1 timeout 200 "$B/qvl-gpu-tests" > "$OUT/gpu_tests.log" 2>&1 || rc=1
grep -h "^ok\|^FAIL\|passed,\|tiny-ocr" "$OUT/gpu_tests.log"
mkdir -p "$OUT/bench"
BIN=$B LIBS=$B/lib STEPS=${STEPS:-"gen qvl hf"} DEADLINE=$((BUDGET - ($(date +%s) - T0))) \
    bash tests/gpu/bench_sizes.sh "$OUT/bench" $SIZES || rc=1
for s in $SIZES; do cp "$OUT/bench/bench_$s.md" "$OUT/" 2>/dev/null; done   # the JSON stays in all.tgz
tar czf "$OUT/all.tgz" -C "$OUT" gpu.txt gpu_tests.log bench 2>/dev/null && rm -rf "$OUT/bench"
cat "$OUT"/bench_*.md 2>/dev/null
exit $rc
