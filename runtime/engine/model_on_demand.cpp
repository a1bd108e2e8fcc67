// model_on_demand.cpp: a Model whose layers come in from the mapped
// checkpoint one at a time (ModelOptions::layers_on_demand, see model.hpp).
//
// Calibration holds every weight as F32 so algorithms can read and
// overwrite it; for a whole model that is 4 bytes a parameter (a 48-layer
// Qwen3-30B-A3B: ~116 GB). It only ever works on one layer, so the
// calibrated runner loads that layer when it starts and releases it once
// the layer's tensors are written; the checkpoint itself stays mapped
// (pages the kernel may drop), not copied.
#include "engine/model.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <algorithm>

namespace xquant {

namespace {

uint64_t floats(const std::vector<float>& v) { return v.size() * sizeof(float); }

uint64_t linear_float_bytes(const LinearWeights& lw) { return floats(lw.w) + floats(lw.bias); }

uint64_t layer_float_bytes(const LayerWeights& w) {
  uint64_t b = floats(w.input_norm) + floats(w.post_norm) + floats(w.q_norm) + floats(w.k_norm);
  for (const auto& lw : w.linears) b += linear_float_bytes(lw);
  for (const auto& lw : w.expert_gate_up) b += linear_float_bytes(lw);
  return b + linear_float_bytes(w.qkv) + linear_float_bytes(w.gate_up);
}

}  // namespace

void Model::count_float_weights() {
  uint64_t b = floats(embed_) + floats(final_norm_) + linear_float_bytes(lm_head_);
  for (const auto& l : layers_) b += layer_float_bytes(l);
  float_bytes_ = b;
  peak_float_bytes_ = std::max(peak_float_bytes_, b);
}

void Model::begin_on_demand() {
  if (!options_.dequantize_all || on_device())
    fail(XQ_ERR_INVALID_ARGUMENT, "'{}': loading layers on demand needs dequantize_all and a host-memory kernel "
         "provider (got provider '{}'{})", checkpoint_->path().string(), kernels_->name(),
         options_.dequantize_all ? "" : ", dequantize_all off");
  count_float_weights();
  logger().debug("model '{}': {} layers loaded on demand", checkpoint_->path().string(), arch_.n_layers);
}

void Model::load_layer(int layer) {
  if (layer < 0 || layer >= arch_.n_layers)
    fail(XQ_ERR_INVALID_ARGUMENT, "load_layer: layer {} outside 0..{}", layer, arch_.n_layers - 1);
  if (layer_loaded(layer)) return;
  load_layer_weights(layer);
  count_float_weights();
}

void Model::release_layer(int layer) {
  if (layer < 0 || layer >= arch_.n_layers)
    fail(XQ_ERR_INVALID_ARGUMENT, "release_layer: layer {} outside 0..{}", layer, arch_.n_layers - 1);
  LayerWeights& w = layers_[static_cast<size_t>(layer)];
  for (auto& lw : w.linears) kernels_->release(lw.q);
  for (auto& lw : w.expert_gate_up) kernels_->release(lw.q);
  kernels_->release(w.qkv.q);
  kernels_->release(w.gate_up.q);
  w = LayerWeights{};  // a fresh object: the vectors' memory goes back
  count_float_weights();
}

void Model::load_embeddings() {
  if (!embed_.empty()) return;
  embed_ = read_vector(arch_.embed, arch_.vocab * arch_.hidden);
  count_float_weights();
}

void Model::release_embeddings() {
  std::vector<float>().swap(embed_);
  count_float_weights();
}

void Model::require_layer(int layer) const {
  if (layer < 0 || layer >= arch_.n_layers)
    fail(XQ_ERR_INVALID_ARGUMENT, "layer {} outside 0..{}", layer, arch_.n_layers - 1);
  if (!layer_loaded(layer))
    fail(XQ_ERR_INVALID_ARGUMENT, "'{}': layer {} is not loaded (the model loads layers on demand: load_layer first)",
         checkpoint_->path().string(), layer);
}

void Model::require_all_weights(const char* what) const {
  if (options_.layers_on_demand)
    fail(XQ_ERR_INVALID_ARGUMENT, "'{}': {} needs every weight, but the model was opened to load layers on demand "
         "(calibration only)", checkpoint_->path().string(), what);
}

}  // namespace xquant
