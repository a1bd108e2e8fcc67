#!/usr/bin/env bash
# gpu-decode-knobs.sh XQUANT_CLI OUT_DIR: decode TPOT (batch 1 unless
# KNOB_CONCURRENCY says otherwise) of the same models under several environment settings of this build (a knob's values),
# interleaved model by model, round by round, in one call so every setting
# sees the same machine state; the table gives each setting's TPOT per round
# and the first setting's best over its own (> 1: faster than the first).
# gpu-decode-ab.sh does the same for two plugin builds.
#
# KNOBS: label=VAR=VALUE[@VAR=VALUE...],... (the first is the reference;
# default: the BF16 GEMV with one warp a row, then four, bf16_gemv.hpp);
# KNOB_MODELS: label=dir,... (default the bf16, w4a16-g128 and w8a8
# models of scripts/gpu-decode-bench.sh); KNOB_ROUNDS (2); KNOB_LENGTHS
# (128:256, `xquant bench --lengths`); KNOB_CONCURRENCY (1, `xquant bench
# --concurrency`: requests at once, so decode steps of up to that many rows).
set -uo pipefail
cli=${1:?usage: gpu-decode-knobs.sh XQUANT_CLI OUT_DIR}
out=${2:?usage: gpu-decode-knobs.sh XQUANT_CLI OUT_DIR}
dir=/tmp/gpueng-l31
models=${KNOB_MODELS:-bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128,w8a8=$dir/w8a8}
knobs=${KNOBS:-s1=XQUANT_BF16_GEMV_SPLIT=1,s4=XQUANT_BF16_GEMV_SPLIT=4}
rounds=${KNOB_ROUNDS:-2}
mkdir -p "$out/decode-knobs"
IFS=',' read -ra specs <<< "$models"
IFS=',' read -ra settings <<< "$knobs"
for round in $(seq 1 "$rounds"); do
  for spec in "${specs[@]}"; do
    label=${spec%%=*}
    path=${spec#*=}
    [ -d "$path" ] || { echo "decode knobs: $label: $path missing, skipped"; continue; }
    for setting in "${settings[@]}"; do
      side=${setting%%=*}
      IFS='@' read -ra envs <<< "${setting#*=}"
      timeout 120 env "${envs[@]}" "$cli" bench --provider cuda --models "$label=$path" --concurrency "${KNOB_CONCURRENCY:-1}" \
        --lengths "${KNOB_LENGTHS:-128:256}" --json "$out/decode-knobs/$label-$side-$round.json" > /dev/null \
        2> "$out/decode-knobs/$label-$side-$round.err" || tail -3 "$out/decode-knobs/$label-$side-$round.err"
    done
  done
done
python3 - "$out/decode-knobs" "$models" "$knobs" "$rounds" <<'PY' | tee "$out/decode-knobs.txt"
import json, os, sys
from pathlib import Path
d, models, knobs, rounds = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3].split(","), int(sys.argv[4])
sides = [k.split("=", 1)[0] for k in knobs]
print("settings: " + "; ".join(knobs) + f"; concurrency {os.environ.get('KNOB_CONCURRENCY', '1')}")
print(f"{'model':14s} {'setting':10s} " + " ".join(f"{'TPOT r' + str(r) + ' ms':>11s}" for r in range(1, rounds + 1))
      + f"  {sides[0]} / setting (best of rounds)")
for spec in models:
    label = spec.split("=", 1)[0]
    best = {}
    for side in sides:
        t = []
        for r in range(1, rounds + 1):
            f = d / f"{label}-{side}-{r}.json"
            t.append(json.loads(f.read_text())[0]["tpot_ms"]["p50"] if f.exists() else float("nan"))
        best[side] = min(t)
        ratio = best[sides[0]] / best[side] if best[side] == best[side] else float("nan")
        print(f"{label:14s} {side:10s} " + " ".join(f"{x:11.3f}" for x in t) + f"  {ratio:.3f}x")
PY
