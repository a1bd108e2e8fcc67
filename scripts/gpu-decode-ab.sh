#!/usr/bin/env bash
# gpu-decode-ab.sh XQUANT_CLI BASELINE_PLUGIN OUT_DIR: batch-1 decode TPOT
# with this build's cuda plugin and with BASELINE_PLUGIN (a libxquant-cuda.so
# built from an earlier commit, e.g. the bundle's baseline/), interleaved
# model by model, round by round, in one call so both see the same machine
# state (a run cut short still leaves the pairs it finished).
#
# AB_MODELS: label=dir,... (default the bf16, w4a16-g128 and w8a8 models of
# scripts/gpu-decode-bench.sh); AB_ROUNDS (default 2); AB_LENGTHS (default
# 128:256, `xquant bench --lengths`); AB_CONC (default 1). The plugin file is
# swapped in place and put back at the end (also on failure).
set -uo pipefail
cli=${1:?usage: gpu-decode-ab.sh XQUANT_CLI BASELINE_PLUGIN OUT_DIR}
baseline=${2:?usage: gpu-decode-ab.sh XQUANT_CLI BASELINE_PLUGIN OUT_DIR}
out=${3:?usage: gpu-decode-ab.sh XQUANT_CLI BASELINE_PLUGIN OUT_DIR}
dir=/tmp/gpueng-l31
models=${AB_MODELS:-bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128,w8a8=$dir/w8a8}
plugin=$(dirname "$(dirname "$cli")")/lib/xquant/plugins/libxquant-cuda.so
[ -f "$plugin" ] || { echo "decode A/B: no cuda plugin at $plugin"; exit 1; }
[ -f "$baseline" ] || { echo "decode A/B: no baseline plugin at $baseline"; exit 1; }
current=$(mktemp)
cp "$plugin" "$current"
trap 'cp "$current" "$plugin"; rm -f "$current"' EXIT
mkdir -p "$out/decode-ab"
IFS=',' read -ra specs <<< "$models"
for round in $(seq 1 "${AB_ROUNDS:-2}"); do
  for spec in "${specs[@]}"; do
    label=${spec%%=*}
    path=${spec#*=}
    [ -d "$path" ] || continue
    for side in current baseline; do
      cp "$([ $side = current ] && echo "$current" || echo "$baseline")" "$plugin"
      timeout 120 "$cli" bench --provider cuda --models "$label=$path" --concurrency "${AB_CONC:-1}" \
        --lengths "${AB_LENGTHS:-128:256}" --json "$out/decode-ab/$label-$side-$round.json" > /dev/null \
        2> "$out/decode-ab/$label-$side-$round.err" || tail -3 "$out/decode-ab/$label-$side-$round.err"
    done
  done
done
python3 - "$out/decode-ab" "$models" "${AB_ROUNDS:-2}" <<'PY' | tee "$out/decode-ab.txt"
import json, sys
from pathlib import Path
d, models, rounds = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
print(f"{'model':14s} {'side':9s} " + " ".join(f"{'TPOT r' + str(r) + ' ms':>11s}" for r in range(1, rounds + 1)) + "  current / baseline")
for spec in models:
    label = spec.split("=", 1)[0]
    t = {}
    for side in ("current", "baseline"):
        t[side] = []
        for r in range(1, rounds + 1):
            f = d / f"{label}-{side}-{r}.json"
            t[side].append(json.loads(f.read_text())[0]["tpot_ms"]["p50"] if f.exists() else float("nan"))
    for side in ("current", "baseline"):
        ratio = ""
        if side == "current":
            b, c = min(t["baseline"]), min(t["current"])
            ratio = f"  {b / c:.3f}x faster (best of rounds)" if c == c and b == b else ""
        print(f"{label:14s} {side:9s} " + " ".join(f"{x:11.3f}" for x in t[side]) + ratio)
PY
