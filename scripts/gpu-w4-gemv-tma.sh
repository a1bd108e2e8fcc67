#!/usr/bin/env bash
# gpu-w4-gemv-tma.sh [OUT_DIR]: on a GPU machine with nvcc (no project build needed), the TMA-ring
# W4A16 GEMV v4 (plugins/cuda/src/w4a16_gemv_tma.cu) through bench/cuda/w4_gemv_tma_harness.cu:
# builds the harness with the layout packer, the fused GEMM and the streaming GEMV v3 (sm_90a,
# ptxas reports in OUT/ptxas.log), then its correctness check (every case of
# tests/cuda/test_w4a16_gemv.cpp, M = 1..8, CPU reference), the bench (bf16 cuBLAS, fused, v3,
# v4, copy bandwidth; four shapes x M = 1, 2, 4, 8), a v4 sweep of ring stages x blocks per SM
# (W4T_SWEEP_SHAPES, W4T_SWEEP_MS; with pure-read and ring-only baselines) and, where ncu reads
# counters (Firecracker machines), one v4 launch at M = 1 on 8192x28672 (DRAM throughput, issue
# slots, stall reasons, occupancy).
# Run from the repository root. Timeouts (s): W4T_BUILD_S (240), W4T_CHECK_S (180),
# W4T_BENCH_S (120), W4T_SWEEP_S (120), W4T_NCU_S (150); W4T_NCU=0 skips ncu, W4T_SWEEP=0 the sweep,
# W4T_CHECK=0 the check, W4T_BENCH=0 the bench; W4T_NCU_SHAPE the ncu launch's KxN; W4T_SASS=1 dumps
# the v4 SASS (OUT/sass-v4.txt); W4T_SWEEP_PARTS=1 / W4T_SWEEP_STAGES=1 widen the sweep (the
# harness's header). W4T_TRACE=1 also builds the harness and v4 with
# -DXQ_W4T_TRACE (a second binary: the others time the plain kernel) and runs its `trace` mode on
# W4T_TRACE_SHAPES (default 4096x6144,4096x4096,4096x28672,14336x4096) x W4T_TRACE_MS (1):
# per-block marks of where one call's time goes (OUT/trace.log).
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu-w4-gemv-tma}}
mkdir -p "$out"
src=plugins/cuda/src
bld=$(mktemp -d)
flags=(-std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo -I "$src")
echo "== build ($(nvcc --version | tail -1))"
t0=$(date +%s)
pids=()
for f in "$src/w4a16_gemv_tma.cu" "$src/w4a16_layout.cu" "$src/w4a16_gemm.cu" "$src/w4a16_gemv_stream.cu" "$src/pdl.cpp" \
         bench/cuda/w4_gemv_tma_harness.cu; do
  timeout "${W4T_BUILD_S:-240}" nvcc "${flags[@]}" -Xptxas=-v -c "$f" -o "$bld/$(basename "$f").o" \
    > "$bld/$(basename "$f").log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
cat "$bld"/*.log > "$out/ptxas.log"
grep -A2 "k_w4_gemv_tma" "$out/ptxas.log" | grep -E "registers|spill" | sort | uniq -c
if [ "$rc" != 0 ]; then grep -E "error" "$out/ptxas.log" | head -20; echo "build failed"; exit 1; fi
nvcc "${flags[@]}" "$bld"/*.o -lcublas -o "$bld/h" || { echo "link failed"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
if [ "${W4T_TRACE:-0}" = 1 ]; then
  mkdir -p "$bld/trace"
  for f in "$src/w4a16_gemv_tma.cu" bench/cuda/w4_gemv_tma_harness.cu; do
    nvcc "${flags[@]}" -DXQ_W4T_TRACE -c "$f" -o "$bld/trace/$(basename "$f").o" || { echo "trace build failed"; exit 1; }
  done
  objs=("$bld/trace"/*.o)
  for o in "$bld"/*.o; do
    case "$(basename "$o")" in w4a16_gemv_tma.cu.o|w4_gemv_tma_harness.cu.o) ;; *) objs+=("$o") ;; esac
  done
  nvcc "${flags[@]}" "${objs[@]}" -lcublas -o "$bld/h-trace" || { echo "trace link failed"; exit 1; }
fi
if [ "${W4T_CHECK:-1}" = 1 ]; then
  echo "== check"
  timeout "${W4T_CHECK_S:-180}" "$bld/h" check > "$out/check.log" 2>&1
  echo "rc=$?"
  grep -E "^FAIL|^check:|supported" "$out/check.log" | head -40
  grep -E "^ok" "$out/check.log" | head -8
fi
if [ "${W4T_BENCH:-1}" = 1 ]; then
  echo "== bench"
  timeout "${W4T_BENCH_S:-120}" "$bld/h" bench ${W4T_SHAPES:-} > "$out/bench.log" 2>&1
  echo "rc=$?"
  cat "$out/bench.log"
fi
if [ "${W4T_TRACE:-0}" = 1 ]; then
  echo "== trace"
  timeout "${W4T_TRACE_S:-120}" "$bld/h-trace" trace "${W4T_TRACE_SHAPES:-4096x6144,4096x4096,4096x28672,14336x4096}" \
    "${W4T_TRACE_MS:-1}" > "$out/trace.log" 2>&1
  echo "rc=$?"
  cat "$out/trace.log"
fi
if [ "${W4T_SWEEP:-1}" = 1 ]; then
  echo "== v4 sweep"
  timeout "${W4T_SWEEP_S:-120}" "$bld/h" sweep "${W4T_SWEEP_SHAPES:-8192x28672,4096x14336}" "${W4T_SWEEP_MS:-1,8}" > "$out/sweep.log" 2>&1
  echo "rc=$?"
  cat "$out/sweep.log"
fi
if [ "${W4T_NCU:-1}" = 1 ] && command -v ncu > /dev/null; then
  ncu_shape=${W4T_NCU_SHAPE:-8192x28672}
  echo "== ncu: v4, M = 1, $ncu_shape"
  timeout "${W4T_NCU_S:-150}" ncu --clock-control none -k regex:k_w4_gemv_tma --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
    --section MemoryWorkloadAnalysis --section InstructionStats --section SourceCounters --print-details all \
    --metrics smsp__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
    "$bld/h" bench "$ncu_shape" 1 > "$out/ncu-v4.log" 2>&1
  echo "rc=$?"
  grep -E "smsp__inst|sm__pipe|DRAM Throughput|Duration|Issued Warp|No Eligible|Active Warps Per|Eligible Warps|Achieved Occupancy|Stall (Not|Math|Wait|Long)|==ERR" \
    "$out/ncu-v4.log" | head -30
fi
if [ "${W4T_SASS:-0}" = 1 ] && command -v cuobjdump > /dev/null; then
  # The BF16 kernels' SASS (measurement aid: where the consumer loop's instructions go).
  cuobjdump -sass "$bld/w4a16_gemv_tma.cu.o" > "$out/sass-v4.txt" 2>&1
  echo "sass: $(grep -c HMMA "$out/sass-v4.txt") HMMA lines in $out/sass-v4.txt"
fi
rm -rf "$bld"
