#!/bin/sh
# The FP8 KV cache on the CPU backend against the float32 one (qvl-tiny-ocr, its held-out set):
# greedy predictions of `qvl eval` both ways (agreement with each other and with transformers'), the
# per-stage error of the prompt's activations (QVL_DUMP, bench/kv_fp8_stages.py), and speed: the
# held-out eval (REPEAT times each way, alternating) and one long text prompt (prefill + decode,
# bench/bench_kv_fp8_cpu.c built as BENCH_BIN, default build/bench_kv_fp8_cpu).
# usage: bench/kv_fp8_cpu.sh OUT_DIR [QVL_BIN]   (from the repository root; THREADS=2, REPEAT=3)
set -eu
out=${1:?usage: bench/kv_fp8_cpu.sh OUT_DIR [QVL_BIN]}
qvl=${2:-build/qvl}
threads=${THREADS:-2}
repeat=${REPEAT:-3}
model=models/qvl-tiny-ocr
data=tests/fixtures/tiny-ocr-heldout
mkdir -p "$out"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') ($(nproc) cores online), --threads $threads"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

# 1. held-out eval both ways, timed
i=0
while [ "$i" -lt "$repeat" ]; do
    for kv in bf16 fp8; do
        s=$(date +%s.%N)
        "$qvl" eval --model "$model" --data "$data/OCRBench.json" --device cpu --threads "$threads" \
            --max-new-tokens 32 --overwrite --kv-dtype "$kv" --out "$out/heldout-$kv.jsonl" \
            --summary "$out/heldout-$kv.json" > "$out/heldout-$kv.report.txt" 2> "$out/heldout-$kv.stderr.txt"
        e=$(date +%s.%N)
        echo "heldout $kv run $i: $(echo "$e - $s" | bc) s wall" >> "$out/speed.txt"
    done
    i=$((i + 1))
done
python3 - "$out" "$data/transformers_predictions.json" > "$out/agreement.txt" <<'PY'
import json, sys
out, ref_path = sys.argv[1], sys.argv[2]
def load(p):
    d = {}
    for line in open(p):
        j = json.loads(line)
        if "index" in j:
            d[j["index"]] = (j["prediction"], j["answers"][0])
    return d
f32, fp8 = load(f"{out}/heldout-bf16.jsonl"), load(f"{out}/heldout-fp8.jsonl")
ref = {p["index"]: p["prediction"] for p in json.load(open(ref_path))["predictions"]}
n = len(f32)
ex = lambda p, a: p.strip(" \n") == a
print(f"samples: {n}")
print(f"fp8 KV identical to float32 KV: {sum(fp8[i][0] == f32[i][0] for i in f32)}")
print(f"fp8 KV identical to transformers: {sum(fp8[i][0] == ref[i] for i in fp8)}")
print(f"float32 KV identical to transformers: {sum(f32[i][0] == ref[i] for i in f32)}")
print(f"exact match: float32 KV {sum(ex(*f32[i]) for i in f32)}, fp8 KV {sum(ex(*fp8[i]) for i in fp8)}, "
      f"transformers {sum(ex(ref[i], f32[i][1]) for i in f32)}")
for kv in ("bf16", "fp8"):
    s = json.load(open(f"{out}/heldout-{kv}.json"))
    print(f"{kv}: accuracy {s.get('accuracy')}, samples/s {s['samples_per_s']:.1f} (last run), peak resident {s.get('peak_memory_mib')} MiB")
for i in sorted(f32):
    if fp8[i][0] != f32[i][0]:
        print(f"differs {i}: fp8 {fp8[i][0]!r} float32 {f32[i][0]!r} transformers {ref[i]!r} answer {f32[i][1]!r}")
PY

# 2. per-stage error on the first held-out prompts
rm -rf "$out/dumps"
for idx in 00000 00001 00002 00003 00004 00005 00006 00007; do
    for kv in bf16 fp8; do
        mkdir -p "$out/dumps/$idx/$kv"
        QVL_DUMP="$out/dumps/$idx/$kv" "$qvl" run --model "$model" --device cpu --threads "$threads" \
            --image "$data/images/$idx.png" --prompt "what is written in the image?" --kv-dtype "$kv" \
            > /dev/null 2>&1
    done
done
python3 bench/kv_fp8_stages.py "$out/dumps" > "$out/stages.md"
rm -rf "$out/dumps"

# 3. a long text prompt through the backend directly (bench/bench_kv_fp8_cpu.c): prefill, and decode steps
#    that each read the whole cache
bench=${BENCH_BIN:-build/bench_kv_fp8_cpu}
if [ -x "$bench" ]; then
    { cut -d' ' -f1-3 /proc/loadavg; "$bench" "$model" "${LONG_PROMPT:-6000}" 128 "$threads" "$repeat"; \
      cut -d' ' -f1-3 /proc/loadavg; } > "$out/bench_kv_fp8_cpu.txt" 2>&1
else
    echo "$bench: not built (see its header), long-context speed skipped" > "$out/bench_kv_fp8_cpu.txt"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
