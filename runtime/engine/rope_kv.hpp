// rope_kv.hpp: the XQ_OP_ROPE_KV op of a device decode step (rope_kv.cpp).
// On the contiguous cache one op replaces five per layer and sequence:
// CONVERT (q), ROPE (q), the K and V appends, ROPE (k); on the paged cache
// six per layer: CONVERT and ROPE of q and k, two KV_WRITEs; with Qwen3's
// q/k norms two RMS_NORMs more (docs/engine.md, "Device decode path").
// XQUANT_ROPE_KV=0 keeps the separate ops.
#pragma once

#include <xquant/xq_kernel.h>

#include "checkpoint/architecture.hpp"

namespace xquant {

// Whether the engine may use ROPE_KV (XQUANT_ROPE_KV is not "0").
bool rope_kv_enabled();

// What a ROPE_KV op may take beyond q|k|v rows, positions and caches.
struct RopeKvExtras {
  const int32_t* cache_rows = nullptr;  // [rows] device: the K/V row each row writes (paged slots); null: its position
  const float* factors = nullptr;       // llama3 frequency divisors F32 [D/2], or null
  const float* q_norm = nullptr;        // Qwen3's q_norm / k_norm weights F32 [D] (both or neither); the op
  const float* k_norm = nullptr;        // then carries no factors, so the caller passes one or the other
  double eps = 0.0;
};

// The op for `rows` q|k|v rows (dtype qkv_t, contiguous, starting at `qkv`)
// at device positions `pos`: q [normed and] rotated into `q` (F32 [rows, H,
// D]), k [normed,] rotated and v into rows pos[t] (or cache_rows[t]) of the
// caches `k_cache` / `v_cache`: contiguous [S, KVH, D] caches or the paged
// pools [NB, BS, KVH, D] (viewed as NB * BS rows), F32 or BF16.
xq_op rope_kv_op(const Architecture& a, xq_dtype qkv_t, int64_t rows, const void* qkv, const int32_t* pos, float* q,
                 const xq_device_tensor& k_cache, const xq_device_tensor& v_cache, const RopeKvExtras& extras);

}  // namespace xquant
