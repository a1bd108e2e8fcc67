#!/usr/bin/env bash
# gpu-attn-check.sh BUILD_DIR OUT_DIR: on a GPU machine, the split-K decode
# attention (plugins/cuda/src/split_k_attention.cuh) with its one-launch
# merge (the last CTA of a row merges the splits) against the two-kernel
# path (XQUANT_DECODE_ATTENTION_ONE_PASS=0): their tests against float64
# references (contiguous and paged caches, several rows of different lengths,
# graph replays), then device time per call of both in one run at 128..4096
# keys (one row contiguous and paged, 8 paged rows). scripts/gpu-engine-check.sh
# runs it with GPUENG_ATTN=1; with the engine binaries present, the decode-graph
# and paged-engine tests also run on the two-kernel path. About 20 s on an H200.
set -uo pipefail
b=${1:?usage: gpu-attn-check.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-attn-check.sh BUILD_DIR OUT_DIR}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
echo "== split-K decode attention: one-pass vs two kernels (tests, then device time per call)"
timeout 90 "$ops" --gtest_also_run_disabled_tests \
  --gtest_filter='CudaSplitKOnePass.*:CudaSplitKAttention.*:CudaDecodeAttention.*:CudaPagedAttention.*' 2>&1 |
  tee "$out/attn-kernels.log" |
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|decode ATTENTION|decode row|tests ran"
# The engine on the path the one-pass merge replaces, when the binaries are in the bundle: the
# default path ran in the suites above.
for t in test_decode_graphs test_paged_engine; do
  f=$(find "$b" -name $t -type f | head -1)
  [ -n "$f" ] || { echo "$t: not in this build, skipped"; continue; }
  echo "== $t with XQUANT_DECODE_ATTENTION_ONE_PASS=0"
  XQUANT_DECODE_ATTENTION_ONE_PASS=0 timeout 40 "$f" 2>&1 | tee "$out/attn-$t-two-kernels.log" |
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|tests ran"
done
