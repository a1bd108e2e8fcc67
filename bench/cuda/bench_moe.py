#!/usr/bin/env python3
"""bench_moe.py: the fused mixture-of-experts W4A16 path against BF16 baselines, in one process.

Ours: moe_qmatmul of the built plugin (through libxqc_shim.so): sort the routing
slots by expert, all experts' W4A16 GEMMs (g128, symmetric) in one launch,
and for the down projection the weighted top-k combine. Its time includes the
sort (and the combine); it starts from unsorted tokens. The same entry with
dense BF16 experts (xq_moe_op.dense_experts: the grouped tensor-core GEMM of
moe_dense_gemm.cu) on the dequantized weights, timed the same way: the BF16
baseline the engine runs. And W8A8 INT8 experts (per-channel weight
scales, dynamic per-token INT8 activations: the grouped CUTLASS GEMM of
moe_w8a8_sm90.cu), quantized per channel from the same dequantized weights,
timed the same way (the activation quantization, the sort and the way back
to slot order or the combine inside the time).
The W4A16 column is the default dispatch (XQUANT_CUDA_MOE_W4=auto); beside it
both W4A16 kernels forced: "mma" (XQUANT_CUDA_MOE_W4=fused, the mma.sync
kernel of w4a16_gemm.cu) and "grouped" (XQUANT_CUDA_MOE_W4=grouped, the
CUTLASS ptr-array mixed-input GEMM of moe_w4a16_sm90.cuh on the experts'
cuda-w4a16-wgmma copies, the row gather inside the time), which is where
the switch point comes from; and the grouped GEMM with its 64-token tile
forced (XQUANT_CUDA_MOE_W4_TILE=64) beside its own choice of tile.
Baselines, BF16 on the same (dequantized) weights, both given the tokens
already sorted by expert and without any combine (in their favour):
  - loop: one cuBLAS GEMM per expert (torch.mm from Python, so with 128 experts
    it is bound by the host's launch rate, as an eager per-expert MoE is);
  - grouped: torch._grouped_mm, one grouped-GEMM launch for all experts.
Routing is balanced: every expert gets exactly n slots (n = tokens per expert).
A time is the median of 7 batches of >= 20 back-to-back calls (CUDA events);
every expert set is larger than the L2, so weights stream from HBM.
W8A8 also with each grouped-GEMM tile configuration forced
(XQUANT_CUDA_MOE_W8A8_TILE=coop / pingpong), for the choice by shape.
Ratios are baseline time / our time (> 1: ours faster).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import BF16, Shim, bench  # noqa: E402

import ctypes  # noqa: E402

# name: (hidden, moe_intermediate, experts, top_k)
MODELS = {
    "qwen3-30b-a3b": (2048, 768, 128, 8),
    "mixtral-8x7b": (4096, 14336, 8, 2),
}


def prepare_experts(shim, E, N, K, dev):
    """E random g128 int4 experts [N, K]: prepared plugin weights and the BF16 dequantized stack [E, N, K]."""
    G = K // 128
    handles, dense = [], torch.empty(E, N, K, device=dev, dtype=torch.bfloat16)
    for e in range(E):
        codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
        scales = (torch.rand(N, G) * 0.01 + 0.001).float()
        handles.append(shim.prepare(codes, scales, None, N, K, 128, 4, 0))
        dense[e] = (codes.to(dev).float().view(N, G, 128) * scales.to(dev).view(N, G, 1)).view(N, K).bfloat16()
    return handles, dense


def prepare_w8_experts(shim, dense):
    """Per-channel symmetric INT8 experts from the BF16 stack [E, N, K], dynamic per-token activations."""
    E, N, K = dense.shape
    handles = []
    for e in range(E):
        w = dense[e].float()
        s = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
        codes = torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8).cpu().contiguous()
        handles.append(shim.prepare(codes, s.cpu().contiguous(), None, N, K, 0, 8, 2))
    return handles


def probe(kind, shim, dev):
    """One forced call of a not-yet-measured kernel on small experts, synchronized (run in a child):
    w4_grouped: the grouped W4A16 GEMM at both token tiles; w8_pingpong: the ping-pong W8A8 tile."""
    lib = shim.lib
    handles, dense = prepare_experts(shim, 2, 128, 256, dev)
    if kind == "w8_pingpong":
        handles = prepare_w8_experts(shim, dense)
        os.environ["XQUANT_CUDA_MOE_W8A8_TILE"] = "pingpong"
    else:
        os.environ["XQUANT_CUDA_MOE_W4"] = "grouped"
    table = ctypes.cast((ctypes.c_void_p * 2)(*handles), ctypes.c_void_p)
    for T in (40, 300):
        ids = (torch.arange(T, device=dev) % 2).to(torch.int32).view(T, 1).contiguous()
        x = torch.randn(T, 256, device=dev, dtype=torch.bfloat16)
        y = torch.empty(T, 128, device=dev, dtype=torch.bfloat16)
        shim.check(lib.xqc_moe_qmatmul(table, 2, 1, x.data_ptr(), T, 256, ids.data_ptr(), T, None, y.data_ptr(), 128,
                                       BF16), f"moe {kind} probe")
        torch.cuda.synchronize()
    print(f"{kind} probe ok", flush=True)


def runs_in_a_child(kind, args):
    """A kernel fault would leave this process's CUDA context unusable for every later column, so a
    kernel no GPU run has timed yet runs once in a child process first; its column is timed only if
    that passed."""
    import subprocess
    cmd = [sys.executable, os.path.abspath(__file__), "--shim", args.shim, "--plugin", args.plugin, "--probe", kind]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        print(f"{kind} probe timed out: its column is left out", flush=True)
        return False
    if r.returncode != 0:
        print(f"{kind} probe failed in a child process (its column is left out):\n" +
              (r.stdout + r.stderr)[-2000:], flush=True)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--models", default="qwen3-30b-a3b,mixtral-8x7b")
    ap.add_argument("--tokens-per-expert", default="4,16,32,64,128,256,512,1024")
    ap.add_argument("--projs", default="gate_up,down", help="projections to time: gate_up, down or both")
    ap.add_argument("--no-w8", action="store_true", help="skip the W8A8 INT8 experts")
    ap.add_argument("--skip", default="", help="methods (columns) not to time, comma-separated, e.g. bf16_loop,w8_coop")
    ap.add_argument("--probe", choices=("w4_grouped", "w8_pingpong"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    skipped = set(args.skip.split(","))
    grouped_ok = args.probe is None and "w4_grouped" not in skipped and runs_in_a_child("w4_grouped", args)
    pingpong_ok = (args.probe is None and not args.no_w8 and "w8_pingpong" not in skipped and
                   runs_in_a_child("w8_pingpong", args))
    shim = Shim(args.shim, args.plugin)
    lib = shim.lib
    vp, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.xqc_moe_qmatmul.argtypes = [vp, c_int, c_int, vp, i64, i64, vp, i64, vp, vp, i64, c_int]
    if args.probe:
        return probe(args.probe, shim, dev)
    if not grouped_ok:
        args.skip += ",w4_grouped"
    if not pingpong_ok:
        args.skip += ",w8_pingpong"
    lib.xqc_moe_dense.argtypes = lib.xqc_moe_qmatmul.argtypes
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}; torch {torch.__version__}; plugin: {shim.why}", flush=True)
    rows = []
    for model in args.models.split(","):
        H, I, E, k = MODELS[model]
        for proj, (K, N) in (("gate_up", (H, 2 * I)), ("down", (I, H))):
            if proj not in args.projs.split(","):
                continue
            handles, dense = prepare_experts(shim, E, N, K, dev)
            w8 = [] if args.no_w8 else prepare_w8_experts(shim, dense)
            w8_arr = (ctypes.c_void_p * E)(*w8) if w8 else None
            w8_table = ctypes.cast(w8_arr, ctypes.c_void_p) if w8 else None
            table_arr = (ctypes.c_void_p * E)(*handles)
            table = ctypes.cast(table_arr, ctypes.c_void_p)
            dense_arr = (ctypes.c_void_p * E)(*[dense[e].data_ptr() for e in range(E)])
            dense_table = ctypes.cast(dense_arr, ctypes.c_void_p)
            w_t = dense.transpose(1, 2)  # [E, K, N], column-major per expert, as _grouped_mm takes it
            for n in (int(v) for v in args.tokens_per_expert.split(",")):
                S = n * E
                T = S // k
                ids = (torch.randperm(S, device=dev) % E).to(torch.int32).view(T, k).contiguous()
                wts = torch.softmax(torch.randn(T, k, device=dev), dim=1).float().contiguous()
                per_slot = proj == "down"
                x = torch.randn(S if per_slot else T, K, device=dev, dtype=torch.bfloat16)
                y = torch.empty(T if per_slot else S, N, device=dev, dtype=torch.bfloat16)
                # The baselines' input: rows sorted by expert, n per expert.
                order = torch.argsort(ids.view(-1), stable=True)
                xs = (x[order] if per_slot else x[order // k]).contiguous()
                ys = torch.empty(S, N, device=dev, dtype=torch.bfloat16)
                offs = torch.arange(1, E + 1, device=dev, dtype=torch.int32) * n
                r = {"model": model, "proj": proj, "K": K, "N": N, "E": E, "top_k": k, "tokens_per_expert": n, "T": T}

                def ours(_):
                    shim.check(lib.xqc_moe_qmatmul(table, E, k, x.data_ptr(), x.shape[0], K, ids.data_ptr(), T,
                                                   wts.data_ptr() if per_slot else None, y.data_ptr(), N, BF16), "moe")

                def with_w4_mode(mode, tile=None):
                    env = {"XQUANT_CUDA_MOE_W4": mode}
                    if tile:
                        env["XQUANT_CUDA_MOE_W4_TILE"] = tile

                    def run(_):
                        os.environ.update(env)
                        try:
                            ours(0)
                        finally:
                            for key in env:
                                os.environ.pop(key, None)
                    return run

                def ours_w8(_):
                    shim.check(lib.xqc_moe_qmatmul(w8_table, E, k, x.data_ptr(), x.shape[0], K, ids.data_ptr(), T,
                                                   wts.data_ptr() if per_slot else None, y.data_ptr(), N, BF16), "moe w8a8")

                def ours_bf16(_):
                    shim.check(lib.xqc_moe_dense(dense_table, E, k, x.data_ptr(), x.shape[0], K, ids.data_ptr(), T,
                                                 wts.data_ptr() if per_slot else None, y.data_ptr(), N, BF16), "moe dense")

                def loop(_):
                    for e in range(E):
                        torch.mm(xs[e * n:(e + 1) * n], dense[e].t(), out=ys[e * n:(e + 1) * n])

                def grouped(_):
                    torch._grouped_mm(xs, w_t, offs=offs, out_dtype=torch.bfloat16)

                methods = [("w4_fused", ours), ("bf16_fused", ours_bf16), ("bf16_loop", loop), ("bf16_grouped", grouped)]
                methods += [("w4_mma", with_w4_mode("fused")), ("w4_grouped", with_w4_mode("grouped")),
                            ("w4_grouped64", with_w4_mode("grouped", "64"))]
                if w8:
                    methods.append(("w8_fused", ours_w8))

                    def ours_w8_tile(tile):
                        def run(_):
                            os.environ["XQUANT_CUDA_MOE_W8A8_TILE"] = tile
                            try:
                                ours_w8(0)
                            finally:
                                os.environ.pop("XQUANT_CUDA_MOE_W8A8_TILE", None)
                        return run
                    methods += [("w8_coop", ours_w8_tile("coop")), ("w8_pingpong", ours_w8_tile("pingpong"))]
                skip = set(filter(None, args.skip.split(",")))
                for key, fn in methods:
                    if key in skip:
                        r[key] = None
                        continue
                    try:
                        r[key] = bench(fn, 1)
                    except Exception as ex:  # report and keep going
                        print(f"  {model} {proj} n={n} {key}: {ex}", file=sys.stderr, flush=True)
                        r[key] = None
                # Sanity: ours against the BF16 loop on the same weights.
                try:
                    ours(0)
                    loop(0)
                    ref = torch.empty(S, N, device=dev, dtype=torch.float32)
                    ref[order] = ys.float()
                    if per_slot:
                        ref = (ref.view(T, k, N) * wts.view(T, k, 1)).sum(1)
                    r["rel_err"] = ((y.float() - ref).norm() / ref.norm()).item()
                    if grouped_ok:
                        with_w4_mode("grouped")(0)
                        r["rel_err_w4_grouped"] = ((y.float() - ref).norm() / ref.norm()).item()
                    ours_bf16(0)
                    r["rel_err_bf16_fused"] = ((y.float() - ref).norm() / ref.norm()).item()
                    if w8:  # against the BF16 weights it was quantized from: weight + activation rounding
                        ours_w8(0)
                        r["rel_err_w8"] = ((y.float() - ref).norm() / ref.norm()).item()
                    if w8 and pingpong_ok:
                        ours_w8_tile("pingpong")(0)
                        r["rel_err_w8_pingpong"] = ((y.float() - ref).norm() / ref.norm()).item()
                except Exception as ex:
                    print(f"  {model} {proj} n={n} check: {ex}", file=sys.stderr, flush=True)
                    r.setdefault("rel_err", None)
                    r.setdefault("rel_err_bf16_fused", None)
                r.setdefault("rel_err_w4_grouped", None)
                r.setdefault("w8_fused", None)
                r.setdefault("w8_coop", None)
                r.setdefault("w8_pingpong", None)
                r.setdefault("rel_err_w8", None)
                r.setdefault("rel_err_w8_pingpong", None)
                rows.append(r)
                print("  " + json.dumps({a: (round(v, 4) if isinstance(v, float) else v) for a, v in r.items()}),
                      flush=True)
            for h in handles + w8:
                lib.xqc_release(h)
            del dense, w_t
            torch.cuda.empty_cache()

    def f(v):
        return "err" if v is None else f"{v:.1f}"

    def times(b, v):
        return "–" if (b is None or v is None) else f"{b / v:.2f}×"

    lines = [f"Device: {name}; torch {torch.__version__}; plugin: {shim.why}", "",
             "W4A16 ratios: baseline time / W4A16 fused time; BF16 fused (ours, dense experts): "
             "torch grouped time / ours.", "",
             "| model | GEMM | K | N | experts, top-k | tokens/expert | W4A16 fused µs | BF16 fused µs (×) "
             "| BF16 loop µs (×) | BF16 grouped µs (×) | BF16 fused vs grouped | rel err W4 / BF16 fused |",
             "|" + "---|" * 12]

    def err(v):
        return "err" if v is None else f"{v:.1e}"

    for r in rows:
        lines.append(f"| {r['model']} | {r['proj']} | {r['K']} | {r['N']} | {r['E']}, {r['top_k']} | "
                     f"{r['tokens_per_expert']} | {f(r['w4_fused'])} | {f(r['bf16_fused'])} "
                     f"({times(r['bf16_fused'], r['w4_fused'])}) | {f(r['bf16_loop'])} "
                     f"({times(r['bf16_loop'], r['w4_fused'])}) | {f(r['bf16_grouped'])} "
                     f"({times(r['bf16_grouped'], r['w4_fused'])}) | {times(r['bf16_grouped'], r['bf16_fused'])} | "
                     f"{err(r['rel_err'])} / {err(r['rel_err_bf16_fused'])} |")
    if any(r.get("w4_grouped") is not None for r in rows):
        lines += ["", "W4A16, both kernels forced (mma: XQUANT_CUDA_MOE_W4=fused; grouped: =grouped, the CUTLASS "
                  "ptr-array mixed-input GEMM) against torch grouped BF16:", "",
                  "| model | GEMM | tokens/expert | W4A16 auto µs | mma µs | grouped µs | grouped, 64-token tile µs | "
                  "BF16 grouped µs | grouped BF16 / auto | grouped BF16 / mma | grouped BF16 / grouped | "
                  "rel err grouped |",
                  "|" + "---|" * 12]
        for r in rows:
            lines.append(f"| {r['model']} | {r['proj']} | {r['tokens_per_expert']} | {f(r['w4_fused'])} | "
                         f"{f(r['w4_mma'])} | {f(r['w4_grouped'])} | {f(r.get('w4_grouped64'))} | "
                         f"{f(r['bf16_grouped'])} | "
                         f"{times(r['bf16_grouped'], r['w4_fused'])} | {times(r['bf16_grouped'], r['w4_mma'])} | "
                         f"{times(r['bf16_grouped'], r['w4_grouped'])} | {err(r['rel_err_w4_grouped'])} |")
    if any(r["w8_fused"] is not None for r in rows):
        lines += ["", "W8A8 INT8 fused (moe_qmatmul, grouped CUTLASS GEMM) against torch grouped BF16 and our W4A16:", "",
                  "| model | GEMM | tokens/expert | W8A8 fused µs | BF16 grouped µs | grouped / W8A8 | "
                  "BF16 fused (ours) / W8A8 | W4A16 fused / W8A8 | rel err W8A8 vs BF16 |",
                  "|" + "---|" * 9]
        for r in rows:
            lines.append(f"| {r['model']} | {r['proj']} | {r['tokens_per_expert']} | {f(r['w8_fused'])} | "
                         f"{f(r['bf16_grouped'])} | {times(r['bf16_grouped'], r['w8_fused'])} | "
                         f"{times(r['bf16_fused'], r['w8_fused'])} | {times(r['w4_fused'], r['w8_fused'])} | "
                         f"{err(r['rel_err_w8'])} |")
    if any(r["w8_pingpong"] is not None for r in rows):
        lines += ["", "W8A8 INT8 tile configurations forced (XQUANT_CUDA_MOE_W8A8_TILE): cooperative 128x128x128 "
                  "c1x2 and ping-pong 64x256x128 c1x2, against torch grouped BF16:", "",
                  "| model | GEMM | tokens/expert | W8A8 auto µs | coop µs | ping-pong µs | grouped BF16 / auto | "
                  "grouped BF16 / coop | grouped BF16 / ping-pong | rel err ping-pong vs BF16 |",
                  "|" + "---|" * 10]
        for r in rows:
            lines.append(f"| {r['model']} | {r['proj']} | {r['tokens_per_expert']} | {f(r['w8_fused'])} | "
                         f"{f(r['w8_coop'])} | {f(r['w8_pingpong'])} | {times(r['bf16_grouped'], r['w8_fused'])} | "
                         f"{times(r['bf16_grouped'], r['w8_coop'])} | {times(r['bf16_grouped'], r['w8_pingpong'])} | "
                         f"{err(r['rel_err_w8_pingpong'])} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "moe-bench.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "moe-bench.json"), "w") as fh:
        json.dump({"device": name, "torch": torch.__version__, "rows": rows}, fh, indent=1)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
