// rope_kv.hpp: XQ_OP_ROPE_KV on cuda, the decode-step tail of a q|k|v GEMM
// in one launch (docs/abi.md): q converted to F32 and rotated, k rotated and
// v copied into the K/V cache rows at each row's position (or paged slot),
// with Qwen3's q/k RMS norms first where given.
//
// The engine's contiguous decode step used to run five launches per layer
// for this: CONVERT (q), ROPE (q), CONVERT (K append), CONVERT (V append),
// ROPE (k); each a few hundred threads of work and a launch of its own (the
// paged step six: CONVERT and ROPE of q and k, two KV_WRITEs; Qwen3 two
// RMS_NORMs more). The
// rotation is the one decoder_ops.cu's rope_kernel computes, term for term,
// but each thread computes its pair's angle once and applies it to every
// head of its CTA instead of once per (head, pair).
#pragma once

#include <xquant/xq_kernel.h>

#include <string>

#include "kernels.hpp"

namespace xqcuda {

struct RopeKvArgs {
  const void* qkv = nullptr;  // [T, (H + 2 KVH) D], rows `ld` elements apart
  DType qkv_type = DType::F32;
  int64_t ld = 0;
  int64_t T = 0, H = 0, KVH = 0, D = 0;
  const int32_t* pos = nullptr;         // [T]
  const int32_t* cache_rows = nullptr;  // [T] the K/V row each t writes (paged slots), or null: pos
  float* q = nullptr;                   // [T, H, D] F32
  void* k_cache = nullptr;              // [S, KVH, D] of cache_type
  void* v_cache = nullptr;              // [S, KVH, D] of cache_type
  DType cache_type = DType::F32;        // F32 or BF16
  int64_t S = 0;
  bool neox = true;
  int64_t rot = 0;  // rotary dims (even, <= D)
  float base = 10000.f, pos_scale = 1.f;
  const float* factors = nullptr;  // [rot / 2] or null
  const float* q_norm = nullptr;   // [D] Qwen3's per-head RMS norm weights, or null
  const float* k_norm = nullptr;   // [D], set with q_norm
  float eps = 0.f;
};

cudaError_t rope_kv(const RopeKvArgs& a, cudaStream_t stream);

// The xq_op front end (one check for supports_op and run_op).
bool check_rope_kv_op(const xq_op& op, std::string* why);
void run_rope_kv_op(const xq_op& op, cudaStream_t stream);

}  // namespace xqcuda
