// split_k_launch.cuh: launching the split-K decode attention (ATTENTION's
// split path, decode_attention.cu; PAGED_ATTENTION's decode rows,
// paged_attention.cu): which kernel (the dim-lanes kernel of
// split_k_dim_lanes.cuh, wide or narrow, where it applies; else the
// key-per-lane kernel of split_k_attention.cuh), its template arguments from
// the shape, and the merge kernel where the launch does not merge its own
// splits.
#pragma once

#include "split_k_attention.cuh"
#include "split_k_dim_lanes.cuh"

namespace xqcuda {
namespace split_k {

// Everything a launch needs but the key lookup. q is [T, H, D] (F32, or
// BF16 with BF16 K/V where the caller's Q_LIKE_KV says so), k and v the
// cache or pools, out [T, H, D] of out_type; max_keys bounds every row's
// key count.
struct Launch {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  bool kv_bf16 = false;
  int64_t T = 0, H = 0, KVH = 0, D = 0;
  int64_t max_keys = 0;
  float scale = 1.f;
  void* out = nullptr;
  DType out_type = DType::F32;
};

template <int EPL, int G, bool KV_BF16, bool Q_BF16, class Keys>
cudaError_t launch_typed(const Launch& a, const Keys& keys, int splits, float* part_acc, float* part_ml,
                         bool one_pass, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(a.T), static_cast<unsigned>(a.KVH), static_cast<unsigned>(splits));
  const size_t smem = (static_cast<size_t>(G) * a.D + static_cast<size_t>(kWarps) * G * (2 + 32 * EPL)) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(attention_kernel<EPL, G, KV_BF16, Q_BF16, Keys>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  return launch_pdl(attention_kernel<EPL, G, KV_BF16, Q_BF16, Keys>, grid, dim3(kWarps * 32), smem, s, a.q, a.k, a.v,
                    keys, a.H, a.KVH, a.D, a.scale, split_k_keys_per_split(a.max_keys, splits), splits, a.out,
                    a.out_type, part_acc, part_ml, one_pass);
}

// Q_LIKE_KV: q has the K/V dtype (ATTENTION) rather than F32 (PAGED_ATTENTION);
// only the pairs a caller can ask for are compiled.
template <int EPL, int G, bool Q_LIKE_KV, class Keys>
cudaError_t launch_dtypes(const Launch& a, const Keys& keys, int splits, float* pa, float* pm, bool one,
                          cudaStream_t s) {
  if (a.kv_bf16) return launch_typed<EPL, G, true, Q_LIKE_KV, Keys>(a, keys, splits, pa, pm, one, s);
  return launch_typed<EPL, G, false, false, Keys>(a, keys, splits, pa, pm, one, s);
}

template <int EPL, bool Q_LIKE_KV, class Keys>
cudaError_t launch_group(const Launch& a, const Keys& keys, int splits, float* pa, float* pm, bool one,
                         cudaStream_t s) {
  const int64_t g = a.H / a.KVH;
  if (g <= 1) return launch_dtypes<EPL, 1, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s);
  if (g <= 2) return launch_dtypes<EPL, 2, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s);
  if (g <= 4) return launch_dtypes<EPL, 4, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s);
  if (g <= 8) return launch_dtypes<EPL, 8, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s);
  return launch_dtypes<EPL, 16, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s);
}

template <int D, int G>
constexpr size_t dim_lanes_smem() {
  return static_cast<size_t>(kWarps) * G * (2 + D) * sizeof(float);
}

// CTAs of one dim-lanes instantiation the device holds at once, cached per
// instantiation (a static in this function template: the kernels' pointer
// types are alike, so the cache is keyed by the template arguments) and
// computed once (the provider drives one device).
template <int D, int G, bool Q_BF16, class Keys, class Size>
int64_t dim_lanes_resident_ctas() {
  static const int64_t n = [] {
    int dev = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const auto kernel = dim_lanes_kernel<D, G, Q_BF16, Keys, Size::kSteps, Size::kMinCtasPerSm>;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, dim_lanes_smem<D, G>()) !=
        cudaSuccess)
      per_sm = 0;
    return static_cast<int64_t>(per_sm) * sms;
  }();
  return n;
}

template <int D, int G, bool Q_BF16, class Keys, class Size>
cudaError_t launch_dim_lanes_sized(const Launch& a, const Keys& keys, int splits, float* part_acc, float* part_ml,
                                   bool one_pass, cudaStream_t s) {
  const auto kernel = dim_lanes_kernel<D, G, Q_BF16, Keys, Size::kSteps, Size::kMinCtasPerSm>;
  const dim3 grid(static_cast<unsigned>(a.T), static_cast<unsigned>(a.KVH), static_cast<unsigned>(splits));
  return launch_pdl(kernel, grid, dim3(kWarps * 32), dim_lanes_smem<D, G>(), s, a.q,
                    static_cast<const __nv_bfloat16*>(a.k), static_cast<const __nv_bfloat16*>(a.v), keys, a.H, a.KVH,
                    a.scale, split_k_keys_per_split(a.max_keys, splits), splits, a.out, a.out_type, part_acc, part_ml,
                    one_pass);
}

// Launches a dim-lanes kernel and returns true, or returns false for the
// key-per-lane kernel. The automatic rule (split_k_plan.hpp): the wide size
// where the launch's CTAs fit one wave of it, past that the narrow one
// (groups up to 4) or the key-per-lane kernel (groups above 4). Why: the
// wide size holds 3 CTAs per SM (168 registers) against the key-per-lane
// kernel's 4 (128); on an H200 it was 1.1-1.5x faster at up to 320 CTAs (1-8
// rows, every length; 32 rows of 128 keys) but 0.84-0.97x at 512 (32 rows
// of 384-4096 keys in two splits: 1.3 of its waves, the last a tail), where
// the narrow size (4 per SM) was 1.06-1.21x (docs/cuda.md).
template <int D, int G, bool Q_BF16, class Keys>
bool launch_dim_lanes_typed(const Launch& a, const Keys& keys, int splits, float* part_acc, float* part_ml,
                            bool one_pass, cudaStream_t s, cudaError_t* e) {
  using Wide = DimLanesWide<G>;
  const SplitKKernel wanted = split_k_kernel_wanted();
  const bool narrow_exists = G <= 4;
  bool wide = wanted == SplitKKernel::kDimLanes || (wanted == SplitKKernel::kDimLanesNarrow && !narrow_exists);
  if (wanted == SplitKKernel::kAuto) {
    wide = a.T * a.KVH * splits <= dim_lanes_resident_ctas<D, G, Q_BF16, Keys, Wide>();
    if (!wide && !narrow_exists) return false;
  }
  if (wide) {
    *e = launch_dim_lanes_sized<D, G, Q_BF16, Keys, Wide>(a, keys, splits, part_acc, part_ml, one_pass, s);
  } else if constexpr (G <= 4) {
    *e = launch_dim_lanes_sized<D, G, Q_BF16, Keys, DimLanesNarrow>(a, keys, splits, part_acc, part_ml, one_pass, s);
  }
  return true;
}

// The dim-lanes kernels take BF16 K/V with D 64 or 128 and GQA groups up to
// 8 (registers: q and the accumulators are 8 G floats each per lane).
template <bool Q_LIKE_KV, class Keys>
bool launch_dim_lanes(const Launch& a, const Keys& keys, int splits, float* pa, float* pm, bool one, cudaStream_t s,
                      cudaError_t* e) {
  const int64_t g = a.H / a.KVH;
  if (!a.kv_bf16 || (a.D != 64 && a.D != 128) || g > 8 || split_k_kernel_wanted() == SplitKKernel::kKeyPerLane)
    return false;
  if (a.D == 64) {
    if (g <= 1) return launch_dim_lanes_typed<64, 1, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
    if (g <= 2) return launch_dim_lanes_typed<64, 2, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
    if (g <= 4) return launch_dim_lanes_typed<64, 4, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
    return launch_dim_lanes_typed<64, 8, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
  }
  if (g <= 1) return launch_dim_lanes_typed<128, 1, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
  if (g <= 2) return launch_dim_lanes_typed<128, 2, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
  if (g <= 4) return launch_dim_lanes_typed<128, 4, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
  return launch_dim_lanes_typed<128, 8, Q_LIKE_KV>(a, keys, splits, pa, pm, one, s, e);
}

// Enqueues the split kernel and, for splits > 1, the merge kernel on `stream`
// unless the last CTA merges (the default ending, split_k_plan.hpp, with at
// most kSplitKMaxTickets CTAs per split).
// `workspace`: split_k_workspace(T, H, D, splits) bytes (null for one
// split). The caller checked the shape: D % 8 == 0, D <= 256, H / KVH <= 16,
// 16-byte aligned K/V storage.
template <bool Q_LIKE_KV, class Keys>
cudaError_t attention(const Launch& a, const Keys& keys, int splits, void* workspace, cudaStream_t stream) {
  if (a.T <= 0) return cudaSuccess;
  float* part_acc = static_cast<float*>(workspace);
  float* part_ml = splits > 1 ? part_acc + a.T * a.H * splits * a.D : nullptr;
  const bool one = split_k_last_cta_merges() && a.T * a.KVH <= kSplitKMaxTickets;
  cudaError_t e = cudaSuccess;
  if (!launch_dim_lanes<Q_LIKE_KV>(a, keys, splits, part_acc, part_ml, one, stream, &e)) {
    if (a.D <= 32) e = launch_group<1, Q_LIKE_KV>(a, keys, splits, part_acc, part_ml, one, stream);
    else if (a.D <= 64) e = launch_group<2, Q_LIKE_KV>(a, keys, splits, part_acc, part_ml, one, stream);
    else if (a.D <= 128) e = launch_group<4, Q_LIKE_KV>(a, keys, splits, part_acc, part_ml, one, stream);
    else e = launch_group<8, Q_LIKE_KV>(a, keys, splits, part_acc, part_ml, one, stream);
  }
  if (e != cudaSuccess || splits <= 1 || one) return e;
  return launch_pdl(combine_kernel<Keys>, dim3(static_cast<unsigned>(a.T * a.H)), dim3(128), 0, stream, part_acc,
                    part_ml, splits, a.H, a.D, a.out, a.out_type, keys);
}

}  // namespace split_k
}  // namespace xqcuda
