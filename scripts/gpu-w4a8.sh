#!/usr/bin/env bash
# gpu-w4a8.sh BUILD_DIR [OUT_DIR]: on an H100/H200, the Hopper W4A8-FP8 GEMM
# (plugins/cuda/src/w4a8_hopper.hpp): its GPU tests (test_cuda_provider,
# filter *W4A8*: tables, every token tile against a double reference of the
# same quantized math and against the exact INT4 x BF16 product, the provider
# path forced through the ABI), then bench/cuda/bench_w4a8.py (four shapes x
# M = 1..4096: torch bf16, the W4A16 default dispatch and W4A8 forced, one
# process; W4A8_MS picks other batch sizes).
# scripts/gpu-engine-check.sh runs it under GPUENG_W4A8=1. Needs the build's
# libraries on LD_LIBRARY_PATH (the check script sets them) and python3 with
# torch. Timeouts (s): W4A8_TEST_S (50), W4A8_BENCH_S (110).
set -uo pipefail
b=${1:?usage: gpu-w4a8.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu-w4a8}}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
shim=$(find "$b" -name libxqc_shim.so | head -1)
plugin=$(find "$b" -name libxquant-cuda.so | head -1)
echo "== W4A8 GPU tests (*W4A8*, ${W4A8_TEST_S:-50} s at most)"
timeout "${W4A8_TEST_S:-50}" "$ops" --gtest_filter='*W4A8*' > "$out/w4a8-tests.log" 2>&1
echo "rc=$? ok=$(grep -c '^\[       OK' "$out/w4a8-tests.log")"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|: error|rel err" "$out/w4a8-tests.log" | head -40
echo "== W4A8 bench (bench/cuda/bench_w4a8.py)"
PYTHONUNBUFFERED=1 timeout "${W4A8_BENCH_S:-110}" python3 "$here/../bench/cuda/bench_w4a8.py" --shim "$shim" \
  --plugin "$plugin" --out "$out" ${W4A8_MS:+--ms "$W4A8_MS"} > "$out/w4a8-bench.log" 2>&1
rc=$?
echo "rc=$rc"
if [ "$rc" = 0 ]; then grep -v '^  {' "$out/w4a8-bench.log" | tail -40; else tail -40 "$out/w4a8-bench.log"; fi
