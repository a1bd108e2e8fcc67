#!/usr/bin/env bash
# fetch-llama-cpp.sh: build llama.cpp's own command-line tools from the
# llama.cpp sources vendored in the PyPI sdist of llama-cpp-python (its
# vendor/llama.cpp folder), CPU only, for this CPU's instruction set
# (GGML_NATIVE), into a cache outside the repository.
#
#   scripts/fetch-llama-cpp.sh [--checks] [CACHE_DIR]   (default ~/.cache/xquant)
#   export XQUANT_LLAMA_CPP_BIN=...                     (as printed; its parent
#                                                        folder holds the static libraries)
#
# Two builds of the same sources:
# - the benchmark's (default, folder build/): every tool below at llama.cpp's
#   own -O3, the speed baseline of bench/engine/llamacpp_compare.sh (without
#   AMX on x86: below);
# - the checks' (--checks, folder build-checks/): only what the interop checks
#   run (llama-perplexity, llama-imatrix, llama-quantize, and the static
#   libraries tests/interop/*.sh link their own drivers against), with the
#   code that only loads and parses at lower optimization
#   (scripts/llama-cpp-checks.cmake says what and why): about 40% less CPU
#   than the full build, for CI's 45 minutes. --checks uses the benchmark's
#   build instead when that one is already there.
#
# Idempotent: when the build is there it only prints the version and the
# export line. The build runs under `nice` with 2 jobs (this is a shared
# 2-core box, and CI has 2 cores); docs/testing.md has its times. Needs cmake,
# a C++17 compiler and python3 -m pip.
#   XQUANT_LLAMA_CPP_VERSION   the llama-cpp-python release (default 0.3.36;
#                              the same sdist tests/tokenizer/fetch-llama-vocabs.sh uses)
#   XQUANT_LLAMA_CPP_OFFLINE=1 never download or build: exit 3 when the build is absent
#   XQUANT_LLAMA_CPP_ISA=avx2  the benchmark's build limited to AVX2 (folder build-avx2/:
#                              GGML_NATIVE off, AVX/AVX2/FMA/F16C/BMI2 on, no AVX-512), the
#                              baseline bench/engine/llamacpp_compare.sh --isa avx2 sets beside
#                              our XQUANT_CPU_ISA=avx2: the AVX2-only machine kind's kernels, on
#                              this machine's memory (x86 only; not for --checks)
set -euo pipefail
checks=0
if [[ "${1:-}" == --checks ]]; then checks=1; shift; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant}"
version="${XQUANT_LLAMA_CPP_VERSION:-0.3.36}"
root="$cache/llama-cpp/$version"
# llama-completion is the classic `-p PROMPT -n N` text generator (llama-cli
# is the chat front end in this llama.cpp); llama-simple is the minimal greedy
# loop; llama-tokenize prints token ids; llama-quantize makes llama.cpp's own
# Q4_0/Q8_0/Q4_K_M copies for the benchmark and the checks; llama-imatrix
# computes the importance matrix our GGUF writer reads
# (tests/interop/gguf_imatrix_interop.sh); llama-perplexity scores our GGUFs.
# The first of each list prints the version.
bench_tools=(llama-completion llama-simple llama-perplexity llama-bench llama-tokenize llama-quantize llama-imatrix)
check_tools=(llama-perplexity llama-imatrix llama-quantize)

# llama.cpp's AMX matmul (ggml-cpu/amx, compiled in when -march=native
# defines __AMX_INT8__) died with SIGSEGV in ggml_backend_amx_mul_mat on an
# AMX Xeon VM (2026-12-04: llama-perplexity and tests/interop's greedy driver
# on every quantized stories260K and SmolLM2 GGUF; F32 and F16 ran), so on
# x86 both builds leave AMX out and llama.cpp runs its AVX-512 kernels there,
# as our cpu provider does (it has no AMX path). The stamp file in a build
# folder says it was configured so; a folder without it is configured again.
amx_stamp=.xquant-no-amx
no_amx=()
if [[ "$(uname -m)" == x86_64 ]]; then
  amx_off="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  no_amx=("-DCMAKE_C_FLAGS=$amx_off" "-DCMAKE_CXX_FLAGS=$amx_off")
fi

# built DIR TOOL...: DIR is a finished build of the patched sources with these tools.
built() {
  local dir=$1 t; shift
  [[ -f "$root/src/.xquant-log-flush" && -f "$dir/$amx_stamp" ]] || return 1
  for t in "$@"; do [[ -x "$dir/bin/$t" ]] || return 1; done
}

# This llama.cpp's logger is a leaked singleton with a worker thread
# (common/log.cpp, common_log_main: "logs may be lost if not flushed before the
# program exits"), and llama-perplexity returns from main without flushing it:
# on a busy machine its last lines, "Final estimate: PPL = ...", are sometimes
# never written. One line flushes the log before main returns; nothing that
# computes is touched. The stamp file says the source carries it.
flush_perplexity_log() {
  local f="$root/src/tools/perplexity/perplexity.cpp"
  [[ -f "$root/src/.xquant-log-flush" ]] && return 0
  python3 - "$f" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
anchor = "    llama_backend_free();\n\n    return 0;\n}\n"
if src.count(anchor) != 1:
    sys.exit(f"fetch-llama-cpp: {path}: the end of main() is not where expected; cannot add the log flush")
open(path, "w").write(src.replace(anchor, "    llama_backend_free();\n\n    common_log_flush(common_log_main());\n    return 0;\n}\n"))
PY
  touch "$root/src/.xquant-log-flush"
}

fetch_sources() {
  local sdist="$cache/llama_cpp_python-$version.tar.gz"
  if [[ ! -s "$sdist" ]]; then
    "$here/fetch-pypi-sdist.py" llama-cpp-python "$version" "$cache" >/dev/null  # stdout is the export line alone
  fi
  rm -rf "$root/src.tmp"
  mkdir -p "$root/src.tmp"
  tar -xzf "$sdist" -C "$root/src.tmp" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
  rm -rf "$root/src"
  mv "$root/src.tmp" "$root/src"
}

# build_tools DIR FLAVOUR TOOL...: configures (once) and builds the tools'
# targets into DIR: static, CPU only, no network or server pieces. FLAVOUR
# checks adds scripts/llama-cpp-checks.cmake. A failed or interrupted build
# keeps its folder, so a rerun continues it.
build_tools() {
  local dir=$1 flavour=$2 started=$SECONDS; shift 2
  local extra=()
  [[ "$flavour" == checks ]] && extra=("-DCMAKE_PROJECT_INCLUDE=$here/llama-cpp-checks.cmake")
  local native=(-DGGML_NATIVE=ON)
  [[ "$flavour" == bench-avx2 ]] && native=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON
    -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
    -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF)
  [[ -f "$dir/CMakeCache.txt" && ! -f "$dir/$amx_stamp" ]] && rm -rf "$dir"  # configured before AMX was left out
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    cmake -S "$root/src" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
      "${native[@]}" -DBUILD_SHARED_LIBS=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_OPENSSL=OFF \
      -DGGML_OPENMP=ON "${no_amx[@]}" "${extra[@]}" >"$dir.configure.log" 2>&1 \
      || { tail -n 40 "$dir.configure.log" >&2; rm -rf "$dir"; exit 1; }
    touch "$dir/$amx_stamp"
  fi
  if ! nice cmake --build "$dir" -j2 --target "$@" >"$dir.build.log" 2>&1; then
    tail -n 40 "$dir.build.log" >&2
    exit 1
  fi
  echo "fetch-llama-cpp: built $(basename "$dir") in $((SECONDS - started)) s (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

# Which build serves this call, and the tools it must have.
if [[ $checks = 1 ]]; then
  tools=("${check_tools[@]}") build="$root/build" flavour=bench
  built "$build" "${tools[@]}" || build="$root/build-checks" flavour=checks
elif [[ "${XQUANT_LLAMA_CPP_ISA:-native}" == avx2 ]]; then
  [[ "$(uname -m)" == x86_64 ]] || { echo "fetch-llama-cpp: XQUANT_LLAMA_CPP_ISA=avx2 is for x86-64" >&2; exit 2; }
  tools=("${bench_tools[@]}") build="$root/build-avx2" flavour=bench-avx2
elif [[ "${XQUANT_LLAMA_CPP_ISA:-native}" == native ]]; then
  tools=("${bench_tools[@]}") build="$root/build" flavour=bench
else
  echo "fetch-llama-cpp: XQUANT_LLAMA_CPP_ISA=${XQUANT_LLAMA_CPP_ISA}: expected native or avx2" >&2
  exit 2
fi
bin="$build/bin"
if ! built "$build" "${tools[@]}"; then
  if [[ "${XQUANT_LLAMA_CPP_OFFLINE:-0}" = 1 ]]; then
    echo "fetch-llama-cpp: no $flavour build in $build and XQUANT_LLAMA_CPP_OFFLINE=1" >&2
    exit 3
  fi
  mkdir -p "$root"
  [[ -f "$root/src/CMakeLists.txt" ]] || fetch_sources
  flush_perplexity_log
  build_tools "$build" "$flavour" "${tools[@]}"
  built "$build" "${tools[@]}" || { echo "fetch-llama-cpp: $bin lacks a tool after the build" >&2; exit 1; }
fi
# The build stamps the llama.cpp commit and build number into every tool.
llama_version=$("$bin/${tools[0]}" --version 2>&1 || true)
llama_version=$(grep -m1 -i 'version' <<<"$llama_version" || echo 'version unknown')
echo "fetch-llama-cpp: llama-cpp-python $version, llama.cpp $llama_version ($flavour build)" >&2
echo "export XQUANT_LLAMA_CPP_BIN=$bin"
