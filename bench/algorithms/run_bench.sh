#!/usr/bin/env bash
# run_bench.sh: the algorithm benchmark of issue 4: xquant's gptq / awq /
# smoothquant / rtn beside llm-compressor's GPTQ, on one 4096x4096 and one
# 4096x14336 Linear with 128 x 2048 calibration tokens, CPU, 2 threads; one
# process per measurement so each peak RSS is its own.
#
#   bench/algorithms/run_bench.sh [BUILD_DIR] [CACHE_DIR]
#
# CACHE_DIR (default /tmp/xquant-bench-algorithms) keeps the generated W and
# X^T X between runs (~1.2 GB; preparing the 4096x14336 Hessian from 262144
# tokens takes ~10 min on 2 cores). llm-compressor runs from the venv that
# tests/interop/llmcompressor_crosscheck.sh creates. Prints JSON lines.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
cache="${2:-/tmp/xquant-bench-algorithms}"
venv="${XQUANT_LLMC_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-interop-llmc}"
bench="$build/bin/bench_algorithms"
export OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2
for shape in 4096x4096 4096x14336; do
  [[ -f "$cache/$shape/meta.json" ]] || "$bench" prepare --cache "$cache/$shape" --shape "$shape" --tokens 262144
  for algo in rtn gptq gptq-static gptq-actorder awq smoothquant; do
    "$bench" run --cache "$cache/$shape" --algo "$algo" --threads 2
  done
  if [[ -x "$venv/bin/python" ]]; then
    "$venv/bin/python" "$here/bench_llmc_gptq.py" --cache "$cache/$shape" --threads 2 2>/dev/null | tail -1
    "$venv/bin/python" "$here/bench_llmc_gptq.py" --cache "$cache/$shape" --threads 2 --actorder 2>/dev/null | tail -1
  fi
done
