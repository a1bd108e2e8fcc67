#!/usr/bin/env bash
# gpu-stored-layouts.sh XQUANT_CLI OUT_DIR: on the GPU machine, what the
# cuda provider's stored layouts buy an `xq` W4A16 file: the same W4A16 g128
# model (scripts/gpu-decode-bench.sh's random Llama-3.1-8B-shaped one, LAYERS
# layers, default 8) as compressed-tensors (every weight packed at load,
# the Hopper GEMM's copy made by the provider), as xq with the default layouts
# (cpu,cuda: taken as stored, no Hopper copy, so 64 rows and more run the
# older kernels) and as xq with `cuda-wgmma` too (the Hopper copy taken from
# the file), with q|k|v and gate|up adopted stacked (the default) and the
# default-layout file also one by one (XQUANT_STACK_STORED=0). For each:
# `xquant bench` (prefill-heavy TTFT at 2048 prompt tokens and decode TPOT,
# concurrency 1 and 16) and the wall time of `generate -n 1` (open to first
# token, one warm-up first). Needs the tokenizer gpu-engine-bundle.sh carries
# (Llama 3's vocabulary).
set -uo pipefail
cli=${1:?usage: gpu-stored-layouts.sh XQUANT_CLI OUT_DIR}
out=${2:?usage: gpu-stored-layouts.sh XQUANT_CLI OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=/tmp/gpueng-l31
vocab=/work/shared/models/llama-vocabs/ggml-vocab-llama-bpe.gguf
ct=$dir/w4a16-g128
mkdir -p "$out/stored-layouts"
if [ ! -f "$ct/config.json" ]; then
  t=$(date +%s)
  W4_ONLY=1 bash "$root/scripts/gpu-decode-bench.sh" "$cli" 2>&1 | tail -3
  echo "model + W4A16 quantize: $(( $(date +%s) - t )) s"
fi
for v in default:cpu,cuda wgmma:cpu,cuda,cuda-wgmma; do
  name=${v%%:*}
  t=$(date +%s)
  rm -f "$dir/w4-$name.xq"
  "$cli" convert --model "$ct" --out "$dir/w4-$name.xq" --format xq --param "layouts=${v#*:}" > /dev/null ||
    { echo "convert ($name) failed"; exit 1; }
  echo "convert to xq, layouts ${v#*:}: $(( $(date +%s) - t )) s, $(stat -c %s "$dir/w4-$name.xq") bytes"
done
echo "compressed-tensors: $(du -sb "$ct" | cut -f1) bytes"
# label|environment|path: one model per bench process, so XQUANT_STACK_STORED applies at its load.
runs=("ct||$ct" "xq||$dir/w4-default.xq" "xq-unstacked|XQUANT_STACK_STORED=0|$dir/w4-default.xq" "xq-wgmma||$dir/w4-wgmma.xq")
for r in "${runs[@]}"; do
  IFS='|' read -r label envs path <<< "$r"
  # shellcheck disable=SC2086
  timeout 150 env $envs "$cli" bench --provider cuda --models "$label=$path" --concurrency 1,16 --lengths 2048:64 \
    --json "$out/stored-layouts/$label.json" 2> "$out/stored-layouts/$label.err" | grep -v "^bench: " ||
    tail -5 "$out/stored-layouts/$label.err"
  grep -h "taken as stored\|repacked at load" "$out/stored-layouts/$label.err" | tail -1
done
one_run() {  # PATH [VAR=VALUE...]: wall seconds of `generate -n 1` on PATH with those variables set
  local model=$1 s e
  shift
  s=$(date +%s.%N)
  env "$@" "$cli" generate --model "$model" --tokenizer "$vocab" --prompt "Once upon a time" -n 1 --provider cuda \
    > /dev/null 2> "$out/stored-layouts/generate.err" || { tail -3 "$out/stored-layouts/generate.err"; echo "nan"; return; }
  e=$(date +%s.%N)
  awk -v a="$e" -v b="$s" 'BEGIN {printf "%.3f", a - b}'
}
if [ -s "$vocab" ]; then
  for r in "${runs[@]}"; do
    IFS='|' read -r label envs path <<< "$r"
    # shellcheck disable=SC2086
    one_run "$path" XQUANT_DEVICE_WEIGHTS=bf16 $envs > /dev/null
    # shellcheck disable=SC2086
    echo "open -> first token, $label: $(one_run "$path" XQUANT_DEVICE_WEIGHTS=bf16 $envs) s, $(one_run "$path" XQUANT_DEVICE_WEIGHTS=bf16 $envs) s"
  done
else
  echo "open -> first token: skipped (no tokenizer at $vocab)"
fi
python3 - "$out/stored-layouts" <<'PY'
import json, os, sys
d = sys.argv[1]
print("| model | C | TTFT p50 ms | TPOT p50 ms | output tok/s | peak GiB |")
print("|---|---|---|---|---|---|")
for label in ("ct", "xq", "xq-unstacked", "xq-wgmma"):
    p = f"{d}/{label}.json"
    if not os.path.exists(p): continue
    for r in json.load(open(p)):  # `xquant bench --json` writes a list of rows
        print(f"| {label} | {r['concurrency']} | {r['ttft_ms']['p50']:.1f} | {r['tpot_ms']['p50']:.3f} | {r['output_tok_s']:.0f} | {r['peak_device_gib']:.2f} |")
PY
