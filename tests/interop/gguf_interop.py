"""gguf_interop.py: the `gguf` package (llama.cpp's gguf-py) reads every GGUF
xquant writes.

For each case an RTN pipeline writes a GGUF with `xquant run`; then gguf-py's
GGUFReader opens it and we check the metadata llama.cpp needs, each tensor's
name, shape and type, and that gguf.quants.dequantize() gives the same values
as xquant's own decoders (dumped by xquant_gguf_dump). Cases: stories260K
(GGUF source, and the HF copy with the GGUF's tokenizer) at F32, F16, BF16,
Q8_0, Q4_0, Q4_1, Q5_0, Q5_1; and a small random Llama with 256-wide rows
(written here as an HF checkpoint) for the K-quants Q4_K, Q5_K, Q6_K, which
stories260K's 64/172-wide rows cannot hold. Exit status 0 when all pass.
"""
import argparse
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("  FAIL", what)
    return ok


def read_safetensors(path):
    b = Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for k, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_wide_model(folder, arch="llama"):
    """A 2-layer random decoder whose Linear rows are 256 or 512 wide (whole K-quant super-blocks).
    qwen2 adds q/k/v biases; qwen3 adds q/k norms and a head_dim (128) that is not hidden/heads."""
    folder.mkdir(parents=True, exist_ok=True)
    h, f, heads, kv_heads = 256, 512, 4, 2
    hd = 128 if arch == "qwen3" else h // heads
    cfg = {"architectures": ["x"], "model_type": arch, "hidden_size": h, "intermediate_size": f,
           "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": hd,
           "vocab_size": 512, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    (folder / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(13)
    t = {"model.embed_tokens.weight": rng.normal(0, 0.02, (512, h)), "model.norm.weight": np.ones(h),
         "lm_head.weight": rng.normal(0, 0.02, (512, h))}
    for i in range(2):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, h)
        t[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, h)
        for name, shape in (("self_attn.q_proj", (heads * hd, h)), ("self_attn.k_proj", (kv_heads * hd, h)),
                            ("self_attn.v_proj", (kv_heads * hd, h)), ("self_attn.o_proj", (h, heads * hd)),
                            ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)), ("mlp.down_proj", (h, f))):
            t[p + name + ".weight"] = rng.normal(0, 0.02, shape)
            if arch == "qwen2" and name[-6:] in ("q_proj", "k_proj", "v_proj"):
                t[p + name + ".bias"] = rng.normal(0, 0.02, shape[0])
        if arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = 1 + rng.normal(0, 0.1, hd)
            t[p + "self_attn.k_norm.weight"] = 1 + rng.normal(0, 0.1, hd)
    write_safetensors(folder / "model.safetensors", t)


def run_pipeline(xquant, work, name, source, weights, params):
    out = work / f"{name}.gguf"
    yaml = (f"model:\n  path: {source}\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n"
            f"    weights: {weights}\nignore: [lm_head]\noutput:\n  format: gguf\n  path: {out}\n  params: {params}\n")
    (work / f"{name}.yaml").write_text(yaml)
    p = subprocess.run([xquant, "run", str(work / f"{name}.yaml")], capture_output=True, text=True)
    log = p.stdout + p.stderr
    if not check(p.returncode == 0, f"{name}: xquant run failed:\n{log}"):
        return None, log
    return out, log


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def check_file(name, path, dump_tool, expect_types, tokens, hparams):
    reader = GGUFReader(str(path))
    arch = hparams.get("arch", "llama")
    check(field(reader, "general.architecture") == arch, f"{name}: general.architecture")
    for k, v in hparams.items():
        if k == "arch":
            continue
        got = field(reader, f"{arch}.{k}")
        check(got is not None and abs(float(got) - float(v)) <= 1e-6 * abs(float(v)), f"{name}: {arch}.{k} = {got}, want {v}")
    check(field(reader, "tokenizer.ggml.tokens") == tokens, f"{name}: tokenizer.ggml.tokens differ from the source's")
    ours_path = path.with_suffix(".ours.safetensors")
    subprocess.run([dump_tool, str(path), str(ours_path)], check=True)
    ours = read_safetensors(ours_path)
    types, identical, worst = {}, 0, 0.0
    for t in reader.tensors:
        tname = t.tensor_type.name
        types[tname] = types.get(tname, 0) + 1
        for pattern, want in expect_types.items():
            if re.search(pattern, t.name):
                check(tname == want, f"{name}: {t.name} is {tname}, want {want}")
        mine = ours.get(t.name)
        if not check(mine is not None, f"{name}: {t.name} missing from our dump"):
            continue
        check(list(reversed([int(x) for x in t.shape])) == list(mine.shape),
              f"{name}: {t.name} shape {list(t.shape)} vs ours {list(mine.shape)}")
        theirs = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(mine.shape)
        if np.array_equal(theirs, mine):
            identical += 1
        else:
            worst = max(worst, float(np.max(np.abs(theirs - mine))))
    check(identical == len(reader.tensors),
          f"{name}: {len(reader.tensors) - identical} tensors decode differently (max |diff| {worst:.3g})")
    print(f"  {name}: {len(reader.tensors)} tensors {types}; gguf-py == ours bit for bit on {identical}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    work = Path(a.work)
    gguf_src = Path(a.shared) / "models/stories260K/stories260K.gguf"
    hf_src = Path(a.shared) / "models/stories260K-hf"
    wide = work / "wide-llama"
    make_wide_model(wide)
    qwen2, qwen3 = work / "wide-qwen2", work / "wide-qwen3"
    make_wide_model(qwen2, "qwen2")
    make_wide_model(qwen3, "qwen3")
    tokens = field(GGUFReader(str(gguf_src)), "tokenizer.ggml.tokens")
    stories = {"embedding_length": 64, "block_count": 5, "feed_forward_length": 172, "attention.head_count": 8,
               "attention.head_count_kv": 4, "attention.layer_norm_rms_epsilon": 1e-5}
    # The GGUF says 2048 (llama2.c's export default), the HF copy's config 512.
    stories_gguf = dict(stories, context_length=2048)
    stories_hf = dict(stories, context_length=512)
    wide_hp = {"embedding_length": 256, "block_count": 2, "feed_forward_length": 512, "attention.head_count": 4,
               "attention.head_count_kv": 2, "attention.layer_norm_rms_epsilon": 1e-5}
    qwen2_hp = dict(wide_hp, arch="qwen2")
    qwen3_hp = dict(wide_hp, arch="qwen3", **{"attention.key_length": 128, "attention.value_length": 128})
    tok = f"tokenizer: {gguf_src}"
    cases = [
        # name, source, weights, params, {tensor-name regex: type}, hparams
        ("f32", gguf_src, "{bits: 4, symmetric: true, group_size: 32, scale_dtype: float16}", "{type: F32}",
         {r"attn_q\.": "F32"}, stories_gguf),
        ("f16", hf_src, "{bits: 8, symmetric: true, strategy: channel}", "{type: F16, " + tok + "}",
         {r"attn_q\.": "F16", r"norm": "F32"}, stories_hf),
        ("bf16", hf_src, "{bits: 8, symmetric: true, strategy: channel}", "{type: BF16, " + tok + "}",
         {r"attn_q\.": "BF16"}, stories_hf),
        ("q8_0", hf_src, "{bits: 8, symmetric: true, group_size: 32, scale_dtype: float16}",
         "{type: Q8_0, exact: true, " + tok + "}", {r"attn_q\.": "Q8_0", r"ffn_down": "F32"}, stories_hf),
        ("q4_0", gguf_src, "{bits: 4, symmetric: true, group_size: 32, scale_dtype: float16}", "{exact: true}",
         {r"ffn_up": "Q4_0"}, stories_gguf),
        ("q4_1", gguf_src, "{bits: 4, symmetric: false, group_size: 32, scale_dtype: float16}", "{type: Q4_1}",
         {r"attn_v": "Q4_1"}, stories_gguf),
        ("q5_0", gguf_src, "{bits: 5, symmetric: true, group_size: 32, scale_dtype: float16}", "{exact: true}",
         {r"attn_k\.": "Q5_0"}, stories_gguf),
        ("q5_1", gguf_src, "{bits: 5, symmetric: false, group_size: 32, scale_dtype: float16}", "{type: Q5_1}",
         {r"ffn_gate": "Q5_1"}, stories_gguf),
        ("q4_k", wide, "{bits: 8, symmetric: true, strategy: channel}", "{type: Q4_K, " + tok + "}",
         {r"blk\.\d+\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight": "Q4_K", r"^output\.": "F32"}, wide_hp),
        ("q4_0-g128", wide, "{bits: 4, symmetric: true, group_size: 128, scale_dtype: float16}",
         "{type: Q4_0, exact: true, " + tok + "}", {r"ffn_down": "Q4_0"}, wide_hp),
        ("q5_k", wide, "{bits: 8, symmetric: true, strategy: channel}", "{type: Q5_K, " + tok + "}",
         {r"ffn_down": "Q5_K"}, wide_hp),
        ("qwen2-q4_0", qwen2, "{bits: 4, symmetric: true, group_size: 32, scale_dtype: float16}",
         "{exact: true, " + tok + "}", {r"attn_q\.weight": "Q4_0", r"attn_q\.bias": "F32"}, qwen2_hp),
        ("qwen3-q8_0", qwen3, "{bits: 8, symmetric: true, group_size: 32, scale_dtype: float16}",
         "{exact: true, " + tok + "}", {r"attn_output": "Q8_0", r"attn_q_norm": "F32"}, qwen3_hp),
        ("q6_k", wide, "{bits: 8, symmetric: true, strategy: channel}", "{type: Q6_K, " + tok + "}",
         {r"attn_output": "Q6_K"}, wide_hp),
    ]
    for name, source, weights, params, types, hp in cases:
        print(f"case {name}: {source.name} {weights} -> {params}")
        path, log = run_pipeline(a.xquant, work, name, source, weights, params)
        if path is None:
            continue
        summary = [l for l in log.splitlines() if "quantized weights exact" in l]
        print("  " + (summary[0].split("] ")[-1] if summary else "(no summary line)"))
        check_file(name, path, a.dump, types, tokens, hp)
    if failures:
        print(f"gguf_interop: {len(failures)} check(s) failed")
        return 1
    print("gguf_interop: every GGUF read by gguf-py with the same metadata, shapes, types and values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
