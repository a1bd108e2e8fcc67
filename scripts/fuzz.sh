#!/usr/bin/env bash
# Fuzzes xquant's parsers of untrusted input with libFuzzer under
# AddressSanitizer + UndefinedBehaviorSanitizer (tests/fuzz/fuzz_targets.hpp
# lists the targets).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    (default: 60, all)
#
# Builds ./build-fuzz with clang (-DXQUANT_FUZZ=ON; the gcc ./build is not
# touched), then runs the targets one at a time, niced, single process, each
# for SECONDS_PER_TARGET, starting from the committed seeds
# (tests/fuzz/corpus/<target>) plus what earlier runs found
# (build-fuzz/fuzz-corpus/<target>). Prints one line per target: executions,
# executions per second, corpus size and crashes. A crash leaves its input in
# build-fuzz/fuzz-crashes/<target>/; fix the parser, then commit the input as
# tests/fuzz/regressions/<target>/<name> so ctest replays it.
# Exit status: 0 when no target crashed.
# Needs clang with libFuzzer (Debian: clang, libclang-rt-<N>-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
all_targets=(safetensors_header gguf pipeline_yaml ct_config tokenizer_json xq)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
build=build-fuzz

command -v clang++ > /dev/null || { echo "fuzz: clang++ not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DXQUANT_FUZZ=ON -DXQUANT_CUDA=OFF -DXQUANT_BUILD_BENCH=OFF -DXQUANT_ONLY_TESTS=fuzz \
    -DXQUANT_ONLY_PLUGINS="gguf;rtn;compressed_tensors;xq;cpu" > /dev/null
fi
nice cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}" > "$build/fuzz-build.log" 2>&1 ||
  { tail -30 "$build/fuzz-build.log"; echo "fuzz: build failed (log: $build/fuzz-build.log)" >&2; exit 2; }

# The header of the real safetensors checkpoint in ../shared (when present)
# is a seed too; read at run time, never committed (the file is 1 MB).
real_safetensors_header() {
  local model=../shared/models/stories260K-hf/model.safetensors
  [ -f "$model" ] || return 0
  local n
  n=$(od -An -tu8 -N8 "$model" | tr -d ' ')
  head -c $((8 + n)) "$model" > "$1/stories260K-hf.header"
}

rows=()
failed=0
for t in "${targets[@]}"; do
  corpus="$build/fuzz-corpus/$t"
  crashes="$build/fuzz-crashes/$t"
  mkdir -p "$corpus" "$crashes"
  [ "$t" = safetensors_header ] && real_safetensors_header "$corpus"
  before=$(find "$crashes" -type f | wc -l)
  log="$build/fuzz-$t.log"
  echo "fuzz: $t for ${seconds}s (log: $log)"
  set +e
  nice -n 10 "$build/bin/fuzz_$t" "$corpus" "tests/fuzz/corpus/$t" -max_total_time="$seconds" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$crashes/" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  size=$(find "$corpus" -type f | wc -l)
  found=$(( $(find "$crashes" -type f | wc -l) - before ))
  [ "$rc" -ne 0 ] && failed=1
  rows+=("$(printf '%-20s %12s %8s %8s %8s' "$t" "${execs:-?}" "${rate:-?}" "$size" "$found")")
  if [ "$rc" -ne 0 ]; then
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*uncaught exception|.*deadly signal)' "$log" | head -3
    grep -E 'Test unit written to' "$log" | tail -1
  fi
done
echo
printf '%-20s %12s %8s %8s %8s\n' target executions exec/s corpus crashes
printf '%s\n' "${rows[@]}"
exit "$failed"
