// qgemv_rows_scalar.cpp: the reference row-range GEMV (qgemv_rows.hpp) in
// plain loops: signed codes times int8 activations, exact int32 per block,
// scaled in the header's order. The vector tables are tested against it.
#include "qgemv_rows.hpp"

namespace xquant::cpu {
namespace {

inline int code4(const uint8_t* row, int64_t b, int i) {
  const uint8_t* blk = row + b * 16;
  return (i < 16 ? (blk[i] & 0x0F) : (blk[i - 16] >> 4)) - 8;
}

template <bool kInt4>
void gemv(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.codes + n * w.row_bytes;
    const float* s = w.scales + n * w.G;
    float tot = 0.0f;
    for (int64_t g = 0; g < w.G; ++g) {
      float d = 0.0f;
      for (int64_t b = w.bb[g]; b < w.bb[g + 1]; ++b) {
        int32_t p = 0;
        for (int i = 0; i < 32; ++i)
          p += (kInt4 ? code4(row, b, i) : static_cast<int8_t>(row[b * 32 + i])) * a.q[b * 32 + i];
        d += a.sa8[b * 8] * static_cast<float>(p);
      }
      tot += s[g] * d;
    }
    y[n] = tot - zero_point_term(w, a, n) + (w.bias ? w.bias[n] : 0.0f);
  }
}

}  // namespace

const GemvRowsKernels kScalarGemvRows{"scalar", 0, 0, &gemv<true>, &gemv<false>};

}  // namespace xquant::cpu
