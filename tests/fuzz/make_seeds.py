#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/.

Small, valid (or nearly valid) inputs that reach deep into each parser, so
libFuzzer mutates from there. Deterministic: rerunning rewrites the same
bytes. Usage: tests/fuzz/make_seeds.py [CORPUS_DIR]
"""
import json
import re
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def write(corpus, target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors -------------------------------------------------------------
# u64 N + JSON header + data (safetensors/src/tensor.rs).
def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def safetensors_seeds(corpus):
    t = "safetensors_header"
    write(corpus, t, "two_tensors", safetensors(
        [("a.weight", "F32", [2, 2], bytes(16)), ("b.bias", "BF16", [3], bytes(6))], {"format": "pt"}))
    write(corpus, t, "empty", safetensors([]))
    write(corpus, t, "sub_byte", safetensors([("packed", "F4", [4], bytes(2)), ("i8", "I8", [2, 3], bytes(6))]))
    write(corpus, t, "scalar_and_zero", safetensors([("s", "F64", [], bytes(8)), ("z", "U16", [0, 5], b"")]))


# ---- GGUF --------------------------------------------------------------------
# ggml/src/gguf.cpp layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv,
# key/values, tensor infos, padding to general.alignment, tensor data.
U32, I32, F32, BOOL, STRING, ARRAY, U64 = 4, 5, 6, 7, 8, 9, 10
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gvalue(vtype, v):
    if vtype == STRING:
        return gstr(v)
    if vtype == ARRAY:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(gvalue(etype, x)[0:] for x in items)
    fmt = {U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q"}[vtype]
    return struct.pack(fmt, v)


def gguf(kvs, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, vtype, v in kvs:
        out += gstr(key) + struct.pack("<I", vtype) + gvalue(vtype, v)
    offset, blobs = 0, []
    for name, ne, gtype, data in tensors:
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", gtype, offset)
        pad = (alignment - len(data) % alignment) % alignment
        blobs.append(data + bytes(pad))
        offset += len(data) + pad
    out += bytes((alignment - len(out) % alignment) % alignment)
    return out + b"".join(blobs)


def gguf_seeds(corpus):
    t = "gguf"
    llama = [("general.architecture", STRING, "llama"), ("llama.attention.head_count", U32, 2),
             ("llama.attention.head_count_kv", U32, 1), ("llama.embedding_length", U32, 8),
             ("llama.block_count", U32, 1), ("llama.rope.freq_base", F32, 10000.0),
             ("tokenizer.ggml.model", STRING, "llama"),
             ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "\u2581a"])),
             ("tokenizer.ggml.scores", ARRAY, (F32, [0.0, 0.0, 0.0, -1.0])),
             ("tokenizer.ggml.bos_token_id", U32, 1)]
    f16_one = struct.pack("<e", 1.0)
    q8_block = f16_one + bytes(range(32))
    q4_block = f16_one + bytes(range(16))
    write(corpus, t, "llama_small", gguf(llama, [
        ("token_embd.weight", [32, 2], GGML_Q4_0, q4_block * 2),
        ("output_norm.weight", [8], GGML_F32, struct.pack("<8f", *range(8))),
        ("blk.0.attn_q.weight", [8, 8], GGML_F16, f16_one * 64),
        ("blk.0.attn_k.weight", [8, 4], GGML_F32, bytes(128)),
        ("blk.0.ffn_up.weight", [32, 1], GGML_Q8_0, q8_block),
    ]))
    write(corpus, t, "vocab_only", gguf(
        [("general.architecture", STRING, "gpt2"), ("tokenizer.ggml.model", STRING, "gpt2"),
         ("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "ab"])),
         ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"])), ("general.alignment", U32, 64)], []))
    write(corpus, t, "qwen2_bias", gguf(
        [("general.architecture", STRING, "qwen2"), ("qwen2.attention.head_count", U32, 1),
         ("qwen2.context_length", U64, 128), ("tokenizer.ggml.add_bos_token", BOOL, 0)],
        [("blk.0.attn_q.bias", [4], GGML_F32, bytes(16)), ("output.weight", [32, 1], GGML_Q8_0, q8_block)]))


# ---- pipelines -----------------------------------------------------------------
def pipeline_seeds(corpus):
    t = "pipeline_yaml"
    for name in ("quickstart.yaml", "mixed-precision.yaml", "w8a8-dynamic.yaml"):
        with open(os.path.join(REPO, "examples", name), "rb") as f:
            # Relative paths resolve in the target's scratch folder, which
            # holds a `model` folder and a `calib.txt`.
            text = f.read().decode()
            text = re.sub(r"path: *\.\./\.\./shared/models/[^ ,}\n]*", "path: model", text)
            write(corpus, t, name, text)
    write(corpus, t, "params.yaml", """model: {path: model, loader: gguf}
quantize:
  - algorithm: rtn
    targets: ["re:model\\\\.layers\\\\.[0-9]+\\\\.mlp\\\\..*"]
    ignore: [model.layers.0.mlp.down_proj]
    weights: {bits: 8, strategy: channel, scale_dtype: float16}
    activations: {bits: 8, dynamic: false, strategy: tensor}
ignore: [lm_head]
calibration: {text: calib.txt, samples: 4, seq_len: 16, seed: 3}
output: {format: compressed-tensors, path: out, params: {max_shard_bytes: 1000000, allow_ragged_groups: true}}
""")


# ---- compressed-tensors quantization_config -------------------------------------
def ct_seeds(corpus):
    t = "ct_config"
    # fixture_0.20.0.json, the quantization_config compressed-tensors 0.20.0
    # wrote for tests/interop/make_ct_fixture.py's checkpoint, stays as it
    # was committed (making it again needs that library's venv).
    w4 = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128,
          "dynamic": False, "actorder": "static"}
    write(corpus, t, "w4a16_regex.json", json.dumps({
        "quant_method": "compressed-tensors", "format": "pack-quantized", "version": "0.17.1",
        "config_groups": {"g": {"targets": ["re:.*mlp\\..*", "Linear"], "weights": w4}},
        "ignore": ["lm_head", "re:.*layers\\.11\\..*"]}))
    write(corpus, t, "w8a8.json", json.dumps({
        "format": "int-quantized", "config_groups": {"group_0": {
            "targets": ["Linear"], "weights": {"num_bits": 8, "strategy": "channel", "group_size": -1},
            "input_activations": {"num_bits": 8, "dynamic": "local", "strategy": "token"}}},
        "transform_config": {"x": 1}}))


# ---- tokenizer.json ----------------------------------------------------------------
def tokenizer_seeds(corpus):
    t = "tokenizer_json"
    vocab = {c: i for i, c in enumerate(["H", "e", "l", "o", "\u0120", "w", "r", "d", "1", "2", "3", ","])}
    vocab.update({"He": 12, "ll": 13, "Hell": 14, "Hello": 15, "\u0120w": 16})
    base = {
        "version": "1.0",
        "added_tokens": [{"id": 17, "content": "<|endoftext|>", "special": True},
                         {"id": 18, "content": "<tool>", "special": False}],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated"},
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["H e", "l l", ["He", "ll"], "Hell o", "\u0120 w"]},
    }
    write(corpus, t, "bytelevel_bpe.json", json.dumps(base, ensure_ascii=False))
    literal = dict(base, pre_tokenizer={"type": "Split", "pattern": {"String": "."}})
    write(corpus, t, "split_literal.json", json.dumps(literal))
    fallback = dict(base, decoder={"type": "Sequence"}, pre_tokenizer=None)
    fallback["model"] = dict(base["model"], byte_fallback=True, ignore_merges=True)
    write(corpus, t, "byte_fallback.json", json.dumps(fallback))


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    safetensors_seeds(corpus)
    gguf_seeds(corpus)
    pipeline_seeds(corpus)
    ct_seeds(corpus)
    tokenizer_seeds(corpus)


if __name__ == "__main__":
    main()
