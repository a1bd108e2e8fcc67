// attention_reference.hpp: the float64 causal GQA attention the split-K
// attention tests (test_decode_attention.cpp, test_split_k_attention.cpp)
// compare against, over a contiguous cache [S, KVH, D].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace xqtest {

struct AttentionShape {
  int64_t T, start, H, KVH, D;  // rows t = 0..T-1 see keys 0 .. start + t
};

// out[t, h] = softmax(q[t, h] . k[0..start+t]^T * scale) . v, in double;
// q [T, H, D], k and v [start + T, KVH, D], query head h reading kv head
// h / (H / KVH).
inline std::vector<double> reference_attention(const AttentionShape& s, const std::vector<float>& q,
                                               const std::vector<float>& k, const std::vector<float>& v,
                                               double scale) {
  std::vector<double> out(static_cast<size_t>(s.T * s.H * s.D));
  const int64_t group = s.H / s.KVH;
  for (int64_t t = 0; t < s.T; ++t)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t kh = h / group, n = s.start + t + 1;
      std::vector<double> p(static_cast<size_t>(n));
      double mx = -1e300;
      for (int64_t j = 0; j < n; ++j) {
        double d = 0;
        for (int64_t i = 0; i < s.D; ++i)
          d += static_cast<double>(q[(t * s.H + h) * s.D + i]) * k[(j * s.KVH + kh) * s.D + i];
        p[j] = d * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (auto& x : p) sum += (x = std::exp(x - mx));
      for (int64_t i = 0; i < s.D; ++i) {
        double a = 0;
        for (int64_t j = 0; j < n; ++j) a += p[j] * v[(j * s.KVH + kh) * s.D + i];
        out[(t * s.H + h) * s.D + i] = a / sum;
      }
    }
  return out;
}

}  // namespace xqtest
