#!/usr/bin/env bash
# One device call of the issue-6 step 3 work (non-attention CUDA speed): tiny GPU tests, 2B parity,
# the 2B benchmark (qvl and transformers in the same call), then qvl A/B runs with parts of this
# step switched off, and an Nsight Systems kernel summary when time remains. Logs go to OUT and are
# packed into PACK after every step (one file survives a call cut short).
#   BUILD=<bin folder> bench/results/gpu_2B_v3/session.sh OUT PACK.tgz [SECONDS=280] [STEPS="tiny real bench ab nsys"]
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
