// device_tables.cpp: the embedding table and an untied lm_head on a device
// provider, uploaded as stored.
//
// Llama-family checkpoints store both tables in BF16 (or F16), and
// quantizers leave them so; Llama-3.1-8B's are 128256 x 4096 each, 1 GB in
// BF16 and 2.1 GB in F32, more than all the quantized Linears of a
// shortened model. Read to F32 on the host (one thread) and uploaded (or
// narrowed back to BF16 first), they made most of a device load. Here the
// stored 16-bit bytes go from the mapped file to the device as they are
// (engine/mapped_upload.cpp); where the device used to hold F32 it widens
// them there (CONVERT), which is exact, as BF16/F16 -> F32 is. What the
// forward reads is therefore bit for bit what the host route gave it:
//   - embedding: kept 16-bit when lm_head has its own tensor and GET_ROWS
//     takes the dtype (rows come out widened to F32, exactly); widened to F32
//     when lm_head is tied to it (its MATMUL keeps reading F32);
//   - lm_head: BF16 as stored when dense weights run in BF16
//     (XQUANT_DEVICE_WEIGHTS=bf16: before, F32 -> BF16 of BF16 values, the
//     identity); else widened to F32. An F16 lm_head with BF16 device weights
//     keeps the host route (F16 -> BF16 rounds).
// XQUANT_DEVICE_TABLES=host takes the host route instead (measurements and
// tests compare the two).
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/mapped_upload.hpp"
#include "engine/model.hpp"

#include <strings.h>

#include <cstdlib>

namespace xquant {

namespace {

bool tables_from_host() {
  const char* e = std::getenv("XQUANT_DEVICE_TABLES");
  if (!e || !*e || strcasecmp(e, "stored") == 0) return false;
  if (strcasecmp(e, "host") == 0) return true;
  fail(XQ_ERR_INVALID_ARGUMENT, "XQUANT_DEVICE_TABLES must be stored or host, got '{}'", e);
}

bool is_16bit(xq_dtype t) { return t == XQ_DTYPE_BF16 || t == XQ_DTYPE_F16; }

}  // namespace

bool Model::widens_on_device(xq_dtype t, int64_t n) const {
  float* const probe = support_probe();
  xq_op op = Kernels::op(XQ_OP_CONVERT);
  op.src[0] = dtensor(t, {n}, probe);
  op.dst = f32({n}, probe);
  return kernels_->supports(op);
}

DeviceBuffer Model::upload_stored16(const TensorEntry& t, const char* what) {
  if (!is_16bit(t.dtype)) return {};
  xq_tensor_view v{};
  try {
    v = checkpoint_->raw(t);
  } catch (const Error&) {
    return {};  // the loader maps no bytes for it: the host route reads it
  }
  const uint64_t n = static_cast<uint64_t>(t.numel()) * 2;
  if (!v.data || v.dtype != t.dtype || v.nbytes != n) return {};
  DeviceBuffer b(*kernels_, n, what);
  load_stats_.source_bytes_released += upload_and_release(*kernels_, b.data(), v.data, n);
  load_stats_.tables_stored_bytes += n;
  return b;
}

DeviceBuffer Model::widen_on_device(const DeviceBuffer& b16, xq_dtype t, int64_t n, const char* what) const {
  DeviceBuffer f(*kernels_, static_cast<uint64_t>(n) * sizeof(float), what);
  xq_op op = Kernels::op(XQ_OP_CONVERT);
  op.src[0] = dtensor(t, {n}, b16.data());
  op.dst = f32({n}, f.f32());
  kernels_->run(op, "CONVERT (a 16-bit table widened to F32)");
  return f;  // b16's free waits for the conversion (DeviceBuffer::reset)
}

bool Model::device_embedding(const TensorEntry& et) {
  if (!on_device() || !is_16bit(et.dtype) || tables_from_host()) return false;
  const int64_t n = arch_.vocab * arch_.hidden;
  float* const probe = support_probe();
  static const int32_t probe_id[1] = {0};
  xq_op rows = Kernels::op(XQ_OP_GET_ROWS);
  rows.src[0] = dtensor(et.dtype, {arch_.vocab, arch_.hidden}, probe);
  rows.src[1] = dtensor(XQ_DTYPE_I32, {1}, probe_id);
  rows.dst = f32({1, arch_.hidden}, probe);
  const bool own_lm_head = checkpoint_->find(arch_.lm_head) != nullptr;
  const bool keep16 = own_lm_head && kernels_->supports(rows);
  if (!keep16 && !widens_on_device(et.dtype, n)) return false;
  DeviceBuffer b = upload_stored16(et, "the embeddings");
  if (!b) return false;
  if (keep16) {
    d_embed16_ = std::move(b);
    embed16_dtype_ = et.dtype;
  } else {
    d_embed_ = widen_on_device(b, et.dtype, n, "the embeddings");
  }
  logger().debug("'{}': {} embedding table uploaded as stored{}", et.name, dtype_name(et.dtype),
                 keep16 ? "" : ", widened to F32 on the device (tied lm_head)");
  return true;
}

bool Model::device_lm_head(const LinearDesc& d) {
  if (!on_device() || tables_from_host()) return false;
  const TensorEntry* te = checkpoint_->find(d.weight_name());
  if (!te || te->has_quantized || !is_16bit(te->dtype)) return false;
  if (te->shape.size() != 2 || te->shape[0] != d.out || te->shape[1] != d.in || checkpoint_->read_module(d.module))
    return false;
  LinearWeights lw;
  lw.desc = &d;
  const int64_t n = d.out * d.in;
  const bool bf16_runs = options_.device_weights == XQ_DTYPE_BF16 && bf16_matmul_runs(lw);
  if (bf16_runs && te->dtype == XQ_DTYPE_BF16) {
    lw.dw = upload_stored16(*te, "a BF16 Linear weight");
    if (!lw.dw) return false;
    lw.act = XQ_DTYPE_BF16;
    lw.bytes = static_cast<uint64_t>(n) * 2;
    lw.layout = "bf16";
  } else if (!bf16_runs && widens_on_device(te->dtype, n)) {
    DeviceBuffer b = upload_stored16(*te, "a Linear weight");
    if (!b) return false;
    lw.dw = widen_on_device(b, te->dtype, n, "a Linear weight");
    lw.bytes = static_cast<uint64_t>(n) * sizeof(float);
    lw.layout = "f32";
  } else {
    return false;
  }
  logger().debug("{}: {} uploaded as stored, run as {}", d.module, dtype_name(te->dtype), lw.layout);
  lm_head_ = std::move(lw);
  return true;
}

}  // namespace xquant
