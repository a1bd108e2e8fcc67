#!/usr/bin/env python3
"""bench_w8a8.py: the W8A8 GEMM routes of the cuda provider beside torch, in one process.

For every shape (K x N) and M: torch bf16 (F.linear's cuBLAS), then ours on
both routes of plugins/cuda/src/w8a8_route.cpp, switched per call with
XQUANT_CUDA_W8A8_GEMM ("cublaslt": cuBLASLt GEMM + our scaling pass;
"cutlass": the sm_90a CUTLASS GEMM with the scaling fused into its
epilogue), and torch's own kernels on the same operands:
  INT8: QMATMUL from bf16 (per-token activation quantization + GEMM +
        scaling, what a served layer runs), the activation quantization
        alone (its share), MATMUL on pre-quantized codes with per-token x
        per-channel scales; torch._int_mm (no scaling; M > 16 only).
  FP8:  MATMUL per-tensor and row-wise (per-token x per-channel) against
        torch._scaled_mm with the same scales, with and without
        use_fast_accum.
"auto" columns run the default dispatch (no route forced: the CUTLASS
configuration auto picks, or cuBLASLt where auto keeps it). Then every
CUTLASS kernel configuration forced by name (XQUANT_CUDA_W8A8_CONFIG, see
plugins/cuda/src/cutlass_w8a8_configs.cpp) on the INT8 row-wise GEMM and the
FP8 row-wise GEMM, and the activation quantization with the one-read and the
two-pass kernel (XQUANT_CUDA_ACT_QUANT_ONE_READ=0).
Timing and L2 rotation are bench_cuda.py's (its docstring). Ratios are bf16
time / ours (> 1: faster than bf16). Prints markdown tables; writes
w8a8.md and w8a8.json to --out.
"""
import argparse
import functools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, F8, I8, bench, bench_into, fmt, ncopies, open_bench  # noqa: E402

ROUTE_ENV = "XQUANT_CUDA_W8A8_GEMM"
CONFIG_ENV = "XQUANT_CUDA_W8A8_CONFIG"
ONE_READ_ENV = "XQUANT_CUDA_ACT_QUANT_ONE_READ"
GEMV_ENV = "XQUANT_CUDA_W8_GEMV"
# The CUTLASS configurations (plugins/cuda/src/cutlass_w8a8_configs.cpp).
I8_CONFIGS = ["i8_64x64_c1x8", "i8_64x128_c2x1_pp", "i8_128x128_c2x1_coop", "i8_128x128_c1x1_sk",
              "i8_128x256_c2x1_coop", "i8_256x128_c2x1_coop", "i8_128x128_c2x1_pp"]
F8_CONFIGS = ["f8_64x64_c1x8", "f8_64x128_c2x1_pp", "f8_128x128_c2x1_coop", "f8_128x128_c1x1_sk",
              "f8_128x128_c2x1_pp_fast"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="1,16,32,64,128,256,1024,4096")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x28672")
    ap.add_argument("--no-configs", action="store_true", help="skip the per-configuration sweep")
    args, shim, dev, name = open_bench(ap)
    lib = shim.lib

    rows = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        codes8 = torch.randint(-127, 128, (N, K), dtype=torch.int8)
        scales8 = (torch.rand(N) * 0.01 + 0.001).float()
        n8 = ncopies(N * K)
        w8 = [shim.prepare(codes8, scales8, None, N, K, 0, 8, 2) for _ in range(n8)]
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        wi8 = [codes8.to(dev) for _ in range(n8)]
        # Clamped: torch's cast to float8_e4m3fn turns |v| > 448 into NaN (bench_cuda.py's weights have a
        # few such NaNs; they cost no time but poison the sanity difference below).
        wf8 = [(torch.randn(N, K, device=dev) * 100).clamp(-448, 448).to(torch.float8_e4m3fn) for _ in range(n8)]
        sw8 = scales8.to(dev)
        for M in [int(m) for m in args.ms.split(",")]:
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            xq = torch.randint(-127, 128, (M, K), device=dev, dtype=torch.int8)
            sc = torch.cat([torch.rand(M, device=dev) * 0.01 + 1e-3, sw8]).float().contiguous()
            xf = (torch.randn(M, K, device=dev) * 10).to(torch.float8_e4m3fn)
            qbuf = torch.empty(M, K, device=dev, dtype=torch.int8)
            sbuf = torch.empty(M, device=dev, dtype=torch.float32)
            one = torch.ones((), device=dev)
            sa_col = sc[:M].view(M, 1).contiguous()
            sb_row = sc[M:].view(1, N).contiguous()
            r = {"K": K, "N": N, "M": M}

            run = functools.partial(bench_into, r)

            def chk(rc, what):
                shim.check(rc, what)

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            for key, one_read in (("act_quant", "1"), ("act_quant_2p", "0")):
                os.environ[ONE_READ_ENV] = one_read
                run(key, lambda i: chk(lib.xqc_quantize_act(x.data_ptr(), qbuf.data_ptr(), sbuf.data_ptr(), M, K,
                                                            BF16, I8), "quant"), 1)
            os.environ.pop(ONE_READ_ENV, None)
            for route, tag in (("cublaslt", "lt"), ("cutlass", "cl"), ("auto", "auto")):
                os.environ[ROUTE_ENV] = route  # read by the provider at every call
                # The forced routes run their GEMM at every M; "auto" is the default dispatch, which takes
                # the few-row kernel at M <= 8 (w8a8_gemv.hpp; bench_w8_gemv.py times it on its own).
                if tag == "auto":
                    os.environ.pop(GEMV_ENV, None)
                else:
                    os.environ[GEMV_ENV] = "0"
                run(f"i8_q_{tag}", lambda i: chk(lib.xqc_qmatmul(w8[i], x.data_ptr(), y.data_ptr(), M, N, K,
                                                                 BF16, BF16, 0), "i8q"), n8)
                run(f"i8_mm_{tag}", lambda i: chk(lib.xqc_matmul(xq.data_ptr(), wi8[i].data_ptr(), y.data_ptr(),
                                                                 M, N, K, I8, BF16, 1, sc.data_ptr(), 1.0, 1.0),
                                                  "i8mm"), n8)
                run(f"f8_{tag}", lambda i: chk(lib.xqc_matmul(xf.data_ptr(), wf8[i].data_ptr(), y.data_ptr(),
                                                              M, N, K, F8, BF16, 0, None, 1.0, 1.0), "f8"), n8)
                run(f"f8r_{tag}", lambda i: chk(lib.xqc_matmul(xf.data_ptr(), wf8[i].data_ptr(), y.data_ptr(),
                                                               M, N, K, F8, BF16, 1, sc.data_ptr(), 1.0, 1.0),
                                                "f8r"), n8)
            # Every CUTLASS configuration forced by name on the row-wise GEMMs.
            cfg = {}
            if not args.no_configs:
                os.environ[ROUTE_ENV] = "cutlass"
                for name in I8_CONFIGS + F8_CONFIGS:
                    os.environ[CONFIG_ENV] = name
                    if name.startswith("i8"):
                        fn = lambda i: chk(lib.xqc_matmul(xq.data_ptr(), wi8[i].data_ptr(), y.data_ptr(), M, N, K, I8,
                                                          BF16, 1, sc.data_ptr(), 1.0, 1.0), "i8cfg")
                    else:
                        fn = lambda i: chk(lib.xqc_matmul(xf.data_ptr(), wf8[i].data_ptr(), y.data_ptr(), M, N, K, F8,
                                                          BF16, 1, sc.data_ptr(), 1.0, 1.0), "f8cfg")
                    try:
                        cfg[name] = bench(fn, n8)
                    except Exception as ex:
                        print(f"  {name} M={M}: {ex}", file=sys.stderr, flush=True)
                        cfg[name] = None
                os.environ.pop(CONFIG_ENV, None)
                os.environ.pop(ROUTE_ENV, None)
            r["cfg"] = cfg
            # Sanity: the two routes agree on the same operands (rel. Frobenius difference).
            for key, dt, a, w, vec in (("diff_i8", I8, xq, wi8[0], 1), ("diff_f8r", F8, xf, wf8[0], 1)):
                outs = []
                for route in ("cublaslt", "cutlass"):
                    os.environ[ROUTE_ENV] = route
                    o = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
                    try:
                        chk(lib.xqc_matmul(a.data_ptr(), w.data_ptr(), o.data_ptr(), M, N, K, dt, BF16, vec,
                                           sc.data_ptr(), 1.0, 1.0), key)
                        outs.append(o.float())
                    except Exception as ex:
                        print(f"  {key} {route} M={M}: {ex}", file=sys.stderr, flush=True)
                r[key] = ((outs[1] - outs[0]).norm() / outs[0].norm()).item() if len(outs) == 2 else None
            os.environ.pop(ROUTE_ENV, None)
            if M > 16:
                run("t_int_mm", lambda i: torch._int_mm(xq, wi8[i].t()), n8)
            else:
                r["t_int_mm"] = "-"
            run("t_f8", lambda i: torch._scaled_mm(xf, wf8[i].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16), n8)
            run("t_f8r", lambda i: torch._scaled_mm(xf, wf8[i].t(), scale_a=sa_col, scale_b=sb_row,
                                                   out_dtype=torch.bfloat16), n8)
            run("t_f8_fast", lambda i: torch._scaled_mm(xf, wf8[i].t(), scale_a=one, scale_b=one,
                                                       out_dtype=torch.bfloat16, use_fast_accum=True), n8)
            run("t_f8r_fast", lambda i: torch._scaled_mm(xf, wf8[i].t(), scale_a=sa_col, scale_b=sb_row,
                                                        out_dtype=torch.bfloat16, use_fast_accum=True), n8)
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 1) if isinstance(v, float) and not k.startswith("diff") else v)
                                    for k, v in r.items()}), flush=True)
        for w in w8:
            lib.xqc_release(w)
        del wbf, wi8, wf8
        torch.cuda.empty_cache()

    def x(base, v):
        return "–" if (v is None or v == "-" or base is None) else f"{base / v:.2f}"

    def best(r, names):
        got = [(r["cfg"].get(n), n) for n in names if r["cfg"].get(n) is not None]
        return min(got) if got else (None, "–")

    i8_main = [n for n in I8_CONFIGS]
    f8_main = [n for n in F8_CONFIGS if not n.endswith("_fast")]
    lines = [f"Device: {name}; torch {torch.__version__}; plugin: {shim.why}", "",
             "INT8 (auto = default dispatch; best = fastest forced CUTLASS configuration, row-wise GEMM):", "",
             "| K | N | M | bf16 µs | QMATMUL µs: cuBLASLt / auto (×bf16) | act-quant µs: one read / two pass | "
             "GEMM µs: cuBLASLt / auto (×bf16) | best config: µs (×bf16) | torch _int_mm µs |",
             "|" + "---|" * 9]
    for r in rows:
        b = r["bf16"]
        bt, bn = best(r, i8_main)
        lines.append(
            f"| {r['K']} | {r['N']} | {r['M']} | {fmt(b)} | {fmt(r['i8_q_lt'])} / {fmt(r['i8_q_auto'])} "
            f"({x(b, r['i8_q_lt'])} / {x(b, r['i8_q_auto'])}) | {fmt(r['act_quant'])} / {fmt(r['act_quant_2p'])} | "
            f"{fmt(r['i8_mm_lt'])} / {fmt(r['i8_mm_auto'])} ({x(b, r['i8_mm_lt'])} / {x(b, r['i8_mm_auto'])}) | "
            f"{bn}: {fmt(bt)} ({x(b, bt)}) | {fmt(r['t_int_mm'])} |")
    lines += ["", "FP8 (torch = _scaled_mm, fast = use_fast_accum=True; best = fastest forced CUTLASS configuration "
              "without fast accumulation, row-wise; pp_fast = f8_128x128_c2x1_pp_fast):", "",
              "| K | N | M | per-tensor µs: cuBLASLt / auto / torch / torch fast (torch/auto) | "
              "row-wise µs: cuBLASLt / auto / torch / torch fast (torch/auto) | best config: µs (torch/best) | "
              "pp_fast µs (torch fast/pp_fast) |",
              "|" + "---|" * 7]
    for r in rows:
        bt, bn = best(r, f8_main)
        pf = r["cfg"].get("f8_128x128_c2x1_pp_fast")
        lines.append(
            f"| {r['K']} | {r['N']} | {r['M']} | {fmt(r['f8_lt'])} / {fmt(r['f8_auto'])} / {fmt(r['t_f8'])} / "
            f"{fmt(r['t_f8_fast'])} ({x(r['t_f8'], r['f8_auto'])}) | {fmt(r['f8r_lt'])} / {fmt(r['f8r_auto'])} / "
            f"{fmt(r['t_f8r'])} / {fmt(r['t_f8r_fast'])} ({x(r['t_f8r'], r['f8r_auto'])}) | "
            f"{bn}: {fmt(bt)} ({x(r['t_f8r'], bt)}) | {fmt(pf)} ({x(r['t_f8r_fast'], pf)}) |")
    if not args.no_configs:
        lines += ["", "Every configuration, µs (row-wise GEMM, BF16 out):", "",
                  "| K | N | M | " + " | ".join(I8_CONFIGS + F8_CONFIGS) + " |",
                  "|" + "---|" * (3 + len(I8_CONFIGS) + len(F8_CONFIGS))]
        for r in rows:
            lines.append(f"| {r['K']} | {r['N']} | {r['M']} | " +
                         " | ".join(fmt(r["cfg"].get(n)) for n in I8_CONFIGS + F8_CONFIGS) + " |")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "w8a8.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "w8a8.json"), "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
