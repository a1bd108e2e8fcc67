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
mkdir -p "$out" "$dir/bf16"
python3 - "$dir/bf16" <<'PY'
import json, sys, torch
from safetensors.torch import save_file
out = sys.argv[1]
L, H, I, NH, KVH, HD, V = 30, 576, 1536, 9, 3, 64, 128256
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": I,
       "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": KVH, "vocab_size": V,
       "head_dim": HD, "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
       "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001,
       "hidden_act": "silu", "attention_bias": False, "mlp_bias": False}
json.dump(cfg, open(f"{out}/config.json", "w"), indent=1)
g = torch.Generator().manual_seed(0)
def w(*shape, std=0.02):
    return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)
t = {"model.embed_tokens.weight": w(V, H), "lm_head.weight": w(V, H), "model.norm.weight": torch.ones(H, dtype=torch.bfloat16)}
for l in range(L):
    p = f"model.layers.{l}."
    t[p + "input_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t[p + "post_attention_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    for name, shape in (("self_attn.q_proj", (NH * HD, H)), ("self_attn.k_proj", (KVH * HD, H)),
                        ("self_attn.v_proj", (KVH * HD, H)), ("self_attn.o_proj", (H, NH * HD)),
                        ("mlp.gate_proj", (I, H)), ("mlp.up_proj", (I, H)), ("mlp.down_proj", (H, I))):
        t[p + name + ".weight"] = w(*shape)
save_file(t, f"{out}/model.safetensors", metadata={"format": "pt"})
PY
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
