#!/usr/bin/env bash
# gpu-attn-check.sh BUILD_DIR OUT_DIR: on a GPU machine, the split-K decode
# attention's endings (plugins/cuda/src/split_k_attention.cuh, picked by
# XQUANT_DECODE_ATTENTION_ONE_PASS: 1 or unset (the default) the last CTA of a
# row merges the splits in the same launch, 2 a merge kernel, 0 the previous rule): their tests
# against float64 references (contiguous and paged caches, several rows of
# different lengths, graph replays), then device time per call of all three
# in one run at 128..4096 keys (one row contiguous and paged, 8 paged rows).
# scripts/gpu-engine-check.sh runs it with GPUENG_ATTN=1; with the engine
# binaries present, the decode-graph and paged-engine tests also run with the
# merge kernel (=2; the default ran in the base suites). The kernel part
# took 26 s on an H200 (2026-12-01, unpacking included).
set -uo pipefail
b=${1:?usage: gpu-attn-check.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-attn-check.sh BUILD_DIR OUT_DIR}
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
echo "== split-K decode attention: one-pass vs two kernels (tests, then device time per call)"
timeout 90 "$ops" --gtest_also_run_disabled_tests \
  --gtest_filter='CudaSplitKOnePass.*:CudaSplitKAttention.*:CudaDecodeAttention.*:CudaPagedAttention.*' 2>&1 |
  tee "$out/attn-kernels.log" |
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|decode ATTENTION|decode row|tests ran"
# The engine with the merge kernel, when the binaries are in the bundle; the default (the
# in-launch merge, whose counters graph replays of whole decode steps keep honest) ran in
# gpu-engine-check.sh's base suites.
for t in test_decode_graphs test_paged_engine; do
  f=$(find "$b" -name $t -type f | head -1)
  [ -n "$f" ] || { echo "$t: not in this build, skipped"; continue; }
  echo "== $t with XQUANT_DECODE_ATTENTION_ONE_PASS=2"
  XQUANT_DECODE_ATTENTION_ONE_PASS=2 timeout 40 "$f" 2>&1 | tee "$out/attn-$t-merge-kernel.log" |
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|tests ran"
done
