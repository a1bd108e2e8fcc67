#!/usr/bin/env bash
# moe_interop.sh: the engine's Mixture-of-Experts models (qwen3_moe,
# qwen2_moe, mixtral) against transformers' own forward on tiny random
# checkpoints, and GPTQ/AWQ-quantized Qwen3-MoE outputs loaded back
# (moe_interop.py says what is compared and the bounds).
#
#   tests/interop/moe_interop.sh [BUILD_DIR]      (default: build)
#
# Uses the torch venv of ct_interop.sh (transformers >= 5 for the three
# MoE model classes), ${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop};
# exit 3 when that venv is missing or lacks the MoE classes (test.sh then
# lists the check as not run). Takes ~1 min on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
source "$here/venvs.sh"
venv=$(interop_venv_path torch)

for exe in "$build/bin/xquant" "$build/bin/xquant_moe_dump"; do
  [[ -x "$exe" ]] || { echo "moe_interop: $exe not found; build the xquant_cli and xquant_moe_dump targets" >&2; exit 2; }
done
# The torch venv holds gguf-py too (it writes the stacked-expert GGUF files).
interop_venv_ensure torch || exit 3
if ! "$venv/bin/python" -c "from transformers import Qwen3MoeForCausalLM, Qwen2MoeForCausalLM, MixtralForCausalLM" 2>/dev/null; then
  echo "moe_interop: $venv's transformers lacks the MoE model classes (>= 5 needed)" >&2
  exit 3
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-moe-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/moe_interop.py" --xquant "$build/bin/xquant" --dump "$build/bin/xquant_moe_dump" \
  --tokenizer "$shared/models/stories260K/stories260K.gguf" --text "$shared/data/tinystories/tinystories_val.subset.txt" --work "$work"
