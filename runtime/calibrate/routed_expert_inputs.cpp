// routed_expert_inputs.cpp: see routed_expert_inputs.hpp.
#include "calibrate/routed_expert_inputs.hpp"

#include <cstring>

namespace xquant {

void RoutedExpertInputs::add_sample(const float* h, int64_t rows) {
  const int64_t H = model_.arch().hidden;
  const MoeDesc& m = model_.arch().layers.at(static_cast<size_t>(layer_)).experts;
  Sample s;
  s.rows.assign(h, h + rows * H);
  s.routed = rows_per_expert(model_.moe_routing(layer_, h, rows), m.n_experts);
  samples_.push_back(std::move(s));
}

void RoutedExpertInputs::accumulate(int64_t expert, StatisticsAccumulator& acc, ThreadPool& pool) const {
  const int64_t H = model_.arch().hidden;
  std::vector<float> xe;
  for (const Sample& s : samples_) {
    const auto& idx = s.routed.rows[static_cast<size_t>(expert)];
    const auto n = static_cast<int64_t>(idx.size());
    if (n == 0) continue;  // the engine's tap skips an expert without rows too
    xe.resize(static_cast<size_t>(n * H));
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(xe.data() + i * H, s.rows.data() + idx[static_cast<size_t>(i)] * H, static_cast<size_t>(H) * sizeof(float));
    acc.add(pool, xe.data(), n, H);
  }
}

uint64_t RoutedExpertInputs::bytes() const {
  uint64_t b = 0;
  for (const Sample& s : samples_) {
    b += s.rows.size() * sizeof(float);
    for (const auto& r : s.routed.rows) b += r.size() * sizeof(int64_t);
    for (const auto& w : s.routed.weight) b += w.size() * sizeof(float);
  }
  return b;
}

}  // namespace xquant
