#!/usr/bin/env bash
# awq_gptq_interop.sh: checks xquant's AWQ and GPTQ outputs with the
# consumers installable here without a GPU (transformers' config classes)
# and an independent numpy reader that follows the upstream packing code.
#
#   tests/interop/awq_gptq_interop.sh [BUILD_DIR]      (default: build)
#
# The venv lives OUTSIDE the repo, reused across runs:
#   ${XQUANT_AWQ_GPTQ_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant/awq-gptq-interop}
# It holds transformers and numpy only (no torch: AwqConfig/GPTQConfig parse
# without it). autoawq, gptqmodel and vLLM are not installed: they need CUDA
# builds or several GB; the script says so in its output.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
xquant="$build/bin/xquant"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
source "$here/venvs.sh"
venv=$(interop_venv_path awq-gptq)

[[ -x "$xquant" ]] || { echo "awq_gptq_interop: $xquant not found; build the xquant_cli target first" >&2; exit 2; }
[[ -d "$shared/models/stories260K-hf" ]] || { echo "awq_gptq_interop: $shared/models/stories260K-hf not found" >&2; exit 2; }

interop_venv_ensure awq-gptq || exit 3

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-awq-gptq-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "not run here: autoawq / gptqmodel kernels and vLLM (CUDA builds or several GB)"
"$venv/bin/python" "$here/awq_gptq_interop.py" --xquant "$xquant" --model "$shared/models/stories260K-hf" \
  --vocab "$shared/models/stories260K/stories260K.gguf" \
  --text "$shared/data/tinystories/tinystories_val.subset.txt" --work "$work"
