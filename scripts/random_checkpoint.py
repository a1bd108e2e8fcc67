#!/usr/bin/env python3
"""random_checkpoint.py: random-weight BF16 checkpoints of real model configs.

The GPU machine has no model downloads, and speed and memory do not depend on
what the weights are, so the GPU scripts build their models here: a published
config.json (fewer layers, or another vocabulary, where a script says so) and a
model.safetensors of BF16 weights drawn N(0, 0.02) from a seeded generator,
norm gains 1. One generator for every script, so two scripts asking for the
same config, layers and device get the same bytes.

  python3 scripts/random_checkpoint.py CONFIG OUT_DIR [--layers N] [--vocab V]
      [--set KEY=JSON ...] [--device cuda|cpu] [--params-json PATH]

CONFIG is one of CONFIGS below. --set overrides a config.json field (its value
parsed as JSON: --set tie_word_embeddings=false). --params-json writes the
parameter counts (one layer, outside the layers, total) for scripts that
extrapolate to more layers (gpu-kv-capacity.sh). Tensors are drawn on
--device (default cuda: a 4096 x 128256 table takes seconds there) in the
order of the names below, so the bytes depend on the device's generator.

Other scripts import it: `from random_checkpoint import CONFIGS, write_checkpoint`
(gpu-hf-compare.py builds its correctness checkpoints through transformers
instead, with its own draws, and takes only CONFIGS from here).
"""
import argparse
import json
import math
import os
import sys

# The published config.json fields the engine and transformers read
# (Hugging Face model pages of each name), num_hidden_layers as published.
CONFIGS = {
    "llama-3.1-8b": {  # meta-llama/Llama-3.1-8B: llama3 RoPE scaling
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": 128256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 128000, "eos_token_id": 128001},
    "qwen2-7b": {  # Qwen/Qwen2-7B: q/k/v bias
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
        "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "vocab_size": 152064, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
        "tie_word_embeddings": False, "hidden_act": "silu", "use_sliding_window": False, "sliding_window": None,
        "max_window_layers": 28, "bos_token_id": 151643, "eos_token_id": 151643},
    "qwen3-8b": {  # Qwen/Qwen3-8B: q/k RMSNorm
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096,
        "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": 151936, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "max_position_embeddings": 40960, "tie_word_embeddings": False, "hidden_act": "silu",
        "attention_bias": False, "use_sliding_window": False, "sliding_window": None, "max_window_layers": 36,
        "bos_token_id": 151643, "eos_token_id": 151645},
    "mistral-7b": {  # mistralai/Mistral-7B-v0.1
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 32000, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32768,
        "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu", "bos_token_id": 1,
        "eos_token_id": 2},
    "qwen3-32b": {  # Qwen/Qwen3-32B: issue 9's KV-capacity model
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 5120,
        "intermediate_size": 25600, "num_hidden_layers": 64, "num_attention_heads": 64, "num_key_value_heads": 8,
        "head_dim": 128, "vocab_size": 151936, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "max_position_embeddings": 40960, "tie_word_embeddings": False, "hidden_act": "silu",
        "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645},
    "qwen3-30b-a3b": {  # Qwen/Qwen3-30B-A3B: 128 experts of 768, top-8 normalised
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
        "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
        "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [], "num_hidden_layers": 48,
        "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 40960,
        "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False},
    "smollm2-135m": {  # HuggingFaceTB/SmolLM2-135M: 9 heads of 64, q has 576 rows
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "vocab_size": 49152, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "max_position_embeddings": 8192, "tie_word_embeddings": True, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 0, "eos_token_id": 0},
}


def config(name, layers=None, vocab=None, overrides=None):
    """CONFIGS[name] as a checkpoint's config.json: BF16, with the given layers, vocabulary and fields."""
    if name not in CONFIGS:
        raise SystemExit(f"random_checkpoint: unknown config '{name}' (known: {', '.join(CONFIGS)})")
    cfg = dict(CONFIGS[name], torch_dtype="bfloat16")
    if layers is not None:
        cfg["num_hidden_layers"] = layers
    if vocab is not None:
        cfg["vocab_size"] = vocab
    cfg.update(overrides or {})
    return cfg


def layer_shapes(cfg):
    """(name, shape, drawn) of one decoder layer's tensors in the order they are drawn;
    drawn=False: a norm gain of ones."""
    H, NH, KVH = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HD = cfg.get("head_dim") or H // NH
    out = [("input_layernorm.weight", (H,), False), ("post_attention_layernorm.weight", (H,), False),
           ("self_attn.q_proj.weight", (NH * HD, H), True), ("self_attn.k_proj.weight", (KVH * HD, H), True),
           ("self_attn.v_proj.weight", (KVH * HD, H), True), ("self_attn.o_proj.weight", (H, NH * HD), True)]
    if cfg["model_type"] == "qwen2":  # q/k/v bias (transformers' Qwen2Attention)
        out += [(f"self_attn.{p}_proj.bias", (n * HD,), True) for p, n in (("q", NH), ("k", KVH), ("v", KVH))]
    if cfg["model_type"] in ("qwen3", "qwen3_moe"):
        out += [("self_attn.q_norm.weight", (HD,), False), ("self_attn.k_norm.weight", (HD,), False)]
    if "num_experts" in cfg:
        E, I = cfg["num_experts"], cfg["moe_intermediate_size"]
        out.append(("mlp.gate.weight", (E, H), True))  # the router
        for e in range(E):
            out += [(f"mlp.experts.{e}.gate_proj.weight", (I, H), True),
                    (f"mlp.experts.{e}.up_proj.weight", (I, H), True),
                    (f"mlp.experts.{e}.down_proj.weight", (H, I), True)]
    else:
        I = cfg["intermediate_size"]
        out += [("mlp.gate_proj.weight", (I, H), True), ("mlp.up_proj.weight", (I, H), True),
                ("mlp.down_proj.weight", (H, I), True)]
    return out


def write_checkpoint(name, out_dir, layers=None, vocab=None, overrides=None, device="cuda", seed=0):
    """Writes OUT_DIR/config.json and OUT_DIR/model.safetensors; returns the parameter counts."""
    import torch
    from safetensors.torch import save_file
    cfg = config(name, layers, vocab, overrides)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    g = torch.Generator(device=device).manual_seed(seed)

    def drawn(shape):
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    H, V = cfg["hidden_size"], cfg["vocab_size"]
    t = {"model.embed_tokens.weight": drawn((V, H))}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = drawn((V, H))
    t["model.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    shapes = layer_shapes(cfg)
    for layer in range(cfg["num_hidden_layers"]):
        for n, shape, is_drawn in shapes:
            t[f"model.layers.{layer}.{n}"] = drawn(shape) if is_drawn else torch.ones(*shape, dtype=torch.bfloat16)
    save_file(t, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    per_layer = sum(math.prod(shape) for _, shape, _ in shapes)
    other = sum(v.numel() for k, v in t.items() if not k.startswith("model.layers."))
    return {"layer_params": per_layer, "other_params": other, "params": per_layer * cfg["num_hidden_layers"] + other}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help=f"one of {', '.join(CONFIGS)}")
    ap.add_argument("out_dir")
    ap.add_argument("--layers", type=int, help="num_hidden_layers (default: the published count)")
    ap.add_argument("--vocab", type=int, help="vocab_size (default: the published one)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a config.json field")
    ap.add_argument("--device", default="cuda", help="where the weights are drawn (cuda or cpu; default cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params-json", help="write the parameter counts here")
    args = ap.parse_args()
    overrides = {}
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            ap.error(f"--set {kv}: expected KEY=JSON")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError as e:
            ap.error(f"--set {kv}: the value is not JSON ({e})")
    if args.layers is not None and args.layers < 1:
        ap.error(f"--layers {args.layers}: at least 1")
    if os.path.exists(os.path.join(args.out_dir, "model.safetensors")):
        ap.error(f"{args.out_dir} already holds a model.safetensors (remove it first)")
    counts = write_checkpoint(args.config, args.out_dir, args.layers, args.vocab, overrides, args.device, args.seed)
    cfg = config(args.config, args.layers, args.vocab, overrides)
    print(f"wrote {cfg['num_hidden_layers']}-layer {args.config}-shaped model (vocab {cfg['vocab_size']}) to "
          f"{args.out_dir}: {counts['params'] / 1e9:.2f} G params, {counts['layer_params'] / 1e6:.1f} M a layer, "
          f"{counts['other_params'] / 1e6:.1f} M outside the layers", flush=True)
    if args.params_json:
        with open(args.params_json, "w") as f:
            json.dump(counts, f)


if __name__ == "__main__":
    sys.exit(main())
