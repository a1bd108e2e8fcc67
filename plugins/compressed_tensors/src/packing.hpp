// packing.hpp: compressed-tensors int32 packing of signed b-bit codes.
//
// Two layouts exist (compressed-tensors pack_to_int32/unpack_from_int32 in
// compressed_tensors/compressors/pack_quantized/helpers.py, verified against
// compressed-tensors 0.20.0):
//   dense  (>= 0.18.0): element i sits at global bit i*b of the packed run,
//                        LSB first, and may straddle two words;
//   legacy (<= 0.17.x): 32/b elements per word, element i at bit (i % per)*b
//                        of word i / per, unused high bits zero.
// They agree for b = 1, 2, 4, 8 and differ for 3, 5, 6, 7. Codes are stored
// unsigned with an offset of 2^(b-1). A "run" is one row of weight_packed
// (packed along dim 1) or one column of weight_zero_point (packed along
// dim 0); strides let both use the same code. Words are read and written
// through memcpy because the mmap'd source may be unaligned.
#pragma once

#include <cstdint>
#include <cstring>

namespace xquant::ct {

// Words one run of n b-bit elements takes.
inline int64_t packed_words(int64_t n, uint32_t bits, bool legacy) {
  if (legacy) {
    int64_t per = 32 / bits;
    return (n + per - 1) / per;
  }
  return (n * static_cast<int64_t>(bits) + 31) / 32;
}

// Bit position of element i within its run (word index * 32 + shift).
inline int64_t bit_position(int64_t i, uint32_t bits, bool legacy) {
  if (legacy) {
    int64_t per = 32 / bits;
    return (i / per) * 32 + (i % per) * bits;
  }
  return i * static_cast<int64_t>(bits);
}

inline uint32_t load_word(const unsigned char* base, int64_t word_index) {
  uint32_t w;
  std::memcpy(&w, base + 4 * word_index, 4);
  return w;  // little-endian hosts only (x86-64, aarch64), as the ABI assumes
}

// Packs n codes src[i*src_stride] into the run of words dst[k*dst_stride],
// which the caller zeroed.
inline void pack_run(const int8_t* src, int64_t src_stride, int64_t n, uint32_t bits, bool legacy, uint32_t* dst,
                     int64_t dst_stride) {
  const uint32_t offset = 1u << (bits - 1);
  const uint32_t mask = (bits == 32) ? 0xFFFFFFFFu : ((1u << bits) - 1u);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = (static_cast<uint32_t>(static_cast<int32_t>(src[i * src_stride]) + static_cast<int32_t>(offset))) & mask;
    int64_t pos = bit_position(i, bits, legacy);
    int64_t w = pos / 32;
    uint32_t shift = static_cast<uint32_t>(pos % 32);
    dst[w * dst_stride] |= u << shift;
    if (shift + bits > 32) dst[(w + 1) * dst_stride] |= u >> (32 - shift);
  }
}

// Unpacks n codes from the run of words at byte pointer `src` (word k at
// src + 4*k*src_stride_words) into dst[i*dst_stride].
inline void unpack_run(const unsigned char* src, int64_t src_stride_words, int64_t n, uint32_t bits, bool legacy,
                       int8_t* dst, int64_t dst_stride) {
  const int32_t offset = 1 << (bits - 1);
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    int64_t pos = bit_position(i, bits, legacy);
    int64_t w = pos / 32;
    uint32_t shift = static_cast<uint32_t>(pos % 32);
    uint32_t v = load_word(src, w * src_stride_words) >> shift;
    if (shift + bits > 32) v |= load_word(src, (w + 1) * src_stride_words) << (32 - shift);
    dst[i * dst_stride] = static_cast<int8_t>(static_cast<int32_t>(v & mask) - offset);
  }
}

}  // namespace xquant::ct
