#!/usr/bin/env bash
# gpu-moe-ncu.sh BUILD_DIR OUT_DIR: where one fused W8A8 INT8 MoE call's time
# goes, kernel by kernel, against torch's grouped BF16 GEMM on the same shape
# (issue 14's W8A8 ≥ 1.5× target at ≥ 256 tokens per expert, missed on the
# Qwen3-30B-A3B shapes). Nsight Compute profiles, from bench/cuda/bench_moe.py
# at MOE_NCU_TPE (default 256) tokens per expert of MOE_NCU_MODEL (default
# qwen3-30b-a3b), both projections:
#   1. the kernels of the first W8A8 `moe_qmatmul` call of each projection
#      (the sort, the row quantization, the grouped CUTLASS GEMM, the scatter
#      or combine), with every other column skipped;
#   2. the first torch._grouped_mm kernel of each projection, alone.
# Sections: SpeedOfLight, ComputeWorkloadAnalysis, Occupancy, LaunchStats
# (so the GEMMs' durations are at ncu's locked clocks unless
# MOE_NCU_CLOCKS=none; their ratio is what matters). Raw reports in
# OUT_DIR/moe-ncu-*.txt; the key lines on stdout. About 2 minutes on an H100.
set -uo pipefail
b=${1:?usage: gpu-moe-ncu.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-moe-ncu.sh BUILD_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu_bin" ] || { echo "moe ncu: no ncu on this machine, nothing measured"; exit 1; }
plugin=$b/lib/xquant/plugins/libxquant-cuda.so
shim=$(find "$b" -name 'libxqc_shim.so' | head -1)
model=${MOE_NCU_MODEL:-qwen3-30b-a3b}
tpe=${MOE_NCU_TPE:-256}
all=w4_fused,bf16_fused,bf16_loop,bf16_grouped,w4_mma,w4_grouped,w4_grouped64,w8_fused,w8_coop,w8_pingpong
# skip_all_but KEY: every column but KEY (the W8A8 ping-pong probe is skipped with its column).
skip_all_but() { echo ",$all," | sed "s/,$1,/,/; s/^,//; s/,$//"; }
profile() {  # LABEL PROJECTION KEEP_COLUMN KERNEL_REGEX LAUNCHES [bench_moe.py options]
  local label=$1 proj=$2 keep=$3 regex=$4 count=$5
  shift 5
  timeout "${MOE_NCU_S:-150}" "$ncu_bin" --clock-control "${MOE_NCU_CLOCKS:-base}" --kernel-name "regex:$regex" \
    --launch-count "$count" --section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy \
    --section LaunchStats python3 "$here/../bench/cuda/bench_moe.py" --shim "$shim" --plugin "$plugin" --out "$out" \
    --models "$model" --projs "$proj" --tokens-per-expert "$tpe" --skip "$(skip_all_but "$keep")" "$@" > "$out/moe-ncu-$label.txt" 2>&1 ||
    echo "moe ncu: $label ended with $? (report cut short?)"
  echo "== $label: $model $proj, $tpe tokens per expert (ncu, clocks ${MOE_NCU_CLOCKS:-base})"
  grep -E "^  [a-zA-Z_].*\(|^    Duration|Compute \(SM\) Throughput|DRAM Throughput|Memory Throughput|Issue Slots Busy|SM Busy|Achieved Occupancy|Registers Per Thread|Grid Size|Block Size|Dynamic Shared Memory Per Block" \
    "$out/moe-ncu-$label.txt" | sed -E 's/(cutlass::[A-Za-z_:]+)<.*/\1<...>/' | cut -c1-160 | head -${MOE_NCU_LINES:-120}
}
# The first W8A8 call of a projection: the sort (1 or 3 kernels), the row quantization (1 or 2), the
# GEMM, the scatter (gate|up) or the combine (down): at most 7 launches (moe_w8a8_rows.cu, moe_w8a8_sm90.cuh).
w8_kernels='k_sort|k_quantize|k_gather|k_scatter|k_combine|device_kernel'
# torch's grouped GEMM: the first two launches whose names look like a GEMM (the columns skipped,
# --no-w8: only elementwise kernels run before them): torch 2.11's prepare_grouped_gemm_data, then the
# CUTLASS kernel (H100, 2026-12-06).
bf16_kernels='device_kernel|grouped|Grouped|gemm|Gemm'
for proj in ${MOE_NCU_PROJS:-gate_up down}; do
  profile "w8a8-$proj" "$proj" w8_fused "$w8_kernels" 7
  profile "bf16-grouped-$proj" "$proj" bf16_grouped "$bf16_kernels" 2 --no-w8
done
