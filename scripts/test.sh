#!/usr/bin/env bash
# The whole test suite, as CI runs it: build, every GoogleTest suite through
# ctest (GPU suites skip without a GPU), the installed-SDK checks
# (out-of-tree plugin built with find_package(xquant) and used by a pipeline,
# the C example, the Python package), then the interop checks against the
# real compressed-tensors package. Exits non-zero on any failure.
#
# The last lines of the output are a summary that names every check that did
# not run and why (whether the run passed or failed), so a skipped check is
# seen, not buried in the log.
#   XQUANT_SKIP_INTEROP=1   skip the compressed-tensors interop on purpose
#   (scripts/interop-decision.sh: when it runs).
set -euo pipefail
cd "$(dirname "$0")/.."

skipped=()  # "check: reason", one per check that did not run
ctest_log=$(mktemp)
summary() {
  local rc=$?
  # Tests ctest ran but that skipped themselves (GTEST_SKIP: no GPU, ...).
  while IFS= read -r line; do skipped+=("ctest $line"); done < <(
    sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1: skipped itself (see its output in the ctest log)/p' "$ctest_log")
  rm -f "$ctest_log"
  echo
  echo "==================== test summary ===================="
  [ "$rc" -eq 0 ] && echo "result: PASSED" || echo "result: FAILED (exit status $rc)"
  if [ ${#skipped[@]} -eq 0 ]; then
    echo "skipped: nothing"
  else
    echo "SKIPPED (${#skipped[@]}), these checks did NOT run:"
    printf '  - %s\n' "${skipped[@]}"
  fi
  echo "======================================================"
}
trap summary EXIT

./scripts/setup.sh "$@"
# llama.cpp's tokenizer vectors for 14 more vocabularies (from the PyPI sdist
# of llama-cpp-python, ~76 MB, cached outside the repo) for test_tokenizer.
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ] && vocabs=$(tests/tokenizer/fetch-llama-vocabs.sh); then
  eval "$vocabs"
else
  skipped+=("llama.cpp vocabulary vectors (tests/tokenizer/fetch-llama-vocabs.sh): not fetched (XQUANT_SKIP_INTEROP=1 or the download failed)")
fi
ctest --test-dir build --output-on-failure -j"$(nproc)" 2>&1 | tee "$ctest_log"
./scripts/test-sdk.sh

# Interop with the real compressed-tensors package, when the machine has the
# room for its venv (scripts/interop-decision.sh says why not otherwise).
decision=$(./scripts/interop-decision.sh)
if [ "$decision" = run ]; then
  tests/interop/ct_interop.sh build
else
  skipped+=("compressed-tensors interop (tests/interop/ct_interop.sh): ${decision#skip: }")
fi
# Light interop venvs (no torch), cached outside the repo:
#   AWQ/GPTQ outputs vs transformers' config classes and the upstream unpacking rules;
#   every GGUF we write read back by llama.cpp's gguf-py.
light_interop() {
  local name=$1; shift
  if [ "${XQUANT_SKIP_INTEROP:-0}" = 1 ]; then
    skipped+=("$name ($*): XQUANT_SKIP_INTEROP=1")
  else
    # Exit 3: the script could not install its venv (no network or room); it
    # says why above, and the summary lists the check as not run.
    local rc=0
    "$@" || rc=$?
    if [ "$rc" -eq 3 ]; then
      skipped+=("$name ($*): could not install its venv (see its output above)")
    elif [ "$rc" -ne 0 ]; then
      return "$rc"
    fi
  fi
}
light_interop "AWQ/GPTQ interop" tests/interop/awq_gptq_interop.sh build
light_interop "GGUF interop" tests/interop/gguf_interop.sh build
# The tokenizer.json synthesised for GGUF sources, read by HF tokenizers and
# transformers' AutoTokenizer (no torch).
light_interop "tokenizer interop" tests/interop/tokenizer_interop.sh build
# Mixture-of-Experts models (qwen3_moe, qwen2_moe, mixtral) against
# transformers' own forward, and GPTQ/AWQ Qwen3-MoE outputs read back; uses
# the torch venv of ct_interop.sh (exit 3, listed as not run, without it); ~60 s.
light_interop "MoE interop" tests/interop/moe_interop.sh build
# llama.cpp itself runs the GGUFs we write, with our greedy ids and perplexity.
# The first run builds llama.cpp from the llama-cpp-python sdist into
# ~/.cache/xquant/llama-cpp (scripts/fetch-llama-cpp.sh: ~7 CPU-minutes, about
# 4 minutes on CI's 2 cores; later runs reuse it). docs/testing.md has the times.
if [ "${XQUANT_SKIP_INTEROP:-0}" = 1 ]; then
  skipped+=("llama.cpp interop (tests/interop/llamacpp_interop.sh): XQUANT_SKIP_INTEROP=1")
else
  llama_rc=0
  tests/interop/llamacpp_interop.sh build || llama_rc=$?
  case "$llama_rc" in
    0) ;;
    3) skipped+=("llama.cpp interop (tests/interop/llamacpp_interop.sh): llama.cpp could not be downloaded or built (see its output above)") ;;
    4) skipped+=("llama.cpp interop, SmolLM2-135M part (tests/interop/llamacpp_interop.sh): scripts/fetch-smollm2.sh failed; only stories260K was checked") ;;
    *) exit "$llama_rc" ;;
  esac
fi
