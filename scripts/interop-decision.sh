#!/usr/bin/env bash
# Decides whether scripts/test.sh runs the compressed-tensors interop
# (tests/interop/ct_interop.sh): prints "run", or "skip: <reason>".
#
# Its venv (PyPI torch with CUDA wheels, ~5.6 GB, plus pip's cache) goes to
# ${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant-interop}. A venv
# already there is reused and needs no room. Otherwise the free space is
# measured where the venv will be created: at its nearest existing folder,
# since on a fresh machine ~/.cache does not exist yet and df cannot measure
# a missing folder.
#   XQUANT_SKIP_INTEROP=1     skip on purpose
#   XQUANT_INTEROP_NEED_GB=N  the room a new venv needs (default 12)
set -euo pipefail
venv="${XQUANT_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant-interop}"
need_gb="${XQUANT_INTEROP_NEED_GB:-12}"
if [ "${XQUANT_SKIP_INTEROP:-0}" = 1 ]; then
  echo "skip: XQUANT_SKIP_INTEROP=1"
  exit 0
fi
if [ -x "$venv/bin/python" ]; then
  echo "run"
  exit 0
fi
dir="$venv"
[[ "$dir" = /* ]] || dir="$PWD/$dir"
while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
if ! [[ "$free_kb" =~ ^[0-9]+$ ]]; then
  echo "skip: df could not measure the free space at $dir (where the venv $venv would go)"
elif [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
  echo "skip: a new venv at $venv needs $need_gb GB; $dir has $((free_kb / 1024 / 1024)) GB free"
else
  echo "run"
fi
