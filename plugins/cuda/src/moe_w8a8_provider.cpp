// moe_w8a8_provider.cpp: moe_qmatmul for W8A8 INT8 experts
// (cuda-w8a8-int8-nk with dynamic per-token activation scales): sort the
// routing slots by expert, quantize each sorted row to INT8 once, one
// grouped CUTLASS GEMM over all experts with the scales in its epilogue,
// then the rows back in slot order or combined per token (moe_w8a8.hpp).
//
// XQUANT_CUDA_MOE_W8A8 picks, read at every call so one process (the
// benchmark, the tests) can compare both:
//   fused (default)  the grouped GEMM where this build and GPU have it;
//   loop             refuse (XQ_ERR_UNSUPPORTED), so the engine runs its
//                    per-expert loop of QMATMULs (engine/moe_device.cpp), the
//                    path these experts took before.
// XQUANT_CUDA_MOE_W8A8_TILE picks the grouped GEMM's tile configuration
// (moe_w8a8_sm90.cuh), also read at every call: auto (default, by tokens
// per expert, measured: tile_for below) | coop (128x128x128) |
// pingpong (64x256x128; BF16 output only, F16 stays cooperative).
#include "provider.hpp"

#include <algorithm>

#ifdef XQUANT_CUDA_MOE_W8A8
#include "moe_w8a8.hpp"
#endif

#include <cstdlib>
#include <cstring>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

[[noreturn]] void refuse(const std::string& msg) { throw Error(XQ_ERR_UNSUPPORTED, "cuda: moe_qmatmul " + msg); }

bool fused_requested() {
  const char* e = std::getenv("XQUANT_CUDA_MOE_W8A8");
  if (!e || !*e || std::strcmp(e, "fused") == 0) return true;
  if (std::strcmp(e, "loop") == 0) return false;
  throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: XQUANT_CUDA_MOE_W8A8=%s: expected fused or loop", e));
}

#ifdef XQUANT_CUDA_MOE_W8A8
// The tile configuration for `slots` routing slots over E experts of
// [N, K], from bench_moe.py's "tile configurations forced" table (H200,
// 2026-12-01, docs/cuda.md "MoE benchmark"): the ping-pong 64x256 tile is
// faster up to 64 tokens per expert on all four GEMMs (Qwen3-30B-A3B and
// Mixtral gate|up and down: 1.03-1.34x the cooperative tile), the
// cooperative 128x128 tile from 128 on (1.00-1.36x the ping-pong one).
// F16 outputs always take the cooperative tile (moe_w8a8_sm90.cu).
MoeW8a8Tile tile_for(int64_t N, int64_t slots, int E) {
  const char* e = std::getenv("XQUANT_CUDA_MOE_W8A8_TILE");
  if (e && *e && std::strcmp(e, "auto") != 0) {
    if (std::strcmp(e, "coop") == 0) return MoeW8a8Tile::Coop128x128;
    if (std::strcmp(e, "pingpong") == 0) return MoeW8a8Tile::Pingpong64x256;
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("cuda: XQUANT_CUDA_MOE_W8A8_TILE=%s: expected auto, coop or pingpong", e));
  }
  (void)N;  // both tiles won or lost at the same tokens per expert for N = 1536 ... 28672
  constexpr int64_t kPingpongMaxTpe = 96;  // measured: ping-pong at 64, cooperative at 128
  return slots <= kPingpongMaxTpe * E ? MoeW8a8Tile::Pingpong64x256 : MoeW8a8Tile::Coop128x128;
}

[[noreturn]] void invalid(const std::string& msg) {
  throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: moe_qmatmul " + msg);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

#define XQ_MOE_W8_CK(expr)                                                                            \
  do {                                                                                                \
    cudaError_t _e = (expr);                                                                          \
    if (_e != cudaSuccess)                                                                            \
      throw Error(XQ_ERR_DEVICE, format("cuda: %s failed: %s", #expr, cudaGetErrorString(_e)));      \
  } while (0)
#endif

}  // namespace

// W8 experts: all INT8 with dynamic per-token activations (one quantized
// row serves every expert the token picks; per-expert static input scales
// would need a row per expert), one [N, K], N and K multiples of 16 (TMA
// row pitches), BF16/F16 x and dst, 16-byte aligned.
void Provider::check_moe_w8a8(const xq_moe_op& op) {
  if (!fused_requested()) refuse("leaves W8A8 experts to the per-expert loop (XQUANT_CUDA_MOE_W8A8=loop)");
#ifndef XQUANT_CUDA_MOE_W8A8
  (void)op;
  refuse("runs W8A8 experts only in builds with the CUTLASS headers (scripts/fetch-cutlass.sh); this one has none");
#else
  if (cc_major_ != 9 || cc_minor_ != 0)
    refuse(format("runs W8A8 experts on sm_90 only (the grouped wgmma GEMM); this GPU is sm_%d%d", cc_major_,
                  cc_minor_));
  const xq_qweight* w0 = op.experts[0];
  for (uint32_t e = 0; e < op.n_experts; ++e) {
    const xq_qweight* w = op.experts[e];
    if (!w) invalid(format("expert %u has no weight", e));
    if (w->kind != xq_qweight::Kind::W8 || w->fp8)
      refuse(format("runs W8A8 experts only as %s; expert %u is %s", kLayoutW8, e, layout(w)));
    if (w->act != XQ_ACT_DYNAMIC_TOKEN)
      refuse(format("runs W8A8 experts with dynamic per-token activation scales only; expert %u has a static "
                    "input scale", e));
    if (w->N != w0->N || w->K != w0->K)
      invalid(format("expert %u is [%lld, %lld], expert 0 [%lld, %lld]: all experts must match", e,
                     (long long)w->N, (long long)w->K, (long long)w0->N, (long long)w0->K));
  }
  if (w0->N % 16 != 0 || w0->K % 16 != 0)
    refuse(format("runs W8A8 experts with N and K multiples of 16 (TMA row pitches); they are [%lld, %lld]",
                  (long long)w0->N, (long long)w0->K));
  if (op.x.ndim != 2 || !op.x.data || !xquant::sdk::is_contiguous(op.x) ||
      (op.x.dtype != XQ_DTYPE_BF16 && op.x.dtype != XQ_DTYPE_F16))
    refuse("takes contiguous 2-D BF16 or F16 activations x");
  if (!aligned16(op.x.data) || !aligned16(op.dst.data))
    refuse("takes W8A8 experts with 16-byte aligned x and dst");
  check_moe_operands(op, w0->K, w0->N);
#endif
}

void Provider::moe_w8a8(const xq_moe_op& op) {
#ifndef XQUANT_CUDA_MOE_W8A8
  (void)op;
  refuse("has no W8A8 path in this build");
#else
  const xq_qweight& w0 = *op.experts[0];
  const int E = static_cast<int>(op.n_experts), k = static_cast<int>(op.top_k);
  const int64_t T = op.expert_ids.shape[0], slots = T * k, N = w0.N, K = w0.K;
  if (T == 0) return;
  const bool is_f16 = op.x.dtype == XQ_DTYPE_F16;
  const int64_t x_div = op.x.shape[0] == slots ? 1 : k;  // [T, K]: slot s reads token s / top_k
  const MoeW8a8Tile tile = tile_for(N, slots, E);          // before any launch: it may refuse the env

  // Buffers sized from the shapes alone (recordable): the sort, the INT8
  // rows and their scales, the GEMM's rows in sorted order.
  // offsets [E + 1], then the sort's cursor [E]
  auto* offsets = static_cast<int32_t*>(s_moe_blocks_.get(static_cast<size_t>(2 * E + 1) * 4));
  auto* row_slot = static_cast<int32_t*>(s_moe_sorted_.get(static_cast<size_t>(slots) * 8));
  int32_t* slot_row = row_slot + slots;
  auto* aq = static_cast<int8_t*>(s_x_.get(static_cast<size_t>(slots * K)));
  auto* sa = static_cast<float*>(s_scale_.get(static_cast<size_t>(slots) * 4));
  // The GEMM's output rows; before the GEMM, the tokens' INT8 rows when each
  // is quantized once (moe_w8a8_quantize_rows), which the gather has read
  // by then (one stream).
  void* ys =
      s_moe_y_.get(std::max(static_cast<size_t>(slots * N) * 2, moe_w8a8_token_scratch_bytes(slots / x_div, K)));
  XQ_MOE_W8_CK(moe_w8a8_sort(static_cast<const int32_t*>(op.expert_ids.data), slots, E, offsets, row_slot, slot_row,
                             offsets + E + 1, stream_));
  XQ_MOE_W8_CK(
      moe_w8a8_quantize_rows(op.x.data, is_f16, K, x_div, row_slot, offsets, E, slots, aq, sa, ys, stream_));

  std::vector<const void*> ptrs(2 * static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) {
    ptrs[e] = op.experts[e]->w8;
    ptrs[E + e] = op.experts[e]->sw;
  }
  const void* const* table = moe_pointer_table(std::move(ptrs));
  MoeW8a8Gemm g;
  g.E = E;
  g.N = N;
  g.K = K;
  g.a = aq;
  g.sa = sa;
  g.offsets = offsets;
  g.w_table = table;
  g.sw_table = table + E;
  g.d = ys;
  g.is_f16 = is_f16;
  g.tile = tile;
  void* tables = s_part_.get(moe_w8a8_table_bytes(E));
  const cudaError_t e = moe_w8a8_grouped_gemm(
      g, tables, [](void* s, size_t n) { return static_cast<Scratch*>(s)->get(n); }, &s_ws_, sm_count_, stream_);
  if (e != cudaSuccess)
    throw Error(XQ_ERR_DEVICE, format("cuda: moe_qmatmul W8A8 grouped GEMM (%s) [%d experts, N=%lld, K=%lld, %lld "
                                      "slots] failed: %s",
                                      moe_w8a8_config(g.tile), E, (long long)N, (long long)K, (long long)slots,
                                      cudaGetErrorString(e)));
  if (op.weights.data)
    XQ_MOE_W8_CK(moe_w8a8_combine_rows(ys, is_f16, N, slot_row, static_cast<const float*>(op.weights.data), T, k,
                                       op.dst.data, stream_));
  else
    XQ_MOE_W8_CK(moe_w8a8_scatter_rows(ys, N, slot_row, slots, op.dst.data, stream_));
#endif
}

}  // namespace xqcuda
