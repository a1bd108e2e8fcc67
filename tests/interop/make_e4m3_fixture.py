"""Writes tests/sdk/fixtures/e4m3_torch.txt: float32 inputs and the bytes
torch's cast gives for them, so test_fp8.cpp checks sdk/fp8.hpp against
torch without needing torch at test time.

Each line: <float32 bits, hex> <x.to(float8_e4m3fn) byte> <x.clamp(-448, 448).to(float8_e4m3fn) byte>
Run: ~/.cache/xquant-interop/bin/python tests/interop/make_e4m3_fixture.py
(torch 2.x; the file in the repository was written with the version it names).
"""
import pathlib
import struct

import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "sdk" / "fixtures" / "e4m3_torch.txt"


def bits(f):
    return struct.unpack("<I", struct.pack("<f", f))[0]


def main():
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    finite = sorted({v for v in codes.tolist() if v == v})
    xs = list(finite)
    # Midpoints (ties) between neighbours, and one float32 ulp either side.
    for a, b in zip(finite, finite[1:]):
        m = torch.tensor((a + b) / 2, dtype=torch.float32)
        xs += [m.item(), torch.nextafter(m, torch.tensor(-1e30)).item(), torch.nextafter(m, torch.tensor(1e30)).item()]
    # Around the top of the range (448, 464 = the tie above it, 480) and beyond.
    for v in (448.0, 456.0, 463.99, 464.0, 464.01, 470.0, 479.99, 480.0, 500.0, 1e6, 3e38):
        xs += [v, -v]
    xs += [float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 1e-30, -1e-30, 2.0**-10, 2.0**-11, 3 * 2.0**-11]
    g = torch.Generator().manual_seed(1234)
    mags = torch.exp2(torch.empty(3000).uniform_(-14, 10, generator=g))
    signs = torch.where(torch.rand(3000, generator=g) < 0.5, -1.0, 1.0)
    xs += (mags * signs).tolist()
    x = torch.tensor(xs, dtype=torch.float32)
    raw = x.to(torch.float8_e4m3fn).view(torch.uint8)
    sat = x.clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
    with OUT.open("w") as f:
        f.write(f"# torch {torch.__version__}: float32 bits, cast byte, clamp(+-448)+cast byte\n")
        for v, r, s in zip(x.tolist(), raw.tolist(), sat.tolist()):
            f.write(f"{bits(v):08x} {r:02x} {s:02x}\n")
    print(f"{OUT}: {len(xs)} values")


if __name__ == "__main__":
    main()
