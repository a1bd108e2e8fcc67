#!/usr/bin/env bash
# fetch-cutlass.sh: CUTLASS's C++ headers (include/cutlass, include/cute and
# tools/util/include) from the PyPI wheel `nvidia-cutlass`, which ships them
# under cutlass_library/source/, into a cache outside the repository. The
# cuda provider's sm_90a GEMMs (CUTLASS 3.x collectives: wgmma, TMA, epilogue
# visitor trees) compile against them; without them CMake builds the provider
# without those kernels and says so.
#
#   scripts/fetch-cutlass.sh [CACHE_DIR]     (default ~/.cache/xquant)
#   prints the include root; CMake finds it by itself at the default cache,
#   or pass -DXQUANT_CUTLASS_DIR=<printed path>
#
#   XQUANT_CUTLASS_VERSION   the nvidia-cutlass wheel (default 4.2.0.0)
#   XQUANT_CUTLASS_OFFLINE=1 never download: exit 3 when the headers are absent
# Idempotent; needs python3 -m pip and unzip (6.5 MB download, 37 MB unpacked).
set -euo pipefail
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant}"
version="${XQUANT_CUTLASS_VERSION:-4.2.0.0}"
root="$cache/cutlass/$version"
if [ -f "$root/include/cutlass/cutlass.h" ] && [ -f "$root/include/cute/tensor.hpp" ]; then
  echo "$root"; exit 0
fi
if [ "${XQUANT_CUTLASS_OFFLINE:-0}" = 1 ]; then
  echo "fetch-cutlass: no CUTLASS headers at $root and XQUANT_CUTLASS_OFFLINE=1" >&2; exit 3
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xq-cutlass.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "nvidia-cutlass==$version" >&2
wheel=$(ls "$tmp"/nvidia_cutlass-*.whl)
unzip -q "$wheel" 'cutlass_library/source/include/*' 'cutlass_library/source/tools/util/include/*' \
  'nvidia_cutlass-*.dist-info/licenses/LICENSE.txt' -d "$tmp/x"
# Unpack beside, then move into place, so an interrupted fetch leaves nothing half-written.
mkdir -p "$(dirname "$root")"
rm -rf "$root.partial" && mkdir -p "$root.partial"
mv "$tmp/x/cutlass_library/source/include" "$root.partial/include"
mv "$tmp/x/cutlass_library/source/tools/util/include" "$root.partial/util-include"
mv "$tmp"/x/nvidia_cutlass-*.dist-info/licenses/LICENSE.txt "$root.partial/"
rm -rf "$root" && mv "$root.partial" "$root"
echo "$root"
