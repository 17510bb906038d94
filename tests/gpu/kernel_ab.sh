#!/usr/bin/env bash
# A kernel change checked on the GPU machine in one run: GPU tests on the tiny fixtures, 2B parity, the 2B
# benchmark (qvl and transformers in the same run), qvl again with the mma.sync attention (A/B:
# QVL_ATT_IMPL=0), then, while time remains, an Nsight Systems kernel summary (if the machine has
# nsys) and 8B parity. When a parity check fails, it is rerun with the mma.sync attention, so that
# one run says whether the Hopper kernel broke it.
# After every step all logs are packed into PACK (one file survives a run cut short) and the key
# lines are printed.
#   BUILD=build-x tests/gpu/kernel_ab.sh OUTDIR PACK.tgz [SECONDS=330]
set -o pipefail
OUT=${1:?OUTDIR}; PACK=${2:?PACK.tgz}; BUDGET=${3:-330}; T0=$(date +%s)
export BUILD=${BUILD:-build-cuda} PYTHONUNBUFFERED=1
LIBS=$PWD/.devcarry/lib
left() { echo $((BUDGET - ($(date +%s) - T0))); }
step() {
    tar czf "$PACK" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null
    echo "== $1 at +$(($(date +%s) - T0)) s" | tee -a "$OUT/steps.log"
}
keylines() { grep -h "passed,\|PARITY\|top-1\|^{\|GEMV timing\|ms/step\|FAIL" "$@" 2>/dev/null | cut -c1-600; }
mkdir -p "$OUT"
python3 -c "import torch, transformers, PIL, tokenizers, pyarrow; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'PIL', PIL.__version__, 'tokenizers', tokenizers.__version__, 'pyarrow', pyarrow.__version__)" \
    2>&1 | tee "$OUT/versions.txt"

# isolate NAME: reruns a failed check with each new kernel family switched off.
isolate() {
    for v in QVL_ATT_IMPL=0; do
        echo "---- $1 with $v"
        if [ "$1" = tiny ]; then
            LD_LIBRARY_PATH=$LIBS env $v QVL_BIN=$BUILD/qvl timeout 100 $BUILD/qvl-gpu-tests gpu_ 2>&1 | tail -5
        else
            LD_LIBRARY_PATH=$LIBS env $v QVL_REAL_DIR=/tmp/qvl_real_2B timeout 100 $BUILD/qvl-gpu-tests gpu_real_shape 2>&1 | tail -3
            python3 tools/gen_real_shape_models.py compare /tmp/qvl_real_2B 2>&1 | tail -4
        fi
    done 2>&1 | tee -a "$OUT/isolate.log"
}

step tiny
tests/gpu/run_on_gpu.sh "$OUT/2B" 2B tiny 10 > "$OUT/2B.stdout" 2>&1
keylines "$OUT/2B/tiny.log"
grep -q " 0 failed" "$OUT/2B/tiny.log" || { step "tiny FAILED: isolating"; isolate tiny; }
step real_2B
tests/gpu/run_on_gpu.sh "$OUT/2B" 2B real 10 >> "$OUT/2B.stdout" 2>&1
keylines "$OUT/2B/real_2B.log"
grep -q "PARITY PASS" "$OUT/2B/real_2B.log" || { step "2B parity FAILED: isolating"; isolate real; }
step bench_2B
tests/gpu/run_on_gpu.sh "$OUT/2B" 2B "bench bench_v1" 10 >> "$OUT/2B.stdout" 2>&1
keylines "$OUT"/2B/bench_*.log
# Where the time goes (for the next step), when the machine has Nsight Systems: every 50th row.
NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ] && [ "$(left)" -gt 200 ]; then
    step "nsys ($NSYS)"
    LD_LIBRARY_PATH=$LIBS timeout 50 "$NSYS" profile -t cuda -o /tmp/qvl_prof -f true $BUILD/bench_gpu \
        /tmp/qvl_real_2B/model bench/workload/ocrbench_shapes.tsv 50 > "$OUT/nsys_run.log" 2>&1
    timeout 40 "$NSYS" stats -r cuda_gpu_kern_sum /tmp/qvl_prof.nsys-rep 2>&1 | cut -c1-250 | head -60 > "$OUT/nsys_stats.txt"
    head -30 "$OUT/nsys_stats.txt"
fi
step "8B (left $(left) s)"
if [ "$(left)" -gt 150 ]; then
    timeout $(($(left) - 10)) tests/gpu/run_on_gpu.sh "$OUT/8B" 8B real 10 > "$OUT/8B.stdout" 2>&1
    echo "8B rc=$?" >> "$OUT/steps.log"
    keylines "$OUT/8B/real_8B.log"
fi
step done
