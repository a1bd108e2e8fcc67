#!/usr/bin/env bash
# moe_gguf_interop.sh: the Mixture-of-Experts GGUF files our writer makes
# (stacked ffn_*_exps experts; qwen3moe, qwen2moe, Mixtral as llama) read by
# gguf-py and run by llama.cpp against our engine (moe_gguf_interop.py says
# what is compared and the bounds), and llama-quantize reads the importance
# matrix the writer saves for a MoE model.
#
#   tests/interop/moe_gguf_interop.sh [BUILD_DIR]      (default: build)
#
# Needs the xquant_cli and xquant_moe_dump targets built. gguf-py comes from
# the venv of gguf_interop.sh (${XQUANT_GGUF_VENV:-~/.cache/xquant/gguf-interop},
# created here if missing; exit 3 when it cannot be). llama.cpp is the one
# scripts/fetch-llama-cpp.sh built for llamacpp_interop.sh: this script never
# builds it (XQUANT_LLAMA_CPP_OFFLINE=1), and when it is absent the llama.cpp
# part prints NOT CHECKED and the gguf-py part still runs. Takes ~10 s on 2
# cores (a few seconds to compile llama_moe_logits.cpp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
source "$here/venvs.sh"
venv=$(interop_venv_path gguf)
started=$SECONDS

for exe in "$build/bin/xquant" "$build/bin/xquant_moe_dump"; do
  [[ -x "$exe" ]] || { echo "moe_gguf_interop: $exe not found; build the xquant_cli and xquant_moe_dump targets" >&2; exit 2; }
done
vocab="$shared/models/stories260K/stories260K.gguf"
[[ -f "$vocab" ]] || { echo "moe_gguf_interop: $vocab not found" >&2; exit 2; }
if ! interop_venv_ensure gguf; then
  echo "moe_gguf_interop: could not create $venv" >&2; exit 3
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-moe-gguf-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
llama_args=()
if exports=$(XQUANT_LLAMA_CPP_OFFLINE=1 "$repo/scripts/fetch-llama-cpp.sh" --checks 2>/dev/null); then
  eval "$exports"
  # The build folder holds the static libraries; the sources are beside it.
  llama_build="$(cd "$XQUANT_LLAMA_CPP_BIN/.." && pwd)"
  llama_src="$(cd "$llama_build/../src" && pwd)"
  libs=("$llama_build/src/libllama.a" "$llama_build/ggml/src/libggml.a"
        "$llama_build/ggml/src/libggml-cpu.a" "$llama_build/ggml/src/libggml-base.a")
  nice "${CXX:-c++}" -O2 -std=c++17 -I"$llama_src/include" -I"$llama_src/ggml/include" \
    "$here/llama_moe_logits.cpp" -o "$work/llama_moe_logits" "${libs[@]}" -fopenmp -lpthread -ldl -lm
  llama_args=(--llama-logits "$work/llama_moe_logits" --llama-quantize "$XQUANT_LLAMA_CPP_BIN/llama-quantize")
else
  echo "  llama.cpp: NOT CHECKED (not built; tests/interop/llamacpp_interop.sh builds it with scripts/fetch-llama-cpp.sh)"
fi
"$venv/bin/python" "$here/moe_gguf_interop.py" --xquant "$build/bin/xquant" --dump "$build/bin/xquant_moe_dump" \
  --tokenizer "$vocab" --text "$shared/data/tinystories/tinystories_val.subset.txt" --work "$work" "${llama_args[@]}"
echo "moe_gguf_interop: $((SECONDS - started)) s in all"
