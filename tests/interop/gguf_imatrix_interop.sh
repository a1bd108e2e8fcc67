#!/usr/bin/env bash
# gguf_imatrix_interop.sh: importance-weighted GGUF requantization against
# llama.cpp itself (built by scripts/fetch-llama-cpp.sh):
#   1. our weighted block encoders give the bytes of ggml's quantize_q4_0 ...
#      quantize_q6_K with quant_weights (ggml_imatrix_compare.cpp, two seeds);
#   2. llama-imatrix's own imatrix of stories260K weights our GGUF writer
#      (param imatrix: every requantized Linear says "weighted by imatrix");
#   3. the imatrix our calibrated run writes (param imatrix_out) is read by
#      llama-quantize --imatrix (it requantizes an F32 export with it);
#   4. perplexity, our engine and llama-perplexity on the same files, of
#      stories260K (and SmolLM2-135M when scripts/fetch-smollm2.sh has it)
#      requantized from RTN int8 per-channel to Q4_0 and Q4_K with and without
#      an importance matrix (printed, not asserted: a measurement; the two
#      engines must agree within 3% on every file, llama.cpp's 8-bit
#      activation rounding: see llamacpp_interop.py).
#
#   tests/interop/gguf_imatrix_interop.sh [BUILD_DIR]      (default: build)
#
# Exit status: 0 every check passed; 1 a check failed; 2 the repository is
# not built; 3 llama.cpp is not available (scripts/fetch-llama-cpp.sh); 4 the
# stories260K checks passed but SmolLM2 could not be fetched.
# 205 s in the full scope (XQUANT_INTEROP_FULL=1; session nine's CI dry run, 2 cores; 17 min at
# load average 8-12), 86-91 s in the default (CI) scope, which measures less on SmolLM2 (see
# step 4) and says so in a NOT CHECKED line.
# Environment: XQUANT_LLAMA_CPP_OFFLINE, XQUANT_SHARED_DIR, XQUANT_INTEROP_THREADS (default 2),
# XQUANT_INTEROP_FULL (1: every SmolLM2 measurement).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shared="${XQUANT_SHARED_DIR:-$repo/../shared}"
threads="${XQUANT_INTEROP_THREADS:-2}"
started=$SECONDS
xq="$build/bin/xquant"
stories="$shared/models/stories260K/stories260K.gguf"
calib="$shared/data/tinystories/tinystories_val.subset.txt"

[[ -x "$xq" ]] || { echo "gguf_imatrix_interop: $xq not found; build it first" >&2; exit 2; }
[[ -f "$stories" ]] || { echo "gguf_imatrix_interop: $shared/models not found" >&2; exit 2; }

rc=0
exports=$("$repo/scripts/fetch-llama-cpp.sh" --checks) || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "gguf_imatrix_interop: llama.cpp is not available (scripts/fetch-llama-cpp.sh exit $rc)" >&2
  exit 3
fi
eval "$exports"
bin="$XQUANT_LLAMA_CPP_BIN"
# The build folder holds the static libraries; the sources are beside it.
llama_build="$(cd "$bin/.." && pwd)"
llama_src="$(cd "$llama_build/../src" && pwd)"
smollm2=""
if smollm2_export=$("$repo/scripts/fetch-smollm2.sh" 2>/dev/null); then
  smollm2="${smollm2_export#export XQUANT_SMOLLM2_GGUF=}"
else
  echo "gguf_imatrix_interop: SmolLM2 not available (scripts/fetch-smollm2.sh): only stories260K is measured" >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/xquant-imatrix-interop.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# 1. Encoders against ggml.
nice "${CXX:-c++}" -O2 -std=c++20 -I"$repo/plugins/gguf_writer" -I"$repo/plugins/gguf" -I"$repo/sdk/include" \
  -I"$repo/abi/include" -I"$llama_src/ggml/include" "$here/ggml_imatrix_compare.cpp" \
  "$repo/plugins/gguf_writer/weighted_encode.cpp" "$repo/plugins/gguf_writer/block_encode.cpp" \
  "$repo/plugins/gguf/gguf_types.cpp" -o "$work/ggml_imatrix_compare" "$llama_build/ggml/src/libggml.a" \
  "$llama_build/ggml/src/libggml-cpu.a" "$llama_build/ggml/src/libggml-base.a" -fopenmp -lpthread -ldl -lm
for seed in 1 2; do
  echo "ggml_imatrix_compare seed $seed:"
  "$work/ggml_imatrix_compare" "$seed" || fail "our weighted encoders differ from ggml's (seed $seed)"
done

# A calibrated GPTQ pipeline into GGUF: int8 per-channel codes are on no GGUF
# grid of 4-5 bits, so every Linear is requantized to TYPE.
pipeline() {  # OUT MODEL TYPE EXTRA_PARAMS
  cat >"$1.yaml" <<YAML
model: {path: $2}
calibration: {text: $calib, samples: 32, seq_len: 256}
quantize:
  - {algorithm: gptq, weights: {bits: 8, symmetric: true, strategy: channel}}
ignore: [lm_head]
output: {format: gguf, path: $1, params: {type: $3$4}}
YAML
  "$xq" --threads "$threads" run "$1.yaml" >"$1.log" 2>&1 || { cat "$1.log"; return 1; }
}

# 2. llama-imatrix's file weights our writer.
"$bin/llama-imatrix" -m "$stories" -f "$calib" -c 128 --chunks 16 -t "$threads" -o "$work/llama.imatrix.gguf" \
  >"$work/llama-imatrix.log" 2>&1 || { tail -20 "$work/llama-imatrix.log"; fail "llama-imatrix failed"; }
if [[ -f "$work/llama.imatrix.gguf" ]]; then
  pipeline "$work/fed.gguf" "$stories" Q4_0 ", imatrix: $work/llama.imatrix.gguf" || fail "the pipeline with llama-imatrix's file failed"
  # Every requantized Linear (stories260K's 172-column down_proj rows hold
  # no whole 32-block and are written F32, exact).
  n=$(grep -c "weighted by imatrix" "$work/fed.gguf.log" || true)
  req=$(grep -c ": requantized " "$work/fed.gguf.log" || true)
  if [[ "$n" -gt 0 && "$n" -eq "$req" ]]; then echo "llama-imatrix's file weighted $n/$req requantized Linears"
  else fail "llama-imatrix's file weighted $n of $req requantized Linears"; fi
fi

# 3. llama-quantize reads the imatrix our run writes.
pipeline "$work/ours.gguf" "$stories" Q4_0 ", imatrix_out: $work/ours.imatrix.gguf" || fail "the imatrix_out pipeline failed"
"$xq" -q convert --model "$stories" --out "$work/f32.gguf" --format gguf --param type=F32 >/dev/null
if "$bin/llama-quantize" --imatrix "$work/ours.imatrix.gguf" "$work/f32.gguf" "$work/lq.gguf" Q4_0 \
    >"$work/lq.log" 2>&1; then
  grep -m1 "importance matrix entries" "$work/lq.log" || true
  grep -q "loaded 35 importance matrix entries" "$work/lq.log" || fail "llama-quantize did not load our 35 entries"
else
  tail -20 "$work/lq.log"; fail "llama-quantize --imatrix refused our imatrix"
fi

# 4. Perplexity with and without importance, both engines on each file:
# RTN int8 per-channel codes (on no 4-5-bit GGUF grid) converted to TYPE,
# with and without an importance matrix (`xquant convert --param imatrix=`):
# for stories260K the one our calibrated run wrote above, for SmolLM2 one
# llama-imatrix computes on WikiText-2 text after the evaluated slice.
head -c 40000 "$shared/data/wikitext-2-raw/wiki.test.raw" >"$work/wiki.txt"
python3 -c 'import sys; open(sys.argv[2], "wb").write(open(sys.argv[1], "rb").read()[400000:700000])' \
  "$shared/data/wikitext-2-raw/wiki.test.raw" "$work/wiki-calib.txt"
ppl_ours() {
  "$xq" -q --threads "$threads" eval --model "$1" --text "$work/wiki.txt" --protocol llama-perplexity --ctx "$2" \
    --chunks "$3" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["perplexity"])'
}
ppl_llama() {
  "$bin/llama-perplexity" -m "$1" -f "$work/wiki.txt" -c "$2" -b "$2" --chunks "$3" -t "$threads" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
measure() {  # TAG MODEL IMATRIX CTX CHUNKS TYPE...
  local tag="$1" model="$2" imatrix="$3" ctx="$4" chunks="$5"; shift 5
  echo "$tag source: perplexity ours $(ppl_ours "$model" "$ctx" "$chunks"), llama.cpp $(ppl_llama "$model" "$ctx" "$chunks")"
  "$xq" -q --threads "$threads" quantize --model "$model" --out "$work/$tag-ct" --format compressed-tensors \
    --algorithm rtn --bits 8 --sym --strategy channel >/dev/null
  local type with
  for type in "$@"; do
    for with in yes no; do
      local out="$work/$tag-$type-$with.gguf" params="type=$type"
      [[ "$with" == yes ]] && params+=",imatrix=$imatrix"
      "$xq" -q convert --model "$work/$tag-ct" --out "$out" --format gguf --param "$params" >/dev/null ||
        { fail "$tag $type (imatrix: $with): convert failed"; continue; }
      local a b; a="$(ppl_ours "$out" "$ctx" "$chunks")"; b="$(ppl_llama "$out" "$ctx" "$chunks")"
      echo "$tag RTN int8 -> $type, imatrix $with: perplexity ours $a, llama.cpp $b"
      # llama.cpp rounds activations to 8-bit blocks on a block-quantized file
      # (ggml-cpu's vec_dot_type), we multiply F32 activations: up to 1.49% on
      # SmolLM2 Q4_K, so the bound is llamacpp_interop.py's PPL_TOLERANCE_BLOCKS, 3%.
      python3 -c "import sys; a, b = float('$a'), float('$b'); sys.exit(0 if abs(a - b) / b <= 0.03 else 1)" ||
        fail "$tag $type (imatrix: $with): ours $a vs llama.cpp $b differ by more than 3%"
    done
  done
}
measure stories260K "$stories" "$work/ours.imatrix.gguf" 128 8 Q4_0 Q4_K
if [[ -n "$smollm2" ]]; then
  # CI scope: llama-imatrix on 16 chunks and Q4_K only (the K-quant is what
  # needs SmolLM2's 256-column rows; Q4_0 is measured on stories260K above).
  # XQUANT_INTEROP_FULL=1: 64 chunks, Q4_0 and Q4_K.
  smol_chunks=16 smol_types=(Q4_K)
  if [[ "${XQUANT_INTEROP_FULL:-0}" == 1 ]]; then
    smol_chunks=64 smol_types=(Q4_0 Q4_K)
  else
    echo "NOT CHECKED (CI scope; XQUANT_INTEROP_FULL=1 runs it): SmolLM2-135M Q4_0 with and without an imatrix (Q4_0 measured on stories260K), llama-imatrix on 16 chunks rather than 64"
  fi
  "$bin/llama-imatrix" -m "$smollm2" -f "$work/wiki-calib.txt" -c 256 --chunks "$smol_chunks" -t "$threads" \
    -o "$work/smollm2.imatrix.gguf" >"$work/smollm2-imatrix.log" 2>&1 || { tail -20 "$work/smollm2-imatrix.log"; fail "llama-imatrix on SmolLM2 failed"; }
  measure SmolLM2-135M "$smollm2" "$work/smollm2.imatrix.gguf" 256 4 "${smol_types[@]}"
fi

echo "gguf_imatrix_interop: $((SECONDS - started)) s in all"
if [[ $failures -ne 0 ]]; then echo "gguf_imatrix_interop: $failures check(s) failed"; exit 1; fi
echo "gguf_imatrix_interop: every check passed"
[[ -n "$smollm2" ]] || exit 4
