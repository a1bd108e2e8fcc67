// qgemm_kernels_scalar.cpp: the reference prefill kernels (plain loops, the
// contracts of qgemm_kernels.hpp), the panel packing every ISA shares, and
// the table dispatch.
#include "qgemm_kernels.hpp"

namespace xquant::cpu {
namespace {

// The unsigned nibble (code + 8) of padded column p of an INT4 row.
inline int nibble(const uint8_t* row, int64_t p) {
  const uint8_t b = row[p / kBlock * 16 + p % 16];
  return p % kBlock < 16 ? (b & 0x0F) : (b >> 4);
}

void dequant_rows(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, const float* z, int64_t G,
                  const int64_t* bb, int64_t nrows, float* out) {
  const int64_t Kp = bb[G] * kBlock;
  for (int64_t r = 0; r < nrows; ++r) {
    const uint8_t* c = codes + r * row_bytes;
    for (int64_t g = 0; g < G; ++g) {
      const float sg = s[r * G + g], zg = z ? z[r * G + g] : 0.0f;
      for (int64_t p = bb[g] * kBlock; p < bb[g + 1] * kBlock; ++p) {
        const int code = int4 ? nibble(c, p) - 8 : static_cast<int8_t>(c[p]);
        out[r * Kp + p] = (static_cast<float>(code) - zg) * sg;
      }
    }
  }
}

void panel_i8(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int32_t* asum, int64_t mt,
              const int64_t* bb, int64_t G, bool int8_codes, float* out) {
  for (int64_t j = 0; j < mt; ++j)
    for (int64_t i = 0; i < kPanelRows; ++i) {
      float tot = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        int32_t d = 0;
        for (int64_t p = bb[g] * kBlock; p < bb[g + 1] * kBlock; ++p)
          d += panel[(p / 4 * kPanelRows + i) * 4 + p % 4] * a[j * lda + p];
        if (int8_codes) d -= 128 * asum[j * G + g];
        tot += ps[g * kPanelRows + i] * static_cast<float>(d);
      }
      out[j * kPanelRows + i] = tot;
    }
}

void panel_q8(const uint8_t* panel, const float* ps, const float* pm, const float* am, const int8_t* a, int64_t lda,
              const float* sa, int64_t ldsa, const int32_t* bsum, int32_t offset, int64_t mt, const int64_t* bb,
              int64_t G, bool /*int8_codes*/, float* out) {
  for (int64_t j = 0; j < mt; ++j)
    for (int64_t i = 0; i < kPanelRows; ++i) {
      float tot = 0.0f;
      for (int64_t g = 0; g < G; ++g)
        for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
          int32_t d = 0;
          for (int64_t p = b * kBlock; p < (b + 1) * kBlock; ++p)
            d += panel[(p / 4 * kPanelRows + i) * 4 + p % 4] * a[j * lda + p];
          if (bsum) d -= offset * bsum[j * ldsa + b];
          tot += ps[g * kPanelRows + i] * sa[j * ldsa + b] * static_cast<float>(d);
          if (pm) tot -= pm[g * kPanelRows + i] * am[j * ldsa + b];
        }
      out[j * kPanelRows + i] = tot;
    }
}

void panel_q6k(const uint8_t* panel, const float* ps, const int32_t* psc, const int8_t* a, int64_t lda,
               const float* sa, int64_t ldsa, const int32_t* sum16, int64_t mt, int64_t nblk, float* out) {
  for (int64_t j = 0; j < mt; ++j)
    for (int64_t i = 0; i < kPanelRows; ++i) {
      float tot = 0.0f;
      for (int64_t b = 0; b < nblk; ++b) {
        int32_t d = 0;
        for (int h = 0; h < 2; ++h) {
          int32_t half = 0;
          for (int64_t p = b * kBlock + 16 * h; p < b * kBlock + 16 * (h + 1); ++p)
            half += panel[(p / 4 * kPanelRows + i) * 4 + p % 4] * a[j * lda + p];
          half -= 32 * sum16[j * 2 * ldsa + 2 * b + h];
          d += psc[(2 * b + h) * kPanelRows + i] * half;
        }
        tot += ps[b * kPanelRows + i] * sa[j * ldsa + b] * static_cast<float>(d);
      }
      out[j * kPanelRows + i] = tot;
    }
}

}  // namespace

void pack_panel_i8_scalar(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, int64_t G, int64_t Kp,
                          int64_t n0, int64_t nr, uint8_t* panel, float* ps) {
  for (int64_t i = 0; i < kPanelRows; ++i) {
    const uint8_t* c = i < nr ? codes + (n0 + i) * row_bytes : nullptr;
    for (int64_t p = 0; p < Kp; ++p) {
      // A missing row is code 0: nibble 8, or byte 0 + 128.
      const uint8_t u = !c ? (int4 ? 8 : 128) : int4 ? static_cast<uint8_t>(nibble(c, p)) : static_cast<uint8_t>(c[p] ^ 0x80);
      panel[(p / 4 * kPanelRows + i) * 4 + p % 4] = u;
    }
    for (int64_t g = 0; g < G; ++g) ps[g * kPanelRows + i] = i < nr ? s[(n0 + i) * G + g] : 0.0f;
  }
}

const QGemmKernels kScalarQGemmKernels{"scalar", &pack_panel_i8_scalar, &dequant_rows, &panel_i8, true, &panel_q8,
                                        false, false, &panel_q6k, false};

const QGemmKernels& qgemm_kernels_of(Isa isa) {
  switch (isa) {
    case Isa::avx2: return kAvx2QGemmKernels;
    case Isa::avx512: return kAvx512QGemmKernels;
    case Isa::scalar: break;
  }
  return kScalarQGemmKernels;
}

}  // namespace xquant::cpu
