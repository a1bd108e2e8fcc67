// bf16_embedding.cpp: keeping a BF16-stored embedding table in BF16.
//
// Checkpoints store the embedding table (tied to lm_head in SmolLM2, Qwen2.5
// and most small models) in the model's dtype, usually BF16, and quantizers
// leave it unquantized. Widened to F32 it is the largest tensor a small
// quantized model holds: SmolLM2-135M's 49152 x 576 table is 113 MB in F32,
// more than all its W4A16 Linears. BF16 -> F32 is exact, so on a host
// provider whose MATMUL takes BF16 weights (cpu: bf16_matmul.cpp, bit-identical
// to its F32 MATMUL) the table stays as stored: GET_ROWS reads BF16 rows, the
// tied lm_head streams half the bytes, and the logits do not change.
#include "core/dtype.hpp"
#include "core/log.hpp"
#include "engine/model.hpp"
#include "engine/release_source.hpp"

namespace xquant {

bool Model::keep_bf16_embedding(const TensorEntry& et) {
  // F16 likewise (F16 -> F32 is exact too).
  if (on_device() || (et.dtype != XQ_DTYPE_BF16 && et.dtype != XQ_DTYPE_F16) || options_.layers_on_demand) return false;
  float* const probe = support_probe();
  xq_op op = Kernels::op(XQ_OP_MATMUL);
  op.src[0] = f32({1, arch_.hidden}, probe);
  op.src[1] = dtensor(et.dtype, {arch_.vocab, arch_.hidden}, probe);
  op.dst = f32({1, arch_.vocab}, probe);
  xq_op rows = Kernels::op(XQ_OP_GET_ROWS);
  rows.src[0] = op.src[1];
  rows.src[1] = dtensor(XQ_DTYPE_I32, {1}, probe);
  rows.dst = f32({1, arch_.hidden}, probe);
  if (!kernels_->supports(op) || !kernels_->supports(rows)) return false;
  embed_bf16_.resize(static_cast<size_t>(arch_.vocab * arch_.hidden));
  load_stats_.source_bytes_released +=
      read_and_release(*checkpoint_, et, et.dtype, embed_bf16_.data(), embed_bf16_.size() * sizeof(uint16_t));
  embed16_dtype_ = et.dtype;
  logger().debug("'{}': embedding table kept in {} as stored ({} bytes)", et.name, dtype_name(et.dtype),
                 embed_bf16_.size() * 2);
  return true;
}

xq_device_tensor Model::embedding_table() const {
  if (d_embed16_) return dtensor(embed16_dtype_, {arch_.vocab, arch_.hidden}, d_embed16_.data());  // device_tables.cpp
  if (!embed_bf16_.empty()) return dtensor(embed16_dtype_, {arch_.vocab, arch_.hidden}, embed_bf16_.data());
  return f32({arch_.vocab, arch_.hidden}, embedding());
}

}  // namespace xquant
