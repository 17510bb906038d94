#!/usr/bin/env bash
# GPU-machine steps for issue 8's GPU bar (models/qvl-tiny-ocr against transformers' predictions).
# Run from the repository root, binaries unpacked in BIN (qvl, qvl-gpu-tests, lib/):
#   tools/tiny_ocr_device.sh OUT STEP...
# steps:
#   switches       the GPU tiny-ocr test under the CUDA path's switch combinations (rounding points),
#                  one log each; stops starting new ones after SWITCH_S seconds (default 75)
#   train          stage-3 fine-tune (tools/train_tiny.py, resumed from the committed checkpoint),
#                  budget END_S - 60 - elapsed; then installs the new checkpoint and predictions into
#                  this working copy (models/qvl-tiny-ocr, tests/fixtures/tiny-ocr-heldout)
#   hf             transformers' greedy predictions of the committed model again (same code as the
#                  fixture), with transformers' own top-2 margins; compared with the fixture
#   test           the GPU tiny-ocr test on what is in the working copy now (default switches, then
#                  QVL_ATT_IMPL=0 if there is time before END_S)
#   test-switches  `test` plus the switch combinations again
# Logs go to OUT/logs (tar them into one file at the end).
set -o pipefail
OUT=${1:?OUT}; shift
BIN=${BIN:-/tmp/b}
END_S=${END_S:-555}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs"
T0=$SECONDS

gpu_test() {   # gpu_test LABEL [VAR=VALUE...]
    local label=$1; shift
    local t=$SECONDS
    env "$@" LD_LIBRARY_PATH="$BIN/lib" QVL_BIN="$BIN/qvl" QVL_TEST_VERBOSE=1 \
        timeout 90 "$BIN/qvl-gpu-tests" gpu_tiny_ocr > "$OUT/logs/gpu_$label.log" 2>&1
    local rc=$?
    echo "[$label] rc=$rc $((SECONDS - t))s $(grep -h 'predictions identical' "$OUT/logs/gpu_$label.log")"
    grep -h '^tiny-ocr sample' "$OUT/logs/gpu_$label.log" | sed "s/^/[$label]   /"
}

switches() {
    local label
    for label in default attimpl0 nograph; do
        if [ $((SECONDS - T0)) -gt "${SWITCH_S:-75}" ]; then echo "[$label] skipped (time)"; continue; fi
        case $label in
        default)   gpu_test $label ;;
        attimpl0)  gpu_test $label QVL_ATT_IMPL=0 ;;
        nograph)   gpu_test $label QVL_NO_GRAPH=1 ;;
        esac
    done
}

train() {
    local budget=$((END_S - 60 - (SECONDS - T0) + 20))
    echo "stage 3: budget ${budget}s"
    python3 tools/train_tiny.py --fonts-dir .devcarry/fonts --work /tmp/tiny --out "$OUT" --budget-s "$budget" \
        --resume models/qvl-tiny-ocr/model.safetensors.xz --stage 3 --curriculum-s 0 \
        --warmup 200 --lr 5e-4 --decay-frac 0.5 2>&1 | tee "$OUT/logs/train_stage3.log" | grep -v '^\[.*\] step ' || return 1
    # install the new checkpoint and predictions here, for the GPU test on the new model
    cat "$OUT"/model.safetensors.part-* > models/qvl-tiny-ocr/model.safetensors || return 1
    cp /tmp/tiny/qvl-tiny-ocr/transformers_predictions.json tests/fixtures/tiny-ocr-heldout/ || return 1
    sha256sum models/qvl-tiny-ocr/model.safetensors
}

hf() {
    python3 - "$OUT/logs/hf_rerun.json" <<'PY' 2>&1 | tee "$OUT/logs/hf_rerun.log" | grep -v '^\[.*\] eval '
import json, sys, time
sys.path.insert(0, "tools")
import train_tiny as T
folder, held = "models/qvl-tiny-ocr", "tests/fixtures/tiny-ocr-heldout"
res = T.evaluate(folder, T.load_heldout(held), "cuda", time.time() + 120)
json.dump(res, open(sys.argv[1], "w"), indent=1)
ref = {p["index"]: p for p in json.load(open(held + "/transformers_predictions.json"))["predictions"]}
diff = [p["index"] for p in res["predictions"] if p["prediction"] != ref[p["index"]]["prediction"]]
print("hf rerun: exact match %d, differing from the fixture: %s" % (res["exact_match"], diff))
low = sorted(res["predictions"], key=lambda p: p["hf_min_margin"])[:14]
for p in low:
    print("hf margin %3d %8.4f step %d logit %.3f %r" % (p["index"], p["hf_min_margin"], p["hf_min_margin_step"],
                                                       p["hf_min_margin_logit"], p["prediction"]))
PY
}

rc=0
for step in "$@"; do
    case $step in
    switches)      switches ;;
    hf)            hf || rc=1 ;;
    train)         train || rc=1 ;;
    test)          gpu_test new_default
                   [ $((SECONDS - T0)) -lt $((END_S - 30)) ] && gpu_test new_attimpl0 QVL_ATT_IMPL=0 ;;
    test-switches) SWITCH_S=100000 switches ;;
    *) echo "unknown step $step"; rc=2 ;;
    esac
done
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
echo "total $((SECONDS - T0))s rc=$rc"
exit $rc
