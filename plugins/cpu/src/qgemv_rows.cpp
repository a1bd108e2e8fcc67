// qgemv_rows.cpp: the activation side of the row-range GEMV (qgemv_rows.hpp):
// one activation row quantized to int8 per 32-column block, with the
// per-block lane vectors the ISA's row kernels read.
#include "qgemv_rows.hpp"
#include "grown_buffer.hpp"
#include "int8_rounding.hpp"

#include <algorithm>
#include <cmath>

namespace xquant::cpu {

const GemvRowsKernels& gemv_rows_of(Isa isa) {
  switch (isa) {
    case Isa::avx2: return kAvx2GemvRows;
    case Isa::avx512: return kAvx512GemvRows;
    case Isa::scalar: break;
  }
  return kScalarGemvRows;
}

QuantizedActs quantize_acts(const GemvRowsKernels& t, bool int4, const float* x, int64_t nblk, const int64_t* bb,
                            int64_t G, bool with_gsum, QuantizedActsBuffers& buf) {
  constexpr int64_t kB = 32;
  int8_t* q = grown(buf.q, nblk * kB);
  float* sa8 = grown(buf.sa8, nblk * 8);
  int32_t* corr = grown(buf.corr, nblk * 8);
  float* sa1 = grown(buf.sa, nblk);
  int32_t* corr1 = grown(buf.corr1, nblk);
  float* gsum = with_gsum ? grown(buf.gsum, G) : nullptr;
  const int32_t offset = int4 ? t.offset4 : t.offset8;
  for (int64_t b = 0; b < nblk; ++b) {
    const float* xb = x + b * kB;
    int8_t* qb = q + b * kB;
    const float amax = abs_max(xb, kB);
    // The same expressions as qweight.cpp's quantize_row_q8_blocks (the q8
    // pair kernels), so both decode paths round the activations alike.
    const float sa = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    scale_round_i8(xb, kB, inv, -127.0f, 127.0f, qb);
    int32_t sum = 0;
    for (int i = 0; i < kB; ++i) sum += qb[i];
    std::fill(sa8 + b * 8, sa8 + b * 8 + 8, sa);
    std::fill(corr + b * 8, corr + b * 8 + 8, 0);
    corr[b * 8] = offset * sum;
    sa1[b] = sa;
    corr1[b] = offset * sum;
  }
  if (gsum)
    for (int64_t g = 0; g < G; ++g) {
      float s = 0.0f;
      for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
        int32_t qs = 0;
        for (int i = 0; i < kB; ++i) qs += q[b * kB + i];
        s += sa8[b * 8] * static_cast<float>(qs);
      }
      gsum[g] = s;
    }
  return {q, sa8, corr, gsum, sa1, corr1};
}

}  // namespace xquant::cpu
