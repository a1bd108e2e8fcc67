#!/usr/bin/env bash
# Installs dependencies, then configures and builds xquant into ./build.
# Extra arguments go to CMake's configure step (e.g. -DXQUANT_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$(nproc)"
echo "setup: built ./build/bin/xquant"
