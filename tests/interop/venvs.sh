#!/usr/bin/env bash
# venvs.sh: the Python environments the interop checks run in, made in one
# place. Each lives outside the repository and is reused across runs.
#
#   tests/interop/venvs.sh NAME...     makes the named venvs (torch, awq-gptq,
#                                      gguf, tokenizer) if they are not ready
#   source tests/interop/venvs.sh      in an interop script, then
#     venv=$(interop_venv_path gguf)
#     interop_venv_ensure gguf || exit 3
#
# | name      | default folder (under ${XDG_CACHE_HOME:-~/.cache}) | packages |
# |-----------|------------------------------------------|----------|
# | torch     | xquant-interop ($XQUANT_INTEROP_VENV)      | compressed-tensors (pulls PyPI torch with its CUDA wheels, ~5.6 GB, and transformers), numpy, gguf |
# | awq-gptq  | xquant/awq-gptq-interop ($XQUANT_AWQ_GPTQ_VENV) | transformers, numpy (no torch) |
# | gguf      | xquant/gguf-interop ($XQUANT_GGUF_VENV)    | gguf (llama.cpp's gguf-py), numpy |
# | tokenizer | xquant/tokenizer-interop ($XQUANT_TOKENIZER_VENV) | tokenizers, transformers (no torch) |
#
# Versions: XQUANT_CT_VERSION (compressed-tensors, default 0.20.0, the
# version whose packing the writer follows) and XQUANT_GGUF_PY_VERSION (gguf,
# default 0.19.0).
#
# scripts/test.sh runs `venvs.sh torch awq-gptq gguf tokenizer` in the
# background during the build: on a fresh machine the torch venv alone is a
# ~3.5 GB download that would otherwise wait in front of the checks. A check
# that needs a venv still being made waits for it (a lock per venv), so
# nothing is installed twice at once. pip runs with --no-compile: byte-code
# compilation of every module of torch and transformers is CPU time the build
# needs, and Python compiles the few modules the checks import when they are
# first imported; and --no-cache-dir, as a fresh machine would only write
# the ~3.5 GB of wheels to a cache it never reads.

interop_venv_path() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}"
  case "$1" in
    torch) echo "${XQUANT_INTEROP_VENV:-$cache/xquant-interop}" ;;
    awq-gptq) echo "${XQUANT_AWQ_GPTQ_VENV:-$cache/xquant/awq-gptq-interop}" ;;
    gguf) echo "${XQUANT_GGUF_VENV:-$cache/xquant/gguf-interop}" ;;
    tokenizer) echo "${XQUANT_TOKENIZER_VENV:-$cache/xquant/tokenizer-interop}" ;;
    *) echo "venvs.sh: unknown venv '$1' (torch, awq-gptq, gguf, tokenizer)" >&2; return 2 ;;
  esac
}

# The modules a ready venv imports, and the packages that provide them.
interop_venv_imports() {
  case "$1" in
    torch) echo "compressed_tensors, torch, transformers, safetensors, numpy, gguf" ;;
    awq-gptq) echo "transformers, numpy" ;;
    gguf) echo "gguf, numpy" ;;
    tokenizer) echo "tokenizers, transformers" ;;
  esac
}
interop_venv_packages() {
  local gguf="gguf==${XQUANT_GGUF_PY_VERSION:-0.19.0}"
  case "$1" in
    torch) echo "compressed-tensors==${XQUANT_CT_VERSION:-0.20.0} numpy $gguf" ;;
    awq-gptq) echo "transformers numpy" ;;
    gguf) echo "$gguf" ;;
    tokenizer) echo "tokenizers transformers" ;;
  esac
}

# Makes venv NAME unless it already imports what it must; returns 3 (and says
# why on stderr) when it cannot be made, e.g. without network or disk room.
interop_venv_ensure() {
  local name=$1 venv
  venv=$(interop_venv_path "$name") || return 2
  mkdir -p "$(dirname "$venv")" || return 3
  (
    flock 9
    "$venv/bin/python" -c "import $(interop_venv_imports "$name")" 2>/dev/null && exit 0
    echo "venvs.sh: making $venv ($(interop_venv_packages "$name"))" >&2
    started=$SECONDS
    # shellcheck disable=SC2046  # the package list is words
    if ! { python3 -m venv "$venv" &&
        "$venv/bin/pip" install --quiet --progress-bar off --no-compile --no-cache-dir $(interop_venv_packages "$name") &&
        "$venv/bin/python" -c "import $(interop_venv_imports "$name")"; }; then
      echo "venvs.sh: could not make $venv (pip's output above)" >&2
      exit 3
    fi
    echo "venvs.sh: made $venv in $((SECONDS - started)) s" >&2
  ) 9>"$venv.lock"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  rc=0
  for name in "$@"; do interop_venv_ensure "$name" || rc=$?; done
  exit "$rc"
fi
