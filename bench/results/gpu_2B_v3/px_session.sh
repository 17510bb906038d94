#!/usr/bin/env bash
# One device call for the pixel path + decode tail step (issue 6): tiny GPU tests and 2B parity
# (tests/gpu/run_on_gpu.sh), then the 2B qvl benchmark with every switch of this step on and off
# (same binaries, same call), then Nsight Compute times of the decode kernels this step changed.
# Logs in OUT, packed into PACK after every step (a call cut short still brings them back).
#   BUILD=<bins> LIBS=<libs> bench/results/gpu_2B_v3/px_session.sh OUT PACK [SECONDS=280]
# Switches (all default on): QVL_PIXELS_BF16, QVL_IMAGE_POOL, QVL_DEC_FUSED, QVL_ARGMAX_MULTI.
# ids = bench_gpu's hash of all generated ids (same value = identical tokens).
set -o pipefail
OUT=${1:?OUT}; PACK=${2:?PACK}; BUDGET=${3:-280}; T0=$(date +%s)
export BUILD=${BUILD:-build-cuda} LIBS=${LIBS:-$PWD/.devcarry/lib} PYTHONUNBUFFERED=1
TSV=.devcarry/ocrbench_shapes.tsv R=/tmp/qvl_real_2B
OFF="QVL_PIXELS_BF16=0 QVL_IMAGE_POOL=0 QVL_DEC_FUSED=0 QVL_ARGMAX_MULTI=0"
left() { echo $((BUDGET - ($(date +%s) - T0))); }
step() { tar czf "$PACK" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null; echo "== $1 at +$(($(date +%s) - T0)) s" | tee -a "$OUT/session.log"; }
qb() { # qb NAME THREADS [ENV...]: the 2B benchmark (every 10th row), one summary line
    local name=$1 thr=$2; shift 2
    [ "$(left)" -gt 25 ] || { echo "skip $name (time)"; return; }
    LD_LIBRARY_PATH=$LIBS env "$@" timeout 60 $BUILD/bench_gpu $R/model $TSV 10 0 "$thr" > "$OUT/bench_$name.log" 2>&1
    python3 - "$name" "$OUT/bench_$name.log" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
name, path = sys.argv[1], sys.argv[2]
js = [l for l in open(path) if l.startswith("{")]
if not js: print(f"{name:16s} FAILED: " + open(path).read()[-300:].replace("\n", " | ")); sys.exit()
j = json.loads(js[-1])
print(f"{name:16s} {j['samples_per_s']:7.3f}/s mean {j['mean_latency_ms']:6.2f} ms = pre {j['mean_preprocess_ms']:5.2f}"
      f" vis {j['mean_vision_ms']:6.2f} prefill {j['mean_prefill_ms']:6.2f} dec {j['mean_decode_ms']:6.2f} ids {j.get('ids_hash')}")
PY
}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
step tiny
tests/gpu/run_on_gpu.sh "$OUT" 2B tiny > "$OUT/tiny.stdout" 2>&1
grep -h "passed,\|FAIL\|identical" "$OUT/tiny.log" | head -20
step real
tests/gpu/run_on_gpu.sh "$OUT" 2B real > "$OUT/real.stdout" 2>&1
grep -h "passed,\|PARITY\|top-1\|FAIL" "$OUT/real_2B.log" | cut -c1-300
step bench
qb on 8
qb off 8 $OFF
# bit identity: with one fixed decode GEMV variant (the open-time timing may pick another between
# runs, summing in another order) every generated id must be the same with the switches on and off
qb pick1_on 8 QVL_GEMV_PICK=1
qb pick1_off 8 QVL_GEMV_PICK=1 $OFF
qb no_pixels_bf16 8 QVL_PIXELS_BF16=0
qb no_pool 8 QVL_IMAGE_POOL=0
qb no_dec_fused 8 QVL_DEC_FUSED=0
qb no_argmax_multi 8 QVL_ARGMAX_MULTI=0
qb on_threads16 16
qb on_again 8
qb off_again 8 $OFF
step ncu
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && [ "$(left)" -gt 50 ]; then
  { head -1 $TSV; awk -F'\t' 'NR>1 && ($1==410 || $1==950)' $TSV; } > /tmp/rows.tsv
  for mode in on off; do
    [ "$(left)" -gt 30 ] || break
    envs=""; [ $mode = off ] && envs="$OFF"
    LD_LIBRARY_PATH=$LIBS env $envs QVL_NO_GRAPH=1 QVL_BENCH_PROFILE=1 timeout $(( $(left) / 2 )) "$NCU" --profile-from-start off \
      --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv \
      -k 'regex:k_attention|k_argmax|k_f32_to_bf16' $BUILD/bench_gpu $R/model /tmp/rows.tsv 1 6 > "$OUT/ncu_$mode.csv" 2> "$OUT/ncu_$mode.err"
    python3 - "$OUT/ncu_$mode.csv" "$mode" <<'PY' | tee -a "$OUT/summary.txt"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print("ncu", sys.argv[2], "no rows"); sys.exit()
hdr = rows[0]; kn = hdr.index("Kernel Name"); mv = hdr.index("Metric Value")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    try: v = float(r[mv].replace(",", ""))
    except ValueError: continue
    tot[r[kn][:60]] += v; cnt[r[kn][:60]] += 1
for k, v in sorted(tot.items(), key=lambda x: -x[1]): print(f"ncu {sys.argv[2]:3s} {v/1e6:8.3f} ms {cnt[k]:5d} x {v/cnt[k]/1e3:7.2f} us  {k}")
PY
  done
else echo "no ncu or no time"; fi
step done
cat "$OUT/summary.txt"
