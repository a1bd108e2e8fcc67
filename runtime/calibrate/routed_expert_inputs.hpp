// routed_expert_inputs.hpp: a MoE layer's gate/up input (every token, as
// the post-attention norm gives it) and its routing, kept once per
// calibration pass so that each expert's gate/up statistics can be
// accumulated later, a few experts at a time, instead of all experts'
// statistics (an H x H Hessian each: 16 MiB at H = 2048, 2 GiB for
// Qwen3-30B-A3B's 128 experts) during the pass.
//
// What accumulate() gives an expert is what the engine's tap gives it
// during the layer's forward (model.cpp moe_forward): per sample, in
// sample order, the rows routed to it gathered in ascending row order, the
// routing computed by the same Model::moe_routing on the same input. So
// the statistics are the same floats, whatever the chunking.
#pragma once

#include "calibrate/statistics_accumulator.hpp"
#include "engine/model.hpp"

#include <cstdint>
#include <vector>

namespace xquant {

class RoutedExpertInputs {
 public:
  RoutedExpertInputs(const Model& model, int layer) : model_(model), layer_(layer) {}

  // One sample's gate/up input rows h[rows, hidden] (copied), routed now.
  void add_sample(const float* h, int64_t rows);
  // Every sample's rows routed to `expert`, into `acc`.
  void accumulate(int64_t expert, StatisticsAccumulator& acc, ThreadPool& pool) const;
  // Bytes held: the input rows and the row lists.
  uint64_t bytes() const;

 private:
  struct Sample {
    std::vector<float> rows;  // [n, hidden]
    ExpertRows routed;
  };
  const Model& model_;
  int layer_;
  std::vector<Sample> samples_;
};

}  // namespace xquant
