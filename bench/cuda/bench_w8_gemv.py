#!/usr/bin/env python3
"""bench_w8_gemv.py: W8A8 QMATMUL at decode batch sizes (M = 1..8), the few-row
kernel (plugins/cuda/src/w8a8_gemv.hpp) against the GEMM route it replaced and
torch's bf16 linear, in one process.

For every shape (K x N) and M, per-call µs of:
  bf16        torch.matmul with a BF16 weight (cuBLAS), the baseline of the ratios;
  act         the activation quantization alone (part of every QMATMUL below);
  i8 / f8     INT8 / FP8 E4M3 QMATMUL from BF16 activations, default dispatch
              (the few-row kernel, K split picked by w8a8_gemv_split; where
              M = 1 its fused form, which quantizes the row itself);
  i8_sep/f8_sep the same with the separate quantization kernel first
              (XQUANT_CUDA_W8_GEMV_FUSED=0);
  i8_sN/f8_sN the same with the K split forced to N (XQUANT_CUDA_W8_GEMV_SPLIT);
  i8_u8/f8_u8 the default split with 8 weight steps in flight a lane
              (XQUANT_CUDA_W8_GEMV_UNROLL=8; the default is 4);
  i8_gemm / f8_gemm  the GEMM route (XQUANT_CUDA_W8_GEMV=0: CUTLASS where the
              build has it and auto takes it, else cuBLASLt + scaling pass).
The weight stream's rate, N*K bytes / time, is given as % of the device-to-
device copy bandwidth measured first (bytes read + written / time), the floor
a weight-streaming kernel can approach. Timing and L2 rotation are
bench_cuda.py's. Ratios are bf16 time / ours. Writes w8_gemv.md and .json to --out.
"""
import argparse
import functools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, I8, Shim, bench_into, copy_bandwidth, fmt, ncopies, write_results  # noqa: E402

GEMV_ENV = "XQUANT_CUDA_W8_GEMV"
SPLIT_ENV = "XQUANT_CUDA_W8_GEMV_SPLIT"
UNROLL_ENV = "XQUANT_CUDA_W8_GEMV_UNROLL"
FUSED_ENV = "XQUANT_CUDA_W8_GEMV_FUSED"
BITS_F8_E4M3 = (14 << 8) | 8  # XQ_BITS_F8_E4M3 (xq_tensor.h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--ms", default="1,2,4,8")
    ap.add_argument("--splits", default="1,2,4,8", help="K splits to force, comma-separated ('' = none)")
    # Llama-3.1-8B's q|k|v, o, gate|up, down, then issue 10's largest shape.
    ap.add_argument("--shapes", default="4096x6144,4096x4096,4096x28672,14336x4096,8192x28672")
    args = ap.parse_args()
    splits = [int(v) for v in args.splits.split(",") if v]
    torch.manual_seed(0)
    dev = torch.device("cuda")
    shim = Shim(args.shim, args.plugin)
    lib = shim.lib
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}; torch {torch.__version__}; plugin: {shim.why}", flush=True)
    copy_bw = copy_bandwidth(dev)
    print(f"copy bandwidth: {copy_bw:.2f} TB/s (read+write)", flush=True)

    rows = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        n8 = ncopies(N * K)
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        scales = (torch.rand(N) * 0.01 + 0.001).float()
        codes8 = torch.randint(-127, 128, (N, K), dtype=torch.int8)
        codesf8 = (torch.randn(N, K) * 100).clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.int8)
        w8 = [shim.prepare(codes8, scales, None, N, K, 0, 8, 2) for _ in range(n8)]
        wf8 = [shim.prepare(codesf8, scales, None, N, K, 0, BITS_F8_E4M3, 2) for _ in range(n8)]
        for M in [int(m) for m in args.ms.split(",")]:
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            qbuf = torch.empty(M, K, device=dev, dtype=torch.int8)
            sbuf = torch.empty(M, device=dev, dtype=torch.float32)
            r = {"K": K, "N": N, "M": M}

            run = functools.partial(bench_into, r)

            def q(ws, what):
                return lambda i: shim.check(lib.xqc_qmatmul(ws[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 0),
                                            what)

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            run("act", lambda i: shim.check(lib.xqc_quantize_act(x.data_ptr(), qbuf.data_ptr(), sbuf.data_ptr(), M, K,
                                                                 BF16, I8), "act"), 1)
            for tag, ws in (("i8", w8), ("f8", wf8)):
                run(tag, q(ws, tag), n8)
                os.environ[FUSED_ENV] = "0"
                run(f"{tag}_sep", q(ws, tag), n8)
                os.environ.pop(FUSED_ENV, None)
                for s in splits:
                    os.environ[SPLIT_ENV] = str(s)
                    run(f"{tag}_s{s}", q(ws, tag), n8)
                os.environ.pop(SPLIT_ENV, None)
                os.environ[UNROLL_ENV] = "8"
                run(f"{tag}_u8", q(ws, tag), n8)
                os.environ.pop(UNROLL_ENV, None)
                os.environ[GEMV_ENV] = "0"
                run(f"{tag}_gemm", q(ws, tag), n8)
                os.environ.pop(GEMV_ENV, None)
            # Sanity: the kernel and the GEMM route agree (relative Frobenius difference).
            for tag, ws in (("i8", w8), ("f8", wf8)):
                outs = []
                for gemv in ("1", "0"):
                    os.environ[GEMV_ENV] = gemv
                    o = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
                    shim.check(lib.xqc_qmatmul(ws[0], x.data_ptr(), o.data_ptr(), M, N, K, BF16, BF16, 0), "diff")
                    outs.append(o.float())
                os.environ.pop(GEMV_ENV, None)
                r[f"diff_{tag}"] = ((outs[0] - outs[1]).norm() / outs[1].norm()).item()
            for tag in ("i8", "f8"):
                t = r.get(tag)
                r[f"{tag}_copy_pct"] = 100 * (N * K / (t * 1e-6)) / 1e12 / copy_bw if t else None
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}),
                  flush=True)
        for w in w8 + wf8:
            lib.xqc_release(w)
        del wbf
        torch.cuda.empty_cache()

    def x_(base, v):
        return "–" if (v is None or base is None) else f"{base / v:.2f}"

    def pct(v):
        return "–" if v is None else f"{v:.0f}%"

    lines = [f"Device: {name}; torch {torch.__version__}; copy bandwidth {copy_bw:.2f} TB/s; plugin: {shim.why}", "",
             "W8A8 QMATMUL from BF16 activations, µs per call (× = bf16 time / ours; % = weight bytes / time "
             "as a share of the copy bandwidth; separate = XQUANT_CUDA_W8_GEMV_FUSED=0; splits "
             f"{'/'.join(map(str, splits)) or '(none)'} forced; unroll 8 = XQUANT_CUDA_W8_GEMV_UNROLL=8; "
             "gemm = XQUANT_CUDA_W8_GEMV=0):", "",
             "| K | N | M | bf16 | act quant | INT8 (×bf16, %copy) | INT8 separate quant (×bf16) | INT8 splits | "
             "INT8 unroll 8 (×bf16) | INT8 GEMM route (×bf16) | FP8 (×bf16, %copy) | FP8 separate quant (×bf16) | "
             "FP8 splits | FP8 unroll 8 (×bf16) | FP8 GEMM route (×bf16) | diff i8 / f8 |",
             "|" + "---|" * 16]
    for r in rows:
        b = r["bf16"]
        sp = {t: " / ".join(fmt(r.get(f"{t}_s{s}")) for s in splits) or "–" for t in ("i8", "f8")}
        lines.append(
            f"| {r['K']} | {r['N']} | {r['M']} | {fmt(b)} | {fmt(r['act'])} | "
            f"{fmt(r['i8'])} ({x_(b, r['i8'])}, {pct(r['i8_copy_pct'])}) | {fmt(r['i8_sep'])} ({x_(b, r['i8_sep'])}) | "
            f"{sp['i8']} | "
            f"{fmt(r['i8_u8'])} ({x_(b, r['i8_u8'])}) | {fmt(r['i8_gemm'])} ({x_(b, r['i8_gemm'])}) | "
            f"{fmt(r['f8'])} ({x_(b, r['f8'])}, {pct(r['f8_copy_pct'])}) | {fmt(r['f8_sep'])} ({x_(b, r['f8_sep'])}) | "
            f"{sp['f8']} | "
            f"{fmt(r['f8_u8'])} ({x_(b, r['f8_u8'])}) | "
            f"{fmt(r['f8_gemm'])} ({x_(b, r['f8_gemm'])}) | {r['diff_i8']:.1e} / {r['diff_f8']:.1e} |")
    write_results(args.out, "w8_gemv", "\n".join(lines),
                  {"device": name, "torch": torch.__version__, "copy_TBps": copy_bw, "rows": rows})


if __name__ == "__main__":
    main()
