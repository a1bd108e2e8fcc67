// w4afp8_activations.cpp: the activation side of W4AFP8 (int4 symmetric
// weights, dynamic per-token FP8 E4M3 activations; compressed-tensors' preset
// W4AFP8, vLLM's CompressedTensorsW4A8Fp8).
//
// Each input row is quantized to E4M3 exactly as FP8 W8A8 dynamic does
// (quantize_row_e4m3, fp8_qweight.cpp: s = max|x| / 448, x / s saturated to
// +-448 and rounded to nearest even E4M3) and handed back dequantized,
// q[k] * s, so the INT4 weight-only kernels run unchanged on the values the
// FP8 GEMM multiplies. The weights stay exact (int4 code * stored group
// scale): the GPU kernels (vLLM's CompressedTensorsW4A8Fp8, which converts
// the group scales to FP8 beside a per-channel scale after loading, and our
// cuda provider's Hopper W4A8 GEMM, docs/cuda.md) also round the group scales
// to E4M3, a rounding this reference leaves out.
#include "cpu.hpp"

#include <vector>

namespace xquant::cpu {

const float* round_rows_to_e4m3(const float* x, int64_t rows, int64_t cols) {
  thread_local std::vector<float> rounded;
  const auto n = static_cast<size_t>(rows * cols);
  if (rounded.size() < n) rounded.resize(n);
  for (int64_t m = 0; m < rows; ++m) {
    float* q = rounded.data() + m * cols;
    const float s = quantize_row_e4m3(x + m * cols, cols, q);
    for (int64_t k = 0; k < cols; ++k) q[k] *= s;
  }
  return rounded.data();
}

}  // namespace xquant::cpu
