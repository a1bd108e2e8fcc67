#!/usr/bin/env python3
"""decode_profile_table.py WORK MODELS VARIANTS [COPY_GBS]: the table of
scripts/gpu-decode-profile.sh from the files it left in WORK.

Per model and variant: decode tok/s and step time (contiguous cache, plain
run), the summed device time of the ops of one step (XQUANT_CUDA_OP_TIMES
run), the rest of the step (device idle between ops), and the ops by device
time per step; then the paged cache at C = 1: TPOT replayed from graphs,
TPOT eager with op times, and the summed op time per step.
"""
import json
import re
import sys
from pathlib import Path

work, models, variants = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split()
copy_gbs = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
print(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write; the HBM floor's rate)")
LINE = re.compile(r"^op-times: (.+) calls (\d+) total_us ([0-9.]+)$")


def op_times(err):
    """label -> (calls, total µs) from a run's stderr; {} when absent."""
    t = {}
    if err.exists():
        for line in err.read_text(errors="replace").splitlines():
            m = LINE.match(line.strip())
            if m:
                t[m.group(1)] = (int(m.group(2)), float(m.group(3)))
    return t


def per_step(times):
    """Decode-step ops (one row): label -> (calls per step, µs per step)."""
    steps = times.get("ARGMAX M=1", (0, 0))[0]
    if steps == 0:
        return 0, {}
    rows = {}
    for label, (calls, us) in times.items():
        if label.endswith(" M=1"):
            rows[label[:-4]] = (calls / steps, us / steps)
    return steps, rows


def load_json(p):
    try:
        return json.loads(p.read_text())
    except Exception:
        return None


def bench_row(p):
    j = load_json(p)
    if not j:
        return None
    rows = j if isinstance(j, list) else j.get("rows", [])
    rows = [r for r in rows if r.get("concurrency") == 1]
    return rows[-1] if rows else None


summary = {}
labels_all = [spec.split("=", 1)[0] for spec in models.split(",")]
for spec in models.split(","):
    label = spec.split("=", 1)[0]
    print(f"== {label}")
    for v in variants:
        g = load_json(work / f"{label}-{v}-gen.json")
        gt = load_json(work / f"{label}-{v}-gent.json")
        steps, ops = per_step(op_times(work / f"{label}-{v}-gent.err"))
        if not g or not ops:
            print(f"  contiguous [{v}]: no result (see the raw files)")
            continue
        tps = g["decode_tokens_per_second"]
        summary[(label, v)] = tps
        step_us = 1e6 / tps
        dev_us = sum(us for _, us in ops.values())
        n_ops = sum(c for c, _ in ops.values())
        tps_t = gt["decode_tokens_per_second"] if gt else 0
        floor_us = g["weight_bytes_per_token"] / (copy_gbs * 1e9) * 1e6 if copy_gbs > 0 else 0
        floor = f", {100 * floor_us / step_us:.1f}% of the HBM floor ({floor_us:.0f} us)" if floor_us else ""
        print(f"  contiguous [{v}]: {tps:.1f} tok/s{floor}, step {step_us:.1f} us; ops per step {n_ops:.0f}, their device time "
              f"{dev_us:.1f} us ({100 * dev_us / step_us:.0f}% of the step), idle between ops {step_us - dev_us:.1f} us "
              f"(with event pairs: {tps_t:.1f} tok/s, {steps} steps timed)")
        for name, (calls, us) in sorted(ops.items(), key=lambda kv: -kv[1][1]):
            print(f"      {name:<34} x{calls:5.1f}  {us:8.1f} us/step  {us / calls:7.2f} us/call")
    pg, pe = bench_row(work / f"{label}-paged.json"), bench_row(work / f"{label}-pagedt.json")
    steps, ops = per_step(op_times(work / f"{label}-pagedt.err"))
    if pg and pe and ops:
        dev_us = sum(us for _, us in ops.values())
        tpot_g, tpot_e = pg["tpot_ms"]["p50"] * 1e3, pe["tpot_ms"]["p50"] * 1e3
        print(f"  paged C=1: TPOT p50 {tpot_g:.1f} us from graphs ({pg['output_tok_s']:.1f} tok/s), eager with event pairs "
              f"{tpot_e:.1f} us; ops per step {sum(c for c, _ in ops.values()):.0f}, their device time {dev_us:.1f} us = "
              f"{100 * dev_us / tpot_g:.0f}% of the graphed step")
        for name, (calls, us) in sorted(ops.items(), key=lambda kv: -kv[1][1])[:8]:
            print(f"      {name:<34} x{calls:5.1f}  {us:8.1f} us/step  {us / calls:7.2f} us/call")
    elif label == labels_all[0]:
        print("  paged C=1: no result (see the raw files)")

labels = [spec.split("=", 1)[0] for spec in models.split(",")]
print("== summary (contiguous cache, tok/s; x the first model; new / old)")
for label in labels:
    cells = []
    for v in variants:
        t, base = summary.get((label, v)), summary.get((labels[0], v))
        if t:
            cells.append(f"{v} {t:.1f} ({t / base:.2f}x {labels[0]})" if base else f"{v} {t:.1f}")
    if ("old" in variants and summary.get((label, "old")) and summary.get((label, "new"))):
        cells.append(f"new/old {summary[(label, 'new')] / summary[(label, 'old')]:.3f}")
        a, b = load_json(work / f"{label}-old-gen.json"), load_json(work / f"{label}-new-gen.json")
        same = 0
        while a and b and same < min(len(a["tokens"]), len(b["tokens"])) and a["tokens"][same] == b["tokens"][same]:
            same += 1
        if a and b:
            cells.append(f"greedy ids equal for the first {same} of {len(b['tokens'])}")
    print(f"  {label:<14} " + "; ".join(cells))
