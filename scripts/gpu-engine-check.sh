#!/usr/bin/env bash
# gpu-engine-check.sh [BUNDLE]: on a GPU machine, unpack the bundle made by
# scripts/gpu-engine-bundle.sh (the build sits at the absolute path it was
# built at, so its tests find plugins and ../shared as on the build machine),
# then run in one go: the cuda provider's GPU suite (decoder ops against the
# CPU provider), the device-engine tests (GPU vs CPU on stories260K, W4A16),
# and `xquant generate/eval --provider cuda` next to `--provider cpu`; with
# GPUENG_HF=1 also scripts/gpu-hf-compare.py (the engine against transformers);
# GPUENG_DECODE, GPUENG_ATTN, GPUENG_ATTN_KERNELS, GPUENG_DECODE_PROFILE, GPUENG_DECODE_KERNELS, GPUENG_PAGED_OPS, GPUENG_PDL, GPUENG_BENCH, GPUENG_SERVE, GPUENG_KV_CAPACITY, GPUENG_PREFILL, GPUENG_MOE, GPUENG_MOE_W8A8, GPUENG_KERNELS, GPUENG_W4GEMV, GPUENG_W8GEMV, GPUENG_W4A8, GPUENG_FLASHINFER, GPUENG_FLASHINFER_ENGINE, GPUENG_STORED and GPUENG_AB add the checks and benchmarks below.
# Logs land in $OUT (default /tmp/gpu-engine-out).
set -uo pipefail
bundle=${1:-$(cd "$(dirname "$0")/.." && pwd)/.gpueng/bundle.tar.xz}
out=${OUT:-/tmp/gpu-engine-out}
mkdir -p "$out" /work/shared /tmp/gpueng
t0=$(date +%s)
tar -xJf "$bundle" -C /tmp/gpueng || exit 1
# The worktree the bundle was built in (its build keeps absolute paths).
wt=$(cat /tmp/gpueng/build-root 2>/dev/null || echo /work/wt-gpueng)
mkdir -p "$wt"
rm -rf "$wt/build" && cp -a /tmp/gpueng/build "$wt/build"
cp -a /tmp/gpueng/shared/. /work/shared/
rm -f /tmp/gpueng/deps/libxquant*  # libxquant finds its plugins beside itself: only the build's copy
export LD_LIBRARY_PATH=$wt/build/lib:/tmp/gpueng/deps
b=$wt/build
cli=$(find "$b" -name xquant -type f | head -1)
ops=$(find "$b" -name test_cuda_provider -type f | head -1)
eng=$(find "$b" -name test_device_engine -type f | head -1)
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/setup.log"
echo "== missing libraries (should be none)" | tee -a "$out/setup.log"
for f in "$cli" "$ops" "$eng" "$b"/lib/libxquant.so "$b"/lib/xquant/plugins/*.so; do ldd "$f" | grep "not found" | sed "s|^|$f: |"; done | tee -a "$out/setup.log"
ldd "$cli" >> "$out/setup.log"
# GPUENG_BASE=0 skips the correctness part below (suites, device engine, CLI) when a second
# call only adds benchmarks to a first one that ran it.
if [ "${GPUENG_BASE:-1}" = 1 ]; then
echo "== cuda provider GPU suite"
"$ops" 2>&1 | tee "$out/ops.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran" | tail -40
echo "== device engine"
"$eng" 2>&1 | tee "$out/engine.log" | grep -Ev "^\[ (RUN|       OK) " | tail -40
fp8=$(find "$b" -name test_device_fp8 -type f | head -1)
if [ -n "$fp8" ]; then
  echo "== FP8 W8A8 checkpoint on cuda vs cpu"
  "$fp8" 2>&1 | tee "$out/fp8.log" | grep -Ev "^\[ (RUN|       OK) " | tail -20
fi
paged=$(find "$b" -name test_paged_engine -type f | head -1)
if [ -n "$paged" ]; then
  echo "== paged KV cache + continuous batching (cpu and cuda)"
  "$paged" 2>&1 | tee "$out/paged.log" | grep -Ev "^\[ (RUN|       OK) " | tail -30
fi
graphs=$(find "$b" -name test_decode_graphs -type f | head -1)
if [ -n "$graphs" ]; then
  echo "== decode steps replayed from CUDA graphs vs eager"
  "$graphs" 2>&1 | tee "$out/graphs.log" | grep -Ev "^\[ (RUN|       OK) " | tail -20
fi
echo "== CLI"
gguf=/work/shared/models/stories260K/stories260K.gguf
text=/work/shared/data/tinystories/tinystories_val.subset.txt
j=/tmp/gpueng/json && mkdir -p $j
for p in cpu cuda; do
  "$cli" generate --model "$gguf" --prompt "Once upon a time" -n 64 --provider $p --json > $j/generate-$p.json 2> $j/generate-$p.err
  echo "$p generate rc=$?"; tail -3 $j/generate-$p.err
  "$cli" eval --model "$gguf" --text "$text" --ctx 256 --max-tokens 4096 --provider $p --json > $j/eval-$p.json 2> $j/eval-$p.err
  echo "$p eval rc=$?"; tail -3 $j/eval-$p.err
done
python3 - $j <<'PY' 2>&1 | tee "$out/cli-summary.txt"
import json, sys
o = sys.argv[1]
g = {p: json.load(open(f"{o}/generate-{p}.json")) for p in ("cpu", "cuda")}
e = {p: json.load(open(f"{o}/eval-{p}.json")) for p in ("cpu", "cuda")}
same = g["cpu"]["tokens"] == g["cuda"]["tokens"]
print("greedy 64 tokens identical:", same, "| first diff at", next((i for i, (a, b) in enumerate(zip(g["cpu"]["tokens"], g["cuda"]["tokens"])) if a != b), None))
print("cuda text:", g["cuda"]["text"][:300].replace("\n", " "))
for p in ("cpu", "cuda"):
    print(f"{p}: ppl {e[p]['perplexity']:.6f} over {e[p]['tokens_scored']} tokens, {e[p]['tokens_per_second']:.0f} tok/s eval, decode {g[p]['decode_tokens_per_second']:.0f} tok/s")
print("ppl ratio cuda/cpu - 1 = %.2e" % (e["cuda"]["perplexity"] / e["cpu"]["perplexity"] - 1))
PY
w4=/tmp/gpueng/shared/models/stories260K-w4a16-g32
if [ -d "$w4" ]; then
  echo "== W4A16 compressed-tensors on cuda" | tee -a "$out/cli-summary.txt"
  "$cli" generate --model "$w4" --tokenizer "$gguf" --prompt "Once upon a time" -n 64 --provider cuda 2>&1 | tee -a "$out/cli-summary.txt" | tail -8
  for p in cuda cpu; do
    echo "W4A16 eval on $p:" | tee -a "$out/cli-summary.txt"
    "$cli" eval --model "$w4" --tokenizer "$gguf" --text "$text" --ctx 256 --max-tokens 4096 --provider $p 2>&1 | tee -a "$out/cli-summary.txt" | tail -4
  done
fi
fi  # GPUENG_BASE
# Optional (GPUENG_STORED=1): what the stored cuda layouts buy an xq W4A16 file: compressed-tensors
# against xq with and without the Hopper GEMM's copy (`cuda-wgmma`), and stacked adoption
# (scripts/gpu-stored-layouts.sh: TTFT at 2048 tokens, TPOT, open to first token; ~3 min with 8 layers).
if [ "${GPUENG_STORED:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-stored-layouts.sh" "$cli" "$out" 2>&1 | tee "$out/stored-layouts.log"; fi
# Optional, and first of the optional parts (a correctness check must not be the one a timeout cuts):
# the engine against transformers (scripts/gpu-hf-compare.py): logits and greedy tokens on
# random-weight checkpoints of real configs, HF generate beside `xquant bench` (decode graphs off and
# on), prefill beside cuBLAS. GPUENG_HF_PARTS picks parts (default logits,generate,prefill);
# GPUENG_HF_COMPILE=1 also times transformers' compiled generate (minutes of compile).
if [ "${GPUENG_HF:-0}" = 1 ]; then
  hf_compile=()
  [ "${GPUENG_HF_COMPILE:-0}" = 1 ] && hf_compile=(--hf-compile)
  python3 "$(dirname "$0")/gpu-hf-compare.py" --cli "$cli" --out "$out" --parts "${GPUENG_HF_PARTS:-logits,generate,prefill}" \
    "${hf_compile[@]}" --engine-logits "$(find "$b" -name xquant_engine_logits -type f | head -1)" 2>&1 | grep -v "^bench: " | tee "$out/hf-compare.log"
fi
# Optional: the batch-1 decode kernels (scripts/gpu-decode-check.sh: split-K ATTENTION, BF16 few-row
# MATMUL; their tests, engine A/B against the previous kernels, device times; ~15 s).
if [ "${GPUENG_DECODE:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-decode-check.sh" "$b" "$out" 2>&1 | tee "$out/decode.log"; fi
# Optional (GPUENG_ATTN=1): the split-K decode attention endings (XQUANT_DECODE_ATTENTION_ONE_PASS=1 the default, 2, 0)
# (scripts/gpu-attn-check.sh: tests, then device time per call of the three endings in one run; ~30 s, up to 80 s more with the engine binaries).
if [ "${GPUENG_ATTN:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-attn-check.sh" "$b" "$out" 2>&1 | tee "$out/attn.log"; fi
# Optional (GPUENG_ATTN_KERNELS=1): the split-K attention's two kernels, dim-lanes and key-per-lane, and the
# automatic choice between them (scripts/gpu-attn-kernels.sh: tests, engine tests, device time per call, then
# `xquant bench` on a BF16 Llama-3.1-8B-shaped model and its W4A16 copy with key-per-lane and auto, interleaved).
if [ "${GPUENG_ATTN_KERNELS:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-attn-kernels.sh" "$b" "$out" 2>&1 | tee "$out/attn-kernels.log"; fi
# Optional (GPUENG_DECODE_PROFILE=1): where a batch-1 decode step's time goes (scripts/gpu-decode-profile.sh:
# each op's device time from CUDA event pairs, no per-op synchronisation; contiguous and paged caches; the
# fused ROPE_KV, 16-byte norms and ARGMAX against the previous ops in the same run). With GPUENG_BASE=0 it
# runs their kernel and engine tests first; that whole call (tests, the BF16 and W4A16 models, the profile)
# took 182 s on an H200 (2026-12-01).
if [ "${GPUENG_DECODE_PROFILE:-0}" = 1 ]; then
  if [ "${GPUENG_BASE:-1}" != 1 ]; then
    echo "== decode-step kernels and engine tests (ROPE_KV, 16-byte norms)"
    timeout 40 "$ops" --gtest_filter='CudaRopeKv.*:CudaRowNorms.*:CudaArgmaxVec.*:CudaDecoderOps.*:CudaFusedOps.*:CudaDecodeAttention.*:CudaVectorElementwise.*' \
      2>&1 | tee "$out/decode-profile-ops.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|ROPE_KV q|tests ran"
    timeout 60 "$eng" --gtest_filter='DeviceEngine.*:DeviceDecodeStepOps.*:-*Moe*' 2>&1 | tee "$out/decode-profile-engine.log" |
      grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran"
    g=$(find "$b" -name test_decode_graphs -type f | head -1)
    [ -n "$g" ] && timeout 30 "$g" 2>&1 | tee "$out/decode-profile-graphs.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|tests ran"
  fi
  [ -d /tmp/gpueng-l31/w4a16-g128 ] || W4_ONLY=1 timeout 90 bash "$(dirname "$0")/gpu-decode-bench.sh" "$cli" 2>&1 | tail -4
  bash "$(dirname "$0")/gpu-decode-profile.sh" "$cli" "$out"
fi
# Optional (GPUENG_DECODE_KERNELS=1): every kernel of a graphed batch-1 decode step with its own device
# time from Nsight Compute, beside the plain TPOT (scripts/gpu-decode-kernels.sh); makes the decode
# bench's models first unless REUSE_MODELS=1 finds them (LAYERS, SCHEMES as gpu-decode-bench.sh).
if [ "${GPUENG_DECODE_KERNELS:-0}" = 1 ]; then
  SKIP_DECODE_SPEED=1 SCHEMES="${SCHEMES:-w8a8 fp8}" bash "$(dirname "$0")/gpu-decode-bench.sh" "$cli" 2>&1 | tail -6
  bash "$(dirname "$0")/gpu-decode-kernels.sh" "$cli" "$out"
fi
# Optional (GPUENG_PAGED_OPS=1): the decode step's small ops (scripts/gpu-paged-ops-check.sh: ROPE_KV's
# paged and q/k-norm forms, their kernel and engine tests, DeviceEngine, the paged engine and graphs, then
# `xquant bench` 128:256 at C = 1, 8 on BF16 and W4A16 with the current ops and XQUANT_ROPE_KV=0 in one
# run, and the decode profile if time is left; cut to PAGED_OPS_BUDGET_S, default 170 s).
if [ "${GPUENG_PAGED_OPS:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-paged-ops-check.sh" "$b" "$out" 2>&1 | tee "$out/paged-ops.log"; fi
# Optional (GPUENG_PDL=1): batch-1 BF16 decode with Programmatic Dependent Launch off and on,
# interleaved in one run (scripts/gpu-pdl-bench.sh; ~3 min on a fresh H200).
if [ "${GPUENG_PDL:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-pdl-bench.sh" "$cli" "$out" 2>&1 | tee "$out/pdl.log"; fi
# Optional: the decode benchmark (scripts/gpu-decode-bench.sh) when present.
if [ "${GPUENG_BENCH:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-decode-bench.sh" "$cli" 2>&1 | tee "$out/bench.log"; fi
# Optional (GPUENG_AB=1, a bundle made with GPUENG_BASELINE_DIR): the same call on a baseline cuda plugin
# built from an earlier commit: its test_cuda_provider's attention timings (DISABLED_Speed* of the split-K
# attention tests) beside this build's, then, when GPUENG_BENCH made the decode benchmark's models (in this
# call or an earlier one on the same machine), those timed again with the baseline plugin in place of this
# build's, which is put back afterwards.
if [ "${GPUENG_AB:-0}" = 1 ] && [ -d /tmp/gpueng/baseline ]; then
  speed='CudaSplitKOnePass.DISABLED_Speed*:CudaDecodeAttention.DISABLED_Speed*'
  for side in current baseline; do
    bin=$ops && [ $side = baseline ] && bin=/tmp/gpueng/baseline/test_cuda_provider
    echo "== attention device time per call, $side plugin"
    timeout 90 "$bin" --gtest_also_run_disabled_tests --gtest_filter="$speed" 2>&1 | tee "$out/ab-attn-$side.log" |
      grep -Ev "^\[ (RUN|       OK) "
  done
  if [ -f /tmp/gpueng-l31/bf16/config.json ]; then
    plugin=$b/lib/xquant/plugins/libxquant-cuda.so
    cp "$plugin" /tmp/gpueng/current-cuda.so && cp /tmp/gpueng/baseline/libxquant-cuda.so "$plugin"
    echo "== decode benchmark on the baseline plugin (same models)"
    REUSE_MODELS=1 bash "$(dirname "$0")/gpu-decode-bench.sh" "$cli" 2>&1 | tee "$out/bench-baseline.log"
    cp /tmp/gpueng/current-cuda.so "$plugin"
  else
    echo "== decode benchmark on the baseline plugin: skipped (no models: run with GPUENG_BENCH=1)"
  fi
fi
# Optional: open-to-first-token on cuda, xq (stored cuda layouts) vs compressed-tensors
# (bench/engine/gpu_load_time.sh; reuses the decode bench's model when it ran).
if [ "${GPUENG_LOADTIME:-0}" = 1 ]; then
  bash "$(dirname "$0")/../bench/engine/gpu_load_time.sh" "$cli" 2>&1 | tee "$out/load_time.log"
fi
# Optional (GPUENG_FLASHINFER_ENGINE=1): FlashInfer's decode and prefill as the engine's PAGED_ATTENTION
# (scripts/gpu-flashinfer-engine.sh: its tests, the engine suites and transformers comparison, the
# 32-layer bench with it off and on; 290 s on an H100, bounded by FI_BUDGET_S).
if [ "${GPUENG_FLASHINFER_ENGINE:-0}" = 1 ]; then bash "$(dirname "$0")/gpu-flashinfer-engine.sh" "$b" "$out" 2>&1 | tee "$out/flashinfer-engine.log"; fi
# Optional: the serving benchmark (scripts/gpu-serve-bench.sh) over the models the decode bench made.
if [ "${GPUENG_SERVE:-0}" = 1 ]; then
  XQUANT_BENCH_COPY_GBS=$(grep -o "copy: [0-9]*" "$out/bench.log" 2>/dev/null | grep -o "[0-9]*" || echo 0) \
    bash "$(dirname "$0")/gpu-serve-bench.sh" "$cli" 2>&1 | tee "$out/serve.log"
fi
# Optional: issue 9's KV-capacity case on the Qwen3-32B config (scripts/gpu-kv-capacity.sh, ~4 min).
if [ "${GPUENG_KV_CAPACITY:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-kv-capacity.sh" "$cli" "$out" 2>&1 | tee "$out/kv-capacity.log"
fi
# Optional: the tensor-core prefill attention (scripts/gpu-prefill-check.sh): its kernel tests and
# those of the elementwise ops, the 8192-token prefill beside cuBLAS and beside the same step with
# the previous kernel and scalar ops (PREFILL_BASELINE=decode: the decode-style kernel), and an op
# profile (~150 s; 85 s with PREFILL_LOGITS=0 PREFILL_BENCH_TIMEOUT=30).
if [ "${GPUENG_PREFILL:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-prefill-check.sh" "$cli" "$ops" "$out" "$(find "$b" -name xquant_engine_logits -type f | head -1)" \
    2>&1 | tee "$out/prefill.log"
fi
# Optional: the fused-MoE kernel benchmark (W4A16 and dense BF16 moe_qmatmul vs BF16 per-expert
# and grouped GEMMs, Qwen3-30B-A3B and Mixtral expert shapes; 35 s on an H200 before the BF16
# column, 2026-11-30) and the engine's MoE throughput; with GPUENG_BASE=0 the MoE tests first.
if [ "${GPUENG_MOE:-0}" = 1 ]; then
  if [ "${GPUENG_BASE:-1}" != 1 ]; then  # the suites did not run above: their MoE tests (~20 s)
    echo "== MoE tests (cuda provider, device engine)"
    timeout "${GPUENG_MOE_TESTS_S:-60}" "$ops" --gtest_filter='*Moe*' 2>&1 | tee "$out/moe-ops.log" |
      grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran" | tail -20
    timeout "${GPUENG_MOE_TESTS_S:-60}" "$eng" --gtest_filter='*MoeDevice*' 2>&1 | tee "$out/moe-engine-tests.log" |
      grep -Ev "^\[ (RUN|       OK) " | tail -30
  fi
  timeout "${GPUENG_MOE_BENCH_S:-300}" python3 "$(dirname "$0")/../bench/cuda/bench_moe.py" --shim "$b/lib/libxqc_shim.so" \
    --plugin "$b/lib/xquant/plugins/libxquant-cuda.so" --out "$out" --tokens-per-expert "${GPUENG_MOE_TOKENS:-4,16,32,64,128,256,512,1024}" \
    ${GPUENG_MOE_BENCH_ARGS:-} 2>&1 | tee "$out/moe-bench.log" | grep -v '^  {' | tail -40
  # MoE layers in the engine: a Qwen3-30B-A3B-shaped model (4 layers), BF16 vs W4A16 experts,
  # graphed / eager / per-expert loop, through `xquant bench --provider cuda` (bench/engine/gpu_moe_engine.sh).
  # GPUENG_MOE_ENGINE=0 leaves it out (~70 s) when only the kernels are measured;
  # GPUENG_MOE_BENCH_ARGS passes bench_moe.py options (e.g. "--skip bf16_loop", ~25 s less).
  if [ "${GPUENG_MOE_ENGINE:-1}" = 1 ]; then
    OUT=$out timeout "${GPUENG_MOE_ENGINE_S:-240}" bash "$(dirname "$0")/../bench/engine/gpu_moe_engine.sh" "$cli" 2>&1 |
      tee "$out/moe-engine.log" | tail -30
  fi
fi
# Optional (GPUENG_MOE_W8A8=1): the fused W8A8 INT8 MoE GEMM's tests and its bench_moe.py column
# (scripts/gpu-moe-w8a8.sh; 48 s with a memcheck step on an H200, 2026-12-01).
# With GPUENG_MOE=1 too, its bench_moe.py run above already has the W8A8 column: only the tests run here.
if [ "${GPUENG_MOE_W8A8:-0}" = 1 ]; then
  [ "${GPUENG_MOE:-0}" = 1 ] && export MOE_W8_BENCH_S=0
  bash "$(dirname "$0")/gpu-moe-w8a8.sh" "$b" "$out" 2>&1 | tee "$out/moe-w8a8.log"
fi
# Optional (GPUENG_KERNELS=1): the quantized-GEMM kernels' GPU checks and benchmarks.
if [ "${GPUENG_KERNELS:-0}" = 1 ]; then
  # -- W4A16 on Hopper (scripts/gpu-w4-hopper.sh: tests, bench/cuda/bench_w4_hopper.py, ncu at M=64) --
  bash "$(dirname "$0")/gpu-w4-hopper.sh" "$b" "$out" 2>&1 | tee "$out/w4-hopper.log"
  # -- end W4A16 on Hopper --
fi
# ---- GPUENG_KERNELS: W8A8 (INT8, FP8) GEMMs (scripts/gpu-w8a8.sh: their tests with every CUTLASS
# configuration forced, then bench/cuda/bench_w8a8.py: cuBLASLt + scaling pass, auto, each CUTLASS
# configuration, torch; four shapes x M = 1..4096).
if [ "${GPUENG_KERNELS:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-w8a8.sh" "$b" "$out" 2>&1 | tee "$out/w8a8.log"
fi
# ---- end GPUENG_KERNELS W8A8
# Optional (GPUENG_W4GEMV=1): the W4A16 GEMVs for M <= 8 (scripts/gpu-w4-gemv.sh: their tests, the
# W4A16 suite, bench/cuda/bench_w4_gemv.py at M = 1..8: fused GEMM vs split GEMV v1, v2 vs streaming
# v3, a compact table last; ~1 min).
if [ "${GPUENG_W4GEMV:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-w4-gemv.sh" "$b" "$out" 2>&1 | tee "$out/w4-gemv.log"
fi
# Optional (GPUENG_W8GEMV=1): the few-row W8A8 kernel (INT8, FP8) QMATMUL takes at M <= 8
# (scripts/gpu-w8-gemv.sh: its tests and the W8A8 suites, bench/cuda/bench_w8_gemv.py).
if [ "${GPUENG_W8GEMV:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-w8-gemv.sh" "$b" "$out" 2>&1 | tee "$out/w8-gemv.log"
fi
# Optional (GPUENG_W4A8=1): the Hopper W4A8-FP8 GEMM (scripts/gpu-w4a8.sh: its tests, then
# bench/cuda/bench_w4a8.py against W4A16 and torch bf16 at M = 1..4096 on four shapes).
if [ "${GPUENG_W4A8:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-w4a8.sh" "$b" "$out" 2>&1 | tee "$out/w4a8.log"
fi
# Optional (GPUENG_FLASHINFER=1): FlashInfer's paged decode (CUDA-core and tensor-core) and FA2 prefill
# attention against ours (scripts/gpu-flashinfer-decode.sh: bench/cuda/flashinfer_decode.cu, bundled where it was built).
if [ "${GPUENG_FLASHINFER:-0}" = 1 ]; then
  bash "$(dirname "$0")/gpu-flashinfer-decode.sh" "$b" "$out" 2>&1 | tee "$out/flashinfer.log"
fi
echo "== wall $(( $(date +%s) - t0 )) s"
