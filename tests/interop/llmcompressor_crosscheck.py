"""llmcompressor_crosscheck.py: compares xquant's gptq and smoothquant plugins
with llm-compressor on identical inputs (written by xquant_algo_dump).

GPTQ. llm-compressor (>= 0.10) computes every scale/zero point up front with
its observer on the original W (strategy channel or group; actorder None or
"weight"), then runs quantize_weight (modifiers/gptq/gptq_quantize.py). That is
xquant's gptq with static_groups=true, so those cases are compared with
llm-compressor itself: codes equal for >= 99% of entries, scales identical to
float tolerance (all of them). xquant's default (static_groups=false: each group's scale is
taken when the loop reaches it, from the error-updated W, as IST-DASLab
gptq.py / AutoGPTQ do) has no llm-compressor counterpart any more, so those
cases are compared with a line-by-line torch transcription of gptq.py
fasterquant that uses compressed-tensors' own calculate_qparams and
fake_quantize, and torch's cholesky / cholesky_inverse: codes equal for >= 99%,
scales within 1e-5 relative for >= 99% of groups (a code flipped by a float
tie changes the error-updated weights behind later groups).

The Hessian handed to both is H = (2/N) X^T X with N tokens (our scaling;
llm-compressor divides by its sample count, which only rescales H and cancels
through the relative damping).

SmoothQuant. llm-compressor's _calculate_smoothing_scales uses
2 * max|W_j| as the weight range (and the activation range max - min); the
SmoothQuant paper (arXiv 2211.10438) / mit-han-lab smooth.py smooth_ln_fcs (our reference) use max|W_j|
and max|X_j|. Fed the same activation statistic (our absmax), the two differ by
exactly 2^(alpha - 1); the script checks s_ours == s_llmc * 2^(1 - alpha) and
s_ours == the smooth.py formula, both to 1e-5 relative.

Prints one line per check and exits non-zero when any check fails.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from compressed_tensors.quantization import QuantizationArgs, fake_quantize
from compressed_tensors.quantization.utils import calculate_qparams

torch.set_num_threads(2)


def load(path, dtype, shape):
    return torch.from_numpy(np.fromfile(path, dtype=dtype).reshape(shape).copy())


def qargs(case, actorder=None):
    return QuantizationArgs(
        num_bits=case["bits"],
        type="int",
        symmetric=case["symmetric"],
        strategy=case["strategy"],
        group_size=case["group_size"] if case["strategy"] == "group" else None,
        actorder=actorder,
        observer="memoryless_minmax",
    )


def observer_qparams(W, args, group_size):
    """What llm-compressor's memoryless min-max weight observer computes."""
    rows, cols = W.shape
    if args.strategy == "channel":
        mn, mx = W.amin(dim=1, keepdim=True), W.amax(dim=1, keepdim=True)
    else:
        ng = (cols + group_size - 1) // group_size
        mn = torch.stack([W[:, g * group_size:(g + 1) * group_size].amin(dim=1) for g in range(ng)], dim=1)
        mx = torch.stack([W[:, g * group_size:(g + 1) * group_size].amax(dim=1) for g in range(ng)], dim=1)
    return calculate_qparams(mn, mx, args)


def codes_from(Wq, scale, zp, gidx):
    """Integer codes of a dequantized matrix: round(Wq / s + zp) per column's group."""
    s = scale[:, gidx.long()]
    z = zp[:, gidx.long()].float()
    return torch.round(Wq / s + z).to(torch.int8)


def ist_gptq(W, H, args, group_size, blocksize, percdamp, actorder):
    """gptq.py fasterquant (IST-DASLab), non-static groups, with the CT quantizer."""
    W = W.clone()
    H = H.clone()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.arange(cols)
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W = W[:, perm]
        H = H[perm][:, perm]
    chan = QuantizationArgs(num_bits=args.num_bits, type="int", symmetric=args.symmetric, strategy="channel")
    damp = percdamp * torch.mean(torch.diag(H))
    H[torch.arange(cols), torch.arange(cols)] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    Q = torch.zeros_like(W)
    scales, zps = [], []
    scale = zero = None
    if args.strategy == "channel":
        scale, zero = calculate_qparams(W.amin(1, keepdim=True), W.amax(1, keepdim=True), chan)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            if args.strategy == "group" and (i1 + i) % group_size == 0:
                blk = W[:, i1 + i:i1 + i + group_size]
                scale, zero = calculate_qparams(blk.amin(1, keepdim=True), blk.amax(1, keepdim=True), chan)
                scales.append(scale)
                zps.append(zero)
            q = fake_quantize(w.unsqueeze(1), scale, zero, chan).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    invperm = torch.argsort(perm)
    Q = Q[:, invperm]
    if args.strategy == "group":
        scale = torch.cat(scales, dim=1)
        zero = torch.cat(zps, dim=1)
        gidx = (torch.arange(cols) // group_size)[invperm]  # column c -> its group in quantization order
    else:
        gidx = torch.zeros(cols, dtype=torch.long)
    return Q, scale, zero, gidx


def check_gptq(dump, man, case, results):
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

    rows, cols, n = man["rows"], man["cols"], man["tokens"]
    d = os.path.join(dump, case["dir"])
    W = load(os.path.join(d, "W.f32"), np.float32, (rows, cols))
    H = load(os.path.join(d, "XtX.f32"), np.float32, (cols, cols)) * np.float32(2.0 / n)
    ng = case["n_groups"]
    codes = load(os.path.join(d, "codes.i8"), np.int8, (rows, cols))
    scales = load(os.path.join(d, "scales.f32"), np.float32, (rows, ng))
    zp = (load(os.path.join(d, "zp.i8"), np.int8, (rows, ng)) if not case["symmetric"]
          else torch.zeros((rows, ng), dtype=torch.int8))
    gs = case["group_size"]
    if case["has_gidx"]:
        gidx = load(os.path.join(d, "gidx.i32"), np.int32, (cols,))
    elif case["strategy"] == "group":
        gidx = torch.arange(cols, dtype=torch.int32) // gs
    else:
        gidx = torch.zeros(cols, dtype=torch.int32)

    t0 = time.time()
    if case["static_groups"] or case["strategy"] == "channel":
        who = "llm-compressor quantize_weight"
        args = qargs(case, "weight" if case["act_order"] else None)
        ref_scale, ref_zp = observer_qparams(W, args, gs)
        Wq, _, fallback = quantize_weight(W[None].clone(), H[None].clone(), ref_scale[None], ref_zp[None], None, args,
                                          blocksize=128, percdamp=0.01)
        assert not bool(fallback.any()), "llm-compressor fell back to RTN"
        Wq = Wq[0]
        ref_gidx = gidx if case["strategy"] == "group" else torch.zeros(cols, dtype=torch.int32)
    else:
        who = "gptq.py transcription (CT quantizer)"
        args = qargs(case)
        Wq, ref_scale, ref_zp, ref_gidx = ist_gptq(W, H, args, gs, 128, 0.01, case["act_order"])
        if case["has_gidx"]:
            same_gidx = bool(torch.equal(ref_gidx.to(torch.int32), gidx))
            results.append((f"gptq {case['name']}: g_idx equal to the reference's", same_gidx, ""))
    elapsed = time.time() - t0
    ref_codes = codes_from(Wq, ref_scale, ref_zp, ref_gidx)
    eq = (ref_codes == codes).float().mean().item()
    rel_all = (scales - ref_scale).abs() / ref_scale.abs().clamp_min(1e-30)
    rel = rel_all.max().item()
    close = (rel_all <= 1e-5).float().mean().item()
    scales_exact = (scales == ref_scale).float().mean().item()
    zp_eq = (zp == ref_zp.to(torch.int8)).float().mean().item()
    ours_deq = (codes.float() - zp[:, gidx.long()].float()) * scales[:, gidx.long()]
    err_ours = (torch.linalg.norm(W - ours_deq) / torch.linalg.norm(W)).item()
    err_ref = (torch.linalg.norm(W - Wq) / torch.linalg.norm(W)).item()
    detail = (f"codes equal {eq * 100:.3f}%, scales bit-equal {scales_exact * 100:.2f}%, within 1e-5 "
              f"{close * 100:.3f}% (max rel diff {rel:.2e}), "
              f"zero points equal {zp_eq * 100:.2f}%, rel. weight error ours {err_ours:.5f} vs ref {err_ref:.5f}, "
              f"ref took {elapsed:.1f} s")
    # Static parameters come from the same original W: they must agree to float
    # tolerance everywhere. Dynamic ones come from the error-updated W, where a
    # code that flips on a float tie (different summation order in the BLAS)
    # changes the weights after it, so a few groups may legitimately differ.
    static = case["static_groups"] or case["strategy"] == "channel"
    ok = eq >= 0.99 and (rel <= 1e-5 if static else close >= 0.99)
    results.append((f"gptq {case['name']} vs {who}", ok, detail))


def check_smoothquant(dump, man, entry, results):
    from llmcompressor.modifiers.transform.smoothquant.base import MINIMUM_SMOOTHING_SCALE, SmoothQuantModifier

    cols = man["cols"]
    alpha = entry["alpha"]
    d = os.path.join(dump, entry["dir"])
    Wa = load(os.path.join(d, "Wa.f32"), np.float32, (entry["rows_a"], cols))
    Wb = load(os.path.join(d, "Wb.f32"), np.float32, (entry["rows_b"], cols))
    act = load(os.path.join(d, "absmax.f32"), np.float32, (cols,))
    s_ours = load(os.path.join(d, "s.f32"), np.float32, (cols,)).double()
    la, lb = torch.nn.Linear(cols, entry["rows_a"], bias=False), torch.nn.Linear(cols, entry["rows_b"], bias=False)
    with torch.no_grad():
        la.weight.copy_(Wa)
        lb.weight.copy_(Wb)
        mod = SmoothQuantModifier(smoothing_strength=alpha)
        s_llmc = mod._calculate_smoothing_scales([la, lb], act)
        s_llmc = torch.maximum(s_llmc, torch.tensor([MINIMUM_SMOOTHING_SCALE])).double()
    rel_llmc = ((s_ours - s_llmc * 2.0 ** (1.0 - alpha)).abs() / s_ours).max().item()
    wmax = torch.cat([Wa, Wb]).abs().amax(dim=0).double().clamp_min(1e-5)
    s_paper = (act.double().pow(alpha) / wmax.pow(1 - alpha)).clamp_min(1e-5)
    rel_paper = ((s_ours - s_paper).abs() / s_paper).max().item()
    results.append((f"smoothquant alpha {alpha} vs llm-compressor (x 2^(1-alpha))", rel_llmc <= 1e-5,
                    f"max rel diff {rel_llmc:.2e}"))
    results.append((f"smoothquant alpha {alpha} vs smooth.py formula", rel_paper <= 1e-5,
                    f"max rel diff {rel_paper:.2e}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True, help="the folder xquant_algo_dump wrote")
    a = ap.parse_args()
    with open(os.path.join(a.dump, "manifest.json")) as f:
        man = json.load(f)
    import llmcompressor
    import compressed_tensors
    print(f"llmcompressor {llmcompressor.__version__}, compressed-tensors {compressed_tensors.__version__}, "
          f"torch {torch.__version__}; W {man['rows']}x{man['cols']}, {man['tokens']} tokens")
    results = []
    for case in man["gptq"]:
        check_gptq(a.dump, man, case, results)
    for entry in man["smoothquant"]:
        check_smoothquant(a.dump, man, entry, results)
    failed = 0
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
        failed += 0 if ok else 1
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
