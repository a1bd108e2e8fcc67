// split_k_plan.hpp: how many key splits a split-K ("flash-decoding",
// https://crfm.stanford.edu/2023/10/12/flashdecoding.html) attention launch
// uses, and the keys and workspace each split gets. One rule for both
// instantiations of split_k_attention.cuh: ATTENTION over a contiguous cache
// (decode_attention.cu) and PAGED_ATTENTION over block tables
// (paged_attention.cu). Plain C++, so host code and tests can call it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace xqcuda {

// Keys one warp scores at a time (one per lane): a split holds whole tiles.
constexpr int64_t kSplitKTile = 32;
// The merge kernel walks every split of a row serially; past this many the
// walk costs more than the extra CTAs win.
constexpr int64_t kSplitKMaxSplits = 64;

// Rows of at most this many keys get one split (one launch, no merge): one
// 32-key tile per warp of the CTA, the same work per warp as one tile per
// split, without the partials' round trip and the merge kernel (on an H200,
// one row at 128 keys: 10.2 us against 13.2 us with 4 splits and the merge).
constexpr int64_t kSplitKFewKeys = 128;
// One-pass launches keep one arrival counter per (row, kv head) in a
// fixed device array (split_k_attention.cuh); launches with more CTAs per
// split than this take the two-kernel path.
constexpr int64_t kSplitKMaxTickets = int64_t{1} << 16;

// How a launch ends, from XQUANT_DECODE_ATTENTION_ONE_PASS (read per call).
// Unset or "1" (the default): few keys keep one split (kSplitKFewKeys) and
// split launches are merged in the same launch by the last CTA of each row
// (measured on an H200, docs/cuda.md: 1.17-1.22x the merge kernel for one row
// at 1024-4096 keys, 0.99-1.01x for 8 rows); "2" the same few-keys rule with
// a second merge kernel (the previous default); "0" the rule before that: no
// few-keys case, a second kernel for every split launch. "2" and "0" stay for
// same-run comparisons.
enum class SplitKEnding { kFewKeysOneSplit, kLastCtaMerges, kPrevious };
inline SplitKEnding split_k_ending() {
  const char* e = std::getenv("XQUANT_DECODE_ATTENTION_ONE_PASS");
  if (e && e[0] == '2' && e[1] == 0) return SplitKEnding::kFewKeysOneSplit;
  if (e && e[0] == '0' && e[1] == 0) return SplitKEnding::kPrevious;
  return SplitKEnding::kLastCtaMerges;
}
inline bool split_k_few_keys_one_split() { return split_k_ending() != SplitKEnding::kPrevious; }
inline bool split_k_last_cta_merges() { return split_k_ending() == SplitKEnding::kLastCtaMerges; }

// Which kernel a split launch with BF16 K/V runs, from
// XQUANT_DECODE_ATTENTION_KERNEL (read per call). Unset or "auto" (the
// default): the dim-lanes kernel (a key's head dimension over D / 8 lanes,
// split_k_dim_lanes.cuh) where the shape allows it, its wide size where the
// launch's CTAs fit one wave of it, past that its narrow size (GQA groups up
// to 4) or the key-per-lane kernel (split_k_attention.cuh; groups above 4);
// split_k_launch.cuh says why. "dim-lanes" forces the wide size,
// "dim-lanes-narrow" the narrow one (the wide one for groups above 4), and
// "key-per-lane" the first kernel wherever the shape allows each. F32 K/V,
// D other than 64 or 128 and groups above 8 always take key-per-lane.
enum class SplitKKernel { kAuto, kDimLanes, kDimLanesNarrow, kKeyPerLane };
inline SplitKKernel split_k_kernel_wanted() {
  const char* e = std::getenv("XQUANT_DECODE_ATTENTION_KERNEL");
  const std::string_view v = e ? e : "";
  if (v == "dim-lanes") return SplitKKernel::kDimLanes;
  if (v == "dim-lanes-narrow") return SplitKKernel::kDimLanesNarrow;
  if (v == "key-per-lane") return SplitKKernel::kKeyPerLane;
  return SplitKKernel::kAuto;
}

// CTAs the split rule aims for, in multiples of the SM count:
// XQUANT_SPLIT_K_WAVES (read per call, 1..32), default 2. A CTA is 4 warps
// and a warp's tile is mostly memory latency, so more waves put more loads
// in flight where rows x keys allow (8 rows at 4096 keys: 5 splits of ~26
// tiles at 2 waves); left at 2 until a same-run timing says otherwise.
inline int64_t split_k_waves() {
  const char* e = std::getenv("XQUANT_SPLIT_K_WAVES");
  const long w = e ? std::strtol(e, nullptr, 10) : 2;
  return w >= 1 && w <= 32 ? w : 2;
}

// Keys per split for `splits` splits of `max_keys` (the most keys any row
// sees), rounded up to whole tiles.
inline int64_t split_k_keys_per_split(int64_t max_keys, int splits) {
  if (max_keys < 1 || splits < 1) return kSplitKTile;
  const int64_t per = (max_keys + splits - 1) / splits;
  return (per + kSplitKTile - 1) / kSplitKTile * kSplitKTile;
}

// Splits for a launch of `ctas` CTAs per split (rows x kv heads) over rows
// that see at most `max_keys` keys, on a device of `sm_count` SMs: enough
// CTAs to cover the chip twice (split_k_waves), down to one 32-key tile per split. A decode
// step has few rows, so its keys are what can be spread; a long prompt chunk
// already fills the chip and keeps one split. With `few_keys_one_split`,
// rows of at most kSplitKFewKeys keys keep one split too. The count returned
// is the one split_k_keys_per_split leaves non-empty.
inline int split_k_splits(int64_t ctas, int64_t max_keys, int sm_count,
                          bool few_keys_one_split = split_k_few_keys_one_split()) {
  if (ctas <= 0 || max_keys <= 0) return 1;
  if (few_keys_one_split && max_keys <= kSplitKFewKeys) return 1;
  const int64_t want = (split_k_waves() * static_cast<int64_t>(sm_count) + ctas - 1) / ctas;
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
