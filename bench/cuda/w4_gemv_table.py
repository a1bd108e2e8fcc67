#!/usr/bin/env python3
"""w4_gemv_table.py: one compact table from bench_w4_gemv.py runs (their --out JSON files).

Each run's measured columns become one column each: "fused" (op.i[7] = 1), "v<N>" for the split
GEMV (op.i[7] = 4 under XQUANT_CUDA_W4_GEMV_VARIANT=N, recorded in the JSON) and "v3" for the
streaming GEMV (op.i[7] = 5; "v3 (N blk/SM)" under XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM=N) and "v4" for
the TMA-ring GEMV (op.i[7] = 7). Cells: µs and the weight stream (codes + scale words) as a share of
that run's copy bandwidth. Rows: K x N and M, as measured.
usage: w4_gemv_table.py RUN.json [RUN.json ...]
"""
import json
import sys


def main():
    cells, cols, copy = {}, [], []
    for path in sys.argv[1:]:
        with open(path) as f:
            run = json.load(f)
        copy.append(f"{run['copy_TBps']:.2f}")
        per_sm = run.get("stream_blocks_per_sm", "")
        names = {"old": "fused", "gemv": "v" + str(run.get("variant", "2")),
                 "stream": "v3" + (f" ({per_sm} blk/SM)" if per_sm not in ("", "0") else ""), "tma": "v4"}
        for r in run["rows"]:
            for key, name in names.items():
                t = r.get(key)
                if not isinstance(t, float):
                    continue
                if name not in cols:
                    cols.append(name)
                pct = r.get(key + "_copy_pct")
                cells[(r["K"], r["N"], r["M"], name)] = f"{t:.1f} ({pct:.0f}%)" if pct is not None else f"{t:.1f}"
    order = ["fused", "v1", "v2", "v3", "v4"]
    cols.sort(key=lambda c: order.index(c) if c in order else len(order))
    shapes = sorted({k[:3] for k in cells}, key=lambda k: (k[0] * k[1], k[0], k[2]))
    print(f"W4A16 small-M µs (weight stream % of copy bandwidth; copy {' / '.join(copy)} TB/s)")
    print("| K x N | M | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for K, N, M in shapes:
        print(f"| {K}x{N} | {M} | " + " | ".join(cells.get((K, N, M, c), "–") for c in cols) + " |")


if __name__ == "__main__":
    main()
