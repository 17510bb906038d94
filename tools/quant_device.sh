#!/bin/bash
# One GPU-machine call for issue 14 (run from the root of a copy of the tree): generates the
# quantized fixtures (tools/gen_quant_models.py tiny; packed into $OUT/quant_fixtures.tgz) while the
# GPU test binary builds, then runs the GPU int4 tests on them. Logs go to $OUT.
set -u
mkdir -p tests/fixtures "$OUT"
[ -e models ] || ln -sfn ../../models models
(nice make -j14 deps > "$OUT/build.log" 2>&1 && nice make -j14 build/qvl-gpu-tests >> "$OUT/build.log" 2>&1
 echo "build rc $?" >> "$OUT/build.log") &
bpid=$!
python3 tools/gen_quant_models.py tiny tests/fixtures > "$OUT/gen.log" 2>&1
echo "gen rc $?" >> "$OUT/gen.log"
tar -czf "$OUT/quant_fixtures.tgz" -C tests/fixtures quant
wait $bpid
tail -2 "$OUT/build.log"
QVL_TEST_VERBOSE=1 build/qvl-gpu-tests gpu_quant > "$OUT/gpu_tests.log" 2>&1
grep -E "tokens|rc |Error|error|FAILED" "$OUT/gen.log" | tail -12
grep -vE "^  (ct_|awq )" "$OUT/gpu_tests.log" | tail -16
