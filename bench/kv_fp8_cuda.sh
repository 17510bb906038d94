#!/usr/bin/env bash
# The FP8 KV cache on CUDA against BF16, one GPU run (docs/model.md 7.5): for each size, the
# random-weight checkpoint (tests/gpu/gen_bench_model.py) and the OCRBench-shaped workload
# (tools/make_workload_dataset.py, every EVERY-th row), then `qvl eval --max-new-tokens 8` with
# --kv-dtype bf16 and fp8, first with the default plan, then under one --gpu-mem cap (CAP MiB: the
# FP8 pool holds twice the blocks, so more sequences fit). Binaries come as one pack (tar.xz with
# build-dev/qvl; LIBS the runtime libraries the GPU machine lacks), as tests/gpu/bench_eval.sh takes.
#   bench/kv_fp8_cuda.sh PACK OUTDIR [SIZES="2B"] [EVERY=2] [CAP=12000]
# OUTDIR gets gpu.txt, <size>_<kv>_<plan>.{txt,err,json} and table.md
# (| size | plan | kv | samples/s | peak MiB | sequences | plan KV MiB |).
set -o pipefail
PACK=${1:?PACK.tar.xz}; OUT=${2:?OUTDIR}; SIZES=${3:-"2B"}; EVERY=${4:-2}; CAP=${5:-12000}
B=/tmp/qvl_kvfp8_bin; WORK=${WORK:-/tmp}
mkdir -p "$OUT" "$B" && tar xJf "$PACK" -C "$B" || { echo "kv_fp8_cuda: cannot unpack $PACK" >&2; exit 1; }
QVL=$(find "$B" -name qvl -type f | head -1)
python3 tools/unpack_xz.py > /dev/null || exit 1
LIBDIR=$(find "$B" -name 'libcjson.so*' -printf '%h\n' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=${LIBS:-${LIBDIR:-$PWD/.devcarry/lib}}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
DJ=$(python3 tools/make_workload_dataset.py bench/workload/ocrbench_shapes.tsv "$EVERY" "$WORK/qvl_kvfp8_data_$EVERY") || exit 1
echo "| size | plan | kv | samples/s | peak MiB | sequences | plan KV MiB |" > "$OUT/table.md"
echo "|---|---|---|---|---|---|---|" >> "$OUT/table.md"
rc=0
for size in $SIZES; do
    M=$WORK/qvl_bench_$size/model
    [ -f "$M/config.json" ] || python3 tests/gpu/gen_bench_model.py "$size" "$M" > "$OUT/gen_$size.log" 2>&1 || { rc=1; continue; }
    for plan in default cap; do
        for kv in bf16 fp8; do
            base=$OUT/${size}_${kv}_$plan
            extra=""
            [ "$plan" = cap ] && extra="--gpu-mem $CAP"
            echo "[kv_fp8_cuda +${SECONDS}s] $size $plan $kv" >&2
            timeout ${QVL_TIMEOUT:-240} "$QVL" eval --model "$M" --data "$DJ" --max-new-tokens 8 --device cuda --overwrite \
                --kv-dtype "$kv" $extra --out "$WORK/kvfp8_$size.jsonl" --summary "$base.json" > "$base.txt" 2> "$base.err" || rc=1
            python3 - "$base.json" "$size" "$plan${extra:+ $CAP}" "$kv" >> "$OUT/table.md" <<'PY' || echo "| $size | $plan | $kv | failed | | | |" >> "$OUT/table.md"
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    s = {}
peak = s.get("peak_memory_mib", {})
st = s.get("settings", {})
plan = s.get("memory_plan_mib", {})
print("| %s | %s | %s | %s | %s | %s | %s |" % (sys.argv[2], sys.argv[3], sys.argv[4], s.get("samples_per_s", "failed"),
      peak.get("used") if isinstance(peak, dict) else peak, st.get("batch", "-"), plan.get("kv_cache", "-")))
PY
        done
    done
done
cat "$OUT/table.md"
exit $rc
