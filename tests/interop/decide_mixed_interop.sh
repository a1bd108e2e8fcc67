#!/usr/bin/env bash
# decide_mixed_interop.sh: mixed-precision decision-engine checkpoints at
# group size 32 (int4 g32, the per-channel fallback of down_proj, the int8
# rung, the bf16 rung) and MoE ones (experts config groups) read by
# compressed-tensors and transformers, against
# our engine's logits (decide_mixed_interop.py says what is compared, the
# bounds, and transformers' dequantize=True limitation).
#
#   tests/interop/decide_mixed_interop.sh [BUILD_DIR]      (default: build)
#
# Uses the torch venv of ct_interop.sh,
# ${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop}; exit 3
# when it is missing (test.sh then lists the check as not run). About 60 s on
# 2 busy cores (load ~10).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
venv="${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-interop}"

for exe in "$build/bin/xquant" "$build/bin/xquant_engine_logits"; do
  [[ -x "$exe" ]] || { echo "decide_mixed_interop: $exe not found; build the xquant_cli and xquant_engine_logits targets" >&2; exit 2; }
done
if ! "$venv/bin/python" -c "import compressed_tensors, transformers, safetensors, torch, numpy" 2>/dev/null; then
  echo "decide_mixed_interop: $venv lacks torch/transformers/compressed-tensors (tests/interop/ct_interop.sh creates it)" >&2
  exit 3
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-decide-mixed.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/decide_mixed_interop.py" --xquant "$build/bin/xquant" \
  --engine-logits "$build/bin/xquant_engine_logits" --shared "$shared" --work "$work"
