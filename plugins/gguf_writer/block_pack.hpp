// block_pack.hpp: the bit packing of ggml's block types, shared by the
// plain (block_encode.cpp) and importance-weighted (weighted_encode.cpp)
// encoders. Layouts are ggml's (ggml/src/ggml-common.h: block_q4_0 ...
// block_q6_K); each function is the inverse of the matching dequantize_row_*
// in ggml/src/ggml-quants.c.
#pragma once

#include <xquant/sdk/half.hpp>

#include <cstdint>
#include <cstring>

namespace xquant::gguf {

constexpr int kQK = 32;    // elements of a legacy block (Q4_0 ... Q8_0)
constexpr int kQKK = 256;  // elements of a K-quant super-block

inline void put_f16(uint8_t* p, float v) {
  const uint16_t h = sdk::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// 32 four-bit values (0..15): element j in the low nibble of qs[j], j+16 in the high.
inline void pack_q4(const int* q, uint8_t* qs16) {
  for (int j = 0; j < 16; ++j) qs16[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

// 32 five-bit values (0..31) as a 4-byte high-bit word and 16 low-nibble bytes.
inline void pack_q5(const int* q, uint8_t* qh4, uint8_t* qs16) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs16[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh4, &qh, 4);
}

// The 12 scale bytes of Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins
// (the inverse of ggml's get_scale_min_k4).
inline void pack_scale_min(const int* ls, const int* lm, uint8_t* s12) {
  std::memset(s12, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s12[j] = static_cast<uint8_t>(ls[j]);
      s12[j + 4] = static_cast<uint8_t>(lm[j]);
    } else {
      s12[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      s12[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      s12[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// Q4_K's 128 code bytes from 256 codes (0..15).
inline void pack_q4_k_codes(const uint8_t* L, uint8_t* q) {
  for (int j = 0; j < 256; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

// Q5_K's 32 high-bit bytes and 128 low-nibble bytes from 256 codes (0..31).
inline void pack_q5_k_codes(const uint8_t* L, uint8_t* qh, uint8_t* ql) {
  std::memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < 256; n += 64, ql += 32, m1 <<= 2, m2 <<= 2)
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
      if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
}

// Q6_K's 128 low-nibble bytes and 64 two-bit bytes from 256 codes (0..63).
inline void pack_q6_k_codes(const uint8_t* L, uint8_t* ql, uint8_t* qh) {
  for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
}

}  // namespace xquant::gguf
