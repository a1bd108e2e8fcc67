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
llama.cpp on the GGUF, within 0.5%; the converted file carries the source's
vocabulary back from the folder's synthesized tokenizer.json (llama.cpp
tokenizes the prompt as on the source GGUF).

Models: stories260K (always) and SmolLM2-135M-Instruct (its Q4_1 GGUF, when
--smollm2 is given). Exit status 0 when every check passes.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PPL_TOLERANCE = 0.005  # relative, the bound
# llama.cpp on a file of quantized blocks rounds activations to 8 bits (see
# compare()); measured up to 1.49% on SmolLM2 (its Q4_K file: Q4_K blocks, and Q5_0
# for the 576-column rows), so 3% bounds it; the F32 re-export is the tight check.
PPL_TOLERANCE_BLOCKS = 0.03

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


def first_difference(a, b):
    same = 0
    while same < min(len(a), len(b)) and a[same] == b[same]:
        same += 1
    return same


def compare(env, label, model, prompt, n_greedy, ctx, chunks, ppl_of_ours=None, block_types=True):
    """Greedy ids and perplexity of `model` (a GGUF) in both engines.
    ppl_of_ours: score this checkpoint with our engine instead (the GPTQ folder).
    block_types: the file holds quantized blocks, which llama.cpp's CPU backend
    multiplies with activations rounded to 8 bits (below); then the same
    comparison is also made on an F32 re-export of the same weights."""
    t0 = time.monotonic()
    ours_prompt, ours_ids = ours_greedy(env, model, prompt, n_greedy)
    theirs_prompt, theirs_ids = llama_greedy(env, model, prompt, n_greedy)
    check(ours_prompt == theirs_prompt, f"{label}: prompt tokens differ: ours {ours_prompt} llama.cpp {theirs_prompt}")
    same = first_difference(ours_ids, theirs_ids)
    ppl_ours, scored = ours_ppl(env, ppl_of_ours or model, ctx, chunks)
    ppl_llama = llama_ppl(env, model, ctx, chunks)
    rel = abs(ppl_ours - ppl_llama) / ppl_llama
    line = (f"  {label}: llama.cpp on the file: greedy {same}/{len(theirs_ids)} ids equal; ppl ours {ppl_ours:.4f} "
            f"llama.cpp {ppl_llama:.4f} ({100 * rel:.3f}%, {chunks} chunks of {ctx}, {scored} tokens scored)")
    if not block_types:
        # F32/F16: llama.cpp computes with the stored weights as they are.
        check(ours_ids == theirs_ids, f"{label}: greedy ids differ at #{same}: ours {ours_ids[same:same + 4]} "
              f"llama.cpp {theirs_ids[same:same + 4]} (ours {len(ours_ids)}, llama.cpp {len(theirs_ids)} ids)")
        check(rel <= PPL_TOLERANCE, f"{label}: perplexity ours {ppl_ours:.4f} vs llama.cpp {ppl_llama:.4f} ({100 * rel:.3f}% apart)")
        print(f"{line} [{time.monotonic() - t0:.1f} s]", flush=True)
        return
    # Quantized blocks: ggml's CPU dot products (ggml-cpu.c, each type's
    # vec_dot_type) round every activation row to Q8_0/Q8_1/Q8_K blocks first,
    # so llama.cpp on the file moves by that rounding (SmolLM2 Q8_0: ~1% in
    # perplexity, and greedy paths part at near-ties), while an engine that
    # multiplies by F32 activations does not. So llama.cpp also runs an F32
    # re-export of the same weights (`xquant convert --param type=F32` decodes
    # every block with the loader's decoders, which gguf-py matches bit for
    # bit: gguf_interop.sh), where it multiplies F32 by F32. Our engine must
    # equal llama.cpp on one of the two (the exact path today; the 8-bit one
    # if our GGUF execution rounds activations the same way), for the greedy
    # ids and for the perplexity (0.5%), and stay within 3% of llama.cpp on
    # the file.
    check(rel <= PPL_TOLERANCE_BLOCKS, f"{label}: perplexity ours {ppl_ours:.4f} vs llama.cpp {ppl_llama:.4f} on the "
          f"file ({100 * rel:.3f}% apart, more than llama.cpp's activation rounding explains: {100 * PPL_TOLERANCE_BLOCKS}%)")
    target = "within" if rel <= PPL_TOLERANCE else "OUTSIDE (llama.cpp's 8-bit activations)"
    print(f"{line}; {target} the 0.5% target", flush=True)
    f32 = Path(str(model) + ".f32.gguf")
    make_convert(env, f32, model, ["type=F32"])
    try:
        _, f32_ids = llama_greedy(env, f32, prompt, n_greedy)
        ppl_f32 = llama_ppl(env, f32, ctx, chunks)
        _, ours_f32_ids = ours_greedy(env, f32, prompt, n_greedy)
    finally:
        f32.unlink(missing_ok=True)
    same_f32 = first_difference(ours_ids, f32_ids)
    rel_f32 = abs(ppl_ours - ppl_f32) / ppl_f32
    print(f"  {label}: llama.cpp on its F32 re-export: greedy {same_f32}/{len(f32_ids)} ids equal; ppl {ppl_f32:.4f} "
          f"({100 * rel_f32:.4f}% from ours) [{time.monotonic() - t0:.1f} s]", flush=True)
    # Our engine runs block files natively since the cpu provider executes
    # GGUF blocks (plugins/cpu/src/gguf_blocks.cpp): decode rounds each
    # activation row to 8-bit blocks as ggml does, but not bit for bit like
    # ggml (its own rounding and summation order), so at a near-tie the two
    # 8-bit paths may part. Then the weights themselves are checked exactly:
    # both engines on the F32 re-export must give the same ids.
    if ours_ids not in (theirs_ids, f32_ids):
        same_ours_f32 = first_difference(ours_f32_ids, f32_ids)
        print(f"  {label}: NOTE our native 8-bit-activation decode parts from llama.cpp's on the file at #{same} and "
              f"from the F32 re-export at #{same_f32}; on the F32 re-export both engines: {same_ours_f32}/{len(f32_ids)} "
              f"ids equal", flush=True)
        check(ours_f32_ids == f32_ids,
              f"{label}: our greedy ids equal neither llama.cpp's on the file (parted at #{same}) nor on the F32 "
              f"re-export (parted at #{same_f32}), and on the F32 re-export the engines part at #{same_ours_f32}: "
              f"ours {ours_f32_ids[same_ours_f32:same_ours_f32 + 4]} llama.cpp {f32_ids[same_ours_f32:same_ours_f32 + 4]}")
    check(min(rel, rel_f32) <= PPL_TOLERANCE,
          f"{label}: perplexity ours {ppl_ours:.4f} is more than 0.5% from llama.cpp's both on the file "
          f"({ppl_llama:.4f}) and on the F32 re-export ({ppl_f32:.4f})")


# SmolLM2's cases in the default (CI) scope: the K-quants, which only a model
# with 256-column rows has for real, and F32 (our export read by llama.cpp);
# the 32-column block formats are checked on stories260K (every case runs
# there). XQUANT_INTEROP_FULL=1 runs every case on SmolLM2 too (~22 s each).
WIDE_CI_CASES = ("F32", "Q4_K", "Q5_K", "Q6_K")


def gguf_cases(source, is_wide):
    """(name, maker) for one model. is_wide: rows of 256·k columns exist, so the K-quants are real K-quants."""
    rtn4 = ["--algorithm", "rtn", "--bits", "4", "--group-size", "32", "--scale-dtype", "float16"]
    gptq4 = ["--algorithm", "gptq", "--bits", "4", "--group-size", "32", "--scale-dtype", "float16"]
    cases = [
        ("F32", lambda env, out: make_convert(env, out, source, ["type=F32"])),
        ("F16", lambda env, out: make_pipeline(env, out, source, "{bits: 8, symmetric: true, strategy: channel}",
                                               "{type: F16}")),
        ("Q8_0 (rtn int8 g32)", lambda env, out: make_quantize(
            env, out, source, ["--algorithm", "rtn", "--bits", "8", "--group-size", "32", "--sym", "--scale-dtype", "float16"])),
        ("Q4_0 (rtn int4 sym g32)", lambda env, out: make_quantize(env, out, source, rtn4 + ["--sym"])),
        ("Q4_1 (rtn int4 asym g32)", lambda env, out: make_quantize(env, out, source, rtn4 + ["--asym"])),
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
    full = os.environ.get("XQUANT_INTEROP_FULL", "0") == "1"
    for i, (name, make) in enumerate(gguf_cases(source, is_wide)):
        if is_wide and not full and name not in WIDE_CI_CASES:
            print(f"  NOT CHECKED (CI scope; XQUANT_INTEROP_FULL=1 runs it): {tag} {name} (checked on stories260K)")
            continue
        out = env.work / f"{tag}-{i}.gguf"
        try:
            make(env, out)
            compare(env, f"{tag} {name}", out, prompt, n_greedy, ctx, chunks, block_types=name[:3] not in ("F32", "F16"))
        except RuntimeError as e:
            check(False, f"{tag} {name}: {e}")
        out.unlink(missing_ok=True)
    # GPTQ as compressed-tensors, then GGUF by conversion (Q4_0, exact): the
    # perplexity of the GPTQ model (our engine on the compressed-tensors
    # folder) is what llama.cpp measures on the converted file. (This is also
    # the GPTQ sym -> Q4_0 case; the asym one above goes straight to GGUF.)
    name = "GPTQ int4 sym g32 compressed-tensors -> GGUF Q4_0"
    ct = env.work / f"{tag}-gptq-ct"
    out = env.work / f"{tag}-gptq-ct.gguf"
    try:
        make_quantize(env, ct, source, ["--algorithm", "gptq", "--bits", "4", "--group-size", "32", "--sym",
                                        "--scale-dtype", "float16"] + calib(env), fmt="compressed-tensors")
        # The folder's tokenizer.json was synthesized from the GGUF source's
        # vocabulary (stories260K: SentencePiece; SmolLM2: byte-level BPE);
        # the GGUF writer turns it back into the GGUF vocabulary, so
        # llama.cpp must tokenize the prompt on the converted file as on the
        # source.
        report = make_convert(env, out, ct)
        src_prompt, _ = llama_greedy(env, source, prompt, "1")
        out_prompt, _ = llama_greedy(env, out, prompt, "1")
        check(src_prompt == out_prompt, f"{tag} {name}: llama.cpp tokenizes the prompt differently on the converted "
              f"file ({out_prompt}) than on the source ({src_prompt})")
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
