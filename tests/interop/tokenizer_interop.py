"""The real consumer of the tokenizer.json xquant synthesises from a GGUF
vocabulary: Hugging Face `tokenizers` (and transformers' AutoTokenizer over
tokenizer_config.json) must tokenize exactly as xquant's engine does with the
GGUF itself, on llama.cpp's test vectors (tests/test-tokenizer-0 inputs) and
~200 KB of wikitext-2 and TinyStories text.

Run by tokenizer_interop.sh. Vocabularies: the two test-vector GGUFs in
shared/data/tokenizer-tests, stories260K (SentencePiece) and SmolLM2 (BPE,
pre-tokenizer "smollm") through a real `xquant quantize` output, and the
llama.cpp vocabularies in --vocabs when given. Exit 1 on any difference.
"""
import argparse
import json
import os
import subprocess
import sys

from tokenizers import Tokenizer
from transformers import AutoTokenizer

SEP = "\n__ggml_vocab_test__\n"


def vector_inputs(inp):
    with open(inp, "rb") as f:
        return f.read().decode("utf-8").split(SEP)


def text_pieces(path, limit):
    """The first `limit` bytes cut into ~2 KB pieces at line ends (as
    tests/compressed_tensors/test_tokenizer_synth.cpp)."""
    with open(path, "rb") as f:
        data = f.read()[:limit]
    pieces, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", min(len(data), pos + 2048))
        end = len(data) if end < 0 else end + 1
        pieces.append(data[pos:end])
        pos = end
    # A cut inside a multi-byte character is not text a tokenizer gets.
    return [p.decode("utf-8", errors="ignore") for p in pieces]


def compare(name, folder, texts, ours):
    fast = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(folder)
    bad = {"plain(no special tokens in text)": 0, "special": 0, "bos_special": 0, "auto": 0, "decode": 0}
    checked = {k: 0 for k in bad}
    tokens = 0
    for text, want in zip(texts, ours):
        has_special = any(t.content in text for t in fast.get_added_tokens_decoder().values())
        got_special = fast.encode(text, add_special_tokens=False).ids
        got_bos = fast.encode(text, add_special_tokens=True).ids
        got_auto = auto(text)["input_ids"]
        tokens += len(want["bos_special"])
        results = [("special", got_special, want["special"]), ("bos_special", got_bos, want["bos_special"]),
                   ("auto", got_auto, want["bos_special"])]
        # HF always matches added tokens; llama.cpp without parse_special
        # does not, so "plain" compares only texts without them.
        if not has_special:
            results.append(("plain(no special tokens in text)", got_special, want["plain"]))
        for key, got, exp in results:
            checked[key] += 1
            if got != exp:
                bad[key] += 1
                if bad[key] <= 3:
                    print(f"  {name} {key} differs on {text[:120]!r}\n    ours: {exp[:40]}\n    hf:   {got[:40]}")
        checked["decode"] += 1
        dec = fast.decode(want["special"], skip_special_tokens=True)
        if dec != want["decoded"]:
            bad["decode"] += 1
            if bad["decode"] <= 3:
                print(f"  {name} decode differs on {text[:80]!r}: ours {want['decoded'][:80]!r} hf {dec[:80]!r}")
    summary = ", ".join(f"{k} {checked[k] - bad[k]}/{checked[k]}" for k in bad)
    print(f"{name}: {len(texts)} texts, {tokens} tokens: {summary}")
    return sum(bad.values()) == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xquant", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--smollm2", default="")
    ap.add_argument("--vocabs", default="")
    a = ap.parse_args()

    corpus = text_pieces(os.path.join(a.shared, "data/wikitext-2-raw/wiki.test.raw"), 100 * 1024)
    corpus += text_pieces(os.path.join(a.shared, "data/tinystories/tinystories_val.subset.txt"), 100 * 1024)
    tests = os.path.join(a.shared, "data/tokenizer-tests")
    cases = []  # (name, gguf, texts, quantize?)
    for v in ("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"):
        g = os.path.join(tests, v)
        cases.append((v, g, vector_inputs(g + ".inp") + corpus, False))
    cases.append(("stories260K", os.path.join(a.shared, "models/stories260K/stories260K.gguf"), corpus, True))
    if a.smollm2:
        cases.append(("SmolLM2-135M", a.smollm2, corpus, True))
    else:
        print("tokenizer_interop: SmolLM2 NOT checked (no GGUF; run scripts/fetch-smollm2.sh)")
    if a.vocabs:
        for v in ("ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf", "ggml-vocab-starcoder.gguf"):
            g = os.path.join(a.vocabs, v)
            cases.append((v, g, vector_inputs(g + ".inp"), False))

    ok = True
    for name, gguf, texts, quantize in cases:
        texts_json = os.path.join(a.work, name + ".texts.json")
        ids_json = os.path.join(a.work, name + ".ids.json")
        with open(texts_json, "w") as f:
            json.dump(texts, f)
        synth = os.path.join(a.work, name + ".synth")
        subprocess.run([a.dump, gguf, synth, texts_json, ids_json], check=True)
        with open(ids_json) as f:
            ours = json.load(f)
        folder = synth
        if quantize:  # the files a real `xquant quantize` from the GGUF writes
            folder = os.path.join(a.work, name + ".ct")
            subprocess.run([a.xquant, "quantize", "--model", gguf, "--out", folder, "--bits", "4", "--group-size", "32"],
                           check=True, stdout=subprocess.DEVNULL)
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                with open(os.path.join(folder, f)) as x, open(os.path.join(synth, f)) as y:
                    if json.load(x) != json.load(y):
                        print(f"  {name}: the quantized checkpoint's {f} is not the synthesised one")
                        ok = False
        ok = compare(name, folder, texts, ours) and ok
    print("tokenizer_interop: " + ("all equal" if ok else "DIFFERENCES"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
