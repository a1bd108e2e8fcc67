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
venv="${XQUANT_GGUF_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant/gguf-interop}"
gguf_version="${XQUANT_GGUF_PY_VERSION:-0.19.0}"

for tool in xquant xquant_gguf_dump; do
  [[ -x "$build/bin/$tool" ]] || { echo "gguf_interop: $build/bin/$tool not found; build it first" >&2; exit 2; }
done
[[ -f "$shared/models/stories260K/stories260K.gguf" ]] || { echo "gguf_interop: $shared/models not found" >&2; exit 2; }

if ! "$venv/bin/python" -c "import gguf, numpy" 2>/dev/null; then
  echo "gguf_interop: creating $venv (gguf==$gguf_version)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --progress-bar off "gguf==$gguf_version"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-gguf-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/gguf_interop.py" --xquant "$build/bin/xquant" --dump "$build/bin/xquant_gguf_dump" \
  --shared "$shared" --work "$work"
