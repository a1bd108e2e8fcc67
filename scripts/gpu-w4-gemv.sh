#!/usr/bin/env bash
# gpu-w4-gemv.sh BUILD_DIR [OUT_DIR]: on a GPU, the W4A16 GEMVs for decode batches
# (plugins/cuda/src/w4a16_gemv.cu, the split GEMV v1/v2; w4a16_gemv_stream.cu, the streaming
# v3; w4a16_gemv_tma.cu, the TMA-ring v4): their tests and the W4A16 suite (test_cuda_provider, filters *W4A16Gemv* and
# *W4A16.*:*W4A16Errors*), then bench/cuda/bench_w4_gemv.py (four shapes x M = 1, 2, 4, 8
# (W4G_MS): bf16 cuBLAS, the fused GEMM, the split GEMV v2, the streaming v3, the TMA-ring v4 and
# the copy bandwidth in one process; W4G_COLUMNS=...,default adds the default dispatch, the fused GEMM
# unless XQUANT_CUDA_W4_GEMV_MAX_M is set), then the split GEMV v1 alone (XQUANT_CUDA_W4_GEMV_VARIANT=1,
# its own process, with v3 at one 8-warp block per SM: XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM=1,
# half the loads in flight), and last bench/cuda/w4_gemv_table.py's table of both runs: fused vs
# v1 vs v2 vs v3 vs v4, µs and % of the copy bandwidth. Without a project build on the GPU
# machine, scripts/gpu-w4-gemv-tma.sh measures v4 against the fused GEMM, v3 and cuBLAS with nvcc
# alone. About 60-70 s on an H200 (not yet timed).
# Run by scripts/gpu-engine-check.sh under GPUENG_W4GEMV=1. Needs the build's libraries on
# LD_LIBRARY_PATH (the check script sets them) and python3 with torch.
# W4G_SWEEP=1 adds the split GEMV's blocks-per-SM target (XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM,
# default 12) at 4 and 24 on two shapes, M = 1 and 8, each in its own process.
# Timeouts (s): W4G_TEST_S (120 each part), W4G_BENCH_S (90), W4G_V1_S (60), W4G_SWEEP_S (30 each).
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
  timeout "${W4G_TEST_S:-120}" "$ops" --gtest_filter="$filter" > "$out/w4gemv-tests-$name.log" 2>&1
  echo "rc=$? ok=$(grep -c '^\[       OK' "$out/w4gemv-tests-$name.log")"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|: error" \
    "$out/w4gemv-tests-$name.log" | head -30
done
ms=${W4G_MS:-1,2,4,8}
rm -f "$out/w4_gemv_bench.json" "$out/w4_gemv_v1.json"  # the table reads this run's results only
echo "== W4A16 GEMV bench (bench/cuda/bench_w4_gemv.py; fused, v2, v3, v4)"
PYTHONUNBUFFERED=1 timeout "${W4G_BENCH_S:-90}" python3 "$bench" --shim "$shim" --plugin "$plugin" --out "$out" \
  --ms "$ms" --columns "${W4G_COLUMNS:-bf16,old,gemv,stream,tma}" > "$out/w4gemv-bench.log" 2>&1
rc=$?
echo "rc=$rc"
if [ "$rc" = 0 ]; then grep -v '^  {' "$out/w4gemv-bench.log" | tail -30; else tail -40 "$out/w4gemv-bench.log"; fi
echo "== split GEMV v1 (XQUANT_CUDA_W4_GEMV_VARIANT=1), streaming v3 at 1 block per SM"
XQUANT_CUDA_W4_GEMV_VARIANT=1 XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM=1 PYTHONUNBUFFERED=1 \
  timeout "${W4G_V1_S:-60}" python3 "$bench" --shim "$shim" --plugin "$plugin" --out "$out" --ms "$ms" \
  --columns gemv,stream --tag w4_gemv_v1 > "$out/w4gemv-v1.log" 2>&1
rc1=$?
echo "rc=$rc1"
[ "$rc1" = 0 ] || tail -20 "$out/w4gemv-v1.log"
if [ "${W4G_SWEEP:-0}" = 1 ]; then
  for v in 4 24; do
    echo "== GEMV split target XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM=$v (M = 1, 8)"
    XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM=$v PYTHONUNBUFFERED=1 timeout "${W4G_SWEEP_S:-30}" python3 "$bench" --shim "$shim" \
      --plugin "$plugin" --out "/tmp/w4gemv-sweep-$v" --ms 1,8 --shapes 8192x28672,4096x14336 > "/tmp/w4gemv-sweep-$v.log" 2>&1
    echo "rc=$?"
    grep -E "^\| [0-9]" "/tmp/w4gemv-sweep-$v.log" | tee -a "$out/w4gemv-bench.log"
  done
fi
echo "== fused vs split GEMV v1, v2 vs streaming v3 vs TMA-ring v4 (bench/cuda/w4_gemv_table.py)"
runs=()
for f in "$out/w4_gemv_bench.json" "$out/w4_gemv_v1.json"; do [ -f "$f" ] && runs+=("$f"); done
if [ "${#runs[@]}" -gt 0 ]; then
  python3 "$here/../bench/cuda/w4_gemv_table.py" "${runs[@]}" | tee "$out/w4_gemv_table.md"
else
  echo "no bench results (see $out/w4gemv-bench.log, $out/w4gemv-v1.log)"
fi
