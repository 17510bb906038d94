#!/usr/bin/env bash
# One device call for the attention work (issue 6): the attention microbenchmark (bench_attention:
# every kernel against an F32 reference, TFLOP/s), then, if it passed, the tiny GPU tests, 2B
# parity and the 2B benchmark with the default kernels, qvl again with the FA2 attention kernel
# (QVL_ATT_IMPL=0) for an A/B in the same call, transformers last. Logs under OUT, packed into
# OUT/all.tgz after every step.
#   BIN=.devcarry/bin-att bench/run_attention_gpu.sh OUT ["micro tiny real bench fa2"]
set -o pipefail
OUT=${1:?OUT}; STEPS=${2:-"micro tiny real bench fa2"}
BIN=${BIN:-.devcarry/bin-att}; TSV=${TSV:-.devcarry/ocrbench_shapes.tsv}
export PYTHONUNBUFFERED=1
LIBS=$PWD/.devcarry/lib
T0=$(date +%s)
mkdir -p "$OUT"
pack() { tar czf /tmp/att_all.tgz -C "$OUT" --exclude all.tgz . 2>/dev/null && cp /tmp/att_all.tgz "$OUT/all.tgz"; }
rc=0
for s in $STEPS; do
    echo "== $s at +$(($(date +%s) - T0)) s" | tee -a "$OUT/session.log"
    case $s in
    micro)
        LD_LIBRARY_PATH=$LIBS timeout 150 "$BIN/bench_attention" 2>&1 | tee "$OUT/micro.log"
        mrc=$?
        echo "micro rc=$mrc" | tee -a "$OUT/session.log"
        if [ $mrc -ne 0 ]; then rc=1; fi ;;
    tiny)
        BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/2B" 2B tiny > "$OUT/tiny.stdout" 2>&1 || rc=1
        grep -h "passed,\|FAIL" "$OUT/2B/tiny.log" | tail -5 ;;
    real)
        BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/2B" 2B real > "$OUT/real.stdout" 2>&1 || rc=1
        grep -h "PARITY\|top-1\|FAIL\|passed," "$OUT/2B/real_2B.log" | cut -c1-300 | tail -8 ;;
    bench)
        BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/2B" 2B bench 10 > "$OUT/bench.stdout" 2>&1 || rc=1 ;;
    fa2)
        QVL_ATT_IMPL=0 LD_LIBRARY_PATH=$LIBS timeout 200 "$BIN/bench_gpu" /tmp/qvl_real_2B/model "$TSV" 10 \
            > "$OUT/2B/bench_qvl_fa2_2B.log" 2>&1 || rc=1 ;;
    esac
    pack
done
echo "== done at +$(($(date +%s) - T0)) s rc=$rc" | tee -a "$OUT/session.log"
grep -A40 "== summary" "$OUT/micro.log" 2>/dev/null | cut -c1-220
for f in "$OUT"/2B/bench_*.log; do [ -f "$f" ] && echo "$(basename "$f"): $(grep '^{' "$f" | cut -c1-330)"; done
grep -h "sample 660 " "$OUT"/2B/bench_qvl*.log 2>/dev/null | cut -c1-200
exit $rc
