// qgemv_rows8_pack.cpp: the interleaved copy the eight-row INT4 decode GEMV
// reads (qgemv_rows8.hpp, interleave_rows8), made once when a weight is
// prepared: the bytes the kernel's register transpose would produce, stored,
// so decode reads one aligned stream instead of eight rows at once.
#include "qgemv_rows8.hpp"

#include <cstddef>
#include <cstring>

namespace xquant::cpu {

Rows8Copy interleave_rows8(const uint8_t* codes, int64_t row_bytes, const float* scales, int64_t rows, int64_t G,
                           int64_t nblk) {
  const int64_t groups = rows / 8;
  Rows8Copy c;
  c.codes.resize(static_cast<size_t>(groups * nblk * 128));
  c.scales.resize(static_cast<size_t>(groups * G * 8));
  for (int64_t r8 = 0; r8 < groups; ++r8) {
    for (int64_t j = 0; j < 8; ++j) {
      const uint8_t* row = codes + (r8 * 8 + j) * row_bytes;
      for (int64_t b = 0; b < nblk; ++b)
        for (int64_t k = 0; k < 4; ++k)
          for (int64_t i = 0; i < 4; ++i)
            c.codes[static_cast<size_t>((r8 * nblk + b) * 128 + 32 * k + 4 * j + i)] = row[b * 16 + 4 * k + i];
      for (int64_t g = 0; g < G; ++g)
        c.scales[static_cast<size_t>((r8 * G + g) * 8 + j)] = scales[(r8 * 8 + j) * G + g];
    }
  }
  return c;
}

Q4_0Rows8Copy interleave_q4_0_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb) {
  constexpr int64_t kBytes = 18;  // ggml-common.h block_q4_0: f16 d, 16 bytes of nibbles
  const int64_t groups = rows / 8;
  Q4_0Rows8Copy c;
  c.codes.resize(static_cast<size_t>(groups * nb * 128));
  c.scales.resize(static_cast<size_t>(groups * nb * 8));
  for (int64_t r8 = 0; r8 < groups; ++r8)
    for (int64_t j = 0; j < 8; ++j) {
      const uint8_t* row = blocks + static_cast<uint64_t>(r8 * 8 + j) * row_bytes;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * kBytes;
        std::memcpy(&c.scales[static_cast<size_t>((r8 * nb + b) * 8 + j)], blk, 2);
        for (int64_t k = 0; k < 4; ++k)
          for (int64_t i = 0; i < 4; ++i)
            c.codes[static_cast<size_t>((r8 * nb + b) * 128 + 32 * k + 4 * j + i)] = blk[2 + 4 * k + i];
      }
    }
  return c;
}

}  // namespace xquant::cpu
