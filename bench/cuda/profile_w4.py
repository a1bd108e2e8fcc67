#!/usr/bin/env python3
"""profile_w4.py: one W4A16 g128 QMATMUL on 8192x28672 at each M of argv[3]
(default 1,64) through the plugin's default dispatch (on sm_90 the TMA-ring
GEMV up to M = 12, the mma.sync GEMM to 16, the Hopper wgmma GEMM from 17 on
this shape), for Nsight Compute:
    ncu --kernel-name regex:'k_w4_gemv|k_w4_gemm|device_kernel' python3 profile_w4.py SHIM PLUGIN [MS]
Each M runs twice: ncu's --launch-skip can pass over a first call's set-up."""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_cuda import BF16, Shim  # noqa: E402

shim = Shim(sys.argv[1], sys.argv[2])
ms = [int(m) for m in (sys.argv[3] if len(sys.argv) > 3 else "1,64").split(",")]
K, N = 8192, 28672
codes = torch.randint(-8, 8, (N, K), dtype=torch.int8)
scales = (torch.rand(N, K // 128) * 0.01 + 0.001).float()
w = shim.prepare(codes, scales, None, N, K, 128, 4, 0)
for M in ms:
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    for _ in range(2):
        shim.check(shim.lib.xqc_qmatmul(w, x.data_ptr(), y.data_ptr(), M, N, K, BF16, BF16, 0), "qmatmul")
    torch.cuda.synchronize()
    print(f"M={M}: done", flush=True)
