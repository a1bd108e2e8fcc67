#!/usr/bin/env python3
"""decode_kernels_table.py DIR MODELS: the table of scripts/gpu-decode-kernels.sh.

DIR holds, per model label, LABEL-plain.json (`xquant bench --json`, TPOT p50
at the script's concurrency) and LABEL-ncu.csv (Nsight Compute's CSV, one gpu__time_duration per
kernel, the step's kernels as graph nodes). A decode step ends with the
greedy ARGMAX kernel; the last steps (replays of the recorded step) are
averaged. Per model (an entry label=dir@VAR=VALUE... is a model run with
those settings, gpu-decode-kernels.sh): kernels per step, their summed
device time, TPOT, and TPOT minus that sum (launches, dependencies and the host, less what PDL
overlaps: negative where the overlap wins); then the kernels grouped by
function and grid (the grid tells the Linears apart), by time per step.
"""
import csv
import json
import sys
from pathlib import Path


def kernels(path):
    """[(name, grid, µs)] in launch order from an ncu CSV (details or raw page)."""
    rows = [line for line in path.read_text(errors="replace").splitlines() if line.startswith('"')]
    if not rows:
        return []
    reader = csv.reader(rows)
    head = next(reader)
    col = {h: i for i, h in enumerate(head)}
    out = {}
    for r in reader:
        if len(r) != len(head) or not r[col["ID"]].strip():
            continue  # the raw page's units row
        if "Metric Name" in col:
            if r[col["Metric Name"]] != "gpu__time_duration.sum":
                continue
            value, unit = r[col["Metric Value"]], r[col["Metric Unit"]]
        else:
            value, unit = r[col["gpu__time_duration.sum"]], "nsecond"
        ns = float(value.replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
        out[int(r[col["ID"]])] = (r[col["Kernel Name"]], r[col["Grid Size"]], ns * scale)
    return [out[i] for i in sorted(out)]


def last_steps(ks, n=3):
    """The last n decode steps: segments ending with an argmax kernel."""
    ends = [i for i, (name, _, _) in enumerate(ks) if "argmax" in name.lower()]
    segs = [ks[a + 1:b + 1] for a, b in zip(ends, ends[1:])]
    return segs[-n:]


def main():
    d, models = Path(sys.argv[1]), sys.argv[2]
    for spec in models.split(","):
        label = spec.split("=", 1)[0]
        plain, prof = d / f"{label}-plain.json", d / f"{label}-ncu.csv"
        if not prof.exists():
            print(f"\n{label}: no ncu output")
            continue
        tpot = None
        if plain.exists():
            j = json.loads(plain.read_text())
            runs = j if isinstance(j, list) else [j]
            for r in runs:
                tpot = r.get("tpot_ms", {}).get("p50")
        ks = kernels(prof)
        steps = last_steps(ks)
        if not steps:
            print(f"\n{label}: {len(ks)} kernels profiled, no decode step found")
            continue
        counts = {len(s) for s in steps}
        per_step = sum(sum(us for _, _, us in s) for s in steps) / len(steps)
        print(f"\n{label}: {len(ks)} kernels profiled; the last {len(steps)} decode steps have {sorted(counts)} kernels")
        line = f"  kernels' own time per step {per_step:.1f} µs"
        if tpot:
            line += f"; TPOT p50 {tpot * 1e3:.1f} µs; TPOT minus the kernels' times {tpot * 1e3 - per_step:.1f} µs"
            line += f" = {100 * (1 - per_step / (tpot * 1e3)):.1f}%"
        print(line)
        groups = {}
        for s in steps:
            for name, grid, us in s:
                g = groups.setdefault((name, grid), [0, 0.0])
                g[0] += 1
                g[1] += us
        n = len(steps)
        # The step's first kernels in launch order (the embedding, then layer 0): which Linear is which.
        print("  the last step's first kernels in order: " +
              ", ".join(f"{name.split('<')[0][:24]} {grid.replace(' ', '')} {us:.1f}" for name, grid, us in steps[-1][:13]))
        print(f"  {'kernel':60s} {'grid':>16s} {'calls':>6s} {'µs/step':>9s} {'µs/call':>8s} {'share':>6s}")
        for (name, grid), (calls, us) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
            print(f"  {name[:60]:60s} {grid:>16s} {calls / n:6.0f} {us / n:9.1f} {us / calls:8.2f} {100 * us / n / per_step:5.1f}%")


if __name__ == "__main__":
    main()
