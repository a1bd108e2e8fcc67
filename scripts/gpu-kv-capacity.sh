#!/usr/bin/env bash
# gpu-kv-capacity.sh XQUANT_CLI OUT_DIR: issue 9's KV-capacity case on the
# Qwen3-32B config (64 layers, hidden 5120, 64 query / 8 KV heads of 128,
# intermediate 25600, vocabulary 151,936, q/k norms): how many concurrent
# 16k-token sequences fit a memory budget (weights + BF16 KV, `xquant bench
# --memory-budget-gb`, BUDGETS default "40 80": the issue's 40 GB, and an 80 GB card) with W4A16 g128 and W8A8 INT8
# weights, against BF16.
#
# The GPU machine's 64 GB disk cannot hold the 65.5 GB BF16 model, so a
# 2-layer random-weight model is generated with torch, quantized with
# `xquant quantize` (RTN; the files our writer makes), inflated to 64 layers
# by repeating its layers (scripts/inflate-layers.py) and loaded by `xquant
# bench` (random prompt ids, no tokenizer needed), whose JSON holds the
# device memory resident after load and the 16k-token sequences that fit
# (each model loaded once; every budget derived from that load with the same
# formula as `xquant bench`, and checked against its own figure).
# W4A16 is loaded twice: as is, and with XQUANT_CUDA_W4_HOPPER=0 (no second,
# Hopper-layout copy of each weight, docs/cuda.md "cuda-w4a16-wgmma"). BF16
# is loaded at 2 layers only; its 64-layer residency is that plus 62 layers'
# weight bytes, an estimate the table marks as such. One model on disk at a
# time (the 64-layer W8A8 file is about 35 GB). More than 5 minutes on an H100 (2026-12-06: a
# 300 s guard cut it in the W8A8 load; KV_SCHEMES=w4a16 about halves it).
set -uo pipefail
cli=${1:?usage: gpu-kv-capacity.sh XQUANT_CLI OUT_DIR}
out=${2:?usage: gpu-kv-capacity.sh XQUANT_CLI OUT_DIR}/kv-capacity
here=$(cd "$(dirname "$0")" && pwd)
dir=/tmp/gpueng-qwen3-32b
layers=64
budgets=${BUDGETS:-40 80}
rm -rf "$dir" && mkdir -p "$dir/bf16-2" "$out"

python3 "$here/random_checkpoint.py" qwen3-32b "$dir/bf16-2" --layers 2 --params-json "$dir/params.json" ||
  { echo "kv capacity: generating the 2-layer model failed"; exit 1; }

# KV_SCHEMES (default "w4a16 w8a8"): the quantized models measured beside BF16
# (w4a16 alone takes about half the time: the 64-layer W8A8 file is the largest).
schemes=" ${KV_SCHEMES:-w4a16 w8a8} "
wants() { [[ "$schemes" == *" $1 "* ]]; }
wants w4a16 && "$cli" quantize --model "$dir/bf16-2" --out "$dir/w4a16-2" --bits 4 --group-size 128 --sym 2>&1 | tail -1
wants w8a8 && "$cli" quantize --model "$dir/bf16-2" --out "$dir/w8a8-2" --w8a8 dynamic --sym 2>&1 | tail -1

# bench LABEL DIR [VAR=VALUE...]: one `xquant bench` (one load of the model), JSON
# into $out; the summary derives every budget from its resident bytes.
first_budget=${budgets%% *}
bench() {
  local label=$1 path=$2
  shift 2
  timeout 300 env "$@" "$cli" bench --provider cuda --models "$label=$path" --concurrency 1 --lengths 128:4 \
    --memory-budget-gb "$first_budget" --json "$out/$label.json" > /dev/null 2>> "$out/bench.err" ||
    { echo "kv capacity: $label failed:"; tail -3 "$out/bench.err"; return; }
  # Each result on stdout as soon as it is measured: a call that is cut short, or that returns
  # only some of its files, still has it (2026-12-06: the W4A16 JSON was left out that way).
  python3 -c "import json,sys; d=json.load(open(sys.argv[1]))[0]; print('kv capacity:', sys.argv[2], 'resident after load',
round(d['resident_after_load_gib'] * 2**30 / 1e9, 2), 'GB; 16k-token sequences in', d['kv_budget_gb'], 'GB:',
d['kv_budget_max_seqs_16k'])" "$out/$label.json" "$label" || true
}

bench bf16-2layers "$dir/bf16-2"
wants w4a16 && python3 "$here/inflate-layers.py" "$dir/w4a16-2" "$dir/w4a16" $layers && {
  bench w4a16 "$dir/w4a16"
  bench w4a16-no-hopper-copy "$dir/w4a16" XQUANT_CUDA_W4_HOPPER=0
}
rm -rf "$dir/w4a16"
wants w8a8 && python3 "$here/inflate-layers.py" "$dir/w8a8-2" "$dir/w8a8" $layers && bench w8a8 "$dir/w8a8"
rm -rf "$dir/w8a8"

python3 - "$out" "$dir/params.json" "$budgets" <<'PY' | tee "$out.txt"
import json, os, sys
out, params, budgets = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3].split()
GIB = 1 << 30


def seqs_16k(budget_gb, resident, per_block, block_size):
    # runtime/cli/cmd_bench.cpp: the budget less the resident bytes, in whole
    # KV blocks, over the blocks of one 16k-token sequence.
    blocks = max(0, int((budget_gb * 1e9 - resident) // per_block))
    return blocks // -(-16384 // block_size)


print("Qwen3-32B config, 64 layers, BF16 KV in the engine's blocks")
print("| weights | budget GB | resident after load GB | 16k-token sequences that fit | × BF16 |")
print("|---|---|---|---|---|")
runs = {}
for label in ("bf16", "w4a16", "w4a16-no-hopper-copy", "w8a8"):
    path = os.path.join(out, ("bf16-2layers" if label == "bf16" else label) + ".json")
    runs[label] = json.load(open(path))[0] if os.path.exists(path) else None
# The 64-layer model's KV block (every quantized run has one; the 2-layer BF16 run's is 32 times smaller).
quant = next((r for k, r in runs.items() if k != "bf16" and r), None)
for label, r in runs.items():
    for b in budgets:
        if not r or not quant:
            print(f"| {label} | {b} | (no run) | | |")
            continue
        resident, note = r["resident_after_load_gib"] * GIB, ""
        if label == "bf16":
            # 62 more layers of BF16 weights on top of the measured 2-layer residency.
            resident += 62 * params["layer_params"] * 2
            note = " (2 layers measured + 62 layers' bytes)"
        fit = seqs_16k(float(b), resident, quant["kv_bytes_per_block"], quant["kv_block_size"])
        if label != "bf16" and float(b) == r["kv_budget_gb"] and fit != r["kv_budget_max_seqs_16k"]:
            note += f" (xquant bench said {r['kv_budget_max_seqs_16k']})"
        base = None if not runs["bf16"] else seqs_16k(
            float(b), runs["bf16"]["resident_after_load_gib"] * GIB + 62 * params["layer_params"] * 2,
            quant["kv_bytes_per_block"], quant["kv_block_size"])
        ratio = "–" if label == "bf16" else ("BF16 fits none" if not base else f"{fit / base:.2f}×")
        print(f"| {label} | {b} | {resident / 1e9:.2f}{note} | {fit} | {ratio} |")
PY
