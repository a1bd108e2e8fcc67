// block_encoders.hpp: test-side GGUF block encoders, written from the block
// layouts of ggml's src/ggml-common.h (not from the plugin's decoders): the ggml reference
// quantizers for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, and packers for hand-chosen
// K-quant fields (Q4_K/Q5_K/Q6_K). Each returns the block bytes and the
// values a correct decoder must produce, computed by the plain formula.
#pragma once

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace gguf_test {

using xquant::sdk::f16_to_f32;
using xquant::sdk::f32_to_f16;

struct Encoded {
  std::vector<uint8_t> bytes;
  std::vector<float> expect;  // formula value of every element
};

inline void put_f16(uint8_t* p, float x) {
  uint16_t h = f32_to_f16(x);
  std::memcpy(p, &h, 2);
}

// --- legacy types, ggml reference quantizers (per 32 elements) ---------------
inline Encoded encode_q8_0(const std::vector<float>& x) {
  Encoded e;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = &x[b * 32];
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    uint8_t blk[34];
    put_f16(blk, d);
    const float dh = f16_to_f32(f32_to_f16(d));
    for (int j = 0; j < 32; ++j) {
      int8_t q = static_cast<int8_t>(std::roundf(v[j] * id));
      blk[2 + j] = static_cast<uint8_t>(q);
      e.expect.push_back(dh * q);
    }
    e.bytes.insert(e.bytes.end(), blk, blk + 34);
  }
  return e;
}

inline float signed_max(const float* v, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j)
    if (std::fabs(v[j]) > amax) {
      amax = std::fabs(v[j]);
      max = v[j];
    }
  return max;
}

inline Encoded encode_q4_0(const std::vector<float>& x) {
  Encoded e;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = &x[b * 32];
    const float d = signed_max(v, 32) / -8, id = d ? 1.0f / d : 0.0f;
    uint8_t blk[18] = {};
    put_f16(blk, d);
    const float dh = f16_to_f32(f32_to_f16(d));
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::min(15, static_cast<int>(static_cast<int8_t>(v[j] * id + 8.5f)));
    for (int j = 0; j < 16; ++j) blk[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    for (int j = 0; j < 32; ++j) e.expect.push_back(dh * (q[j] - 8));
    e.bytes.insert(e.bytes.end(), blk, blk + 18);
  }
  return e;
}

inline Encoded encode_q4_1(const std::vector<float>& x) {
  Encoded e;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = &x[b * 32];
    float mn = v[0], mx = v[0];
    for (int j = 0; j < 32; ++j) mn = std::min(mn, v[j]), mx = std::max(mx, v[j]);
    const float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
    uint8_t blk[20] = {};
    put_f16(blk, d);
    put_f16(blk + 2, mn);
    const float dh = f16_to_f32(f32_to_f16(d)), mh = f16_to_f32(f32_to_f16(mn));
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::min(15, static_cast<int>(static_cast<int8_t>((v[j] - mn) * id + 0.5f)));
    for (int j = 0; j < 16; ++j) blk[4 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    for (int j = 0; j < 32; ++j) e.expect.push_back(dh * q[j] + mh);
    e.bytes.insert(e.bytes.end(), blk, blk + 20);
  }
  return e;
}

inline Encoded encode_q5_0(const std::vector<float>& x) {
  Encoded e;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = &x[b * 32];
    const float d = signed_max(v, 32) / -16, id = d ? 1.0f / d : 0.0f;
    uint8_t blk[22] = {};
    put_f16(blk, d);
    const float dh = f16_to_f32(f32_to_f16(d));
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::min(31, static_cast<int>(static_cast<int8_t>(v[j] * id + 16.5f)));
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    std::memcpy(blk + 2, &qh, 4);
    for (int j = 0; j < 16; ++j) blk[6 + j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    for (int j = 0; j < 32; ++j) e.expect.push_back(dh * (q[j] - 16));
    e.bytes.insert(e.bytes.end(), blk, blk + 22);
  }
  return e;
}

inline Encoded encode_q5_1(const std::vector<float>& x) {
  Encoded e;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = &x[b * 32];
    float mn = v[0], mx = v[0];
    for (int j = 0; j < 32; ++j) mn = std::min(mn, v[j]), mx = std::max(mx, v[j]);
    const float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
    uint8_t blk[24] = {};
    put_f16(blk, d);
    put_f16(blk + 2, mn);
    const float dh = f16_to_f32(f32_to_f16(d)), mh = f16_to_f32(f32_to_f16(mn));
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = std::min(31, static_cast<int>(static_cast<int8_t>((v[j] - mn) * id + 0.5f)));
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    std::memcpy(blk + 4, &qh, 4);
    for (int j = 0; j < 16; ++j) blk[8 + j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    for (int j = 0; j < 32; ++j) e.expect.push_back(dh * q[j] + mh);
    e.bytes.insert(e.bytes.end(), blk, blk + 24);
  }
  return e;
}

// --- K-quants: hand-chosen fields packed per the layout text ----------------

// The 12 scale bytes from 8 six-bit scales and 8 six-bit mins: bytes 0-3
// hold sc0..3 (low 6 bits) and the top 2 bits of sc4..7; bytes 4-7 the same
// for the mins; bytes 8-11 the low nibbles of sc4..7 (low) and mn4..7 (high).
inline void pack_k_scales(const int sc[8], const int mn[8], uint8_t out[12]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

// One Q4_K (five_bit=false) or Q5_K super-block from random fields.
inline Encoded make_k45(std::mt19937& rng, bool five_bit) {
  std::uniform_int_distribution<int> six(0, 63), qd(0, five_bit ? 31 : 15);
  std::uniform_real_distribution<float> df(0.001f, 0.05f);
  int sc[8], mn[8], q[256];
  for (int j = 0; j < 8; ++j) sc[j] = six(rng), mn[j] = six(rng);
  for (int& v : q) v = qd(rng);
  const float d = df(rng), dmin = df(rng);
  Encoded e;
  e.bytes.assign(five_bit ? 176 : 144, 0);
  uint8_t* b = e.bytes.data();
  put_f16(b, d);
  put_f16(b + 2, dmin);
  pack_k_scales(sc, mn, b + 4);
  uint8_t* qh = five_bit ? b + 16 : nullptr;
  uint8_t* qs = five_bit ? b + 48 : b + 16;
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
      if (qh) qh[l] |= static_cast<uint8_t>((((lo >> 4) & 1) << (2 * c)) | (((hi >> 4) & 1) << (2 * c + 1)));
    }
  const float dh = f16_to_f32(f32_to_f16(d)), mh = f16_to_f32(f32_to_f16(dmin));
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32;
    e.expect.push_back(dh * sc[j] * q[i] - mh * mn[j]);
  }
  return e;
}

inline Encoded make_q6_k(std::mt19937& rng) {
  std::uniform_int_distribution<int> qd(0, 63), sd(-128, 127);
  std::uniform_real_distribution<float> df(0.0005f, 0.01f);
  int q[256], sc[16];
  for (int& v : q) v = qd(rng);
  for (int& v : sc) v = sd(rng);
  const float d = df(rng);
  Encoded e;
  e.bytes.assign(210, 0);
  uint8_t* ql = e.bytes.data();
  uint8_t* qh = ql + 128;
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const int* qq = q + 128 * h;
      ql[64 * h + l] = static_cast<uint8_t>((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
      ql[64 * h + l + 32] = static_cast<uint8_t>((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
      qh[32 * h + l] = static_cast<uint8_t>((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                                            ((qq[l + 96] >> 4) << 6));
    }
  for (int k = 0; k < 16; ++k) e.bytes[192 + k] = static_cast<uint8_t>(static_cast<int8_t>(sc[k]));
  put_f16(e.bytes.data() + 208, d);
  const float dh = f16_to_f32(f32_to_f16(d));
  for (int i = 0; i < 256; ++i) e.expect.push_back(dh * sc[i / 16] * (q[i] - 32));
  return e;
}

}  // namespace gguf_test
