#!/usr/bin/env bash
# gpu-w8-gemv.sh BUILD_DIR [OUT_DIR]: on a GPU, the few-row W8A8 kernel QMATMUL takes at decode
# batches (plugins/cuda/src/w8a8_gemv.cu, INT8 and FP8 E4M3, M <= 8): its tests and the W8A8 /
# FP8 QMATMUL suites (test_cuda_provider, filter *W8A8*:*Fp8QWeight*:QuantizeAct.*), then
# bench/cuda/bench_w8_gemv.py (Llama-3.1-8B's four shapes and 8192x28672 x M = 1, 2, 4, 8
# (W8G_MS): torch bf16, the kernel (fused activation quantization and separate), each K split
# (W8G_SPLITS, default 1,2,4,8; '' skips them), the GEMM route it replaced, the copy
# bandwidth; one process), then an engine A/B where the decode bench left models (below). Run by
# scripts/gpu-engine-check.sh under GPUENG_W8GEMV=1. Needs the
# build's libraries on LD_LIBRARY_PATH (the check script sets them) and python3 with torch.
# Timeouts (s): W8G_TEST_S (120), W8G_BENCH_S (120). W8G_KERNEL=0 runs the engine A/B only.
set -uo pipefail
b=${1:?usage: gpu-w8-gemv.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-/tmp/gpu-w8-gemv}}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
shim=$(find "$b" -name libxqc_shim.so | head -1)
plugin=$(find "$b" -name libxquant-cuda.so | head -1)
if [ "${W8G_KERNEL:-1}" = 1 ]; then  # W8G_KERNEL=0: the engine A/B only
echo "== W8A8 few-row kernel GPU tests"
timeout "${W8G_TEST_S:-120}" "$ops" --gtest_filter='*W8A8*:*Fp8QWeight*:QuantizeAct.*' > "$out/w8gemv-tests.log" 2>&1
echo "rc=$? ok=$(grep -c '^\[       OK' "$out/w8gemv-tests.log")"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|Expected|Which is|: error|random seed" \
  "$out/w8gemv-tests.log" | head -30
echo "== W8A8 few-row kernel bench (bench/cuda/bench_w8_gemv.py)"
PYTHONUNBUFFERED=1 timeout "${W8G_BENCH_S:-120}" python3 "$here/../bench/cuda/bench_w8_gemv.py" --shim "$shim" \
  --plugin "$plugin" --out "$out" ${W8G_MS:+--ms "$W8G_MS"} --splits "${W8G_SPLITS-1,2,4,8}" > "$out/w8gemv-bench.log" 2>&1
rc=$?
echo "rc=$rc"
if [ "$rc" = 0 ]; then grep -v '^  {' "$out/w8gemv-bench.log" | tail -30; else tail -40 "$out/w8gemv-bench.log"; fi
fi  # W8G_KERNEL
# The engine A/B, when scripts/gpu-decode-bench.sh left its W8A8 / FP8 models in W8G_MODELS
# (default /tmp/gpueng-l31; GPUENG_BENCH=1 with SCHEMES naming w8a8 / fp8 makes them): `xquant bench`
# at W8G_CONC (1,8) x W8G_LENGTHS (128:256) in the configurations W8G_CFGS names (tag:VAR=value
# ...; default: the kernel with the separate quantization kernel (XQUANT_CUDA_W8_GEMV_FUSED=0) and
# with it fused), W8G_ROUNDS (2) rounds interleaved so drift shows as a spread; the BF16 baseline
# in the first run only. One process a run.
dir=${W8G_MODELS:-/tmp/gpueng-l31}
cli=$(find "$b" -name xquant -type f | head -1)
models=""
for m in w8a8-int8:w8a8 fp8:fp8; do [ -d "$dir/${m#*:}" ] && models="$models,${m%%:*}=$dir/${m#*:}"; done
if [ -n "$models" ] && [ -d "$dir/bf16" ]; then
  first="bf16=$dir/bf16"
  for round in $(seq 1 "${W8G_ROUNDS:-2}"); do
    for cfg in ${W8G_CFGS:-sep:XQUANT_CUDA_W8_GEMV_FUSED=0 fused:XQUANT_CUDA_W8_GEMV_FUSED=1}; do
      tag=${cfg%%:*}
      echo "== engine, round $round, few-row kernel $tag (${cfg#*:})"
      ms="${first:+$first}$models" && ms=${ms#,}
      env "${cfg#*:}" timeout 150 "$cli" bench --models "$ms" --concurrency "${W8G_CONC:-1,8}" \
        --lengths "${W8G_LENGTHS:-128:256}" --provider cuda --kv-dtype bf16 --memory-budget-gb 40 \
        --json "$out/w8gemv-engine-r$round-$tag.json" 2> "$out/w8gemv-engine-r$round-$tag.err" |
        tee "$out/w8gemv-engine-r$round-$tag.txt"
      echo "rc=${PIPESTATUS[0]}"
      first=""
    done
  done
else
  echo "== engine A/B: skipped (no W8A8 / FP8 models in $dir: GPUENG_BENCH=1 SCHEMES=\"w8a8 fp8\" makes them)"
fi
