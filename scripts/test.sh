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
# Qwen2.5-Coder-1.5B Q4_K_M (22 PyPI wheels, 1.1 GB, cached outside the repo;
# about a minute to fetch, ~10 s of test) for test_gguf_native's native K-quant run.
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ] && qwen=$(scripts/fetch-qwen25.sh); then
  eval "$qwen"
else
  skipped+=("Qwen2.5 Q4_K_M GGUF (scripts/fetch-qwen25.sh): not fetched (XQUANT_SKIP_INTEROP=1 or the download failed); GgufNativeQwen25 skips itself")
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
