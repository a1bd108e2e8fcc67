#!/usr/bin/env bash
# gpu-serve-bench.sh XQUANT_CLI [MODEL_DIR]: the serving benchmark on the GPU
# machine: `xquant bench` over the random-weight Llama-3.1-8B-shaped models
# that scripts/gpu-decode-bench.sh generates and quantizes (BF16 first, the
# baseline; then whichever of W4A16 g128, W8A8 INT8, FP8 and W4AFP8 its
# SCHEMES made: a model it did not make is left out, not an error), at concurrency
# SERVE_CONC (default 1,8,32,128,256) and lengths SERVE_LENGTHS (default
# 1024:1024), BF16 KV cache in 16-token blocks. Table on stdout, JSON in $OUT.
set -euo pipefail
cli=${1:?usage: gpu-serve-bench.sh XQUANT_CLI [MODEL_DIR]}
dir=${2:-/tmp/gpueng-l31}
out=${OUT:-/tmp/gpu-engine-out}
[ -d "$dir/bf16" ] || { echo "gpu-serve-bench: no BF16 baseline at $dir/bf16 (run scripts/gpu-decode-bench.sh first)" >&2; exit 2; }
models="bf16=$dir/bf16"
for m in w4a16-g128:w4a16-g128 w8a8-int8:w8a8 fp8:fp8 w4afp8:w4afp8; do
  [ -d "$dir/${m#*:}" ] && models="$models,${m%%:*}=$dir/${m#*:}"
done
gbs=${XQUANT_BENCH_COPY_GBS:-0}
t=$(date +%s)
set +e  # a failed run (e.g. a KV cache that does not fit) is reported below, not a silent exit
"$cli" bench --models "$models" --concurrency "${SERVE_CONC:-1,8,32,128,256}" --lengths "${SERVE_LENGTHS:-1024:1024}" \
  --provider cuda --kv-dtype bf16 --memory-budget-gb 40 --copy-gbs "$gbs" --json "$out/serve-bench.json" \
  2> "$out/serve-bench.err" | tee "$out/serve-bench.txt"
rc=${PIPESTATUS[0]}
set -e
grep -v "^bench: .* step " "$out/serve-bench.err" | tail -5
echo "serve bench: rc=$rc, $(( $(date +%s) - t )) s"
