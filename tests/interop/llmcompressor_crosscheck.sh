#!/usr/bin/env bash
# llmcompressor_crosscheck.sh: compares xquant's gptq and smoothquant plugins
# with llm-compressor on identical W / Hessian / activation statistics.
#
#   tests/interop/llmcompressor_crosscheck.sh [BUILD_DIR] [dump options]
#       BUILD_DIR defaults to build; dump options go to xquant_algo_dump
#       (--rows 256 --cols 512 --tokens 2048 --seed 1)
#
# xquant_algo_dump (tests/interop/algo_dump.cpp, built by the
# test_algorithms folder) calls the plugins through the runtime and writes
# W, X^T X, our codes/scales/zero points/g_idx and smoothing factors as raw
# little-endian files; llmcompressor_crosscheck.py runs llm-compressor's own
# quantize_weight / _calculate_smoothing_scales on them and compares (see its
# docstring for what is compared with what, and the intended differences).
#
# The Python side lives in a venv OUTSIDE the repo, reused across runs:
#   ${XQUANT_LLMC_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop-llmc}
# Only PyPI is reachable, so torch comes from PyPI with its CUDA wheels:
# `pip install llmcompressor` measured 178 s and 6.0 GB on disk on the 2-core
# dev machine (llmcompressor 0.14.0.1, compressed-tensors 0.19.0, torch
# 2.14.0). The checks take ~30 s.
# Exit status: 0 when every check passes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shift || true
dump_tool="$build/bin/xquant_algo_dump"
venv="${XQUANT_LLMC_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-interop-llmc}"
llmc_version="${XQUANT_LLMC_VERSION:-0.14.0.1}"

[[ -x "$dump_tool" ]] || { echo "llmc_crosscheck: $dump_tool not found; build the xquant_algo_dump target" >&2; exit 2; }

if ! "$venv/bin/python" -c "import llmcompressor, compressed_tensors, torch, numpy" 2>/dev/null; then
  echo "llmc_crosscheck: creating $venv (llmcompressor==$llmc_version + PyPI torch, a ~6 GB download)"
  python3 -m venv "$venv"
  start=$(date +%s)
  "$venv/bin/pip" install --quiet --progress-bar off "llmcompressor==$llmc_version" numpy
  echo "llmc_crosscheck: pip install took $(( $(date +%s) - start )) s"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-llmc.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$dump_tool" "$work" "$@"
"$venv/bin/python" "$here/llmcompressor_crosscheck.py" --dump "$work"
