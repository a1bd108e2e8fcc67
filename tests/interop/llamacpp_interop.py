"""llamacpp_interop.py: llama.cpp itself runs the GGUF files xquant writes,
with the same greedy tokens and the same perplexity as our engine on the same
file.

For each case xquant writes a GGUF (`xquant convert`, `xquant quantize
--format gguf`, or an `xquant run` pipeline for the types the CLI options do
not pick); then, on that one file:

- greedy: `xquant generate --json` and llama.cpp (llama_greedy_ids, a copy of
  llama.cpp's examples/simple loop that prints ids) tokenize the prompt to the
  same ids and generate the same first N ids;
- perplexity: llama.cpp's `llama-perplexity -c C -b C --chunks K` and `xquant
  eval --protocol llama-perplexity --ctx C --chunks K` score the same windows
  (K chunks of C tokens, BOS first when the vocabulary adds one, second half
  of each chunk scored: engine/perplexity_chunks.hpp) of the same WikiText
  slice; the two perplexities agree within 0.5%.

And a GPTQ model written as compressed-tensors, converted to GGUF with
`xquant convert` (no second rounding: the report says exact for every
Linear), keeps its perplexity: our eval of the compressed-tensors folder vs
llama.cpp on the GGUF, within 0.5%.

Models: stories260K (always) and SmolLM2-135M-Instruct (its Q4_1 GGUF, when
--smollm2 is given). Exit status 0 when every check passes.
"""
import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

PPL_TOLERANCE = 0.005  # relative, the bound

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("  FAIL", what, flush=True)
    return ok


def run(cmd, what):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


class Env:
    def __init__(self, a):
        self.xquant = a.xquant
        self.bin = Path(a.llama_bin)
        self.greedy = a.greedy
        self.work = Path(a.work)
        self.threads = str(a.threads)
        self.text = self.work / "wiki-slice.txt"
        # A fixed WikiText-2 test slice: its first 40,000 bytes.
        self.text.write_bytes((Path(a.shared) / "data/wikitext-2-raw/wiki.test.raw").read_bytes()[:40000])
        self.calibration = Path(a.shared) / "data/tinystories/tinystories_val.subset.txt"


# ---- making the files ------------------------------------------------------

def make_convert(env, out, source, params=()):
    cmd = [env.xquant, "-q", "convert", "--model", source, "--out", out, "--format", "gguf"]
    for p in params:
        cmd += ["--param", p]
    return run(cmd, "xquant convert").stdout


def make_quantize(env, out, source, options, fmt="gguf"):
    cmd = [env.xquant, "-q", "quantize", "--model", source, "--out", out, "--format", fmt] + list(options)
    return run(cmd, "xquant quantize").stdout


def make_pipeline(env, out, source, weights, params):
    yaml = (f"model:\n  path: {source}\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n"
            f"    weights: {weights}\nignore: [lm_head]\noutput:\n  format: gguf\n  path: {out}\n  params: {params}\n")
    y = out.with_suffix(".yaml")
    y.write_text(yaml)
    return run([env.xquant, "-q", "run", y], "xquant run").stdout


# ---- the two engines -------------------------------------------------------

def ours_greedy(env, model, prompt, n):
    p = run([env.xquant, "-q", "--threads", env.threads, "generate", "--model", model, "--prompt", prompt,
             "-n", n, "--json"], "xquant generate")
    j = json.loads(p.stdout)
    return j["prompt_tokens"], j["tokens"]


def llama_greedy(env, model, prompt, n):
    p = run([env.greedy, model, n, prompt], "llama_greedy_ids")
    j = json.loads(p.stdout)
    return j["prompt_tokens"], j["tokens"]


def ours_ppl(env, model, ctx, chunks):
    p = run([env.xquant, "-q", "--threads", env.threads, "eval", "--model", model, "--text", env.text,
             "--protocol", "llama-perplexity", "--ctx", ctx, "--chunks", chunks, "--json"], "xquant eval")
    j = json.loads(p.stdout)
    return j["perplexity"], j["tokens_scored"]


def llama_ppl(env, model, ctx, chunks):
    p = run([env.bin / "llama-perplexity", "-m", model, "-f", env.text, "-c", ctx, "-b", ctx, "--chunks", chunks,
             "-t", env.threads], "llama-perplexity")
    log = p.stdout + p.stderr
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", log)
    if not m:
        raise RuntimeError(f"llama-perplexity printed no final estimate:\n{log[-3000:]}")
    return float(m.group(1))


def compare(env, label, model, prompt, n_greedy, ctx, chunks, ppl_of_ours=None):
    """Greedy ids and perplexity of `model` (a GGUF) in both engines.
    ppl_of_ours: score this checkpoint with our engine instead (the GPTQ folder)."""
    t0 = time.monotonic()
    ours_prompt, ours_ids = ours_greedy(env, model, prompt, n_greedy)
    theirs_prompt, theirs_ids = llama_greedy(env, model, prompt, n_greedy)
    check(ours_prompt == theirs_prompt, f"{label}: prompt tokens differ: ours {ours_prompt} llama.cpp {theirs_prompt}")
    same = 0
    while same < min(len(ours_ids), len(theirs_ids)) and ours_ids[same] == theirs_ids[same]:
        same += 1
    check(ours_ids == theirs_ids,
          f"{label}: greedy ids differ at #{same}: ours {ours_ids[same:same + 4]} llama.cpp {theirs_ids[same:same + 4]} "
          f"(ours {len(ours_ids)}, llama.cpp {len(theirs_ids)} ids)")
    ppl_ours, scored = ours_ppl(env, ppl_of_ours or model, ctx, chunks)
    ppl_llama = llama_ppl(env, model, ctx, chunks)
    rel = abs(ppl_ours - ppl_llama) / ppl_llama
    check(rel <= PPL_TOLERANCE, f"{label}: perplexity ours {ppl_ours:.4f} vs llama.cpp {ppl_llama:.4f} ({100 * rel:.3f}% apart)")
    print(f"  {label}: greedy {same}/{len(theirs_ids)} ids equal; ppl ours {ppl_ours:.4f} llama.cpp {ppl_llama:.4f} "
          f"({100 * rel:.3f}%, {chunks} chunks of {ctx}, {scored} tokens scored) [{time.monotonic() - t0:.1f} s]",
          flush=True)


def gguf_cases(source, is_wide):
    """(name, maker) for one model. is_wide: rows of 256·k columns exist, so the K-quants are real K-quants."""
    rtn4 = ["--algorithm", "rtn", "--bits", "4", "--group-size", "32", "--scale-dtype", "float16"]
    gptq4 = ["--algorithm", "gptq", "--bits", "4", "--group-size", "32", "--scale-dtype", "float16"]
    cases = [
        ("F32", lambda env, out: make_convert(env, out, source)),
        ("F16", lambda env, out: make_pipeline(env, out, source, "{bits: 8, symmetric: true, strategy: channel}",
                                               "{type: F16}")),
        ("Q8_0 (rtn int8 g32)", lambda env, out: make_quantize(
            env, out, source, ["--algorithm", "rtn", "--bits", "8", "--group-size", "32", "--sym", "--scale-dtype", "float16"])),
        ("Q4_0 (rtn int4 sym g32)", lambda env, out: make_quantize(env, out, source, rtn4 + ["--sym"])),
        ("Q4_1 (rtn int4 asym g32)", lambda env, out: make_quantize(env, out, source, rtn4 + ["--asym"])),
        ("Q4_0 (gptq int4 sym g32)", lambda env, out: make_quantize(env, out, source, gptq4 + ["--sym"] + calib(env))),
        ("Q4_1 (gptq int4 asym g32)", lambda env, out: make_quantize(env, out, source, gptq4 + ["--asym"] + calib(env))),
    ]
    for k in ("Q4_K", "Q5_K", "Q6_K"):
        cases.append((f"{k}{'' if is_wide else ' (rows < 256: llama.cpp fallback types)'}",
                      lambda env, out, k=k: make_pipeline(env, out, source, "{bits: 8, symmetric: true, strategy: channel}",
                                                          "{type: " + k + "}")))
    return cases


def calib(env):
    return ["--calibration", env.calibration, "--samples", "16", "--seq-len", "128"]


def check_model(env, tag, source, prompt, n_greedy, ctx, chunks, is_wide):
    print(f"model {tag}: {source}", flush=True)
    for i, (name, make) in enumerate(gguf_cases(source, is_wide)):
        out = env.work / f"{tag}-{i}.gguf"
        try:
            make(env, out)
            compare(env, f"{tag} {name}", out, prompt, n_greedy, ctx, chunks)
        except RuntimeError as e:
            check(False, f"{tag} {name}: {e}")
        out.unlink(missing_ok=True)
    # GPTQ as compressed-tensors, then GGUF by conversion: the perplexity of
    # the GPTQ model (our engine on the compressed-tensors folder) is what
    # llama.cpp measures on the converted file.
    name = "GPTQ int4 sym g32 compressed-tensors -> GGUF"
    ct = env.work / f"{tag}-gptq-ct"
    out = env.work / f"{tag}-gptq-ct.gguf"
    try:
        make_quantize(env, ct, source, ["--algorithm", "gptq", "--bits", "4", "--group-size", "32", "--sym",
                                        "--scale-dtype", "float16"] + calib(env), fmt="compressed-tensors")
        # The folder's tokenizer.json was synthesized from the GGUF source's
        # vocabulary; the GGUF writer converts only byte-level BPE ones back
        # (not stories260K's SentencePiece), so the source GGUF gives it.
        report = make_convert(env, out, ct, [f"tokenizer={source}"])
        m = re.search(r"(\d+) quantized Linears, (\d+) exact, (\d+) not exact", report)
        check(m is not None and int(m.group(1)) > 0 and m.group(1) == m.group(2),
              f"{tag} {name}: convert did not report every Linear exact: {m.group(0) if m else report[-500:]}")
        if m:
            print(f"  {tag} {name}: convert says {m.group(0)}")
        compare(env, f"{tag} {name}", out, prompt, n_greedy, ctx, chunks, ppl_of_ours=ct)
    except RuntimeError as e:
        check(False, f"{tag} {name}: {e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--llama-bin", required=True, help="folder of llama.cpp's tools (scripts/fetch-llama-cpp.sh)")
    ap.add_argument("--greedy", required=True, help="llama_greedy_ids built against that llama.cpp")
    ap.add_argument("--shared", required=True)
    ap.add_argument("--smollm2", default="", help="SmolLM2-135M-Instruct Q4_1 GGUF (scripts/fetch-smollm2.sh)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    env = Env(a)
    t0 = time.monotonic()
    check_model(env, "stories260K", Path(a.shared) / "models/stories260K/stories260K.gguf", "Once upon a time",
                "48", "128", "8", is_wide=False)
    if a.smollm2:
        check_model(env, "SmolLM2-135M", Path(a.smollm2), "The capital of France is", "32", "256", "4", is_wide=True)
    print(f"llamacpp_interop: {time.monotonic() - t0:.0f} s")
    if failures:
        print(f"llamacpp_interop: {len(failures)} check(s) failed")
        return 1
    print("llamacpp_interop: llama.cpp gives our greedy ids and our perplexity (within 0.5%) on every GGUF we wrote")
    return 0


if __name__ == "__main__":
    sys.exit(main())
