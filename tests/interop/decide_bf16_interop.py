"""decide_bf16_interop.py: an `xquant quantize --algorithm auto` checkpoint
with groups on the fallback ladder's bf16 rung, read by transformers and
compressed-tensors.

stories260K (F32) at W4 g4 (4 divides every input width, 172 included, so
the int4 groups share one config group: transformers' dequantize=True path
reads only single-scheme checkpoints; decide_mixed_interop.py covers g32 and
its per-channel fallback through transformers' default path), rtn the
only candidate, a KLD target out of reach within --max-bytes 400000 (int4
everywhere takes about 340 kB with its scales, BF16 everywhere 453 kB): some
groups are written dense in BF16, the rest as int4 config groups. Checks:
  1. the dense groups' weights are stored as BF16 (safetensors header);
  2. transformers (CompressedTensorsConfig(dequantize=True), float32) loads
     the checkpoint, and its weights of the dense modules are exactly the
     stored BF16 values;
  3. transformers' logits equal our engine's (xquant_engine_logits, cpu) on
     the same checkpoint for a few prompts and greedy steps: max |diff| /
     max |logit| <= 1e-4 (float32 forwards over the same weights; the
     quantized ones are dequantized bit-exactly by both, tests/interop/ct_interop.py).
Exit 0 when all hold.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np

PROMPTS = [[1, 400, 20, 300, 7, 99], [1, 13, 250, 33], [1, 77, 5, 461, 2, 9, 310, 120]]
STEPS = 4


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--engine-logits", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    out = os.path.join(a.work, "auto")
    s = a.shared
    cmd = [a.xquant, "--quiet", "quantize", "--model", f"{s}/models/stories260K-hf", "--out", out,
           "--algorithm", "auto", "--candidates", "rtn", "--group-size", "4",
           "--calibration", f"{s}/data/tinystories/tinystories_val.subset.txt",
           "--tokenizer", f"{s}/models/stories260K/stories260K.gguf", "--samples", "4", "--seq-len", "64",
           "--accuracy-text", f"{s}/data/wikitext-2-raw/wiki.test.raw", "--max-tokens", "512",
           "--max-increase", "0.000001", "--fallback", "bf16", "--max-bytes", "400000",
           "--report", os.path.join(a.work, "report.html")]
    subprocess.run(cmd, check=True)
    report = json.load(open(os.path.join(a.work, "report.json")))
    dense = [m for g in report["groups"] if g["rung"] == "dense" for m in g["modules"]]
    failures = []
    if not dense:
        failures.append("no group fell back to bf16")

    # 1. Stored as BF16.
    h = header(os.path.join(out, "model.safetensors"))
    for m in dense:
        if h.get(m + ".weight", {}).get("dtype") != "BF16":
            failures.append(f"{m}.weight stored as {h.get(m + '.weight', {}).get('dtype')}, not BF16")

    # 2. transformers loads it; dense weights are the stored BF16 values.
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig
    stored = load_file(os.path.join(out, "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                 quantization_config=CompressedTensorsConfig(dequantize=True))
    sd = model.state_dict()
    for m in dense:
        if not torch.equal(sd[m + ".weight"], stored[m + ".weight"].float()):
            failures.append(f"{m}: transformers' weight differs from the stored BF16 values")

    # 3. transformers' logits vs our engine's, same checkpoint.
    prompts = os.path.join(a.work, "prompts.txt")
    with open(prompts, "w") as f:
        for p in PROMPTS:
            f.write(",".join(map(str, p)) + "\n")
    prefix = os.path.join(a.work, "engine")
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
                d = float(np.max(np.abs(theirs[pos] - ours[i, step])) / np.max(np.abs(theirs[pos])))
                worst = max(worst, d)
    if worst > 1e-4:
        failures.append(f"transformers vs engine logits: max |diff| / max |logit| {worst:.3g} > 1e-4")
    print(json.dumps({"dense_modules": len(dense), "quantized_modules": sum(1 for k in h if k.endswith(".weight_packed")),
                      "engine_vs_transformers_rel_max_logit_diff": worst, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
