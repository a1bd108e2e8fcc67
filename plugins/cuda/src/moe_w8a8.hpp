// moe_w8a8.hpp: the fused W8A8 INT8 mixture-of-experts GEMM of the cuda
// provider's moe_qmatmul (moe_w8a8_provider.cpp), sm_90a only:
//   1. moe_w8a8_sort: routing slots sorted by expert, without padding: per
//      expert the offset of its run of rows, row -> slot and slot -> row;
//   2. moe_w8a8_quantize_rows: each sorted row's activation quantized to
//      INT8 with its own per-token scale (absmax / 127), in sorted order;
//   3. moe_w8a8_grouped_gemm: one CUTLASS ptr-array grouped GEMM over all
//      experts, per-expert problem sizes and pointers built on the device,
//      y = acc * s_x[row] * s_w[n] in the epilogue (the INT32 accumulator
//      never goes to memory), rows in sorted order;
//   4. moe_w8a8_scatter_rows (rows back to slot order) or
//      moe_w8a8_combine_rows (each token's top-k rows times its router
//      weights, summed in slot order).
// This is vLLM's CUTLASS MoE scheme (csrc/quantization/cutlass_w8a8/moe/
// grouped_mm_c3x.cuh, moe_data.cu; vllm/model_executor/layers/fused_moe/
// cutlass_moe.py) for INT8. Every step is a kernel sized from the shapes, so
// the call can be recorded in a CUDA graph.
//
// Built only with the CUTLASS headers (plugins/cuda/CMakeLists.txt defines
// XQUANT_CUDA_MOE_W8A8 then); plain C++ here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace xqcuda {

// Sorts n_slots routing slots (expert_ids I32 [n_slots]) by expert: offsets
// [E + 1] (expert e's rows are [offsets[e], offsets[e+1]); offsets[E] = the
// routed rows), row_slot [n_slots] (sorted row -> slot; rows past offsets[E]
// unset) and slot_row [n_slots] (slot -> sorted row, -1 for an id outside
// [0, E)); rows within an expert in no fixed order. E <= 4096. One block up
// to 8,192 slots; past that a block per 4,096 slots, with `cursor` [E]
// device scratch.
cudaError_t moe_w8a8_sort(const int32_t* expert_ids, int64_t n_slots, int E, int32_t* offsets, int32_t* row_slot,
                          int32_t* slot_row, int32_t* cursor, cudaStream_t stream);

// q [n_slots][K] int8 and scales [n_slots]: sorted row r (< offsets[E])
// holds activation row row_slot[r] / x_div of x [rows][K] (BF16, or F16 when
// is_f16), quantized per row: scale = absmax / 127 (1 for a zero row), q =
// rint(x / scale) in [-128, 127], as quantize_act (w8a8.cu) does. K % 8 == 0,
// x 16-byte aligned. With token_scratch (moe_w8a8_token_scratch_bytes of
// n_slots / x_div tokens, 16-byte aligned; may be null) and more than 8,192
// slots, x_div > 1 and K % 16 == 0, each token is quantized once there and
// its codes copied to its rows (the same codes and scales).
cudaError_t moe_w8a8_quantize_rows(const void* x, bool is_f16, int64_t K, int64_t x_div, const int32_t* row_slot,
                                   const int32_t* offsets, int E, int64_t n_slots, int8_t* q, float* scales,
                                   void* token_scratch, cudaStream_t stream);
size_t moe_w8a8_token_scratch_bytes(int64_t n_tokens, int64_t K);

// dst[s] = ys[slot_row[s]] for every slot with slot_row[s] >= 0 (rows of N
// 16-bit elements, N % 8 == 0, 16-byte aligned); other rows untouched.
cudaError_t moe_w8a8_scatter_rows(const void* ys, int64_t N, const int32_t* slot_row, int64_t n_slots, void* dst,
                                  cudaStream_t stream);

// dst[t][n] = sum over j of weights[t][j] * ys[slot_row[t*k + j]][n] (slots
// with slot_row < 0 add nothing), F32 sums in slot order, stored BF16 (F16
// when is_f16). N % 8 == 0, 16-byte aligned rows.
cudaError_t moe_w8a8_combine_rows(const void* ys, bool is_f16, int64_t N, const int32_t* slot_row,
                                  const float* weights, int64_t T, int k, void* dst, cudaStream_t stream);

// The grouped GEMM's tile configuration (moe_w8a8_sm90.cuh): cooperative
// 128x128x128 (BF16 and F16 output) or ping-pong 64x256x128 (BF16 only; F16
// takes the cooperative one).
enum class MoeW8a8Tile : int { Coop128x128 = 0, Pingpong64x256 = 1 };

// One grouped GEMM: expert e multiplies its sorted rows a[offsets[e] ..
// offsets[e+1]) ([rows][K] int8) by w_table[e] ([N][K] int8 row-major) into
// d rows (same range, [rows][N] BF16 or F16), d = acc * sa[row] * sw_table[e][n].
struct MoeW8a8Gemm {
  int E = 0;
  int64_t N = 0, K = 0;
  const int8_t* a = nullptr;
  const float* sa = nullptr;
  const int32_t* offsets = nullptr;
  const void* const* w_table = nullptr;   // device [E]
  const void* const* sw_table = nullptr;  // device [E] of const float*
  void* d = nullptr;
  bool is_f16 = false;
  MoeW8a8Tile tile = MoeW8a8Tile::Coop128x128;
};

// Device bytes the per-call group tables take (problem sizes, pointers,
// strides) for E experts.
size_t moe_w8a8_table_bytes(int E);
// A tile configuration's name, for logs and the benchmark.
const char* moe_w8a8_config(MoeW8a8Tile t);
// Enqueue the GEMM. `tables` of moe_w8a8_table_bytes(E) device bytes;
// `workspace(ctx, bytes)` returns the CUTLASS workspace (grow-only buffer).
// cudaErrorNotSupported when CUTLASS refuses the problem (N or K not a
// multiple of 16, misaligned pointers).
cudaError_t moe_w8a8_grouped_gemm(const MoeW8a8Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                  void* workspace_ctx, int sm_count, cudaStream_t stream);

}  // namespace xqcuda
