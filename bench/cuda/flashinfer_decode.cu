// flashinfer_decode.cu: issue 9 asks that where a well-kept kernel library
// already does an op well (for attention, FlashInfer's header-only kernels)
// it be measured against ours and the faster taken. This is that measurement
// for decode attention over a paged KV cache, one binary, one GPU run:
//
//   ours        xqcuda::paged_attention, the launcher behind the engine's
//               PAGED_ATTENTION (its default kernel choice and split rule,
//               plugins/cuda/src/split_k_launch.cuh); q F32, output F32;
//   flashinfer  BatchDecodeWithPagedKVCacheDispatched (include/flashinfer/
//               attention/decode.cuh) after DecodePlan (scheduler.cuh), as
//               FlashInfer's own BatchDecodeWithPagedKVCacheRun drives it
//               (csrc/batch_decode.cu): its work estimation chooses split-KV
//               and the chunk size; q and output BF16, PDL off (our launch
//               here has none either).
//
// Shapes: Llama-3.1-8B's heads (32 query over 8 KV heads, D 128), BF16 K and
// V in 16-slot pages laid out [pages, 16, 8, 128] (NHD: the layout both
// read, so the same pool serves both), 1 to 128 decode rows of 128 to 4096
// keys each on shuffled pages. Before timing, both outputs are compared
// (relative L2 error <= 1e-2: FlashInfer rounds q and its output to BF16,
// ours keeps F32; q's values are BF16-representable so both read the same q).
// Time: CUDA events over 100 back-to-back calls after 5, per call; the plan
// is made once per shape outside the timing (FlashInfer plans on the host
// once per step; vLLM does the same), and our split count likewise.
//
//   flashinfer_decode [--rows 1,8,32,128] [--keys 128,1024,4096]
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
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <flashinfer/attention/decode.cuh>
#include <flashinfer/attention/default_decode_params.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>

#include "paged_attention.hpp"

namespace {

constexpr uint32_t kHeads = 32, kKvHeads = 8, kGroup = kHeads / kKvHeads, kHeadDim = 128, kPage = 16;
using Params = flashinfer::BatchDecodeParams<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, int32_t>;
using Variant = flashinfer::DefaultAttention</*custom_mask=*/false, /*sliding_window=*/false,
                                             /*logits_soft_cap=*/false, /*alibi=*/false>;
constexpr auto kNoRope = flashinfer::PosEncodingMode::kNone;

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

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> row_counts = {1, 8, 32, 128}, key_counts = {128, 1024, 4096};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rows") row_counts = parse_list(argv[i + 1]);
    else if (flag == "--keys") key_counts = parse_list(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: flashinfer_decode [--rows 1,8,32,128] [--keys 128,1024,4096]\n");
      return 2;
    }
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "flashinfer_decode: no CUDA device\n");
    return 3;
  }
  const int64_t max_rows = *std::max_element(row_counts.begin(), row_counts.end());
  const int64_t max_keys = *std::max_element(key_counts.begin(), key_counts.end());
  const int64_t max_pages = (max_keys + kPage - 1) / kPage, pool_pages = max_rows * max_pages;
  const int64_t page_elems = int64_t{kPage} * kKvHeads * kHeadDim, q_elems = max_rows * kHeads * kHeadDim;
  std::printf("device: %s (%d SMs); FlashInfer decode vs ours, %u/%u heads, D %u, BF16 K/V pages of %u\n", prop.name,
              prop.multiProcessorCount, kHeads, kKvHeads, kHeadDim, kPage);

  // Pools and q, filled once: random BF16 values (q kept BF16-representable).
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.f, 1.f);
  Dev<__nv_bfloat16> k_pool(pool_pages * page_elems), v_pool(pool_pages * page_elems);
  {
    std::vector<__nv_bfloat16> chunk(1 << 22);
    for (auto& x : chunk) x = __float2bfloat16(normal(rng));
    for (Dev<__nv_bfloat16>* pool : {&k_pool, &v_pool})
      for (int64_t at = 0; at < pool_pages * page_elems; at += static_cast<int64_t>(chunk.size())) {
        const int64_t n = std::min<int64_t>(static_cast<int64_t>(chunk.size()), pool_pages * page_elems - at);
        check(cudaMemcpy(pool->p + at, chunk.data(), n * 2, cudaMemcpyHostToDevice), "pool upload");
      }
  }
  std::vector<float> q_h(static_cast<size_t>(q_elems));
  std::vector<__nv_bfloat16> q16_h(q_h.size());
  for (size_t i = 0; i < q_h.size(); ++i) q16_h[i] = __float2bfloat16(q_h[i] = bf16_round(normal(rng)));
  Dev<float> q(q_h.size()), out_ours(q_h.size());
  Dev<__nv_bfloat16> q16(q_h.size()), out_fi(q_h.size());
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
      // Ours: per row its position (keys - 1) then its block ids (n_seq = 0, paged_attention.hpp).
      std::vector<int32_t> table(static_cast<size_t>(rows * (1 + pages)));
      // FlashInfer: CSR page lists and the last page's fill.
      std::vector<int32_t> indptr(static_cast<size_t>(rows + 1)), indices, last_len(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        table[static_cast<size_t>(r * (1 + pages))] = static_cast<int32_t>(keys - 1);
        for (int64_t p = 0; p < pages; ++p) {
          const int32_t page = shuffled[static_cast<size_t>(r * max_pages + p)];
          table[static_cast<size_t>(r * (1 + pages) + 1 + p)] = page;
          indices.push_back(page);
        }
        indptr[static_cast<size_t>(r + 1)] = static_cast<int32_t>((r + 1) * pages);
        last_len[static_cast<size_t>(r)] = static_cast<int32_t>(keys - (pages - 1) * kPage);
      }
      Dev<int32_t> table_d(table.size()), indptr_d(indptr.size()), indices_d(indices.size()), last_d(last_len.size());
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
      auto ours = [&] { check(xqcuda::paged_attention(a, splits, our_ws.p, nullptr), "our paged_attention"); };

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
      auto theirs = [&] {
        check(flashinfer::BatchDecodeWithPagedKVCacheDispatched<kHeadDim, kNoRope, Variant>(params, tmp_v, tmp_s,
                                                                                          /*enable_pdl=*/false, nullptr),
              "FlashInfer BatchDecodeWithPagedKVCache");
      };

      // Agreement first (outputs poisoned, then one call each).
      const size_t n_out = static_cast<size_t>(rows * kHeads * kHeadDim);
      check(cudaMemset(out_ours.p, 0xff, n_out * 4), "poison");
      check(cudaMemset(out_fi.p, 0xff, n_out * 2), "poison");
      ours();
      theirs();
      check(cudaDeviceSynchronize(), "first calls");
      const std::vector<float> mine = out_ours.get(n_out);
      std::vector<float> fi(n_out);
      {
        const auto raw = out_fi.get(n_out);
        for (size_t i = 0; i < n_out; ++i) fi[i] = __bfloat162float(raw[i]);
      }
      const double err = rel_l2(fi, mine);
      const bool agree = std::isfinite(err) && err <= 1e-2;
      failures += !agree;

      const double us_ours = us_per_call(ours), us_fi = us_per_call(theirs);
      const double gb = static_cast<double>(rows * keys) * kKvHeads * kHeadDim * 2 * 2 / 1e9;  // K and V bytes
      std::printf("%3lld rows x %4lld keys: ours %8.2f us (%4.0f GB/s, %2d splits), FlashInfer %8.2f us (%4.0f GB/s, "
                  "split-KV %s, padded batch %lld); FlashInfer / ours %.2fx; rel diff %.2e%s\n",
                  static_cast<long long>(rows), static_cast<long long>(keys), us_ours, gb / us_ours * 1e6, splits,
                  us_fi, gb / us_fi * 1e6, plan.info.split_kv ? "on" : "off",
                  static_cast<long long>(plan.info.padded_batch_size), us_fi / us_ours, err,
                  agree ? "" : "  DISAGREE (bound 1e-2)");
      std::fflush(stdout);
    }
  if (failures) std::printf("%d shape(s) where the two outputs disagree\n", failures);
  return failures ? 1 : 0;
}
