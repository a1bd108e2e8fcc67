"""moe_gguf_interop.py: the Mixture-of-Experts GGUF files our writer makes,
read by the real consumers.

Tiny random-weight checkpoints of qwen3_moe, qwen2_moe (shared expert) and
Mixtral (2 layers, 4 experts, top-2, hidden 64, stories260K's 512-token
vocabulary; HF per-expert tensor names, F32 safetensors written here with
numpy) go through `xquant convert --format gguf` as F32, and through
`xquant quantize` (RTN int8 sym g32, f16 scales) then `convert` as Q8_0:

1. gguf-py (GGUFReader, gguf.quants.dequantize) reads every file: the
   architecture (qwen3moe / qwen2moe / llama), expert_count,
   expert_used_count, expert_feed_forward_length (Qwen), the stacked
   ffn_{gate,up,down}_exps types and shapes [experts, rows, cols]; the F32
   stacks equal np.stack of the source's per-expert arrays in expert order,
   the routers are F32 and equal the source; the Q8_0 stacks, dequantized by
   gguf-py, equal the F32 file converted from the same int8 checkpoint
   (the conversion is exact).
2. llama.cpp (llama_moe_logits.cpp against the library scripts/fetch-llama-cpp.sh
   builds; F32 KV cache, no flash attention) loads each file and computes
   logits for 16 token ids. F32 files: our engine (xquant_moe_dump) on the
   same file gives max |diff| <= BOUND_F32 * max(1, max |logit|) and the same
   argmax at every position. Q8_0 files: llama.cpp rounds every activation
   to Q8_0 blocks (ggml-cpu's vec_dot_type for Q8_0), our engine only on
   few-row products, so the bound is llama.cpp's own rounding: its logits on
   the Q8_0 file against its logits on the F32 file of the same weights,
   times Q8_SLACK, plus the F32 bound. Both: llama.cpp's 8-token greedy
   continuation is our argmax at every step (ours run on prompt +
   continuation).
3. llama-quantize reads the importance matrix our writer saves for a MoE
   model (qwen3_moe through GPTQ into GGUF with `imatrix_out`: one entry per
   stacked tensor, a token count per expert): `llama-quantize --imatrix` on
   our F32 file loads every entry (6 stacked + 8 attention), and llama.cpp
   runs the Q4_0 file it makes.
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

BOUND_F32 = 1e-4   # float32 both sides (llama_moe_logits: F32 KV cache, no flash attention)
Q8_SLACK = 1.5     # times llama.cpp's own Q8_0-vs-F32 difference on the same weights
VOCAB = 512


def config(arch):
    c = dict(model_type=arch, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-6,
             rope_theta=10000.0, tie_word_embeddings=False, num_experts_per_tok=2)
    if arch == "mixtral":
        c.update(num_local_experts=4, intermediate_size=32)
    else:
        # llama.cpp's graphs fix top-k renormalisation per architecture: qwen3moe yes, qwen2moe no.
        c.update(num_experts=4, moe_intermediate_size=32, norm_topk_prob=arch == "qwen3_moe")
    if arch == "qwen2_moe":
        c.update(shared_expert_intermediate_size=32)
    return c


def experts_prefix(arch, layer):
    return f"model.layers.{layer}." + ("block_sparse_moe." if arch == "mixtral" else "mlp.")


def proj_names(arch):  # gate, up, down
    return ("w1", "w3", "w2") if arch == "mixtral" else ("gate_proj", "up_proj", "down_proj")


def weights(arch, c, rng):
    H, hd, E = c["hidden_size"], c["head_dim"], 4
    I = c["intermediate_size"] if arch == "mixtral" else c["moe_intermediate_size"]
    t = {}

    def add(name, shape, norm=False, spread=0.3):
        t[name] = (rng.uniform(0.7, 1.3, shape) if norm else rng.uniform(-spread, spread, shape)).astype(np.float32)
    add("model.embed_tokens.weight", (VOCAB, H))
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        add(p + "input_layernorm.weight", (H,), True)
        add(p + "post_attention_layernorm.weight", (H,), True)
        add(p + "self_attn.q_proj.weight", (4 * hd, H))
        add(p + "self_attn.k_proj.weight", (2 * hd, H))
        add(p + "self_attn.v_proj.weight", (2 * hd, H))
        add(p + "self_attn.o_proj.weight", (H, 4 * hd))
        if arch == "qwen2_moe":
            for x, n in (("q", 4), ("k", 2), ("v", 2)):
                add(p + f"self_attn.{x}_proj.bias", (n * hd,))
        if arch == "qwen3_moe":
            add(p + "self_attn.q_norm.weight", (hd,), True)
            add(p + "self_attn.k_norm.weight", (hd,), True)
        b = experts_prefix(arch, l)
        # Wide router weights: clear top-k margins, so int8 activation rounding
        # (Q8_0 files, both engines) does not flip which experts a token takes.
        add(b + "gate.weight", (E, H), spread=1.5)
        g, u, d = proj_names(arch)
        for e in range(E):
            add(f"{b}experts.{e}.{g}.weight", (I, H))
            add(f"{b}experts.{e}.{u}.weight", (I, H))
            add(f"{b}experts.{e}.{d}.weight", (H, I))
        if arch == "qwen2_moe":
            S = c["shared_expert_intermediate_size"]
            add(b + "shared_expert.gate_proj.weight", (S, H))
            add(b + "shared_expert.up_proj.weight", (S, H))
            add(b + "shared_expert.down_proj.weight", (H, S))
            add(b + "shared_expert_gate.weight", (1, H))
    add("model.norm.weight", (H,), True)
    add("lm_head.weight", (VOCAB, H))
    return t


def save_checkpoint(folder, c, t):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    header, off = {}, 0
    for name, a in t.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for a in t.values():
            f.write(a.tobytes())


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


class Checks:
    def __init__(self):
        self.failures = []

    def expect(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok


def gguf_arch(arch):
    return {"qwen3_moe": "qwen3moe", "qwen2_moe": "qwen2moe", "mixtral": "llama"}[arch]


def read_gguf(path):
    import gguf
    r = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in r.fields.items()}
    tensors = {t.name: t for t in r.tensors}
    return fields, tensors


def dequantized(t):
    import gguf
    a = gguf.quants.dequantize(t.data, t.tensor_type)
    return a.reshape(tuple(int(n) for n in reversed(t.shape)))


def check_gguf_py(arch, c, src, f32_path, q8_path, q8_ref_path, checks):
    """gguf-py's view of the F32 and Q8_0 files (docstring point 1)."""
    import gguf
    A = gguf_arch(arch)
    E, L = 4, c["num_hidden_layers"]
    for path in (f32_path, q8_path):
        fields, _ = read_gguf(path)
        checks.expect(fields.get("general.architecture") == A, f"{path}: general.architecture "
                      f"{fields.get('general.architecture')} != {A}")
        checks.expect(fields.get(f"{A}.expert_count") == E, f"{path}: {A}.expert_count")
        checks.expect(fields.get(f"{A}.expert_used_count") == 2, f"{path}: {A}.expert_used_count")
        if A != "llama":
            checks.expect(fields.get(f"{A}.expert_feed_forward_length") == c["moe_intermediate_size"],
                          f"{path}: {A}.expert_feed_forward_length")
    _, f32 = read_gguf(f32_path)
    _, q8 = read_gguf(q8_path)
    _, q8_ref = read_gguf(q8_ref_path)
    g, u, d = proj_names(arch)
    n_equal = 0
    for l in range(L):
        b = experts_prefix(arch, l)
        for hf, name in ((g, "ffn_gate_exps"), (u, "ffn_up_exps"), (d, "ffn_down_exps")):
            key = f"blk.{l}.{name}.weight"
            want = np.stack([src[f"{b}experts.{e}.{hf}.weight"] for e in range(E)])
            t = f32[key]
            checks.expect(t.tensor_type == gguf.GGMLQuantizationType.F32, f"{key}: F32 file type {t.tensor_type}")
            got = dequantized(t)
            ok = checks.expect(got.shape == want.shape and np.array_equal(got, want),
                               f"{arch} {key}: F32 stack {got.shape} != np.stack of the source experts {want.shape}")
            tq = q8[key]
            checks.expect(tq.tensor_type == gguf.GGMLQuantizationType.Q8_0, f"{key}: Q8_0 file type {tq.tensor_type}")
            got_q = dequantized(tq)
            ref = dequantized(q8_ref[key])
            ok = checks.expect(got_q.shape == ref.shape and np.array_equal(got_q, ref),
                               f"{arch} {key}: Q8_0 stack (gguf-py dequantized) != the int8 checkpoint's "
                               f"canonical dequantization") and ok
            n_equal += ok
        router = f"blk.{l}.ffn_gate_inp.weight"
        checks.expect(f32[router].tensor_type == gguf.GGMLQuantizationType.F32
                      and q8[router].tensor_type == gguf.GGMLQuantizationType.F32, f"{router}: not F32")
        checks.expect(np.array_equal(dequantized(f32[router]), src[b + "gate.weight"]), f"{router}: values")
        if arch == "qwen2_moe":
            sg = f32[f"blk.{l}.ffn_gate_inp_shexp.weight"]
            checks.expect(len(sg.shape) == 1 and np.array_equal(dequantized(sg).reshape(-1),
                                                                src[b + "shared_expert_gate.weight"].reshape(-1)),
                          f"{arch}: ffn_gate_inp_shexp is not the 1-D shared expert gate")
            checks.expect(np.array_equal(dequantized(f32[f"blk.{l}.ffn_down_shexp.weight"]),
                                         src[b + "shared_expert.down_proj.weight"]), f"{arch}: ffn_down_shexp")
    print(f"  {arch}: gguf-py: {n_equal}/{3 * L} stacked expert tensors equal (F32 and Q8_0), routers F32")


def llama_logits(args, path, ids, n_predict):
    j = json.loads(run([args.llama_logits, path, ",".join(map(str, ids)), str(n_predict)]))
    return np.array(j["logits"], dtype=np.float64), j["tokens"]


def check_llama_cpp(arch, path, args, ids, checks, label, same_weights_f32=None):
    """llama.cpp and our engine on the same file (docstring point 2)."""
    tl, cont = llama_logits(args, path, ids, 8)
    ol = np.array(json.loads(run([args.dump, path, ",".join(map(str, ids))]))["logits"], dtype=np.float64)
    scale = max(1.0, float(np.abs(tl).max()))
    bound, why = BOUND_F32 * scale, "float32"
    if same_weights_f32:
        own = float(np.abs(tl - llama_logits(args, same_weights_f32, ids, 0)[0]).max())
        bound, why = Q8_SLACK * own + BOUND_F32 * scale, f"{Q8_SLACK} x llama.cpp's own Q8_0 rounding {own:.3g}"
    err = float(np.abs(tl - ol).max()) if tl.shape == ol.shape else float("inf")
    argmax_equal = int((tl.argmax(1) == ol.argmax(1)).sum()) if tl.shape == ol.shape else 0
    ours_cont = json.loads(run([args.dump, path, ",".join(map(str, ids + cont))]))
    ca = [int(i) for i in np.array(ours_cont["logits"]).argmax(1)[len(ids) - 1:len(ids) - 1 + len(cont)]]
    print(f"  {arch} {label}: llama.cpp vs ours: max |logit diff| {err:.3g} (bound {bound:.3g}: {why}), "
          f"argmax equal at {argmax_equal}/{len(ids)} positions, llama.cpp's greedy {cont} "
          f"{'= ours' if ca == cont else '!= ours ' + str(ca)}")
    checks.expect(err <= bound, f"{arch} {label}: logits differ by {err:.3g} > {bound:.3g}")
    if not same_weights_f32:
        checks.expect(argmax_equal == len(ids), f"{arch} {label}: argmax differs")
    checks.expect(ca == cont, f"{arch} {label}: greedy continuation differs")


def check_llama_quantize_imatrix(args, folder, f32, checks):
    """llama-quantize --imatrix with our MoE imatrix file (docstring point 3)."""
    imatrix, gguf_out = folder + "-gptq.imatrix.gguf", folder + "-gptq.gguf"
    yaml = folder + "-gptq.yaml"
    with open(yaml, "w") as f:
        f.write(f"model: {{path: {folder}}}\n"
                "quantize:\n  - targets: [Linear]\n    algorithm: gptq\n"
                "    weights: {bits: 4, symmetric: true, group_size: 32, scale_dtype: float16}\n"
                'ignore: [lm_head, "re:.*mlp\\\\.gate$"]\n'
                f"calibration: {{text: {args.text}, samples: 4, seq_len: 32, tokenizer: {args.tokenizer}}}\n"
                f"output: {{format: gguf, path: {gguf_out}, params: {{imatrix_out: {imatrix}, "
                f"tokenizer: {args.tokenizer}}}}}\n")
    run([args.xquant, "run", yaml])
    out = folder + "-llama-q4_0.gguf"
    r = subprocess.run([args.llama_quantize, "--imatrix", imatrix, f32, out, "Q4_0"], capture_output=True, text=True)
    log = r.stdout + r.stderr
    entries = [l for l in log.splitlines() if "have" in l and "importance matrix entries" in l]
    print(f"  qwen3_moe: llama-quantize --imatrix (ours, per expert): exit {r.returncode}, "
          f"{entries[0].split(':', 1)[-1].strip() if entries else 'no entries line'}")
    if not checks.expect(r.returncode == 0, f"llama-quantize --imatrix failed: {log[-1500:]}"):
        return
    checks.expect(bool(entries) and " 14 " in entries[0], f"llama-quantize loaded {entries} (14 entries expected)")
    tl, _ = llama_logits(args, out, [1, 2, 3, 4], 0)
    checks.expect(bool(np.isfinite(tl).all()), "llama.cpp on llama-quantize's Q4_0 file: non-finite logits")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--dump", required=True, help="xquant_moe_dump")
    ap.add_argument("--llama-logits", help="llama_moe_logits (absent: llama.cpp not checked)")
    ap.add_argument("--llama-quantize", help="llama-quantize (absent: point 3 not checked)")
    ap.add_argument("--tokenizer", required=True, help="stories260K.gguf (512 tokens)")
    ap.add_argument("--text", required=True, help="calibration text (point 3)")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.integers(0, VOCAB, 16)]
    checks = Checks()
    for arch in ("qwen3_moe", "qwen2_moe", "mixtral"):
        c = config(arch)
        src = weights(arch, c, rng)
        folder = os.path.join(args.work, arch)
        save_checkpoint(folder, c, src)
        f32, ct = folder + "-f32.gguf", folder + "-int8"
        q8, q8_ref = folder + "-q8_0.gguf", folder + "-int8-f32.gguf"
        tok = "tokenizer=" + args.tokenizer
        run([args.xquant, "convert", "--model", folder, "--out", f32, "--format", "gguf", "--param", "type=F32," + tok])
        run([args.xquant, "quantize", "--model", folder, "--out", ct, "--algorithm", "rtn", "--bits", "8",
             "--group-size", "32", "--sym", "--scale-dtype", "float16"])
        run([args.xquant, "convert", "--model", ct, "--out", q8, "--format", "gguf", "--param",
             "type=Q8_0,exact=true," + tok])
        run([args.xquant, "convert", "--model", ct, "--out", q8_ref, "--format", "gguf", "--param", "type=F32," + tok])
        check_gguf_py(arch, c, src, f32, q8, q8_ref, checks)
        if args.llama_logits:
            check_llama_cpp(arch, f32, args, ids, checks, "F32")
            check_llama_cpp(arch, q8, args, ids, checks, "Q8_0", same_weights_f32=q8_ref)
        if arch == "qwen3_moe" and args.llama_quantize and args.llama_logits:
            check_llama_quantize_imatrix(args, folder, f32, checks)
    if checks.failures:
        print("moe_gguf_interop: FAILED\n  " + "\n  ".join(checks.failures))
        return 1
    print("moe_gguf_interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
