#!/usr/bin/env bash
# llamacpp_interop.sh: llama.cpp itself (built from the llama-cpp-python sdist
# by scripts/fetch-llama-cpp.sh) runs the GGUF files xquant writes, with our
# engine's greedy token ids and perplexity (within 0.5%) on the same file, for
# stories260K and SmolLM2-135M (see llamacpp_interop.py for the cases).
#
#   tests/interop/llamacpp_interop.sh [BUILD_DIR]      (default: build)
#
# Needs the xquant CLI and plugins built, python3 (standard library only),
# a C++ compiler. Exit status:
#   0  every check passed
#   1  a check failed
#   2  a prerequisite of the repository is missing (build it first)
#   3  llama.cpp could not be downloaded or built, or it is not built and
#      XQUANT_LLAMA_CPP_OFFLINE=1 forbids building it (the first build takes
#      ~11 CPU-minutes, ~7 minutes on 2 idle cores: docs/testing.md)
#   4  the stories260K checks passed but SmolLM2 could not be fetched
# Environment: XQUANT_LLAMA_CPP_OFFLINE (above), XQUANT_SHARED_DIR,
# XQUANT_INTEROP_THREADS (default 2), XQUANT_INTEROP_FULL (1: every case on SmolLM2
# too; by default the 32-column block formats run on stories260K only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
started=$SECONDS

[[ -x "$build/bin/xquant" ]] || { echo "llamacpp_interop: $build/bin/xquant not found; build it first" >&2; exit 2; }
[[ -f "$shared/models/stories260K/stories260K.gguf" ]] || { echo "llamacpp_interop: $shared/models not found" >&2; exit 2; }

rc=0
exports=$("$repo/scripts/fetch-llama-cpp.sh" --checks) || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "llamacpp_interop: llama.cpp is not available (scripts/fetch-llama-cpp.sh exit $rc)" >&2
  exit 3
fi
eval "$exports"
# The build folder holds the static libraries; the sources are beside it.
llama_build="$(cd "$XQUANT_LLAMA_CPP_BIN/.." && pwd)"
llama_src="$(cd "$llama_build/../src" && pwd)"

smollm2=""
if smollm2_export=$("$repo/scripts/fetch-smollm2.sh"); then
  smollm2="${smollm2_export#export XQUANT_SMOLLM2_GGUF=}"
else
  echo "llamacpp_interop: SmolLM2 could not be fetched (scripts/fetch-smollm2.sh): only stories260K is checked" >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-llamacpp-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# llama_greedy_ids against the cached llama.cpp's static libraries (a few seconds).
libs=("$llama_build/src/libllama.a" "$llama_build/ggml/src/libggml.a"
      "$llama_build/ggml/src/libggml-cpu.a" "$llama_build/ggml/src/libggml-base.a")
nice "${CXX:-c++}" -O2 -std=c++17 -I"$llama_src/include" -I"$llama_src/ggml/include" \
  "$here/llama_greedy_ids.cpp" -o "$work/llama_greedy_ids" "${libs[@]}" -fopenmp -lpthread -ldl -lm

python3 "$here/llamacpp_interop.py" --xquant "$build/bin/xquant" --llama-bin "$XQUANT_LLAMA_CPP_BIN" \
  --greedy "$work/llama_greedy_ids" --shared "$shared" --smollm2 "$smollm2" --work "$work" \
  --threads "${XQUANT_INTEROP_THREADS:-2}"
echo "llamacpp_interop: $((SECONDS - started)) s in all"
[[ -n "$smollm2" ]] || exit 4
