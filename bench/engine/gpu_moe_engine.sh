#!/usr/bin/env bash
# gpu_moe_engine.sh XQUANT_CLI: Mixture-of-Experts serving throughput of the
# engine on the `cuda` provider (engine/moe_device.cpp) for a random-weight
# Qwen3-30B-A3B-shaped model with fewer layers (MOE_LAYERS, default 4):
# BF16 experts against W4A16 g128 experts (RTN, `xquant quantize --bits 4
# --group-size 128 --sym`, router left dense), through `xquant bench
# --provider cuda`, three ways in one run:
#   - graphs: the default (fused moe_qmatmul for both, decode steps replayed
#     from CUDA graphs);
#   - eager: the same with XQUANT_DECODE_GRAPHS=0;
#   - loop: BF16 experts through the per-expert loop (XQUANT_MOE_PER_EXPERT=1,
#     eager: it downloads the expert ids), the path BF16 experts took before
#     the grouped BF16 GEMM.
# The summary adds the weight bytes one token reads (top-k experts per layer,
# the floor) and the weight bytes read per second that implies at C = 1.
#
# Shapes are Qwen3-30B-A3B's config.json (hidden 2048, 128 experts of 768,
# top-8 normalised, 32 query / 4 KV heads of 128, q/k norms) with a
# 512-token vocabulary (MOE_VOCAB) so the MoE layers, not lm_head, dominate
# a step. Weights are generated on the GPU with torch (N(0, 0.02), norms 1)
# and written as BF16 safetensors; nothing is downloaded. Concurrency
# MOE_CONC (default 1,16), lengths MOE_LENGTHS (default 128:64). About 40 s
# on an H200 with 4 layers for one bench run (model 11 s, quantize 9 s,
# bench 20 s; 2026-11-30); the three runs add ~30 s.
set -euo pipefail
cli=${1:?usage: gpu_moe_engine.sh XQUANT_CLI}
layers=${MOE_LAYERS:-4}
vocab=${MOE_VOCAB:-512}
dir=${MOE_DIR:-/tmp/gpueng-moe}
rm -rf "$dir" && mkdir -p "$dir/bf16"
t=$(date +%s)
python3 "$(dirname "$0")/../../scripts/random_checkpoint.py" qwen3-30b-a3b "$dir/bf16" --layers "$layers" --vocab "$vocab"
echo "model: $(( $(date +%s) - t )) s"
t=$(date +%s)
"$cli" quantize --model "$dir/bf16" --out "$dir/w4a16-g128" --bits 4 --group-size 128 --sym 2>&1 | tail -2
echo "quantize W4A16: $(( $(date +%s) - t )) s"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
run() {  # run LABEL MODELS [ENV...]: one `xquant bench`, its JSON as $dir/moe-engine-LABEL.json
  local label=$1 models=$2
  shift 2
  echo "== $label"
  env "$@" "$cli" bench --models "$models" --provider cuda --concurrency "${MOE_CONC:-1,16}" \
    --lengths "${MOE_LENGTHS:-128:64}" --json "$dir/moe-engine-$label.json" 2>&1 | grep -v "^bench: .*step"
  [ -n "${OUT:-}" ] && cp "$dir/moe-engine-$label.json" "$OUT/" || true  # kept if a later run is cut short
}
run graphs "bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128"
run eager "bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128" XQUANT_DECODE_GRAPHS=0
run loop "bf16-loop=$dir/bf16" XQUANT_DECODE_GRAPHS=0 XQUANT_MOE_PER_EXPERT=1
python3 - "$dir" <<'PY' | tee "$dir/moe-engine-summary.md"
import json, sys
d = sys.argv[1]
rows = []
for label in ("loop", "eager", "graphs"):
    try:
        rows += [(label, r) for r in json.load(open(f"{d}/moe-engine-{label}.json"))]
    except Exception as e:
        print(f"{label}: no results ({e})")
base = {r["concurrency"]: r["output_tok_s"] for l, r in rows if l == "loop"}
print("| experts | path | C | out tok/s | x BF16 loop | launch share | weight MB/token (top-k) | all weights MB | GB/s at C=1 |")
print("|---|---|---|---|---|---|---|---|---|")
for label, r in rows:
    c, ts = r["concurrency"], r["output_tok_s"]
    wb = r["weight_bytes_per_token"]
    gbs = f"{ts * wb / 1e9:.0f}" if c == 1 else ""
    x = f"{ts / base[c]:.2f}" if base.get(c) else ""
    print(f"| {r['model']} | {label} | {c} | {ts:.1f} | {x} | {r['launch_share'] * 100:.0f}% | {wb / 1e6:.1f} | "
          f"{r.get('weight_bytes_total', 0) / 1e6:.0f} | {gbs} |")
PY
[ -n "${OUT:-}" ] && cp "$dir/moe-engine-summary.md" "$OUT/" || true
