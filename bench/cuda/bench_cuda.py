#!/usr/bin/env python3
"""bench_cuda.py: our quantized GEMMs against PyTorch's, in one process.

Our kernels run through the built plugin (libxquant-cuda.so) via the C shim
libxqc_shim.so; PyTorch's through torch. Both run on the legacy default
stream. Every operand set is rotated over enough weight copies that the
working set is >= 3x the L2 (50 MB), so no call finds its weights in L2.
A measurement = median over 7 batches of per-call time (CUDA events around a
batch of >= 20 back-to-back calls, so host launch overhead is hidden when the
GPU is the bottleneck, as in a real decode loop).

Ratios are bf16 cuBLAS (torch.nn.functional.linear) time / our time, so > 1
means faster than the half-precision baseline.
"""
import argparse
import functools
import ctypes
import json
import math
import os
import statistics
import sys

import torch

BF16, F16, F32, I8, F8 = 3, 2, 1, 5, 14
L2_BYTES = 50 << 20


def ncopies(nbytes):
    return max(2, min(24, math.ceil(3 * L2_BYTES / max(1, nbytes))))


def bench(fn, n_copies, reps=7, min_batch=20):
    """Median per-call microseconds of fn(i) for i cycling over copies."""
    batch = max(min_batch, n_copies)
    for i in range(max(3, n_copies)):
        fn(i % n_copies)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for i in range(batch):
            fn(i % n_copies)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) * 1000.0 / batch)
    return statistics.median(times)


def bench_into(r, key, fn, n_copies):
    """r[key] = bench(fn, n_copies); a case that fails is reported on stderr
    (with r's "M") and recorded as None, and the sweep goes on."""
    try:
        r[key] = bench(fn, n_copies)
    except Exception as ex:  # report, keep going
        print(f"  {key} M={r.get('M')}: {ex}", file=sys.stderr, flush=True)
        r[key] = None


def copy_bandwidth(dev):
    """Device-to-device copy rate on 1 GiB, bytes read + written per second, in TB/s."""
    a = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    t = bench(lambda i: b.copy_(a), 1, reps=5, min_batch=5)
    del a, b
    return 2 * (1 << 30) / (t * 1e-6) / 1e12


def write_results(out, stem, text, payload):
    """Prints the markdown table and writes it to OUT/STEM.md, the payload to OUT/STEM.json."""
    print("\n" + text, flush=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, stem + ".md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(payload, f, indent=1)


class Shim:
    def __init__(self, shim_path, plugin_path):
        lib = ctypes.CDLL(shim_path)
        vp, i64, c_int, c_float = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
        lib.xqc_init.argtypes = [ctypes.c_char_p]
        lib.xqc_last_error.restype = ctypes.c_char_p
        lib.xqc_why.restype = ctypes.c_char_p
        lib.xqc_prepare.argtypes = [vp, vp, vp, i64, i64, i64, c_int, c_int, c_float]
        lib.xqc_prepare.restype = vp
        lib.xqc_prepare_gidx.argtypes = [vp, vp, vp, vp, i64, i64, i64, c_int]
        lib.xqc_prepare_gidx.restype = vp
        lib.xqc_release.argtypes = [vp]
        lib.xqc_qmatmul.argtypes = [vp, vp, vp, i64, i64, i64, c_int, c_int, c_int]
        lib.xqc_matmul.argtypes = [vp, vp, vp, i64, i64, i64, c_int, c_int, c_int, vp, c_float, c_float]
        lib.xqc_quantize_act.argtypes = [vp, vp, vp, i64, i64, c_int, c_int]
        self.lib = lib
        score = lib.xqc_init(plugin_path.encode())
        if score <= 0:
            raise RuntimeError(f"plugin unusable (score {score}): {lib.xqc_why().decode()} {lib.xqc_last_error().decode()}")
        self.why = lib.xqc_why().decode()

    def check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: status {rc}: {self.lib.xqc_last_error().decode()}")

    def prepare(self, codes, scales, zp, N, K, group, bits, act, input_scale=0.0):
        w = self.lib.xqc_prepare(codes.data_ptr(), scales.data_ptr(), zp.data_ptr() if zp is not None else None,
                                 N, K, group, bits, act, input_scale)
        if not w:
            raise RuntimeError("prepare: " + self.lib.xqc_last_error().decode())
        return w

    def prepare_gidx(self, codes, scales, zp, g_idx, N, K, group, bits):
        """A weight-only weight with act-order columns (g_idx[K]: each column's group)."""
        w = self.lib.xqc_prepare_gidx(codes.data_ptr(), scales.data_ptr(), zp.data_ptr() if zp is not None else None,
                                      g_idx.data_ptr(), N, K, group, bits)
        if not w:
            raise RuntimeError("prepare (act-order): " + self.lib.xqc_last_error().decode())
        return w


def open_bench(ap):
    """The benchmarks' common start: adds --shim, --plugin and --out to `ap`
    (which holds the script's own options), parses the command line, seeds
    torch, opens the plugin through the shim and prints the device line.
    Returns (args, shim, torch device, device name)."""
    ap.add_argument("--shim", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    shim = Shim(args.shim, args.plugin)
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}; torch {torch.__version__}; plugin: {shim.why}", flush=True)
    return args, shim, dev, name


def fmt(v):
    return "err" if v is None else ("–" if v == "-" else f"{v:.1f}")


def ratio(base, v):
    return "–" if (v is None or v == "-" or base is None) else f"{base / v:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", default="1,16,32,64,128,256,1024,4096")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x28672")
    args, shim, dev, name = open_bench(ap)

    # Copy bandwidth (bytes read + written) on 1 GiB.
    a = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    t_copy = bench(lambda i: b.copy_(a), 1, reps=5, min_batch=5)
    copy_bw = 2 * (1 << 30) / (t_copy * 1e-6) / 1e12
    del a, b
    print(f"copy bandwidth: {copy_bw:.2f} TB/s (read+write)", flush=True)

    ms = [int(m) for m in args.ms.split(",")]
    rows = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        G = K // 128
        # Canonical weights on the host (the ABI's input), prepared by the plugin.
        codes4 = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales4 = (torch.rand(N, G) * 0.01 + 0.001).float()
        n4 = ncopies(N * K // 2)
        w4 = [shim.prepare(codes4, scales4, None, N, K, 128, 4, 0) for _ in range(n4)]
        # Asymmetric (a zero point per group) and act-order (g_idx scatters each
        # group's 128 columns over K, as GPTQ's desc_act does) copies of it.
        zp4 = torch.randint(-8, 8, (N, G), dtype=torch.int8)
        w4a = [shim.prepare(codes4, scales4, zp4, N, K, 128, 4, 0) for _ in range(n4)]
        g_idx = (torch.arange(K, dtype=torch.int32) // 128)[torch.randperm(K)].contiguous()
        w4o = [shim.prepare_gidx(codes4, scales4, None, g_idx, N, K, 128, 4) for _ in range(n4)]
        codes8 = torch.randint(-127, 128, (N, K), dtype=torch.int8)
        scales8 = (torch.rand(N) * 0.01 + 0.001).float()
        n8 = ncopies(N * K)
        w8 = [shim.prepare(codes8, scales8, None, N, K, 0, 8, 2) for _ in range(n8)]
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        wi8 = [codes8.to(dev) for _ in range(n8)]
        wf8 = [(torch.randn(N, K, device=dev) * 100).to(torch.float8_e4m3fn) for _ in range(n8)]
        sw8 = scales8.to(dev)

        # Sanity: each W4A16 form against torch on its dequantized weight (M = 16).
        xs = torch.randn(16, K, device=dev, dtype=torch.bfloat16)
        ys = torch.empty(16, N, device=dev, dtype=torch.bfloat16)
        by_group = torch.arange(K) // 128
        for label, w, zp, grp in (("sym", w4, None, by_group), ("asym", w4a, zp4, by_group),
                                  ("act-order", w4o, None, g_idx.long())):
            z = zp[:, grp].float() if zp is not None else 0.0
            deq = ((codes4.float() - z) * scales4[:, grp]).to(dev)
            shim.check(shim.lib.xqc_qmatmul(w[0], xs.data_ptr(), ys.data_ptr(), 16, N, K, BF16, BF16, 0), "qmatmul")
            ref = xs.float() @ deq.t()
            sanity = ((ys.float() - ref).norm() / ref.norm()).item()
            del deq, ref
            print(f"K={K} N={N}: W4A16 {label} sanity rel err {sanity:.2e}", flush=True)

        for M in ms:
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            yf = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            r = {"K": K, "N": N, "M": M}

            run = functools.partial(bench_into, r)

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            run("w4", lambda i: shim.check(shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 0), "w4"), n4)
            run("w4_asym", lambda i: shim.check(shim.lib.xqc_qmatmul(w4a[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 0), "w4a"), n4)
            run("w4_act", lambda i: shim.check(shim.lib.xqc_qmatmul(w4o[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 0), "w4o"), n4)
            run("w4_fused", lambda i: shim.check(shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 1), "w4f"), n4)
            if M >= 16:
                run("w4_gemm", lambda i: shim.check(shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 2), "w4g"), n4)
            else:
                r["w4_gemm"] = "-"
            # INT8 W8A8: full QMATMUL from bf16 (dynamic per-token quant + GEMM + epilogue) ...
            run("i8_q", lambda i: shim.check(shim.lib.xqc_qmatmul(w8[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 0), "i8q"), n8)
            # ... and the GEMM + fused epilogue alone on pre-quantized activations.
            xq = torch.randint(-127, 128, (M, K), device=dev, dtype=torch.int8)
            sc = torch.cat([torch.rand(M, device=dev) * 0.01 + 1e-3, sw8]).float().contiguous()
            run("i8_mm", lambda i: shim.check(shim.lib.xqc_matmul(xq.data_ptr(), wi8[i].data_ptr(), yf.data_ptr(), M, N, K, I8, BF16, 1, sc.data_ptr(), 1.0, 1.0), "i8mm"), n8)
            if M > 16:
                run("t_int_mm", lambda i: torch._int_mm(xq, wi8[i].t()), n8)
            else:
                r["t_int_mm"] = "-"
            # FP8: per-tensor and per-token x per-channel (rowwise).
            xf = (torch.randn(M, K, device=dev) * 10).to(torch.float8_e4m3fn)
            one = torch.ones((), device=dev)
            run("f8", lambda i: shim.check(shim.lib.xqc_matmul(xf.data_ptr(), wf8[i].data_ptr(), yf.data_ptr(), M, N, K, F8, BF16, 0, None, 1.0, 1.0), "f8"), n8)
            run("t_f8", lambda i: torch._scaled_mm(xf, wf8[i].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16), n8)
            sa_col = sc[:M].view(M, 1).contiguous()
            sb_row = sc[M:].view(1, N).contiguous()
            run("f8_row", lambda i: shim.check(shim.lib.xqc_matmul(xf.data_ptr(), wf8[i].data_ptr(), yf.data_ptr(), M, N, K, F8, BF16, 1, sc.data_ptr(), 1.0, 1.0), "f8r"), n8)
            run("t_f8_row", lambda i: torch._scaled_mm(xf, wf8[i].t(), scale_a=sa_col, scale_b=sb_row, out_dtype=torch.bfloat16), n8)
            if r.get("w4") and M == 1:
                r["w4_GBs"] = (N * K / 2 + N * G * 4) / (r["w4"] * 1e-6) / 1e9
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
        for w in w4 + w4a + w4o + w8:
            shim.lib.xqc_release(w)
        del wbf, wi8, wf8
        torch.cuda.empty_cache()

    hdr = ("| K | N | M | bf16 µs | W4A16 µs (×bf16) | W4A16 asym µs (×) | W4A16 act-order µs (×) | W4 fused µs | W4 deq+GEMM µs | INT8 W8A8 µs incl. act-quant (×) "
           "| INT8 GEMM+epi µs (×) | torch _int_mm µs | FP8 µs (×) | torch _scaled_mm µs | FP8 rowwise µs | torch rowwise µs |")
    lines = [f"Device: {name}; torch {torch.__version__}; copy bandwidth {copy_bw:.2f} TB/s; plugin: {shim.why}", "",
             hdr, "|" + "---|" * 16]
    for r in rows:
        b = r["bf16"]
        lines.append(
            f"| {r['K']} | {r['N']} | {r['M']} | {fmt(b)} | {fmt(r['w4'])} ({ratio(b, r['w4'])}) | "
            f"{fmt(r['w4_asym'])} ({ratio(b, r['w4_asym'])}) | {fmt(r['w4_act'])} ({ratio(b, r['w4_act'])}) | {fmt(r['w4_fused'])} | "
            f"{fmt(r['w4_gemm'])} | {fmt(r['i8_q'])} ({ratio(b, r['i8_q'])}) | {fmt(r['i8_mm'])} ({ratio(b, r['i8_mm'])}) | "
            f"{fmt(r['t_int_mm'])} | {fmt(r['f8'])} ({ratio(b, r['f8'])}) | {fmt(r['t_f8'])} | {fmt(r['f8_row'])} | "
            f"{fmt(r['t_f8_row'])} |")
    for r in rows:
        if "w4_GBs" in r:
            lines.append(f"\nW4A16 M=1 K={r['K']} N={r['N']}: {r['w4_GBs']:.0f} GB/s of weights+scales = "
                         f"{100 * r['w4_GBs'] / (copy_bw * 1000):.0f}% of copy bandwidth")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "copy_TBps": copy_bw, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
