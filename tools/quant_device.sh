#!/bin/bash
# One GPU-machine run for issue 14 (from the root of a copy of the tree; qvl binaries in BIN; logs to
# $OUT):
#   1. the GPU quant tests (qvl-gpu-tests gpu_quant: int4 kernels vs the CPU dequantization, the decode
#      GEMV vs BF16 at 8B shapes, the CUDA model on tests/fixtures/quant vs transformers);
#   2. unless they failed: an 8B-shaped AutoAWQ checkpoint (random weights, group 128;
#      tools/gen_quant_models.py real awq --tf TF; TF >= 300 so that the plan admits the 768-token
#      image beside the continuation) with transformers references on its dequantized
#      weights, qvl's stages and teacher-forced tokens (gpu_real_shape) compared by
#      tools/gen_real_shape_models.py compare;
#   3. `qvl mem` and `qvl eval` of that checkpoint on every EVERY-th row of the OCRBench-shaped workload
#      (default resolution, then --max-image-tokens 2048): samples/s, NVML peak, plan.
# Each step runs under `timeout`; STEPS (default "tests real eval") picks steps.
set -u
BIN=${BIN:-build}; W=${WORK:-/tmp/qvl_quant}; EVERY=${EVERY:-10}; NEW=${NEW:-16}; TF=${TF:-320}
STEPS=${STEPS:-"tests real eval"}
mkdir -p "$OUT" "$W"
T0=$(date +%s)
log() { echo "[+$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/steps.log"; }
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/card.txt" 2>&1
rc=0
if has tests; then
    log "gpu_quant tests"
    QVL_TEST_VERBOSE=1 timeout 150 "$BIN/qvl-gpu-tests" gpu_quant > "$OUT/gpu_quant.log" 2>&1 || rc=1
    grep -E "^(ok|FAIL|not ok)|fail|layer |linear|qkv|gate_up|down |^  o " "$OUT/gpu_quant.log" | head -30
    log "gpu_quant rc $rc"
    [ $rc -eq 0 ] || { log "tests failed: stopping"; exit 1; }
fi
M=$W/awq8b
if has real; then
    log "gen 8B AWQ"
    timeout 240 python3 tools/gen_quant_models.py real awq "$W/awq8b" 8B --group 128 --tf "$TF" > "$OUT/gen.log" 2>&1 || rc=1
    tail -4 "$OUT/gen.log"
    log "gpu_real_shape"
    QVL_REAL_DIR=$M timeout 120 "$BIN/qvl-gpu-tests" gpu_real_shape > "$OUT/real.log" 2>&1 || rc=1
    grep -E "open|decode|FAIL|fail" "$OUT/real.log" | head -8
    timeout 60 python3 tools/gen_real_shape_models.py compare "$M" > "$OUT/compare.log" 2>&1 || rc=1
    tail -48 "$OUT/compare.log"
    M=$M/model
fi
if has eval && [ -f "$M/config.json" ]; then
    "$BIN/qvl" mem --model "$M" > "$OUT/mem.txt" 2>&1
    cat "$OUT/mem.txt"
    DJ=$(python3 tools/make_workload_dataset.py bench/workload/ocrbench_shapes.tsv "$EVERY" "$W/wl") || exit 1
    i=0
    for args in "" "--max-image-tokens 2048"; do
        i=$((i + 1))
        log "eval ${args:-(default)}"
        # shellcheck disable=SC2086
        timeout 150 "$BIN/qvl" eval --model "$M" --data "$DJ" --max-new-tokens "$NEW" --device cuda $args \
            --out "$W/eval_$i.jsonl" > "$OUT/eval_$i.txt" 2> "$OUT/eval_$i.err" || rc=1
        cp "$W/eval_$i.json" "$OUT/eval_$i.json" 2>/dev/null
        tail -3 "$OUT/eval_$i.err"
        python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s.get(k) for k in ('samples_per_s','peak_memory_mib','total_time_s')})" "$W/eval_$i.json" || true
    done
fi
log "done rc $rc"
exit $rc
