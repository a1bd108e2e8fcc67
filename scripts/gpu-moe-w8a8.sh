#!/usr/bin/env bash
# gpu-moe-w8a8.sh BUILD_DIR OUT_DIR: on a GPU machine (sm_90 for the fused
# path; elsewhere the tests skip), the fused W8A8 INT8 mixture-of-experts
# GEMM (plugins/cuda/src/moe_w8a8*.{hpp,cpp,cu}):
#   1. the cuda provider's MoE suites (`*Moe*` of test_cuda_provider: the
#      W8A8 tests of tests/cuda/test_moe_w8a8.cpp beside the W4A16 and dense
#      ones they must not disturb);
#   2. bench/cuda/bench_moe.py with its W8A8 column (W8A8 fused against
#      torch._grouped_mm BF16 and our W4A16/BF16 fused paths, Qwen3-30B-A3B and
#      Mixtral-8x7B expert shapes) at MOE_W8_TOKENS tokens per expert.
# Run by scripts/gpu-engine-check.sh with GPUENG_MOE_W8A8=1. About 20 s of
# tests and 60-90 s of benchmark on an H200 at the default token counts.
set -uo pipefail
b=${1:?usage: gpu-moe-w8a8.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-moe-w8a8.sh BUILD_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
plugin=$b/lib/xquant/plugins/libxquant-cuda.so
shim=$(find "$b" -name 'libxqc_shim.so' | head -1)
echo "== MoE suites of the cuda provider (W8A8 INT8 grouped GEMM, W4A16, dense)"
XQ_CUDA_PLUGIN=$plugin timeout "${MOE_W8_TESTS_S:-90}" "$ops" --gtest_filter='*Moe*' 2>&1 | tee "$out/moe-w8a8-tests.log" |
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Skipped|Expected|Which is|differs" | head -40
# Optional: compute-sanitizer memcheck over the W8A8 routing test (MOE_W8_MEMCHECK_S seconds, 0 = off).
if [ "${MOE_W8_MEMCHECK_S:-0}" -gt 0 ]; then
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$san" ]; then
    echo "== compute-sanitizer memcheck: MoeW8a8Routing.*, the E128 case"
    XQ_CUDA_PLUGIN=$plugin timeout "$MOE_W8_MEMCHECK_S" "$san" --tool memcheck "$ops" \
      --gtest_filter='MoeW8a8Routing.*:*MoeW8a8*E128*' 2>&1 | tee "$out/moe-w8a8-memcheck.log" |
      grep -E "ERROR SUMMARY|^\[  (PASSED|FAILED) |Invalid|out of bounds" | head -12
  else
    echo "== compute-sanitizer: not found, memcheck NOT RUN"
  fi
fi
# MOE_W8_BENCH_S=0 skips the benchmark (GPUENG_MOE=1 already runs bench_moe.py, W8A8 column included).
[ "${MOE_W8_BENCH_S:-150}" = 0 ] && exit 0
echo "== bench_moe.py with the W8A8 column (tokens per expert: ${MOE_W8_TOKENS:-4,16,64,128,256,512})"
timeout "${MOE_W8_BENCH_S:-150}" python3 "${MOE_BENCH:-$here/../bench/cuda/bench_moe.py}" --shim "$shim" --plugin "$plugin" \
  --out "$out" --tokens-per-expert "${MOE_W8_TOKENS:-4,16,64,128,256,512}" 2>&1 | tee "$out/moe-w8a8-bench.log" |
  grep -v '^  {' | tail -50
