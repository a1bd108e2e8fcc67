// paged_kv.cpp: the block pool and allocator of the paged KV cache
// (paged_kv.hpp).
#include "engine/paged_kv.hpp"

#include "core/error.hpp"
#include "engine/model.hpp"

#include <atomic>

namespace xquant {

namespace {
uint64_t next_cache_id() {
  static std::atomic<uint64_t> last{0};
  return ++last;
}
}  // namespace

PagedKvCache::PagedKvCache(const Model& model, const PagedKvOptions& o) : model_(&model), id_(next_cache_id()) {
  const Architecture& a = model.arch();
  if (o.block_size <= 0 || o.num_blocks <= 0)
    fail(XQ_ERR_INVALID_ARGUMENT, "paged KV cache: block size and block count must be positive (got {} and {})",
         o.block_size, o.num_blocks);
  if (o.num_blocks > INT32_MAX / o.block_size)
    fail(XQ_ERR_INVALID_ARGUMENT, "paged KV cache: {} blocks of {} slots overflow 32-bit slot ids", o.num_blocks,
         o.block_size);
  if (o.dtype != XQ_DTYPE_F32 && o.dtype != XQ_DTYPE_BF16)
    fail(XQ_ERR_INVALID_ARGUMENT, "paged KV cache: the pool dtype must be F32 or BF16");
  if (o.dtype != XQ_DTYPE_F32 && model.kernels().host_memory())
    fail(XQ_ERR_UNSUPPORTED, "paged KV cache: provider '{}' keeps F32 pools only", model.kernels().name());
  block_size_ = o.block_size;
  num_blocks_ = o.num_blocks;
  kv_heads_ = a.n_kv_heads;
  head_dim_ = a.head_dim;
  dtype_ = o.dtype;
  const uint64_t elem = dtype_ == XQ_DTYPE_F32 ? 4 : 2;
  pool_bytes_ = static_cast<uint64_t>(num_blocks_ * block_size_ * kv_heads_ * head_dim_) * elem;
  bytes_per_block_ = static_cast<uint64_t>(2 * a.n_layers * block_size_ * kv_heads_ * head_dim_) * elem;
  const uint64_t total = pool_bytes_ * static_cast<uint64_t>(2 * a.n_layers);
  if (model.kernels().host_memory()) {
    host_.assign(total, 0);
    base_ = host_.data();
  } else {
    device_ = DeviceBuffer(model.kernels(), total, "the paged KV cache");
    base_ = static_cast<unsigned char*>(device_.data());
  }
  free_.reserve(static_cast<size_t>(num_blocks_));
  for (int64_t b = num_blocks_ - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

PagedKvCache::~PagedKvCache() { model_->forget_decode_recordings(id_); }

bool PagedKvCache::reserve(PagedSequence& seq, int64_t extra) {
  const int64_t need = blocks_for(seq.size + extra) - static_cast<int64_t>(seq.blocks.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int64_t i = 0; i < need; ++i) {
    seq.blocks.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void PagedKvCache::release(PagedSequence& seq) {
  for (auto it = seq.blocks.rbegin(); it != seq.blocks.rend(); ++it) free_.push_back(*it);
  seq.blocks.clear();
  seq.size = 0;
}

int32_t PagedKvCache::slot(const PagedSequence& seq, int64_t pos) const {
  const auto b = static_cast<size_t>(pos / block_size_);
  if (pos < 0 || b >= seq.blocks.size())
    fail(XQ_ERR_INTERNAL, "paged KV cache: position {} is past the sequence's {} blocks", pos, seq.blocks.size());
  return static_cast<int32_t>(seq.blocks[b] * block_size_ + pos % block_size_);
}

xq_device_tensor PagedKvCache::pool(int index) const {
  return dtensor(dtype_, {num_blocks_, block_size_, kv_heads_, head_dim_}, base_ + pool_bytes_ * static_cast<uint64_t>(index));
}

}  // namespace xquant
