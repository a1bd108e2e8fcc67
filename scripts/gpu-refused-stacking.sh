#!/usr/bin/env bash
# gpu-refused-stacking.sh XQUANT_CLI OUT_DIR: on the GPU machine, what the
# engine's fallback buys an `xq` W4A16 file whose q|k|v and gate|up cannot
# be placed as one weight each (a part's rows end inside the cuda layout's
# 128-row n-block): a random SmolLM2-135M-shaped model (30 layers, hidden
# 576, 9 heads of 64, 3 kv heads: q has 576 rows), generated here with torch,
# RTN W4A16 g64 as compressed-tensors and as xq. Loaded three ways:
# compressed-tensors (stacked and packed at load), xq by default (q|k|v and
# gate|up stacked from the canonical tensors, repacked at load; o and down
# taken as stored) and xq with XQUANT_STACK_STORED=0 (every Linear taken as
# stored, one by one: five GEMMs a layer for two). The vocabulary is Llama
# 3's (128,256 rows; SmolLM2's is 49,152) so gpu-engine-bundle.sh's tokenizer
# serves: its lm_head reads more than the 30 layers' weights, which dilutes
# the layers' share of a step. `xquant bench --lengths 128:128`, concurrency 1
# and 16, then the wall time of `generate -n 1` (open to first token).
set -uo pipefail
cli=${1:?usage: gpu-refused-stacking.sh XQUANT_CLI OUT_DIR}
out=${2:?usage: gpu-refused-stacking.sh XQUANT_CLI OUT_DIR}/refused-stacking
dir=/tmp/gpueng-smol
vocab=/work/shared/models/llama-vocabs/ggml-vocab-llama-bpe.gguf
rm -rf "$dir" && mkdir -p "$out"
# SmolLM2-135M's shapes with Llama 3's vocabulary (untied: an lm_head of its own), weights drawn on the CPU.
python3 "$(dirname "$0")/random_checkpoint.py" smollm2-135m "$dir/bf16" --vocab 128256 --set tie_word_embeddings=false \
  --set bos_token_id=128000 --set eos_token_id=128001 --device cpu
for f in compressed-tensors:ct xq:xq; do
  "$cli" quantize --model "$dir/bf16" --out "$dir/${f#*:}" --format "${f%%:*}" --bits 4 --group-size 64 --sym \
    > /dev/null 2> "$out/quantize-${f#*:}.err" || { echo "quantize ${f%%:*} failed"; tail -3 "$out/quantize-${f#*:}.err"; exit 1; }
done
runs=("ct||$dir/ct" "xq||$dir/xq" "xq-one-by-one|XQUANT_STACK_STORED=0|$dir/xq")
for r in "${runs[@]}"; do
  IFS='|' read -r label envs path <<< "$r"
  # shellcheck disable=SC2086
  timeout 120 env $envs "$cli" bench --provider cuda --models "$label=$path" --concurrency 1,16 --lengths 128:128 \
    --json "$out/$label.json" 2> "$out/$label.err" | grep -v "^bench: " || tail -5 "$out/$label.err"
  grep -h "taken as stored\|repacked at load\|not placed as one weight" "$out/$label.err" | tail -2
done
for r in "${runs[@]}"; do
  IFS='|' read -r label envs path <<< "$r"
  for i in 1 2; do
    s=$(date +%s.%N)
    # shellcheck disable=SC2086
    env $envs "$cli" generate --model "$path" --tokenizer "$vocab" --prompt "Once upon a time" -n 1 --provider cuda \
      > /dev/null 2> "$out/generate.err" || tail -3 "$out/generate.err"
    e=$(date +%s.%N)
    echo "open -> first token, $label, run $i: $(awk -v a="$e" -v b="$s" 'BEGIN {printf "%.3f", a - b}') s"
  done
done
