#!/usr/bin/env bash
# gpu-decode-profile.sh XQUANT_CLI OUT_DIR: where a batch-1 decode step's
# time goes on the `cuda` provider, measured without synchronising per op
# (scripts/gpu-engine-check.sh runs it with GPUENG_DECODE_PROFILE=1, after
# scripts/gpu-decode-bench.sh made the models in /tmp/gpueng-l31).
#
# Per op: XQUANT_CUDA_OP_TIMES=1 (plugins/cuda/src/op_timing.hpp) records a
# CUDA event before and after each op and reads them when the host waits
# anyway, so the step runs as it normally would. Each model is run with
# `xquant generate` (the contiguous KV cache, 256 new tokens after a
# ~128-token prompt) twice: plainly, for its tokens/s, then with the event
# pairs, for the device time of each op; and through `xquant bench` (the
# paged cache, C = 1, 128:256) with its decode steps replayed from CUDA
# graphs and, with op times, eagerly (XQUANT_DECODE_GRAPHS=0). The step time
# minus the summed op times is the time the device sat idle between ops
# (launch gaps, the ids download, the positions upload).
#
# PROFILE_MODELS: label=dir,... (default bf16 and w4a16-g128 of the decode
# bench; the paged runs take the first only); PROFILE_AB=1 also runs each generate with the previous decode-step
# ops (XQUANT_ROPE_KV=0 XQUANT_VECTOR_NORMS=0 XQUANT_VECTOR_ARGMAX=0) for a before/after in the
# same run. The HBM floor: weight bytes per token (generate's JSON) over the
# device-to-device copy rate measured here. 2026-12-01 on an H200: 71 s for
# the two default models (copy rate, 8 generate runs, 2 bench runs).
# Op times are upper bounds for short ops: the event records slow the host
# (BF16 step 2.92 -> 3.45 ms), so a short op's window can hold the wait for
# its own launch; the Linears' times are kernel time.
set -uo pipefail
cli=${1:?usage: gpu-decode-profile.sh XQUANT_CLI OUT_DIR}
out=${2:?usage: gpu-decode-profile.sh XQUANT_CLI OUT_DIR}
dir=/tmp/gpueng-l31
vocab=${PROFILE_TOKENIZER:-/work/shared/models/llama-vocabs/ggml-vocab-llama-bpe.gguf}
models=${PROFILE_MODELS:-bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128}
prompt=$(python3 -c "print(' '.join(['the quick brown fox jumps over the lazy dog'] * 14))")
work=$(mktemp -d)
variants="new"
[ "${PROFILE_AB:-1}" = 1 ] && variants="old new"
# The HBM floor's rate: device-to-device copy (read + write) measured here, as gpu-decode-bench.sh does.
python3 - > "$work/copy_gbs" <<'PY' || echo 0 > "$work/copy_gbs"
import torch
n = 4 << 30
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
IFS=',' read -ra specs <<< "$models"
first=1
for spec in "${specs[@]}"; do
  label=${spec%%=*}
  path=${spec#*=}
  [ -d "$path" ] || { echo "profile: $label: $path missing, skipped"; continue; }
  for v in $variants; do
    # Dense Linears as BF16 on the device, as the decode bench runs them (the CLI's default is F32).
    envs=(XQUANT_DEVICE_WEIGHTS=bf16)
    [ "$v" = old ] && envs+=(XQUANT_ROPE_KV=0 XQUANT_VECTOR_NORMS=0 XQUANT_VECTOR_ARGMAX=0)
    # Contiguous cache: plain, then with op times.
    env ${envs[@]+"${envs[@]}"} timeout 60 "$cli" generate --model "$path" --tokenizer "$vocab" --prompt "$prompt" -n 257 \
      --provider cuda --json > "$work/$label-$v-gen.json" 2> "$work/$label-$v-gen.err" || tail -3 "$work/$label-$v-gen.err"
    env ${envs[@]+"${envs[@]}"} XQUANT_CUDA_OP_TIMES=1 timeout 60 "$cli" generate --model "$path" --tokenizer "$vocab" --prompt "$prompt" \
      -n 257 --provider cuda --json > "$work/$label-$v-gent.json" 2> "$work/$label-$v-gent.err" || tail -3 "$work/$label-$v-gent.err"
  done
  # Paged cache, C = 1 (the first model only): graphed (the default), then eager with op times.
  [ $first = 1 ] || continue
  first=0
  timeout 60 "$cli" bench --provider cuda --models "$label=$path" --concurrency 1 --lengths 128:256 \
    --json "$work/$label-paged.json" > /dev/null 2> "$work/$label-paged.err" || tail -3 "$work/$label-paged.err"
  XQUANT_DECODE_GRAPHS=0 XQUANT_CUDA_OP_TIMES=1 timeout 60 "$cli" bench --provider cuda --models "$label=$path" \
    --concurrency 1 --lengths 128:256 --json "$work/$label-pagedt.json" > /dev/null 2> "$work/$label-pagedt.err" ||
    tail -3 "$work/$label-pagedt.err"
done
python3 "$(dirname "$0")/../bench/engine/decode_profile_table.py" "$work" "$models" "$variants" "$(cat "$work/copy_gbs")" 2>&1 | tee "$out/decode-profile.txt"
tar -C "$work" -czf "$out/decode-profile-raw.tgz" . 2>/dev/null
rm -rf "$work"
