#!/usr/bin/env bash
# fetch-flashinfer.sh: FlashInfer's header-only CUDA kernels (include/flashinfer,
# 7 MB) and the CCCL they are written against (cccl/: libcudacxx, cub, thrust,
# 20 MB; e.g. `cuda::fast_mod_div`, newer than CUDA 13.0's own) from the PyPI
# wheel `flashinfer-python`, which ships both under flashinfer/data/, into a
# cache outside the repository. Only
# bench/cuda/flashinfer_decode.cu compiles against them (issue 9's measurement
# of FlashInfer's decode attention against ours); CMake finds them at the
# default cache or at -DXQUANT_FLASHINFER_DIR=<printed path>.
#
#   scripts/fetch-flashinfer.sh [CACHE_DIR]     (default ~/.cache/xquant)
#   prints the root (ROOT/include, ROOT/cccl)
#
#   XQUANT_FLASHINFER_VERSION    the flashinfer-python wheel (default 0.7.4)
#   XQUANT_FLASHINFER_OFFLINE=1  never download: exit 3 when the headers are absent
# Idempotent; needs python3 -m pip (a 101 MB download, of which only the headers are kept).
set -euo pipefail
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant}"
version="${XQUANT_FLASHINFER_VERSION:-0.7.4}"
root="$cache/flashinfer/$version"
if [ -f "$root/include/flashinfer/attention/decode.cuh" ] && [ -f "$root/cccl/libcudacxx/include/cuda/cmath" ]; then
  echo "$root"; exit 0
fi
if [ "${XQUANT_FLASHINFER_OFFLINE:-0}" = 1 ]; then
  echo "fetch-flashinfer: no FlashInfer headers at $root and XQUANT_FLASHINFER_OFFLINE=1" >&2; exit 3
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xq-flashinfer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "flashinfer-python==$version" >&2
wheel=$(ls "$tmp"/flashinfer_python-*.whl)
# The headers, CCCL and the wheel's license files (Apache-2.0; unzip's globs cannot
# name the dist-info folder's license files, which vary by wheel, so Python picks them).
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith(("flashinfer/data/include/", "flashinfer/data/cccl/")):
            z.extract(name, sys.argv[2])
        elif ".dist-info/" in name and "LICENSE" in os.path.basename(name).upper():
            with open(os.path.join(sys.argv[2], os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PY
[ -f "$tmp/unpacked/flashinfer/data/include/flashinfer/attention/decode.cuh" ] ||
  { echo "fetch-flashinfer: the wheel had no include/flashinfer/attention/decode.cuh" >&2; exit 1; }
# Unpacked beside, then moved into place (as fetch-cutlass.sh): an interrupted fetch leaves no half-written root.
mkdir -p "$(dirname "$root")"
rm -rf "$root.partial" && mkdir -p "$root.partial"
mv "$tmp/unpacked/flashinfer/data/include" "$tmp/unpacked/flashinfer/data/cccl" "$root.partial/"
find "$tmp/unpacked" -maxdepth 1 -type f -name '*LICENSE*' -exec mv {} "$root.partial/" \;
rm -rf "$root" && mv "$root.partial" "$root"
echo "$root"
