#!/usr/bin/env bash
# The whole test suite, as CI runs it: build, every GoogleTest suite through
# ctest (GPU suites skip without a GPU), then the installed-SDK checks
# (out-of-tree plugin built with find_package(xquant) and used by a pipeline,
# the C example, the Python package). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh "$@"
ctest --test-dir build --output-on-failure -j"$(nproc)"
./scripts/test-sdk.sh
