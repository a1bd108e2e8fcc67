// gguf_blocks_scalar.cpp: the reference block kernels (gguf_blocks.hpp) and
// the activation quantization every ISA shares. Each kernel is the plain
// formula of its block layout (ggml-common.h block_q4_0, block_q8_0,
// block_q4_K, block_q6_K; element order as ggml-quants.c dequantize_row_*),
// integer sums per block (per 16/32-column sub-block for the K-quants), then
// the float scales: the arithmetic of ggml_vec_dot_*_generic
// (ggml-cpu/quants.c).
#include "gguf_blocks.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace xquant::cpu {

namespace {

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return sdk::f16_to_f32(h);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7).
inline void scale_min_k4(int j, const uint8_t* s, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

float dot_q4_0(const uint8_t* w, const QuantizedRow& a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 18) {
    const int8_t* q = a.q + b * 32;
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += ((w[2 + j] & 0xF) - 8) * q[j] + ((w[2 + j] >> 4) - 8) * q[j + 16];
    sum += f16(w) * a.d32[b] * static_cast<float>(s);
  }
  return sum;
}

float dot_q8_0(const uint8_t* w, const QuantizedRow& a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 34) {
    const int8_t* c = reinterpret_cast<const int8_t*>(w + 2);
    const int8_t* q = a.q + b * 32;
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += c[j] * q[j];
    sum += f16(w) * a.d32[b] * static_cast<float>(s);
  }
  return sum;
}

// block_q4_K (144 bytes): d, dmin (f16), scales[12] (8 six-bit scale/min
// pairs), qs[128]: 64-column chunk c holds columns 64c + l (l < 32) in the
// low nibbles of qs[32c + l] (sub-block 2c) and 64c + 32 + l in the high
// nibbles (sub-block 2c + 1). w = d * sc * q - dmin * m.
// Q4_K and Q5_K (qh non-null: block_q5_K, 176 bytes, qh[32] before qs, bit
// 2c / 2c + 1 of qh[l] the fifth bit of columns 64c + l / 64c + 32 + l).
float dot_k45(const uint8_t* w, const QuantizedRow& a, int64_t nb, bool q5) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += q5 ? 176 : 144) {
    const int8_t* q = a.q256 + b * 256;
    const int16_t* bs = a.bsum16 + b * 16;
    const uint8_t* qh = q5 ? w + 16 : nullptr;
    const uint8_t* qs = q5 ? w + 48 : w + 16;
    int32_t isum = 0, msum = 0;
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      scale_min_k4(2 * c, w + 4, &sc0, &m0);
      scale_min_k4(2 * c + 1, w + 4, &sc1, &m1);
      int32_t lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        const int h0 = qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0, h1 = qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
        lo += ((qs[32 * c + l] & 0xF) | h0) * q[64 * c + l];
        hi += ((qs[32 * c + l] >> 4) | h1) * q[64 * c + 32 + l];
      }
      isum += sc0 * lo + sc1 * hi;
      msum += m0 * (bs[4 * c] + bs[4 * c + 1]) + m1 * (bs[4 * c + 2] + bs[4 * c + 3]);
    }
    const float da = a.d256[b];
    sum += f16(w) * da * static_cast<float>(isum) - f16(w + 2) * da * static_cast<float>(msum);
  }
  return sum;
}

float dot_q4_k(const uint8_t* w, const QuantizedRow& a, int64_t nb) { return dot_k45(w, a, nb, false); }
float dot_q5_k(const uint8_t* w, const QuantizedRow& a, int64_t nb) { return dot_k45(w, a, nb, true); }

// block_q6_K (210 bytes): ql[128], qh[64], scales[16] (int8, one per 16
// columns), d (f16). w = d * scale * (q - 32), q six bits: the low four in
// ql, the high two in qh, in the order of dequantize_row_q6_K.
float dot_q6_k(const uint8_t* w, const QuantizedRow& a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 210) {
    const int8_t* q = a.q256 + b * 256;
    const int16_t* bs = a.bsum16 + b * 16;
    const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
    int32_t sub[16] = {};
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w + 64 * h;
      const uint8_t* qh = w + 128 + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int v[4] = {(ql[l] & 0xF) | ((qh[l] & 3) << 4), (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                          (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4), (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)};
        for (int k = 0; k < 4; ++k) {
          const int e = 128 * h + 32 * k + l;
          sub[e / 16] += v[k] * q[e];
        }
      }
    }
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) isum += sc[j] * (sub[j] - 32 * bs[j]);
    sum += f16(w + 208) * a.d256[b] * static_cast<float>(isum);
  }
  return sum;
}

// block_q4_1 (20 bytes): d, m (f16), qs[16]; w = d * q + m.
float dot_q4_1(const uint8_t* w, const QuantizedRow& a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 20) {
    const int8_t* q = a.q + b * 32;
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += (w[4 + j] & 0xF) * q[j] + (w[4 + j] >> 4) * q[j + 16];
    sum += f16(w) * a.d32[b] * static_cast<float>(s) + f16(w + 2) * a.d32[b] * static_cast<float>(a.sum32[b]);
  }
  return sum;
}

// The 5-bit codes of a Q5_0 / Q5_1 block: nibbles qs[16], high bits qh (bit
// j belongs to column j), as dequantize_row_q5_0.
inline void q5_codes(const uint8_t* qh4, const uint8_t* qs, int* v) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  for (int j = 0; j < 16; ++j) {
    v[j] = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    v[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
  }
}

// block_q5_0 (22 bytes): d (f16), qh[4], qs[16]; w = d * (q - 16).
float dot_q5_0(const uint8_t* w, const QuantizedRow& a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 22) {
    const int8_t* q = a.q + b * 32;
    int v[32];
    q5_codes(w + 2, w + 6, v);
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += v[j] * q[j];
    sum += f16(w) * a.d32[b] * static_cast<float>(s - 16 * a.sum32[b]);
  }
  return sum;
}

// block_q5_1 (24 bytes): d, m (f16), qh[4], qs[16]; w = d * q + m.
float dot_q5_1(const uint8_t* w, const QuantizedRow& a, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += 24) {
    const int8_t* q = a.q + b * 32;
    int v[32];
    q5_codes(w + 4, w + 8, v);
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += v[j] * q[j];
    sum += f16(w) * a.d32[b] * static_cast<float>(s) + f16(w + 2) * a.d32[b] * static_cast<float>(a.sum32[b]);
  }
  return sum;
}

// max|x| / 127 scaling of n values (1 when all are zero).
float quantize_block(const float* x, int n, int8_t* q) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax > 0.0f ? amax / 127.0f : 1.0f;
  const float id = 1.0f / d;
  for (int i = 0; i < n; ++i)
    q[i] = static_cast<int8_t>(std::clamp(static_cast<int>(std::nearbyint(x[i] * id)), -127, 127));
  return d;
}

}  // namespace

void quantize_row_blocks(const float* x, int64_t k, int8_t* q, float* d32, int16_t* sum32, int8_t* q256,
                         float* d256, int16_t* bsum16) {
  for (int64_t b = 0; b < k / 32; ++b) {
    d32[b] = quantize_block(x + 32 * b, 32, q + 32 * b);
    int s = 0;
    for (int i = 0; i < 32; ++i) s += q[32 * b + i];
    sum32[b] = static_cast<int16_t>(s);
  }
  if (!q256 || k % 256 != 0) return;
  for (int64_t b = 0; b < k / 256; ++b) {
    d256[b] = quantize_block(x + 256 * b, 256, q256 + 256 * b);
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += q256[256 * b + 16 * j + i];
      bsum16[16 * b + j] = static_cast<int16_t>(s);
    }
  }
}

bool has_block_kernel(uint32_t t) {
  return t == 2 || t == 3 || t == 6 || t == 7 || t == 8 || t == 12 || t == 13 || t == 14;
}

float (*block_kernel(const BlockKernels& k, uint32_t t))(const uint8_t*, const QuantizedRow&, int64_t) {
  switch (t) {
    case 2: return k.q4_0;
    case 3: return k.q4_1;
    case 6: return k.q5_0;
    case 7: return k.q5_1;
    case 8: return k.q8_0;
    case 12: return k.q4_k;
    case 13: return k.q5_k;
    case 14: return k.q6_k;
    default: return nullptr;
  }
}

const BlockKernels kScalarBlockKernels = {"scalar", dot_q4_0, dot_q8_0, dot_q4_k, dot_q6_k,
                                          dot_q4_1, dot_q5_0, dot_q5_1, dot_q5_k};

}  // namespace xquant::cpu
