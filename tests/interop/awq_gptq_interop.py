#!/usr/bin/env python3
"""awq_gptq_interop.py: xquant's AWQ and GPTQ outputs vs what their consumers read.

Quantizes stories260K's attention projections (4-bit, groups of 32) with
`xquant run` to compressed-tensors (rtn symmetric, rtn asymmetric, gptq
act-order asymmetric), converts each with `xquant convert` to awq (not the
act-order one: AWQ has no g_idx), gptq (v1) and gptq_v2, then checks:

 1. transformers (the real library, CPU, no torch needed for this) parses
    config.json's quantization_config: AwqConfig.from_dict /
    GPTQConfig.from_dict accept it and report the bits, group size, zero
    point / sym, desc_act, GEMM version and checkpoint_format we wrote;
 2. vLLM's config keys: the keys vLLM's AWQConfig.from_config and
    GPTQConfig.from_config read (vllm/model_executor/layers/quantization/
    awq.py, gptq.py: w_bit|bits, q_group_size|group_size, zero_point,
    modules_to_not_convert; bits, group_size, desc_act, lm_head) are present
    with the right types (vLLM itself is not installed here);
 3. the weights an independent numpy dequantizer reads from the AWQ/GPTQ
    files, written from the upstream reference code (AutoAWQ
    awq/utils/packing_utils.py dequantize_gemm: shifts 0..28 then
    AWQ_REVERSE_ORDER [0,4,1,5,2,6,3,7]; AutoGPTQ qlinear dequantization:
    zeros + 1 in v1, scales[g_idx]) equal, bit for bit, the weights the same
    dequantizer reads from the compressed-tensors copy (whose layout
    ct_interop.sh checks against compressed-tensors itself).
The AWQ/GPTQ kernels' own Python packages (autoawq, gptqmodel) and vLLM are
not installed: they need CUDA builds or several GB. Exit 0 only when every
check passes.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np

_NP = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "I32": np.int32, "I64": np.int64, "BF16": None}


def read_safetensors(path):
    """Own reader (no safetensors package): name -> numpy array."""
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
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, _NP[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out


def unpack_int32(words, bits, axis):
    """Each int32 along `axis` -> 32/bits unsigned values, value k at bit bits*k."""
    w = words.astype(np.uint32)
    per = 32 // bits
    parts = [(w >> (bits * k)) & ((1 << bits) - 1) for k in range(per)]
    st = np.stack(parts, axis=axis + 1)  # [..., per] inserted after axis
    shape = list(words.shape)
    shape[axis] *= per
    return st.reshape(shape).astype(np.int32)


AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def awq_unpack(words):
    """AutoAWQ dequantize_gemm's unpack_awq + reverse_awq_order: [R, C/8] -> [R, C]."""
    u = unpack_int32(words, 4, 1)  # slot order
    r, c = u.shape
    u = u.reshape(r, c // 8, 8)
    # slot i holds column order_map[i]; column j sits in slot AWQ_REVERSE_ORDER[j]
    return u[:, :, AWQ_REVERSE_ORDER].reshape(r, c)


def dequant_awq(t, m, gs):
    iw = awq_unpack(t[m + ".qweight"])  # [in, out]
    iz = awq_unpack(t[m + ".qzeros"])   # [G, out]
    s = t[m + ".scales"].astype(np.float32)
    g = np.arange(iw.shape[0]) // gs
    w = (iw - iz[g]).astype(np.float32) * s[g]
    return w.T


def dequant_gptq(t, m, bits, v2):
    iw = unpack_int32(t[m + ".qweight"], bits, 0)  # [in, out], packed along in
    iz = unpack_int32(t[m + ".qzeros"], bits, 1)   # [G, out], packed along out
    if not v2:
        iz = iz + 1  # v1 stores z - 1
    s = t[m + ".scales"].astype(np.float32)
    g = t[m + ".g_idx"].astype(np.int64)
    w = (iw - iz[g]).astype(np.float32) * s[g]
    return w.T


def dequant_ct(t, m, bits, gs):
    """compressed-tensors pack-quantized (dense packing, offset 2^(b-1))."""
    rows, cols = [int(x) for x in t[m + ".weight_shape"]]
    off = 1 << (bits - 1)
    q = unpack_int32(t[m + ".weight_packed"], bits, 1)[:, :cols] - off
    s = t[m + ".weight_scale"].astype(np.float32)
    z = np.zeros_like(s, dtype=np.int32)
    if m + ".weight_zero_point" in t:
        z = unpack_int32(t[m + ".weight_zero_point"], bits, 0)[:rows] - off
    g = t[m + ".weight_g_idx"].astype(np.int64) if m + ".weight_g_idx" in t else np.arange(cols) // gs
    return (q - z[:, g]).astype(np.float32) * s[:, g]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()

    import transformers
    from transformers import AwqConfig, GPTQConfig
    print(f"transformers {transformers.__version__}, numpy {np.__version__}")

    variants = {"rtn-sym": ("rtn", True, ""), "rtn-asym": ("rtn", False, ""),
                "gptq-actorder": ("gptq", False, "    params: {act_order: true}\n")}
    failures = 0
    checks = 0
    for name, (alg, sym, params) in variants.items():
        ct = os.path.join(a.work, name + "-ct")
        yaml = (f"model: {{path: {a.model}}}\nquantize:\n  - targets: [\"re:.*self_attn\\\\..*_proj$\"]\n"
                f"    algorithm: {alg}\n{params}    weights: {{bits: 4, symmetric: {str(sym).lower()}, group_size: 32}}\n"
                f"ignore: [\"re:.*mlp\\\\..*\", lm_head]\n"
                f"calibration: {{text: {a.text}, samples: 4, seq_len: 64, tokenizer: {a.vocab}}}\n"
                f"output: {{format: compressed-tensors, path: {ct}}}\n")
        yp = os.path.join(a.work, name + ".yaml")
        open(yp, "w").write(yaml)
        run([a.xquant, "run", yp])
        t_ct = read_safetensors(os.path.join(ct, "model.safetensors"))
        modules = sorted(k[:-len(".weight_packed")] for k in t_ct if k.endswith(".weight_packed"))
        targets = [("gptq", ""), ("gptq", "checkpoint_format=gptq_v2")] + ([] if alg == "gptq" else [("awq", "")])
        for fmt, param in targets:
            out = os.path.join(a.work, f"{name}-{fmt}{'-v2' if param else ''}")
            cmd = [a.xquant, "convert", "--model", ct, "--out", out, "--format", fmt, "--json"]
            if param:
                cmd += ["--param", param]
            report = json.loads(run(cmd))
            label = os.path.basename(out)
            qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
            # 1. transformers parses it.
            if fmt == "awq":
                cfg = AwqConfig.from_dict(dict(qc))
                # transformers 5 keeps `version` as `format`; 4.x as `version` (an AWQLinearVersion enum).
                version = getattr(cfg, "version", None) or getattr(cfg, "format", None)
                got = (cfg.bits, cfg.group_size, cfg.zero_point, str(getattr(version, "value", version)).lower(),
                       sorted(cfg.modules_to_not_convert or []))
                want = (4, 32, True, "gemm", sorted(qc["modules_to_not_convert"]))
            else:
                cfg = GPTQConfig.from_dict(dict(qc))
                # transformers 5 keeps checkpoint_format as `format`; 4.x as `checkpoint_format`.
                fmt_seen = getattr(cfg, "checkpoint_format", None) or getattr(cfg, "format", None)
                got = (cfg.bits, cfg.group_size, cfg.desc_act, cfg.sym, fmt_seen)
                want = (4, 32, alg == "gptq", sym, "gptq_v2" if param else "gptq")
            ok = got == want
            checks += 1
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} transformers {type(cfg).__name__}.from_dict({label}/config.json): {got}"
                  + ("" if ok else f" != {want}"))
            # 2. vLLM's keys.
            keys = (["bits", "group_size", "zero_point"] if fmt == "awq" else ["bits", "group_size", "desc_act"])
            ok = all(k in qc for k in keys) and isinstance(qc["bits"], int) and isinstance(qc["group_size"], int) \
                and qc["quant_method"] == fmt
            checks += 1
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} vLLM config keys {keys} + quant_method in {label}")
            # 3. the same weights as the compressed-tensors copy.
            t = read_safetensors(os.path.join(out, "model.safetensors"))
            worst = 0
            for m in modules:
                w = dequant_awq(t, m, 32) if fmt == "awq" else dequant_gptq(t, m, 4, bool(param))
                ref = dequant_ct(t_ct, m, 4, 32)
                same = w.shape == ref.shape and np.array_equal(w.view(np.uint32), ref.view(np.uint32))
                worst = max(worst, 0 if same else 1)
            ok = worst == 0 and report["exact"] == len(modules)
            checks += 1
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {label}: {len(modules)} Linears dequantized by the upstream "
                  f"{'AutoAWQ' if fmt == 'awq' else 'AutoGPTQ ' + ('v2' if param else 'v1')} rules equal the "
                  f"compressed-tensors copy bit for bit (xquant convert: {report['exact']}/{report['linears']} exact)")
    print(f"\n{checks - failures}/{checks} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
