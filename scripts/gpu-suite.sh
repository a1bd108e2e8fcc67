#!/usr/bin/env bash
# gpu-suite.sh: the cuda provider's whole GPU suite in one call on a GPU
# machine: build (or reuse a carried build that runs here), the GoogleTest
# correctness suite, an optional compute-sanitizer pass on a subset, and the
# benchmark against PyTorch. Logs and tables land in $OUT (default
# ./gpu-suite-out). Usage:
#   scripts/gpu-suite.sh [all|test|bench] 
# Env: XQ_CUDA_BUILD (build dir, default build-cuda; used when it runs here,
#      else the suite builds in build-cuda-device, needing googletest source in
#      .gtest/ when GTest is not installed), XQ_SANITIZE=1 (memcheck subset),
#      XQ_PROFILE=1 (ncu on W4A16 M=1/64, XQ_PROFILE_MS), XQ_TEST_FILTER, XQ_BENCH_ARGS.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-suite-out}
MODE=${1:-all}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
BUILD=${XQ_CUDA_BUILD:-$ROOT/build-cuda}
PLUGIN_REL=lib/xquant/plugins/libxquant-cuda.so
TESTBIN_REL=tests_cuda/test_cuda_provider
SHIM_REL=bench_cuda/libxqc_shim.so
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"

runs_here() {
  [ -x "$1/$TESTBIN_REL" ] && [ -f "$1/$PLUGIN_REL" ] && [ -f "$1/$SHIM_REL" ] &&
    XQ_CUDA_PLUGIN="$1/$PLUGIN_REL" "$1/$TESTBIN_REL" --gtest_list_tests > /dev/null 2>&1
}
if runs_here "$BUILD"; then
  echo "gpu-suite: using the build in $BUILD"
else
  BUILD=$ROOT/build-cuda-device
  echo "gpu-suite: building in $BUILD"
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  gen=(); command -v ninja > /dev/null && gen=(-G Ninja)
  cmake -S "$ROOT/plugins/cuda/standalone" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DXQ_GTEST_SRC="$ROOT/.gtest" -DXQUANT_CUDA_PTXAS_VERBOSE=ON > "$OUT/configure.log" 2>&1 ||
    { tail -30 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD" -j"$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
  grep -E "stack frame|spill" "$OUT/build.log" | grep -v " 0 bytes stack frame, 0 bytes spill" | sort | uniq -c | head
fi
export XQ_CUDA_PLUGIN="$BUILD/$PLUGIN_REL"

if [ "$MODE" = all ] || [ "$MODE" = test ]; then
  t0=$(date +%s)
  "$BUILD/$TESTBIN_REL" --gtest_filter="${XQ_TEST_FILTER:-*}" --gtest_output=xml:"$OUT/tests.xml" > "$OUT/tests.log" 2>&1
  rc=$?
  echo "gpu-suite: tests exit $rc in $(( $(date +%s) - t0 )) s"
  grep -E "^\[  (PASSED|FAILED) |^\[  SKIPPED \] [0-9]+ test|tests? ran|random seed|cuda score" "$OUT/tests.log" | head -60
  grep -E "Failure|error:|Expected|Which is|rel_err|M=" "$OUT/tests.log" | head -60
  [ $rc -eq 0 ] || status=1
  if [ "${XQ_SANITIZE:-0}" = 1 ] && command -v compute-sanitizer > /dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/$TESTBIN_REL" \
      --gtest_filter='Cuda/W4A16.*/bf16_g32_asym_actorder_K1000_N77:Cuda/W4A16.*/f16_g0_sym_K1000_N77:Cuda/W8A8.*/dyn_channel_bf16_K1008_N80:QuantizeAct.*' \
      > "$OUT/sanitizer.log" 2>&1
    echo "gpu-suite: compute-sanitizer memcheck exit $?"; grep -E "ERROR SUMMARY|Invalid" "$OUT/sanitizer.log" | head -10
  fi
fi

if [ "$MODE" = all ] || [ "$MODE" = bench ]; then
  # shellcheck disable=SC2086
  python3 "$ROOT/bench/cuda/bench_cuda.py" --shim "$BUILD/$SHIM_REL" --plugin "$BUILD/$PLUGIN_REL" --out "$OUT" \
    ${XQ_BENCH_ARGS:-} > "$OUT/bench.log" 2>&1 || status=1
  grep -vE '^  \{' "$OUT/bench.log" | tail -60
fi
if [ "${XQ_PROFILE:-0}" = 1 ] && command -v ncu > /dev/null; then
  # The default dispatch's kernels (the TMA-ring GEMV, the fused mma.sync GEMM, CUTLASS's wgmma
  # device_kernel), two calls per M (XQ_PROFILE_MS, default 1,64) on 8192x28672.
  ncu --clock-control none --kernel-name regex:'k_w4_gemv|k_w4_gemm|device_kernel' \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section Occupancy --section LaunchStats python3 "$ROOT/bench/cuda/profile_w4.py" "$BUILD/$SHIM_REL" "$BUILD/$PLUGIN_REL" \
    "${XQ_PROFILE_MS:-1,64}" > "$OUT/ncu.txt" 2>&1
  grep -E "^  [a-z].*\(|DRAM Throughput|Memory Throughput|Duration|Issue Slots Busy|Issued Ipc|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|L2 Hit|Mem Busy|Max Bandwidth" "$OUT/ncu.txt" | head -80
fi
exit $status
