// stored_weights.cpp: quantized Linears a checkpoint stores already packed in
// the kernel provider's layout (the `xq` container's provider segments). The
// provider names the layout it packs the tensor's description into; when the
// checkpoint has that layout, the provider takes the stored bytes as they are
// (qweight_adopt: checked, never repacked) and the load counts them as
// stored, not repacked (Model::load_stats). A provider that reads some of
// its weights in a second layout (the cuda provider's Hopper GEMM copy)
// names it after the adoption, and takes it from the checkpoint when stored
// there (qweight_attach); otherwise the weight runs without it.
#include "engine/model.hpp"
#include "engine/stored_layouts.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

namespace xquant {

bool Model::adopt_stored(const TensorEntry& te, const LinearDesc& d, LinearWeights& lw) {
  auto desc = sdk::make_struct<xq_quant_tensor>();
  auto bytes = sdk::make_struct<xq_tensor_view>();
  // The description first (the canonical segment's; nothing decoded).
  if (!checkpoint_->read_packed(te, "canonical", desc, bytes)) return false;
  if (desc.rows != d.out || desc.cols != d.in)
    fail(XQ_ERR_MALFORMED, "quantized '{}' is [{}, {}], expected [{}, {}]", d.module, desc.rows, desc.cols, d.out, d.in);
  const std::string layout = kernels_->packed_layout(desc);
  if (layout.empty() || !checkpoint_->read_packed(te, layout, desc, bytes)) return false;
  lw.q = kernels_->adopt(desc, layout, bytes, d.module);
  if (!lw.q) return false;
  try {
    attach_stored_copy(te, desc, lw.q, d.module);
  } catch (...) {  // bytes that lie: nothing of this Linear stays allocated
    kernels_->release(lw.q);
    lw.q = nullptr;
    throw;
  }
  if (!choose_qmatmul_act(lw)) {
    kernels_->release(lw.q);
    lw.q = nullptr;
    return false;
  }
  lw.layout = kernels_->layout(lw.q);
  lw.bytes = quantized_bytes(desc);
  ++n_quantized_;
  load_stats_.stored_bytes += lw.bytes;
  ++load_stats_.stored_linears;
  logger().debug("{}: {} bytes taken as stored in '{}'", d.module, bytes.nbytes, layout);
  return true;
}

void Model::attach_stored_copy(const TensorEntry& te, const xq_quant_tensor& desc, xq_qweight* w,
                               const std::string& module) {
  const std::string extra = kernels_->extra_layout(w, desc);
  if (extra.empty()) return;
  auto d = desc;
  auto bytes = sdk::make_struct<xq_tensor_view>();
  if (!checkpoint_->read_packed(te, extra, d, bytes)) {
    logger().debug("{}: no stored '{}' copy; its kernels there run without it", module, extra);
    return;
  }
  kernels_->attach(w, desc, extra, bytes, module);
  ++load_stats_.stored_copies;
  load_stats_.stored_copy_bytes += bytes.nbytes;
  logger().debug("{}: {} bytes of the stored '{}' copy taken", module, bytes.nbytes, extra);
}

bool stored_in_provider_layout(const Checkpoint& checkpoint, const Kernels& kernels, const LayerDesc& d,
                               std::initializer_list<int> members) {
  for (int i : members) {
    if (i < 0 || static_cast<size_t>(i) >= d.linears.size()) return false;
    const TensorEntry* te = checkpoint.find(d.linears[static_cast<size_t>(i)].weight_name());
    if (!te || !te->has_quantized) return false;
    auto desc = sdk::make_struct<xq_quant_tensor>();
    auto bytes = sdk::make_struct<xq_tensor_view>();
    if (!checkpoint.read_packed(*te, "canonical", desc, bytes)) return false;
    const std::string layout = kernels.packed_layout(desc);
    if (layout.empty() || !checkpoint.read_packed(*te, layout, desc, bytes)) return false;
  }
  return true;
}

}  // namespace xquant
