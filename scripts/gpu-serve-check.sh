#!/usr/bin/env bash
# gpu-serve-check.sh [BUNDLE]: the short GPU call for the serving path: unpack
# the bundle (as gpu-engine-check.sh), run the paged-attention op tests and
# the paged engine tests (cpu and cuda), make the Llama-3.1-8B-shaped models
# (gpu-decode-bench.sh without its decode-speed test), then the serving
# benchmark (gpu-serve-bench.sh). Logs in $OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=${1:-$here/../.gpueng/bundle.tar.xz}
out=${OUT:-/tmp/gpu-engine-out}
mkdir -p "$out" /work/shared /tmp/gpueng
t0=$(date +%s)
tar -xJf "$bundle" -C /tmp/gpueng || exit 1
wt=$(cat /tmp/gpueng/build-root)
mkdir -p "$wt" && rm -rf "$wt/build" && cp -a /tmp/gpueng/build "$wt/build"
cp -a /tmp/gpueng/shared/. /work/shared/
rm -f /tmp/gpueng/deps/libxquant*
export LD_LIBRARY_PATH=$wt/build/lib:/tmp/gpueng/deps
b=$wt/build
cli=$(find "$b" -name xquant -type f | head -1)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== paged ops (cuda)"
"$(find "$b" -name test_cuda_provider -type f | head -1)" --gtest_filter='CudaPagedAttention.*:CudaDecoderOps.*' 2>&1 |
  tee "$out/ops.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|seed"
echo "== paged engine (cpu, cuda)"
"$(find "$b" -name test_paged_engine -type f | head -1)" 2>&1 | tee "$out/paged.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|near-tie|seed"
echo "== models"
SKIP_DECODE_SPEED=1 bash "$here/gpu-decode-bench.sh" "$cli" 2>&1 | tee "$out/models.log" | grep -E "copy|quantize|wrote"
echo "== serving benchmark"
XQUANT_BENCH_COPY_GBS=$(grep -o "copy: [0-9]*" "$out/models.log" | grep -o "[0-9]*" || echo 0) bash "$here/gpu-serve-bench.sh" "$cli"
echo "== wall $(( $(date +%s) - t0 )) s"
