#!/usr/bin/env bash
# gpu-w4-gemv.sh BUILD_DIR [OUT_DIR]: on a GPU, the W4A16 GEMV for decode batches
# (plugins/cuda/src/w4a16_gemv.cu): its tests and the W4A16 suite whose default dispatch
# now takes it for M <= 8 (test_cuda_provider, filters *W4A16Gemv* and *W4A16.*:*W4A16Errors*),
# then bench/cuda/bench_w4_gemv.py (four shapes x M = 1, 2, 4, 8, 16, 32: bf16 cuBLAS, the
# fused GEMM, the GEMV, default dispatch, and the copy bandwidth; one process). Run by
# scripts/gpu-engine-check.sh under GPUENG_W4GEMV=1. Needs the build's libraries on
# LD_LIBRARY_PATH (the check script sets them) and python3 with torch.
# Then, unless W4G_SWEEP=0, the GEMV's split target (XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM, default
# 12) at 4 and 24 on two shapes, M = 1 and 8, each in its own process.
# Timeouts (s): W4G_TEST_S (60 each part), W4G_BENCH_S (90), W4G_SWEEP_S (30 each).
# W4G_BENCH: the bench script's path.
set -uo pipefail
b=${1:?usage: gpu-w4-gemv.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu-w4-gemv}}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
bench=${W4G_BENCH:-$here/../bench/cuda/bench_w4_gemv.py}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
shim=$(find "$b" -name libxqc_shim.so | head -1)
plugin=$(find "$b" -name libxquant-cuda.so | head -1)
for part in "W4A16Gemv:*W4A16Gemv*" "W4A16:*W4A16.*:*W4A16Errors*"; do
  IFS=: read -r name filter <<< "$part"
  echo "== $name GPU tests ($filter)"
  timeout "${W4G_TEST_S:-60}" "$ops" --gtest_filter="$filter" > "$out/w4gemv-tests-$name.log" 2>&1
  echo "rc=$? ok=$(grep -c '^\[       OK' "$out/w4gemv-tests-$name.log")"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|: error" \
    "$out/w4gemv-tests-$name.log" | head -30
done
echo "== W4A16 GEMV bench (bench/cuda/bench_w4_gemv.py)"
PYTHONUNBUFFERED=1 timeout "${W4G_BENCH_S:-90}" python3 "$bench" --shim "$shim" --plugin "$plugin" --out "$out" \
  > "$out/w4gemv-bench.log" 2>&1
rc=$?
echo "rc=$rc"
if [ "$rc" = 0 ]; then grep -v '^  {' "$out/w4gemv-bench.log" | tail -40; else tail -40 "$out/w4gemv-bench.log"; fi
if [ "${W4G_SWEEP:-1}" = 1 ]; then
  for v in 4 24; do
    echo "== GEMV split target XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM=$v (M = 1, 8)"
    XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM=$v PYTHONUNBUFFERED=1 timeout "${W4G_SWEEP_S:-30}" python3 "$bench" --shim "$shim" \
      --plugin "$plugin" --out "/tmp/w4gemv-sweep-$v" --ms 1,8 --shapes 8192x28672,4096x14336 > "/tmp/w4gemv-sweep-$v.log" 2>&1
    echo "rc=$?"
    grep -E "^\| [0-9]" "/tmp/w4gemv-sweep-$v.log" | tee -a "$out/w4gemv-bench.log"
  done
fi
