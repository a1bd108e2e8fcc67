#!/usr/bin/env bash
# fetch-llama-vocabs.sh: llama.cpp's tokenizer test vectors for more
# vocabularies than ../shared/data/tokenizer-tests holds (vocab-only GGUF
# files with .inp/.out, from llama.cpp's models/ folder), taken from the
# llama.cpp sources vendored in the PyPI sdist llama-cpp-python==0.3.36, into
# a cache outside the repository. Prints the export line test_tokenizer reads.
#
#   tests/tokenizer/fetch-llama-vocabs.sh [CACHE_DIR]   (default ~/.cache/xquant)
#   export XQUANT_LLAMA_VOCABS=...                      (as printed)
set -euo pipefail
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant}"
dest="$cache/llama-vocabs"
# The vocabularies test_tokenizer runs (BPE and SPM ones with vectors).
vocabs=(command-r deepseek-coder deepseek-llm falcon gemma-4 gpt-2 llama-bpe llama-spm mpt phi-3 qwen2 qwen35 refact starcoder)
complete() {
  for v in "${vocabs[@]}"; do
    for ext in "" .inp .out; do [[ -s "$dest/ggml-vocab-$v.gguf$ext" ]] || return 1; done
  done
}
if ! complete; then
  mkdir -p "$cache" "$dest"
  sdist="$cache/llama_cpp_python-0.3.36.tar.gz"
  # This script's stdout is the export line alone (callers eval it).
  [[ -s "$sdist" ]] || "$(dirname "$0")/../../scripts/fetch-pypi-sdist.py" llama-cpp-python 0.3.36 "$cache" >/dev/null
  patterns=()
  for v in "${vocabs[@]}"; do patterns+=("llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$v.gguf*"); done
  tar -xzf "$sdist" -C "$dest" --strip-components=4 --wildcards "${patterns[@]}"
  complete || { echo "fetch-llama-vocabs: $dest is missing files after extraction" >&2; exit 1; }
fi
echo "export XQUANT_LLAMA_VOCABS=$dest"
