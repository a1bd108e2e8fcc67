// paged_kv.hpp: the engine's paged KV cache: one pool of fixed-size blocks
// (BS token slots each, every layer's K and V) shared by all sequences, a
// block allocator, and per-sequence block tables, as vLLM's PagedAttention
// (Kwon et al. 2023, arXiv:2309.06180). A sequence holds ceil(len / BS)
// blocks; no sequence needs contiguous memory, so many sequences of mixed
// lengths share one allocation without fragmentation.
//
// Memory: host memory on host providers, the provider's memory otherwise,
// laid out per layer as K pool then V pool, each [blocks, BS, KVH, D] in the
// pool dtype (F32; BF16 on providers whose PAGED_ATTENTION accepts it).
#pragma once

#include "engine/kernels.hpp"

#include <cstdint>
#include <vector>

namespace xquant {

class Model;

struct PagedKvOptions {
  int64_t block_size = 16;  // token slots per block
  int64_t num_blocks = 0;   // blocks in the pool (> 0)
  xq_dtype dtype = XQ_DTYPE_F32;
};

// One sequence's view of the cache: its blocks in order and its length.
struct PagedSequence {
  std::vector<int32_t> blocks;
  int64_t size = 0;  // tokens whose K/V are stored
};

class PagedKvCache {
 public:
  // The model must outlive the cache (its pools are the model's provider's memory).
  PagedKvCache(const Model& model, const PagedKvOptions& options);
  // Drops the model's decode recordings of this cache (they hold its pools' addresses).
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  // Unique among every cache of the process, unlike the pools' address: the
  // next cache may get the same memory with another dtype or block size, and
  // a decode recording keyed by the address then replayed the old cache's
  // kernels on it (wrong logits from a BF16 cache made after an F32 one).
  uint64_t id() const { return id_; }

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  xq_dtype dtype() const { return dtype_; }
  // Bytes of one block over all layers (K and V).
  uint64_t bytes_per_block() const { return bytes_per_block_; }
  uint64_t bytes() const { return bytes_per_block_ * static_cast<uint64_t>(num_blocks_); }
  // Blocks a sequence of `tokens` tokens holds, and how many such sequences
  // the whole pool holds at once.
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }
  int64_t max_sequences(int64_t tokens) const { return tokens > 0 ? num_blocks_ / blocks_for(tokens) : 0; }

  // Grows `seq` so it can hold `extra` more tokens; false (nothing taken)
  // when the pool has too few free blocks.
  bool reserve(PagedSequence& seq, int64_t extra);
  // Returns every block of `seq` to the pool and empties it.
  void release(PagedSequence& seq);
  // Slot of token position `pos` of `seq` (block * BS + offset).
  int32_t slot(const PagedSequence& seq, int64_t pos) const;

  // Layer `layer`'s pools, [blocks, BS, KVH, D] each.
  xq_device_tensor k_pool(int layer) const { return pool(2 * layer); }
  xq_device_tensor v_pool(int layer) const { return pool(2 * layer + 1); }

 private:
  xq_device_tensor pool(int index) const;
  const Model* model_ = nullptr;
  uint64_t id_ = 0;
  int64_t block_size_ = 0, num_blocks_ = 0, kv_heads_ = 0, head_dim_ = 0;
  xq_dtype dtype_ = XQ_DTYPE_F32;
  uint64_t bytes_per_block_ = 0, pool_bytes_ = 0;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<unsigned char> host_;
  DeviceBuffer device_;
  unsigned char* base_ = nullptr;
};

}  // namespace xquant
