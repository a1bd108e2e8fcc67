#!/usr/bin/env python3
"""gpu-hf-compare.py: the GPU engine against Hugging Face transformers, on the GPU machine.

Needs torch and transformers (the GPU image has both; nothing is downloaded:
every checkpoint is built here with random weights from a real config).

Parts (--parts, comma-separated; default all):

  logits    Random-weight checkpoints of real configs with fewer layers,
            BF16 safetensors written here: Llama-3.1-8B (llama3 RoPE
            scaling), Qwen2-7B (q/k/v bias), Qwen3-8B (q/k RMSNorm),
            Mistral-7B-v0.1 (real hidden sizes and vocabularies, --layers
            layers). Four prompts (5, 17, 33, 64 tokens) run together through
            the paged engine (tests/interop/engine_logits.cpp: one prefill
            step, then STEPS decode steps replayed from CUDA graphs), with
            dense weights on the device as F32 and as BF16
            (XQUANT_DEVICE_WEIGHTS=bf16), F32 KV pools (--kv-dtype bf16:
            BF16 pools, which the cuda provider's FlashInfer and tensor-core
            attention paths need). transformers runs the same weights
            in float32 (the BF16 values, exactly) teacher-forced on the
            engine's tokens, and in bfloat16 for the noise BF16 arithmetic
            alone makes.
            Bound: the engine's logits relative RMS error against float32
            transformers is at most max(2 x that of bfloat16 transformers,
            1e-3). Greedy: the engine's tokens equal transformers' own
            float32 greedy `generate` for all STEPS+1 (17) tokens, except
            that the comparison stops at a near-tie: a step where
            transformers' top-2 logit gap is under twice the engine's
            largest logit error at that step (then either token is a
            faithful greedy pick); such stops are counted and printed.
  generate  transformers `generate` (bfloat16, static cache, greedy, not
            compiled; with --hf-compile also compiled: its torch.compile'd
            decode step) at batch 1 and 8, 128 prompt tokens, 256 new, on the
            Llama-3.1-8B config with 8 layers, next to `xquant bench` on the
            same checkpoint at the same shapes, with decode graphs off
            (XQUANT_DECODE_GRAPHS=0) and on: output tokens/s, TPOT, host
            launch share per step, beside the HBM floor at batch 1.
  prefill   bf16 GEMM rate of torch.matmul (cuBLAS) on [8192, 4096] x
            [4096, 14336] next to the engine's prefill of one 8192-token
            prompt (`xquant bench --lengths 8192:1`), as TFLOP/s and ratio.

Writes OUT/hf-compare.json and prints a summary. Exit status 1 when a
logits or greedy check fails.

  python3 scripts/gpu-hf-compare.py --cli BUILD/bin/xquant \
      --engine-logits BUILD/bin/xquant_engine_logits --out $OUT [--parts logits,generate,prefill]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

STEPS = 16
PROMPT_LENS = (5, 17, 33, 64)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from random_checkpoint import CONFIGS, write_checkpoint  # noqa: E402  (the scripts' shared configs and generator)

# The real configs the logits part checks (scripts/random_checkpoint.py), with
# num_hidden_layers set by --layers.
LOGITS_CONFIGS = ("llama-3.1-8b", "qwen2-7b", "qwen3-8b", "mistral-7b")


def log(*a):
    print(*a, flush=True)


def build_checkpoint(name, cfg, layers, out_dir, device):
    """transformers' model of `cfg` with seeded random weights rounded to BF16; writes config.json
    (the published layout) and model.safetensors (BF16). Returns the float32 model on `device`."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = dict(cfg, num_hidden_layers=layers, torch_dtype="bfloat16")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    hf_cfg = AutoConfig.from_pretrained(out_dir)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa").float()
    g = torch.Generator(device=device).manual_seed(1234)
    tensors = {}
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):  # RMSNorm gains (q/k norms too): around 1, not all 1
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g, device=device)
            elif pname.endswith(".bias"):
                v = 0.1 * torch.randn(p.shape, generator=g, device=device)
            else:
                v = 0.02 * torch.randn(p.shape, generator=g, device=device)
            p.copy_(v.to(torch.bfloat16).float())
            tensors[pname] = p.detach().to(torch.bfloat16).cpu().contiguous()
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    log(f"{name}: {layers} layers, {sum(t.numel() for t in tensors.values()) / 1e9:.2f} G params written")
    return model


def engine_run(tool, provider, model_dir, prompts_file, out_prefix, device_weights, kv_dtype):
    env = dict(os.environ, XQUANT_DEVICE_WEIGHTS=device_weights, XQUANT_ENGINE_LOGITS_KV=kv_dtype)
    t = time.time()
    r = subprocess.run([tool, model_dir, provider, prompts_file, str(STEPS), out_prefix], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"xquant_engine_logits failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    meta = json.load(open(out_prefix + ".json"))
    V = meta["vocab"]
    import numpy as np
    logits = np.fromfile(out_prefix + ".f32", dtype=np.float32).reshape(len(PROMPT_LENS), STEPS + 1, V)
    return meta, torch.from_numpy(logits), time.time() - t


def compare_logits(name, model32, model_dir, tool, provider, workdir, device, kv_dtype):
    import copy
    V = model32.config.vocab_size
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randint(3, V, (n,), generator=g).tolist() for n in PROMPT_LENS]
    pfile = os.path.join(workdir, f"{name}.prompts")
    with open(pfile, "w") as f:
        for p in prompts:
            f.write(",".join(map(str, p)) + "\n")
    model16 = copy.deepcopy(model32).to(torch.bfloat16)
    result = {"config": name, "layers": model32.config.num_hidden_layers, "steps": STEPS + 1, "variants": {}}
    ok = True
    for dw in (("f32", "bf16") if provider != "cpu" else ("f32",)):
        meta, ours, secs = engine_run(tool, provider, model_dir, pfile, os.path.join(workdir, f"{name}-{dw}"), dw,
                                      kv_dtype)
        num = den = num16 = 0.0
        max_abs = 0.0
        greedy_equal_steps, near_ties, mismatches = [], 0, 0
        for i, p in enumerate(prompts):
            toks = meta["tokens"][i]
            ids = torch.tensor([p + toks[:STEPS]], device=device)
            with torch.no_grad():
                ref = model32(ids).logits[0, len(p) - 1:].float().cpu()
                ref16 = model16(ids).logits[0, len(p) - 1:].float().cpu()
                gen = model32.generate(torch.tensor([p], device=device), max_new_tokens=STEPS + 1,
                                       min_new_tokens=STEPS + 1, do_sample=False)[0, len(p):].tolist()
            o = ours[i]
            d = o - ref
            num += float((d.double() ** 2).sum())
            den += float((ref.double() ** 2).sum())
            num16 += float(((ref16 - ref).double() ** 2).sum())
            max_abs = max(max_abs, float(d.abs().max()))
            equal = 0
            for s in range(STEPS + 1):
                if gen[s] == toks[s]:
                    equal += 1
                    continue
                top2 = torch.topk(ref[s], 2).values
                gap = float(top2[0] - top2[1])
                if gap < 2 * float(d[s].abs().max()):
                    near_ties += 1
                else:
                    mismatches += 1
                break
            greedy_equal_steps.append(equal)
        rel = (num / den) ** 0.5
        rel16 = (num16 / den) ** 0.5
        bound = max(2 * rel16, 1e-3)
        passed = rel <= bound and mismatches == 0
        ok &= passed
        result["variants"][dw] = {
            "rel_rms_vs_hf_f32": rel, "hf_bf16_rel_rms_vs_hf_f32": rel16, "bound": bound, "max_abs": max_abs,
            "greedy_equal_steps": greedy_equal_steps, "near_tie_stops": near_ties, "greedy_mismatches": mismatches,
            "decode_graphs": meta.get("decode_graphs"), "engine_seconds": secs, "pass": passed}
        log(f"{name} [{dw} device weights, {kv_dtype} KV]: logits rel RMS {rel:.2e} (bound {bound:.2e}; HF bf16 {rel16:.2e}), "
            f"max |d| {max_abs:.3e}; greedy equal steps {greedy_equal_steps} of {STEPS + 1}, near-tie stops "
            f"{near_ties}, mismatches {mismatches}; graphs {meta.get('decode_graphs')} -> {'PASS' if passed else 'FAIL'}")
    del model16
    return result, ok


def copy_bandwidth_gbs():
    n = 4 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    a.random_(0, 255)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    ts = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); b.copy_(a); e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    del a, b
    torch.cuda.empty_cache()
    return 2 * n / (ts[len(ts) // 2] / 1e3) / 1e9


def make_l31(layers, out_dir):
    """The Llama-3.1-8B-shaped BF16 checkpoint (random weights, scripts/random_checkpoint.py), once."""
    if not os.path.exists(os.path.join(out_dir, "model.safetensors")):
        write_checkpoint("llama-3.1-8b", out_dir, layers)


def xquant_bench(cli, model_dir, conc, lengths, graphs, json_path, extra=()):
    env = dict(os.environ, XQUANT_DECODE_GRAPHS="1" if graphs else "0")
    cmd = [cli, "bench", "--models", f"bf16={model_dir}", "--concurrency", conc, "--lengths", lengths,
           "--provider", "cuda", "--kv-dtype", "bf16", "--json", json_path, *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    log(r.stdout.rstrip())
    if r.returncode != 0:
        raise RuntimeError(f"xquant bench failed ({r.returncode}): {r.stderr.strip()[-1500:]}")
    return json.load(open(json_path))


_hf_models = {}


def hf_generate_speed(model_dir, batch, prompt_len=128, new=256, compiled=False, device="cuda"):
    """transformers `generate`, bfloat16, static cache, greedy, `new` tokens after `prompt_len`.
    compiled=False: eager (disable_compile), as sessions before thirty-two measured it. compiled=True:
    transformers' own compiled decode step (a static cache makes `generate` torch.compile the
    forward with its CompileConfig, mode reduce-overhead: CUDA graphs on a GPU), with the cache
    sized once for the longest call (max_cache_len) so every call reuses the one compiled graph;
    the warm-up call compiles."""
    from transformers import AutoModelForCausalLM
    key = (model_dir, device)
    if key not in _hf_models:
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device).eval()
        m.generation_config.eos_token_id = None
        m.generation_config.pad_token_id = 0
        _hf_models[key] = m
    m = _hf_models[key]
    ids = torch.randint(3, m.config.vocab_size, (batch, prompt_len), device=device)
    kw = dict(do_sample=False, cache_implementation="static", attention_mask=torch.ones_like(ids))
    if compiled:
        kw["max_cache_len"] = prompt_len + new

    def gen(n):
        if compiled:
            return m.generate(ids, max_new_tokens=n, min_new_tokens=n, disable_compile=False, **kw)
        try:
            return m.generate(ids, max_new_tokens=n, min_new_tokens=n, disable_compile=True, **kw)
        except TypeError:  # a transformers without disable_compile
            return m.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(n):
        sync()
        t = time.perf_counter()
        out = gen(n)
        sync()
        assert out.shape[1] == prompt_len + n
        return time.perf_counter() - t
    with torch.no_grad():
        warm = timed(4)  # warm-up: static cache allocation, kernels' first launches (and the compile)
        t1 = timed(1)
        tn = timed(new)
    return {"batch": batch, "input_len": prompt_len, "output_len": new, "compiled": compiled, "seconds": tn,
            "warm_up_seconds": warm, "output_tok_s": batch * new / tn, "tpot_ms": (tn - t1) / (new - 1) * 1e3,
            "ttft_ms": t1 * 1e3}


def part_generate(args, res):
    d = os.path.join(args.work, "l31-8layer")
    make_l31(8, d)
    gbs = copy_bandwidth_gbs()
    log(f"device-to-device copy: {gbs:.0f} GB/s (read + write, median of 20, 4 GiB)")
    res["copy_gbs"] = gbs
    ours = {}
    for graphs in (False, True):
        rows = xquant_bench(args.cli, d, "1,8", "128:256", graphs,
                            os.path.join(args.work, f"bench-graphs{int(graphs)}.json"), ("--copy-gbs", f"{gbs:.0f}"))
        ours["graphs" if graphs else "eager"] = rows
    hf = [hf_generate_speed(d, b) for b in (1, 8)]
    res["generate"] = {"hf_generate_bf16_static": hf, "xquant_bench": ours}
    if args.hf_compile:
        hfc = [hf_generate_speed(d, b, compiled=True) for b in (1, 8)]
        res["generate"]["hf_generate_bf16_static_compiled"] = hfc
        log("\n| batch | HF generate compiled out tok/s | TPOT ms | compile + warm-up s | xquant graphs tok/s "
            "| graphs / HF compiled |")
        log("|---|---|---|---|---|---|")
        for h in hfc:
            g = next(r for r in ours["graphs"] if r["concurrency"] == h["batch"])
            log(f"| {h['batch']} | {h['output_tok_s']:.1f} | {h['tpot_ms']:.2f} | {h['warm_up_seconds']:.0f} | "
                f"{g['output_tok_s']:.1f} | {g['output_tok_s'] / h['output_tok_s']:.2f} |")
    log("\n| batch | HF generate out tok/s | HF TPOT ms | xquant eager tok/s | launch share | xquant graphs tok/s "
        "| launch share | graphs / eager | graphs / HF |")
    log("|---|---|---|---|---|---|---|---|---|")
    for h in hf:
        e = next(r for r in ours["eager"] if r["concurrency"] == h["batch"])
        g = next(r for r in ours["graphs"] if r["concurrency"] == h["batch"])
        log(f"| {h['batch']} | {h['output_tok_s']:.1f} | {h['tpot_ms']:.2f} | {e['output_tok_s']:.1f} | "
            f"{e['launch_share'] * 100:.0f}% | {g['output_tok_s']:.1f} | {g['launch_share'] * 100:.0f}% | "
            f"{g['output_tok_s'] / e['output_tok_s']:.2f} | {g['output_tok_s'] / h['output_tok_s']:.2f} |")
    for mode in ("eager", "graphs"):
        r1 = next(r for r in ours[mode] if r["concurrency"] == 1)
        if r1.get("hbm_floor_batch1_tok_s"):
            log(f"batch 1 {mode}: TPOT p50 {r1['tpot_ms']['p50']:.2f} ms = "
                f"{1e3 / r1['tpot_ms']['p50'] / r1['hbm_floor_batch1_tok_s'] * 100:.1f}% of the HBM floor "
                f"({r1['hbm_floor_batch1_tok_s']:.0f} tok/s), {r1['ops_per_step']:.0f} launches per step")


def part_prefill(args, res):
    d = os.path.join(args.work, "l31-8layer")
    make_l31(8, d)
    M, K, N = 8192, 4096, 14336
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(K, N, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); a @ b; e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    cublas = 2 * M * K * N / (ts[len(ts) // 2] / 1e3) / 1e12
    del a, b
    torch.cuda.empty_cache()
    rows = xquant_bench(args.cli, d, "1", "8192:1", True, os.path.join(args.work, "bench-prefill.json"),
                        ("--max-step-tokens", "8192"))
    ttft = rows[0]["ttft_ms"]["p50"] / 1e3
    L, H, I, NH, KVH, HD, S = 8, 4096, 14336, 32, 8, 128, 8192
    linear = 2 * S * L * (H * (NH + 2 * KVH) * HD + NH * HD * H + 3 * H * I)
    attention = 2 * 2 * (S * S / 2) * NH * HD * L  # q.k and p.v over the causal half
    res["prefill"] = {"cublas_bf16_tflops": cublas, "ttft_s": ttft, "linear_tflops": linear / ttft / 1e12,
                      "all_tflops": (linear + attention) / ttft / 1e12}
    log(f"prefill 8192 tokens: TTFT {ttft * 1e3:.0f} ms; linear layers {linear / ttft / 1e12:.0f} TFLOP/s, "
        f"with attention {(linear + attention) / ttft / 1e12:.0f} TFLOP/s; cuBLAS bf16 GEMM {M}x{K}x{N} "
        f"{cublas:.0f} TFLOP/s; ratio (linear) {linear / ttft / 1e12 / cublas:.2f}, "
        f"(all) {(linear + attention) / ttft / 1e12 / cublas:.2f}")


def part_logits(args, res, out_json):
    res["logits"] = []
    ok = True
    for name in args.configs.split(","):
        t = time.time()
        try:
            d = os.path.join(args.work, name)
            cfg = dict(CONFIGS[name], vocab_size=32000, bos_token_id=1, eos_token_id=2)
            if args.tiny:
                cfg.update(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=64, vocab_size=1000)
            model32 = build_checkpoint(name, cfg, args.layers, d, args.device)
            r, good = compare_logits(name, model32, d, args.engine_logits, args.provider, args.work, args.device,
                                     args.kv_dtype)
            del model32
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception as e:  # report and go on with the next config
            r, good = {"config": name, "error": str(e)[-2000:]}, False
            log(f"{name}: ERROR {e}")
        r["seconds"] = time.time() - t
        res["logits"].append(r)
        ok &= good
        json.dump(res, open(out_json, "w"), indent=1)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--engine-logits", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-engine-out"))
    ap.add_argument("--work", default="/tmp/hf-compare")
    ap.add_argument("--parts", default="logits,generate,prefill")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--configs", default=",".join(LOGITS_CONFIGS))
    ap.add_argument("--device", default="cuda", help="where transformers runs")
    ap.add_argument("--provider", default="cuda", help="the engine's kernel provider")
    ap.add_argument("--kv-dtype", default="f32", choices=("f32", "bf16"),
                    help="the logits part's KV pools (bf16: the cuda provider's BF16 attention paths, FlashInfer's "
                         "where built)")
    ap.add_argument("--tiny", action="store_true", help="scaled-down configs (a CPU check of this script)")
    ap.add_argument("--hf-compile", action="store_true",
                    help="generate: also time transformers' compiled generate (torch.compile of the decode step; "
                         "the compile takes minutes of device time)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    import transformers
    res = {"torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    log(f"torch {res['torch']}, transformers {res['transformers']}, {res['device']}")
    ok = True
    parts = args.parts.split(",")
    out_json = os.path.join(args.out, "hf-compare.json")
    for part in parts:  # in the order given
        if part == "logits":
            ok &= part_logits(args, res, out_json)
        elif part in ("generate", "prefill"):
            try:
                (part_generate if part == "generate" else part_prefill)(args, res)
            except Exception as e:  # report and go on with the next part
                res[part] = {"error": str(e)[-2000:]}
                log(f"{part}: ERROR {e}")
        else:
            raise SystemExit(f"unknown part '{part}' (logits, generate, prefill)")
        json.dump(res, open(out_json, "w"), indent=1)
    json.dump(res, open(out_json, "w"), indent=1)
    log(f"hf-compare: {'PASS' if ok else 'FAIL'} (logits and greedy checks); JSON in {out_json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
