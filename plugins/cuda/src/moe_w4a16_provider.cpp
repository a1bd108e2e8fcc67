// moe_w4a16_provider.cpp: moe_qmatmul for W4A16 experts with many tokens per
// expert on sm_90: sort the routing slots by expert, gather each expert's
// rows, one grouped CUTLASS mixed-input GEMM over all experts on their
// `cuda-w4a16-wgmma` copies, then the rows back in slot order or combined
// per token (moe_w4a16_grouped.hpp). Few tokens per expert stay on the
// mma.sync kernel (moe_provider.cpp), which reads each weight once for up to
// 64 tokens and wins there; the switch point is measured
// (docs/cuda.md, "MoE benchmark").
//
// XQUANT_CUDA_MOE_W4, read at every call so one process (the benchmark, the
// tests) can compare both:
//   auto (default)  the grouped GEMM from XQUANT_CUDA_MOE_W4_GROUPED_MIN_TPE
//                   routing slots per expert on average, where this build and
//                   GPU have it; without that variable from 48
//                   (kMoeW4GroupedMinTpe), from 32 for experts of K <= 1024,
//                   from 1 for experts of K >= 8192 (measured, below);
//   fused           always the mma.sync kernel;
//   grouped         always the grouped GEMM; refused (XQ_ERR_UNSUPPORTED,
//                   naming why) where it cannot run.
#include "provider.hpp"

#if defined(XQUANT_CUDA_MOE_W4_GROUPED) && defined(XQUANT_CUDA_MOE_W8A8)
#include "moe_w4a16_grouped.hpp"
#include "moe_w8a8.hpp"
#define XQ_HAVE_MOE_W4_GROUPED 1
#endif

#include <cstdlib>
#include <cstring>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

// Mean routing slots per expert from which `auto` takes the grouped GEMM,
// by the experts' depth K (input columns), from bench_moe.py on an H100 with
// the 32-token tile (2026-12-05, session forty; bench/cuda/results/
// h100-moe-t32-s40.md; docs/cuda.md "MoE benchmark"), grouped / mma.sync us:
//  - K >= 8192 (Mixtral down_proj, K = 14336): the grouped GEMM leads from 4
//    slots per expert (134.9 / 162.5; 137.3 / 215.9 at 16): from 1 (fewer
//    slots than experts, decode's, stay on the mma.sync kernel: not measured);
//  - K <= 1024 (Qwen3-30B-A3B down_proj, K = 768): from 32 (107.1 / 124.2;
//    98.6 / 82.8 at 16);
//  - between (Qwen3 gate|up, K = 2048; Mixtral gate|up, K = 4096): from 48
//    (184.6 / 244.7 and 340.6 / 512.0 at 48; at 32 156.3 / 148.7 and
//    276.0 / 285.0, a tie at best).
constexpr int64_t kMoeW4GroupedMinTpe = 48;
constexpr int64_t kMoeW4GroupedShallowK = 1024;  // experts this shallow take it from kMoeW4GroupedShallowKMinTpe
constexpr int64_t kMoeW4GroupedShallowKMinTpe = 32;
constexpr int64_t kMoeW4GroupedDeepK = 8192;  // experts this deep take it from kMoeW4GroupedDeepKMinTpe
constexpr int64_t kMoeW4GroupedDeepKMinTpe = 1;

enum class MoeW4Mode { Auto, Fused, Grouped };

MoeW4Mode mode_from_env() {
  const char* e = std::getenv("XQUANT_CUDA_MOE_W4");
  if (!e || !*e || std::strcmp(e, "auto") == 0) return MoeW4Mode::Auto;
  if (std::strcmp(e, "fused") == 0) return MoeW4Mode::Fused;
  if (std::strcmp(e, "grouped") == 0) return MoeW4Mode::Grouped;
  throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: XQUANT_CUDA_MOE_W4=%s: expected auto, fused or grouped", e));
}

// The variable, or the measured default for experts of K input columns.
int64_t min_tpe_for(int64_t K) {
  const char* e = std::getenv("XQUANT_CUDA_MOE_W4_GROUPED_MIN_TPE");
  if (!e || !*e)
    return K >= kMoeW4GroupedDeepK      ? kMoeW4GroupedDeepKMinTpe
           : K <= kMoeW4GroupedShallowK ? kMoeW4GroupedShallowKMinTpe
                                        : kMoeW4GroupedMinTpe;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  if (*end || v < 1)
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("cuda: XQUANT_CUDA_MOE_W4_GROUPED_MIN_TPE=%s: expected a positive integer", e));
  return v;
}

#ifdef XQ_HAVE_MOE_W4_GROUPED
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// XQUANT_CUDA_MOE_W4_TILE = 32 | 64 | 128 forces the grouped GEMM's token
// tile (for A/B runs, bench/cuda/bench_moe.py); unset or `auto`: by the mean
// slots per expert (tile_for below).
MoeW4Tile tile_for(int64_t slots, int64_t E) {
  const char* e = std::getenv("XQUANT_CUDA_MOE_W4_TILE");
  if (e && *e && std::strcmp(e, "auto") != 0) {
    if (std::strcmp(e, "32") == 0) return MoeW4Tile::T32;
    if (std::strcmp(e, "64") == 0) return MoeW4Tile::T64;
    if (std::strcmp(e, "128") == 0) return MoeW4Tile::T128;
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("cuda: XQUANT_CUDA_MOE_W4_TILE=%s: expected auto, 32, 64 or 128", e));
  }
  // The smallest tile the mean expert fits: fewer padded tokens per weight
  // tile below 64, fewer weight re-reads per token above.
  if (slots <= 32 * E) return MoeW4Tile::T32;
  return slots <= 64 * E ? MoeW4Tile::T64 : MoeW4Tile::T128;
}

#define XQ_MOE_W4G_CK(expr)                                                                           \
  do {                                                                                                \
    cudaError_t _e = (expr);                                                                          \
    if (_e != cudaSuccess)                                                                            \
      throw Error(XQ_ERR_DEVICE, format("cuda: %s failed: %s", #expr, cudaGetErrorString(_e)));      \
  } while (0)
#endif

}  // namespace

// Why the grouped GEMM cannot take these (already checked) W4A16 experts,
// or null when it can.
const char* Provider::moe_w4a16_grouped_refusal(const xq_moe_op& op) const {
#ifndef XQ_HAVE_MOE_W4_GROUPED
  (void)op;
  return "this build has no CUTLASS headers (scripts/fetch-cutlass.sh), so no grouped W4A16 GEMM";
#else
  if (!w4_hopper_ok_) return "the grouped W4A16 GEMM runs on sm_90 only (or XQUANT_CUDA_W4_HOPPER=0 turned it off)";
  if (op.x.dtype != XQ_DTYPE_BF16) return "the grouped W4A16 GEMM takes BF16 activations only";
  for (uint32_t e = 0; e < op.n_experts; ++e)
    if (!op.experts[e]->hq)
      return "an expert has no cuda-w4a16-wgmma copy (N % 16, K % 64, group K or a multiple of 64, N*K < 2^31; "
             "not for adopted weights)";
  if (!aligned16(op.x.data) || !aligned16(op.dst.data)) return "the grouped W4A16 GEMM takes 16-byte aligned x and dst";
  return nullptr;
#endif
}

bool Provider::moe_w4a16_grouped(const xq_moe_op& op) {
  const MoeW4Mode mode = mode_from_env();
  if (mode == MoeW4Mode::Fused) return false;
  const int64_t T = op.expert_ids.shape[0], slots = T * op.top_k, E = op.n_experts;
  if (mode == MoeW4Mode::Auto && slots / E < min_tpe_for(op.experts[0]->K)) return false;
  if (const char* why = moe_w4a16_grouped_refusal(op)) {
    if (mode == MoeW4Mode::Auto) return false;
    throw Error(XQ_ERR_UNSUPPORTED, format("cuda: moe_qmatmul XQUANT_CUDA_MOE_W4=grouped: %s", why));
  }
#ifndef XQ_HAVE_MOE_W4_GROUPED
  return false;
#else
  if (T == 0) return true;
  const xq_qweight& w0 = *op.experts[0];
  const int k = static_cast<int>(op.top_k);
  const int64_t N = w0.N, K = w0.K;
  const int64_t x_div = op.x.shape[0] == slots ? 1 : k;  // [T, K]: slot s reads token s / top_k

  // Buffers sized from the shapes alone (recordable).
  // offsets [E + 1], then the sort's cursor [E]
  auto* offsets = static_cast<int32_t*>(s_moe_blocks_.get(static_cast<size_t>(2 * E + 1) * 4));
  auto* row_slot = static_cast<int32_t*>(s_moe_sorted_.get(static_cast<size_t>(slots) * 8));
  int32_t* slot_row = row_slot + slots;
  void* xs = s_x_.get(static_cast<size_t>(slots * K) * 2);
  void* ys = s_moe_y_.get(static_cast<size_t>(slots * N) * 2);
  XQ_MOE_W4G_CK(moe_w8a8_sort(static_cast<const int32_t*>(op.expert_ids.data), slots, static_cast<int>(E), offsets,
                              row_slot, slot_row, offsets + E + 1, stream_));
  XQ_MOE_W4G_CK(moe_w4a16_gather_rows(op.x.data, K, x_div, row_slot, offsets, static_cast<int>(E), slots, xs, stream_));

  // Codes | scales | offsets pointers, each list starting 16-byte aligned:
  // CUTLASS encodes a TMA descriptor on the host from each list's address
  // (the collective's to_underlying_arguments), and TMA takes only 16-byte
  // aligned bases, so an odd expert count is padded by one entry.
  const int64_t E2 = (E + 1) / 2 * 2;
  std::vector<const void*> ptrs(3 * static_cast<size_t>(E2), nullptr);
  for (int64_t e = 0; e < E; ++e) {
    ptrs[e] = op.experts[e]->hq;
    ptrs[E2 + e] = op.experts[e]->hs;
    ptrs[2 * E2 + e] = op.experts[e]->hz;
  }
  const void* const* table = moe_pointer_table(std::move(ptrs));
  MoeW4Gemm g;
  g.E = static_cast<int>(E);
  g.N = N;
  g.K = K;
  g.group_size = w0.HL.group_size;
  g.xs = xs;
  g.offsets = offsets;
  g.hq_table = table;
  g.hs_table = table + E2;
  g.hz_table = table + 2 * E2;
  g.y = ys;
  g.tile = tile_for(slots, E);
  void* tables = s_part_.get(moe_w4a16_table_bytes(g.E));
  const cudaError_t e = moe_w4a16_grouped_gemm(
      g, tables, [](void* s, size_t n) { return static_cast<Scratch*>(s)->get(n); }, &s_ws_, sm_count_, stream_);
  if (e != cudaSuccess)
    throw Error(XQ_ERR_DEVICE, format("cuda: moe_qmatmul W4A16 grouped GEMM (%s) [%lld experts, N=%lld, K=%lld, "
                                      "group %lld, %lld slots] failed: %s",
                                      moe_w4a16_tile_name(g.tile), (long long)E, (long long)N, (long long)K,
                                      (long long)g.group_size, (long long)slots, cudaGetErrorString(e)));
  if (op.weights.data)
    XQ_MOE_W4G_CK(moe_w8a8_combine_rows(ys, false, N, slot_row, static_cast<const float*>(op.weights.data), T, k,
                                        op.dst.data, stream_));
  else
    XQ_MOE_W4G_CK(moe_w8a8_scatter_rows(ys, N, slot_row, slots, op.dst.data, stream_));
  return true;
#endif
}

}  // namespace xqcuda
