#!/usr/bin/env bash
# ct_interop.sh: checks xquant's compressed-tensors output against the
# reference library (compressed-tensors + transformers, CPU) on stories260K.
#
#   tests/interop/ct_interop.sh [BUILD_DIR]      (default: build)
#
# The Python side lives in a venv OUTSIDE the repo, reused across runs:
#   ${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop}
# Only PyPI is reachable (no download.pytorch.org), so `torch` comes from
# PyPI with its CUDA wheels: ~5.6 GB on disk; measured 73 s to install on the
# 2-core dev machine (torch 2.15.0, compressed-tensors 0.20.0,
# transformers 5.24.0). The checks themselves take ~20 s; with the two FP8
# (float-quantized) variants added, 89 s wall on the shared 2-core machine at
# load average ~20 (18 s of CPU time); with the W4AFP8 variant too, 30 s wall
# at load average ~8.
# Exit status: 0 when every check passes (see ct_interop.py for the list).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
xquant="$build/bin/xquant"
model="${XQUANT_SHARED_DIR:-$repo/../shared}/models/stories260K-hf"
source "$here/venvs.sh"
venv=$(interop_venv_path torch)

[[ -x "$xquant" ]] || { echo "ct_interop: $xquant not found; build the xquant_cli target first" >&2; exit 2; }
[[ -d "$model" ]] || { echo "ct_interop: model folder $model not found" >&2; exit 2; }

# compressed-tensors (XQUANT_CT_VERSION, default 0.20.0: the version whose
# dense packing, >= 0.18, the writer follows) with PyPI torch: venvs.sh.
interop_venv_ensure torch

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-ct-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$here/ct_interop.py" --xquant "$xquant" --model "$model" --work "$work"

# Our reader and writer against the reference library's own bytes: a small
# checkpoint compressed-tensors writes here (make_ct_fixture.py: four Linear
# modules, 3-, 4-, 5- and 8-bit), then test_compressed_tensors' check of it.
"$venv/bin/python" "$here/make_ct_fixture.py" "$work/ct-fixture"
XQUANT_CT_REFERENCE_FIXTURE="$work/ct-fixture" "$build/bin/test_compressed_tensors" \
  --gtest_filter=CompressedTensors.ReadsCheckpointsWrittenByTheReferenceLibrary --gtest_brief=1
