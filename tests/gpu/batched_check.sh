#!/usr/bin/env bash
# The batched engine on one GPU, one run (issues 13, 15, 16): the named GPU tests (TESTS), then on
# the random-weight 2B over the whole OCRBench-shaped workload (tools/make_workload_dataset.py),
# `qvl eval --max-new-tokens 8` as users run it:
#   default settings (the plan from the data, default batch), the same with decode graphs on
#   (QVL_DECODE_GRAPHS=1), --max-image-tokens 2048, and --gpu-mem 8000,
# then `qvl serve` under load (bench/run_serve_gpu.sh, CLIENTS), then transformers batched
# (bench/bench_hf_batched.py, HF_MAX_SECONDS) beside `qvl eval` on every HF_EVERY-th row (0: not run).
# ROWS picks the eval rows (default: default graphs cap2048 gpumem8000).
#   tests/gpu/batched_check.sh PACK OUTDIR
# PACK: tar.xz of qvl, qvl-gpu-tests, bench_serve and lib/ (the Debian runtime libraries the GPU
# machine lacks, lib/mhd for the server). OUTDIR gets summary.md (every table) and all.tgz (logs, JSON).
set -o pipefail
PACK=${1:?PACK.tar.xz}; OUT=${2:?OUTDIR}
B=/tmp/qvl_check_bin; W=${WORK:-/tmp}; L=$W/qvl_check_logs
mkdir -p "$OUT" "$B" "$L" && tar xJf "$PACK" -C "$B" || { echo "batched_check: cannot unpack $PACK" >&2; exit 1; }
export LD_LIBRARY_PATH=$B/lib:$B/lib/mhd QVL_BIN=$B/qvl PYTHONUNBUFFERED=1
python3 tools/unpack_xz.py > /dev/null || exit 1
S=$OUT/summary.md
log() { echo "[batched_check +${SECONDS}s] $*" | tee -a "$S" >&2; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; echo "commit ${COMMIT:-?}"; } | tee "$S"
rc=0
TESTS=${TESTS:-"gpu_batch gpu_cli_run gpu_decode_graphs gpu_mem gpu_two_engines"}
for t in $TESTS; do
    QVL_TEST_VERBOSE=1 timeout ${TEST_TIMEOUT:-150} "$B/qvl-gpu-tests" $t > "$L/test_$t.log" 2>&1 || rc=1
    grep -h "^ok\|^FAIL\|passed,\|CHECK\|in flight\|graphs captured\|does not" "$L/test_$t.log" | tee -a "$S"
done
log "2B model and workload"
M=$W/qvl_bench_2B/model
[ -f "$M/config.json" ] || python3 tests/gpu/gen_bench_model.py 2B "$M" > "$L/gen_2B.log" 2>&1 || { log "gen failed"; exit 1; }
DJ=$(python3 tools/make_workload_dataset.py bench/workload/ocrbench_shapes.tsv 1 "$W/qvl_bench_data_1") || exit 1
echo "| 2B eval settings | samples/s | NVML peak MiB | plan MiB | batch | KV pool blocks (peak used) | wall s |" >> "$S"
echo "|---|---|---|---|---|---|---|" >> "$S"
row() {   # name env args...
    local name=$1 envs=$2; shift 2
    env $envs timeout ${EVAL_TIMEOUT:-120} "$B/qvl" eval --model "$M" --data "$DJ" --max-new-tokens 8 --device cuda --overwrite \
        --out "$W/check_$name.jsonl" --summary "$L/eval_$name.json" "$@" > "$L/eval_$name.txt" 2> "$L/eval_$name.err" || rc=1
    python3 - "$L/eval_$name.json" "$name" >> "$S" <<'PY' || echo "| $name | failed | | | | | |" >> "$S"
import json, sys
s = json.load(open(sys.argv[1])); st = s.get("settings", {}); mp = st.get("memory_plan", {}); kp = st.get("kv_pool", {})
peak = s.get("peak_memory_mib", {})
print("| %s | %.2f | %s | %s | %s | %s (%s) | %.1f |" % (sys.argv[2], s["samples_per_s"], peak.get("used") if isinstance(peak, dict) else peak,
      s.get("memory_plan_mib"), st.get("batch"), mp.get("kv_blocks"), kp.get("peak_blocks"), s.get("total_time_s") or 0))
PY
    grep -h "memory plan" "$L/eval_$name.err" | head -1 | sed "s/^/$name: /" >> "$L/plan_lines.txt"
    grep -h "engine time" "$L/eval_$name.err" | head -1 | sed "s/^/$name: /" >> "$L/plan_lines.txt"
}
for r in ${ROWS:-default graphs cap2048 gpumem8000}; do
    case $r in
        default) row default "" ;;
        graphs) row graphs "QVL_DECODE_GRAPHS=1" ;;
        cap2048) row cap2048 "" --max-image-tokens 2048 ;;
        gpumem8000) row gpumem8000 "" --gpu-mem 8000 ;;
    esac
done
cat "$L/plan_lines.txt" >> "$S"
log "serve"
LIBS=$B/lib:$B/lib/mhd timeout ${SERVE_TIMEOUT:-100} bash bench/run_serve_gpu.sh "$B" "$L/serve" "${CLIENTS:-1,8,32}" > "$L/serve.log" 2>&1 || rc=1
grep -h "^|" "$L/serve/bench.md" >> "$S"; tail -2 "$L/serve.log" >> "$S"
if [ "${HF_EVERY:-5}" != 0 ]; then
    log "transformers batched beside qvl on every ${HF_EVERY:-5}th row"
    D5=$(python3 tools/make_workload_dataset.py bench/workload/ocrbench_shapes.tsv "${HF_EVERY:-5}" "$W/qvl_bench_data_${HF_EVERY:-5}") || exit 1
    DJ=$D5 row "every${HF_EVERY:-5}" ""
    HF_MAX_SECONDS=${HF_MAX_SECONDS:-90} timeout ${HF_TIMEOUT:-200} python3 bench/bench_hf_batched.py "$M" "$D5" 8 > "$L/hf.log" 2>&1 || rc=1
    echo "transformers: $(grep '^{' "$L/hf.log" | tail -1)" >> "$S"
fi
tar czf "$OUT/all.tgz" -C "$L" . 2>/dev/null
cat "$S"
exit $rc
