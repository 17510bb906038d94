#!/usr/bin/env bash
# One device call of the issue-6 step 3 work (non-attention CUDA speed): tiny GPU tests, 2B parity,
# the 2B benchmark (qvl and transformers in the same call), then qvl A/B runs with parts of this
# step switched off, and an Nsight Systems kernel summary when time remains. Logs go to OUT and are
# packed into PACK after every step (one file survives a call cut short).
#   BUILD=<bin folder> bench/results/gpu_2B_v3/session.sh OUT PACK.tgz [SECONDS=280] [STEPS="tiny real bench ab nsys"]
# (call 2 ran STEPS="tiny real bench ab2 ncu"; the candidate kernels: STEPS="tiny real next bench",
#  carry .devcarry/lib .devcarry/bin-<x> .devcarry/ocrbench_shapes.tsv models/tokenizer/tokenizer.json)
set -o pipefail
OUT=${1:?OUT}; PACK=${2:?PACK}; BUDGET=${3:-280}; STEPS=${4:-"tiny real bench ab nsys"}; T0=$(date +%s)
export BUILD=${BUILD:-build-cuda} PYTHONUNBUFFERED=1
LIBS=$PWD/.devcarry/lib TSV=.devcarry/ocrbench_shapes.tsv R=/tmp/qvl_real_2B
left() { echo $((BUDGET - ($(date +%s) - T0))); }
step() { tar czf "$PACK" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null; echo "== $1 at +$(($(date +%s) - T0)) s" | tee -a "$OUT/session.log"; }
keylines() { grep -h "passed,\|PARITY\|top-1\|^{\|GEMV timing\|prepared at open\|ms/step\|FAIL\|^open" "$@" 2>/dev/null | cut -c1-700; }
qb() { # qb NAME [ENV...]: qvl benchmark with the given environment
    local name=$1; shift
    LD_LIBRARY_PATH=$LIBS env "$@" timeout 100 $BUILD/bench_gpu $R/model $TSV 10 > "$OUT/bench_qvl_$name.log" 2>&1
    keylines "$OUT/bench_qvl_$name.log"
}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
for s in $STEPS; do
  [ "$(left)" -gt 30 ] || { step "stop: $s skipped"; continue; }
  step "$s"
  case $s in
  tiny) tests/gpu/run_on_gpu.sh "$OUT" 2B tiny > "$OUT/tiny.stdout" 2>&1; keylines "$OUT/tiny.log" ;;
  real) tests/gpu/run_on_gpu.sh "$OUT" 2B real > "$OUT/real.stdout" 2>&1; keylines "$OUT/real_2B.log" ;;
  bench) tests/gpu/run_on_gpu.sh "$OUT" 2B bench > "$OUT/bench.stdout" 2>&1; keylines "$OUT"/bench_qvl_2B.log "$OUT"/bench_hf_2B.log ;;
  ab) # each part of this step switched off in turn, then all of them (close to the previous build)
      qb no_prepare QVL_NO_PREPARE=1
      qb exact QVL_NO_PREPARE=1 QVL_GEMM_EXACT=1
      qb no_fused_gemv QVL_GEMV=0
      qb old QVL_NO_PREPARE=1 QVL_GEMM_EXACT=1 QVL_GEMV=0 QVL_GELU_EPILOGUE=0 ;;
  ab2) # the second round: programmatic launches off, then every part of this step off
      qb no_pdl QVL_PDL=0
      qb old QVL_NO_PREPARE=1 QVL_GEMM_EXACT=1 QVL_GEMV=0 QVL_GELU_EPILOGUE=0 ;;
  ncu) # kernel times of two rows (a 899-token image; a small image), 6 new tokens each, no decode graph
      NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      if [ -n "$NCU" ] && [ "$(left)" -gt 60 ]; then
        { head -1 $TSV; awk -F'\t' 'NR>1 && ($1==410 || $1==950)' $TSV; } > /tmp/rows.tsv
        LD_LIBRARY_PATH=$LIBS QVL_NO_GRAPH=1 QVL_BENCH_PROFILE=1 timeout $(($(left) - 15)) "$NCU" --profile-from-start off \
          --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv \
          $BUILD/bench_gpu $R/model /tmp/rows.tsv 1 6 > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
        python3 - "$OUT/ncu.csv" <<'PY' | tee "$OUT/ncu_summary.txt"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; kn = hdr.index("Kernel Name"); mv = hdr.index("Metric Value")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    try: v = float(r[mv].replace(",", ""))
    except ValueError: continue
    name = r[kn][:90]; tot[name] += v; cnt[name] += 1
print("kernels", sum(cnt.values()), "total ms", round(sum(tot.values()) / 1e6, 3))
for k, v in sorted(tot.items(), key=lambda x: -x[1])[:30]: print(f"{v/1e6:9.3f} ms {cnt[k]:6d} x {v/cnt[k]/1e3:8.2f} us  {k}")
PY
      else echo "no ncu or no time"; fi ;;
  next) # the candidate kernels (QVL_KERNELS_NEXT=1, not yet run on a GPU): tiny tests, 2B parity
        # (the real step's references, generated here if missing), benchmark against the default
      LD_LIBRARY_PATH=$LIBS QVL_KERNELS_NEXT=1 QVL_TEST_VERBOSE=1 QVL_BIN=$BUILD/qvl timeout 150 $BUILD/qvl-gpu-tests gpu_ \
          > "$OUT/tiny_next.log" 2>&1; keylines "$OUT/tiny_next.log"
      { test -d $R/model || python3 tools/gen_real_shape_models.py gen 2B $R --tf 2000 --image 1024x768
        LD_LIBRARY_PATH=$LIBS QVL_KERNELS_NEXT=1 QVL_REAL_DIR=$R timeout 150 $BUILD/qvl-gpu-tests gpu_real_shape &&
        python3 tools/gen_real_shape_models.py compare $R; } > "$OUT/real_next.log" 2>&1; keylines "$OUT/real_next.log"
      qb next QVL_KERNELS_NEXT=1
      qb default ;;
  nsys)
      NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
      if [ -n "$NSYS" ] && [ "$(left)" -gt 80 ]; then
        LD_LIBRARY_PATH=$LIBS timeout 50 "$NSYS" profile -t cuda -o /tmp/qvl_prof -f true $BUILD/bench_gpu $R/model $TSV 50 > "$OUT/nsys_run.log" 2>&1
        timeout 40 "$NSYS" stats -r cuda_gpu_kern_sum /tmp/qvl_prof.nsys-rep 2>&1 | cut -c1-250 | head -60 > "$OUT/nsys_stats.txt"
        head -25 "$OUT/nsys_stats.txt"
      else echo "no nsys or no time"; fi ;;
  esac
done
step done
