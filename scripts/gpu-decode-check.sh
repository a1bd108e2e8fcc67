#!/usr/bin/env bash
# gpu-decode-check.sh BUILD_DIR OUT_DIR: on a GPU machine, the batch-1 decode
# kernels of the cuda provider (scripts/gpu-engine-check.sh runs it with
# GPUENG_DECODE=1): the split-K ATTENTION over a contiguous KV cache and the
# few-row BF16 MATMUL against float64 references, the engine's logits and
# greedy ids with them against the kernels they replaced (stories260K), and
# their device times beside those kernels at the Llama-3.1-8B bench's shapes.
# About 15 s on an H200; the end-to-end A/B is in scripts/gpu-decode-bench.sh
# (GPUENG_BENCH=1).
set -uo pipefail
b=${1:?usage: gpu-decode-check.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-decode-check.sh BUILD_DIR OUT_DIR}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
eng=$(find "$b" -name test_device_engine -type f | head -1)
echo "== decode kernels: tests and device times (split-K ATTENTION, BF16 few-row MATMUL)"
timeout 60 "$ops" --gtest_also_run_disabled_tests --gtest_filter='CudaDecodeAttention.*:CudaSplitKAttention.*:CudaBf16Gemv.*' 2>&1 |
  tee "$out/decode-kernels.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|decode ATTENTION|decode row|BF16 MATMUL|tests ran"
echo "== decode kernels in the engine vs the previous kernels (stories260K)"
timeout 60 "$eng" --gtest_filter='DeviceEngine.DecodeKernelsMatchThePreviousOnes' 2>&1 |
  tee "$out/decode-engine.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|weights: logits|tests ran"
# The MoE engine tests on the previous kernels: on the decode slice's H200 call (2026-12-01) the
# qwen2_moe W4A16 case gave NaN logits with the new kernels on; this says whether they are the cause.
echo "== MoE engine tests with the previous decode kernels (XQUANT_DECODE_ATTENTION=0 XQUANT_BF16_GEMV=0)"
XQUANT_DECODE_ATTENTION=0 XQUANT_BF16_GEMV=0 timeout 60 "$eng" --gtest_filter='*MoeDevice*' 2>&1 |
  tee "$out/decode-moe-previous.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|tests ran"
