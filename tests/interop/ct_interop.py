#!/usr/bin/env python3
"""ct_interop.py: xquant's compressed-tensors output vs compressed-tensors itself.

Quantizes stories260K with `xquant run` (rtn) in several schemes, then for
every output checks, with the reference library (compressed-tensors, run by
ct_interop.sh in its own venv):

 1. the file loads with Hugging Face's `safetensors` reader (our writer's
    container is valid for the reference reader);
 2. config.json's quantization_config validates as a compressed-tensors
    QuantizationConfig (pydantic, extra fields forbidden in args);
 3. compressed-tensors' own file-level dequantizer (CompressedTensorsDequantizer
    .validate: matches targets/ignore by name, unpacks, dequantizes, and fails
    on any quantization parameter left unclaimed) runs on our tensors, and its
    weights equal an independent numpy dequantization of our file (own header
    parser, own bit unpacking) bit for bit;
 4. compressed-tensors' pack_to_int32 applied to our codes reproduces our
    weight_packed / weight_zero_point words exactly (the packing layout);
 5. compressed-tensors' quantize() of the ORIGINAL float weights with our
    scales and zero points gives our codes (our rounding = theirs; for FP8
    float-quantized, the same E4M3 bytes).
It also reports how our scales compare with compressed-tensors' own
min-max qparams (information: the algorithm is xquant's choice).
Exit status 0 only when every check passes.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np


# ---- an independent reader of our files (no compressed-tensors, no safetensors) ----

_NP = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
       "F64": np.float64, "I16": np.int16, "F8_E4M3": np.uint8}  # FP8: the raw bytes (decoded by e4m3_values)


def e4m3_values(raw):
    """FP8 E4M3FN bytes -> float32 from the format's definition (bias 7, 3 mantissa bits, no inf)."""
    b = raw.astype(np.int64)
    exp, mant = (b >> 3) & 15, b & 7
    mag = np.where(exp == 0, mant * 2.0 ** -9, (1 + mant / 8.0) * np.exp2(exp - 7.0))
    mag = np.where((exp == 15) & (mant == 7), np.nan, mag)
    return np.where(b & 0x80, -mag, mag).astype(np.float32)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = blob[8 + n + b:8 + n + e]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_NP[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def read_checkpoint(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(d, f)))
    return tensors


def unpack_dense(words, n, bits):
    """Element i of each row at global bit i*bits, LSB first (compressed-tensors >= 0.18)."""
    w = words.astype(np.uint32).astype(np.uint64)
    rows = w.shape[0]
    out = np.zeros((rows, n), dtype=np.int64)
    mask = (1 << bits) - 1
    for i in range(n):
        pos = i * bits
        k, s = divmod(pos, 32)
        v = w[:, k] >> np.uint64(s)
        if s + bits > 32:
            v = v | (w[:, k + 1] << np.uint64(32 - s))
        out[:, i] = (v & np.uint64(mask)).astype(np.int64)
    return out - (1 << (bits - 1))


def numpy_dequant(tensors, module, scheme):
    """Our file -> (codes, scale, zp, g_idx, dequantized weight) without any library."""
    wa = scheme["weights"]
    bits = wa["num_bits"]
    scale = tensors[module + ".weight_scale"].astype(np.float32)
    if wa["type"] == "float":  # float-quantized: E4M3 bytes (returned raw), one scale per row or tensor
        codes = tensors[module + ".weight"]
        rows, cols = codes.shape
        s = scale.reshape(rows, 1) if scale.size > 1 else np.full((rows, 1), scale.reshape(-1)[0], np.float32)
        return codes, scale, np.zeros_like(scale, dtype=np.int64), e4m3_values(codes) * s
    if module + ".weight_packed" in tensors:
        rows, cols = (int(x) for x in tensors[module + ".weight_shape"])
        codes = unpack_dense(tensors[module + ".weight_packed"], cols, bits)
    else:
        codes = tensors[module + ".weight"].astype(np.int64)
        rows, cols = codes.shape
    zp = np.zeros_like(scale, dtype=np.int64)
    if not wa["symmetric"]:
        z = tensors[module + ".weight_zero_point"]
        if z.dtype == np.int32:  # packed along dim 0
            zp = unpack_dense(np.ascontiguousarray(z.T), rows, bits).T
        else:
            zp = z.astype(np.int64)
    if wa["strategy"] == "group":
        gidx = np.arange(cols) // wa["group_size"]
    else:
        gidx = np.zeros(cols, dtype=np.int64)
    if module + ".weight_g_idx" in tensors:
        gidx = tensors[module + ".weight_g_idx"].astype(np.int64)
    s = scale.reshape(rows, -1) if scale.size > 1 else np.full((rows, 1), scale.reshape(-1)[0], np.float32)
    z = zp.reshape(rows, -1) if zp.size > 1 else np.full((rows, 1), zp.reshape(-1)[0], np.int64)
    s_full = s[:, gidx] if s.shape[1] > 1 else np.repeat(s, cols, axis=1)
    z_full = z[:, gidx] if z.shape[1] > 1 else np.repeat(z, cols, axis=1)
    w = (codes - z_full).astype(np.float32) * s_full
    return codes, scale, zp, w


# ---- the checks ----

_MODEL_DIR = None


def a_model_dir():
    return _MODEL_DIR


def check_variant(name, out_dir, original, failures, report):
    import torch
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
    from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import CompressedTensorsDequantizer
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.quantization.lifecycle.forward import quantize
    from compressed_tensors.quantization.utils import calculate_qparams
    from compressed_tensors.utils.match import match_name
    from safetensors.torch import load_file

    def fail(msg):
        failures.append(f"{name}: {msg}")
        print(f"  FAIL {msg}")

    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    qc = cfg["quantization_config"]
    print(f"[{name}] format={qc['format']} groups={list(qc['config_groups'])} ignore={qc['ignore']}")

    # 1. HF's safetensors reader accepts the file.
    files = ([f for f in os.listdir(out_dir) if f.endswith(".safetensors")])
    st = {}
    for f in files:
        st.update(load_file(os.path.join(out_dir, f)))
    ours = read_checkpoint(out_dir)
    if set(st) != set(ours):
        fail("the safetensors library and the numpy reader see different tensors")
    for k, v in st.items():
        a = v.view(torch.int16).numpy().view(np.uint16).astype(np.uint32) << 16 if v.dtype == torch.bfloat16 else None
        if v.dtype == torch.float8_e4m3fn:
            ref = v.view(torch.uint8).numpy()
            if not np.array_equal(v.float().numpy(), e4m3_values(ours[k]), equal_nan=True):
                fail(f"tensor {k}: torch's float8_e4m3fn values differ from the numpy E4M3 decoding")
        else:
            ref = a.view(np.float32) if a is not None else v.numpy()
        if not np.array_equal(ref, ours[k]):
            fail(f"tensor {k} differs between readers")

    # 2. The config validates.
    try:
        config = QuantizationConfig.model_validate(qc)
    except Exception as e:  # noqa: BLE001
        fail(f"QuantizationConfig rejects quantization_config: {e}")
        return

    # 3. compressed-tensors' dequantizer vs numpy. embed_tokens is not a
    # Linear, but the name-only matcher of the file-level dequantizer would
    # claim it for formats whose root param is "weight"; ignore it there.
    deq = CompressedTensorsDequantizer(out_dir, ignore=["model.embed_tokens"], dtype=torch.float32)
    # The dequantizer re-infers each group's format from its scheme and drops
    # the stored one; for W4AFP8 compressed-tensors 0.20 infers int-quantized
    # (its pack-quantized compressor declines float activations), while vLLM's
    # CompressedTensorsW4A8Fp8 loads weight_packed. Decompress with the format
    # the file declares, as ModelCompressor and transformers do.
    from compressed_tensors.config import CompressionFormat
    for gname, scheme in deq.quant_config.config_groups.items():
        declared = qc["config_groups"][gname].get("format")
        if declared and scheme.format != CompressionFormat(declared):
            print(f"  note: {gname}: compressed-tensors infers {scheme.format.value}, the file declares {declared}")
            scheme.format = CompressionFormat(declared)
    try:
        ct_out = deq.validate(dict(st))
    except Exception as e:  # noqa: BLE001
        fail(f"CompressedTensorsDequantizer.validate failed: {e}")
        return
    modules = sorted({k.rsplit(".", 1)[0] for k in ours if k.endswith(".weight_scale")})
    scheme_of = {}
    for m in modules:
        for gname, g in qc["config_groups"].items():
            if "Linear" in g["targets"] or any(match_name(m, t) for t in g["targets"]):
                scheme_of[m] = g
                break
    n_exact = n_total = 0
    max_abs = 0.0
    code_mismatch = 0
    pack_mismatch = 0
    scale_rel = []
    for m in modules:
        g = scheme_of[m]
        wa = g["weights"]
        codes, scale, zp, w_np = numpy_dequant(ours, m, g)
        w_ct = ct_out[m + ".weight"].float().numpy()
        if w_ct.shape != w_np.shape:
            fail(f"{m}: shape {w_ct.shape} vs {w_np.shape}")
            continue
        n_total += w_np.size
        n_exact += int(np.sum(w_ct.view(np.uint32) == w_np.view(np.uint32)))
        max_abs = max(max_abs, float(np.max(np.abs(w_ct - w_np))))

        # 4. Their packer on our codes gives our words.
        bits = wa["num_bits"]
        if m + ".weight_packed" in ours:
            theirs = pack_to_int32(torch.from_numpy(codes.astype(np.int8)), bits).numpy()
            if not np.array_equal(theirs, ours[m + ".weight_packed"]):
                pack_mismatch += 1
                fail(f"{m}: pack_to_int32(our codes) != our weight_packed")
            if not wa["symmetric"] and ours[m + ".weight_zero_point"].dtype == np.int32:
                zt = pack_to_int32(torch.from_numpy(zp.reshape(scale.shape).astype(np.int8)), bits, packed_dim=0).numpy()
                if not np.array_equal(zt, ours[m + ".weight_zero_point"]):
                    pack_mismatch += 1
                    fail(f"{m}: pack_to_int32(our zero points, dim 0) != our weight_zero_point")

        # 5. Their quantize() of the original weights with our qparams.
        from compressed_tensors.quantization import QuantizationArgs
        args = QuantizationArgs.model_validate(wa)
        x = torch.from_numpy(original[m + ".weight"].astype(np.float32))
        s_t = torch.from_numpy(scale.astype(np.float32))
        z_t = None if wa["symmetric"] else torch.from_numpy(zp.reshape(scale.shape).astype(np.int8))
        if wa["type"] == "float":
            q_ct = quantize(x=x, scale=s_t, zero_point=None, args=args, dtype=torch.float8_e4m3fn)
            code_mismatch += int(np.sum(q_ct.view(torch.uint8).numpy() != codes))
        else:
            q_ct = quantize(x=x, scale=s_t, zero_point=z_t, args=args, dtype=torch.int8).numpy().astype(np.int64)
            code_mismatch += int(np.sum(q_ct != codes))

        # Information: their min-max qparams for the same groups.
        rows, cols = x.shape
        gs = wa["group_size"] if wa["strategy"] == "group" else cols
        ng = math.ceil(cols / gs)
        mins = torch.stack([x[:, i * gs:(i + 1) * gs].amin(dim=1) for i in range(ng)], 1)
        maxs = torch.stack([x[:, i * gs:(i + 1) * gs].amax(dim=1) for i in range(ng)], 1)
        if wa["strategy"] == "tensor":
            mins, maxs = x.amin().reshape(1, 1), x.amax().reshape(1, 1)
        ref_s, _ = calculate_qparams(mins, maxs, args)
        scale_rel.append(float(torch.max(torch.abs(ref_s.float() - s_t.reshape(ref_s.shape)) / ref_s.float())))

    # 6. transformers' own loading path (CompressedTensorsHfQuantizer with
    # dequantize=True: config matching against the real module tree, then
    # compressed-tensors decompression) gives the same weights, and the
    # model runs.
    hf_exact, logit_diff = None, None
    try:
        from transformers import AutoModelForCausalLM
        from transformers.utils.quantization_config import CompressedTensorsConfig
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                     quantization_config=CompressedTensorsConfig(dequantize=True))
        sd = model.state_dict()
        hf_exact = all(np.array_equal(sd[m + ".weight"].float().numpy().view(np.uint32),
                                      numpy_dequant(ours, m, scheme_of[m])[3].view(np.uint32)) for m in modules)
        if not hf_exact:
            fail("transformers-loaded weights differ from the numpy dequantization")
        ids = torch.tensor([[1, 400, 20, 300, 7, 99]])
        with torch.no_grad():
            logits = model(ids).logits
            ref = AutoModelForCausalLM.from_pretrained(a_model_dir(), dtype=torch.float32)(ids).logits
        if not torch.isfinite(logits).all():
            fail("non-finite logits from the transformers-loaded model")
        logit_diff = float((logits - ref).abs().max())
    except Exception as e:  # noqa: BLE001
        fail(f"transformers could not load/run the checkpoint: {type(e).__name__}: {e}")

    report[name] = {
        "transformers_weights_bit_exact": hf_exact,
        "max_abs_logit_diff_vs_unquantized": logit_diff,
        "modules": len(modules),
        "weights_bit_exact": f"{n_exact}/{n_total}",
        "max_abs_diff_ct_vs_numpy": max_abs,
        "code_mismatches_vs_ct_quantize": code_mismatch,
        "pack_mismatches": pack_mismatch,
        "max_rel_scale_diff_vs_ct_minmax": max(scale_rel) if scale_rel else None,
    }
    print("  " + json.dumps(report[name]))
    if n_exact != n_total:
        fail(f"compressed-tensors' dequantized weights differ from numpy's in {n_total - n_exact} elements "
             f"(max abs {max_abs})")
    if code_mismatch:
        fail(f"{code_mismatch} codes differ from compressed-tensors' quantize() with our scales")


def check_w4afp8_preset(name, out_dir, failures):
    """Every config group is compressed-tensors' own W4AFP8 preset (group_size aside)."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.quant_scheme import preset_name_to_scheme
    preset = preset_name_to_scheme("W4AFP8", ["Linear"])
    qc = json.load(open(os.path.join(out_dir, "config.json")))["quantization_config"]
    for gname, g in qc["config_groups"].items():
        for field, want in (("weights", preset.weights), ("input_activations", preset.input_activations)):
            got = QuantizationArgs.model_validate(g[field]).model_dump()
            ref = want.model_dump()
            for key in ("num_bits", "type", "symmetric", "strategy", "dynamic"):
                if got[key] != ref[key]:
                    failures.append(f"{name}: {gname}.{field}.{key} is {got[key]!r}, the W4AFP8 preset says {ref[key]!r}")
                    print("  FAIL " + failures[-1])
    print(f"[{name}] config groups match compressed-tensors' W4AFP8 preset (num_bits, type, symmetric, strategy, dynamic)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()

    global _MODEL_DIR
    _MODEL_DIR = os.path.abspath(a.model)
    import compressed_tensors
    print(f"compressed-tensors {compressed_tensors.__version__}")
    original = read_checkpoint(a.model)
    # Pipelines for `xquant run` (the same thing `xquant quantize` builds).
    # stories260K: hidden 64, ffn 172. compressed-tensors (and vLLM) need
    # whole groups, so groups of 32 leave down_proj (172 columns) dense via
    # the ignore list, and groups of 4 (which divide 172) cover every Linear.
    down_dense = ["lm_head", "re:.*down_proj$"]
    variants = {
        "w4a16-g32": ("weights: {bits: 4, symmetric: true, strategy: group, group_size: 32}", down_dense),
        "w4a16-asym-g4": ("weights: {bits: 4, symmetric: false, strategy: group, group_size: 4}", ["lm_head"]),
        "w4a16-asym-channel": ("weights: {bits: 4, symmetric: false, strategy: channel}", ["lm_head"]),
        "w3a16-g32": ("weights: {bits: 3, symmetric: true, strategy: group, group_size: 32}", down_dense),
        "w8a16-channel": ("weights: {bits: 8, symmetric: true, strategy: channel}", ["lm_head"]),
        "w8a8-dynamic": ("weights: {bits: 8, symmetric: true, strategy: channel}\n"
                         "    activations: {bits: 8, strategy: token}", ["lm_head"]),
        # compressed-tensors' FP8_DYNAMIC preset, and FP8 weight-only per tensor (float-quantized).
        "fp8-dynamic": ("weights: {type: float, bits: 8, strategy: channel}\n"
                        "    activations: {bits: 8, strategy: token}", ["lm_head"]),
        "fp8-tensor": ("weights: {type: float, bits: 8, strategy: tensor}", ["lm_head"]),
        # compressed-tensors' W4AFP8 preset (vLLM's CompressedTensorsW4A8Fp8), groups of 32.
        "w4afp8-g32": ("weights: {bits: 4, symmetric: true, strategy: group, group_size: 32}\n"
                       "    activations: {type: float, bits: 8, strategy: token}", down_dense),
    }
    failures, report = [], {}
    for name, (quant, ignore) in variants.items():
        out = os.path.join(a.work, name)
        pipeline = os.path.join(a.work, name + ".yaml")
        with open(pipeline, "w") as f:
            f.write(f"model: {{path: {os.path.abspath(a.model)}}}\n"
                    f"quantize:\n  - targets: [Linear]\n    algorithm: rtn\n    {quant}\n"
                    f"ignore: {json.dumps(ignore)}\n"
                    f"output: {{format: compressed-tensors, path: {out}, params: {{max_shard_bytes: 0}}}}\n")
        cmd = [a.xquant, "run", pipeline]
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{name}: `{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
            print(failures[-1])
            continue
        print(f"[{name}] xquant run took {time.time() - t:.2f} s")
        check_variant(name, out, original, failures, report)
        if name.startswith("w4afp8"):
            check_w4afp8_preset(name, out, failures)
    # Negative control: one flipped bit in one packed word must be caught.
    first = os.path.join(a.work, "w4a16-g32")
    if os.path.isdir(first):
        import shutil
        bad = os.path.join(a.work, "corrupted")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(first, bad)
        path = os.path.join(bad, "model.safetensors")
        with open(path, "rb") as f:
            blob = bytearray(f.read())
        (n,) = struct.unpack("<Q", blob[:8])
        info = json.loads(blob[8:8 + n])["model.layers.2.self_attn.q_proj.weight_packed"]
        blob[8 + n + info["data_offsets"][0] + 5] ^= 0x10
        with open(path, "wb") as f:
            f.write(blob)
        caught = []
        print("[negative control] a flipped bit in model.layers.2.self_attn.q_proj.weight_packed:")
        check_variant("corrupted", bad, original, caught, {})
        if not caught:
            failures.append("negative control: a corrupted packed word was not detected")
        else:
            print("  -> detected, as it must be")
    print(json.dumps(report, indent=2))
    if failures:
        print(f"\n{len(failures)} FAILURE(S):")
        for f in failures:
            print("  - " + f)
        return 1
    print("\nall compressed-tensors interop checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
