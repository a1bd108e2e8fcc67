#!/usr/bin/env bash
# gpu-w8a8.sh BUILD_DIR [OUT_DIR]: on an H100/H200, the dense W8A8 GEMMs (INT8 and FP8 E4M3):
# their GPU tests (test_cuda_provider: W8A8Routes.*, W8A8Configs.* with every CUTLASS kernel
# configuration forced by name, QuantizeAct.*, the W8A8 QMATMUL and MATMUL suites), then
# bench/cuda/bench_w8a8.py (four shapes x M = 1..4096: cuBLASLt route, auto, every CUTLASS
# configuration, torch bf16 / _int_mm / _scaled_mm with and without fast accumulation, one
# process). scripts/gpu-engine-check.sh runs it under GPUENG_KERNELS=1. Needs the build's
# libraries on LD_LIBRARY_PATH (the check script sets them) and python3 with torch. 2026-12-01 on an
# H200: tests 26 s, bench 28 s (61 s with the bundle unpacked, w8a8tune's call).
# Timeouts (s): W8_TEST_S (60), W8_BENCH_S (110). W8_MS and W8_SHAPES pass --ms / --shapes.
set -uo pipefail
b=${1:?usage: gpu-w8a8.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu-w8a8}}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
bench=${W8_BENCH:-$here/../bench/cuda/bench_w8a8.py}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
shim=$(find "$b" -name libxqc_shim.so | head -1)
plugin=$(find "$b" -name libxquant-cuda.so | head -1)
echo "== W8A8 GPU tests (${W8_TEST_S:-60} s at most)"
timeout "${W8_TEST_S:-60}" "$ops" --gtest_filter='W8A8Routes.*:W8A8Configs.*:QuantizeAct.*:*W8A8*:Matmul.*:*Fp8*' \
  > "$out/w8a8-tests.log" 2>&1
echo "rc=$? ok=$(grep -c '^\[       OK' "$out/w8a8-tests.log")"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|: error|random seed" "$out/w8a8-tests.log" | head -30
echo "== W8A8 bench (bench/cuda/bench_w8a8.py)"
PYTHONUNBUFFERED=1 timeout "${W8_BENCH_S:-110}" python3 "$bench" --shim "$shim" --plugin "$plugin" --out "$out" \
  ${W8_MS:+--ms "$W8_MS"} ${W8_SHAPES:+--shapes "$W8_SHAPES"} > "$out/w8a8-bench.log" 2>&1
rc=$?
echo "rc=$rc"
if [ "$rc" = 0 ]; then grep -v '^  {' "$out/w8a8-bench.log" | sed -n '/^INT8/,$p' | head -80; else grep -v '^  {' "$out/w8a8-bench.log" | tail -40; fi
