#!/usr/bin/env bash
# qvl serve under load on the GPU machine (issue 16): `qvl serve` on the random-weight 2B
# (tests/gpu/gen_bench_model.py; weights do not change the cost), bench_serve with OCRBench-shaped
# requests (bench/workload/ocrbench_shapes.tsv sizes and questions) at 1, 8, 32 and 128 clients, then
# SIGTERM: the server must exit 0. Binaries come prebuilt in BIN (qvl and bench_serve, built with
# NO_MPI=1); LIBS: the Debian runtime libraries the GPU machine lacks (.devcarry/lib, lib/mhd).
#   bench/run_serve_gpu.sh BIN OUTDIR [CLIENTS] [MAX_TOKENS]
# OUTDIR gets serve.log (the server's stderr), bench.md (the table), bench.json, metrics.txt.
set -o pipefail
BIN=${1:?BIN}; OUT=${2:?OUTDIR}; CLIENTS=${3:-1,8,32,128}; MAXTOK=${4:-32}
WORK=${WORK:-/tmp}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=${LIBS:-$PWD/.devcarry/lib:$PWD/.devcarry/lib/mhd}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
python3 tools/unpack_xz.py > /dev/null || exit 1
# MODEL/DEVICE: another checkpoint or the CPU (a smoke run: MODEL=models/qvl-tiny-ocr DEVICE=cpu).
M=${MODEL:-$WORK/qvl_bench_2B/model}
[ -n "$MODEL" ] || [ -f "$M/config.json" ] || python3 tests/gpu/gen_bench_model.py 2B "$M" > "$OUT/gen_2B.log" 2>&1 || { echo "gen failed" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
"$BIN/qvl" serve --model "$M" --port 0 --device "${DEVICE:-cuda}" --max-connections 300 --max-queue 512 > /dev/null 2> "$OUT/serve.log" &
SPID=$!
PORT=
for _ in $(seq 600); do
    PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$OUT/serve.log")
    [ -n "$PORT" ] && break
    kill -0 $SPID 2>/dev/null || break
    sleep 0.2
done
[ -n "$PORT" ] || { echo "qvl serve did not start:" >&2; cat "$OUT/serve.log" >&2; kill $SPID 2>/dev/null; exit 1; }
rc=0
"$BIN/bench_serve" --port "$PORT" --clients "$CLIENTS" --max-tokens "$MAXTOK" --json "$OUT/bench.json" | tee "$OUT/bench.md" || rc=1
curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics.txt" 2>/dev/null || true
kill -TERM $SPID
wait $SPID; src=$?
echo "qvl serve exit status after SIGTERM: $src" | tee -a "$OUT/bench.md"
[ $src -eq 0 ] || rc=1
tail -3 "$OUT/serve.log"
exit $rc
