#!/usr/bin/env bash
# gguf_source_runs.sh: a compressed-tensors checkpoint quantized from a GGUF
# carries the tokenizer files synthesised from its vocabulary and runs with
# `xquant eval` and `xquant generate` without --tokenizer, tokenizing the
# first 8 KB of the text into as many tokens as the GGUF does (the ids
# themselves are compared in test_tokenizer_synth).
#
#   gguf_source_runs.sh XQUANT GGUF TEXT
set -euo pipefail
xquant="$1" gguf="$2" text="$3"
out="$(mktemp -d "${TMPDIR:-/tmp}/xquant-gguf-source.XXXXXX")"
trap 'rm -rf "$out"' EXIT
head -c 8192 "$text" > "$out/text.txt"
text="$out/text.txt"
"$xquant" quantize --model "$gguf" --out "$out/ct" --bits 4 --group-size 32 >/dev/null
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
  [[ -s "$out/ct/$f" ]] || { echo "FAIL: the checkpoint has no $f" >&2; exit 1; }
done
tokens_total() { "$xquant" eval --model "$1" --text "$text" --json | grep -o '"tokens_total": *[0-9]*' | grep -o '[0-9]*$'; }
want="$(tokens_total "$gguf")"
got="$(tokens_total "$out/ct")"
echo "tokens_total: gguf $want, compressed-tensors $got"
[[ -n "$got" && "$got" == "$want" ]] || { echo "FAIL: the checkpoint tokenizes the text differently" >&2; exit 1; }
generated="$("$xquant" generate --model "$out/ct" --prompt "Once upon a time" -n 8)"
echo "generate: $generated"
[[ -n "$generated" ]] || { echo "FAIL: generate printed nothing" >&2; exit 1; }
