// flashinfer_decode.cu: issue 9 asks that where a well-kept kernel library
// already does an op well (for attention, FlashInfer's header-only kernels)
// it be measured against ours and the faster taken. This is that measurement
// for attention over a paged KV cache (decode rows, and with --prefill one
// causal prompt: run_prefill), one binary, one GPU run:
//
//   ours        xqcuda::paged_attention, the launcher behind the engine's
//               PAGED_ATTENTION (its default kernel choice and split rule,
//               plugins/cuda/src/split_k_launch.cuh); q F32, output F32;
//   flashinfer  BatchDecodeWithPagedKVCacheDispatched (include/flashinfer/
//               attention/decode.cuh: its CUDA-core decode kernel) after
//               DecodePlan
//               (scheduler.cuh), as FlashInfer's own
//               BatchDecodeWithPagedKVCacheRun drives it (csrc/batch_decode.cu):
//               its work estimation chooses split-KV and the chunk size; q
//               and output BF16;
//   flashinfer  FlashInfer's tensor-core decode ("use_tensor_cores=True" in
//   (tensor     its Python BatchDecodeWithPagedKVCacheWrapper, which servers
//   cores)      take for grouped-query heads): its FA2 batch-prefill kernel
//               (prefill.cuh, BatchPrefillWithPagedKVCacheDispatched) with one
//               query row per request and no mask, after PrefillPlan, driven
//               as its csrc/batch_prefill_paged.cuh drives it and planned as
//               its flashinfer/decode.py plans it (qo_indptr = 0..rows,
//               fixed_split_size -1, uniform_q_len 1); q and output BF16.
//
// Shapes: Llama-3.1-8B's heads (32 query over 8 KV heads, D 128), BF16 K and
// V in 16-slot pages laid out [pages, 16, 8, 128] (NHD: the layout both
// read, so the same pools serve both), decode rows (default 1 to 128) of
// 128 to 4096 keys each (--rows, --keys) on shuffled pages. K and V are
// different index-hashed values (so swapped pools or a wrong page show).
// Before timing, FlashInfer's two outputs are compared with ours (relative
// L2 error <= 1e-2: it rounds q and its output to BF16, ours keeps F32; q's
// values are BF16-representable so all read the same q). Time: CUDA events
// over 100 back-to-back eager launches after 5, per call, each call on the
// next of several disjoint page sets (together more than twice the L2), so
// a small shape streams from HBM as in a real step; all with PDL (each
// library's default on Hopper: FlashInfer's Python API passes enable_pdl on
// sm_90, our launcher uses it unless XQUANT_CUDA_PDL=0) and all without.
// FlashInfer's plans are its eager ones (enable_cuda_graph false: its graph
// mode pads the batch and may split differently), made once per shape
// outside the timing (FlashInfer plans on the host once per step), our split
// count likewise. Eager launches: at small shapes the host's launch path is in the
// time for both (FlashInfer's dispatch also sets the kernel's shared-memory
// attribute at every call); a server would replay CUDA graphs.
//
//   flashinfer_decode [--rows 1,8,32,128] [--keys 128,1024,4096]
//   flashinfer_decode --prefill 2048,8192     (prompts instead: run_prefill)
//
// Built only where CMake finds FlashInfer's headers (scripts/fetch-flashinfer.sh)
// and the cuda provider is built to run; scripts/gpu-flashinfer-decode.sh
// runs it on a GPU machine.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <flashinfer/attention/decode.cuh>
#include <flashinfer/attention/default_decode_params.cuh>
#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/prefill.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>

#include "paged_attention.hpp"
#include "prefill_attention.hpp"
#include "pdl.cuh"

namespace {

constexpr uint32_t kHeads = 32, kKvHeads = 8, kGroup = kHeads / kKvHeads, kHeadDim = 128, kPage = 16;
using Params = flashinfer::BatchDecodeParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, int32_t>;
using Variant = flashinfer::DefaultAttention</*custom_mask=*/false, /*sliding_window=*/false,
                                             /*logits_soft_cap=*/false, /*alibi=*/false>;
constexpr auto kNoRope = flashinfer::PosEncodingMode::kNone;
using PrefillParams = flashinfer::BatchPrefillPagedParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, int32_t>;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "flashinfer_decode: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) v.push_back(std::stoll(item));
  return v;
}

template <class T>
struct Dev {
  T* p = nullptr;
  explicit Dev(size_t n) { check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc"); }
  ~Dev() { cudaFree(p); }
  void put(const std::vector<T>& h) { check(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload"); }
  std::vector<T> get(size_t n) const {
    std::vector<T> h(n);
    check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
};

float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

// BF16 values in about [-2, 2) from a hash of (seed, index): a pool of any
// size with no repeats a page-index error could hide behind.
__global__ void fill_hashed(__nv_bfloat16* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32) * 0x85EBCA77u ^ seed;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    p[i] = __float2bfloat16(static_cast<float>(h >> 8) * (4.f / 16777216.f) - 2.f);
  }
}

template <class Launch>
double us_per_call(const Launch& launch) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 5; ++i) launch();
  cudaEventRecord(a);
  for (int i = 0; i < 100; ++i) launch();
  cudaEventRecord(b);
  check(cudaEventSynchronize(b), "timed launches");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms * 1e3 / 100;
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * static_cast<double>(got[i] - ref[i]);
    den += ref[i] * static_cast<double>(ref[i]);
  }
  return std::sqrt(num / den);
}

// Every comparison's bound (FlashInfer rounds q and its output to BF16, ours keeps F32).
bool agrees(double rel) { return std::isfinite(rel) && rel <= 1e-2; }

// A BF16 output read back as floats, for rel_l2 against ours.
std::vector<float> to_floats(const Dev<__nv_bfloat16>& d, size_t n) {
  const auto raw = d.get(n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __bfloat162float(raw[i]);
  return f;
}

// FlashInfer's plan for `rows` sequences of `pages` pages each (its workspaces
// sized as its Python wrapper sizes them: 128 MB float, 8 MB int).
struct FlashInferPlan {
  flashinfer::DecodePlanInfo info;
  Dev<char> float_ws{128u << 20}, int_ws{8u << 20};
  std::vector<char> pinned_int = std::vector<char>(8u << 20);

  FlashInferPlan(std::vector<int32_t>& indptr_h, uint32_t rows) {
    auto estimate = flashinfer::BatchDecodeWithPagedKVCacheWorkEstimationDispatched<kGroup, kHeadDim, kNoRope, Variant,
                                                                                   Params>;
    check(flashinfer::DecodePlan<kHeadDim, kNoRope, Variant, Params>(
              float_ws.p, 128u << 20, int_ws.p, pinned_int.data(), 8u << 20, info, indptr_h.data(), rows, kHeads,
              kPage, /*enable_cuda_graph=*/false, /*stream=*/nullptr, estimate),
          "FlashInfer DecodePlan");
    check(cudaDeviceSynchronize(), "FlashInfer plan upload");
  }
};

// A FlashInfer FA2 batch-prefill plan (PrefillPlan), and the kernel's
// parameters pointed into its workspaces as csrc/batch_prefill_paged.cuh
// points them. Its tensor-core decode is this with one query row a request,
// planned as flashinfer/decode.py's plan() plans it with use_tensor_cores
// (fixed_split_size -1, split-KV allowed, uniform_q_len 1); a prefill is one
// request of T rows (uniform_q_len 0, as the prefill wrapper plans it).
struct FlashInferPrefillPlan {
  flashinfer::PrefillPlanInfo info;
  Dev<char> float_ws{128u << 20}, int_ws{8u << 20};
  std::vector<char> pinned_int = std::vector<char>(8u << 20);

  FlashInferPrefillPlan(std::vector<int32_t>& qo_indptr_h, std::vector<int32_t>& kv_indptr_h, uint32_t total_rows,
                        uint32_t requests, int64_t uniform_q_len) {
    check(flashinfer::PrefillPlan<int32_t>(float_ws.p, 128u << 20, int_ws.p, pinned_int.data(), 8u << 20, info,
                                           qo_indptr_h.data(), kv_indptr_h.data(), total_rows, requests, kHeads,
                                           kKvHeads, kHeadDim, kHeadDim, kPage, /*enable_cuda_graph=*/false,
                                           /*sizeof_dtype_o=*/2, /*window_left=*/-1, /*fixed_split_size=*/-1,
                                           /*disable_split_kv=*/false, /*num_colocated_ctas=*/0, uniform_q_len,
                                           /*fixed_uniform_q_len=*/uniform_q_len > 0, /*stream=*/nullptr,
                                           /*kv_dtype_bytes=*/2),
          "FlashInfer PrefillPlan");
    check(cudaDeviceSynchronize(), "FlashInfer prefill plan upload");
  }

  // params' plan-made pointers; tmp_v / tmp_s are the split-KV partials (null without splits).
  void point(PrefillParams& p, __nv_bfloat16** tmp_v, float** tmp_s) {
    p.request_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(int_ws.p, info.request_indices_offset);
    p.qo_tile_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(int_ws.p, info.qo_tile_indices_offset);
    p.kv_tile_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(int_ws.p, info.kv_tile_indices_offset);
    p.o_indptr = flashinfer::GetPtrFromBaseOffset<int32_t>(int_ws.p, info.o_indptr_offset);
    p.kv_chunk_size_ptr = flashinfer::GetPtrFromBaseOffset<int32_t>(int_ws.p, info.kv_chunk_size_ptr_offset);
    *tmp_v = nullptr;
    *tmp_s = nullptr;
    if (info.split_kv) {
      p.merge_indptr = flashinfer::GetPtrFromBaseOffset<int32_t>(int_ws.p, info.merge_indptr_offset);
      *tmp_v = flashinfer::GetPtrFromBaseOffset<__nv_bfloat16>(float_ws.p, info.v_offset);
      *tmp_s = flashinfer::GetPtrFromBaseOffset<float>(float_ws.p, info.s_offset);
    }
    p.padded_batch_size = static_cast<uint32_t>(info.padded_batch_size);
    p.max_total_num_rows = static_cast<uint32_t>(info.total_num_rows);
  }
};

// The FA2 kernel's parameters for BF16 q [rows, kHeads, kHeadDim] and output
// over `kv`, with no RoPE, mask, soft cap or ALiBi (both uses here).
PrefillParams prefill_params(__nv_bfloat16* q, const flashinfer::paged_kv_t<__nv_bfloat16, int32_t>& kv,
                             int32_t* qo_indptr, __nv_bfloat16* out, float scale) {
  return PrefillParams(q, kv, /*maybe_custom_mask=*/nullptr, qo_indptr, /*maybe_mask_indptr=*/nullptr,
                       /*maybe_q_rope_offset=*/nullptr, out, /*lse=*/nullptr, /*maybe_alibi_slopes=*/nullptr, kHeads,
                       /*q_stride_n=*/kHeads * kHeadDim, /*q_stride_h=*/kHeadDim, /*window_left=*/-1,
                       /*logits_soft_cap=*/0.f, scale, /*rope_scale=*/1.f, /*rope_theta=*/1e4f);
}

// FlashInfer's FA2 paged prefill kernel at the query tile its plan chose, for
// the tiles built here (16 for decode rows, 64 and 128 for prompts).
template <flashinfer::MaskMode kMask>
cudaError_t flashinfer_prefill(int64_t cta_tile_q, const PrefillParams& p, __nv_bfloat16* tmp_v, float* tmp_s,
                               bool pdl) {
  auto run = [&](auto tile) {
    return flashinfer::BatchPrefillWithPagedKVCacheDispatched</*SAME_KV_STRIDES=*/true, decltype(tile)::value,
                                                              kHeadDim, kHeadDim, kNoRope,
                                                              /*use_fp16_qk_reduction=*/false, kMask,
                                                              /*USE_TOKEN_HEAD_SF=*/false, Variant>(p, tmp_v, tmp_s,
                                                                                                    pdl, nullptr);
  };
  if constexpr (kMask == flashinfer::MaskMode::kNone) {
    if (cta_tile_q == 16) return run(std::integral_constant<uint32_t, 16>{});
  } else {
    if (cta_tile_q == 64) return run(std::integral_constant<uint32_t, 64>{});
    if (cta_tile_q == 128) return run(std::integral_constant<uint32_t, 128>{});
  }
  std::fprintf(stderr, "flashinfer_decode: FlashInfer's plan chose a query tile of %lld, not built here\n",
               static_cast<long long>(cta_tile_q));
  std::exit(1);
}

// Prefill: one sequence's prompt of T tokens attending causally to itself, in
// one call each. Ours is PAGED_ATTENTION's prompt path as run_paged_op runs it
// (paged_attention_check.cpp: the tensor-core kernel over the prefill tiles,
// then the decode kernel told to skip them; q and output F32); FlashInfer's
// is its FA2 paged prefill kernel (causal, q and output BF16) after its plan.
// The engine cuts a long prompt into chunks of --max-step-tokens rows; one
// whole-prompt call is the kernel-to-kernel comparison. Returns whether the
// two outputs were compared and agree.
bool run_prefill(const cudaDeviceProp& prop, int64_t T, std::mt19937& rng) {
  const int64_t pages = (T + kPage - 1) / kPage, page_elems = int64_t{kPage} * kKvHeads * kHeadDim;
  const int64_t n_q = T * kHeads * kHeadDim;
  const float scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  Dev<__nv_bfloat16> k_pool(pages * page_elems), v_pool(pages * page_elems);
  fill_hashed<<<1024, 256>>>(k_pool.p, pages * page_elems, 0x5EEDu);
  fill_hashed<<<1024, 256>>>(v_pool.p, pages * page_elems, 0xFACEu);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> q_h(static_cast<size_t>(n_q));
  std::vector<__nv_bfloat16> q16_h(q_h.size());
  for (size_t i = 0; i < q_h.size(); ++i) q16_h[i] = __float2bfloat16(q_h[i] = bf16_round(normal(rng)));
  Dev<float> q(q_h.size()), out_ours(q_h.size());
  Dev<__nv_bfloat16> q16(q_h.size()), out_fi(q_h.size());
  q.put(q_h);
  q16.put(q16_h);
  std::vector<int32_t> order(static_cast<size_t>(pages));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);

  // Ours: n_seq = 1, the table [2T + pages]: each row's position, its sequence (0), then the block ids.
  std::vector<int32_t> table(static_cast<size_t>(2 * T + pages));
  for (int64_t t = 0; t < T; ++t) table[static_cast<size_t>(t)] = static_cast<int32_t>(t), table[static_cast<size_t>(T + t)] = 0;
  std::copy(order.begin(), order.end(), table.begin() + 2 * T);
  Dev<int32_t> table_d(table.size());
  table_d.put(table);
  xqcuda::PagedAttentionArgs a;
  a.q = q.p, a.kpool = k_pool.p, a.vpool = v_pool.p, a.pool_type = xqcuda::DType::BF16;
  a.table = table_d.p, a.table_ld = pages, a.n_seq = 1;
  a.T = T, a.H = kHeads, a.KVH = kKvHeads, a.D = kHeadDim, a.BS = kPage, a.max_keys = pages * kPage;
  a.scale = scale, a.out = out_ours.p, a.out_type = xqcuda::DType::F32;
  if (!xqcuda::prefill_attention_applies(a, T)) {  // e.g. XQUANT_PREFILL_ATTENTION=0: nothing to compare
    std::printf("prefill %lld tokens: our tensor-core prefill path does not apply here: NOT COMPARED\n",
                static_cast<long long>(T));
    return false;
  }
  const int splits = xqcuda::paged_attention_splits(T, kKvHeads, a.max_keys, prop.multiProcessorCount);
  Dev<char> split_ws(std::max<size_t>(xqcuda::paged_attention_workspace(T, kHeads, kHeadDim, splits), 1));
  Dev<char> flags(xqcuda::prefill_attention_workspace(T));
  auto ours = [&] {
    check(xqcuda::prefill_attention(a, reinterpret_cast<int32_t*>(flags.p), nullptr), "our prefill attention");
    xqcuda::PagedAttentionArgs rest = a;
    rest.skip_tiles = reinterpret_cast<const int32_t*>(flags.p);
    rest.skip_tile_rows = xqcuda::kPrefillTileRows;
    check(xqcuda::paged_attention(rest, splits, splits > 1 ? split_ws.p : nullptr, nullptr), "our paged attention");
  };

  // FlashInfer: one request of T rows over `pages` pages (CSR lists), causal.
  std::vector<int32_t> qo_indptr = {0, static_cast<int32_t>(T)}, kv_indptr = {0, static_cast<int32_t>(pages)};
  std::vector<int32_t> last_len = {static_cast<int32_t>(T - (pages - 1) * kPage)};
  Dev<int32_t> qo_indptr_d(2), kv_indptr_d(2), last_d(1), indices_d(order.size());
  qo_indptr_d.put(qo_indptr);
  kv_indptr_d.put(kv_indptr);
  last_d.put(last_len);
  indices_d.put(order);
  FlashInferPrefillPlan plan(qo_indptr, kv_indptr, static_cast<uint32_t>(T), 1, /*uniform_q_len=*/0);
  flashinfer::paged_kv_t<__nv_bfloat16, int32_t> kv(kKvHeads, kPage, kHeadDim, 1, flashinfer::QKVLayout::kNHD,
                                                    k_pool.p, v_pool.p, indices_d.p, kv_indptr_d.p, last_d.p);
  PrefillParams p = prefill_params(q16.p, kv, qo_indptr_d.p, out_fi.p, scale);
  __nv_bfloat16* tmp_v = nullptr;
  float* tmp_s = nullptr;
  plan.point(p, &tmp_v, &tmp_s);
  const bool pdl = prop.major >= 9;
  auto theirs = [&] {
    check(flashinfer_prefill<flashinfer::MaskMode::kCausal>(plan.info.cta_tile_q, p, tmp_v, tmp_s, pdl),
          "FlashInfer BatchPrefillWithPagedKVCache (causal prompt)");
  };

  check(cudaMemset(out_ours.p, 0xff, static_cast<size_t>(n_q) * 4), "poison");
  check(cudaMemset(out_fi.p, 0xff, static_cast<size_t>(n_q) * 2), "poison");
  ours();
  theirs();
  check(cudaDeviceSynchronize(), "first prefill calls");
  const double err = rel_l2(to_floats(out_fi, static_cast<size_t>(n_q)), out_ours.get(static_cast<size_t>(n_q)));
  const bool agree = agrees(err);
  const double us_ours = us_per_call(ours), us_fi = us_per_call(theirs);
  // Causal: row t sees t + 1 keys; QK^T and PV are 2 multiply-adds a key, head dim and head.
  const double flop = 4.0 * kHeads * kHeadDim * (static_cast<double>(T) * (T + 1) / 2);
  std::printf("prefill %5lld tokens (causal, one call): ours %9.1f us (%5.0f TFLOP/s), FlashInfer FA2 %9.1f us (%5.0f "
              "TFLOP/s, query tile %lld, split-KV %s), FlashInfer / ours %.2fx; rel diff %.1e%s\n",
              static_cast<long long>(T), us_ours, flop / us_ours / 1e6, us_fi, flop / us_fi / 1e6,
              static_cast<long long>(plan.info.cta_tile_q), plan.info.split_kv ? "on" : "off", us_fi / us_ours, err,
              agree ? "" : "  DISAGREE (bound 1e-2)");
  std::fflush(stdout);
  return agree;
}

}  // namespace

int run(int argc, char** argv) {
  std::vector<int64_t> row_counts = {1, 8, 32, 128}, key_counts = {128, 1024, 4096}, prompts;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rows") row_counts = parse_list(argv[i + 1]);
    else if (flag == "--keys") key_counts = parse_list(argv[i + 1]);
    else if (flag == "--prefill") prompts = parse_list(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: flashinfer_decode [--rows 1,8,32,128] [--keys 128,1024,4096] | --prefill 2048,8192\n");
      return 2;
    }
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "flashinfer_decode: no CUDA device\n");
    return 3;
  }
  if (!prompts.empty()) {  // --prefill: prompts only
    std::printf("device: %s (%d SMs); FlashInfer prefill vs ours, %u/%u heads, D %u, BF16 K/V pages of %u\n",
                prop.name, prop.multiProcessorCount, kHeads, kKvHeads, kHeadDim, kPage);
    std::mt19937 rng(99);
    int disagree = 0;
    for (int64_t T : prompts) disagree += !run_prefill(prop, T, rng);
    if (disagree) std::printf("%d prompt length(s) not compared or where the two outputs disagree\n", disagree);
    return disagree ? 1 : 0;
  }
  const int64_t max_rows = *std::max_element(row_counts.begin(), row_counts.end());
  const int64_t max_keys = *std::max_element(key_counts.begin(), key_counts.end());
  const int64_t max_pages = (max_keys + kPage - 1) / kPage, pool_pages = max_rows * max_pages;
  const int64_t page_elems = int64_t{kPage} * kKvHeads * kHeadDim, q_elems = max_rows * kHeads * kHeadDim;
  std::printf("device: %s (%d SMs); FlashInfer decode vs ours, %u/%u heads, D %u, BF16 K/V pages of %u\n", prop.name,
              prop.multiProcessorCount, kHeads, kKvHeads, kHeadDim, kPage);
  std::printf("FI = FlashInfer's CUDA-core decode, FI-TC = its tensor-core decode; each ratio is FlashInfer's time / "
              "ours (> 1: ours is faster)\n");

  // Pools (K and V from different seeds) and q, filled once (q kept BF16-representable).
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 1.f);
  Dev<__nv_bfloat16> k_pool(pool_pages * page_elems), v_pool(pool_pages * page_elems);
  fill_hashed<<<1024, 256>>>(k_pool.p, pool_pages * page_elems, 0x1234u);
  fill_hashed<<<1024, 256>>>(v_pool.p, pool_pages * page_elems, 0xBEEFu);
  check(cudaDeviceSynchronize(), "pool fill");
  std::vector<float> q_h(static_cast<size_t>(q_elems));
  std::vector<__nv_bfloat16> q16_h(q_h.size());
  for (size_t i = 0; i < q_h.size(); ++i) q16_h[i] = __float2bfloat16(q_h[i] = bf16_round(normal(rng)));
  Dev<float> q(q_h.size()), out_ours(q_h.size());
  Dev<__nv_bfloat16> q16(q_h.size()), out_fi(q_h.size()), out_tc(q_h.size());
  q.put(q_h);
  q16.put(q16_h);
  Dev<char> our_ws(256u << 20);
  std::vector<int32_t> shuffled(static_cast<size_t>(pool_pages));
  std::iota(shuffled.begin(), shuffled.end(), 0);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  const float scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));

  int failures = 0;
  for (int64_t rows : row_counts)
    for (int64_t keys : key_counts) {
      const int64_t pages = (keys + kPage - 1) / kPage;
      // Disjoint page sets, enough that one pass over them is more than twice the L2.
      const int64_t set_bytes = rows * pages * page_elems * 2 * 2;  // K and V
      const int64_t sets = std::max<int64_t>(
          1, std::min<int64_t>(pool_pages / (rows * pages), (2 * int64_t{prop.l2CacheSize}) / set_bytes + 1));
      // Ours: per row its position (keys - 1) then its block ids (n_seq = 0, paged_attention.hpp), per set.
      // FlashInfer: CSR page lists (the same indptr and last-page fill for every set), indices per set.
      std::vector<int32_t> table(static_cast<size_t>(sets * rows * (1 + pages))), indices;
      std::vector<int32_t> indptr(static_cast<size_t>(rows + 1)), last_len(static_cast<size_t>(rows));
      std::vector<int32_t> qo_indptr(static_cast<size_t>(rows + 1));
      std::iota(qo_indptr.begin(), qo_indptr.end(), 0);
      for (int64_t set = 0; set < sets; ++set)
        for (int64_t r = 0; r < rows; ++r) {
          int32_t* row = table.data() + (set * rows + r) * (1 + pages);
          row[0] = static_cast<int32_t>(keys - 1);
          for (int64_t p = 0; p < pages; ++p) {
            const int32_t page = shuffled[static_cast<size_t>((set * rows + r) * pages + p)];
            row[1 + p] = page;
            indices.push_back(page);
          }
        }
      for (int64_t r = 0; r < rows; ++r) {
        indptr[static_cast<size_t>(r + 1)] = static_cast<int32_t>((r + 1) * pages);
        last_len[static_cast<size_t>(r)] = static_cast<int32_t>(keys - (pages - 1) * kPage);
      }
      Dev<int32_t> table_d(table.size()), indptr_d(indptr.size()), indices_d(indices.size()), last_d(last_len.size());
      Dev<int32_t> qo_indptr_d(qo_indptr.size());
      qo_indptr_d.put(qo_indptr);
      table_d.put(table);
      indptr_d.put(indptr);
      indices_d.put(indices);
      last_d.put(last_len);

      xqcuda::PagedAttentionArgs a;
      a.q = q.p, a.kpool = k_pool.p, a.vpool = v_pool.p, a.pool_type = xqcuda::DType::BF16;
      a.table = table_d.p, a.table_ld = 1 + pages, a.n_seq = 0;
      a.T = rows, a.H = kHeads, a.KVH = kKvHeads, a.D = kHeadDim, a.BS = kPage, a.max_keys = pages * kPage;
      a.scale = scale, a.out = out_ours.p, a.out_type = xqcuda::DType::F32;
      const int splits = xqcuda::paged_attention_splits(rows, kKvHeads, a.max_keys, prop.multiProcessorCount);
      int64_t call = 0;
      auto ours = [&] {
        a.table = table_d.p + (call++ % sets) * rows * (1 + pages);
        check(xqcuda::paged_attention(a, splits, our_ws.p, nullptr), "our paged_attention");
      };

      FlashInferPlan plan(indptr, static_cast<uint32_t>(rows));
      flashinfer::paged_kv_t<__nv_bfloat16, int32_t> kv(kKvHeads, kPage, kHeadDim, static_cast<uint32_t>(rows),
                                                        flashinfer::QKVLayout::kNHD, k_pool.p, v_pool.p, indices_d.p,
                                                        indptr_d.p, last_d.p);
      Params params(q16.p, /*q_rope_offset=*/nullptr, kv, out_fi.p, /*lse=*/nullptr, /*alibi=*/nullptr, kHeads,
                    /*q_stride_n=*/kHeads * kHeadDim, /*q_stride_h=*/kHeadDim, /*window_left=*/-1,
                    /*logits_soft_cap=*/0.f, scale, /*rope_scale=*/1.f, /*rope_theta=*/1e4f);
      __nv_bfloat16* tmp_v = nullptr;
      float* tmp_s = nullptr;
      params.request_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(plan.int_ws.p, plan.info.request_indices_offset);
      params.kv_tile_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(plan.int_ws.p, plan.info.kv_tile_indices_offset);
      params.o_indptr = flashinfer::GetPtrFromBaseOffset<int32_t>(plan.int_ws.p, plan.info.o_indptr_offset);
      params.kv_chunk_size_ptr =
          flashinfer::GetPtrFromBaseOffset<int32_t>(plan.int_ws.p, plan.info.kv_chunk_size_ptr_offset);
      if (plan.info.split_kv) {
        tmp_v = flashinfer::GetPtrFromBaseOffset<__nv_bfloat16>(plan.float_ws.p, plan.info.v_offset);
        tmp_s = flashinfer::GetPtrFromBaseOffset<float>(plan.float_ws.p, plan.info.s_offset);
      }
      params.padded_batch_size = static_cast<uint32_t>(plan.info.padded_batch_size);
      bool fi_pdl = prop.major >= 9;
      auto theirs = [&] {
        params.paged_kv.indices = indices_d.p + (call++ % sets) * rows * pages;
        check(flashinfer::BatchDecodeWithPagedKVCacheDispatched<kHeadDim, kNoRope, Variant>(params, tmp_v, tmp_s,
                                                                                          fi_pdl, nullptr),
              "FlashInfer BatchDecodeWithPagedKVCache");
      };

      FlashInferPrefillPlan tc_plan(qo_indptr, indptr, static_cast<uint32_t>(rows), static_cast<uint32_t>(rows),
                                    /*uniform_q_len=*/1);
      PrefillParams tc = prefill_params(q16.p, kv, qo_indptr_d.p, out_tc.p, scale);
      __nv_bfloat16* tc_tmp_v = nullptr;
      float* tc_tmp_s = nullptr;
      tc_plan.point(tc, &tc_tmp_v, &tc_tmp_s);
      auto tensor_cores = [&] {
        tc.paged_kv.indices = indices_d.p + (call++ % sets) * rows * pages;
        check(flashinfer_prefill<flashinfer::MaskMode::kNone>(tc_plan.info.cta_tile_q, tc, tc_tmp_v, tc_tmp_s, fi_pdl),
              "FlashInfer BatchPrefillWithPagedKVCache (tensor-core decode)");
      };

      // Agreement first (outputs poisoned, then one call each on set 0).
      const size_t n_out = static_cast<size_t>(rows * kHeads * kHeadDim);
      check(cudaMemset(out_ours.p, 0xff, n_out * 4), "poison");
      check(cudaMemset(out_fi.p, 0xff, n_out * 2), "poison");
      check(cudaMemset(out_tc.p, 0xff, n_out * 2), "poison");
      call = 0;
      ours();
      call = 0;
      theirs();
      call = 0;
      tensor_cores();
      check(cudaDeviceSynchronize(), "first calls");
      const std::vector<float> mine = out_ours.get(n_out);
      const double err = rel_l2(to_floats(out_fi, n_out), mine), err_tc = rel_l2(to_floats(out_tc, n_out), mine);
      const bool agree = agrees(err) && agrees(err_tc);
      failures += !agree;

      double us[2][3];  // [pdl on, off][ours, FlashInfer CUDA cores, FlashInfer tensor cores]
      for (int off = 0; off < 2; ++off) {
        xqcuda::pdl_override(off ? 0 : -1);
        fi_pdl = !off && prop.major >= 9;
        us[off][0] = us_per_call(ours);
        us[off][1] = us_per_call(theirs);
        us[off][2] = us_per_call(tensor_cores);
      }
      xqcuda::pdl_override(-1);
      const double gb = static_cast<double>(rows * keys) * kKvHeads * kHeadDim * 2 * 2 / 1e9;  // K and V bytes
      std::printf("%3lld rows x %4lld keys (%3lld sets): PDL on: ours %7.2f us (%4.0f GB/s, %2d splits), FI %7.2f us "
                  "(split %s) %.2fx, FI-TC %7.2f us (split %s) %.2fx; PDL off: ours %7.2f, FI %7.2f %.2fx, FI-TC "
                  "%7.2f %.2fx; rel diff %.1e / %.1e%s\n",
                  static_cast<long long>(rows), static_cast<long long>(keys), static_cast<long long>(sets), us[0][0],
                  gb / us[0][0] * 1e6, splits, us[0][1], plan.info.split_kv ? "on" : "off", us[0][1] / us[0][0],
                  us[0][2], tc_plan.info.split_kv ? "on" : "off", us[0][2] / us[0][0], us[1][0], us[1][1],
                  us[1][1] / us[1][0], us[1][2], us[1][2] / us[1][0], err, err_tc,
                  agree ? "" : "  DISAGREE (bound 1e-2)");
      std::fflush(stdout);
    }
  if (failures) std::printf("%d shape(s) where an output of FlashInfer's disagrees with ours\n", failures);
  return failures ? 1 : 0;
}

// FlashInfer reports a refused plan or launch by throwing (FLASHINFER_ERROR):
// said, with a non-zero exit, instead of an abort.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flashinfer_decode: %s\n", e.what());
    return 1;
  }
}
