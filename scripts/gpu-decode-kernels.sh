#!/usr/bin/env bash
# gpu-decode-kernels.sh XQUANT_CLI OUT_DIR: every kernel of a decode step
# (batch 1, or KERNELS_CONCURRENCY requests at once: steps of that many rows)
# replayed from its CUDA graph, with its device time, for each model in
# KERNELS_MODELS (label=dir,...; default the bf16, w4a16-g128, w8a8 and fp8
# models scripts/gpu-decode-bench.sh made in /tmp/gpueng-l31). An entry may
# carry environment settings after '@' (label=dir@VAR=VALUE@VAR=VALUE), so
# one call compares a knob's settings on the same model, e.g.
# w8a8-u8=/tmp/gpueng-l31/w8a8@XQUANT_CUDA_W8_GEMV_UNROLL=8.
#
# Why not gpu-decode-profile.sh's event pairs: those are upper bounds for
# short ops (the event records slow the host, so a short op's window can hold
# the wait for its own launch), and they run the step eagerly. Here Nsight
# Compute profiles the kernel nodes of the recorded step themselves
# (`ncu --graph-profiling node`, one metric, gpu__time_duration: no replay
# passes), so each kernel's time is its own, run alone (no PDL overlap with
# its neighbours, no launch gap). `--cache-control none` leaves L2 as the
# previous kernel left it, as in the real step (the default flush made every
# small op read its input from HBM: 2026-12-04 on an H200, row norms 4.3 µs
# a call flushed, 3.5 not); KERNELS_NCU_ARGS adds or overrides options.
# The step's TPOT from a plain `xquant bench` run of the same model minus the
# summed kernel times is what the launches, the dependencies between kernels
# and the host add, less what PDL overlaps: negative where the overlap wins
# (8 layers of the Llama-3.1-8B config on an H200: -6 to -12%).
#
# Per model: `xquant bench --concurrency C --lengths 128:64` plain (TPOT p50),
# then the same under ncu with 128:KERNELS_STEPS (default 6) new tokens; the
# table (bench/engine/decode_kernels_table.py) averages the last steps (the
# first decode step runs eagerly and records).
set -uo pipefail
cli=${1:?usage: gpu-decode-kernels.sh XQUANT_CLI OUT_DIR}
out=${2:?usage: gpu-decode-kernels.sh XQUANT_CLI OUT_DIR}
dir=/tmp/gpueng-l31
models=${KERNELS_MODELS:-bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128,w8a8=$dir/w8a8,fp8=$dir/fp8}
steps=${KERNELS_STEPS:-6}
concurrency=${KERNELS_CONCURRENCY:-1}
ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu_bin" ] || { echo "decode kernels: no ncu on this machine, nothing measured"; exit 1; }
mkdir -p "$out/decode-kernels"
IFS=',' read -ra specs <<< "$models"
for spec in "${specs[@]}"; do
  label=${spec%%=*}
  rest=${spec#*=}
  path=${rest%%@*}
  envs=()
  [ "$rest" != "$path" ] && IFS='@' read -ra envs <<< "${rest#*@}"
  [ -d "$path" ] || { echo "decode kernels: $label: $path missing, skipped"; continue; }
  timeout 120 env ${envs[@]+"${envs[@]}"} "$cli" bench --provider cuda --models "$label=$path" --concurrency "$concurrency" --lengths 128:64 \
    --json "$out/decode-kernels/$label-plain.json" > /dev/null 2> "$out/decode-kernels/$label-plain.err" ||
    tail -3 "$out/decode-kernels/$label-plain.err"
  timeout 240 env ${envs[@]+"${envs[@]}"} "$ncu_bin" --graph-profiling node --clock-control none --cache-control none ${KERNELS_NCU_ARGS:-} --metrics gpu__time_duration.sum --csv \
    --print-units base --print-kernel-base function --log-file "$out/decode-kernels/$label-ncu.csv" \
    "$cli" bench --provider cuda --models "$label=$path" --concurrency "$concurrency" --lengths "128:$steps" \
    > /dev/null 2> "$out/decode-kernels/$label-ncu.err" || tail -3 "$out/decode-kernels/$label-ncu.err"
done
python3 "$(dirname "$0")/../bench/engine/decode_kernels_table.py" "$out/decode-kernels" "$models" 2>&1 |
  tee "$out/decode-kernels.txt"
