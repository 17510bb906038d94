#!/usr/bin/env bash
# The batched benchmark of issue 13, one GPU run: for each size, the random-weight checkpoint
# (tests/gpu/gen_bench_model.py), the OCRBench-shaped workload as an OCRBench.json dataset with
# image files of the rows' sizes (tools/make_workload_dataset.py), then
#   qvl eval --max-new-tokens 8 (as a user runs it: default batch from the memory plan)
#   transformers at its best batched setting (bench/bench_hf_batched.py: left padding, the largest
#     batch that fits)
# on the same dataset, same card. Binaries come as one pack (tar.xz with build-dev/qvl; LIBS the
# runtime libraries the GPU machine lacks).
#   tests/gpu/bench_eval.sh PACK OUTDIR [SIZES="2B 4B 8B"] [EVERY=1] [HF=1]
# MAX_NEW=n (environment) generates n tokens instead of 8 (both sides); the QVL_* tuning variables
# reach qvl eval as usual (e.g. QVL_DECODE_GRAPHS=1 / 0: batched decode steps from CUDA graphs).
# OUTDIR gets gpu.txt, qvl_<size>.{txt,err,json}, hf_<size>.log and table.md
# (| size | qvl samples/s | qvl peak MiB | transformers samples/s | batch | peak MiB |).
set -o pipefail
PACK=${1:?PACK.tar.xz}; OUT=${2:?OUTDIR}; SIZES=${3:-"2B 4B 8B"}; EVERY=${4:-1}; HF=${5:-1}
B=/tmp/qvl_bench_bin; WORK=${WORK:-/tmp}
mkdir -p "$OUT" "$B" && tar xJf "$PACK" -C "$B" || { echo "bench_eval: cannot unpack $PACK" >&2; exit 1; }
QVL=$(find "$B" -name qvl -type f | head -1)
python3 tools/unpack_xz.py > /dev/null || exit 1
LIBDIR=$(find "$B" -name 'libcjson.so*' -printf '%h\n' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=${LIBS:-${LIBDIR:-$PWD/.devcarry/lib}}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} PYTHONUNBUFFERED=1
log() { echo "[bench_eval +${SECONDS}s] $*" >&2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
DJ=$(python3 tools/make_workload_dataset.py bench/workload/ocrbench_shapes.tsv "$EVERY" "$WORK/qvl_bench_data_$EVERY") || exit 1
echo "| size | qvl samples/s | qvl peak MiB | transformers samples/s | transformers batch | transformers peak MiB |" > "$OUT/table.md"
echo "|---|---|---|---|---|---|" >> "$OUT/table.md"
rc=0
for size in $SIZES; do
    M=$WORK/qvl_bench_$size/model
    log "$size model"
    [ -f "$M/config.json" ] || python3 tests/gpu/gen_bench_model.py "$size" "$M" > "$OUT/gen_$size.log" 2>&1 || { log "gen failed"; rc=1; continue; }
    log "$size qvl eval"
    timeout ${QVL_TIMEOUT:-240} "$QVL" eval --model "$M" --data "$DJ" --max-new-tokens ${MAX_NEW:-8} --device cuda --overwrite \
        --out "$WORK/bench_$size.jsonl" --summary "$OUT/qvl_$size.json" > "$OUT/qvl_$size.txt" 2> "$OUT/qvl_$size.err" || rc=1
    tail -3 "$OUT/qvl_$size.err" >&2
    hf="{}"
    if [ "$HF" = 1 ]; then
        log "$size transformers"
        timeout ${HF_TIMEOUT:-300} python3 bench/bench_hf_batched.py "$M" "$DJ" ${MAX_NEW:-8} > "$OUT/hf_$size.log" 2>&1 || rc=1
        hf=$(grep '^{' "$OUT/hf_$size.log" | tail -1)
    fi
    python3 - "$OUT/qvl_$size.json" "$size" "${hf:-{\}}" >> "$OUT/table.md" <<'PY' || echo "| $size | failed | | | | |" >> "$OUT/table.md"
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    s = {}
h = json.loads(sys.argv[3] or "{}")
peak = s.get("peak_memory_mib", {})
print("| %s | %s | %s | %s | %s | %s |" % (sys.argv[2], s.get("samples_per_s", "failed"),
      peak.get("used") if isinstance(peak, dict) else peak, h.get("samples_per_s", "-"), h.get("batch", "-"),
      h.get("peak_mib", "-")))
PY
done
cat "$OUT/table.md"
exit $rc
