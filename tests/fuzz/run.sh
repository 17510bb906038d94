#!/usr/bin/env bash
# Runs the libFuzzer harnesses built by `make fuzz-build`: tests/fuzz/run.sh BUILD_DIR [NAME...]
# (default: every harness), each for FUZZ_SECONDS (default 60) on its seeds (tests/fuzz/NAME/, read
# only) plus its growing corpus (BUILD_DIR/corpus/NAME). Prints one table row per harness (seconds,
# executions, coverage, findings) and appends it to BUILD_DIR/fuzz-stats.tsv. A finding (crash,
# sanitizer report, leak, timeout, out-of-memory) is saved in BUILD_DIR/findings/ and fails the run.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR [NAME...]}
shift
secs=${FUZZ_SECONDS:-60}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
fi
mkdir -p "$build/findings" "$build/logs"
failed=()
printf '%-18s %8s %12s %8s %8s %s\n' harness seconds executions cov features findings
for n in "${names[@]}"; do
  bin=$build/fuzz/$n
  [ -x "$bin" ] || { echo "qvl fuzz: $bin: not built (make fuzz-build)" >&2; exit 2; }
  mkdir -p "$build/corpus/$n"
  log=$build/logs/$n.log
  start=$(date +%s)
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$n-" "$build/corpus/$n" "tests/fuzz/$n" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  done_line=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1)
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
  findings=0
  if [ $rc -ne 0 ]; then
    findings=1
    failed+=("$n")
  fi
  printf '%-18s %8s %12s %8s %8s %s\n' "$n" "$took" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$findings"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$n" "$took" "${execs:-0}" "${cov:-0}" "${ft:-0}" \
    "$findings" >>"$build/fuzz-stats.tsv"
  if [ $rc -ne 0 ]; then
    echo "---- $n: finding (exit $rc), log $log; artifacts under $build/findings/" >&2
    grep -E 'ERROR|SUMMARY|runtime error|invariant broken|Test unit written' "$log" | head -20 >&2
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "qvl fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
