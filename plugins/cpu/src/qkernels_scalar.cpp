// qkernels_scalar.cpp: the reference kernels every vector path is tested
// against (plain loops, same contracts as qkernels.hpp states).
#include "qkernels.hpp"

namespace xquant::cpu {
namespace {

inline int nib(const uint8_t* blk, int i) { return i < 16 ? (blk[i] & 0x0F) : (blk[i - 16] >> 4); }

// Exact integer dot of block b.
inline int32_t block4_i8(const uint8_t* w, const int8_t* a, int64_t b) {
  int32_t d = 0;
  for (int i = 0; i < kBlock; ++i) d += nib(w + b * 16, i) * a[b * kBlock + i];
  return d;
}
inline int32_t block8_i8(const int8_t* w, const int8_t* a, int64_t b) {
  int32_t d = 0;
  for (int i = 0; i < kBlock; ++i) d += w[b * kBlock + i] * a[b * kBlock + i];
  return d;
}

float dot4_f32(const uint8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    float d = 0.0f;
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b)
      for (int i = 0; i < kBlock; ++i) d += static_cast<float>(nib(w + b * 16, i)) * x[b * kBlock + i];
    tot += s[g] * d;
  }
  return tot;
}

float dot8_f32(const int8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    float d = 0.0f;
    for (int64_t j = bb[g] * kBlock; j < bb[g + 1] * kBlock; ++j) d += static_cast<float>(w[j]) * x[j];
    tot += s[g] * d;
  }
  return tot;
}

float dot4_i8(const uint8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    int32_t d = 0;
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) d += block4_i8(w, a, b);
    tot += s[g] * static_cast<float>(d);
  }
  return tot;
}

float dot8_i8(const int8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    int32_t d = 0;
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) d += block8_i8(w, a, b);
    tot += s[g] * static_cast<float>(d);
  }
  return tot;
}

float dot4_q8(const uint8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) tot += s[g] * sa[b] * static_cast<float>(block4_i8(w, a, b));
  return tot;
}

float dot8_q8(const int8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) tot += s[g] * sa[b] * static_cast<float>(block8_i8(w, a, b));
  return tot;
}

}  // namespace

const QKernels kScalarKernels{"scalar", &dot4_f32, &dot8_f32, &dot4_i8, &dot8_i8, &dot4_q8, &dot8_q8,
                               &tile4_by_pairs<dot4_q8>, &tile8_by_pairs<dot8_q8>, &dot8_i8};

}  // namespace xquant::cpu
