#!/usr/bin/env bash
# gpu-prefill-check.sh CLI TEST_CUDA_PROVIDER OUT [ENGINE_LOGITS]: on a GPU machine (called by
# scripts/gpu-engine-check.sh with GPUENG_PREFILL=1), the prefill attention
# of the cuda provider: FlashInfer's FA2 kernel where the build has it
# (plugins/cuda/src/flashinfer_prefill.hpp), else our tensor-core path
# (plugins/cuda/src/prefill_attention.cu):
#  1. their GPU tests (CudaFlashInferPrefill.*, CudaPrefillAttention.*, with
#     the decode kernel's CudaPagedAttention.*) against float64 references,
#     and those of the elementwise ops a prefill step runs
#     (CudaVectorElementwise.*, CudaFusedOps.*, CudaDecoderOps.*);
#  2. the 8192-token prefill of scripts/gpu-hf-compare.py --parts prefill
#     (8-layer Llama-3.1-8B config, random BF16 weights, BF16 KV cache) on
#     the default path beside cuBLAS, then the same `xquant bench` on the
#     baseline: by default our tensor-core kernel (XQUANT_FLASHINFER_PREFILL=0);
#     PREFILL_BASELINE=decode the decode-style kernel forced
#     (XQUANT_PREFILL_ATTENTION=0), PREFILL_BASELINE=before the step before
#     one CTA took a whole GQA group and SWIGLU/CONVERT went 16 bytes at a
#     time (XQUANT_PREFILL_GQA_FUSE=0 XQUANT_CUDA_VECTOR_ELEMENTWISE=0);
#  3. one more `xquant bench` of that prefill with XQUANT_OP_PROFILE=1 (every
#     op waited for): where the step's time goes, op by op;
#  4. with ENGINE_LOGITS (tests/interop/engine_logits.cpp) and not
#     PREFILL_LOGITS=0, the engine end to
#     end on that model, BF16 weights and BF16 KV: three prompts (20, 150 and
#     700 tokens) in one prefill step then 4 greedy steps, on the default
#     path and on the decode-style kernel; prints the logits' relative RMS difference and the greedy tokens
#     that differ (BF16 noise only; random weights make near-ties likely).
# About 150 s on an H200 (most of it writing and loading the 5.5 GB model; each load of it
# took over 15 s in the 2026-11-30 call, whose 18 s and 15 s limits cut parts 2b and 4);
# 85 s without part 4 (PREFILL_LOGITS=0) and with PREFILL_BENCH_TIMEOUT=30 in the
# 2026-12-01 call. Each part has a `timeout`, so partial results still come back.
set -uo pipefail
cli=${1:?usage: gpu-prefill-check.sh CLI TEST_CUDA_PROVIDER OUT}
ops=${2:?usage: gpu-prefill-check.sh CLI TEST_CUDA_PROVIDER OUT}
out=${3:?usage: gpu-prefill-check.sh CLI TEST_CUDA_PROVIDER OUT}
logits_bin=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
echo "== prefill attention kernel tests"
timeout 60 "$ops" --gtest_filter='CudaFlashInferPrefill.*:CudaPrefillAttention.*:CudaPagedAttention.*:CudaVectorElementwise.*:CudaFusedOps.*:CudaDecoderOps.*' \
  --gtest_also_run_disabled_tests 2>&1 | tee "$out/prefill-tests.log" |
  grep -E "^\[  (PASSED|FAILED) |Failure|Expected|Which is|rel_error|tests ran|H [0-9]|TFLOP|one CTA per" | tail -30
# gpu-hf-compare.py writes the model once (/tmp/hf-compare/l31-8layer) and measures cuBLAS beside
# the engine's TTFT; the decode-kernel run and the profile reuse that model through `xquant bench`.
echo "== prefill 8192 tokens: default attention path, beside cuBLAS"
mkdir -p "$out/prefill-tensor-core"
timeout 55 python3 "$here/gpu-hf-compare.py" --cli "$cli" --engine-logits /bin/true --out "$out/prefill-tensor-core" \
  --parts prefill 2>&1 | grep -v "^bench: " | tee "$out/prefill-tensor-core.log" | grep -E "prefill|ERROR"
model=/tmp/hf-compare/l31-8layer
bench() {  # bench JSON LOG [ENV...]: the same prefill as gpu-hf-compare.py's, graphs off
  local json=$1 log=$2; shift 2
  env "$@" XQUANT_DECODE_GRAPHS=0 timeout "${PREFILL_BENCH_TIMEOUT:-45}" "$cli" bench --models "bf16=$model" --concurrency 1 --lengths 8192:1 \
    --provider cuda --kv-dtype bf16 --max-step-tokens 8192 --json "$json" > "$log" 2>&1
}
if [ "${PREFILL_BASELINE:-ours}" = ours ]; then
  baseline_name="our tensor-core kernel, FlashInfer's prefill off"
  baseline_env=(XQUANT_FLASHINFER_PREFILL=0)
elif [ "${PREFILL_BASELINE}" = decode ]; then
  baseline_name="decode-style kernel forced"
  baseline_env=(XQUANT_PREFILL_ATTENTION=0 XQUANT_FLASHINFER_PREFILL=0)
else
  baseline_name="one CTA per query head, scalar SWIGLU/CONVERT"
  baseline_env=(XQUANT_PREFILL_GQA_FUSE=0 XQUANT_CUDA_VECTOR_ELEMENTWISE=0)
fi
if [ -s "$model/model.safetensors" ]; then
  echo "== prefill 8192 tokens: baseline, $baseline_name (${baseline_env[*]})"
  bench "$out/prefill-baseline.json" "$out/prefill-baseline.log" "${baseline_env[@]}"
  tail -3 "$out/prefill-baseline.log"
  echo "== op profile of the prefill step (default path; ops serialised, so slower than TTFT above)"
  bench "$out/prefill-profile.json" "$out/prefill-profile.log" XQUANT_OP_PROFILE=1
  grep -A30 "op profile.*8192:1" "$out/prefill-profile.log" | tail -24
fi
if [ -n "$logits_bin" ] && [ "${PREFILL_LOGITS:-1}" != 0 ] && [ -s "$model/model.safetensors" ]; then
  echo "== engine end to end, BF16 KV: default vs decode-style attention (same prompts)"
  python3 -c "
import random
random.seed(7)
for n in (20, 150, 700): print(','.join(str(random.randrange(3, 128000)) for _ in range(n)))" > /tmp/prefill-prompts.txt
  for v in 0 1; do
    XQUANT_PREFILL_ATTENTION=$v XQUANT_FLASHINFER_PREFILL=$v XQUANT_ENGINE_LOGITS_KV=bf16 XQUANT_DEVICE_WEIGHTS=bf16 timeout 45 "$logits_bin" "$model" cuda \
      /tmp/prefill-prompts.txt 4 "/tmp/prefill-logits-$v" > "$out/engine-logits-$v.log" 2>&1 || tail -3 "$out/engine-logits-$v.log"
  done
  python3 - <<'PY'
import json, numpy as np
try:
    a = [np.fromfile(f"/tmp/prefill-logits-{v}.f32", dtype=np.float32) for v in (0, 1)]
    j = [json.load(open(f"/tmp/prefill-logits-{v}.json")) for v in (0, 1)]
    V, S = j[0]["vocab"], j[0]["steps"] + 1
    a = [x.reshape(-1, S, V) for x in a]
    for p in range(a[0].shape[0]):
        d = np.sqrt(np.mean((a[1][p, 0] - a[0][p, 0]) ** 2) / np.mean(a[0][p, 0] ** 2))
        same = sum(x == y for x, y in zip(j[0]["tokens"][p], j[1]["tokens"][p]))
        print(f"prompt {p}: step-0 logits rel RMS diff {d:.2e}; greedy tokens equal {same}/{S}")
except Exception as e:
    print(f"engine A/B incomplete: {e!r}")
PY
fi
BASELINE_NAME=$baseline_name python3 - "$out" <<'PY'
import json, os, sys
o = sys.argv[1]
try:
    p = json.load(open(os.path.join(o, "prefill-tensor-core", "hf-compare.json")))["prefill"]
    print(f"default path: TTFT {p['ttft_s'] * 1e3:.1f} ms, linear {p['linear_tflops']:.0f} TFLOP/s, all {p['all_tflops']:.0f} "
          f"TFLOP/s, cuBLAS {p['cublas_bf16_tflops']:.0f}; ratio linear {p['linear_tflops'] / p['cublas_bf16_tflops']:.3f}, "
          f"all {p['all_tflops'] / p['cublas_bf16_tflops']:.3f}")
    d = json.load(open(os.path.join(o, "prefill-baseline.json")))
    t = d[0]["ttft_ms"]["p50"] if isinstance(d, list) else d["rows"][0]["ttft_ms"]["p50"]
    print(f"baseline ({os.environ.get('BASELINE_NAME', '')}): TTFT {t:.1f} ms; all-FLOP ratio "
          f"{p['all_tflops'] * p['ttft_s'] * 1e3 / t / p['cublas_bf16_tflops']:.3f}; "
          f"TTFT baseline / default = {t / (p['ttft_s'] * 1e3):.2f}x")
except Exception as e:
    print(f"prefill summary incomplete: {e!r}")
PY
