// cpu.hpp: shared declarations of the `cpu` kernel provider.
//
// The provider's device memory is host memory, so a device tensor's data is a
// plain pointer. Every op validates its operands in one place (`check_*`),
// used both by supports_op (which must be honest) and by run_op (which must
// never run on operands it would mis-read). Only contiguous row-major tensors
// are accepted: the engine allocates every activation contiguously, and
// refusing strided views keeps every kernel simple and verifiable.
#pragma once

#include <xquant/sdk/cpu_layout.hpp>
#include <xquant/sdk/host.hpp>
#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_kernel.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace xquant::cpu {
struct QKernels;
struct QGemmKernels;
struct GemvRowsKernels;
struct BlockWeight;
}

// The provider's prepared quantized weight, packed as its kernels stream it
// (the layout "cpu.int-blocks.v1", sdk/include/xquant/sdk/cpu_layout.hpp, and
// qkernels.hpp): columns permuted so every group is a contiguous column range
// (identity unless the canonical tensor had act-order g_idx), each group
// padded with zero codes to whole 32-column blocks, codes packed two per byte
// (bits <= 4) or one per byte (bits 5..8), f32 scales and zero points per
// row and group. codes/scales/zeros point either into `owned` (packed at
// prepare) or into bytes a container stored in this layout (adopt: read in
// place, borrowed until release).
struct xq_qweight {
  int64_t rows = 0, cols = 0, n_groups = 0;
  uint32_t bits = 0;
  bool int4 = false;                 // two codes per byte (else one signed byte per code)
  int64_t padded_cols = 0;           // columns per row after padding each group to whole blocks
  int64_t row_bytes = 0;             // bytes of codes per row: padded_cols / 2 or padded_cols
  const uint8_t* codes = nullptr;    // [rows * row_bytes], or NULL once only codes8 + codes_tail hold them
  const float* scales = nullptr;     // [rows * n_groups]
  const float* zeros = nullptr;      // [rows * n_groups] or NULL (symmetric)
  std::vector<int64_t> group_begin;  // [n_groups + 1] column ranges (permuted order, unpadded)
  std::vector<int64_t> block_begin;  // [n_groups + 1] 32-column block ranges (padded order)
  std::vector<int32_t> perm;         // permuted column j reads input column perm[j]; empty = identity
  xq_act_scheme act_scheme = XQ_ACT_NONE;
  bool act_fp8 = false;              // W4AFP8: activations rounded to E4M3 per token, then the weight-only kernels
  float input_scale = 0.0f;
  const xquant::cpu::QKernels* kernels = nullptr;  // chosen at prepare (qkernels_dispatch.cpp)
  const xquant::cpu::QGemmKernels* gemm_kernels = nullptr;  // prefill kernels, same ISA (qgemm_kernels.hpp)
  const xquant::cpu::GemvRowsKernels* gemv_rows = nullptr;  // the same ISA's row-range q8 GEMV (qgemv_rows.hpp)
  bool gemv_q8 = false;              // weight-only decode quantizes activations per 32-block
  int64_t gemv_max_rows = 4;         // weight-only calls with at most this many rows use the fused GEMV
  bool prefill_int8 = false;         // weight-only calls with more rows: int8 tiles (else dequantize + SGEMM)
  bool w8a8_prefill_sgemm = false;   // W8A8 calls with more rows: int8 images x dequantized rows by SGEMM
  bool adopted = false;              // codes/scales/zeros are a container's stored bytes
  // INT4 weight-only decode's copy with every eight rows interleaved, made at
  // prepare time (qgemv_rows8.hpp, XQUANT_CPU_GEMV_ROWS8=interleaved), or empty.
  std::vector<uint8_t> codes8;
  std::vector<float> scales8;
  // With codes8, the packed codes themselves are dropped (qweight_codes.hpp)
  // except the rows after the last whole group of eight, kept here row-major.
  std::vector<uint8_t> codes_tail;
  xquant::sdk::cpu_layout::Packed owned;  // the packed data when prepared here
  // FP8 E4M3 weights (fp8_qweight.cpp): the codes' exact values, unscaled,
  // [rows * cols], and one scale per row; the packed fields above unused.
  bool fp8 = false;
  std::vector<float> fp8_values;
  std::vector<float> fp8_scales;
  // Foreign (GGUF) blocks run in place (gguf_blocks_weight.hpp); then only
  // rows, cols and gemv_max_rows above are set.
  std::shared_ptr<const xquant::cpu::BlockWeight> blocks;
  uint64_t block_bytes = 0;  // the blocks' stored bytes
  // Bytes the kernels stream: codes plus f32 scales (and zero points).
  uint64_t bytes() const {
    if (blocks) return block_bytes;
    if (fp8) return 4 * static_cast<uint64_t>(fp8_values.size() + fp8_scales.size());
    return static_cast<uint64_t>(rows * row_bytes) + 4 * static_cast<uint64_t>(rows * n_groups) * (zeros ? 2 : 1);
  }
};

namespace xquant::cpu {

using sdk::Error;
using sdk::Host;

// Shapes of device tensors: the SDK's (sdk/tensor.hpp).
using sdk::cols_of;
using sdk::is_contiguous;
using sdk::numel;
using sdk::rows_of;
bool present(const xq_device_tensor& t);  // data != NULL

// Throws Error(XQ_ERR_UNSUPPORTED / XQ_ERR_INVALID_ARGUMENT) naming what is
// wrong with `op`; returns normally when run_op can execute it.
void check_op(const xq_op& op);

// c[m, n] = alpha * a[m, k] . b[n, k]^T (row-major, leading dimensions in
// elements), split over the host pool in blocks of a fixed shape, so the
// result does not depend on the thread count (dense_ops.cpp).
void sgemm_nt_blocked(const Host& host, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                      const float* b, int64_t ldb, float* c, int64_t ldc);

// Dense ops (dense_ops.cpp).
void run_matmul(const Host& host, const xq_op& op);
// MATMUL whose W is BF16 or F16 (bf16_matmul.cpp): bit-identical to
// run_matmul on the F32 image of W.
void run_matmul_bf16_weights(const Host& host, const xq_op& op);
void run_rms_norm(const Host& host, const xq_op& op);
void run_rope(const Host& host, const xq_op& op);
void run_attention(const Host& host, const xq_op& op);
void run_swiglu(const Host& host, const xq_op& op);
void run_add_mul(const Host& host, const xq_op& op, bool mul);
void run_get_rows(const Host& host, const xq_op& op);
void run_quantize_act(const Host& host, const xq_op& op);
void run_convert(const Host& host, const xq_op& op);
void check_dense(const xq_op& op);

// FP8 E4M3 weights (fp8_qweight.cpp): prepare, QMATMUL, DEQUANTIZE; and the
// per-token E4M3 quantization of an activation row into its decoded values
// q[k] (s = max|x| / 448, 1 for an all-zero row). Returns s.
xq_qweight* prepare_fp8_qweight(const xq_quant_tensor& q);
void run_fp8_qmatmul(const Host& host, const xq_op& op);
void run_fp8_dequantize(const Host& host, const xq_op& op);
float quantize_row_e4m3(const float* x, int64_t k, float* q);
// W4AFP8's activations (w4afp8_activations.cpp): `rows` rows of `cols` each
// quantized to E4M3 per token and dequantized (q * s), into a thread-local
// buffer valid until the calling thread's next call.
const float* round_rows_to_e4m3(const float* x, int64_t rows, int64_t cols);
// XQ_OP_ROPE_KV (rope_kv.cpp): ROPE on q and k of q|k|v rows, K/V appended
// at each row's position.
void check_rope_kv(const xq_op& op);
void run_rope_kv(const Host& host, const xq_op& op);
// Paged KV cache ops, KV_WRITE and PAGED_ATTENTION (paged_ops.cpp).
bool is_paged_op(xq_op_type t);
void check_paged(const xq_op& op);
void run_kv_write(const Host& host, const xq_op& op);
void run_paged_attention(const Host& host, const xq_op& op);
// Mixture-of-Experts routing and combine, MOE_ROUTE and MOE_COMBINE (moe_ops.cpp).
bool is_moe_op(xq_op_type t);
void check_moe_op(const xq_op& op);
void run_moe_route(const xq_op& op);
void run_moe_combine(const xq_op& op);

// Quantized weights (qweight.cpp).
xq_qweight* prepare_qweight(const xq_quant_tensor& q);
// A qweight over bytes stored in layout "cpu.int-blocks.v1" for the tensor
// `desc` describes, read in place (checked by sdk::cpu_layout::view, never
// repacked).
xq_qweight* adopt_qweight(const xq_quant_tensor& desc, const void* data, uint64_t nbytes);
// The layout qweight_prepare packs `desc` into ("cpu.int-blocks.v1"), or
// nullptr when it would refuse it.
const char* packed_layout_of(const xq_quant_tensor& desc);
void check_quant(const xq_op& op);
void run_qmatmul(const Host& host, const xq_op& op);
void run_dequantize(const Host& host, const xq_op& op);
// One mixture-of-experts Linear over all experts, expert by expert
// (moe_qmatmul.cpp; xq_moe_op in abi/include/xquant/xq_kernel.h).
void run_moe_qmatmul(const Host& host, const xq_moe_op& op);

// Per-token int8 activation quantization shared by QUANTIZE_ACT and W8A8
// QMATMUL: q = clamp(round(x / s), -127, 127) with s = max|x| / 127 (s = 1
// for an all-zero row), or with the static scale s when static_scale > 0
// (then clamped to [-128, 127]). Returns s.
// Dot product of k floats (vectorized; used by the decode GEMV).
float dot_f32(const float* w, const float* x, int64_t k);

float quantize_row_i8(const float* x, int64_t k, int8_t* q, float static_scale);

}  // namespace xquant::cpu
