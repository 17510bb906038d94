#!/usr/bin/env bash
# Scale-out of `qvl eval` on the GPU machine (issue 17), on the OCRBench-shaped workload (the
# rows of ocrbench_shapes.tsv as an OCRBench.json with synthetic images of exactly those sizes) and
# the random-weight real-shape models (tests/gpu/gen_bench_model.py):
#   share      2B, every EVERY-th row (default 10): one rank alone, then two ranks on the same GPU
#              (mpirun MPMD, --device cuda:0, each its own --gpu-mem): the same predictions, scores
#              and token counts (compare.txt says IDENTICAL or lists the differences).
#   scale      per SIZE (default "2B 8B"), the whole workload (EVERY=1): one GPU alone, then
#              mpirun -np NGPU (every GPU of the machine, each rank the GPU of its local rank):
#              samples/s of both and the ratio to NGPU x one GPU (target >= 0.9), the load balance
#              (slowest rank's time over the mean), each rank's peak against its plan, and whether the
#              merged results and scores equal the one-GPU run's (--max-new-tokens 8 unless NEW is set).
#   tests/gpu/mpi_scale.sh OUTDIR share|scale [SIZE...]
# Environment: QVL (the qvl binary, built with MPI and CUDA; default build/qvl), LIBS (its extra
# shared libraries, as the other GPU scripts carry them), MPI_PACK (Open MPI from
# tests/gpu/pack_openmpi.sh: unpacked into / without replacing any file when mpirun is missing),
# TSV (default bench/workload/ocrbench_shapes.tsv), EVERY, NEW (max new tokens; default 16 for share, 8 for scale), GPU_MEM
# (share: the two ranks' budgets, default "20000 24000"), WORK (default /tmp).
# OUTDIR gets steps.log, table.md and, per run, the report (*.txt) and summary (*.json).
set -o pipefail
OUT=${1:?OUTDIR}; MODE=${2:?share or scale}; shift 2
QVL=${QVL:-build/qvl}; TSV=${TSV:-bench/workload/ocrbench_shapes.tsv}; WORK=${WORK:-/tmp}
NEW_SET=${NEW:-}; NEW=${NEW:-16}
[ -n "$LIBS" ] && export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$OUT"
log() { echo "[mpi_scale +${SECONDS}s] $*" | tee -a "$OUT/steps.log" >&2; }
if ! command -v mpirun > /dev/null; then
    [ -f "${MPI_PACK:-}" ] || { log "no mpirun and no MPI_PACK"; exit 1; }
    tar xJf "$MPI_PACK" --skip-old-files -C / && ldconfig || { log "cannot unpack $MPI_PACK"; exit 1; }
fi
"$QVL" --version | tee -a "$OUT/steps.log" | grep -q "mpi: yes" || { log "$QVL was built without MPI"; exit 1; }
# As root in a container: no InfiniBand/UCX probing, shared memory and TCP between the ranks.
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp)
NGPU=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$OUT/steps.log"

# data EVERY: the workload's rows as OCRBench.json + PNGs (bench_gpu's synthetic texture).
data() {
    python3 tools/make_workload_dataset.py "$TSV" "$1" "$WORK/qvl_mpi_data_$1"
}
model() {
    local m=$WORK/qvl_bench_$1/model
    [ -f "$m/config.json" ] || python3 tests/gpu/gen_bench_model.py "$1" "$m" > "$OUT/gen_$1.log" 2>&1 || return 1
    echo "$m"
}
# compare A.jsonl B.jsonl: predictions, status and token counts by index
compare() {
    python3 - "$1" "$2" <<'PY'
import json, sys
def load(p):
    out = {}
    for i, l in enumerate(open(p)):
        j = json.loads(l)
        if i and j["index"] not in out:
            out[j["index"]] = (j["status"], j["prediction"], j["correct"], j["prompt_tokens"], j["image_tokens"],
                               j["generated_tokens"])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
print("IDENTICAL: %d samples" % len(a) if not diff and a else "DIFFERENT: %d of %d samples: %s" % (len(diff), len(set(a) | set(b)), diff[:20]))
PY
}
speed() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['samples_per_s'])" "$1"; }
rc=0
case $MODE in
share)
    EV=${EVERY:-10}; read -r MEM0 MEM1 <<< "${GPU_MEM:-20000 24000}"
    D=$(data "$EV") && M=$(model 2B) || { log "no data or model"; exit 1; }
    RUN=(eval --model "$M" --data "$D" --max-new-tokens "$NEW" --max-pixels 16777216)
    log "one rank (--gpu-mem $MEM0)"
    "$QVL" "${RUN[@]}" --device cuda:0 --gpu-mem "$MEM0" --out "$OUT/one.jsonl" > "$OUT/one.txt" 2> "$OUT/one.err" || rc=1
    log "two ranks on GPU 0 (--gpu-mem $MEM0 and $MEM1)"
    timeout 540 "${MPIRUN[@]}" -np 1 "$QVL" "${RUN[@]}" --device cuda:0 --gpu-mem "$MEM0" --out "$OUT/two.jsonl" : \
        -np 1 "$QVL" "${RUN[@]}" --device cuda:0 --gpu-mem "$MEM1" --out "$OUT/two.jsonl" \
        > "$OUT/two.txt" 2> "$OUT/two.err" || rc=1
    cmp=$(compare "$OUT/one.jsonl" "$OUT/two.jsonl"); echo "$cmp" > "$OUT/compare.txt"
    case $cmp in IDENTICAL*) ;; *) rc=1 ;; esac
    { echo "| run | samples/s | peak MiB (one process) |"; echo "|---|---|---|"
      for r in one two; do
          echo "| $r | $(speed "$OUT/$r.json" 2>/dev/null) | $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['peak_memory_mib']['used'])" "$OUT/$r.json" 2>/dev/null) |"
      done; echo; echo "two ranks vs one: $cmp"; } > "$OUT/table.md"
    grep -A8 "^Per rank" "$OUT/two.txt" >> "$OUT/table.md"
    ;;
scale)
    EV=${EVERY:-1}; [ $# -gt 0 ] || set -- 2B 8B; [ -n "$NEW_SET" ] || NEW=8
    D=$(data "$EV") || { log "no data"; exit 1; }
    { echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x $NGPU; commit: ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}; --max-new-tokens $NEW"
      echo
      echo "| size | GPUs | one GPU samples/s | $NGPU GPUs samples/s | ratio to $NGPU x one (target >= 0.9) | slowest / mean rank time | rank peak / plan MiB | results and scores |"
      echo "|---|---|---|---|---|---|---|---|"; } > "$OUT/table.md"
    for S in "$@"; do
        M=$(model "$S") || { log "$S: no model"; rc=1; continue; }
        RUN=(eval --model "$M" --data "$D" --max-new-tokens "$NEW" --device cuda)
        log "$S: one GPU"
        CUDA_VISIBLE_DEVICES=0 "$QVL" "${RUN[@]}" --out "$OUT/${S}_one.jsonl" > "$OUT/${S}_one.txt" 2> "$OUT/${S}_one.err" || rc=1
        log "$S: $NGPU GPUs"
        "${MPIRUN[@]}" -np "$NGPU" "$QVL" "${RUN[@]}" --out "$OUT/${S}_all.jsonl" > "$OUT/${S}_all.txt" 2> "$OUT/${S}_all.err" || rc=1
        one=$(speed "$OUT/${S}_one.json"); all=$(speed "$OUT/${S}_all.json")
        ratio=$(python3 -c "print('%.3f' % ($all / ($NGPU * $one)))" 2>/dev/null)
        # per rank: load balance (slowest rank's time over the mean) and peak vs plan; the scores of both runs
        ranks=$(python3 - "$OUT/${S}_all.json" "$OUT/${S}_one.json" <<'PY'
import json, sys
a, o = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = a.get("per_rank", [])
t = [x["total_time_s"] for x in r if x.get("samples", 0) > 0]
bal = "%.3f" % (max(t) / (sum(t) / len(t))) if t else "-"
mem = ", ".join("%.0f/%.0f" % (x.get("peak_memory_mib", 0), x.get("planned_memory_mib", -1)) for x in r)
keys = ("total_samples", "scored", "correct", "accuracy", "ocrbench_score", "categories", "types", "tokens")
same = all(a.get(k) == o.get(k) for k in keys)
print("%s | %s | %s" % (bal, mem, "scores equal" if same else "SCORES DIFFER: " + ", ".join(k for k in keys if a.get(k) != o.get(k))))
PY
)
        cmp=$(compare "$OUT/${S}_one.jsonl" "$OUT/${S}_all.jsonl")
        case "$cmp $ranks" in IDENTICAL*"scores equal"*) ;; *) rc=1 ;; esac
        echo "| $S | $NGPU | $one | $all | $ratio | $ranks; $cmp |" >> "$OUT/table.md"
        grep -A$((NGPU + 4)) "^Per rank" "$OUT/${S}_all.txt" >> "$OUT/steps.log"
    done
    ;;
*) log "mode: share or scale"; exit 2 ;;
esac
cat "$OUT/table.md"
exit $rc
