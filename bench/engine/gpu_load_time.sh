#!/usr/bin/env bash
# gpu_load_time.sh XQUANT_CLI [RUNS]: on the GPU machine, the time from
# `open` to the first generated token on the `cuda` provider, the native xq
# container against compressed-tensors, for one W4A16 g128 quantization of a
# random-weight Llama-3.1-8B-shaped model (LAYERS layers, default 8), with
# the bytes each load repacked.
#
# The model comes from scripts/gpu-decode-bench.sh (W4_ONLY=1: BF16 weights
# generated on the device with torch, then `xquant quantize --bits 4
# --group-size 128 --sym`, RTN, lm_head left BF16), reused when that script
# already made it in this run. `xquant convert` turns the compressed-tensors
# copy into xq (same canonical tensors; the writer adds the cpu and cuda
# packed layouts). Then `xquant generate -n 1 --provider cuda` runs on each
# file RUNS times (default 3), alternating, after one warm-up each (both
# files in the page cache), and the script prints the median wall time of
# each (process start, plugin loading, CUDA context, open, weight load and
# upload, prefill of the prompt and one token), the bytes repacked and
# stored from the engine's load log line, and the ratio ct / xq. Dense
# weights go to the GPU as BF16 in both (XQUANT_DEVICE_WEIGHTS=bf16). The
# vocabulary is Llama 3's (llama.cpp's models/ggml-vocab-llama-bpe.gguf,
# 128256 tokens, which scripts/gpu-engine-bundle.sh carries to
# /work/shared/models/llama-vocabs; LOADTIME_TOKENIZER overrides): the
# random model has none. About 80 s with 8 layers on an H200 (model 23 s,
# convert 24 s, 8 runs, 9 with LOADTIME_HOST_ROUTE=1). Every run logs its load phases
# (XQUANT_LOAD_PHASES=1, runtime/engine/load_phases.cpp: runtime and
# plugins, checkpoint open, kernel provider, embedding, layers, lm_head,
# upload, tokenizer, generate; "exit" is the rest of the wall time), and the
# script prints each phase's median per format. LOADTIME_HOST_ROUTE=1 adds
# one xq run with the dense tables read through the host
# (XQUANT_DEVICE_TABLES=host, the route before they were uploaded as
# stored), its phases printed. LOADTIME_CT=DIR times an existing
# compressed-tensors checkpoint instead, and LOADTIME_PROVIDER (default
# cuda) another provider: `LOADTIME_CT=ct LOADTIME_PROVIDER=cpu` is a dry
# run of the script on any machine.
set -euo pipefail
cli=${1:?usage: gpu_load_time.sh XQUANT_CLI [RUNS]}
runs=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=/tmp/gpueng-l31
vocab=${LOADTIME_TOKENIZER:-/work/shared/models/llama-vocabs/ggml-vocab-llama-bpe.gguf}
provider=${LOADTIME_PROVIDER:-cuda}
ct=${LOADTIME_CT:-$dir/w4a16-g128}
xq=${ct%/}.xq
[ -s "$vocab" ] || { echo "gpu_load_time: tokenizer $vocab missing (LOADTIME_TOKENIZER)" >&2; exit 2; }
if [ ! -f "$ct/config.json" ]; then
  t=$(date +%s)
  W4_ONLY=1 bash "$root/scripts/gpu-decode-bench.sh" "$cli"
  echo "model + W4A16 quantize: $(( $(date +%s) - t )) s"
fi
rm -f "$xq"
t=$(date +%s)
"$cli" convert --model "$ct" --out "$xq" --format xq > /dev/null
echo "convert to xq: $(( $(date +%s) - t )) s"
echo "sizes: compressed-tensors $(du -sb "$ct" | cut -f1) bytes, xq $(stat -c %s "$xq") bytes"

export XQUANT_DEVICE_WEIGHTS=bf16 XQUANT_LOAD_PHASES=1
phases=$(mktemp -d)
trap 'rm -rf "$phases"' EXIT
# one_run FILE [PHASES_OUT]: prints "<seconds> <repacked bytes> <stored bytes>";
# appends "<phase>\t<seconds>" lines (and the exit) to PHASES_OUT.
one_run() {
  local start end log repacked stored
  log=$(mktemp)
  start=$(date +%s.%N)
  if ! "$cli" generate --model "$1" --tokenizer "$vocab" --prompt "Once upon a time" -n 1 --provider "$provider" > /dev/null 2> "$log"; then
    echo "gpu_load_time: generate on $1 failed:" >&2
    tail -5 "$log" >&2
    rm -f "$log"
    return 1
  fi
  end=$(date +%s.%N)
  repacked=$(sed -n 's/.*: \([0-9]*\) bytes repacked at load.*/\1/p' "$log" | tail -n1)
  stored=$(sed -n 's/.*, \([0-9]*\) bytes taken as stored.*/\1/p' "$log" | tail -n1)
  if [ -n "${2:-}" ]; then
    sed -n "s/.*load phase '\([^']*\)': \([0-9.]*\) s (at \([0-9.]*\) s).*/\1\t\2\t\3/p" "$log" |
      awk -F '\t' -v total="$(awk -v a="$end" -v b="$start" 'BEGIN {print a - b}')" \
        '{print $1 "\t" $2; last = $3} END {if (NR) printf "exit (after the last phase)\t%.3f\n", total - last}' >> "$2"
  fi
  rm -f "$log"
  echo "$(awk -v a="$end" -v b="$start" 'BEGIN {printf "%.3f", a - b}') ${repacked:-?} ${stored:-?}"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

one_run "$ct" > /dev/null
one_run "$xq" > /dev/null
ct_times=() xq_times=()
for _ in $(seq "$runs"); do
  read -r t ct_repacked ct_stored < <(one_run "$ct" "$phases/ct")
  ct_times+=("$t")
  read -r t xq_repacked xq_stored < <(one_run "$xq" "$phases/xq")
  xq_times+=("$t")
done
ct_med=$(printf '%s\n' "${ct_times[@]}" | median)
xq_med=$(printf '%s\n' "${xq_times[@]}" | median)
[ "$provider" = cuda ] && nvidia-smi --query-gpu=name --format=csv,noheader || true
echo "runs ct: ${ct_times[*]}"
echo "runs xq: ${xq_times[*]}"
printf 'compressed-tensors  open->first token on %s  median %.3f s over %d runs  bytes repacked %s, stored %s\n' "$provider" "$ct_med" "$runs" "$ct_repacked" "$ct_stored"
printf 'xq                  open->first token on %s  median %.3f s over %d runs  bytes repacked %s, stored %s\n' "$provider" "$xq_med" "$runs" "$xq_repacked" "$xq_stored"
awk -v a="$ct_med" -v b="$xq_med" 'BEGIN {printf "ratio ct/xq: %.2f\n", a / b}'
# Median seconds of each phase over the runs, in load order, per format.
phase_medians() {
  awk -F '\t' '!($1 in seen) {seen[$1] = 1; order[++n] = $1} {v[$1] = v[$1] " " $2}
    END {for (i = 1; i <= n; ++i) print order[i] "\t" v[order[i]]}' "$1" |
  while IFS=$'\t' read -r name values; do
    printf '  %-40s %s s\n' "$name" "$(printf '%s\n' $values | median)"
  done
}
for f in ct xq; do
  [ -s "$phases/$f" ] || continue
  echo "load phases, $f (median over $runs runs):"
  phase_medians "$phases/$f"
done
if [ "${LOADTIME_HOST_ROUTE:-0}" = 1 ]; then
  read -r t _ _ < <(XQUANT_DEVICE_TABLES=host one_run "$xq" "$phases/xq-host")
  echo "xq with the tables read through the host (XQUANT_DEVICE_TABLES=host), one run: $t s"
  phase_medians "$phases/xq-host"
fi
