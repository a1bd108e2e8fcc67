#!/usr/bin/env bash
# gpu-flashinfer-decode.sh BUILD_DIR OUT_DIR: on a GPU machine, FlashInfer's
# paged decode attention, its CUDA-core and its tensor-core kernel, against
# ours (bench/cuda/flashinfer_decode.cu: the outputs compared first, then µs
# per call, K/V GB/s and the ratios) at
# Llama-3.1-8B heads, FLASHINFER_ROWS (default 1,8,32,128) decode rows of
# FLASHINFER_KEYS (default 128,1024,4096) keys; then FlashInfer's FA2 prefill
# against our prompt path on one causal prompt of each of FLASHINFER_PREFILL
# (default 2048,8192) tokens ("none" skips it). The binary is built where
# scripts/fetch-flashinfer.sh put FlashInfer's headers and is bundled by
# scripts/gpu-engine-bundle.sh. On an H100 (session forty-two) the default
# shapes, three prompts and a run at 64 and 256 rows of up to 16384 keys took
# about 15 s in all.
set -uo pipefail
b=${1:?usage: gpu-flashinfer-decode.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-flashinfer-decode.sh BUILD_DIR OUT_DIR}
mkdir -p "$out"
exe=$b/bin/flashinfer_decode
[ -x "$exe" ] || { echo "flashinfer decode: $exe not built (scripts/fetch-flashinfer.sh, then reconfigure): NOT RUN"; exit 3; }
timeout "${FLASHINFER_S:-120}" "$exe" --rows "${FLASHINFER_ROWS:-1,8,32,128}" --keys "${FLASHINFER_KEYS:-128,1024,4096}" \
  2>&1 | tee "$out/flashinfer-decode.txt"
rc=${PIPESTATUS[0]}
if [ "${FLASHINFER_PREFILL:-2048,8192}" != none ]; then
  timeout "${FLASHINFER_S:-120}" "$exe" --prefill "${FLASHINFER_PREFILL:-2048,8192}" 2>&1 | tee "$out/flashinfer-prefill.txt"
  p=${PIPESTATUS[0]}
  [ "$rc" != 0 ] || rc=$p  # the first failure's own code (124: a timeout)
fi
exit "$rc"
