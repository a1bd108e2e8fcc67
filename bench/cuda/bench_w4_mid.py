#!/usr/bin/env python3
"""bench_w4_mid.py: which W4A16 kernel wins between the decode GEMV and the
Hopper GEMM's range (M = 9..64 by default), per shape, in one process: the
default dispatch, the TMA-ring GEMV ("v4", QMATMUL op.i[7] = 7, M <= 16),
the fused mma.sync GEMM (op.i[7] = 1) and the Hopper wgmma GEMM (op.i[7] =
3, schedule auto), and with --schedules the Hopper GEMM under each named
XQUANT_CUDA_W4_HOPPER_SCHEDULE (read at each call), beside bf16 cuBLAS.
Same method as bench_cuda.py (median of 7 batches, weight copies rotated
past L2). The dispatch thresholds in
plugins/cuda/src/provider*.cpp come from this table (docs/cuda.md)."""
import argparse
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, bench_into, fmt, ncopies, open_bench, ratio, write_results  # noqa: E402

FORCES = (("auto", 0), ("v4", 7), ("fused", 1), ("hopper", 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="9,12,13,16,24,32,48,64")
    ap.add_argument("--shapes", default="4096x4096,4096x6144,4096x14336,4096x28672,14336x4096,8192x28672")
    ap.add_argument("--schedules", default="",
                    help="comma list of Hopper schedules to time forced as extra columns (e.g. coop,pingpong,narrow,k128)")
    args, shim, dev, name = open_bench(ap)
    schedules = [v for v in args.schedules.split(",") if v]
    rows = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        G = K // 128
        codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales = (torch.rand(N, G) * 0.01 + 0.001).float()
        n4 = ncopies(N * K // 2)
        w4 = [shim.prepare(codes, scales, None, N, K, 128, 4, 0) for _ in range(n4)]
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        for M in (int(m) for m in args.ms.split(",")):
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            r = {"K": K, "N": N, "M": M}
            run = functools.partial(bench_into, r)
            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            outs = {}
            for label, force in FORCES:
                if label == "v4" and M > 16:
                    r[label] = "-"
                    continue
                def call(i, force=force):
                    shim.check(shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, force), label)
                run(label, call, n4)
                if r[label] is not None:
                    call(0)
                    outs[label] = y.clone()
            for sched in schedules:
                label = "h:" + sched
                if sched in ("narrow", "k128") and M > 32:  # they stand for coop there
                    r[label] = "-"
                    continue
                os.environ["XQUANT_CUDA_W4_HOPPER_SCHEDULE"] = sched
                def call(i, label=label):
                    shim.check(shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 3), label)
                run(label, call, n4)
                os.environ.pop("XQUANT_CUDA_W4_HOPPER_SCHEDULE")
            # Which kernel the default took: the forced output it equals bit for bit.
            r["auto_is"] = next((k for k in ("v4", "fused", "hopper") if k in outs and "auto" in outs and
                                 torch.equal(outs["auto"], outs[k])), "?")
            rows.append(r)
            print("  " + str({k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
        for w in w4:
            shim.lib.xqc_release(w)
        del wbf
        torch.cuda.empty_cache()
    lines = [f"Device: {name}; torch {torch.__version__}; plugin: {shim.why}", "",
             "| K | N | M | bf16 µs | default µs (×bf16) | default took | v4 µs (×) | fused mma.sync µs (×) | Hopper wgmma µs (×) |"
             + "".join(f" Hopper {s} µs (×) |" for s in schedules),
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(schedules)]
    for r in rows:
        b = r["bf16"]
        keys = ("auto", "v4", "fused", "hopper") + tuple("h:" + s for s in schedules)
        cells = [f"{fmt(r[k])} ({ratio(b, r[k])})" if r[k] != "-" else "–" for k in keys]
        lines.append(f"| {r['K']} | {r['N']} | {r['M']} | {fmt(b)} | {cells[0]} | {r['auto_is']} | "
                     + " | ".join(cells[1:]) + " |")
    write_results(args.out, "w4-mid", "\n".join(lines), {"device": name, "rows": rows})


if __name__ == "__main__":
    main()
