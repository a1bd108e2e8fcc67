#!/usr/bin/env bash
# gpu-flashinfer-engine.sh BUILD OUT: FlashInfer's decode and prefill as the
# engine's PAGED_ATTENTION (plugins/cuda/src/flashinfer_decode.hpp,
# flashinfer_prefill.hpp), on the GPU machine
# after scripts/gpu-engine-check.sh unpacked the bundle, most important first,
# each part bounded by the time left of FI_BUDGET_S (default 480):
#   1. its kernel tests through the ABI (plan_paged_step, run_op, a recording
#      launched under later plans; its prefill's too) and the paged / split-K
#      attention tests;
#   2. the paged engine and decode-graph suites (cpu and cuda);
#   3. the engine against transformers on random-weight Llama-3.1 / Qwen2 /
#      Qwen3 / Mistral configs (scripts/gpu-hf-compare.py --parts logits
#      --kv-dtype bf16: BF16 pools, which FlashInfer's kernels need; a
#      prefill step of four prompts through its FA2 prefill, then 16 decode
#      steps from CUDA graphs through its decode for the group-4 configs,
#      ours for Qwen2-7B's group of 7);
#   (3 runs 4-row decode steps: XQUANT_FLASHINFER_DECODE_MIN_ROWS=1 there, so
#   FlashInfer serves them as it serves 8 rows and more by default; 2 runs
#   stories260K, whose head_dim of 8 FlashInfer's kernels do not take: it
#   checks that the plans leave our kernels' steps as they were)
#   4. `xquant bench` on the 32-layer Llama-3.1-8B config (BF16, W4A16 g128),
#      XQUANT_FLASHINFER_DECODE=0 (our kernels) and 1 at every row count
#      (MIN_ROWS=1), interleaved per model, at C = FI_CONC (default 1,8,64),
#      FI_LENGTHS (default 1024:256); FI_SWITCH=XQUANT_FLASHINFER_PREFILL
#      compares its prefill off / on instead; FI_BENCH=0 leaves it out (a
#      call that checks correctness only), FI_CHECKS=0 leaves out 1-3.
set -uo pipefail
b=${1:?usage: gpu-flashinfer-engine.sh BUILD OUT}
out=${2:?usage: gpu-flashinfer-engine.sh BUILD OUT}
here=$(dirname "$0")
t0=$(date +%s)
budget=${FI_BUDGET_S:-480}
left() { echo $(( budget - ($(date +%s) - t0) )); }
bounded() {  # bounded SECONDS CMD...: at most SECONDS, never past the budget
  local s=$1; shift
  local l=$(left)
  [ "$l" -gt 10 ] || { echo "(skipped, budget spent: $*)"; return 124; }
  timeout $(( s < l ? s : l )) "$@"
}
summary() { grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran|error" | tail -25; }
if [ "${FI_CHECKS:-1}" != 0 ]; then  # FI_CHECKS=0: part 4 alone (a call after one that ran 1-3)
echo "== 1. FlashInfer decode and prefill kernel tests + paged attention tests ($(left) s left)"
bounded 90 "$b/bin/test_cuda_provider" --gtest_filter='CudaFlashInferDecode.*:CudaFlashInferPrefill.*:CudaPagedAttention*:CudaSplitKOnePass.*:CudaSplitKKernels.*' \
  2>&1 | tee "$out/fi-ops.log" | summary
echo "== 2. paged engine + decode graphs ($(left) s left)"
XQUANT_FLASHINFER_DECODE_MIN_ROWS=1 bounded 60 "$b/bin/test_paged_engine" 2>&1 | summary
XQUANT_FLASHINFER_DECODE_MIN_ROWS=1 bounded 40 "$b/bin/test_decode_graphs" 2>&1 | summary
echo "== 3. engine vs transformers, logits + greedy ($(left) s left)"
XQUANT_FLASHINFER_DECODE_MIN_ROWS=1 bounded 200 python3 "$here/gpu-hf-compare.py" --cli "$b/bin/xquant" --out "$out" --parts logits --kv-dtype bf16 \
  --engine-logits "$b/bin/xquant_engine_logits" 2>&1 | grep -v "^bench: " | tail -14
fi
if [ "${FI_BENCH:-1}" = 0 ]; then echo "gpu-flashinfer-engine: $(( $(date +%s) - t0 )) s (part 4 left out: FI_BENCH=0)"; exit 0; fi
echo "== 4. xquant bench, FlashInfer decode off / on ($(left) s left)"
dir=/tmp/gpueng-l31
if [ ! -f $dir/w4a16-g128/config.json ] || [ "$(python3 -c "import json;print(json.load(open('$dir/bf16/config.json'))['num_hidden_layers'])" 2>/dev/null)" != 32 ]; then
  LAYERS=32 FROM_LAYERS=2 SCHEMES="w4a16" W4_ONLY=1 bounded 120 bash "$here/gpu-decode-bench.sh" "$b/bin/xquant" 2>&1 | tail -3
fi
# FI_SWITCH=XQUANT_FLASHINFER_PREFILL compares FlashInfer's prefill off / on instead (decode at its default).
switch=${FI_SWITCH:-XQUANT_FLASHINFER_DECODE}
min_rows=1
[ "$switch" = XQUANT_FLASHINFER_DECODE ] || min_rows=8
for m in bf16=$dir/bf16 w4a16-g128=$dir/w4a16-g128; do
  for use_fi in 0 1; do
    echo "-- ${m%%=*}, $switch=$use_fi ($(left) s left)"
    export "$switch=$use_fi" XQUANT_FLASHINFER_DECODE_MIN_ROWS=$min_rows
    bounded 150 "$b/bin/xquant" bench --models "$m" --concurrency "${FI_CONC:-1,8,64}" \
      --lengths "${FI_LENGTHS:-1024:256}" --provider cuda --kv-dtype bf16 --json "$out/bench-${m%%=*}-fi$use_fi.json" \
      2> /tmp/fi-bench.err | grep -v "^model "
    grep -iE "error|fail" /tmp/fi-bench.err | tail -2
  done
done
echo "gpu-flashinfer-engine: $(( $(date +%s) - t0 )) s"
