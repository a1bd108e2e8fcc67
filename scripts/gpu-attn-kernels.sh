#!/usr/bin/env bash
# gpu-attn-kernels.sh BUILD_DIR OUT_DIR: on a GPU machine, the split-K decode
# attention's kernels (XQUANT_DECODE_ATTENTION_KERNEL: dim-lanes and
# dim-lanes-narrow, the two sizes of split_k_dim_lanes.cuh; key-per-lane,
# split_k_attention.cuh; unset or auto, the default, picks per launch) in one
# call: their tests against float64
# references, the engine tests that run attention inside decode steps (paged
# cache, continuous batching, CUDA graphs; default choice), device time per
# call of each and of the automatic choice at 1-128 rows x 128-4096 keys,
# then `xquant bench` on a random-weight Llama-3.1-8B-shaped BF16 model
# (LAYERS, default 8, made here by scripts/gpu-decode-bench.sh) with
# key-per-lane and with the automatic choice, interleaved (ATTN_ROUNDS
# rounds, default 1), at ATTN_CONC (default 1,8,32,128) and ATTN_LENGTHS
# (default 1024:256,4096:256); with ATTN_W4=1 (the default) also its W4A16
# g128 RTN copy at ATTN_W4_CONC (default 1,8), 1024:256, where attention is
# a larger share of the step. scripts/gpu-engine-check.sh runs it with
# GPUENG_ATTN_KERNELS=1.
set -uo pipefail
b=${1:?usage: gpu-attn-kernels.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-attn-kernels.sh BUILD_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
cli=$(find "$b" -name xquant -type f | head -1)
echo "== split-K attention kernels: tests"
timeout 150 "$ops" --gtest_filter='CudaSplitKKernels.*:CudaSplitKOnePass.*:CudaSplitKAttention.*:CudaDecodeAttention.*:CudaPagedAttention.*' \
  2>&1 | tee "$out/attn-kernels-tests.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran" | head -40
for t in test_paged_engine test_decode_graphs; do
  f=$(find "$b" -name $t -type f | head -1)
  [ -n "$f" ] || { echo "$t: not in this build, skipped"; continue; }
  echo "== $t (default kernel)"
  timeout 90 "$f" 2>&1 | tee "$out/attn-kernels-$t.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|tests ran"
done
echo "== device time per call, each kernel and auto"
timeout 120 "$ops" --gtest_also_run_disabled_tests --gtest_filter='CudaSplitKKernels.DISABLED_Speed*' 2>&1 |
  tee "$out/attn-kernels-speed.log" | grep -E "decode attention kernels|FAILED"
echo "== xquant bench, BF16 model, key-per-lane and auto"
BF16_ONLY=1 SKIP_DECODE_SPEED=1 timeout 150 bash "$here/gpu-decode-bench.sh" "$cli" 2>&1 | tail -3 | tee "$out/attn-kernels-model.log"
gbs=$(grep -o "copy: [0-9]*" "$out/attn-kernels-model.log" | grep -o "[0-9]*" || echo 0)
kernels=""
for _ in $(seq "${ATTN_ROUNDS:-1}"); do kernels="$kernels key-per-lane auto"; done
for kernel in $kernels; do
  echo "-- XQUANT_DECODE_ATTENTION_KERNEL=$kernel"
  XQUANT_DECODE_ATTENTION_KERNEL=$kernel timeout 200 "$cli" bench --models "bf16-$kernel=/tmp/gpueng-l31/bf16" \
    --concurrency "${ATTN_CONC:-1,8,32,128}" --lengths "${ATTN_LENGTHS:-1024:256,4096:256}" --provider cuda \
    --kv-dtype bf16 --copy-gbs "$gbs" --json "$out/attn-bench-$kernel-$(date +%s).json" 2> "$out/attn-bench-$kernel.err" |
    tee -a "$out/attn-bench.txt"
  grep -v "^bench: .* step " "$out/attn-bench-$kernel.err" | tail -2
done
if [ "${ATTN_W4:-1}" = 1 ]; then
  w4=/tmp/gpueng-l31/w4a16-g128
  [ -f $w4/config.json ] || timeout 120 "$cli" quantize --model /tmp/gpueng-l31/bf16 --out $w4 --bits 4 --group-size 128 \
    --sym 2>&1 | tail -1
  for kernel in $kernels; do
    echo "-- W4A16 g128, XQUANT_DECODE_ATTENTION_KERNEL=$kernel"
    XQUANT_DECODE_ATTENTION_KERNEL=$kernel timeout 120 "$cli" bench --models "w4a16-$kernel=$w4" \
      --concurrency "${ATTN_W4_CONC:-1,8}" --lengths 1024:256 --provider cuda --kv-dtype bf16 --copy-gbs "$gbs" \
      --json "$out/attn-bench-w4-$kernel-$(date +%s).json" 2> "$out/attn-bench-w4-$kernel.err" | tee -a "$out/attn-bench.txt"
  done
fi
