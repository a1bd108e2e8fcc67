"""moe_interop.py: our Mixture-of-Experts engine against transformers' own forward.

No small real MoE checkpoint can be installed here, so tiny random-weight
configs of each architecture (qwen3_moe, qwen2_moe with its shared expert,
mixtral; 3 layers, 8 experts, top-2, hidden 64, some dense layers through
mlp_only_layers / decoder_sparse_step) are built with transformers, written as
an HF checkpoint with per-expert tensor names (as real hub checkpoints are:
model.layers.L.mlp.experts.E.gate_proj.weight, Mixtral's
block_sparse_moe.experts.E.w1/w2/w3), and run by both:

1. float32 logits: max |ours - transformers| <= 1e-4 * max(1, max |transformers|)
   for every token; routing: the top-k expert ids (in order) of every token
   in every MoE layer equal transformers' router (hooks on mlp.gate).
   The Qwen models also as GGUF files with llama.cpp's stacked expert tensors
   (written by gguf-py), which our loader splits per expert: same bounds.
2. Done-means check (qwen3_moe): `xquant quantize --algorithm gptq` and `awq`
   (compressed-tensors W4 g16 output, the routers dense by the CLI's default,
   every expert calibrated); the output
   loads in our engine, and its logits match transformers' forward on the same
   dequantized weights (dequantized by the numpy reader of ct_interop.py,
   independently of our code) within the same bound; the report lists
   per-expert token counts.
3. A real consumer reads those outputs: transformers with compressed-tensors
   (AutoModelForCausalLM.from_pretrained on the output folder, which
   decompresses the per-expert packed weights into its fused experts) gives
   logits within the same bound of ours on the same file. Symmetric (GPTQ)
   only while transformers' per-expert dequantization drops asymmetric zero
   points (transformers_drops_expert_zero_points says where; AWQ's output is
   then reported as not checked). (vLLM's CPU build
   cannot run them on a CPU without AMX: docs/algorithms.md "Mixture of
   experts" says what it refused.)
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ct_interop import numpy_dequant, read_checkpoint  # noqa: E402

BOUND = 1e-4


def make_config(arch):
    from transformers import MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig
    common = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=512,  # stories260K's vocabulary: it tokenizes the calibration text
                  max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  num_experts_per_tok=2, initializer_range=0.2)
    if arch == "qwen3_moe":
        return Qwen3MoeConfig(intermediate_size=96, moe_intermediate_size=48, num_experts=8, head_dim=16,
                              norm_topk_prob=True, mlp_only_layers=[1], **common)
    if arch == "qwen2_moe":
        return Qwen2MoeConfig(intermediate_size=96, moe_intermediate_size=48, shared_expert_intermediate_size=80,
                              num_experts=8, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[2],
                              **common)
    return MixtralConfig(intermediate_size=48, num_local_experts=8, **common)


def model_class(arch):
    from transformers import MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM
    return {"qwen3_moe": Qwen3MoeForCausalLM, "qwen2_moe": Qwen2MoeForCausalLM, "mixtral": MixtralForCausalLM}[arch]


def per_expert_state_dict(model, arch):
    """transformers >= 5 holds experts as stacked [E, 2I, H] / [E, H, I] parameters;
    hub checkpoints store one Linear per expert. Split them (gate rows first)."""
    out = {}
    for name, t in model.state_dict().items():
        t = t.detach().float().contiguous()
        prefix = name.rsplit("experts.", 1)[0] + "experts." if "experts." in name else None
        if arch == "mixtral":
            name = name.replace(".mlp.", ".block_sparse_moe.")
            if prefix:
                prefix = prefix.replace(".mlp.", ".block_sparse_moe.")
        gate, up, down = ("w1", "w3", "w2") if arch == "mixtral" else ("gate_proj", "up_proj", "down_proj")
        if name.endswith("experts.gate_up_proj"):
            inter = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{prefix}{e}.{gate}.weight"] = t[e, :inter].clone()
                out[f"{prefix}{e}.{up}.weight"] = t[e, inter:].clone()
        elif name.endswith("experts.down_proj"):
            for e in range(t.shape[0]):
                out[f"{prefix}{e}.{down}.weight"] = t[e].clone()
        else:
            out[name] = t
    return out


def save_checkpoint(model, arch, folder):
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    cfg.update(model.config.to_dict())  # every key, not only those differing from the defaults
    cfg["model_type"] = arch
    cfg.pop("transformers_version", None)
    json.dump(cfg, open(os.path.join(folder, "config.json"), "w"), indent=2, default=str)
    save_file(per_expert_state_dict(model, arch), os.path.join(folder, "model.safetensors"))


def load_per_expert(model, arch, tensors):
    """The inverse of per_expert_state_dict: per-expert float tensors into the HF model."""
    sd = model.state_dict()
    gate, up, down = ("w1", "w3", "w2") if arch == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    new = {}
    for name, t in sd.items():
        stored = name.replace(".mlp.", ".block_sparse_moe.") if arch == "mixtral" else name
        prefix = stored.rsplit("experts.", 1)[0] + "experts." if "experts." in stored else None
        if name.endswith("experts.gate_up_proj"):
            new[name] = torch.stack([torch.cat([torch.from_numpy(tensors[f"{prefix}{e}.{gate}.weight"]),
                                                torch.from_numpy(tensors[f"{prefix}{e}.{up}.weight"])])
                                     for e in range(t.shape[0])])
        elif name.endswith("experts.down_proj"):
            new[name] = torch.stack([torch.from_numpy(tensors[f"{prefix}{e}.{down}.weight"]) for e in range(t.shape[0])])
        else:
            new[name] = torch.from_numpy(np.ascontiguousarray(tensors[stored])).float()
    model.load_state_dict(new)


def to_gguf(folder, arch, config, path):
    """The per-expert checkpoint as llama.cpp lays MoE models out in GGUF (gguf-py's
    writer): stacked ffn_{gate,up,down}_exps [experts, rows, cols], the router
    ffn_gate_inp, Qwen2-MoE's *_shexp and its 1-D ffn_gate_inp_shexp, arch qwen3moe /
    qwen2moe (convert_hf_to_gguf.py Qwen3MoeModel / Qwen2MoeModel)."""
    import gguf
    t = read_checkpoint(folder)
    A = {"qwen3_moe": "qwen3moe", "qwen2_moe": "qwen2moe"}[arch]
    w = gguf.GGUFWriter(path, A)
    c = config
    for key, val in [("block_count", c.num_hidden_layers), ("embedding_length", c.hidden_size),
                     ("feed_forward_length", c.intermediate_size), ("attention.head_count", c.num_attention_heads),
                     ("attention.head_count_kv", c.num_key_value_heads), ("context_length", c.max_position_embeddings),
                     ("expert_count", c.num_experts), ("expert_used_count", c.num_experts_per_tok),
                     ("expert_feed_forward_length", c.moe_intermediate_size)]:
        w.add_uint32(f"{A}.{key}", int(val))
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w.add_uint32(f"{A}.attention.key_length", int(head_dim))
    w.add_uint32(f"{A}.attention.value_length", int(head_dim))
    if arch == "qwen2_moe":
        w.add_uint32(f"{A}.expert_shared_feed_forward_length", int(c.shared_expert_intermediate_size))
    w.add_float32(f"{A}.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps))
    w.add_float32(f"{A}.rope.freq_base", float(getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]))
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate": "ffn_gate_inp",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "mlp.shared_expert.gate_proj": "ffn_gate_shexp", "mlp.shared_expert.up_proj": "ffn_up_shexp",
             "mlp.shared_expert.down_proj": "ffn_down_shexp", "mlp.shared_expert_gate": "ffn_gate_inp_shexp"}
    w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    w.add_tensor("output.weight", t["lm_head.weight"])
    for l in range(c.num_hidden_layers):
        p = f"model.layers.{l}."
        for hf, g in names.items():
            for suffix in (".weight", ".bias"):
                if p + hf + suffix in t:
                    a = t[p + hf + suffix]
                    w.add_tensor(f"blk.{l}.{g}{suffix}", a.reshape(-1) if g == "ffn_gate_inp_shexp" else a)
        if p + "mlp.experts.0.gate_proj.weight" in t:
            for hf, g in (("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps")):
                w.add_tensor(f"blk.{l}.{g}.weight",
                             np.stack([t[f"{p}mlp.experts.{e}.{hf}.weight"] for e in range(c.num_experts)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_forward(model, ids):
    routing, hooks = {}, []
    for i, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(gate, "top_k"):
            continue

        def hook(_m, _inp, out, i=i):
            routing[str(i)] = out[2].tolist()  # (logits, scores, indices), torch.topk order
        hooks.append(gate.register_forward_hook(hook))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().numpy()
    for h in hooks:
        h.remove()
    return logits, routing


def ours(dump, folder, ids):
    r = subprocess.run([dump, folder, ",".join(map(str, ids))], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"xquant_moe_dump failed on {folder}: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    return np.array(out["logits"], dtype=np.float32), out["routing"]


def compare(name, hf, mine, failures):
    (hl, hr), (ml, mr) = hf, mine
    scale = max(1.0, float(np.abs(hl).max()))
    err = float(np.abs(hl - ml).max())
    ok_logits = err <= BOUND * scale
    routes = sum(len(v) for v in hr.values())
    same = sum(1 for k in hr for a, b in zip(hr[k], mr.get(k, [])) if list(a) == list(b))
    layers_match = sorted(hr) == sorted(mr)
    print(f"  {name}: max |logit diff| {err:.3g} (bound {BOUND * scale:.3g}), routing {same}/{routes} "
          f"token-layer decisions equal, MoE layers {sorted(hr)} vs ours {sorted(mr)}")
    if not ok_logits:
        failures.append(f"{name}: logits differ by {err:.3g} > {BOUND * scale:.3g}")
    if same != routes or not layers_match:
        failures.append(f"{name}: routing differs ({same}/{routes} equal, layers {sorted(hr)} vs {sorted(mr)})")


def transformers_drops_expert_zero_points():
    """transformers 5.24's per-expert dequantization (integrations/compressed_tensors.py,
    CompressedTensorsDequantize.convert) rebuilds each expert as a module with
    weight_packed, weight_scale and weight_shape only, so compressed-tensors'
    decompress asserts "Asymmetric quant requires zero-point values" on any
    asymmetric per-expert checkpoint. True while that code never names the zero point."""
    import inspect
    from transformers.integrations import compressed_tensors as ct_integration
    return "zero_point" not in inspect.getsource(ct_integration.CompressedTensorsDequantize)


def transformers_loads(out, name, dump, ids, failures, symmetric):
    """transformers + compressed-tensors load our quantized output as a user would."""
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig
    if not symmetric and transformers_drops_expert_zero_points():
        print(f"  {name}: NOT CHECKED with transformers: its per-expert dequantization drops weight_zero_point "
              f"(transformers integrations/compressed_tensors.py CompressedTensorsDequantize), so no asymmetric "
              f"MoE checkpoint loads there")
        return
    try:
        # dequantize=True, as ct_interop.py loads dense outputs: the loader
        # matches the config against the module tree, then compressed-tensors
        # decompresses (the default compressed load refuses packed asymmetric
        # zero points in transformers 5.24: it sizes weight_zero_point unpacked).
        m = AutoModelForCausalLM.from_pretrained(
            out, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)).eval()
    except Exception as e:  # noqa: BLE001 - any refusal is the finding
        failures.append(f"{name}: transformers + compressed-tensors could not load it: {e}")
        return
    with torch.no_grad():
        hl = m(torch.tensor([ids])).logits[0].float().numpy()
    ml, _ = ours(dump, out, ids)
    ml = ml.reshape(hl.shape)
    scale = max(1.0, float(np.abs(hl).max()))
    err = float(np.abs(hl - ml).max())
    print(f"  {name} loaded by transformers + compressed-tensors: max |logit diff| {err:.3g} "
          f"(bound {BOUND * scale:.3g})")
    if not err <= BOUND * scale:
        failures.append(f"{name} (transformers + compressed-tensors): logits differ by {err:.3g} > {BOUND * scale:.3g}")


def quantize_roundtrip(args, arch, folder, model, ids, failures):
    text = args.text
    for algo in ("gptq", "awq"):
        out = os.path.join(args.work, f"{arch}-{algo}")
        # The CLI's defaults: every Linear but lm_head and the MoE routers.
        cmd = [args.xquant, "quantize", "--model", folder, "--out", out, "--algorithm", algo, "--bits", "4",
               "--group-size", "16", "--calibration", text, "--tokenizer", args.tokenizer, "--samples", "8",
               "--seq-len", "32", "--seed", "1", "--json"]
        cmd.append("--sym" if algo == "gptq" else "--asym")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{arch} {algo}: xquant quantize failed: {r.stderr.strip()[-2000:]}")
            continue
        report = json.loads(r.stdout)
        experts = report["experts"]
        if sorted(report["dense_linears"]) != ["lm_head", "model.layers.0.mlp.gate", "model.layers.2.mlp.gate"]:
            failures.append(f"{arch} {algo}: dense Linears {report['dense_linears']}, expected lm_head and the routers")
        fallback = [e for e in experts if e["statistics"] != "routed tokens"]
        print(f"  {arch} {algo}: {len(experts)} experts calibrated, routed tokens per expert "
              f"{[e['routed_tokens'] for e in experts]}, {len(fallback)} on all-token statistics")
        if len(experts) != 2 * 8:
            failures.append(f"{arch} {algo}: the report lists {len(experts)} experts, expected 16")
        tensors = read_checkpoint(out)
        qcfg = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
        scheme = next(iter(qcfg["config_groups"].values()))
        dense = {}
        n_quant = 0
        for name in tensors:
            if name.endswith(".weight_scale"):
                m = name[: -len(".weight_scale")]
                dense[m + ".weight"] = numpy_dequant(tensors, m, scheme)[3]
                n_quant += 1
        for name, t in tensors.items():
            if not any(name.endswith(s) for s in (".weight_scale", ".weight_packed", ".weight_shape",
                                                    ".weight_zero_point", ".weight_g_idx")) and name not in dense:
                dense[name] = t.astype(np.float32)
        n_expert = sum(1 for m in dense if ".experts." in m)
        load_per_expert(model, arch, dense)
        hf = hf_forward(model, ids)
        mine = ours(args.dump, out, ids)
        print(f"  {arch} {algo}: {n_quant} quantized Linears ({n_expert} of them experts' gate/up/down)")
        compare(f"{arch} {algo} (dequantized)", hf, mine, failures)
        if not np.isfinite(mine[0]).all():
            failures.append(f"{arch} {algo}: non-finite logits")
        transformers_loads(out, f"{arch} {algo}", args.dump, ids, failures, bool(scheme["weights"]["symmetric"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--text", required=True, help="calibration text")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    failures = []
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.integers(0, 512, 24)]
    for arch in ("qwen3_moe", "qwen2_moe", "mixtral"):
        config = make_config(arch)
        model = model_class(arch)(config).float().eval()
        folder = os.path.join(args.work, arch)
        save_checkpoint(model, arch, folder)
        hf = hf_forward(model, ids)
        compare(arch, hf, ours(args.dump, folder, ids), failures)
        if arch in ("qwen3_moe", "qwen2_moe"):
            path = os.path.join(args.work, arch + ".gguf")
            to_gguf(folder, arch, config, path)
            compare(arch + " (GGUF, stacked experts)", hf, ours(args.dump, path, ids), failures)
        if arch == "qwen3_moe":
            quantize_roundtrip(args, arch, folder, model, ids, failures)
    if failures:
        print("moe_interop: FAILED\n  " + "\n  ".join(failures))
        return 1
    print("moe_interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
