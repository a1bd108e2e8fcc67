// rope_kv.hpp: the XQ_OP_ROPE_KV op of a contiguous-cache decode step
// (rope_kv.cpp). One op replaces five per layer and sequence: CONVERT (q),
// ROPE (q), the K and V appends, ROPE (k) (docs/engine.md, "Device decode
// path"). XQUANT_ROPE_KV=0 keeps the five.
#pragma once

#include <xquant/xq_kernel.h>

#include "checkpoint/architecture.hpp"

namespace xquant {

// Whether the engine may use ROPE_KV (XQUANT_ROPE_KV is not "0").
bool rope_kv_enabled();

// The op for `rows` q|k|v rows (dtype qkv_t, contiguous, starting at
// `qkv`) of one sequence at device positions `pos`: q rotated into `q`
// (F32 [rows, H, D]), k rotated and v into rows pos[t] of the F32 K/V caches
// `k_cache` / `v_cache` (each [cache_rows, KVH, D]). `factors`: the llama3
// frequency divisors (F32 [D/2]) or null.
xq_op rope_kv_op(const Architecture& a, xq_dtype qkv_t, int64_t rows, const void* qkv, const int32_t* pos, float* q,
                 float* k_cache, float* v_cache, int64_t cache_rows, const float* factors);

}  // namespace xquant
