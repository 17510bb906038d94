#!/usr/bin/env bash
# One scripted GPU run: GPU tests on the tiny fixtures, a real-shape random-weight model with
# its transformers F32/BF16 references and qvl's parity against them, then the benchmark (qvl and
# transformers on the same model and workload). Binaries come prebuilt in BUILD (default
# build-cuda); LIBS names a folder of shared libraries the GPU machine lacks (cjson, pcre2, ...).
#   run_on_gpu.sh OUTDIR [SIZE=2B] [STEPS="tiny real bench"] [EVERY=10]   (also: gemv)
set -o pipefail
OUT=${1:?OUTDIR}; SIZE=${2:-2B}; STEPS=${3:-"tiny real bench"}; EVERY=${4:-10}
BUILD=${BUILD:-build-cuda}
TSV=${TSV:-bench/workload/ocrbench_shapes.tsv}
export PYTHONUNBUFFERED=1
LIBS=${LIBS:-$PWD/.devcarry/lib}
qvl_env() { LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$OUT/gpu.txt"
R=/tmp/qvl_real_$SIZE
rc=0
for s in $STEPS; do
  case $s in
  tiny)
    qvl_env env QVL_TEST_VERBOSE=1 QVL_BIN=$BUILD/qvl timeout 150 $BUILD/qvl-gpu-tests gpu_ 2>&1 | tee "$OUT/tiny.log" || rc=1 ;;
  real)
    { python3 tools/gen_real_shape_models.py gen "$SIZE" "$R" --tf 2000 --image 1024x768 &&
      qvl_env env QVL_REAL_DIR="$R" timeout 150 $BUILD/qvl-gpu-tests gpu_real_shape &&
      python3 tools/gen_real_shape_models.py compare "$R"; } 2>&1 | tee "$OUT/real_$SIZE.log" || rc=1
    cp "$R/parity.json" "$OUT/parity_$SIZE.json" 2>/dev/null ;;
  bench)
    test -d "$R/model" || python3 tools/gen_real_shape_models.py gen "$SIZE" "$R" --tf 16 2>&1 | tail -3
    qvl_env timeout ${QVL_BENCH_TIMEOUT:-200} $BUILD/bench_gpu "$R/model" "$TSV" "$EVERY" 2>&1 | tee "$OUT/bench_qvl_$SIZE.log" || rc=1
    timeout ${HF_BENCH_TIMEOUT:-240} python3 bench/bench_gpu_ref.py "$R/model" "$TSV" "$EVERY" 2>&1 | tee "$OUT/bench_hf_$SIZE.log" || rc=1 ;;
  esac
done
exit $rc
