"""bench_llmc_gptq.py: llm-compressor's GPTQ on the W and X^T X that
`bench_algorithms prepare` wrote, for the time / peak-RSS comparison with
xquant's gptq plugin on the same machine.

    python bench_llmc_gptq.py --cache DIR [--threads 2] [--actorder]

Runs what GPTQModifier does per Linear: the memoryless min-max observer's
qparams (W4 g128 symmetric: llm-compressor's W4A16 preset) on the original W,
then modifiers/gptq/gptq_quantize.quantize_weight with block 128 and damp
0.01, on H = (2/N) X^T X (float32, CPU, torch.set_num_threads). Prints one
JSON line: seconds (observer + quantize_weight), peak RSS (ru_maxrss) and the
RSS before the algorithm ran (inputs loaded), like bench_algorithms run.
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--actorder", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.utils import calculate_qparams
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

    with open(os.path.join(a.cache, "meta.json")) as f:
        meta = json.load(f)
    rows, cols, n = meta["rows"], meta["cols"], meta["tokens"]
    W = torch.from_numpy(np.fromfile(os.path.join(a.cache, "W.f32"), dtype=np.float32).reshape(rows, cols))
    H = torch.from_numpy(np.fromfile(os.path.join(a.cache, "XtX.f32"), dtype=np.float32).reshape(cols, cols))
    H.mul_(2.0 / n)  # in place, as llm-compressor normalises its accumulator
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=128,
                            actorder="weight" if a.actorder else None, observer="memoryless_minmax")
    rss_before = rss_mb()
    t0 = time.time()
    ng = cols // 128
    Wg = W.reshape(rows, ng, 128)
    scale, zp = calculate_qparams(Wg.amin(dim=2), Wg.amax(dim=2), args)
    # quantize_weight consumes its stacked [1, ...] inputs as working buffers
    # (GPTQModifier hands it disposable stacks); unsqueeze shares the storage.
    Wq, loss, fallback = quantize_weight(W.unsqueeze(0), H.unsqueeze(0), scale.unsqueeze(0), zp.unsqueeze(0), None,
                                         args, blocksize=128, percdamp=0.01)
    secs = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "llmcompressor", "algo": "gptq" + ("-actorder" if a.actorder else ""),
                      "shape": f"{rows}x{cols}", "threads": a.threads, "seconds": secs, "peak_rss_mb": peak,
                      "rss_before_mb": rss_before, "fallback": bool(fallback.any())}))


if __name__ == "__main__":
    main()
