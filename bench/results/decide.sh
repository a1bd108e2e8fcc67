#!/usr/bin/env bash
# decide.sh: the decision engine on stories260K (docs/results.md, "Decision
# engine"): `auto` at INT4 and INT3 (groups of 32) with a 1% perplexity
# target and the int8 + dense ladder; the knapsack and the greedy (measured
# damage) are compared with the plain weight-error ranking (straight to
# dense) on the bytes they keep dense; then the
# overhead: the example pipeline (KLD target, int8 + dense ladder) against
# one `xquant quantize --algorithm gptq` of the same model and calibration,
# timed in the same run (say the load next to it: the ratio is what counts).
#
#   bench/results/decide.sh [BUILD_DIR] [OUT_DIR]
#
# Prints one line per run; the reports (HTML + JSON) stay in OUT_DIR.
# About 10 minutes on 2 idle cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
out="${2:-$(mktemp -d "${TMPDIR:-/tmp}/xquant-decide.XXXXXX")}"
mkdir -p "$out"
xq="$build/bin/xquant"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
model="$shared/models/stories260K-hf"
tok="$shared/models/stories260K/stories260K.gguf"
calib="$shared/data/tinystories/tinystories_val.subset.txt"
wiki="$shared/data/wikitext-2-raw/wiki.test.raw"
cal=(--calibration "$calib" --tokenizer "$tok" --samples 32 --seq-len 256)

summary() {  # REPORT.json
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  float ppl {d['accuracy']['float']['ppl']:.4f} on {d['accuracy']['eval_tokens']} tokens; target {d['accuracy']['metric']} <= {d['accuracy']['target']:.5g}")
for v in d["variants"]:
    a = v["accuracy"]
    print(f"  variant {v['name']:<16} {v['source']:<9} bytes {v['bytes']:>9}  ppl {a['ppl']:.4f}  KLD {a['kld']:.5f}")
for m in d.get("fallback_methods", []):
    f = m["final"]; a = f["accuracy"]
    met = "settled" if m.get("settled") else str(m["met"])  # settled: stopped on the subset, cannot be written
    print(f"  fallback {m['method']:<12} met {met:<7} bytes {f['bytes']:>9} dense {f['dense_bytes']:>9}  ppl {a['ppl']:.4f}  KLD {a['kld']:.5f}  "
          f"evaluations {len(m['probes_subset'])}+{len(m['evaluated_all_tokens'])}  ({f['moved'] or 'none'})")
s = d["seconds"]
print("  seconds " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()) +
      f"; token x layer passes evaluated {d.get('layer_tokens_evaluated', 'n/a')}")
PY
}

for bits in 4 3; do
  echo "== stories260K auto INT$bits g32, ppl +1%, ladder int8,bf16 (load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$xq" -q quantize --model "$model" --out "$out/int$bits" --algorithm auto --bits "$bits" --group-size 32 "${cal[@]}" \
    --accuracy-text "$wiki" --metric ppl --max-increase 1% --fallback int8,bf16 --max-tokens 8192 --compare-baseline \
    --report "$out/int$bits.html" > /dev/null
  summary "$out/int$bits.json"
done

echo "== overhead: examples/auto-fallback.yaml vs one gptq run (load $(cut -d' ' -f1-3 /proc/loadavg))"
t0=$(date +%s.%N)
"$xq" -q quantize --model "$model" --out "$out/gptq" --algorithm gptq --bits 4 --group-size 32 "${cal[@]}" > /dev/null
t1=$(date +%s.%N)
"$xq" -q quantize --model "$model" --out "$out/example" --algorithm auto --bits 4 --group-size 32 "${cal[@]}" \
  --accuracy-text "$wiki" --metric kld --max-increase 0.02 --fallback int8,bf16 --max-tokens 8192 \
  --report "$out/example.html" > /dev/null
t2=$(date +%s.%N)
summary "$out/example.json"
python3 -c "g=$t1-$t0; a=$t2-$t1; print(f'  gptq {g:.1f} s, auto {a:.1f} s: {a/g:.2f}x (load now $(cut -d' ' -f1-3 /proc/loadavg))')"
echo "reports in $out"
