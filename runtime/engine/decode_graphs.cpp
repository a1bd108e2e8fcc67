// decode_graphs.cpp: the per-bucket decode recordings (decode_graphs.hpp).
#include "engine/decode_graphs.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <algorithm>

namespace xquant {

namespace {
// Batch sizes past this run eagerly: at 512 rows a step's kernels dwarf its
// launches, and every bucket's recording holds its own kernel nodes.
constexpr int64_t kMaxBucketRows = 512;

int64_t next_pow2(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}
}  // namespace

int64_t DecodeGraphs::bucket_rows(int64_t rows) { return rows <= kMaxBucketRows ? next_pow2(rows) : 0; }

int64_t DecodeGraphs::bucket_table_ld(int64_t blocks) { return 1 + next_pow2(std::max<int64_t>(blocks, 1)); }

void DecodeGraphs::drop_all() {
  for (auto& [key, g] : graphs_) k_->graph_release(g);
  stats_.dropped += graphs_.size();
  graphs_.clear();
}

void DecodeGraphs::drop_cache(uint64_t cache) {
  for (auto it = graphs_.begin(); it != graphs_.end();) {
    if (it->first.cache != cache) {
      ++it;
      continue;
    }
    k_->graph_release(it->second);
    ++stats_.dropped;
    it = graphs_.erase(it);
  }
  std::erase_if(refused_, [cache](const Key& k) { return k.cache == cache; });
}

xq_graph* DecodeGraphs::find(const Key& key, uint64_t generation) {
  if (generation != generation_) {
    drop_all();
    refused_.clear();
    generation_ = generation;
  }
  auto it = graphs_.find(key);
  return it == graphs_.end() ? nullptr : it->second;
}

void DecodeGraphs::launch(xq_graph* g) {
  k_->graph_launch(g);
  ++stats_.replayed;
}

void DecodeGraphs::record(const Key& key, uint64_t generation, const std::function<void()>& ops) {
  if (generation != generation_) find(key, generation);
  std::string why, end_why;
  xq_graph* g = nullptr;
  bool begun = false;
  try {
    k_->graph_begin();
    begun = true;
    ops();
  } catch (const std::exception& e) {
    why = e.what();
  }
  if (begun) g = k_->graph_end(&end_why);
  if (!why.empty() && g) {
    k_->graph_release(g);
    g = nullptr;
  }
  if (!g) {
    if (refused_.empty())
      logger().warn("decode steps run without graphs on '{}': {}", k_->name(), why.empty() ? end_why : why);
    refused_.insert(key);
    ++stats_.refused;
    return;
  }
  graphs_[key] = g;
  ++stats_.recorded;
}

}  // namespace xquant
