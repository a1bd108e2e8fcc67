#!/usr/bin/env bash
# decide_bf16_interop.sh: a decision-engine checkpoint with groups on the
# bf16 rung (dense BF16 next to int4 config groups) read by transformers +
# compressed-tensors, against our engine's logits (decide_bf16_interop.py
# says what is compared and the bounds).
#
#   tests/interop/decide_bf16_interop.sh [BUILD_DIR]      (default: build)
#
# Uses the torch venv of ct_interop.sh,
# ${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop}; exit 3
# when it is missing (test.sh then lists the check as not run). About 20 s on
# 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
venv="${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-interop}"

for exe in "$build/bin/xquant" "$build/bin/xquant_engine_logits"; do
  [[ -x "$exe" ]] || { echo "decide_bf16_interop: $exe not found; build the xquant_cli and xquant_engine_logits targets" >&2; exit 2; }
done
if ! "$venv/bin/python" -c "import compressed_tensors, transformers, safetensors, torch, numpy" 2>/dev/null; then
  echo "decide_bf16_interop: $venv lacks torch/transformers/compressed-tensors (tests/interop/ct_interop.sh creates it)" >&2
  exit 3
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-decide-bf16.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/decide_bf16_interop.py" --xquant "$build/bin/xquant" \
  --engine-logits "$build/bin/xquant_engine_logits" --shared "$shared" --work "$work"
