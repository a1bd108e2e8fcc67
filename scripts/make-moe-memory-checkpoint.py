#!/usr/bin/env python3
"""A Qwen3-30B-A3B-shaped checkpoint with random BF16 weights, for measuring
calibrated quantization's peak host memory (docs/pipeline.md, Memory).

    scripts/make-moe-memory-checkpoint.py OUT_DIR [LAYERS]

Shapes are Qwen3-30B-A3B's config.json (hidden 2048, 128 experts of
moe_intermediate 768, top-8, 32 query / 4 KV heads of 128) with a 512-token
vocabulary (stories260K's tokenizer) and LAYERS decoder layers (default 2;
the real model has 48). Standard library only: weights are random bytes
with the exponent fixed to 2^-7..2^-5 (|w| < 0.032), norms are 1.0.
About 1.25 GB per layer.
"""
import json
import os
import struct
import sys

HIDDEN, EXPERTS, MOE_INTER, HEADS, KV, HEAD_DIM, VOCAB = 2048, 128, 768, 32, 4, 128, 512

# BF16 high byte: keep the sign bit of a random byte, exponent bits 0b0111100x.
HIGH = bytes((x & 0x80) | 0x3C for x in range(256))


def random_bf16(n):
    b = bytearray(os.urandom(2 * n))
    b[1::2] = b[1::2].translate(HIGH)
    return b


def ones_bf16(n):
    return b"\x80\x3f" * n


def tensors(layers):
    yield "model.embed_tokens.weight", [VOCAB, HIDDEN], False
    for l in range(layers):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", [HIDDEN], True
        yield p + "post_attention_layernorm.weight", [HIDDEN], True
        yield p + "self_attn.q_proj.weight", [HEADS * HEAD_DIM, HIDDEN], False
        yield p + "self_attn.k_proj.weight", [KV * HEAD_DIM, HIDDEN], False
        yield p + "self_attn.v_proj.weight", [KV * HEAD_DIM, HIDDEN], False
        yield p + "self_attn.o_proj.weight", [HIDDEN, HEADS * HEAD_DIM], False
        yield p + "self_attn.q_norm.weight", [HEAD_DIM], True
        yield p + "self_attn.k_norm.weight", [HEAD_DIM], True
        yield p + "mlp.gate.weight", [EXPERTS, HIDDEN], False
        for e in range(EXPERTS):
            yield p + f"mlp.experts.{e}.gate_proj.weight", [MOE_INTER, HIDDEN], False
            yield p + f"mlp.experts.{e}.up_proj.weight", [MOE_INTER, HIDDEN], False
            yield p + f"mlp.experts.{e}.down_proj.weight", [HIDDEN, MOE_INTER], False
    yield "model.norm.weight", [HIDDEN], True
    yield "lm_head.weight", [VOCAB, HIDDEN], False


def main():
    out, layers = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    os.makedirs(out, exist_ok=True)
    config = {"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": HIDDEN,
              "intermediate_size": 6144, "moe_intermediate_size": MOE_INTER, "num_experts": EXPERTS,
              "num_experts_per_tok": 8, "norm_topk_prob": True, "num_hidden_layers": layers,
              "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": HEAD_DIM, "vocab_size": VOCAB,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 4096,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    header, offset, entries = {}, 0, list(tensors(layers))
    for name, shape, _ in entries:
        n = 2 * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape, norm in entries:
            n = shape[0] * (shape[1] if len(shape) > 1 else 1)
            f.write(ones_bf16(n) if norm else random_bf16(n))


if __name__ == "__main__":
    main()
