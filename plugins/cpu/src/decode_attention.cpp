// decode_attention_group (decode_attention.hpp): GCC/Clang vector extensions,
// 8 lanes where the CPU has AVX2 (a target("avx2") clone), 4 (SSE2, x86-64's
// baseline) otherwise; no FMA contraction (this library builds with
// -ffp-contract=off), so a given width always rounds alike.
//
// Scores: each key row is loaded once and dotted with the group's G query
// rows (two accumulators per dot, one horizontal sum). Values: the outputs
// are built a slice of 4 vectors (32 floats with AVX2) and up to 3 heads at a
// time in registers (12 accumulators), the value rows' slice loaded once per
// key for those heads, the probabilities broadcast (the loop this replaced
// kept each head's output in memory and walked every value row once per
// head).
#include "decode_attention.hpp"

#include <cstring>

#include "vector_exp.hpp"

namespace xquant::cpu {
namespace {

using V4f = float __attribute__((vector_size(16)));
using V8f = float __attribute__((vector_size(32)));

constexpr int64_t kHeadsPerTile = 3;   // value accumulators: heads ...
constexpr int64_t kVectorsPerTile = 4;  // ... times vectors of one output slice

// Vectors by reference, never by value: a 32-byte vector passed or returned
// by value changes the ABI between the AVX2 clone and baseline code.
template <class VF>
__attribute__((always_inline)) inline void load(const float* p, VF& v) {
  std::memcpy(&v, p, sizeof v);
}

// s += a[0 .. L) * b[0 .. L), lane by lane.
template <class VF>
__attribute__((always_inline)) inline void mul_add(const float* a, const float* b, VF& s) {
  VF x, y;
  load(a, x);
  load(b, y);
  s += x * y;
}

template <class VF>
__attribute__((always_inline)) inline float dot(const float* a, const float* b, int64_t D) {
  constexpr int64_t L = sizeof(VF) / sizeof(float);
  VF s0 = {}, s1 = {};
  int64_t c = 0;
  for (; c + 2 * L <= D; c += 2 * L) {
    mul_add(a + c, b + c, s0);
    mul_add(a + c + L, b + c + L, s1);
  }
  for (; c + L <= D; c += L) mul_add(a + c, b + c, s0);
  s0 += s1;
  float sum = 0.0f;
  for (int64_t l = 0; l < L; ++l) sum += s0[l];
  for (; c < D; ++c) sum += a[c] * b[c];
  return sum;
}

// scores[g n_keys + j] = scale <q_g, k_j>.
template <class VF>
__attribute__((always_inline)) inline void group_scores(const float* q, int64_t G, int64_t D, float scale,
                                                        const KeyRun* runs, int64_t n_runs, int64_t stride,
                                                        int64_t n_keys, float* scores) {
  int64_t j = 0;
  for (int64_t r = 0; r < n_runs; ++r)
    for (int64_t i = 0; i < runs[r].count; ++i, ++j) {
      const float* k = runs[r].k + i * stride;
      for (int64_t g = 0; g < G; ++g) scores[g * n_keys + j] = dot<VF>(q + g * D, k, D) * scale;
    }
}

// out[(g0 + g) D + c0 ..] for g < GT, NV vectors of columns from c0:
// sum over keys j of p[(g0 + g) n_keys + j] v_j.
template <class VF, int GT, int NV>
__attribute__((always_inline)) inline void value_tile(const float* p, int64_t g0, int64_t D, int64_t c0,
                                                      const KeyRun* runs, int64_t n_runs, int64_t stride,
                                                      int64_t n_keys, float* out) {
  constexpr int64_t L = sizeof(VF) / sizeof(float);
  VF acc[GT][NV] = {};
  int64_t j = 0;
  for (int64_t r = 0; r < n_runs; ++r)
    for (int64_t i = 0; i < runs[r].count; ++i, ++j) {
      const float* v = runs[r].v + i * stride + c0;
      VF vv[NV];
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) load(v + u * L, vv[u]);
#pragma GCC unroll 3
      for (int g = 0; g < GT; ++g) {
        const float w = p[(g0 + g) * n_keys + j];
#pragma GCC unroll 4
        for (int u = 0; u < NV; ++u) acc[g][u] += w * vv[u];
      }
    }
  for (int g = 0; g < GT; ++g) std::memcpy(out + (g0 + g) * D + c0, acc[g], sizeof acc[g]);
}

template <class VF, int GT>
__attribute__((always_inline)) inline void value_heads(const float* p, int64_t g0, int64_t D, const KeyRun* runs,
                                                       int64_t n_runs, int64_t stride, int64_t n_keys, float* out) {
  constexpr int64_t L = sizeof(VF) / sizeof(float);
  int64_t c0 = 0;
  for (; c0 + kVectorsPerTile * L <= D; c0 += kVectorsPerTile * L)
    value_tile<VF, GT, kVectorsPerTile>(p, g0, D, c0, runs, n_runs, stride, n_keys, out);
  for (; c0 + L <= D; c0 += L) value_tile<VF, GT, 1>(p, g0, D, c0, runs, n_runs, stride, n_keys, out);
  for (; c0 < D; ++c0)  // columns past the last whole vector (D not a multiple of L)
    for (int g = 0; g < GT; ++g) {
      float s = 0.0f;
      int64_t j = 0;
      for (int64_t r = 0; r < n_runs; ++r)
        for (int64_t i = 0; i < runs[r].count; ++i, ++j) s += p[(g0 + g) * n_keys + j] * runs[r].v[i * stride + c0];
      out[(g0 + g) * D + c0] = s;
    }
}

template <class VF>
__attribute__((always_inline)) inline void attend(const float* q, int64_t G, int64_t D, float scale,
                                                  const KeyRun* runs, int64_t n_runs, int64_t stride, float* scratch,
                                                  float* out) {
  int64_t n_keys = 0;
  for (int64_t r = 0; r < n_runs; ++r) n_keys += runs[r].count;
  group_scores<VF>(q, G, D, scale, runs, n_runs, stride, n_keys, scratch);
  for (int64_t g = 0; g < G; ++g) {  // softmax of each head's row (vectorized exp, vector_exp.hpp)
    float* row = scratch + g * n_keys;
    const float inv = 1.0f / exp_shifted_sum(row, row, n_keys, row_max(row, n_keys));
    for (int64_t j = 0; j < n_keys; ++j) row[j] *= inv;
  }
  int64_t g0 = 0;
  for (; g0 + kHeadsPerTile <= G; g0 += kHeadsPerTile)
    value_heads<VF, kHeadsPerTile>(scratch, g0, D, runs, n_runs, stride, n_keys, out);
  if (G - g0 == 2) value_heads<VF, 2>(scratch, g0, D, runs, n_runs, stride, n_keys, out);
  if (G - g0 == 1) value_heads<VF, 1>(scratch, g0, D, runs, n_runs, stride, n_keys, out);
}

__attribute__((target("avx2"))) void attend_avx2(const float* q, int64_t G, int64_t D, float scale,
                                                 const KeyRun* runs, int64_t n_runs, int64_t stride, float* scratch,
                                                 float* out) {
  attend<V8f>(q, G, D, scale, runs, n_runs, stride, scratch, out);
}

void attend_sse2(const float* q, int64_t G, int64_t D, float scale, const KeyRun* runs, int64_t n_runs,
                 int64_t stride, float* scratch, float* out) {
  attend<V4f>(q, G, D, scale, runs, n_runs, stride, scratch, out);
}

using Attend = void (*)(const float*, int64_t, int64_t, float, const KeyRun*, int64_t, int64_t, float*, float*);

Attend pick_attend() { return __builtin_cpu_supports("avx2") ? attend_avx2 : attend_sse2; }

}  // namespace

void decode_attention_group(const float* q, int64_t G, int64_t D, float scale, const KeyRun* runs, int64_t n_runs,
                            int64_t stride, float* scratch, float* out) {
  static const Attend impl = pick_attend();
  impl(q, G, D, scale, runs, n_runs, stride, scratch, out);
}

bool decode_attention_group_lanes(int lanes, const float* q, int64_t G, int64_t D, float scale, const KeyRun* runs,
                                  int64_t n_runs, int64_t stride, float* scratch, float* out) {
  if (lanes == 4) {
    attend_sse2(q, G, D, scale, runs, n_runs, stride, scratch, out);
    return true;
  }
  if (lanes != 8 || !__builtin_cpu_supports("avx2")) return false;
  attend_avx2(q, G, D, scale, runs, n_runs, stride, scratch, out);
  return true;
}

}  // namespace xquant::cpu
