// weight_fit.cpp: a model too large for the provider's memory is refused
// after its first layer, with the sizes, instead of after minutes of reading
// and uploading when an allocation fails part way (issue 9: "a model that
// does not fit: a clear error before any GPU work, nothing left allocated").
//
// The estimate is layer 0's bytes as loaded (quantized in the provider's
// layout, dense at the device dtype: counted_weight_bytes' per-layer count)
// times the layers of its kind (MoE or dense: Qwen3-MoE's mlp_only_layers
// differ), a lower bound of what the weights need (the embeddings, lm_head,
// KV cache and activations come on top), so a refusal is never wrong about
// the layers themselves; a model that passes can still fail later in an
// allocation, with the provider's error. A W4A16 weight's second, Hopper-layout
// copy on the cuda provider is not counted: the provider skips it when the
// device has no room (docs/cuda.md, "cuda-w4a16-wgmma").
#include "engine/model.hpp"
#include "core/error.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

namespace xquant {
namespace {

// "12.35 GB", "3.2 MB", "812 KB": as many digits as the size needs.
std::string size_text(uint64_t bytes) {
  if (bytes >= 1000000000ull) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1000000ull) return fmt::format("{:.1f} MB", bytes / 1e6);
  return fmt::format("{:.0f} KB", bytes / 1e3);
}

}  // namespace

// (memory_info also restarts the provider's peak window; the benchmark opens
// its own window after the load, serve_bench.cpp.)
uint64_t Model::weight_memory_available() const {
  uint64_t available = options_.weight_memory_limit ? options_.weight_memory_limit : UINT64_MAX;
  xq_memory_info mi{};
  if (on_device() && kernels_->memory_info(&mi) && mi.device_total > 0) available = std::min(available, mi.device_free);
  return available;
}

void Model::refuse_layers_beyond(uint64_t available) const {
  if (available == UINT64_MAX || layers_.empty()) return;
  const bool moe0 = arch_.layers[0].moe;
  const int64_t alike = std::count_if(arch_.layers.begin(), arch_.layers.end(),
                                      [&](const LayerDesc& d) { return d.moe == moe0; });
  const uint64_t per_layer = layer_weight_bytes(0, false);
  const uint64_t need = per_layer * static_cast<uint64_t>(alike);
  if (need <= available) return;
  const bool device_bound = on_device() && (!options_.weight_memory_limit || available < options_.weight_memory_limit);
  const std::string room = device_bound ? "only " + size_text(available) + " were free on the device for the layers"
                                        : "the weight memory limit is " + size_text(available);
  fail(XQ_ERR_OUT_OF_MEMORY,
       "model '{}' does not fit: its {} {}layers need at least {} on kernel provider '{}' ({} each, as "
       "layer 0 loaded; the embeddings, lm_head and KV cache come on top) and {}; nothing was kept",
       checkpoint_->path().string(), alike, alike == arch_.n_layers ? "" : (moe0 ? "MoE " : "dense "), size_text(need),
       kernels_->name(), size_text(per_layer), room);
}

}  // namespace xquant
