#!/usr/bin/env bash
# gpu-pdl-bench.sh XQUANT_CLI [OUT_DIR]: batch-1 BF16 decode with and without
# Programmatic Dependent Launch (plugins/cuda/src/pdl.cuh) in one run, on
# the 8-layer Llama-3.1-8B-shaped random model of scripts/gpu-decode-bench.sh
# (made here, BF16_ONLY=1, with the device-to-device copy rate for the HBM
# floor). `xquant bench --concurrency 1 --lengths 128:256` (paged cache,
# decode steps replayed from CUDA graphs), one process per run, interleaved
# PDL_REPS times (default 3) over the variants:
#   off   XQUANT_CUDA_PDL=0 (plain launches, the previous behaviour)
#   on    PDL on the decode chain (the default; the GEMV's first weight
#         batch in registers before griddepcontrol.wait)
# and once each eagerly (XQUANT_DECODE_GRAPHS=0) with PDL off and on. Prints
# per variant the median TPOT p50, tok/s and share of the HBM floor.
# (scripts/gpu-engine-check.sh runs it with GPUENG_PDL=1.) On an H200 the
# model and copy rate take ~100 s on a fresh machine and each run ~10 s:
# give the whole ~250 s.
set -uo pipefail
cli=${1:?usage: gpu-pdl-bench.sh XQUANT_CLI [OUT_DIR]}
out=${2:-/tmp/gpu-pdl-out}
mkdir -p "$out"
dir=/tmp/gpueng-l31
here=$(dirname "$0")
reps=${PDL_REPS:-3}
if [ ! -d $dir/bf16 ] || [ ! -s $dir/copy_gbs ]; then
  BF16_ONLY=1 SKIP_DECODE_SPEED=1 LAYERS=${LAYERS:-8} timeout 120 bash "$here/gpu-decode-bench.sh" "$cli" 2>&1 | tee "$out/pdl-model.log"
  grep -o 'copy: [0-9]*' "$out/pdl-model.log" | grep -o '[0-9]*' > $dir/copy_gbs
fi
gbs=$(cat $dir/copy_gbs)
echo "copy rate: $gbs GB/s"
run() {  # run NAME ENV...
  local name=$1
  shift
  env "$@" timeout 90 "$cli" bench --provider cuda --models "bf16=$dir/bf16" --concurrency 1 --lengths 128:256 \
    --copy-gbs "$gbs" --json "$out/pdl-$name.json" > "$out/pdl-$name.txt" 2> "$out/pdl-$name.err" ||
    { echo "$name failed:"; tail -3 "$out/pdl-$name.err"; }
}
for r in $(seq 1 "$reps"); do
  run off-$r XQUANT_CUDA_PDL=0
  run on-$r XQUANT_CUDA_PDL=1
done
run eager-off-1 XQUANT_CUDA_PDL=0 XQUANT_DECODE_GRAPHS=0
run eager-on-1 XQUANT_CUDA_PDL=1 XQUANT_DECODE_GRAPHS=0
python3 - "$out" "$gbs" <<'PY' | tee "$out/pdl-summary.txt"
import glob, json, os, statistics, sys
out, gbs = sys.argv[1], float(sys.argv[2])
rows = {}
for f in sorted(glob.glob(f"{out}/pdl-*.json")):
    name = os.path.basename(f)[4:-5].rsplit("-", 1)[0]
    try:
        j = json.load(open(f))[0]
    except Exception as e:
        print(f"{f}: unreadable ({e})"); continue
    rows.setdefault(name, []).append(j)
print(f"batch-1 BF16 decode, 128:256, copy rate {gbs:.0f} GB/s")
print(f"{'variant':<10} {'runs':>4} {'TPOT p50 ms':>12} {'(each)':>24} {'tok/s':>8} {'% floor':>8} {'floor ms':>9}")
for name in ("off", "on", "eager-off", "eager-on"):
    js = rows.get(name)
    if not js: continue
    tpots = [j["tpot_ms"]["p50"] for j in js]
    t = statistics.median(tpots)
    floor_ms = js[0]["weight_bytes_per_token"] / (gbs * 1e9) * 1e3
    each = " ".join(f"{x:.3f}" for x in tpots)
    print(f"{name:<10} {len(js):>4} {t:>12.3f} {each:>24} {1e3 / t:>8.1f} {100 * floor_ms / t:>7.1f}% {floor_ms:>9.3f}")
PY
