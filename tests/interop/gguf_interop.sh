#!/usr/bin/env bash
# gguf_interop.sh: llama.cpp's own GGUF reader (the PyPI package `gguf`,
# gguf-py) reads every kind of GGUF xquant writes: metadata, shapes, types,
# and gguf.quants.dequantize values equal to xquant's decoders.
#
#   tests/interop/gguf_interop.sh [BUILD_DIR]      (default: build)
#
# Needs the xquant_cli, xquant_gguf_dump and plugin targets built. The venv
# lives OUTSIDE the repo and is reused across runs:
#   ${XQUANT_GGUF_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant/gguf-interop}
# (gguf + numpy, a few MB). Exit status 0 when every check passes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
source "$here/venvs.sh"
venv=$(interop_venv_path gguf)

for tool in xquant xquant_gguf_dump; do
  [[ -x "$build/bin/$tool" ]] || { echo "gguf_interop: $build/bin/$tool not found; build it first" >&2; exit 2; }
done
[[ -f "$shared/models/stories260K/stories260K.gguf" ]] || { echo "gguf_interop: $shared/models not found" >&2; exit 2; }

interop_venv_ensure gguf || exit 3

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-gguf-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/gguf_interop.py" --xquant "$build/bin/xquant" --dump "$build/bin/xquant_gguf_dump" \
  --shared "$shared" --work "$work"
