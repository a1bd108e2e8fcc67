#!/usr/bin/env python3
"""inflate-layers.py SRC_DIR OUT_DIR LAYERS: a checkpoint with LAYERS decoder
layers made from one with fewer, by repeating its layers (layer i of the
output is layer i % L of the source), in the source's own format.

Why: the KV-capacity case of issue 9 needs quantized checkpoints of a large
config (Qwen3-32B: 64 layers, 65.5 GB in BF16) on a GPU machine whose disk
cannot hold the BF16 original. Quantizing a 2-layer random-weight model with
`xquant quantize` (so the files are exactly what our writer produces, in
compressed-tensors or xq form) and repeating its layers gives the full-size
quantized file: weights are random either way, and the capacity only
depends on the bytes (scripts/gpu-kv-capacity.sh).

Standard library only. Reads SRC_DIR/model.safetensors (one file, as
`xquant quantize` writes it), copies every non-layer tensor once and each
layer tensor once per output layer (the bytes streamed, never all in
memory), writes OUT_DIR/model.safetensors and OUT_DIR/config.json with
num_hidden_layers = LAYERS and the quantization config's per-module names
(config_groups' targets, ignore) repeated the same way; other files (tokenizer, generation config) are
copied as they are. Nothing is written unless the source reads cleanly, and
a failure removes what was written.
"""
import json
import os
import re
import shutil
import struct
import sys

LAYER = re.compile(r"^(model\.layers\.)(\d+)(\..+)$")


def read_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 << 20:
            raise ValueError(f"{path}: header of {n} bytes (not a safetensors file?)")
        header = json.loads(f.read(n))
    return header, 8 + n


def plan(header, src_layers, layers):
    """[(out_name, entry, src_offset)] in output order: non-layer tensors
    first, then each output layer's tensors from its source layer."""
    meta = header.pop("__metadata__", None)
    per_layer = {}
    other = []
    for name, e in header.items():
        m = LAYER.match(name)
        if m:
            per_layer.setdefault(int(m.group(2)), []).append((m.group(3), e))
        else:
            other.append((name, e))
    found = sorted(per_layer)
    if found != list(range(src_layers)):
        raise ValueError(f"the source's config says {src_layers} layers, its tensors have layers {found[:8]}...")
    out = [(name, e) for name, e in other]
    for i in range(layers):
        src = i % src_layers
        out += [(f"model.layers.{i}{suffix}", e) for suffix, e in per_layer[src]]
    return out, meta


def inflate_names(value, src_layers, layers):
    """Lists of module names in the quantization config (config_groups'
    targets, ignore) name layers one by one: each name of source layer s
    becomes the names of every output layer i with i % src_layers == s."""
    if isinstance(value, dict):
        return {k: inflate_names(v, src_layers, layers) for k, v in value.items()}
    if isinstance(value, list):
        out = []
        for v in value:
            m = LAYER.match(v) if isinstance(v, str) else None
            if not m:
                out.append(inflate_names(v, src_layers, layers))
                continue
            src = int(m.group(2))
            out += [f"{m.group(1)}{i}{m.group(3)}" for i in range(src, layers, src_layers)]
        return out
    return value


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[0] + "\nusage: inflate-layers.py SRC_DIR OUT_DIR LAYERS")
    src, out, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg_path, st_path = os.path.join(src, "config.json"), os.path.join(src, "model.safetensors")
    for p in (cfg_path, st_path):
        if not os.path.isfile(p):
            sys.exit(f"inflate-layers: {p}: missing (the source must be one model.safetensors with its config.json)")
    if os.path.exists(out):
        sys.exit(f"inflate-layers: {out}: exists; give a new directory")
    cfg = json.load(open(cfg_path))
    src_layers = int(cfg.get("num_hidden_layers", 0))
    if src_layers < 1 or layers < src_layers:
        sys.exit(f"inflate-layers: the source has {src_layers} layers; LAYERS must be at least that (got {layers})")
    try:
        header, data_start = read_header(st_path)
        entries, meta = plan(header, src_layers, layers)
    except (ValueError, json.JSONDecodeError) as ex:
        sys.exit(f"inflate-layers: {st_path}: {ex}")

    new_header, at = {}, 0
    for name, e in entries:
        begin, end = e["data_offsets"]
        new_header[name] = {"dtype": e["dtype"], "shape": e["shape"], "data_offsets": [at, at + end - begin]}
        at += end - begin
    if meta is not None:
        new_header["__metadata__"] = meta
    blob = json.dumps(new_header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned

    os.makedirs(out)
    try:
        with open(st_path, "rb") as fin, open(os.path.join(out, "model.safetensors"), "wb") as fout:
            fout.write(struct.pack("<Q", len(blob)) + blob)
            for name, e in entries:
                begin, end = e["data_offsets"]
                fin.seek(data_start + begin)
                left = end - begin
                while left:
                    chunk = fin.read(min(left, 64 << 20))
                    if not chunk:
                        raise IOError(f"{st_path}: ends inside {name}")
                    fout.write(chunk)
                    left -= len(chunk)
        cfg["num_hidden_layers"] = layers
        if "quantization_config" in cfg:
            cfg["quantization_config"] = inflate_names(cfg["quantization_config"], src_layers, layers)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        for fname in os.listdir(src):
            p = os.path.join(src, fname)
            if fname not in ("config.json", "model.safetensors") and os.path.isfile(p):
                shutil.copy(p, os.path.join(out, fname))
    except BaseException as ex:
        shutil.rmtree(out, ignore_errors=True)
        sys.exit(f"inflate-layers: writing {out} failed: {ex}")
    print(f"inflate-layers: {out}: {layers} layers from {src_layers}, {at / 1e9:.2f} GB of tensors")


if __name__ == "__main__":
    main()
