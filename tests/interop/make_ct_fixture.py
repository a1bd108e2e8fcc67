#!/usr/bin/env python3
"""make_ct_fixture.py: a tiny checkpoint written by compressed-tensors itself.

Ground truth for the xquant compressed-tensors READER (no public sample
checkpoint is small enough to commit, so generate one with the reference
library, vllm-project/compressed-tensors).
Writes into OUT_DIR (ct_interop.sh then runs test_compressed_tensors'
ReadsCheckpointsWrittenByTheReferenceLibrary on it, XQUANT_CT_REFERENCE_FIXTURE):
  config.json        quantization_config exactly as ModelCompressor.update_config
                     writes it (model_dump + version/quant_method/...)
  model.safetensors  the reference compressors' output (PackedQuantizationCompressor,
                     IntQuantizationCompressor) for four Linear modules
  expected.safetensors  <m>.codes (I8), <m>.scales (F32), <m>.zero_points (I8)
                     as compressed-tensors' quantize()/calculate_qparams made them
Run with the venv of ct_interop.sh:
  ~/.cache/xquant-interop/bin/python tests/interop/make_ct_fixture.py OUT_DIR
"""
import json
import math
import os
import sys

import torch
import compressed_tensors
from compressed_tensors.compressors.naive_quantized.base import IntQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import quantize
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors.torch import save_file


def qparams(w, args):
    rows, cols = w.shape
    gs = args.group_size if args.strategy == "group" else cols
    ng = math.ceil(cols / gs)
    mins = torch.stack([w[:, i * gs:(i + 1) * gs].amin(dim=1) for i in range(ng)], 1)
    maxs = torch.stack([w[:, i * gs:(i + 1) * gs].amax(dim=1) for i in range(ng)], 1)
    scale, zp = calculate_qparams(mins, maxs, args)
    return scale.to(w.dtype), zp


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(20261126)
    modules = {
        # name: (shape, weight dtype, weights args, input activation args)
        "model.layers.0.mlp.gate_proj": ((24, 64), torch.float32,
                                         dict(num_bits=4, symmetric=False, strategy="group", group_size=16), None),
        "model.layers.0.mlp.up_proj": ((20, 40), torch.bfloat16,
                                       dict(num_bits=3, symmetric=True, strategy="channel"), None),
        "model.layers.0.mlp.down_proj": ((9, 48), torch.float16,
                                         dict(num_bits=5, symmetric=False, strategy="channel"), None),
        "model.layers.0.self_attn.o_proj": ((16, 32), torch.float32, dict(num_bits=8, symmetric=True, strategy="channel"),
                                            dict(num_bits=8, symmetric=True, strategy="token", dynamic=True)),
    }
    tensors, expected, groups = {}, {}, {}
    for i, (name, (shape, dtype, wargs, aargs)) in enumerate(modules.items()):
        w = (torch.randn(shape) * 0.05).to(dtype)
        args = QuantizationArgs(**wargs)
        scheme = QuantizationScheme(targets=[name], weights=args,
                                    input_activations=QuantizationArgs(**aargs) if aargs else None)
        scale, zp = qparams(w, args)
        sd = {"weight": w, "weight_scale": scale}
        if not args.symmetric:
            sd["weight_zero_point"] = zp
        comp = IntQuantizationCompressor if aargs else PackedQuantizationCompressor
        for k, v in comp.compress(sd, scheme).items():
            tensors[f"{name}.{k}"] = v.contiguous()
        codes = quantize(x=w, scale=scale, zero_point=sd.get("weight_zero_point"), args=args, dtype=torch.int8)
        expected[f"{name}.codes"] = codes.contiguous()
        expected[f"{name}.scales"] = scale.float().contiguous()
        if not args.symmetric:
            expected[f"{name}.zero_points"] = zp.to(torch.int8).contiguous()
        scheme.format = "int-quantized" if aargs else "pack-quantized"
        groups[f"group_{i}"] = scheme
    tensors["model.norm.weight"] = torch.ones(64)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    save_file(expected, os.path.join(out, "expected.safetensors"))
    qc = QuantizationConfig(config_groups=groups, format="mixed-precision", quantization_status="compressed",
                            ignore=["lm_head"])
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "num_attention_heads": 4, "num_hidden_layers": 1, "intermediate_size": 24, "vocab_size": 32,
              "torch_dtype": "float32",
              # as ModelCompressor.update_config writes it
              "quantization_config": {"version": compressed_tensors.__version__, "quant_method": "compressed-tensors",
                                      "sparsity_config": {}, "transform_config": {},
                                      **qc.model_dump(exclude=["quant_method"])}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    print(f"wrote {out} with compressed-tensors {compressed_tensors.__version__}")


if __name__ == "__main__":
    main(sys.argv[1])
