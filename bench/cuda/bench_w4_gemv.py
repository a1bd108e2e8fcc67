#!/usr/bin/env python3
"""bench_w4_gemv.py: the W4A16 GEMVs (plugins/cuda/src/w4a16_gemv*.cu) against the fused mma GEMM and bf16 cuBLAS.

Per shape (K x N, group 128, symmetric) and small batch M, in one process and one run: torch
bf16 (torch.matmul on a dense bf16 weight), the fused GEMM ("old": QMATMUL's op.i[7] = 1, the
default dispatch), the split GEMV (op.i[7] = 4, the variant XQUANT_CUDA_W4_GEMV_VARIANT picks,
v2 by default; M <= 8 only), the streaming GEMV ("stream", v3: op.i[7] = 5; M <= 8), the TMA-ring
GEMV ("tma", v4: op.i[7] = 7; M <= 8, sm_90; elsewhere the knob falls back to the default dispatch)
and the provider's default dispatch. --columns picks a subset; --tag names the run in the JSON;
--act f16 runs every column with F16 activations and outputs (the "bf16" column is then torch's F16 matmul). Also the copy bandwidth (1 GiB device-to-device copy, bytes read + written) and the
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
from bench_cuda import BF16, F16, Shim, bench, fmt, ncopies  # noqa: E402

FORCE_FUSED, FORCE_GEMV, FORCE_STREAM, FORCE_TMA = 1, 4, 5, 7
GEMV_MAX_M = 8


def sanity(shim, dev, N, K, G, M, asym, force, act):
    codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
    scales = (torch.rand(N, G) * 0.01 + 0.001).float()
    zp = torch.randint(-8, 8, (N, G), dtype=torch.int8) if asym else None
    w = shim.prepare(codes, scales, zp, N, K, 128, 4, 0)
    q = codes.float().view(N, G, 128)
    if asym:
        q = q - zp.float().view(N, G, 1)
    deq = (q * scales.view(N, G, 1)).view(N, K).to(dev)
    dt, code = act
    x = torch.randn(M, K, device=dev, dtype=dt)
    y = torch.full((M, N), float("nan"), device=dev, dtype=dt)
    shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, code, code, force), "gemv")
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
    ap.add_argument("--columns", default="bf16,old,gemv,stream,tma,default")
    ap.add_argument("--tag", default="w4_gemv_bench")
    ap.add_argument("--act", default="bf16", choices=("bf16", "f16"),
                    help="activation (and output) dtype of every column, torch's dense weight included")
    args = ap.parse_args()
    act = (torch.bfloat16, BF16) if args.act == "bf16" else (torch.float16, F16)
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
    cols = set(args.columns.split(","))
    gemv_forces = [f for c, f in (("gemv", FORCE_GEMV), ("stream", FORCE_STREAM), ("tma", FORCE_TMA)) if c in cols]
    rows, checks = [], []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        G = K // 128
        for force in gemv_forces:
            for asym in (False, True):
                for m in (1, 5):
                    err = sanity(shim, dev, N, K, G, m, asym, force, act)
                    checks.append({"K": K, "N": N, "M": m, "asym": asym, "force": force, "rel_err": err})
                    print(f"K={K} N={N} M={m} {'asym' if asym else 'sym'} i[7]={force}: GEMV rel err vs torch "
                          f"{err:.2e}", flush=True)
        codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales = (torch.rand(N, G) * 0.01 + 0.001).float()
        w_bytes = N * K / 2 + N * G * 4  # codes + bf16 {scale, zb} words, as the kernel reads them
        n4 = ncopies(int(w_bytes))
        w4 = [shim.prepare(codes, scales, None, N, K, 128, 4, 0) for _ in range(n4)]
        nb = ncopies(N * K * 2) if "bf16" in cols else 0
        wbf = [torch.randn(N, K, device=dev, dtype=act[0]) for _ in range(nb)]
        for M in ms:
            x = torch.randn(M, K, device=dev, dtype=act[0])
            y = torch.empty(M, N, device=dev, dtype=act[0])
            r = {"K": K, "N": N, "M": M}

            def run(key, fn, copies):
                r[key] = "-"  # not measured
                if key not in cols:
                    return
                try:
                    r[key] = bench(fn, copies)
                except Exception as ex:  # report, keep going
                    print(f"  {key} M={M}: {ex}", file=sys.stderr, flush=True)
                    r[key] = None

            def q(force):
                return lambda i: shim.check(
                    shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, act[1], act[1], force), "w4")

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            run("old", q(FORCE_FUSED), n4)
            for key, force in (("old", None), ("gemv", FORCE_GEMV), ("stream", FORCE_STREAM), ("tma", FORCE_TMA)):
                if force is not None:
                    r[key] = "-"
                    if M <= GEMV_MAX_M:
                        run(key, q(force), n4)
                if isinstance(r[key], float):
                    r[key + "_TBps"] = w_bytes / (r[key] * 1e-6) / 1e12
                    r[key + "_copy_pct"] = 100 * r[key + "_TBps"] / copy_bw
            run("default", q(0), n4)
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}),
                  flush=True)
        for w in w4:
            shim.lib.xqc_release(w)
        del wbf
        torch.cuda.empty_cache()

    lines = [f"Device: {name}; torch {torch.__version__}; copy bandwidth {copy_bw:.2f} TB/s; plugin: {shim.why}; "
             f"activations {args.act}", "",
             "| K | N | M | bf16 µs | fused GEMM µs (×bf16) | split GEMV µs (×bf16) | stream GEMV µs (×bf16) "
             "| TMA GEMV µs (×bf16) | weight stream % of copy: fused / split / stream / TMA "
             "| default dispatch µs (×bf16) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(base, v):  # "–" where either side was not measured (bench_cuda.ratio wants numbers)
        return f"{base / v:.2f}×" if isinstance(base, float) and isinstance(v, float) else "–"

    def pct(r, key):
        return f"{r[key + '_copy_pct']:.0f}%" if key + "_copy_pct" in r else "–"

    for r in rows:
        bb = r["bf16"]
        lines.append(f"| {r['K']} | {r['N']} | {r['M']} | {fmt(bb)} | {fmt(r['old'])} ({ratio(bb, r['old'])}) | "
                     f"{fmt(r['gemv'])} ({ratio(bb, r['gemv'])}) | {fmt(r['stream'])} ({ratio(bb, r['stream'])}) | "
                     f"{fmt(r['tma'])} ({ratio(bb, r['tma'])}) | "
                     f"{pct(r, 'old')} / {pct(r, 'gemv')} / {pct(r, 'stream')} / {pct(r, 'tma')} | "
                     f"{fmt(r['default'])} ({ratio(bb, r['default'])}) |")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, args.tag + ".md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, args.tag + ".json"), "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "copy_TBps": copy_bw, "tag": args.tag, "act": args.act,
                   "variant": os.environ.get("XQUANT_CUDA_W4_GEMV_VARIANT", "2"),
                   "stream_blocks_per_sm": os.environ.get("XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM", ""),
                   "checks": checks, "rows": rows},
                  f, indent=1)


if __name__ == "__main__":
    main()
