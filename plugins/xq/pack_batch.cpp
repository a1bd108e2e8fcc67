// pack_batch.cpp: see pack_batch.hpp.
#include "pack_batch.hpp"

namespace xquant::xqc {

void PackBatch::add(const char* module, const xq_quant_tensor& q, std::vector<uint8_t> canonical) {
  auto h = std::make_unique<Held>();
  h->module = module;
  h->bytes = std::move(canonical);
  h->q = q;
  const auto n_codes = static_cast<size_t>(q.rows * q.cols);
  const auto n_scales = static_cast<size_t>(q.strategy == XQ_STRATEGY_TENSOR ? 1 : q.rows * q.n_groups);
  h->codes.assign(q.codes, q.codes + n_codes);
  h->q.codes = h->codes.data();
  h->scales.assign(q.scales, q.scales + n_scales);
  h->q.scales = h->scales.data();
  if (q.zero_points) {
    h->zero_points.assign(q.zero_points, q.zero_points + n_scales);
    h->q.zero_points = h->zero_points.data();
  }
  if (q.g_idx) {
    h->g_idx.assign(q.g_idx, q.g_idx + q.cols);
    h->q.g_idx = h->g_idx.data();
  }
  held_bytes_ += h->bytes.size() + n_codes + n_scales * (sizeof(float) + (q.zero_points ? 1 : 0)) + (q.g_idx ? q.cols * 4 : 0);
  held_.push_back(std::move(h));
  ++quantized_;
}

void PackBatch::add_dense(const void* data, uint64_t nbytes) {
  auto h = std::make_unique<Held>();
  h->dense = true;
  h->bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
  held_bytes_ += nbytes;
  held_.push_back(std::move(h));
}

std::vector<PackBatch::Packed> PackBatch::pack(const sdk::Host& host, const LayoutChoice& layouts,
                                               bool store_layouts) {
  std::vector<Packed> out(held_.size());
  host.parallel_for(held_.size(), 1, [&](uint64_t b, uint64_t e) {
    for (uint64_t i = b; i < e; ++i) {
      Held& h = *held_[i];
      out[i].canonical = std::move(h.bytes);
      if (!h.dense && store_layouts) out[i].layouts = pack_provider_layouts(host, h.module.c_str(), h.q, layouts);
    }
  });
  held_.clear();
  held_bytes_ = 0;
  quantized_ = 0;
  return out;
}

}  // namespace xquant::xqc
