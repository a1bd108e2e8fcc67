#!/usr/bin/env bash
# Installs the Debian packages xquant builds with (see README "Dependencies").
# Idempotent: skips apt-get when everything is already installed.
set -euo pipefail
packages=(
  build-essential cmake pkg-config python3 python3-venv
  libboost-dev          # Boost.DLL: plugin loading
  libyaml-cpp-dev       # pipelines
  libspdlog-dev libfmt-dev  # logging
  nlohmann-json3-dev    # safetensors headers, config.json
  libgtest-dev          # tests
  libopenblas-dev       # float GEMM (cpu provider, GPTQ linear algebra)
  libpcre2-dev          # tokenizer pre-split regexes
  libflatbuffers-dev flatbuffers-compiler  # the xq container's manifest (abi/schema/xq.fbs)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
