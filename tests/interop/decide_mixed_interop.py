"""decide_mixed_interop.py: mixed-precision `xquant quantize --algorithm auto`
checkpoints at group size 32 read by compressed-tensors and transformers.

stories260K (F32, hidden 64, ffn 172) at W4 g32, rtn the only candidate, a KLD
target out of reach, so the byte budget decides how far the fallback climbs.
down_proj's 172 input columns are not a multiple of 32, so it falls back to
per channel and lands in a config group of its own. Two checkpoints:
  ladder-int8   --fallback int8,bf16 --max-bytes 170000: int4 g32 + int4
                per-channel + int8 per-channel (three config groups);
  ladder-bf16   --fallback bf16 --max-bytes 200000: int4 g32 + int4
                per-channel + groups written dense in BF16 (ignore list).
(The greedy fallback lifts every group to int8 before any to BF16 on this
model, so one checkpoint does not hold all four at once.)

Checks, for each:
  1. the config groups and the dense groups are the ones asked for (report.json);
  2. compressed-tensors' module-level matching (apply_quantization_config on
     the float model's real module tree: ignore first, then exact names over
     regexes over class names, compressed_tensors/utils/match.py) gives each
     Linear the scheme its tensors were written with (scale shape and bits),
     and no scheme to the dense ones;
  3. compressed-tensors' file-level dequantizer (CompressedTensorsDequantizer
     .validate) reads every tensor, and its weights equal an independent
     numpy dequantization of our file bit for bit (ct_interop.py's reader);
  4. transformers loads it the default way (AutoModelForCausalLM.from_pretrained
     with the checkpoint's own quantization_config: compressed-tensors builds
     the quantized modules, loads the packed tensors, decompresses them at
     the first forward): its
     weights are the numpy dequantization bit for bit (dense ones the stored
     values), and its logits equal our engine's (xquant_engine_logits, cpu) on
     the same checkpoint: max |diff| / max |logit| <= 1e-4 over a few prompts
     and greedy steps (float32 forwards over the same weights);
  5. transformers with CompressedTensorsConfig(dequantize=True): transformers
     5.24 dequantizes every dense module with ONE config group's scheme
     (transformers/integrations/compressed_tensors.py get_dense_scheme, used by
     CompressedTensorsDequantize for all non-expert modules), so it refuses
     any checkpoint with two dense config groups. The control: a mixed
     checkpoint written by compressed-tensors itself (ModelCompressor,
     "Linear" g32 + "re:.*down_proj$" per channel). Ours must load whenever
     the control loads; while the control is refused, ours being refused is
     reported as that transformers limitation, not as a failure.

MoE (a tiny random qwen3_moe from moe_interop.py: layers 0 and 2 MoE with 8
experts, layer 1 dense; W4 g16, which divides every width, so no expert
falls back to per channel; int8 and bf16 rungs): the writer puts routed
experts in config groups of their own, targeted by "re:" patterns that
mention "experts" (plugins/compressed_tensors/src/group_targets.hpp), which
is how transformers finds the experts' scheme:
  moe-one-experts-scheme   --max-bytes 260000: every expert int8, attention
                           int8 or BF16: one experts config group and one
                           plain one. compressed-tensors' dequantizer equals
                           numpy; transformers loads it both ways (default and
                           dequantize=True) with logits equal to ours (1e-4).
  moe-two-experts-schemes  --max-bytes 200000: layer 0's experts int8, layer
                           2's int4: two experts config groups. compressed-
                           tensors' dequantizer equals numpy; transformers
                           (5.24) holds one experts scheme per model
                           (get_experts_scheme) and refuses it both ways:
                           reported as NOT CHECKED, not failed; it must not
                           load it with wrong logits.
Exit 0 when all hold.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ct_interop import numpy_dequant, read_checkpoint  # noqa: E402

PROMPTS = [[1, 400, 20, 300, 7, 99], [1, 13, 250, 33], [1, 77, 5, 461, 2, 9, 310, 120]]
STEPS = 4
VARIANTS = {
    "ladder-int8": (["--fallback", "int8,bf16", "--max-bytes", "170000"], {"int4", "int8"}),
    "ladder-bf16": (["--fallback", "bf16", "--max-bytes", "200000"], {"int4", "dense"}),
}


def quantize(a, name, extra):
    s = a.shared
    out = os.path.join(a.work, name)
    cmd = [a.xquant, "--quiet", "quantize", "--model", f"{s}/models/stories260K-hf", "--out", out,
           "--algorithm", "auto", "--candidates", "rtn", "--group-size", "32",
           "--calibration", f"{s}/data/tinystories/tinystories_val.subset.txt",
           "--tokenizer", f"{s}/models/stories260K/stories260K.gguf", "--samples", "4", "--seq-len", "64",
           "--accuracy-text", f"{s}/data/wikitext-2-raw/wiki.test.raw", "--max-tokens", "512",
           "--max-increase", "0.000001", "--report", os.path.join(a.work, name + ".html")] + extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out, json.load(open(os.path.join(a.work, name + ".json")))


def scheme_of_file(tensors, module):
    """(bits, strategy, group_size) as the tensors of `module` were written."""
    scale = tensors[module + ".weight_scale"]
    if module + ".weight_packed" in tensors:
        cols, words = int(tensors[module + ".weight_shape"][1]), tensors[module + ".weight_packed"].shape[1]
        fits = [b for b in range(2, 9) if -(-cols * b // 32) == words]  # dense packing, rows padded to words
        bits = fits[0] if len(fits) == 1 else None
    else:
        cols, bits = tensors[module + ".weight"].shape[1], 8
    if scale.size == 1:
        return bits, "tensor", None
    if scale.shape[1] == 1:
        return bits, "channel", None
    return bits, "group", -(-cols // scale.shape[1])


def check_ct_matching(src, qc, tensors, dense, fail):
    """2. compressed-tensors' own module matching on the real module tree."""
    import torch
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    apply_quantization_config(model, QuantizationConfig.model_validate(qc))
    n = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        scheme = getattr(mod, "quantization_scheme", None)
        if name + ".weight_scale" not in tensors:
            if scheme is not None:
                fail(f"{name} is written dense but compressed-tensors gives it a scheme ({scheme.weights})")
            continue
        if scheme is None:
            fail(f"{name} is quantized in the file but compressed-tensors matches no config group to it")
            continue
        w = scheme.weights
        bits, strategy, gs = scheme_of_file(tensors, name)
        got = (w.num_bits, w.strategy.value if hasattr(w.strategy, "value") else w.strategy,
               w.group_size if w.strategy == "group" else None)
        if (bits is not None and bits != got[0]) or (strategy, gs) != got[1:]:
            fail(f"{name}: written as {bits}-bit {strategy} {gs}, compressed-tensors matches {got}")
        n += 1
    for m in dense:
        if m + ".weight_scale" in tensors:
            fail(f"{m} is on the dense rung but has quantized tensors")
    return n


def transformers_default(out, modules, scheme, tensors, dense, fail):
    """4. transformers' default load; returns the model (None when it fails)."""
    import torch
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        fail(f"transformers (default path) could not load it: {type(e).__name__}: {str(e).splitlines()[0]}")
        return None
    # compressed-tensors keeps the packed tensors until the first forward
    # (ModelCompressor.add_decompress_hook), then decompresses every module.
    with torch.no_grad():
        model(torch.tensor([PROMPTS[0]]))
    sd = model.state_dict()
    for m in modules:
        w = numpy_dequant(tensors, m, scheme[m])[3]
        if not np.array_equal(sd[m + ".weight"].numpy().view(np.uint32), w.view(np.uint32)):
            fail(f"{m}: transformers' weight differs from the numpy dequantization")
    for m in dense:
        if not np.array_equal(sd[m + ".weight"].numpy(), tensors[m + ".weight"]):
            fail(f"{m}: transformers' weight differs from the stored dense values")
    return model


def logits_vs_engine(a, out, model, name):
    import torch
    prompts = os.path.join(a.work, name + "-prompts.txt")
    with open(prompts, "w") as f:
        for p in PROMPTS:
            f.write(",".join(map(str, p)) + "\n")
    prefix = os.path.join(a.work, name + "-engine")
    subprocess.run([a.engine_logits, out, "cpu", prompts, str(STEPS), prefix], check=True, capture_output=True)
    meta = json.load(open(prefix + ".json"))
    ours = np.fromfile(prefix + ".f32", dtype=np.float32).reshape(len(PROMPTS), STEPS + 1, meta["vocab"])
    worst = 0.0
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            ids = p + meta["tokens"][i][:STEPS]  # the engine's greedy continuation
            theirs = model(torch.tensor([ids])).logits[0].numpy()
            for step in range(STEPS + 1):
                pos = len(p) - 1 + step
                worst = max(worst, float(np.max(np.abs(theirs[pos] - ours[i, step])) / np.max(np.abs(theirs[pos]))))
    return worst


def loads_with_dequantize(path):
    """5. None when transformers' dequantize=True path loads and runs it, else why not."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # its loading report repeats the exception at length
    try:
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                 quantization_config=CompressedTensorsConfig(dequantize=True))
        with torch.no_grad():
            m(torch.tensor([PROMPTS[0]]))
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        hf_logging.set_verbosity_warning()


def control_checkpoint(src, out):
    """A mixed checkpoint as compressed-tensors itself writes one (min-max scales)."""
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationArgs, QuantizationConfig, QuantizationScheme,
                                                 QuantizationStatus, apply_quantization_config)
    from compressed_tensors.quantization.utils import calculate_qparams
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    groups = {
        "group_0": QuantizationScheme(targets=["re:.*down_proj$"],
                                      weights=QuantizationArgs(num_bits=4, strategy="channel", symmetric=True)),
        "group_1": QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(num_bits=4, strategy="group",
                                                                                   group_size=32, symmetric=True)),
    }
    apply_quantization_config(model, QuantizationConfig(config_groups=groups, ignore=["lm_head"]))
    for _, mod in model.named_modules():
        s = getattr(mod, "quantization_scheme", None)
        if s is None:
            continue
        w = mod.weight.data
        gs = s.weights.group_size if s.weights.strategy == "group" else w.shape[1]
        cols = [w[:, i * gs:(i + 1) * gs] for i in range(w.shape[1] // gs)]
        scale, zp = calculate_qparams(torch.stack([c.amin(1) for c in cols], 1),
                                      torch.stack([c.amax(1) for c in cols], 1), s.weights)
        mod.weight_scale.data = scale.reshape(mod.weight_scale.shape).to(mod.weight_scale.dtype)
        mod.weight_zero_point.data = zp.reshape(mod.weight_zero_point.shape).to(mod.weight_zero_point.dtype)
        mod.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="pack-quantized")
    compressor.compress_model(model)
    model.save_pretrained(out)
    compressor.update_config(out)


def check_variant(a, name, extra, rungs, control_refused, failures, summary):
    import torch
    from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import CompressedTensorsDequantizer
    from safetensors.torch import load_file

    def fail(msg):
        failures.append(f"{name}: {msg}")
        print(f"  FAIL {name}: {msg}")

    src = f"{a.shared}/models/stories260K-hf"
    out, report = quantize(a, name, extra)
    qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    tensors = read_checkpoint(out)
    dense = [m for g in report["groups"] if g["rung"] == "dense" for m in g["modules"]]

    # 1. The mix asked for.
    seen = {g["rung"] for g in report["groups"]}
    if seen != rungs:
        fail(f"rungs {sorted(seen)}, expected {sorted(rungs)}")
    kinds = {(g["weights"]["num_bits"], g["weights"]["strategy"], g["weights"]["group_size"])
             for g in qc["config_groups"].values()}
    want = {(4, "group", 32), (4, "channel", None)} | ({(8, "channel", None)} if "int8" in rungs else set())
    if kinds != want:
        fail(f"config groups {sorted(kinds, key=str)}, expected {sorted(want, key=str)}")

    # 2. compressed-tensors' module matching.
    matched = check_ct_matching(src, qc, tensors, dense, fail)

    # 3. compressed-tensors' file-level dequantizer vs numpy.
    modules = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    scheme = {m: next(g for g in qc["config_groups"].values() if m in g["targets"]) for m in modules}
    st = {}
    for f in os.listdir(out):
        if f.endswith(".safetensors"):
            st.update(load_file(os.path.join(out, f)))
    try:
        ct_out = CompressedTensorsDequantizer(out, ignore=["model.embed_tokens"], dtype=torch.float32).validate(st)
        for m in modules:
            w = numpy_dequant(tensors, m, scheme[m])[3]
            if not np.array_equal(ct_out[m + ".weight"].float().numpy().view(np.uint32), w.view(np.uint32)):
                fail(f"{m}: compressed-tensors' dequantized weight differs from numpy's")
    except Exception as e:  # noqa: BLE001
        fail(f"CompressedTensorsDequantizer.validate failed: {type(e).__name__}: {e}")

    # 4. transformers, default path, and logits against our engine.
    model = transformers_default(out, modules, scheme, tensors, dense, fail)
    worst = logits_vs_engine(a, out, model, name) if model is not None else None
    if worst is not None and worst > 1e-4:
        fail(f"transformers vs engine logits: max |diff| / max |logit| {worst:.3g} > 1e-4")

    # 5. transformers, dequantize=True.
    refused = loads_with_dequantize(out)
    if refused and control_refused:
        print(f"  NOT CHECKED {name} through transformers' dequantize=True: it refuses compressed-tensors' own "
              "mixed checkpoint too (one scheme for every dense module, get_dense_scheme)")
    if refused and not control_refused:
        fail(f"transformers dequantize=True refuses ours but reads compressed-tensors' own mixed checkpoint: {refused}")
    summary[name] = {"config_groups": len(qc["config_groups"]), "quantized_modules": len(modules),
                     "matched_by_compressed_tensors": matched, "dense_modules": len(dense),
                     "engine_vs_transformers_rel_max_logit_diff": worst,
                     "transformers_dequantize_true": "loads" if refused is None else
                     ("refused, as compressed-tensors' own mixed checkpoint is (transformers limitation)"
                      if control_refused else "refused")}
    print("  " + json.dumps({name: summary[name]}))


MOE_VARIANTS = {
    "moe-one-experts-scheme": ("260000", 1),
    "moe-two-experts-schemes": ("200000", 2),
}


def moe_source(work):
    """A tiny random qwen3_moe checkpoint (moe_interop.py's, seeded)."""
    import torch
    from moe_interop import make_config, model_class, save_checkpoint
    torch.manual_seed(0)
    folder = os.path.join(work, "qwen3_moe")
    save_checkpoint(model_class("qwen3_moe")(make_config("qwen3_moe")).eval(), "qwen3_moe", folder)
    return folder


def transformers_logits_diff(a, out, name, dequantize):
    """max |diff| / max |logit| against our engine, or the reason transformers refused."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    from transformers.utils.quantization_config import CompressedTensorsConfig
    hf_logging.set_verbosity_error()
    try:
        kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if dequantize else {}
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, **kw)
        return logits_vs_engine(a, out, model, name + ("-deq" if dequantize else "")), None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        hf_logging.set_verbosity_warning()


def check_moe_variant(a, src, name, max_bytes, expert_groups, failures, summary):
    import torch
    from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import CompressedTensorsDequantizer
    from safetensors.torch import load_file

    def fail(msg):
        failures.append(f"{name}: {msg}")
        print(f"  FAIL {name}: {msg}")

    s = a.shared
    out = os.path.join(a.work, name)
    subprocess.run([a.xquant, "--quiet", "quantize", "--model", src, "--out", out, "--algorithm", "auto",
                    "--candidates", "rtn", "--group-size", "16",
                    "--calibration", f"{s}/data/tinystories/tinystories_val.subset.txt",
                    "--tokenizer", f"{s}/models/stories260K/stories260K.gguf", "--samples", "4", "--seq-len", "32",
                    "--accuracy-text", f"{s}/data/wikitext-2-raw/wiki.test.raw", "--max-tokens", "256",
                    "--max-increase", "0.000001", "--fallback", "int8,bf16", "--max-bytes", max_bytes,
                    "--report", os.path.join(a.work, name + ".html")], check=True, stdout=subprocess.DEVNULL)
    qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    experts = [g for g in qc["config_groups"].values() if any(t.startswith("re:") and "experts" in t
                                                               for t in g["targets"])]
    if len(experts) != expert_groups:
        fail(f"{len(experts)} experts config groups, expected {expert_groups}: {qc['config_groups']}")
    tensors = read_checkpoint(out)
    modules = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})
    from compressed_tensors.utils.match import match_name

    def scheme_of(m):
        hits = [g for g in qc["config_groups"].values() if any(match_name(m, t) for t in g["targets"])]
        if len(hits) != 1:
            fail(f"{m} matches {len(hits)} config groups")
        return hits[0] if hits else None

    st = {}
    for f in os.listdir(out):
        if f.endswith(".safetensors"):
            st.update(load_file(os.path.join(out, f)))
    try:
        ct_out = CompressedTensorsDequantizer(out, ignore=["model.embed_tokens"], dtype=torch.float32).validate(st)
        for m in modules:
            g = scheme_of(m)
            if g is None:
                continue
            w = numpy_dequant(tensors, m, g)[3]
            if not np.array_equal(ct_out[m + ".weight"].float().numpy().view(np.uint32), w.view(np.uint32)):
                fail(f"{m}: compressed-tensors' dequantized weight differs from numpy's")
    except Exception as e:  # noqa: BLE001
        fail(f"CompressedTensorsDequantizer.validate failed: {type(e).__name__}: {e}")
    result = {"config_groups": len(qc["config_groups"]), "experts_config_groups": len(experts),
              "quantized_modules": len(modules)}
    for dequantize in (False, True):
        key = "transformers_dequantize_true" if dequantize else "transformers_default"
        diff, refused = transformers_logits_diff(a, out, name, dequantize)
        result[key] = diff if refused is None else "refused: " + refused
        if refused is None and diff > 1e-4:
            fail(f"{key}: logits vs engine max |diff| / max |logit| {diff:.3g} > 1e-4")
        elif refused is not None and expert_groups == 1:
            fail(f"{key}: transformers refused it: {refused}")
        elif refused is not None:
            print(f"  NOT CHECKED {name} through transformers ({key}): it holds one experts scheme per model "
                  f"(get_experts_scheme) and refuses {expert_groups}")
    summary[name] = result
    print("  " + json.dumps({name: result}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--engine-logits", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    import compressed_tensors
    import transformers
    print(f"compressed-tensors {compressed_tensors.__version__}, transformers {transformers.__version__}")

    control = os.path.join(a.work, "control")
    control_checkpoint(f"{a.shared}/models/stories260K-hf", control)
    control_refused = loads_with_dequantize(control)
    print(f"control (compressed-tensors' own g32 + per-channel checkpoint), transformers dequantize=True: "
          f"{'loads' if control_refused is None else 'refused: ' + control_refused}")

    failures, summary = [], {}
    for name, (extra, rungs) in VARIANTS.items():
        check_variant(a, name, extra, rungs, control_refused is not None, failures, summary)
    src = moe_source(a.work)
    for name, (max_bytes, expert_groups) in MOE_VARIANTS.items():
        check_moe_variant(a, src, name, max_bytes, expert_groups, failures, summary)
    summary["control_dequantize_true"] = "loads" if control_refused is None else control_refused
    summary["failures"] = failures
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
