#!/usr/bin/env bash
# gpu-w4-hopper.sh BUILD_DIR [OUT_DIR]: on an H100/H200, the Hopper W4A16 GEMM
# (plugins/cuda/src/w4a16_hopper.cu): its GPU tests and the existing W4A16
# suite (test_cuda_provider, filters *W4Hopper* and *W4A16*), then
# bench/cuda/bench_w4_hopper.py (four shapes x M = 64..4096: old path, each
# wgmma schedule, cached vs per-call kernel parameters, default dispatch,
# torch bf16, one process; W4H_MS picks other batch sizes), then, where ncu
# reads hardware counters, `ncu --set basic` on the wgmma kernel at M = 64.
# scripts/gpu-engine-check.sh runs it under GPUENG_KERNELS=1. Needs the
# build's libraries on LD_LIBRARY_PATH (the check script sets them) and
# python3 with torch. 39 s on an H200 (2026-12-01: tests, bench at M = 64..4096, ncu).
# Timeouts (s): W4H_TEST_S (50, new tests), W4H_SUITE_S (50, W4A16 suite), W4H_BENCH_S (75),
# W4H_NCU_S (25).
set -uo pipefail
b=${1:?usage: gpu-w4-hopper.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu-w4-hopper}}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
bench=${W4H_BENCH:-$here/../bench/cuda/bench_w4_hopper.py}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
shim=$(find "$b" -name libxqc_shim.so | head -1)
plugin=$(find "$b" -name libxquant-cuda.so | head -1)
# The new kernel's tests first, then the existing W4A16 suite (whose default dispatch now
# takes the wgmma kernel for bf16 at M >= 64 where the shape allows).
for part in "W4Hopper:*W4Hopper*:${W4H_TEST_S:-50}" "W4A16:*W4A16*:${W4H_SUITE_S:-50}"; do
  IFS=: read -r name filter limit <<< "$part"
  echo "== $name GPU tests ($filter, ${limit} s at most)"
  timeout "$limit" "$ops" --gtest_filter="$filter" > "$out/w4-tests-$name.log" 2>&1
  echo "rc=$? ok=$(grep -c '^\[       OK' "$out/w4-tests-$name.log")"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|: error" "$out/w4-tests-$name.log" | head -30
done
echo "== W4A16 bench (bench/cuda/bench_w4_hopper.py)"
PYTHONUNBUFFERED=1 timeout "${W4H_BENCH_S:-75}" python3 "$bench" --shim "$shim" --plugin "$plugin" --out "$out" \
  ${W4H_MS:+--ms "$W4H_MS"} > "$out/w4-bench.log" 2>&1
rc=$?
echo "rc=$rc"
if [ "$rc" = 0 ]; then grep -v '^  {' "$out/w4-bench.log" | tail -32; else tail -40 "$out/w4-bench.log"; fi
if command -v ncu > /dev/null; then
  echo "== ncu --set basic, wgmma kernel, 8192x28672, M=64"
  timeout "${W4H_NCU_S:-25}" ncu --set basic --clock-control none -k regex:device_kernel -c 1 \
    python3 "$bench" --shim "$shim" --plugin "$plugin" --ncu-one 8192x28672:64 > "$out/w4-ncu.log" 2>&1
  echo "rc=$?"
  grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Grid Size|Block Size|Shared Memory Config|==ERR|==WARN" "$out/w4-ncu.log" | head -16
else
  echo "ncu: not on PATH; no counters"
fi
