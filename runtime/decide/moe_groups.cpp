// moe_groups.cpp: see moe_groups.hpp.
#include "decide/moe_groups.hpp"

#include "core/error.hpp"

#include <fmt/format.h>

namespace xquant::decide {

namespace {

bool is_moe_mlp(const Architecture& arch, const GroupProfile& g) {
  return arch.layers[static_cast<size_t>(g.layer)].moe && g.group >= LayerDesc::kMlpIn;
}

void add_candidate(CandidateResult& into, const CandidateResult& c, const std::string& part) {
  if (into.algorithm.empty()) {
    into.algorithm = c.algorithm;
    into.ok = true;
  }
  if (into.algorithm != c.algorithm)
    fail(XQ_ERR_INTERNAL, "decide: {}: candidate {} where {} was expected", part, c.algorithm, into.algorithm);
  if (!c.ok && into.ok) {
    into.ok = false;
    into.error = part + ": " + c.error;
  }
  into.output_error += c.output_error;
  into.reference_error += c.reference_error;
  into.weight_norm += c.weight_norm;
  // ||W - W^||^2 of the part, from its relative error and its ||W||^2.
  into.rel_weight_error += c.rel_weight_error * c.weight_norm;
  into.seconds += c.seconds;
  into.bytes += c.bytes;
  into.weights.insert(into.weights.end(), c.weights.begin(), c.weights.end());
}

void finish_candidate(CandidateResult& c) {
  c.rel_output_error = c.reference_error > 0 ? c.output_error / c.reference_error : 0;
  c.rel_weight_error = c.weight_norm > 0 ? c.rel_weight_error / c.weight_norm : 0;
}

void absorb(GroupProfile& into, const GroupProfile& part) {
  if (part.candidates.size() != into.candidates.size())
    fail(XQ_ERR_INTERNAL, "decide: {} has {} candidates, {} has {}", part.name, part.candidates.size(), into.name,
         into.candidates.size());
  into.linears.insert(into.linears.end(), part.linears.begin(), part.linears.end());
  into.modules.insert(into.modules.end(), part.modules.begin(), part.modules.end());
  into.params += part.params;
  into.dense_bytes += part.dense_bytes;
  for (size_t k = 0; k < part.candidates.size(); ++k) add_candidate(into.candidates[k], part.candidates[k], part.name);
  if (!part.int8.algorithm.empty()) add_candidate(into.int8, part.int8, part.name);
}

}  // namespace

std::vector<GroupProfile> merge_moe_groups(const Architecture& arch, std::vector<GroupProfile> groups) {
  std::vector<GroupProfile> out;
  for (auto& g : groups) {
    if (!is_moe_mlp(arch, g)) {
      out.push_back(std::move(g));
      continue;
    }
    const bool starts_layer = out.empty() || out.back().layer != g.layer || !is_moe_mlp(arch, out.back());
    if (starts_layer) {
      GroupProfile m;
      m.layer = g.layer;
      m.group = LayerDesc::kMlpIn;
      m.name = fmt::format("model.layers.{}.mlp_experts", g.layer);
      m.activations = g.activations;  // mlp_in's: the block's input (profiled first)
      m.candidates.resize(g.candidates.size());
      out.push_back(std::move(m));
    }
    absorb(out.back(), g);
  }
  for (auto& g : out) {
    if (!is_moe_mlp(arch, g)) continue;
    for (auto& c : g.candidates) finish_candidate(c);
    if (!g.int8.algorithm.empty()) finish_candidate(g.int8);
    choose_candidate(g);
    g.why = "one decision for the layer's experts (gate/up/down); " + g.why;
  }
  return out;
}

}  // namespace xquant::decide
