#!/usr/bin/env bash
# llamacpp_compare.sh: decode and prefill tokens/s and peak RSS of our engine
# and llama.cpp on the same models, side by side in one run, as a markdown
# table and JSON (bench/engine/llamacpp_compare.py says what is measured).
# Not part of CI: it measures, so run it on a quiet machine; numbers taken
# with a 1-minute load average above 1.5 are marked NOT VALID.
#
#   bench/engine/llamacpp_compare.sh [--threads 1,2] [--decode 64] [--prefill 512]
#                                    [--rounds 3] [--out DIR] [--build DIR]
#                                    [--formats 'GGUF Q4_K_M,W4A16 g128'] (default all; F32 always)
#                                    [--isa avx2]
#
# Models: SmolLM2-135M-Instruct (scripts/fetch-smollm2.sh) always;
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M when XQUANT_QWEN25_GGUF names it or
# scripts/fetch-qwen25.sh's cache holds it. llama.cpp: scripts/fetch-llama-cpp.sh
# (builds it once, ~7 CPU-minutes). The model files (F32 GGUF, W4A16 g128,
# W8A16, W8A8 compressed-tensors, llama-quantize's Q4_0/Q8_0/Q4_K_M) are made
# once into ${XQUANT_BENCH_CACHE:-~/.cache/xquant/bench-llamacpp}.
# --isa avx2: both sides on AVX2 alone, for the AVX2-only machine kind's kernels on this
# machine's memory: ours with XQUANT_CPU_ISA=avx2 and OpenBLAS's Haswell kernels
# (OPENBLAS_CORETYPE), llama.cpp from its AVX2-only build
# (scripts/fetch-llama-cpp.sh, XQUANT_LLAMA_CPP_ISA=avx2; built once, ~7 CPU-minutes).
# Output: DIR/llamacpp_compare.{md,json} (default bench/results/llamacpp),
# with each of our rows' bandwidth floor (weight bytes per token / the read
# bandwidth bench_gemv_rows measures; build that target too).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/xquant"
build="$repo/build"
out="$repo/bench/results/llamacpp"
pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --threads|--decode|--prefill|--rounds|--formats) pass+=("$1" "$2"); shift 2 ;;
    --isa)
      [[ "$2" == avx2 ]] || { echo "llamacpp_compare: --isa $2: only avx2 is known" >&2; exit 2; }
      # OpenBLAS (our F32 prefill's SGEMM, and the quantized prefill's where it dequantizes to
      # SGEMM) picks its kernels at run time too: Haswell's are its AVX2 ones.
      export XQUANT_CPU_ISA=avx2 XQUANT_LLAMA_CPP_ISA=avx2 OPENBLAS_CORETYPE=Haswell
      pass+=(--isa avx2); shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "llamacpp_compare: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x "$build/bin/xquant" ]] || { echo "llamacpp_compare: $build/bin/xquant not found; build it first" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "llamacpp_compare: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }

# The bandwidth floor's read bandwidth (bench_gemv_rows --read-bandwidth T).
floor=()
if [[ -x "$build/bin/bench_gemv_rows" ]]; then
  floor=(--bench-gemv-rows "$build/bin/bench_gemv_rows")
else
  echo "llamacpp_compare: $build/bin/bench_gemv_rows not built: no bandwidth floor in the report" >&2
fi
eval "$("$repo/scripts/fetch-llama-cpp.sh")"
eval "$("$repo/scripts/fetch-smollm2.sh")"
qwen="${XQUANT_QWEN25_GGUF:-$cache/qwen25/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}"
if [[ ! -s "$qwen" ]]; then
  echo "llamacpp_compare: no Qwen2.5-Coder-1.5B GGUF at $qwen (scripts/fetch-qwen25.sh): SmolLM2 only" >&2
  qwen=""
fi
python3 "$here/llamacpp_compare.py" --xquant "$build/bin/xquant" --llama-bin "$XQUANT_LLAMA_CPP_BIN" \
  --shared "${XQUANT_SHARED_DIR:-$repo/../shared}" --cache "${XQUANT_BENCH_CACHE:-$cache/bench-llamacpp}" \
  --smollm2 "$XQUANT_SMOLLM2_GGUF" --qwen25 "$qwen" --out "$out" "${floor[@]}" "${pass[@]}"
