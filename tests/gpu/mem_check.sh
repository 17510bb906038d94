#!/usr/bin/env bash
# The memory plan against NVML, one run on the GPU machine: the GPU memory tests on the tiny model, then
# for each size in SIZES the model, `qvl run` and the step-by-step figures (gpu_mem_nvml_report) on
# the benchmark's plan, and, while time remains, the benchmark of BENCH_SIZE (qvl + transformers).
# Everything is packed into PACK after each stage (a run cut short still returns what it has).
#   BIN=.devcarry/bin-mem tests/gpu/mem_check.sh OUTDIR PACK.tgz [SECONDS=400]
set -o pipefail
OUT=${1:?OUTDIR}; PACK=${2:?PACK.tgz}; BUDGET=${3:-400}; T0=$(date +%s)
export BIN=${BIN:-build} PYTHONUNBUFFERED=1
SIZES=${SIZES:-"2B 8B"}; BENCH_SIZE=${BENCH_SIZE:-4B}
LIBS=$PWD/.devcarry/lib
left() { echo $((BUDGET - ($(date +%s) - T0))); }
pack() { tar czf "$PACK" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null; }
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv; nvidia-smi; } > "$OUT/gpu.txt" 2>&1
head -2 "$OUT/gpu.txt"
python3 tools/unpack_xz.py > /dev/null   # the tiny fixtures link to the tokenizer; the tiny OCR checkpoint
LD_LIBRARY_PATH=$LIBS timeout 60 "$BIN/qvl-gpu-tests" gpu_mem_ > "$OUT/tiny_mem.log" 2>&1
grep -h "MEMJSON\|plan arena\|FAIL\|passed" "$OUT/tiny_mem.log" | cut -c1-900
pack
# plan vs NVML on each size (no benchmark): model, qvl run, qvl mem, step-by-step figures
DEADLINE=$(($(left) - 10)) STEPS="gen mem" bash tests/gpu/bench_sizes.sh "$OUT" $SIZES
pack
# the benchmark of one size, both engines, in the time left
if [ "$(left)" -gt 120 ]; then
    DEADLINE=$(($(left) - 10)) STEPS="gen qvl mem hf" bash tests/gpu/bench_sizes.sh "$OUT" "$BENCH_SIZE"
fi
cat "$OUT"/*/steps.log 2>/dev/null | tail -40
pack
echo "done at +$(($(date +%s) - T0)) s"
