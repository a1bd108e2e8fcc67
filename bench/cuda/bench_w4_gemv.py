#!/usr/bin/env python3
"""bench_w4_gemv.py: the W4A16 GEMV (plugins/cuda/src/w4a16_gemv.cu) against the fused mma GEMM and bf16 cuBLAS.

Per shape (K x N, group 128, symmetric) and small batch M, in one process and one run: torch
bf16 (torch.matmul on a dense bf16 weight), the fused GEMM ("old": QMATMUL's op.i[7] = 1, the
default before the GEMV), the GEMV (op.i[7] = 4; M <= 8 only) and the provider's default
dispatch. Also the copy bandwidth (1 GiB device-to-device copy, bytes read + written) and the
GEMV's weight stream (codes + bf16 scale words) as a share of it. Timing as bench_cuda.py (whose
helpers this imports): weights rotated over copies >= 3x L2, median of 7 batches of >= 20 calls.
Before timing, each shape checks the GEMV (symmetric and asymmetric) against torch on the
dequantized weight.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, Shim, bench, fmt, ncopies, ratio  # noqa: E402

FORCE_FUSED, FORCE_GEMV = 1, 4
GEMV_MAX_M = 8


def sanity(shim, dev, N, K, G, M, asym):
    codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
    scales = (torch.rand(N, G) * 0.01 + 0.001).float()
    zp = torch.randint(-8, 8, (N, G), dtype=torch.int8) if asym else None
    w = shim.prepare(codes, scales, zp, N, K, 128, 4, 0)
    q = codes.float().view(N, G, 128)
    if asym:
        q = q - zp.float().view(N, G, 1)
    deq = (q * scales.view(N, G, 1)).view(N, K).to(dev)
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    y = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
    shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, FORCE_GEMV), "gemv")
    ref = x.float() @ deq.t()
    err = ((y.float() - ref).norm() / ref.norm()).item()
    shim.lib.xqc_release(w)
    return err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--ms", default="1,2,4,8,16,32")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x28672")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    shim = Shim(args.shim, args.plugin)
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}; torch {torch.__version__}; plugin: {shim.why}", flush=True)
    a = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    t_copy = bench(lambda i: b.copy_(a), 1, reps=5, min_batch=5)
    copy_bw = 2 * (1 << 30) / (t_copy * 1e-6) / 1e12
    del a, b
    print(f"copy bandwidth: {copy_bw:.2f} TB/s (read+write)", flush=True)

    ms = [int(m) for m in args.ms.split(",")]
    rows, checks = [], []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        G = K // 128
        for asym in (False, True):
            for m in (1, 5):
                err = sanity(shim, dev, N, K, G, m, asym)
                checks.append({"K": K, "N": N, "M": m, "asym": asym, "rel_err": err})
                print(f"K={K} N={N} M={m} {'asym' if asym else 'sym'}: GEMV rel err vs torch {err:.2e}", flush=True)
        codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales = (torch.rand(N, G) * 0.01 + 0.001).float()
        w_bytes = N * K / 2 + N * G * 4  # codes + bf16 {scale, zb} words, as the kernel reads them
        n4 = ncopies(int(w_bytes))
        w4 = [shim.prepare(codes, scales, None, N, K, 128, 4, 0) for _ in range(n4)]
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        for M in ms:
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            r = {"K": K, "N": N, "M": M}

            def run(key, fn, copies):
                try:
                    r[key] = bench(fn, copies)
                except Exception as ex:  # report, keep going
                    print(f"  {key} M={M}: {ex}", file=sys.stderr, flush=True)
                    r[key] = None

            def q(force):
                return lambda i: shim.check(
                    shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, force), "w4")

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            run("old", q(FORCE_FUSED), n4)
            r["gemv"] = "-"
            if M <= GEMV_MAX_M:
                run("gemv", q(FORCE_GEMV), n4)
                if r["gemv"]:
                    r["gemv_TBps"] = w_bytes / (r["gemv"] * 1e-6) / 1e12
                    r["gemv_copy_pct"] = 100 * r["gemv_TBps"] / copy_bw
            run("default", q(0), n4)
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}),
                  flush=True)
        for w in w4:
            shim.lib.xqc_release(w)
        del wbf
        torch.cuda.empty_cache()

    lines = [f"Device: {name}; torch {torch.__version__}; copy bandwidth {copy_bw:.2f} TB/s; plugin: {shim.why}", "",
             "| K | N | M | bf16 µs | fused GEMM µs (×bf16) | GEMV µs (×bf16) | GEMV weight stream TB/s (% of copy) "
             "| default dispatch µs (×bf16) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bb = r["bf16"]
        bw = f"{r['gemv_TBps']:.2f} ({r['gemv_copy_pct']:.0f}%)" if "gemv_TBps" in r else "–"
        lines.append(f"| {r['K']} | {r['N']} | {r['M']} | {fmt(bb)} | {fmt(r['old'])} ({ratio(bb, r['old'])}) | "
                     f"{fmt(r['gemv'])} ({ratio(bb, r['gemv'])}) | {bw} | "
                     f"{fmt(r['default'])} ({ratio(bb, r['default'])}) |")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "w4_gemv_bench.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "w4_gemv_bench.json"), "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "copy_TBps": copy_bw, "checks": checks, "rows": rows},
                  f, indent=1)


if __name__ == "__main__":
    main()
