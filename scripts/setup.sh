#!/usr/bin/env bash
# Installs dependencies, then configures and builds xquant into ./build.
# Extra arguments go to CMake's configure step (e.g. -DXQUANT_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# The cuda provider is compiled to run (a compile-check configure left by
# scripts/test.sh on a machine without a GPU is undone; "$@" may set it again).
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXQUANT_CUDA_COMPILE_CHECK=OFF "$@"
cmake --build build -j"$(nproc)"
echo "setup: built ./build/bin/xquant"
