#!/usr/bin/env bash
# The attention work (issue 6) on the GPU machine in one run: the attention microbenchmark (bench_attention:
# every kernel against an F32 reference, TFLOP/s), then, if it passed, the tiny GPU tests, 2B
# parity and the 2B benchmark with the default kernels, qvl again with the FA2 attention kernel
# (QVL_ATT_IMPL=0) for an A/B in the same run, transformers last, then 8B parity if time is left.
# The e2e steps use the committed wgmma configurations (large_default in cuda_attention_sm90.cu); the
# micro step prints the fastest ones it measured beside them. Logs under OUT, packed into
# OUT/all.tgz after every step.
#   BIN=.devcarry/bin-att bench/run_attention_gpu.sh OUT ["micro tiny real bench fa2 real8B"]
set -o pipefail
OUT=${1:?OUT}; STEPS=${2:-"micro tiny real bench fa2 real8B"}
BIN=${BIN:-.devcarry/bin-att}; TSV=${TSV:-bench/workload/ocrbench_shapes.tsv}
export PYTHONUNBUFFERED=1
LIBS=$PWD/.devcarry/lib
T0=$(date +%s)
mkdir -p "$OUT"
pack() { tar czf /tmp/att_all.tgz -C "$OUT" --exclude all.tgz . 2>/dev/null && cp /tmp/att_all.tgz "$OUT/all.tgz"; }
rc=0
for s in $STEPS; do
    echo "== $s at +$(($(date +%s) - T0)) s" | tee -a "$OUT/steps.log"
    case $s in
    micro)
        LD_LIBRARY_PATH=$LIBS timeout 150 "$BIN/bench_attention" 2>&1 | tee "$OUT/micro.log"
        mrc=$?
        echo "micro rc=$mrc" | tee -a "$OUT/steps.log"
        if [ $mrc -ne 0 ]; then rc=1; fi
        # The fastest configuration that passed at every size, per head-size class, at the largest
        # size, to compare with the committed default.
        CFG=$(python3 - "$OUT/micro.log" <<'PY'
import re, sys
fail, best = set(), {}
for line in open(sys.argv[1]):
    m = re.match(r'\S+\s+n=\s*(\d+)\s+hd=\s*(\d+)\s+\S+\s+impl=WG(\d+)\s+([\d.]+) ms.*\s(OK|FAIL)$', line.strip())
    if not m:
        continue
    n, hd, cfg, ms, ok = int(m[1]), int(m[2]), int(m[3]), float(m[4]), m[5] == 'OK'
    cls = 64 if hd <= 64 else 80 if hd <= 80 else 128
    if not ok:
        fail.add((cls, cfg))
    best.setdefault(cls, {}).setdefault(n, {})[cfg] = ms
out = []
for cls, by_n in sorted(best.items()):
    times = by_n[max(by_n)]
    ok = [(ms, c) for c, ms in times.items() if (cls, c) not in fail]
    if ok:
        out.append('%d:%d' % (cls, min(ok)[1]))
print(','.join(out))
PY
)
        echo "fastest wgmma configurations: $CFG (committed: 64:2,80:1,128:0)" | tee -a "$OUT/steps.log" ;;
    tiny)
        BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/2B" 2B tiny > "$OUT/tiny.stdout" 2>&1 || rc=1
        grep -h "passed,\|FAIL" "$OUT/2B/tiny.log" | tail -5 ;;
    real)
        BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/2B" 2B real > "$OUT/real.stdout" 2>&1 || rc=1
        grep -h "PARITY\|top-1\|FAIL\|passed," "$OUT/2B/real_2B.log" | cut -c1-300 | tail -8 ;;
    bench)
        BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/2B" 2B bench 10 > "$OUT/bench.stdout" 2>&1 || rc=1 ;;
    real8B)  # only while there is time left in a 300 s run
        if [ $(($(date +%s) - T0)) -lt 170 ]; then
            BUILD=$BIN tests/gpu/run_on_gpu.sh "$OUT/8B" 8B real > "$OUT/real8B.stdout" 2>&1 || rc=1
            grep -h "PARITY\|top-1\|FAIL" "$OUT/8B/real_8B.log" | cut -c1-300 | tail -4
        fi ;;
    fa2)
        QVL_ATT_IMPL=0 LD_LIBRARY_PATH=$LIBS timeout 200 "$BIN/bench_gpu" /tmp/qvl_real_2B/model "$TSV" 10 \
            > "$OUT/2B/bench_qvl_fa2_2B.log" 2>&1 || rc=1 ;;
    esac
    pack
done
echo "== done at +$(($(date +%s) - T0)) s rc=$rc" | tee -a "$OUT/steps.log"
grep -A40 "== summary" "$OUT/micro.log" 2>/dev/null | cut -c1-220
for f in "$OUT"/2B/bench_*.log; do [ -f "$f" ] && echo "$(basename "$f"): $(grep '^{' "$f" | cut -c1-330)"; done
grep -h "sample 660 " "$OUT"/2B/bench_qvl*.log 2>/dev/null | cut -c1-200
exit $rc
