// qkernels_scalar.cpp: the reference kernels every vector path is tested
// against (plain loops, same contracts as qkernels.hpp states).
#include "qkernels.hpp"

namespace xquant::cpu {
namespace {

inline int nib(const uint8_t* blk, int i) { return i < 16 ? (blk[i] & 0x0F) : (blk[i - 16] >> 4); }

float dot4_f32(const uint8_t* w, const float* x, int64_t nblk) {
  float s = 0.0f;
  for (int64_t b = 0; b < nblk; ++b)
    for (int i = 0; i < kBlock; ++i) s += static_cast<float>(nib(w + b * 16, i)) * x[b * kBlock + i];
  return s;
}

float dot8_f32(const int8_t* w, const float* x, int64_t nblk) {
  float s = 0.0f;
  for (int64_t j = 0; j < nblk * kBlock; ++j) s += static_cast<float>(w[j]) * x[j];
  return s;
}

int32_t dot4_i8(const uint8_t* w, const int8_t* a, int64_t nblk) {
  int32_t s = 0;
  for (int64_t b = 0; b < nblk; ++b)
    for (int i = 0; i < kBlock; ++i) s += nib(w + b * 16, i) * a[b * kBlock + i];
  return s;
}

int32_t dot8_i8(const int8_t* w, const int8_t* a, int64_t nblk) {
  int32_t s = 0;
  for (int64_t j = 0; j < nblk * kBlock; ++j) s += w[j] * a[j];
  return s;
}

float dot4_q8(const uint8_t* w, const int8_t* a, const float* sa, int64_t nblk) {
  float s = 0.0f;
  for (int64_t b = 0; b < nblk; ++b) s += sa[b] * static_cast<float>(dot4_i8(w + b * 16, a + b * kBlock, 1));
  return s;
}

float dot8_q8(const int8_t* w, const int8_t* a, const float* sa, int64_t nblk) {
  float s = 0.0f;
  for (int64_t b = 0; b < nblk; ++b) s += sa[b] * static_cast<float>(dot8_i8(w + b * kBlock, a + b * kBlock, 1));
  return s;
}

}  // namespace

const QKernels kScalarKernels{"scalar", &dot4_f32, &dot8_f32, &dot4_i8, &dot8_i8, &dot4_q8, &dot8_q8};

}  // namespace xquant::cpu
