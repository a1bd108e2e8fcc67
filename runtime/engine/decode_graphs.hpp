// decode_graphs.hpp: recorded decode steps, one per batch-size bucket. A
// decode step of the paged engine is ~14 ops per layer plus the lm_head;
// at batch 1 on a fast GPU the host's launches take as long as the kernels
// run. When the provider records (Kernels::records_graphs), a decode-only
// step is padded to a bucket of rows (a power of two) and a block-table
// width (one plus a power of two), run eagerly once, then recorded; later
// steps with the same key upload their step metadata and launch the
// recording (vLLM captures its decode step per batch size the same way:
// vllm/worker/model_runner.py, CUDAGraphRunner). Recordings keep the
// addresses of the engine's scratch buffers, so every recording is dropped
// when any of those buffers moves (the caller's `generation`), and a
// cache's recordings when that cache is destroyed.
#pragma once

#include "engine/kernels.hpp"

#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <set>

namespace xquant {

class DecodeGraphs {
 public:
  struct Key {
    int64_t rows = 0;          // the bucket (padded batch size)
    int64_t table_ld = 0;      // block-table row width (1 + padded blocks)
    uint64_t cache = 0;        // PagedKvCache::id() (its pools' address is reused by later caches)
    bool greedy = false;       // ends in ARGMAX (ids) rather than logits
    auto operator<=>(const Key&) const = default;
  };
  struct Stats {
    uint64_t recorded = 0, replayed = 0, refused = 0, dropped = 0;
  };

  explicit DecodeGraphs(const Kernels& k) : k_(&k) {}
  ~DecodeGraphs() { drop_all(); }
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // The bucket `rows` decode rows pad to; 0 when larger than any bucket
  // (such steps run eagerly).
  static int64_t bucket_rows(int64_t rows);
  // The block-table width for sequences of at most `blocks` blocks.
  static int64_t bucket_table_ld(int64_t blocks);

  // The recording for `key` made at `generation`, or nullptr (recordings of
  // an older generation are released first).
  xq_graph* find(const Key& key, uint64_t generation);
  // Launches a recording found by find().
  void launch(xq_graph* g);
  // Records `ops` (which only runs ops: no upload, download or allocation)
  // as key's recording. When the provider cannot record it, the key is
  // remembered as refused (logged once) and runs eagerly from then on.
  void record(const Key& key, uint64_t generation, const std::function<void()>& ops);
  bool refused(const Key& key) const { return refused_.count(key) != 0; }
  // Releases the recordings of cache `cache` (PagedKvCache::id), which is going away.
  void drop_cache(uint64_t cache);
  const Stats& stats() const { return stats_; }

 private:
  void drop_all();
  const Kernels* k_;
  std::map<Key, xq_graph*> graphs_;
  std::set<Key> refused_;
  uint64_t generation_ = 0;
  Stats stats_;
};

}  // namespace xquant
