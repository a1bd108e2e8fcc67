// Attention of one query position for one KV head's group of query heads
// (decode and short chunks): the scores of the group's G heads against each
// key row read once, a softmax per head, then each value row read once into
// the G outputs. The cpu provider's ATTENTION (T < 16) and PAGED_ATTENTION
// both run it; they differ only in where the key and value rows lie (one run
// of rows for a contiguous cache, one run per block for a paged one).
//
// Before it, each query head walked all keys on its own (4-wide partial sums
// in one op, a serial dot in the other), so a GQA group of G heads read every
// K and V row G times. Measured, the step did not get faster on SmolLM2 (G =
// 3) and 2-3% faster on Qwen2.5-1.5B (G = 6): at a few hundred tokens the
// attention is bound by the F32 cache's bytes (docs/engine.md, "Decode
// attention").
#pragma once

#include <cstdint>

namespace xquant::cpu {

// `count` consecutive key positions whose K row i is k + i * stride and V row
// v + i * stride (floats).
struct KeyRun {
  const float* k;
  const float* v;
  int64_t count;
};

// q: the group's G query rows of D floats, side by side (heads kh G .. kh G +
// G - 1 of a [H, D] row); out: G rows of D the same way. The keys are the
// runs' rows in order (n_keys in all). scratch: G * n_keys floats. Every
// query head's result depends on its own row, the keys and D alone (not on G,
// the runs' split or the thread count); the instruction set changes only the
// order of the float sums (8 lanes with AVX2, 4 without).
void decode_attention_group(const float* q, int64_t G, int64_t D, float scale, const KeyRun* runs, int64_t n_runs,
                            int64_t stride, float* scratch, float* out);

// The same with the vector width forced: lanes 4 (SSE2) or 8 (AVX2; false,
// nothing written, where the CPU lacks it). For the tests of each path.
bool decode_attention_group_lanes(int lanes, const float* q, int64_t G, int64_t D, float scale, const KeyRun* runs,
                                  int64_t n_runs, int64_t stride, float* scratch, float* out);

}  // namespace xquant::cpu
