#!/usr/bin/env python3
"""ct_exact_reference.py: the exact-math reference for a compressed-tensors
checkpoint of ours: transformers' own Llama forward (modeling_llama.py) in
float64 (or float32), with every quantized Linear replaced by exact
dequantize-then-matmul math read from our files:

  weights      W = (q - zp) * scale, per channel / group (g_idx honoured),
               compressed-tensors' own unpacker for pack-quantized words;
  activations  static per tensor:  x_q = clamp(round_half_even(x / s), -128, 127)
               (compressed-tensors' fake_quantize, vLLM's static scaled_int8_quant);
               dynamic per token:  s = max|x_t| / 127, same rounding and clamp
               (vLLM's dynamic scaled_int8_quant and our engine).

It scores the perplexity protocol of `xquant eval` (one BOS, consecutive
windows of ctx tokens, every token but each window's first scored) on token
ids that `xquant tokenize` produced, and prints a JSON object with the mean
NLL. Used by vllm_cpu_interop.py (the "exact torch math" column) and to
cross-check the engine (tests/interop/vllm_cpu_interop.sh).

  ct_exact_reference.py --model DIR --tokens FILE.json [--ctx 512] [--dtype float64]
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import load_file


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    return cfg, cfg.pop("quantization_config", None)


def scheme_of(qcfg, module):
    """The config group (weights, input_activations) whose targets cover module."""
    if qcfg is None or any(module == i or module.endswith("." + i) for i in qcfg.get("ignore") or []):
        return None
    for group in qcfg["config_groups"].values():
        for t in group["targets"]:
            if t == "Linear" or module == t or (t.startswith("re:") and __import__("re").match(t[3:], module)):
                return group
    return None


def unpack_from_int32(*args, **kw):
    """compressed-tensors' own unpacker (its module moved between releases)."""
    try:
        from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32 as unpack
    except ImportError:
        from compressed_tensors.compressors.quantized_compressors.pack_quantized import unpack_from_int32 as unpack
    return unpack(*args, **kw)


def dequantized_weight(tensors, module, weights):
    scale = tensors[module + ".weight_scale"].double()
    if module + ".weight_packed" in tensors:
        shape = tuple(int(v) for v in tensors[module + ".weight_shape"].tolist())
        q = unpack_from_int32(tensors[module + ".weight_packed"], weights["num_bits"], torch.Size(shape)).double()
    else:
        q = tensors[module + ".weight"].double()
    rows, cols = q.shape
    zp = tensors.get(module + ".weight_zero_point")
    if zp is not None and module + ".weight_packed" in tensors and zp.dtype == torch.int32:
        zp = unpack_from_int32(zp, weights["num_bits"], torch.Size(scale.shape), packed_dim=0)
    zp = torch.zeros_like(scale) if zp is None else zp.double()
    gidx = tensors.get(module + ".weight_g_idx")
    if scale.shape[1] == 1:
        col_group = torch.zeros(cols, dtype=torch.long)
    elif gidx is not None:
        col_group = gidx.long()
    else:
        col_group = torch.arange(cols) // (cols // scale.shape[1])
    return (q - zp[:, col_group]) * scale[:, col_group]


class ExactQuantLinear(torch.nn.Module):
    def __init__(self, weight, bias, act, input_scale):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.act = act  # None, "static" or "dynamic"
        self.input_scale = input_scale

    def forward(self, x):
        if self.act == "static":
            x = torch.clamp(torch.round(x / self.input_scale), -128, 127) * self.input_scale
        elif self.act == "dynamic":
            s = x.abs().amax(dim=-1, keepdim=True) / 127.0
            s = torch.where(s == 0, torch.ones_like(s), s)
            x = torch.clamp(torch.round(x / s), -128, 127) * s
        return torch.nn.functional.linear(x, self.weight, self.bias)


def build_model(model_dir, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg, qcfg = load_config(model_dir)
    config = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype")})
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tensors = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(model_dir, name)))
    dense = {}
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, torch.nn.Linear):
            continue
        group = scheme_of(qcfg, name)
        if group is None or name + ".weight_scale" not in tensors:
            continue
        act = group.get("input_activations")
        kind = None if act is None else ("dynamic" if act.get("dynamic") else "static")
        s = float(tensors[name + ".input_scale"].double().item()) if kind == "static" else None
        w = dequantized_weight(tensors, name, group["weights"]).to(dtype)
        b = tensors.get(name + ".bias")
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, ExactQuantLinear(w, None if b is None else b.to(dtype), kind, s))
        dense[name] = True
    state = {k: v.to(dtype) for k, v in tensors.items() if v.is_floating_point() and k.rsplit(".", 1)[0] not in dense}
    if "lm_head.weight" not in state and config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise SystemExit(f"ct_exact_reference: tensors missing from {model_dir}: {left[:5]}")
    init_rotary_buffers(model)
    for n, b in model.named_buffers():
        if b.is_meta:
            raise SystemExit(f"ct_exact_reference: buffer {n} left on meta")
    return model.eval()


def init_rotary_buffers(model):
    """RoPE's inv_freq is a non-persistent buffer the meta-device init left unset: build the module again on CPU."""
    rot = model.model.rotary_emb
    model.model.rotary_emb = type(rot)(rot.config)


@torch.no_grad()
def mean_nll(model, ids, ctx):
    total, n = 0.0, 0
    for start in range(0, len(ids), ctx):
        window = ids[start:start + ctx]
        if len(window) < 2:
            break
        x = torch.tensor([window])
        logits = model(input_ids=x).logits[0].double()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = torch.tensor(window[1:])
        total += float(-lp.gather(1, tgt[:, None]).sum())
        n += len(window) - 1
    return total / n, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="JSON from `xquant tokenize --json --bos`")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("XQ_TORCH_THREADS", "2")))
    dtype = getattr(torch, a.dtype)
    with open(a.tokens) as f:
        ids = json.load(f)["ids"]
    if a.max_tokens:
        ids = ids[:a.max_tokens]
    model = build_model(a.model, dtype)
    nll, n = mean_nll(model, ids, a.ctx)
    print(json.dumps({"model": a.model, "dtype": a.dtype, "tokens_scored": n, "mean_nll": nll,
                      "perplexity": math.exp(nll)}))


if __name__ == "__main__":
    main()
