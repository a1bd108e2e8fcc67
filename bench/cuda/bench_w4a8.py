#!/usr/bin/env python3
"""bench_w4a8.py: W4A8-FP8 on Hopper against W4A16 and bf16 cuBLAS, one process.

Per shape (K x N, symmetric INT4, group 128) and batch M, in the same run: torch bf16
(torch.matmul on a dense bf16 weight), the provider's W4A16 default dispatch (the Hopper
wgmma kernel from M = 64, the mma.sync kernel below), and W4A8-FP8 forced (QMATMUL op.i[7]
= 6: per-token FP8 activation quantization + the int4 x e4m3 CUTLASS GEMM,
plugins/cuda/src/w4a8_hopper.hpp), and the activation quantization alone (QUANTIZE_ACT to
E4M3, the part of the W4A8 time a fused producer could hide). XQUANT_CUDA_W4A8=2 is set
before the plugin starts: every weight gets the W4A8 copy, the default dispatch stays W4A16.
Timing as bench_cuda.py (whose helpers this imports): weights rotated over copies >= 3x L2,
median of 7 batches of >= 20 calls. Before timing, each shape checks W4A8 against torch on
the exactly dequantized weight (relative error, FP8 rounding included) and W4A16 beside it.
"""
import argparse
import functools
import json
import os
import sys

os.environ["XQUANT_CUDA_W4A8"] = "2"  # read once when the provider starts

import torch   # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, F8, bench_into, fmt, ncopies, open_bench, ratio  # noqa: E402

FORCE_W4A8 = 6


def sanity(shim, dev, N, K, G, M):
    codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
    scales = (torch.rand(N, G) * 0.01 + 0.001).float()
    w = shim.prepare(codes, scales, None, N, K, 128, 4, 0)
    deq = (codes.float().view(N, G, 128) * scales.view(N, G, 1)).view(N, K).to(dev)
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    ref = x.float() @ deq.t()
    errs = {}
    for key, force in (("w4a16", 0), ("w4a8", FORCE_W4A8)):
        y = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
        shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, force), key)
        errs[key] = ((y.float() - ref).norm() / ref.norm()).item()
    shim.lib.xqc_release(w)
    return errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="1,16,32,64,128,256,1024,4096")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x28672")
    args, shim, dev, name = open_bench(ap)
    ms = [int(m) for m in args.ms.split(",")]
    rows, checks = [], []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        G = K // 128
        errs = sanity(shim, dev, N, K, G, 65)
        checks.append({"K": K, "N": N, "rel_err": errs})
        print(f"K={K} N={N}: rel err vs torch (exact int4 x bf16) " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()),
              flush=True)
        if not errs["w4a8"] < 0.06:
            print(f"  W4A8 error {errs['w4a8']:.3g} is too large: its timings below are of a wrong kernel", flush=True)
        codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales = (torch.rand(N, G) * 0.01 + 0.001).float()
        n4 = ncopies(N * K // 2)
        w4 = [shim.prepare(codes, scales, None, N, K, 128, 4, 0) for _ in range(n4)]
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        for M in ms:
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            xq = torch.empty(M, K, device=dev, dtype=torch.uint8)
            xs = torch.empty(M, device=dev, dtype=torch.float32)
            r = {"K": K, "N": N, "M": M}

            run = functools.partial(bench_into, r)

            def q(force):
                return lambda i: shim.check(
                    shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, force), "qmatmul")

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            run("w4a16", q(0), n4)
            run("w4a8", q(FORCE_W4A8), n4)
            run("act_quant", lambda i: shim.check(
                shim.lib.xqc_quantize_act(x.data_ptr(), xq.data_ptr(), xs.data_ptr(), M, K, BF16, F8), "quant"), 2)
            run("w4a16_again", q(0), n4)
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
        for w in w4:
            shim.lib.xqc_release(w)
        del wbf
        torch.cuda.empty_cache()

    lines = [f"Device: {name}; torch {torch.__version__}; plugin: {shim.why}", "",
             "| K | N | M | bf16 µs | W4A16 default µs (×bf16) | W4A8-FP8 µs (×bf16) | W4A8 / W4A16 speed-up | "
             "of which act-quant µs | W4A16 again µs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["bf16"]
        lines.append(f"| {r['K']} | {r['N']} | {r['M']} | {fmt(b)} | {fmt(r['w4a16'])} ({ratio(b, r['w4a16'])}) | "
                     f"{fmt(r['w4a8'])} ({ratio(b, r['w4a8'])}) | {ratio(r['w4a16'], r['w4a8'])} | "
                     f"{fmt(r['act_quant'])} | {fmt(r['w4a16_again'])} |")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "w4a8_bench.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "w4a8_bench.json"), "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "checks": checks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
