// split_k_plan.hpp: how many key splits a split-K ("flash-decoding",
// https://crfm.stanford.edu/2023/10/12/flashdecoding.html) attention launch
// uses, and the keys and workspace each split gets. One rule for both
// instantiations of split_k_attention.cuh: ATTENTION over a contiguous cache
// (decode_attention.cu) and PAGED_ATTENTION over block tables
// (paged_attention.cu). Plain C++, so host code and tests can call it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xqcuda {

// Keys one warp scores at a time (one per lane): a split holds whole tiles.
constexpr int64_t kSplitKTile = 32;
// The merge kernel walks every split of a row serially; past this many the
// walk costs more than the extra CTAs win.
constexpr int64_t kSplitKMaxSplits = 64;

// Keys per split for `splits` splits of `max_keys` (the most keys any row
// sees), rounded up to whole tiles.
inline int64_t split_k_keys_per_split(int64_t max_keys, int splits) {
  if (max_keys < 1 || splits < 1) return kSplitKTile;
  const int64_t per = (max_keys + splits - 1) / splits;
  return (per + kSplitKTile - 1) / kSplitKTile * kSplitKTile;
}

// Splits for a launch of `ctas` CTAs per split (rows x kv heads) over rows
// that see at most `max_keys` keys, on a device of `sm_count` SMs: enough
// CTAs to cover the chip twice, down to one 32-key tile per split. A decode
// step has few rows, so its keys are what can be spread; a long prompt chunk
// already fills the chip and keeps one split. The count returned is the one
// split_k_keys_per_split leaves non-empty.
inline int split_k_splits(int64_t ctas, int64_t max_keys, int sm_count) {
  if (ctas <= 0 || max_keys <= 0) return 1;
  const int64_t want = (2 * static_cast<int64_t>(sm_count) + ctas - 1) / ctas;
  const int64_t tiles = (max_keys + kSplitKTile - 1) / kSplitKTile;
  int64_t s = want < tiles ? want : tiles;
  if (s < 1) s = 1;
  if (s > kSplitKMaxSplits) s = kSplitKMaxSplits;
  const int64_t per = split_k_keys_per_split(max_keys, static_cast<int>(s));
  return static_cast<int>((max_keys + per - 1) / per);
}

// F32 workspace of a launch with `splits` > 1: per (row, head, split) an
// accumulator of D floats and its (max, sum); 0 for one split.
inline size_t split_k_workspace(int64_t T, int64_t H, int64_t D, int splits) {
  if (splits <= 1) return 0;
  return static_cast<size_t>(T * H * splits) * static_cast<size_t>(D + 2) * sizeof(float);
}

}  // namespace xqcuda
