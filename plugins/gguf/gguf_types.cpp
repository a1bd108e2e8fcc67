// gguf_types.cpp: ggml type table and the block dequantizers (see
// gguf_types.hpp). Layouts follow ggml's src/ggml-common.h (the block_*
// structs) and src/ggml-quants.c (dequantize_row_*); each decoder is a
// plain per-element formula so it can be read against that code.
#include "gguf_types.hpp"

#include <xquant/sdk/half.hpp>

#include <cstring>

namespace xquant::gguf {

namespace {

constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4, true},        {1, "F16", 1, 2, true},         {2, "Q4_0", 32, 18, true},
    {3, "Q4_1", 32, 20, true},     {6, "Q5_0", 32, 22, true},      {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},     {9, "Q8_1", 32, 36, false},     {10, "Q2_K", 256, 84, false},
    {11, "Q3_K", 256, 110, false}, {12, "Q4_K", 256, 144, true},   {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true},  {15, "Q8_K", 256, 292, false},  {16, "IQ2_XXS", 256, 66, false},
    {17, "IQ2_XS", 256, 74, false}, {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
    {20, "IQ4_NL", 32, 18, false}, {21, "IQ3_S", 256, 110, false}, {22, "IQ2_S", 256, 82, false},
    {23, "IQ4_XS", 256, 136, false}, {24, "I8", 1, 1, false},       {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},      {27, "I64", 1, 8, false},       {28, "F64", 1, 8, false},
    {29, "IQ1_M", 256, 56, false}, {30, "BF16", 1, 2, true},       {34, "TQ1_0", 256, 54, false},
    {35, "TQ2_0", 256, 66, false}, {39, "MXFP4", 32, 17, false},
};

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return sdk::f16_to_f32(h);
}

void dq_q4_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0xF) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void dq_q4_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0xF) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void dq_q5_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  uint32_t h;
  std::memcpy(&h, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    int q0 = (qs[j] & 0xF) | (((h >> j) & 1) << 4);
    int q1 = (qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(q0 - 16);
    y[j + 16] = d * static_cast<float>(q1 - 16);
  }
}

void dq_q5_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  uint32_t h;
  std::memcpy(&h, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    int q0 = (qs[j] & 0xF) | (((h >> j) & 1) << 4);
    int q1 = (qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(q0) + m;
    y[j + 16] = d * static_cast<float>(q1) + m;
  }
}

void dq_q8_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(qs[j]);
}

// Q4_K / Q5_K share scales and nibble placement; qh is null for Q4_K.
void dq_k45(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t* scales = b + 4;
  for (int c = 0; c < 4; ++c) {
    uint8_t sc0, mn0, sc1, mn1;
    k_scale_min(2 * c, scales, &sc0, &mn0);
    k_scale_min(2 * c + 1, scales, &sc1, &mn1);
    const float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
    for (int l = 0; l < 32; ++l) {
      int lo = qs[32 * c + l] & 0xF;
      int hi = qs[32 * c + l] >> 4;
      if (qh) {
        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
      }
      y[64 * c + l] = d0 * static_cast<float>(lo) - m0;
      y[64 * c + 32 + l] = d1 * static_cast<float>(hi) - m1;
    }
  }
}

void dq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql_all = b;
  const uint8_t* qh_all = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = h2f(b + 208);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = ql_all + 64 * h;
    const uint8_t* qh = qh_all + 32 * h;
    float* yy = y + 128 * h;
    for (int l = 0; l < 32; ++l) {
      int q[4] = {(ql[l] & 0xF) | ((qh[l] & 3) << 4), (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                  (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4), (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)};
      for (int k = 0; k < 4; ++k) {
        int e = 128 * h + l + 32 * k;
        yy[l + 32 * k] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(q[k] - 32);
      }
    }
  }
}

}  // namespace

const TypeInfo* type_info(uint32_t id) {
  for (const auto& t : kTypes)
    if (t.id == id) return &t;
  return nullptr;
}

void k_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

bool dequantize_row(uint32_t type, const uint8_t* src, float* dst, int64_t n) {
  const TypeInfo* t = type_info(type);
  if (!t || !t->decodable) return false;
  switch (type) {
    case kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return true;
    case kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = h2f(src + 2 * i);
      return true;
    case kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = sdk::bf16_to_f32(h);
      }
      return true;
    default:
      break;
  }
  const int64_t nb = n / t->block_size;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const uint8_t* b = src + ib * t->type_size;
    float* y = dst + ib * t->block_size;
    switch (type) {
      case kQ4_0: dq_q4_0(b, y); break;
      case kQ4_1: dq_q4_1(b, y); break;
      case kQ5_0: dq_q5_0(b, y); break;
      case kQ5_1: dq_q5_1(b, y); break;
      case kQ8_0: dq_q8_0(b, y); break;
      case kQ4_K: dq_k45(b, nullptr, b + 16, y); break;
      case kQ5_K: dq_k45(b, b + 16, b + 48, y); break;
      case kQ6_K: dq_q6_k(b, y); break;
      default: return false;
    }
  }
  return true;
}

}  // namespace xquant::gguf
