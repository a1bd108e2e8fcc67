#!/usr/bin/env bash
# gpu-w4-hopper.sh BUILD_DIR [OUT_DIR]: on an H100/H200, the Hopper W4A16 GEMM
# (plugins/cuda/src/w4a16_hopper.cu): its GPU tests and the existing W4A16
# suite (test_cuda_provider --gtest_filter='*W4Hopper*:*W4A16*'), then
# bench/cuda/bench_w4_hopper.py (four shapes x M = 1..4096: old path, wgmma
# kernel, default dispatch, torch bf16, one process), then, where ncu reads
# hardware counters, `ncu --set basic` on the wgmma kernel at M = 64.
# scripts/gpu-engine-check.sh runs it under GPUENG_KERNELS=1. Needs the
# build's libraries on LD_LIBRARY_PATH (the check script sets them) and
# python3 with torch. About 2.5 minutes on an H200 (2026-11-30).
# Timeouts (s): W4H_TEST_S (60), W4H_BENCH_S (100), W4H_NCU_S (30).
set -uo pipefail
b=${1:?usage: gpu-w4-hopper.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu-w4-hopper}}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
bench=${W4H_BENCH:-$here/../bench/cuda/bench_w4_hopper.py}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
shim=$(find "$b" -name libxqc_shim.so | head -1)
plugin=$(find "$b" -name libxquant-cuda.so | head -1)
echo "== W4A16 GPU tests (W4Hopper*, W4A16*)"
timeout "${W4H_TEST_S:-60}" "$ops" --gtest_filter='*W4Hopper*:*W4A16*' > "$out/w4-tests.log" 2>&1
echo "rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|rel_err" "$out/w4-tests.log" | head -40
echo "== W4A16 bench (bench/cuda/bench_w4_hopper.py)"
PYTHONUNBUFFERED=1 timeout "${W4H_BENCH_S:-100}" python3 "$bench" --shim "$shim" --plugin "$plugin" --out "$out" \
  > "$out/w4-bench.log" 2>&1
echo "rc=$?"
grep -v '^  {' "$out/w4-bench.log" | tail -45
if command -v ncu > /dev/null; then
  echo "== ncu --set basic, wgmma kernel, 8192x28672, M=64"
  timeout "${W4H_NCU_S:-30}" ncu --set basic --clock-control none -k regex:device_kernel -c 1 \
    python3 "$bench" --shim "$shim" --plugin "$plugin" --ncu-one 8192x28672:64 > "$out/w4-ncu.log" 2>&1
  echo "rc=$?"
  grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Grid Size|Block Size|Shared Memory Config|==ERR|==WARN" "$out/w4-ncu.log" | head -16
else
  echo "ncu: not on PATH; no counters"
fi
