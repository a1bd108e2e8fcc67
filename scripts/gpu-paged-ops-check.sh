#!/usr/bin/env bash
# gpu-paged-ops-check.sh BUILD_DIR OUT_DIR: the decode step's small ops on the
# GPU machine (scripts/gpu-engine-check.sh runs it with GPUENG_PAGED_OPS=1):
# 1. tests: ROPE_KV's kernel against the cpu provider (CudaRopeKv.*: the
#    paged form with F32/BF16 pools, Qwen3's q/k norms), the engine's decode
#    steps with ROPE_KV against the separate ops (DevicePagedRopeKv.*,
#    DeviceDecodeStepOps.*), DeviceEngine.*, the paged engine and the decode
#    graphs;
# 2. the random-weight Llama-3.1-8B-shaped models of scripts/gpu-decode-bench.sh
#    (8 layers, BF16 and W4A16 g128 RTN), and the device copy rate;
# 3. `xquant bench` (paged cache, BF16 KV, 128:256, C = 1 and 8) with the
#    current ops and with the previous ones (PAGED_OLD_ENV, default
#    XQUANT_ROPE_KV=0; e.g. XQUANT_DECODE_ATTENTION_ONE_PASS=2 compares the
#    decode attention's split-K endings), one process each, alternately new /
#    old / new / old, so ratios come from one run;
# 4. time left: scripts/gpu-decode-profile.sh on the BF16 model (per-op
#    device times, contiguous and paged).
# Every step has a timeout cut to what is left of PAGED_OPS_BUDGET_S (default
# 170 s) so that one device call of 190 s returns with partial results.
# PAGED_OPS_TESTS=0 leaves out step 1; PAGED_OPS_PROFILE=0 step 4.
# Compact summary on stdout; logs and JSON in OUT_DIR.
set -uo pipefail
b=${1:?usage: gpu-paged-ops-check.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu-paged-ops-check.sh BUILD_DIR OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s)
budget=${PAGED_OPS_BUDGET_S:-170}
# A step's timeout: its own cap, or what is left of the budget when less (0: skip).
left() {
  local l=$((budget - ($(date +%s) - t0)))
  [ "$l" -lt "$1" ] && echo $((l > 0 ? l : 0)) || echo "$1"
}
step() {  # step CAP LABEL CMD...: run with the cut timeout, say when it was skipped or cut
  local cap; cap=$(left "$1")
  local label=$2
  shift 2
  if [ "$cap" -le 2 ]; then echo "-- $label: skipped (budget spent)"; return 0; fi
  timeout "$cap" "$@"
  local rc=$?
  [ $rc = 124 ] && echo "-- $label: cut at ${cap} s"
  return 0
}
summary='^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|tests ran'
find1() { find "$b" -name "$1" -type f | head -1; }
cli=$(find1 xquant)
ops=$(find1 test_cuda_provider)
eng=$(find1 test_device_engine)
paged=$(find1 test_paged_engine)
graphs=$(find1 test_decode_graphs)

old_env=${PAGED_OLD_ENV:-XQUANT_ROPE_KV=0}
if [ "${PAGED_OPS_TESTS:-1}" = 1 ]; then
echo "== ROPE_KV kernel vs the cpu provider"
step 20 "CudaRopeKv" "$ops" --gtest_filter='CudaRopeKv.*' > "$out/paged-ops-kernel.log" 2>&1
grep -E "$summary|ROPE_KV q" "$out/paged-ops-kernel.log"
echo "== engine: ROPE_KV (paged, q/k norms) vs the separate ops; DeviceEngine"
step 50 "engine tests" "$eng" --gtest_filter='DevicePagedRopeKv.*:DeviceDecodeStepOps.*:DeviceEngine.*:-*Moe*' \
  > "$out/paged-ops-engine.log" 2>&1
grep -E "$summary|relative RMS" "$out/paged-ops-engine.log" | cut -c1-230
echo "== paged engine, decode graphs"
step 25 "test_paged_engine" "$paged" > "$out/paged-ops-paged.log" 2>&1
grep -E "$summary" "$out/paged-ops-paged.log"
step 20 "test_decode_graphs" "$graphs" > "$out/paged-ops-graphs.log" 2>&1
grep -E "$summary" "$out/paged-ops-graphs.log"
echo "== tests done at $(( $(date +%s) - t0 )) s"
fi  # PAGED_OPS_TESTS

dir=/tmp/gpueng-l31
if [ ! -d $dir/w4a16-g128 ]; then
  step 60 "models" env W4_ONLY=1 bash "$here/gpu-decode-bench.sh" "$cli" > "$out/paged-ops-models.log" 2>&1
  tail -3 "$out/paged-ops-models.log"
fi
gbs=$(step 10 "copy rate" python3 - <<'PY'
import torch
n = 4 << 30  # 4 GiB, far beyond L2
a = torch.empty(n, dtype=torch.uint8, device="cuda"); a.random_(0, 255)
b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
ts = []
for _ in range(20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
ts.sort()
print(f"{2 * n / (ts[len(ts) // 2] / 1e3) / 1e9:.0f}")
PY
)
gbs=$(echo "$gbs" | grep -E '^[0-9]+$' || echo 0)
echo "== device-to-device copy: $gbs GB/s; models ready at $(( $(date +%s) - t0 )) s"

echo "== serving bench, 128:256, C = 1, 8: current ops (new) vs $old_env (old)"
models="bf16=$dir/bf16,w4a16-g128=$dir/w4a16-g128"
i=0
for v in new old new old; do
  i=$((i + 1))
  envs=()
  [ $v = old ] && read -r -a envs <<< "$old_env"
  env ${envs[@]+"${envs[@]}"} bash -c 'cap=$1; shift; timeout "$cap" "$@"' _ "$(left 25)" "$cli" bench --models "$models" \
    --concurrency 1,8 --lengths 128:256 --provider cuda --kv-dtype bf16 --copy-gbs "$gbs" \
    --json "$out/paged-bench-$i-$v.json" > "$out/paged-bench-$i-$v.txt" 2> "$out/paged-bench-$i-$v.err"
done
python3 - "$out" "$old_env" <<'PY'
import glob, json, os, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "paged-bench-*.json"))):
    v = f.rsplit("-", 1)[1][:-5]
    try:
        j = json.load(open(f))
    except Exception as e:
        print("unreadable", os.path.basename(f), e); continue
    for r in j:
        rows.setdefault((r["model"], r["concurrency"], v), []).append(r)
if not rows:
    print("no bench results"); sys.exit(0)
bf = {}  # the BF16 model's best tok/s per (C, variant): the x BF16 column
for (m, c, v), rs in rows.items():
    if m == "bf16": bf[(c, v)] = max(r["output_tok_s"] for r in rs)
print("model        C variant  out tok/s (each run)      best    x BF16  TPOT p50  ops/step  % of floor (C=1)")
for (m, c, v), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
    toks = [round(r["output_tok_s"], 1) for r in rs]
    best = max(toks)
    floor = rs[0].get("hbm_floor_batch1_tok_s")
    pct = f"{100 * best / floor:.1f}%" if floor and c == 1 else "-"
    x = f"{best / bf[(c, v)]:.2f}x" if bf.get((c, v)) else "-"
    print(f"{m:12s} {c:2d} {v:7s} {str(toks):24s} {best:8.1f} {x:>7s} {rs[0]['tpot_ms']['p50']:7.3f}ms {rs[0].get('ops_per_step', 0):8.1f}  {pct}")
for (m, c, v), rs in sorted(rows.items()):
    if v == "new" and (m, c, "old") in rows:
        n, o = max(r["output_tok_s"] for r in rs), max(r["output_tok_s"] for r in rows[(m, c, "old")])
        print(f"new/old {m} C={c}: {n / o:.3f}")
        if "XQUANT_ROPE_KV=0" in sys.argv[2] and rs[0]["steps"] and rs[0].get("ops_per_step") == rows[(m, c, "old")][0].get("ops_per_step"):
            # Eager steps (prefill, the first decode step and its recording) run 40 ops fewer on the 8-layer model.
            print(f"WARNING {m} C={c}: new and old ran the same op count: XQUANT_ROPE_KV had no effect (a stale CLI?)")
PY
echo "== bench done at $(( $(date +%s) - t0 )) s"
if [ "${PAGED_OPS_PROFILE:-1}" = 1 ] && [ "$(left 45)" -ge 30 ]; then
  step 45 "decode profile" env PROFILE_MODELS="bf16=$dir/bf16" PROFILE_AB=0 bash "$here/gpu-decode-profile.sh" "$cli" "$out" |
    tail -45
else
  echo "-- decode profile: skipped (budget spent)"
fi
echo "== gpu-paged-ops-check: $(( $(date +%s) - t0 )) s"
