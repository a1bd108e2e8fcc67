// stored_weights.cpp: quantized Linears a checkpoint stores already packed in
// the kernel provider's layout (the `xq` container's provider segments). The
// provider names the layout it packs the tensor's description into; when the
// checkpoint has that layout, the provider takes the stored bytes as they are
// (qweight_adopt: checked, never repacked) and the load counts them as
// stored, not repacked (Model::load_stats). A provider that reads some of
// its weights in a second layout (the cuda provider's Hopper GEMM copy)
// names it after the adoption, and takes it from the checkpoint when stored
// there (qweight_attach); otherwise the weight runs without it. A device
// provider adopts q|k|v and gate|up as one weight each (qweight_adopt_stacked:
// each part's bytes placed, nothing repacked), as it stacks them when it
// packs canonical tensors: two GEMMs a layer where one by one runs five (on
// the H200, a Llama-3.1-8B-shaped W4A16 xq file decodes at 0.93 ms a token
// stacked against 1.27 one by one; docs/results.md, session thirty-six).
// XQUANT_STACK_STORED=0 loads them one by one.
#include "engine/model.hpp"
#include "engine/stored_layouts.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <cstdlib>
#include <cstring>

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
  StoredCounts counts{1, quantized_bytes(desc)};
  try {
    attach_stored_copy({&te}, {desc}, lw.q, d.module, counts);
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
  lw.bytes = counts.bytes;
  count_stored(counts);
  logger().debug("{}: {} bytes taken as stored in '{}'", d.module, bytes.nbytes, layout);
  return true;
}

void Model::count_stored(const StoredCounts& c) {
  n_quantized_ += c.linears;
  load_stats_.stored_linears += c.linears;
  load_stats_.stored_bytes += c.bytes;
  load_stats_.stored_copies += c.copies;
  load_stats_.stored_copy_bytes += c.copy_bytes;
}

void Model::attach_stored_copy(const std::vector<const TensorEntry*>& entries, const std::vector<xq_quant_tensor>& descs,
                               xq_qweight* w, const std::string& module, StoredCounts& counts) {
  const std::string extra = kernels_->extra_layout(w);
  if (extra.empty()) return;
  std::vector<Kernels::StoredTensor> parts;
  for (size_t i = 0; i < entries.size(); ++i) {
    Kernels::StoredTensor t{descs[i], sdk::make_struct<xq_tensor_view>()};
    auto d = descs[i];
    if (!checkpoint_->read_packed(*entries[i], extra, d, t.bytes)) {
      logger().debug("{}: no stored '{}' copy; its kernels there run without it", module, extra);
      return;
    }
    parts.push_back(t);
  }
  kernels_->attach(w, extra, parts, module);
  for (const auto& t : parts) {
    ++counts.copies;
    counts.copy_bytes += t.bytes.nbytes;
  }
  logger().debug("{}: the stored '{}' copy taken", module, extra);
}

LinearWeights Model::adopt_stored_stacked(const LayerDesc& d, const std::vector<int>& members, LayerWeights& w,
                                          const char* name, StoredCounts& counts, std::string* refused) {
  std::vector<const LinearDesc*> parts;
  auto desc = stacked_desc(d, members, name, parts);
  if (!desc) return {};
  std::vector<const TensorEntry*> entries;
  std::vector<xq_quant_tensor> descs;
  std::vector<Kernels::StoredTensor> stored;
  std::string layout;
  counts = StoredCounts{};
  for (const auto* p : parts) {
    const TensorEntry* te = checkpoint_->find(p->weight_name());
    Kernels::StoredTensor t{sdk::make_struct<xq_quant_tensor>(), sdk::make_struct<xq_tensor_view>()};
    if (!te || !checkpoint_->read_packed(*te, "canonical", t.desc, t.bytes)) return {};
    if (t.desc.rows != p->out || t.desc.cols != p->in) return {};  // load_linear reports it
    const std::string l = kernels_->packed_layout(t.desc);
    if (l.empty() || (!layout.empty() && l != layout) || !checkpoint_->read_packed(*te, l, t.desc, t.bytes)) return {};
    layout = l;
    entries.push_back(te);
    descs.push_back(t.desc);
    stored.push_back(t);
    ++counts.linears;
    counts.bytes += quantized_bytes(t.desc);
  }
  LinearWeights lw;
  lw.desc = desc.get();
  std::string why;  // the provider's reason; the caller's copy where it asks for it
  lw.q = kernels_->adopt_stacked(layout, stored, desc->module, &why);
  if (!lw.q) {
    logger().debug("{}: stored {} not stacked: {}", parts[0]->module, name, why);
    if (refused) *refused = why;
    return {};
  }
  try {
    attach_stored_copy(entries, descs, lw.q, desc->module, counts);
  } catch (...) {
    kernels_->release(lw.q);
    throw;
  }
  if (!choose_qmatmul_act(lw)) {
    kernels_->release(lw.q);
    return {};
  }
  lw.layout = kernels_->layout(lw.q);
  lw.bytes = counts.bytes;
  keep_stacked(std::move(desc), parts, lw, w);
  return lw;
}

bool stack_stored_weights() {
  const char* v = std::getenv("XQUANT_STACK_STORED");
  if (!v || !*v || std::strcmp(v, "1") == 0) return true;
  if (std::strcmp(v, "0") == 0) return false;
  fail(XQ_ERR_INVALID_ARGUMENT, "XQUANT_STACK_STORED must be 0 or 1, got '{}'", v);
}

bool stored_in_provider_layout(const Checkpoint& checkpoint, const Kernels& kernels, const LayerDesc& d,
                               const std::vector<int>& members) {
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
