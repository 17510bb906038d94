#!/usr/bin/env bash
# Memory fitted to the work (issue 15) and two MPI ranks sharing one GPU (issue 17), one GPU run:
#   1. every GPU test on the tiny fixtures (qvl-gpu-tests), incl. the chunked vision MLP
#   2. gpu_mem_fit_never_above_budget on the random-weight 2B (randomized images and budgets: the
#      NVML process peak never above --gpu-mem, the plan within 2% of it)
#   3. `qvl eval --max-new-tokens 8` on the whole OCRBench-shaped workload with the 2B, plan sized from
#      the data: default settings, --max-image-tokens 2048 and --gpu-mem 6000 (auto-fit); samples/s and
#      the NVML peak of each (the summary JSON), beside the plan the report states
#   4. tests/gpu/mpi_scale.sh share: two ranks on one GPU give the predictions of one rank
# Binaries come as one pack (tar.xz of qvl, qvl-gpu-tests built with MPI and CUDA); LIBS the Debian
# runtime libraries the GPU machine lacks; MPI_PACK Open MPI (tests/gpu/pack_openmpi.sh).
#   tests/gpu/memory_fit_check.sh PACK OUTDIR
# OUTDIR gets gpu_tests.log, fit.log, eval.md (table) and mpi/ (steps.log, table.md, compare.txt).
set -o pipefail
PACK=${1:?PACK.tar.xz}; OUT=${2:?OUTDIR}
B=/tmp/qvl_memfit_bin; WORK=${WORK:-/tmp}
mkdir -p "$OUT" "$B" && tar xJf "$PACK" -C "$B" || { echo "memory_fit_check: cannot unpack $PACK" >&2; exit 1; }
python3 tools/unpack_xz.py > /dev/null || exit 1
export LD_LIBRARY_PATH=${LIBS:-$PWD/.devcarry/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} PYTHONUNBUFFERED=1
log() { echo "[memory_fit_check +${SECONDS}s] $*" >&2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
rc=0
log "GPU tests (tiny fixtures)"
QVL_TEST_VERBOSE=1 QVL_BIN=$B/qvl timeout 240 "$B/qvl-gpu-tests" > "$OUT/gpu_tests.log" 2>&1 || rc=1
grep -h "^ok\|^FAIL\|passed,\|FITSUMMARY" "$OUT/gpu_tests.log"

M=$WORK/qvl_bench_2B/model
log "2B model"
[ -f "$M/config.json" ] || python3 tests/gpu/gen_bench_model.py 2B "$M" > "$OUT/gen_2B.log" 2>&1 || { log "gen failed"; exit 1; }
log "mem fit on the 2B"
QVL_FIT_MODEL=$M QVL_FIT_IMAGES=${FIT_IMAGES:-300} QVL_FIT_BUDGETS=${FIT_BUDGETS:-6} QVL_TEST_VERBOSE=1 QVL_BIN=$B/qvl \
    timeout 200 "$B/qvl-gpu-tests" gpu_mem_fit_never_above_budget > "$OUT/fit.log" 2>&1 || rc=1
grep -h "^FIT\|^ok\|^FAIL" "$OUT/fit.log" | cut -c1-300

# The workload as OCRBench.json + PNGs, every row.
log "data"
DJ=$(python3 tools/make_workload_dataset.py bench/workload/ocrbench_shapes.tsv 1 "$WORK/qvl_mpi_data_1") || exit 1
echo "| settings | samples/s | NVML peak MiB | plan MiB | plan sized for |" > "$OUT/eval.md"
echo "|---|---|---|---|---|" >> "$OUT/eval.md"
i=0
for args in "" "--max-image-tokens 2048" "--gpu-mem 6000"; do
    i=$((i + 1))
    log "eval ${args:-(default)}"
    # shellcheck disable=SC2086
    timeout 200 "$B/qvl" eval --model "$M" --data "$DJ" --max-new-tokens 8 --device cuda $args \
        --out "$WORK/eval_$i.jsonl" > "$OUT/eval_$i.txt" 2> "$OUT/eval_$i.err" || rc=1
    python3 - "$WORK/eval_$i.json" "${args:-default}" >> "$OUT/eval.md" <<'PY' || echo "| ${args:-default} | failed | | | |" >> "$OUT/eval.md"
import json, sys
s = json.load(open(sys.argv[1]))
st = s.get("settings", {})
mp = st.get("memory_plan", {})
print("| %s | %s | %s | %s | %s |" % (sys.argv[2], s.get("samples_per_s"), s.get("peak_memory_mib", {}).get("used"),
      mp.get("total_mib", mp.get("total")), json.dumps({k: v for k, v in mp.items() if "max" in k or "sized" in k})))
PY
done
cat "$OUT/eval.md"

log "two ranks on one GPU"
QVL=$B/qvl MPI_PACK=${MPI_PACK:-.devcarry/openmpi.tar.xz} TSV=bench/workload/ocrbench_shapes.tsv WORK=$WORK EVERY=10 NEW=8 \
    timeout 300 bash tests/gpu/mpi_scale.sh "$OUT/mpi" share || rc=1
exit $rc
