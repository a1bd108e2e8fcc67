#!/usr/bin/env python3
"""bench_w4_hopper.py: the W4A16 paths of the cuda provider against bf16 cuBLAS, one process.

Per shape (K x N, group 128) and batch M, in the same run: torch bf16 (torch.matmul on a
dense bf16 weight), the pre-Hopper dispatch ("old": the mma.sync kernel for M <= 128,
dequantize + cuBLASLt above, forced with QMATMUL's op.i[7] = 1 / 2), the Hopper wgmma kernel
forced (op.i[7] = 3) with each schedule (XQUANT_CUDA_W4_HOPPER_SCHEDULE = coop / pingpong /
wide; "coop, per-call params" adds XQUANT_CUDA_W4_HOPPER_PLAN=0: the first version of the
kernel exactly) and the provider's default dispatch, timed first and again last among the
W4 columns (a drift between the two is the GPU's, not the dispatch's). Timing as
bench_cuda.py (whose helpers this imports): weights rotated over copies >= 3x L2, median of
7 batches of >= 20 calls. Before timing, each shape checks every schedule (symmetric and
asymmetric) against torch on the dequantized weight.

--ncu-one runs only the Hopper kernel at one shape and M (for `ncu -k regex:device_kernel`).
"""
import argparse
import functools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, Shim, bench_into, fmt, ncopies, ratio  # noqa: E402

FORCE_FUSED, FORCE_DEQ_GEMM, FORCE_HOPPER = 1, 2, 3
SCHEDULES = ("coop", "pingpong", "wide")


def use_schedule(schedule, per_call_params=False):
    """The provider reads both at every call (provider_w4_hopper.cpp)."""
    os.environ["XQUANT_CUDA_W4_HOPPER_SCHEDULE"] = schedule
    os.environ["XQUANT_CUDA_W4_HOPPER_PLAN"] = "0" if per_call_params else "1"


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
    ref = x.float() @ deq.t()
    errs = {}
    for schedule in SCHEDULES:
        use_schedule(schedule)
        y = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
        shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, FORCE_HOPPER), schedule)
        errs[schedule] = ((y.float() - ref).norm() / ref.norm()).item()
    use_schedule("auto")
    shim.lib.xqc_release(w)
    return errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--ms", default="64,128,256,1024,4096")
    ap.add_argument("--shapes", default="4096x4096,4096x14336,14336x4096,8192x28672")
    ap.add_argument("--ncu-one", default="", help="KxN:M: run only the Hopper kernel there, a few times")
    ap.add_argument("--ncu-schedule", default="auto", help="the schedule --ncu-one runs")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    shim = Shim(args.shim, args.plugin)
    name = torch.cuda.get_device_name(0)

    if args.ncu_one:
        shape, m = args.ncu_one.split(":")
        K, N = (int(v) for v in shape.split("x"))
        M = int(m)
        w = shim.prepare(torch.randint(-8, 8, (N, K), dtype=torch.int8), (torch.rand(N, K // 128) * 0.01).float(),
                         None, N, K, 128, 4, 0)
        x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
        use_schedule(args.ncu_schedule)
        for _ in range(3):
            shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, FORCE_HOPPER), "h")
        torch.cuda.synchronize()
        return

    print(f"device: {name}; torch {torch.__version__}; plugin: {shim.why}", flush=True)
    ms = [int(m) for m in args.ms.split(",")]
    rows, checks = [], []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        G = K // 128
        for asym in (False, True):
            errs = sanity(shim, dev, N, K, G, 65, asym)
            checks.append({"K": K, "N": N, "asym": asym, "rel_err": errs})
            print(f"K={K} N={N} {'asym' if asym else 'sym'}: Hopper rel err vs torch " +
                  ", ".join(f"{k} {v:.2e}" for k, v in errs.items()), flush=True)
        codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales = (torch.rand(N, G) * 0.01 + 0.001).float()
        n4 = ncopies(N * K // 2)
        w4 = [shim.prepare(codes, scales, None, N, K, 128, 4, 0) for _ in range(n4)]
        nb = ncopies(N * K * 2)
        wbf = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(nb)]
        for M in ms:
            x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            y = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
            r = {"K": K, "N": N, "M": M}

            run = functools.partial(bench_into, r)

            def q(force):
                return lambda i: shim.check(
                    shim.lib.xqc_qmatmul(w4[i], x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, force), "w4")

            run("bf16", lambda i: torch.matmul(x, wbf[i].t(), out=y), nb)
            use_schedule("auto")
            # Which path the default dispatch took, from its output bits: the forced
            # Hopper kernel with the same (auto) schedule is deterministic, the older
            # paths round differently.
            q(FORCE_HOPPER)(0)
            y_forced = y.clone()
            q(0)(0)
            r["default_is_hopper"] = bool(torch.equal(y, y_forced))
            run("default", q(0), n4)
            run("old", q(FORCE_FUSED if M <= 128 else FORCE_DEQ_GEMM), n4)
            use_schedule("coop", per_call_params=True)
            run("coop_percall", q(FORCE_HOPPER), n4)
            for schedule in SCHEDULES:
                use_schedule(schedule)
                run(schedule, q(FORCE_HOPPER), n4)
            use_schedule("auto")
            run("default_again", q(0), n4)
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
        for w in w4:
            shim.lib.xqc_release(w)
        del wbf
        torch.cuda.empty_cache()

    lines = [f"Device: {name}; torch {torch.__version__}; plugin: {shim.why}", "",
             "| K | N | M | bf16 µs | old path µs (×bf16) | coop, per-call params | coop | pingpong | wide | "
             "default dispatch, first / again µs (×bf16) | default = Hopper bits |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["bf16"]
        cols = [f"{fmt(r[k])} ({ratio(b, r[k])})" for k in ("old", "coop_percall") + SCHEDULES]
        lines.append(f"| {r['K']} | {r['N']} | {r['M']} | {fmt(b)} | " + " | ".join(cols) +
                     f" | {fmt(r['default'])} / {fmt(r['default_again'])} ({ratio(b, r['default'])}) | "
                     f"{'yes' if r['default_is_hopper'] else 'no'} |")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "w4_hopper_bench.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "w4_hopper_bench.json"), "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "checks": checks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
