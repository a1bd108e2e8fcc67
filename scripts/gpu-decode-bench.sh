#!/usr/bin/env bash
# gpu-decode-bench.sh XQUANT_CLI: batch-1 decode speed of the engine on the
# `cuda` provider for a random-weight Llama-3.1-8B-shaped model with fewer
# layers (LAYERS, default 8), generated here with torch (no download):
# dense BF16 weights on the GPU, W4A16 g128 (lm_head BF16, and lm_head
# quantized too), W8A8 INT8 (dynamic per-token activations) and FP8 W8A8,
# all RTN, quantized here with
# `xquant quantize`, beside the HBM floor (weight bytes per token
# over the device-to-device copy bandwidth measured in the same run).
# Each model is timed twice in one process, on the cuda provider's previous
# decode kernels (XQUANT_DECODE_ATTENTION=0 XQUANT_BF16_GEMV=0
# XQUANT_CUDA_W4_GEMV_TMA=0) and on the
# current ones. Time on an H200 (2026-12-01): the model and the four
# quantizations ~95 s, then (estimated, not yet measured) ~10 s per model:
# give it 150 s or more.
#
# LAYERS=32 is the whole Llama-3.1-8B config, the model issue 9 names (16 GB of
# BF16 weights; each quantization takes about four times the 8-layer one's
# time). SCHEMES (default all: "w4a16 w8a8 w4a16+lm fp8 w4afp8") picks the
# quantized models made beside BF16 and W4A16 (both always made unless
# SKIP_W4=1), so a 32-layer call fits the device's 10-minute limit.
# FROM_LAYERS=N (N < LAYERS): make and quantize an N-layer model, then repeat
# its layers up to LAYERS (scripts/inflate-layers.py, each model in its own
# format): the same shapes and bytes as quantizing the whole random model
# (the weights are random either way), in a fraction of the time.
set -euo pipefail
cli=${1:?usage: gpu-decode-bench.sh XQUANT_CLI}
layers=${LAYERS:-8}
schemes=" ${SCHEMES:-w4a16 w8a8 w4a16+lm fp8 w4afp8} "
wants() { [[ "$schemes" == *" $1 "* ]]; }
dir=/tmp/gpueng-l31
eng=$(dirname "$cli")/test_device_engine
# REUSE_MODELS=1: time the models an earlier run of this script left in $dir
# (scripts/gpu-engine-check.sh's GPUENG_AB: the same models on a baseline plugin).
if [ "${REUSE_MODELS:-0}" = 1 ] && [ -f $dir/bf16/config.json ]; then
  echo "reusing the models in $dir"
else
from_layers=${FROM_LAYERS:-$layers}
[[ "$from_layers" =~ ^[1-9][0-9]*$ ]] || { echo "gpu-decode-bench: FROM_LAYERS=$from_layers is not a layer count" >&2; exit 2; }
rm -rf $dir && mkdir -p $dir/bf16
src=$dir
if [ "$from_layers" -lt "$layers" ]; then src=$dir/small-$from_layers && mkdir -p $src/bf16; fi
# With FROM_LAYERS: each model made in $src, repeated up to $layers layers into $dir
# (a BF16 model that cannot be is an error: every benchmark below needs it).
inflate_models() {
  [ "$src" != "$dir" ] || return 0
  local t=$(date +%s) m
  for m in "$src"/*/; do
    m=$(basename "$m")
    [ -f "$src/$m/config.json" ] || continue
    rm -rf "$dir/$m"
    if ! python3 "$(dirname "$0")/inflate-layers.py" "$src/$m" "$dir/$m" $layers > /dev/null; then
      echo "inflate $m FAILED"; rm -rf "$dir/$m"
      [ "$m" != bf16 ] || exit 1
    fi
  done
  mv "$src"/*.log "$dir/" 2>/dev/null || true
  rm -rf "$src"
  echo "inflated to $layers layers: $(( $(date +%s) - t )) s"
}
python3 "$(dirname "$0")/random_checkpoint.py" llama-3.1-8b $src/bf16 --layers $from_layers
# BF16_ONLY=1: the BF16 model and the copy rate only (scripts/gpu-pdl-bench.sh).
if [ "${BF16_ONLY:-0}" != 1 ]; then
t=$(date +%s)
# SKIP_W4=1: no W4A16 model (a call about the other schemes only, e.g. scripts/gpu-w8-gemv.sh's A/B).
if [ "${SKIP_W4:-0}" != 1 ]; then
"$cli" quantize --model $src/bf16 --out $src/w4a16-g128 --bits 4 --group-size 128 --sym 2>&1 | tail -2
echo "quantize: $(( $(date +%s) - t )) s"
fi
# W4_ONLY=1: only the BF16 and W4A16 models (bench/engine/gpu_load_time.sh).
[ "${W4_ONLY:-0}" = 1 ] && { inflate_models; exit 0; }
if wants w8a8; then
t=$(date +%s)
"$cli" quantize --model $src/bf16 --out $src/w8a8 --w8a8 dynamic --sym 2>&1 | tail -2
echo "quantize W8A8: $(( $(date +%s) - t )) s"
fi
# FP8 W8A8 (E4M3 per-channel weights, dynamic per-token activations) where this build's CLI has it.
# (grep without -q: -q exits at the first match and, under pipefail, the
# help's SIGPIPE would make the test false.)
# W4A16 g128 with lm_head quantized too (--ignore replaces the default
# "lm_head"; the regex is the default's MoE-router entry, matching nothing
# here): the BF16 lm_head is 1.05 of the 1.98 GB a W4A16 step reads.
t=$(date +%s)
# (A failure here leaves the other models' numbers standing.)
if wants w4a16+lm && ! "$cli" quantize --model $src/bf16 --out $src/w4a16-g128-lm --bits 4 --group-size 128 --sym \
  --ignore 're:.*mlp\.gate$' > $src/quantize-lm.log 2>&1; then
  echo "quantize W4A16 + lm_head FAILED:"; rm -rf $src/w4a16-g128-lm
fi
[ -f $src/quantize-lm.log ] && tail -2 $src/quantize-lm.log && echo "quantize W4A16 + lm_head: $(( $(date +%s) - t )) s"
if wants fp8 && "$cli" quantize --help 2>&1 | grep FP8_DYNAMIC > /dev/null; then
  t=$(date +%s)
  "$cli" quantize --model $src/bf16 --out $src/fp8 --scheme FP8_DYNAMIC 2>&1 | tail -2
  echo "quantize FP8: $(( $(date +%s) - t )) s"
fi
# W4AFP8 (int4 g128 weights, dynamic per-token FP8 activations: the cuda provider runs the
# W4A8-FP8 Hopper GEMM from 64 rows, W4A16 below), when this CLI has the preset.
if [ "${GPUENG_W4AFP8:-1}" = 1 ] && wants w4afp8 && "$cli" quantize --help 2>&1 | grep W4AFP8 > /dev/null; then  # not grep -q: its early exit fails the pipe under pipefail
  t=$(date +%s)
  "$cli" quantize --model $src/bf16 --out $src/w4afp8 --scheme W4AFP8 2>&1 | tail -2
  echo "quantize W4AFP8: $(( $(date +%s) - t )) s"
fi
fi  # BF16_ONLY
inflate_models
fi  # REUSE_MODELS
gbs=$(python3 - <<'PY'
import torch
n = 4 << 30  # 4 GiB, far beyond L2
a = torch.empty(n, dtype=torch.uint8, device="cuda"); a.random_(0, 255)
b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
ts = []
for _ in range(20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
ts.sort()
print(f"{2 * n / (ts[len(ts) // 2] / 1e3) / 1e9:.0f}")
PY
)
echo "device-to-device copy: $gbs GB/s (read + write, median of 20, 4 GiB)"
# SKIP_DECODE_SPEED=1: only make the models (for scripts/gpu-serve-bench.sh).
[ "${SKIP_DECODE_SPEED:-0}" = 1 ] && exit 0
models="bf16:$dir/bf16:bf16"
[ -d $dir/w4a16-g128 ] && models="$models,w4a16-g128:$dir/w4a16-g128:bf16"
[ -d $dir/w8a8 ] && models="$models,w8a8-int8:$dir/w8a8:bf16"
[ -d $dir/fp8 ] && models="$models,fp8:$dir/fp8:bf16"
[ -d $dir/w4a16-g128-lm ] && models="$models,w4a16+lm:$dir/w4a16-g128-lm:bf16"
[ -d $dir/w4afp8 ] && models="$models,w4afp8:$dir/w4afp8:bf16"
XQUANT_BENCH_COPY_GBS=$gbs XQUANT_BENCH_MODELS="$models" \
  "$eng" --gtest_also_run_disabled_tests --gtest_filter='*DecodeSpeed*' 2>&1 | grep -Ev "^\[ (RUN|       OK) "
