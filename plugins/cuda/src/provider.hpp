// provider.hpp: the `cuda` kernel provider's state and operations, in C++.
// plugin.cpp wraps it into the C vtable; tests and the bench shim use it
// through that vtable. One provider drives device 0 on one stream of its own,
// a blocking one (cudaStreamCreate without cudaStreamNonBlocking): work on
// the legacy default stream (cudaMemcpy, PyTorch's and the bench's events)
// stays ordered with it, and unlike the legacy stream it can be recorded
// into CUDA graphs (graphs.cpp).
#pragma once

#include <xquant/sdk/host.hpp>
#include <xquant/sdk/plugin.hpp>
#include <xquant/xq_kernel.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cublaslt.hpp"
#include "w4a16_gemv.hpp"
#include "cutlass_w8a8.hpp"
#include "flashinfer_decode.hpp"
#include "flashinfer_prefill.hpp"
#include "w8a8_gemv.hpp"
#include "kernels.hpp"
#include "op_timing.hpp"
#include "w4a16_hopper.hpp"
#include "w4a8_hopper.hpp"

// The provider's packed weight (opaque to the host).
struct xq_qweight {
  enum class Kind { W4, W8 } kind = Kind::W4;
  int64_t N = 0, K = 0;
  const char* layout = "";
  // W4 ("cuda-w4a16-mma")
  xqcuda::W4Layout L;
  uint4* qw = nullptr;
  uint2* sz_bf16 = nullptr;
  uint2* sz_f16 = nullptr;
  int32_t* perm = nullptr;  // act-order: native column c = canonical column perm[c]
  bool f32_dequant_uses_f16 = false;
  // W4 on Hopper: a second copy of the codes in the wgmma layout with bf16
  // scales/offsets (provider_w4_hopper.cpp); null where that kernel is absent.
  xqcuda::W4HopperLayout HL;
  void* hq = nullptr;
  void* hs = nullptr;
  void* hz = nullptr;
  // W4A8-FP8 on Hopper (XQUANT_CUDA_W4A8=1): codes in the lookup encoding,
  // per-group E4M3 tables, channel scales (provider_w4a8.cpp); null otherwise.
  xqcuda::W4A8Layout A8L;
  void* a8q = nullptr;
  void* a8lut = nullptr;
  float* a8ch = nullptr;
  bool w4a8_scheme = false;  // prepared from a W4A8-FP8 quant tensor (is_w4a8_fp8_scheme)
  // W8 ("cuda-w8a8-int8-nk"), or FP8 W8A8 ("cuda-w8a8-fp8-nk") when fp8
  int8_t* w8 = nullptr;  // [N][K]: int8 codes, or E4M3 bytes when fp8
  float* sw = nullptr;   // [N]
  bool fp8 = false;
  xq_act_scheme act = XQ_ACT_NONE;
  float input_scale = 0.f;
  // Uploaded from stored bytes (adopt) rather than packed here (prepare).
  bool adopted = false;
  const char* adopted_layout = "";
};

namespace xqcuda {

inline constexpr const char* kLayoutW4 = "cuda-w4a16-mma";
inline constexpr const char* kLayoutW8 = "cuda-w8a8-int8-nk";
inline constexpr const char* kLayoutFp8 = "cuda-w8a8-fp8-nk";

// What recorded graphs hold on to: while any graph lives (or one is being
// recorded), a workspace that must grow parks its old buffer here instead
// of freeing it, since the graph's kernels keep its address.
struct GraphHolds {
  int live = 0;
  bool recording = false;
  // The recording in progress ran kernels planned per step (FlashInfer's
  // decode) for this shape (rows = 0: none): its launches need a plan of the
  // same shape.
  xq_paged_plan planned_shape{};
  std::vector<void*> retired;
  bool holds() const { return live > 0 || recording; }
};

// A grow-only device buffer.
struct Scratch {
  void* ptr = nullptr;
  size_t bytes = 0;
  GraphHolds* keep = nullptr;
  void* get(size_t need);
  void release();
};

class Provider : public xquant::sdk::PluginBase {
 public:
  explicit Provider(const xquant::sdk::Host& h);
  ~Provider() override;

  uint32_t score(const char** why);
  void* alloc(uint64_t nbytes);
  void free(void* p);
  void upload(void* dst, const void* src, uint64_t n);
  void download(void* dst, const void* src, uint64_t n);
  void synchronize();
  bool supports(const xq_op& op, std::string* why = nullptr);
  void run(const xq_op& op);
  xq_qweight* prepare(const xq_quant_tensor& q);
  // Stored packed weights (sdk/cuda_layout.hpp, e.g. an xq file's
  // cuda.*.v1 segments): uploaded as they are, never repacked (adopt.cpp).
  const char* packed_layout(const xq_quant_tensor& desc) const;
  xq_qweight* adopt(const xq_quant_tensor& desc, const char* layout, const void* data, uint64_t nbytes);
  // Several stored weights as one (q|k|v, gate|up: xq_kernel_vtable.qweight_adopt_stacked): each
  // part's bytes placed where the stacked weight has them (sdk/cuda_layout.hpp, stack_plan).
  xq_qweight* adopt_stacked(const char* layout, const xquant::sdk::StoredParts& parts);
  // An adopted W4A16 weight's Hopper GEMM copy, stored as sdk/cuda_wgmma_layout.hpp writes it
  // (xq_kernel_vtable.qweight_extra_layout / qweight_attach; adopt.cpp): named where this build and
  // device run that GEMM and the weight fits it; each part's copy placed as it is.
  const char* extra_layout(const xq_qweight* w) const;
  void attach(xq_qweight* w, const char* layout, const xquant::sdk::StoredParts& parts);
  void release(xq_qweight* w);
  const char* layout(const xq_qweight* w) const { return w ? (w->adopted ? w->adopted_layout : w->layout) : ""; }
  void memory_info(xq_memory_info& out);
  // Recorded launches (graphs.cpp; xq_kernel_vtable.graph_begin).
  void graph_begin();
  xq_graph* graph_end();
  void graph_launch(xq_graph* g);
  void graph_release(xq_graph* g);
  // One mixture-of-experts Linear over all experts (moe_provider.cpp).
  void moe_qmatmul(const xq_moe_op& op);
  // A step's rows (xq_kernel_vtable.plan_paged_step): FlashInfer's decode
  // (decode steps) or prefill (steps with prefill rows) planned for them
  // where this build has it and the shape fits (flashinfer_decode.hpp,
  // flashinfer_prefill.hpp; XQUANT_FLASHINFER_DECODE=0 and
  // XQUANT_FLASHINFER_PREFILL=0 turn them off).
  void plan_paged(xq_paged_plan& plan);

 private:
  void refuse_while_recording(const char* what) const;
  void check_moe(const xq_moe_op& op);
  void check_moe_dense(const xq_moe_op& op);
  void check_moe_operands(const xq_moe_op& op, int64_t K, int64_t N);
  void moe_dense(const xq_moe_op& op);
  // W8A8 INT8 experts: the grouped CUTLASS GEMM (moe_w8a8_provider.cpp).
  void check_moe_w8a8(const xq_moe_op& op);
  void moe_w8a8(const xq_moe_op& op);
  // W4A16 experts, many tokens per expert on sm_90: the grouped CUTLASS GEMM
  // (moe_w4a16_provider.cpp); false leaves the call to the mma.sync kernel.
  bool moe_w4a16_grouped(const xq_moe_op& op);
  const char* moe_w4a16_grouped_refusal(const xq_moe_op& op) const;
  const void* const* moe_weight_table(const xq_moe_op& op, bool is_f16);
  // A device copy of `ptrs`, made once per distinct list (moe_tables_).
  const void* const* moe_pointer_table(std::vector<const void*> ptrs);
  void require_device() const;
  bool check_qmatmul(const xq_op& op, std::string* why);
  bool check_matmul(const xq_op& op, std::string* why);
  void run_qmatmul_w4(const xq_op& op);
  // provider_w4_hopper.cpp
  void init_w4_hopper();
  void prepare_w4_hopper(xq_qweight* w, const int8_t* d_codes, const float* d_scales, const int8_t* d_zp);
  // adopt and adopt_stacked: one weight from the stored bytes of one tensor or of several (adopt.cpp).
  xq_qweight* adopt_parts(const char* layout, const xquant::sdk::StoredParts& parts);
  bool run_qmatmul_w4_hopper(const xq_op& op);
  // provider_w4a8.cpp
  static constexpr int64_t kForceW4A8 = 6;  // QMATMUL op.i[7]
  void init_w4a8();
  // 4-bit codes with act_scheme DYNAMIC_TOKEN and act_bits XQ_BITS_F8_E4M3.
  static bool is_w4a8_fp8_scheme(const xq_quant_tensor& q);
  void prepare_w4a8(xq_qweight* w, const int8_t* d_codes, const float* d_scales, bool symmetric);
  bool run_qmatmul_w4a8(const xq_op& op);
  bool w4a8_ok_ = false;       // built, sm_90, XQUANT_CUDA_W4A8 not 0: W4A8-FP8 weights get the copy
  bool w4a8_all_ = false;      // XQUANT_CUDA_W4A8=1 or 2: W4A16 weights get it too
  bool w4a8_default_ = false;  // XQUANT_CUDA_W4A8=1: their default dispatch takes it too
  int64_t w4a8_min_m_ = 64;    // XQUANT_CUDA_W4A8_MIN_M: the default dispatch's smallest batch
  void run_qmatmul_w8(const xq_op& op);
  void run_qmatmul_fp8(const xq_op& op);
  // The fused-epilogue CUTLASS GEMM when the route picks it (w8a8_route.cpp),
  // `bias` (any float type, or absent) converted to p.y_type for it; false:
  // the caller runs the cuBLASLt path.
  bool run_w8a8_cutlass(ScaledMM p, const xq_device_tensor& bias);
  // The few-row kernel of w8a8_gemv.hpp on the quantized activation codes
  // (decode at M <= 8) where it fits; false: the caller runs a GEMM route.
  bool run_w8a8_gemv(DType codes, const xq_op& op, const void* xq, const float* sa, float sa_const);
  // The same from op's BF16/F16 rows, quantized inside the kernel (per token,
  // or with static_scale when > 0): no separate quantization launch. False
  // (nothing launched) where the fused form does not fit (w8a8_gemv.hpp).
  bool run_w8a8_gemv_fused(DType codes, const xq_op& op, float static_scale);
  W8Gemv w8_gemv_problem(DType codes, const xq_op& op) const;
  void launch_w8_gemv(const W8Gemv& g);
  xq_qweight* prepare_fp8(const xq_quant_tensor& q, const std::vector<float>& row_scales);
  void run_matmul(const xq_op& op);
  void run_dequantize(const xq_op& op);
  void run_quantize_act(const xq_op& op);
  void lt_gemm(const LtGemmShape& s, const void* W, const void* x, void* D, float alpha, const void* bias,
               const float* w_scale, const float* x_scale);
  const void* bias_as(const xq_device_tensor& b, DType want, int64_t n);

  int device_count_ = 0;
  int sm_count_ = 0;
  int cc_major_ = 0, cc_minor_ = 0;
  std::string why_;
  std::string lt_why_;
  bool lt_ok_ = false;
  bool fp8_outer_ok_ = true;
  int64_t w4_fused_max_m_ = 128;
  // Batch sizes the W4A16 GEMV (w4a16_gemv.cu) serves by default (XQUANT_CUDA_W4_GEMV_MAX_M, 0..8):
  // none. On an H200 (bench/cuda/bench_w4_gemv.py, 2026-12-01) it is slower than the fused GEMM
  // at every M = 1..8 on the four benchmark shapes except 4096x4096 at M = 4 (9.7 vs 10.0 us,
  // within noise); e.g. 63.7 vs 52.6 us at M = 1 on 8192x28672. It stays reachable with
  // op.i[7] = 4 or the environment for further work.
  int64_t w4_gemv_max_m_ = 0;
  int w4_gemv_blocks_per_sm_ = kW4GemvBlocksPerSm;  // XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM
  // GEMV variant for op.i[7] = 4 and the default dispatch (XQUANT_CUDA_W4_GEMV_VARIANT): 1 and 2 are
  // w4a16_gemv.cu with one or two register batches per warp, 3 the streaming w4a16_gemv_stream.cu,
  // 4 the TMA-ring w4a16_gemv_tma.cu (sm_90 only; 2 elsewhere).
  int w4_gemv_variant_ = 2;
  int w4_gemv_stream_blocks_per_sm_ = 0;  // XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM; 0 = all that fit
  static constexpr int64_t kForceW4GemvTma = 7;  // QMATMUL op.i[7]: the TMA-ring GEMV ("v4")
  // Batch sizes the TMA-ring GEMV (w4a16_gemv_tma.cu, "v4") serves by default on sm_90 with BF16
  // or F16 activations (XQUANT_CUDA_W4_GEMV_TMA_MAX_M, 0..16; 0 turns it off): M <= 12. On an H200
  // (bench/cuda/w4_gemv_tma_harness.cu; docs/cuda.md, "W4A16 GEMV v4" and its session-seventeen
  // subsection) the first v4 beat the fused GEMM at M = 1, 2, 4 on all four benchmark shapes and
  // lost at M = 8 on 4096x4096 and 4096x14336, so it served M <= 4; with the x sums and 8-chunk
  // slots (2026-12-02) it is ahead at M = 8 too, 1.06-1.28x the fused GEMM on the four shapes
  // (37.5 vs 53.1 us at M = 1 and 43.0 vs 54.9 at M = 8 on 8192x28672). F16 took v4 at M <= 4
  // by its own timing (bench_w4_gemv.py --act f16) and, since then, at M = 8 by the same rule.
  // Session thirty-two gave it two token tiles (M <= 16): BF16, 1.03-1.37x the fused GEMM at M = 9
  // and 12 on six shapes (Llama-3.1-8B's four and the two benchmark shapes besides), but at M = 16
  // 0.94x and 0.97x on 4096x4096 and 4096x6144 (a cluster's reduction slots no longer fit beside
  // the ring there), so the default stops at 12; F16 follows BF16's rule untimed above M = 8.
  int64_t w4_gemv_tma_max_m_ = 12;
  int w4_gemv_tma_stages_ = 0;         // XQUANT_CUDA_W4_GEMV_TMA_STAGES; 0 = the plan's (4)
  int w4_gemv_tma_blocks_per_sm_ = 0;  // XQUANT_CUDA_W4_GEMV_TMA_BLOCKS_PER_SM; 0 = all that fit
  void run_w4_gemv(const xq_op& op, const void* xs, int64_t ldx, DType bias_t, int variant);
  int* gemv_counters(int64_t n);
  bool w4_hopper_ok_ = false;  // the wgmma W4A16 kernel is built and this is sm_90
  // Batch sizes the wgmma kernel serves by default: from 33 rows, or 17 for weights of 8192
  // rows and more (default_min_m in provider_w4_hopper.cpp says what was measured), unless
  // XQUANT_CUDA_W4_HOPPER_MIN_M sets one threshold (w4_hopper_min_m_ > 0); with the 128x256
  // tile it beats dequant + cuBLASLt at M = 1024 and 4096 on all four shapes (H200,
  // bench/cuda/results/h200-w4-hopper-schedules.md), so there is no upper bound by default.
  int64_t w4_hopper_min_m_ = 0, w4_hopper_max_m_ = INT64_MAX;
  CublasLt lt_;
  cudaStream_t stream_ = nullptr;
  GraphHolds graphs_;
  OpTimer timer_;  // XQUANT_CUDA_OP_TIMES=1 (op_timing.hpp)
  std::recursive_mutex mu_;
  Scratch s_x_, s_w_, s_acc_, s_part_, s_scale_, s_bias_, s_ws_, s_paged_;
  Scratch s_moe_sorted_, s_moe_blocks_, s_moe_y_;
  // FlashInfer's decode and prefill (each created at its first plan, only in
  // a build with FlashInfer's headers: their definitions are compiled there
  // alone), the decode's split-KV partial outputs, the prefill's BF16
  // queries and partial outputs. The accessors answer null / 0 in other
  // builds; flashinfer_prefill() also while recording.
#if XQUANT_CUDA_FLASHINFER
  std::unique_ptr<FlashInferDecode> flashinfer_;
  std::unique_ptr<FlashInferPrefill> flashinfer_prefill_;
#endif
  Scratch s_flashinfer_, s_flashinfer_prefill_;
  FlashInferDecode* flashinfer() const;
  FlashInferPrefill* flashinfer_prefill() const;
  void note_flashinfer_refusal(const char* kernel, const std::string& why);
  std::string flashinfer_refusal_;  // the last refusal logged
  const xq_paged_plan* flashinfer_plan() const;  // the current plan's shape, or null
  uint64_t flashinfer_runs() const;
  // The W4A16 GEMV's split-K arrival counters: zeroed when (re)allocated,
  // left zero by every launch.
  Scratch s_gemv_counters_;
  void* gemv_counters_zeroed_ = nullptr;
  size_t gemv_counters_zeroed_bytes_ = 0;
  // Device tables [qw pointers | scale pointers] per expert set (or the
  // dense experts' weight pointers), keyed by
  // those device pointers themselves (a freed and re-made weight set with
  // the same pointers needs the same table).
  std::map<std::vector<const void*>, void*> moe_tables_;
  void sample_memory();
  uint64_t mem_free_ = 0, mem_total_ = 0, mem_peak_ = 0;
};

}  // namespace xqcuda
