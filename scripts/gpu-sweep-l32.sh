#!/usr/bin/env bash
# gpu-sweep-l32.sh XQUANT_CLI OUT PART...: issue 9's serving sweep on the whole
# Llama-3.1-8B config (32 layers, random weights), split into parts that each
# fit one device call and can follow each other on the same warm machine:
#   models      make BF16, W4A16 g128, W8A8 INT8 and FP8 (RTN) unless an earlier
#               call on this machine left them in /tmp/gpueng-l31 (a 2-layer model
#               quantized, then its layers repeated: scripts/gpu-decode-bench.sh
#               FROM_LAYERS=2), and measure the device copy rate for the floor
#   batch1      `xquant bench` 128:256 at C = 1 (decode graphs, paged BF16 KV), with the HBM floor
#   c1-8        1024:1024 at C = 1, 8
#   c32-256     1024:1024 at C = 32, 128, 256
#   long        16384:512 at C = 1, 8
# Each part after `models` makes the models first when they are missing (a fresh machine).
# Tables on stdout; each part's JSON in OUT (stderr in /tmp/gpueng-sweep/PART).
set -uo pipefail
cli=${1:?usage: gpu-sweep-l32.sh XQUANT_CLI OUT PART...}
out=${2:?usage: gpu-sweep-l32.sh XQUANT_CLI OUT PART...}
shift 2
here=$(dirname "$0")
dir=/tmp/gpueng-l31  # gpu-decode-bench.sh's model directory
mkdir -p "$out"
have_models() { [ -f $dir/bf16/config.json ] && [ "$(python3 -c "import json;print(json.load(open('$dir/bf16/config.json'))['num_hidden_layers'])")" = 32 ] &&
  [ -f $dir/copy-gbs ]; }
make_models() {
  local t=$(date +%s)
  LAYERS=32 FROM_LAYERS=2 SCHEMES="w4a16 w8a8 fp8" SKIP_DECODE_SPEED=1 bash "$here/gpu-decode-bench.sh" "$cli" > "$out/models.log" 2>&1
  local rc=$?
  grep -E "quantize|inflate|copy:|FAILED" "$out/models.log"
  local gbs
  gbs=$(grep -o "copy: [0-9]*" "$out/models.log" | grep -o "[0-9]*")
  echo "models: rc=$rc, $(( $(date +%s) - t )) s; $(du -sh $dir 2>/dev/null | cut -f1) in $dir"
  # Only a complete set counts as made (have_models): a failed run is made again next part.
  if [ "$rc" = 0 ] && [ -n "$gbs" ]; then echo "$gbs" > $dir/copy-gbs; else echo "gpu-sweep-l32: making the models failed" >&2; exit 1; fi
}
serve() {  # serve NAME CONC LENGTHS
  local name=$1
  echo "== $name: C = $2, $3"
  local o=/tmp/gpueng-sweep/$name && mkdir -p $o
  OUT=$o XQUANT_BENCH_COPY_GBS=$(cat $dir/copy-gbs) SERVE_CONC=$2 SERVE_LENGTHS=$3 bash "$here/gpu-serve-bench.sh" "$cli" "$dir"
  cp $o/serve-bench.json "$out/$name.json" 2>/dev/null  # (a call brings back 8 files: the JSON only, the table is on stdout)
}
for part in "$@"; do
  have_models || make_models
  case $part in
    models) ;;
    batch1) serve batch1 1 128:256 ;;
    c1-8) serve c1-8 1,8 1024:1024 ;;
    c32-256) serve c32-256 32,128,256 1024:1024 ;;
    long) serve long 1,8 16384:512 ;;
    *) echo "gpu-sweep-l32: unknown part '$part'" >&2; exit 2 ;;
  esac
done
