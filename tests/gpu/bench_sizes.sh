#!/usr/bin/env bash
# qvl and transformers (bf16, sdpa) side by side, in one run, on the random-weight real-shape
# models and the same synthetic images of the OCRBench-shaped workload (TSV, every EVERY-th row).
#   BIN=.devcarry/bin-mem tests/gpu/bench_sizes.sh OUTDIR SIZE...      (SIZE: 2B 4B 8B)
# Per size, into OUTDIR/SIZE/ and then OUTDIR/bench_SIZE.{json,md} (tests/gpu/bench_summary.py):
#   gen  the model (tests/gpu/gen_bench_model.py: tools/gen_real_shape_models.py's checkpoint without
#        its reference passes) in WORK/qvl_bench_SIZE/model, unless it is there already
#   qvl  BIN/bench_gpu: samples/s, mean latency, vision ms, plan and cudaMemGetInfo peak (qvl.log)
#   mem  qvl's process peak by NVML on the same plan (--max-model-len/--max-pixels from qvl.log's
#        open line, else MEM_LEN/MEM_PIXELS) in its own process: `qvl run` with the workload's largest
#        image (qvl_run.err), `qvl mem --json` (qvl_mem.json), and when BIN has qvl-gpu-tests the
#        step-by-step figures of gpu_mem_nvml_report (memjson.log)
#   hf   tests/gpu/bench_ref_mem.py: bench/bench_gpu_ref.py plus torch max allocated/reserved and
#        the NVML process figure (hf.log)
# Rows: every EVERY-th (default 10); 8B uses EVERY_8B (default 20: transformers 8B on every 10th
# row does not fit one run beside the rest), the same rows for both engines. EVERY/EVERY_8B may be
# N+K (every Nth row from row K): EVERY_8B=20+10 runs the other half of every 10th row.
# Time: each step runs under `timeout` (GEN_S, QVL_S, MEM_S, HF_S seconds, per size); DEADLINE
# (seconds from the start, default 570) skips, and says so, a step that would not fit.
# STEPS (default "gen qvl mem hf") picks steps; KEEP=1 keeps the models (else removed after each size).
#   ab   (opt-in) qvl once more with the environment AB_ENV (e.g. "QVL_ATT_IMPL=0"), into
#        qvl_ab.log: an A/B in the same run (compare samples/s; ids_hash says whether the tokens agree)
set -o pipefail
OUT=${1:?OUTDIR}; shift
[ $# -gt 0 ] || { echo "usage: bench_sizes.sh OUTDIR SIZE..." >&2; exit 2; }
BIN=${BIN:-build}; TSV=${TSV:-bench/workload/ocrbench_shapes.tsv}; WORK=${WORK:-/tmp}
STEPS=${STEPS:-"gen qvl mem hf"}; DEADLINE=${DEADLINE:-570}; T0=$(date +%s)
export PYTHONUNBUFFERED=1
LIBS=${LIBS:-$PWD/.devcarry/lib}
QENV=(env "LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")   # qvl's binaries need LIBS
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
has() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
# limit LIMIT MIN: the timeout for the next step (LIMIT, or what is left minus 5 s); 0 = skip it
limit() { local l; l=$(($(left) - 5)); [ "$l" -lt "$2" ] && { echo 0; return; }; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
mkdir -p "$OUT"
exec 3>&1   # step logs go here and to steps.log, never into a step's own output file
rc=0
for S in "$@"; do
    case $S in
    2B) EV=${EVERY:-10}; GEN=${GEN_S:-120}; QT=${QVL_S:-120}; HT=${HF_S:-240} ;;
    4B) EV=${EVERY:-10}; GEN=${GEN_S:-150}; QT=${QVL_S:-120}; HT=${HF_S:-240} ;;
    8B) EV=${EVERY_8B:-20}; GEN=${GEN_S:-200}; QT=${QVL_S:-150}; HT=${HF_S:-240} ;;
    *) echo "bench_sizes: unknown size $S (2B, 4B, 8B)" >&2; rc=2; continue ;;
    esac
    D=$OUT/$S; R=$WORK/qvl_bench_$S; mkdir -p "$D" "$R"
    log() { echo "[$S +$(($(date +%s) - T0)) s] $*" | tee -a "$D/steps.log" >&3; }
    step() {  # step NAME LIMIT MIN_SECONDS CMD...: runs CMD under the time left, logs the outcome
        local name=$1 t; t=$(limit "$2" "$3"); shift 3
        if [ "$t" -eq 0 ]; then log "$name: SKIPPED (only $(left) s left)"; return 1; fi
        log "$name: start (timeout $t s)"
        timeout "$t" "$@"; local r=$?
        log "$name: exit $r"
        [ $r -eq 0 ] || rc=1
        return $r
    }
    if has gen && [ ! -f "$R/model/config.json" ]; then
        step gen "$GEN" 30 python3 tests/gpu/gen_bench_model.py "$S" "$R/model" > "$D/gen.log" 2>&1
    fi
    [ -f "$R/model/config.json" ] || { log "no model in $R/model: nothing to run"; rc=1; continue; }
    if has qvl; then
        step qvl "$QT" 30 "${QENV[@]}" "$BIN/bench_gpu" "$R/model" "$TSV" "$EV" > "$D/qvl.log" 2>&1
        grep -h '^open\|^{' "$D/qvl.log" | cut -c1-400
    fi
    if has ab && [ -n "$AB_ENV" ]; then
        step "qvl with $AB_ENV" "$QT" 30 "${QENV[@]}" $AB_ENV "$BIN/bench_gpu" "$R/model" "$TSV" "$EV" > "$D/qvl_ab.log" 2>&1
        grep -h '^{' "$D/qvl_ab.log" | cut -c1-400
    fi
    if has mem; then
        LEN=${MEM_LEN:-12517}; PX=${MEM_PIXELS:-12483584}   # bench_gpu's plan for every 10th row
        if grep -q 'max_model_len [0-9]*, max_pixels [0-9]*' "$D/qvl.log" 2>/dev/null; then
            read -r LEN PX < <(sed -n 's/.*max_model_len \([0-9]*\), max_pixels \([0-9]*\).*/\1 \2/p' "$D/qvl.log" | head -1)
        fi
        # the workload's largest image of these rows, the benchmark's synthetic texture
        python3 - "$TSV" "$EV" "$R/largest.png" <<'PY' 2>&1 | tee -a "$D/steps.log"
import sys
from PIL import Image
import numpy as np
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
n, _, k = sys.argv[2].partition("+")
r = max((r for i, r in enumerate(rows) if i >= int(k or 0) and (i - int(k or 0)) % int(n) == 0), key=lambda r: int(r[3]) * int(r[4]))
w, h, idx = int(r[3]), int(r[4]), int(r[0])
y, x = np.mgrid[0:h, 0:w]
a = ((x[..., None] * 7 + y[..., None] * 13 + np.arange(3)[None, None, :] * 50 + idx) & 255).astype(np.uint8)
Image.fromarray(a).save(sys.argv[3])
print("largest image: row %d, %dx%d" % (idx, w, h))
PY
        step "qvl run (NVML peak)" "${MEM_S:-120}" 20 "${QENV[@]}" "$BIN/qvl" run --model "$R/model" --image "$R/largest.png" \
            --prompt "What is written in the image?" --max-new-tokens 16 --max-model-len "$LEN" --max-pixels "$PX" --device cuda \
            --json > "$D/qvl_run.json" 2> "$D/qvl_run.err"
        cat "$D/qvl_run.err"
        timeout 60 "${QENV[@]}" "$BIN/qvl" mem --model "$R/model" --max-model-len "$LEN" --max-pixels "$PX" --json > "$D/qvl_mem.json" 2>&1
        if [ -x "$BIN/qvl-gpu-tests" ]; then
            step "memory detail" "${MEM_S:-120}" 20 "${QENV[@]}" QVL_MEM_MODEL="$R/model" QVL_MEM_IMAGE="$R/largest.png" \
                QVL_MEM_LEN="$LEN" QVL_MEM_PIXELS="$PX" "$BIN/qvl-gpu-tests" gpu_mem_nvml_report > "$D/memjson.log" 2>&1
            grep -h "MEMJSON\|FAIL\|passed" "$D/memjson.log" | cut -c1-900
        fi
    fi
    if has hf; then
        step transformers "$HT" 60 python3 tests/gpu/bench_ref_mem.py "$R/model" "$TSV" "$EV" > "$D/hf.log" 2>&1
        grep -h '^{' "$D/hf.log" | cut -c1-400
    fi
    python3 tests/gpu/bench_summary.py "$S" "$D" "$EV" || rc=1
    [ -n "$KEEP" ] || rm -rf "$R"
done
exit $rc
