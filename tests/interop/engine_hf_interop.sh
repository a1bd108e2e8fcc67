#!/usr/bin/env bash
# engine_hf_interop.sh: the engine's dense architectures (Llama-3.1 with
# llama3 RoPE scaling, Qwen2 with q/k/v bias, Qwen3 with q/k norms,
# Mistral) against transformers' own forward and greedy generate, on
# scaled-down random-weight checkpoints, through the paged engine on the
# `cpu` provider: scripts/gpu-hf-compare.py --tiny (the GPU machine runs
# the same script at real sizes on `cuda`; it states the bounds).
#
#   tests/interop/engine_hf_interop.sh [BUILD_DIR]      (default: build)
#
# Uses the torch venv of ct_interop.sh,
# ${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop}; exit 3
# when it is missing (test.sh then lists the check as not run). ~30 s on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
venv="${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-interop}"

for exe in "$build/bin/xquant" "$build/bin/xquant_engine_logits"; do
  [[ -x "$exe" ]] || { echo "engine_hf_interop: $exe not found; build the xquant_cli and xquant_engine_logits targets" >&2; exit 2; }
done
if ! "$venv/bin/python" -c "from transformers import Qwen3ForCausalLM; import safetensors, torch, numpy" 2>/dev/null; then
  echo "engine_hf_interop: $venv lacks torch/transformers (tests/interop/ct_interop.sh creates it)" >&2
  exit 3
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-engine-hf.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$repo/scripts/gpu-hf-compare.py" --cli "$build/bin/xquant" \
  --engine-logits "$build/bin/xquant_engine_logits" --out "$work/out" --work "$work" \
  --parts logits --tiny --device cpu --provider cpu
