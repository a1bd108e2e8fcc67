#!/usr/bin/env python3
"""profile_w4.py: one W4A16 QMATMUL at M=1 and one at M=64 on 8192x28672
(g128) through the plugin, for `ncu --kernel-name regex:k_w4_gemm`."""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_cuda import BF16, Shim  # noqa: E402

shim = Shim(sys.argv[1], sys.argv[2])
K, N = 8192, 28672
codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
scales = (torch.rand(N, K // 128) * 0.01 + 0.001).float()
w = shim.prepare(codes, scales, None, N, K, 128, 4, 0)
for M in (1, 64):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 1), "qmatmul")
torch.cuda.synchronize()
