// w4_gemv_tma_harness.cu: a standalone check and benchmark of the W4A16 GEMVs
// on the "cuda-w4a16-mma" layout, for a GPU machine without the project's
// Debian libraries (no plugin build there): the TMA-ring GEMV v4
// (plugins/cuda/src/w4a16_gemv_tma.cu) against a double-precision CPU
// reference, and v4 vs the fused mma GEMM (w4a16_gemm.cu), the streaming
// GEMV v3 (w4a16_gemv_stream.cu), bf16 cuBLAS and the copy bandwidth in one
// process. scripts/gpu-w4-gemv-tma.sh builds and runs it (nvcc alone).
//
// check: every case of tests/cuda/test_w4a16_gemv.cpp and more (BF16/F16,
// groups 16/32/64/128/per-channel, sym/asym, act-order through the column
// gather, odd N and K), M = 1..9, 12, 16, no bias / F32 bias / activation-type bias,
// in every split mode of the plan (the default, stream-K, n-block parts
// summed in a cluster where it fits, parts summed through the workspace),
// outputs poisoned with NaN, a second identical call compared bit for bit
// (the arrival counters reset), bounds as the plugin tests
// (||y - ref|| / ||ref|| <= 1e-2 BF16, 3e-3 F16); the fused GEMM's error on
// the same data is printed beside v4's.
// sweep: per shape and M, the default plan beside pure reads, ring-only
// probes and each split mode interleaved (W4T_SWEEP_STAGES=1: ring depths;
// W4T_SWEEP_PARTS=1: every part count a n-block, with and without a cluster).
// bench: K x N shapes at M = 1, 2, 4, 8, 16 (group 128, symmetric, BF16):
// median of 7 batches of 20 back-to-back calls (CUDA events), the weights
// rotated over copies >= 3x L2, as bench/cuda/bench_cuda.py; the weight
// stream (codes + bf16 scale words) as % of the copy bandwidth (1 GiB
// device-to-device copy, bytes read + written).
// trace (a build with -DXQ_W4T_TRACE, W4T_TRACE=1 in the script): per shape
// and M, one launch after an idle device and three back to back, each
// block's marks (globaltimer, ns) summarised as min / median / max over the
// blocks relative to the launch's first block start: where a call's time
// goes (PDL wait, first slot, math, flush), and the gap between launches.
// usage: w4_gemv_tma_harness check | bench [shapes] [ms] | sweep [shapes] [ms] | trace [shapes] [ms]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common.cuh"
#include "w4a16_gemv_stream.hpp"
#include "w4a16_gemv_tma.hpp"

namespace xqcuda {
#if defined(XQ_W4T_TRACE)
void w4_gemv_tma_set_trace(unsigned long long* buffer);  // w4a16_gemv_tma.cu, measurement builds
constexpr int kTraceStride = 96, kTraceSlots = 16;        // as there (trace_mark)
#endif
__device__ __forceinline__ uint4 w4gemv_load(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
}  // namespace xqcuda

using namespace xqcuda;

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                            \
    }                                                                                          \
  } while (0)

static std::mt19937 rng(1234);
static float uni(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
static int unii(int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); }

static uint16_t to_bits(float v, bool f16) {
  if (f16) return __half_as_ushort(__float2half_rn(v));
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
static float from_bits(uint16_t b, bool f16) {
  if (f16) return __half2float(__ushort_as_half(b));
  return __bfloat162float(__ushort_as_bfloat16(b));
}

struct Dev {
  void* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t bytes) : n(bytes) { CK(cudaMalloc(&p, std::max<size_t>(bytes, 16))); }
  ~Dev() { cudaFree(p); }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

static W4Layout layout_for(int64_t N, int64_t K, int gs) {
  W4Layout L;
  L.N = N;
  L.K = K;
  L.n_tiles = (N + 15) / 16;
  L.n_blocks = (L.n_tiles + 7) / 8;
  L.chunks = (K + 63) / 64;
  const int64_t G = gs ? (K + gs - 1) / gs : 1;
  L.n_groups = G;
  L.gs_shift = 31;
  if (gs && G > 1) {
    L.gs_shift = 0;
    while ((1 << L.gs_shift) < gs) ++L.gs_shift;
  }
  return L;
}

struct Case {
  bool f16;
  int group;  // 0 = per-channel
  bool asym, act_order;
  int64_t K, N;
};

static int g_fail = 0, g_pass = 0;


static void check_case(const Case& c) {
  const int64_t N = c.N, K = c.K, gs = c.group ? c.group : K, G = (K + gs - 1) / gs;
  W4Layout L = layout_for(N, K, c.group);
  std::vector<int8_t> codes(N * K), zp;
  for (auto& v : codes) v = static_cast<int8_t>(unii(-8, 7));
  std::vector<float> scales(N * G);
  for (auto& s : scales) s = uni(0.002f, 0.02f);
  if (c.asym) {
    zp.resize(N * G);
    for (auto& z : zp) z = static_cast<int8_t>(unii(-8, 7));
  }
  std::vector<int32_t> g_idx(K), perm;
  for (int64_t k = 0; k < K; ++k) g_idx[k] = static_cast<int32_t>(k / gs);
  if (c.act_order && G > 1) {
    std::vector<int32_t> p(K);
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    for (int64_t i = 0; i < K; ++i) g_idx[p[i]] = static_cast<int32_t>(i / gs);
    perm.resize(K);
    std::iota(perm.begin(), perm.end(), 0);
    std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return g_idx[a] < g_idx[b]; });
  }
  std::vector<double> dense(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = g_idx[k];
      dense[n * K + k] = double(codes[n * K + k] - (c.asym ? zp[n * G + g] : 0)) * scales[n * G + g];
    }
  Dev d_codes(N * K), d_scales(N * G * 4), d_zp(std::max<int64_t>(1, N * G)), d_perm(K * 4);
  CK(cudaMemcpy(d_codes.p, codes.data(), N * K, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d_scales.p, scales.data(), N * G * 4, cudaMemcpyHostToDevice));
  if (c.asym) CK(cudaMemcpy(d_zp.p, zp.data(), N * G, cudaMemcpyHostToDevice));
  if (!perm.empty()) CK(cudaMemcpy(d_perm.p, perm.data(), K * 4, cudaMemcpyHostToDevice));
  const int32_t* dperm = perm.empty() ? nullptr : d_perm.as<int32_t>();
  Dev qw(L.n_blocks * 8 * L.chunks * 32 * 16), szb(G * L.n_blocks * 64 * 8), szh(G * L.n_blocks * 64 * 8);
  CK(w4_pack(L, d_codes.as<int8_t>(), dperm, qw.as<uint4>(), 0));
  CK(w4_pack_scales(L, d_scales.as<float>(), c.asym ? d_zp.as<int8_t>() : nullptr, szb.as<uint2>(), szh.as<uint2>(),
                    0));
  const uint2* sz = c.f16 ? szh.as<uint2>() : szb.as<uint2>();
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int64_t K_pad = L.chunks * 64;
  const double bound = c.f16 ? 3e-3 : 1e-2;
  for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16}) {  // M > 8: two token tiles
    for (int bias_kind : {0, 1, 2}) {
      if (bias_kind != 0 && M != 3 && M != 8 && M != 16) continue;
      std::vector<uint16_t> xb(M * K);
      std::vector<double> xr(M * K);
      for (int64_t i = 0; i < M * K; ++i) {
        xb[i] = to_bits(uni(-1.f, 1.f), c.f16);
        xr[i] = from_bits(xb[i], c.f16);
      }
      std::vector<float> bias(N), bias_r(N);
      std::vector<uint16_t> biasb(N);
      for (int64_t n = 0; n < N; ++n) {
        bias[n] = uni(-0.5f, 0.5f);
        biasb[n] = to_bits(bias[n], c.f16);
        bias_r[n] = bias_kind == 1 ? bias[n] : from_bits(biasb[n], c.f16);
      }
      Dev dx(M * K * 2), dxs(M * K_pad * 2), dy(M * N * 2), db(N * 4);
      CK(cudaMemcpy(dx.p, xb.data(), M * K * 2, cudaMemcpyHostToDevice));
      if (bias_kind == 1) CK(cudaMemcpy(db.p, bias.data(), N * 4, cudaMemcpyHostToDevice));
      if (bias_kind == 2) CK(cudaMemcpy(db.p, biasb.data(), N * 2, cudaMemcpyHostToDevice));
      const DType T = c.f16 ? DType::F16 : DType::BF16;
      CK(gather_columns(dx.p, T, M, K, K, dperm, dxs.p, K_pad, 0));
      const void* bias_p = bias_kind ? db.p : nullptr;
      const DType bias_t = bias_kind == 1 ? DType::F32 : T;
      std::vector<double> ref(M * N);
      // The reference over the host's cores (at M = 16 on the large cases one thread took minutes).
      const unsigned n_threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
      std::vector<std::thread> pool;
      for (unsigned th = 0; th < n_threads; ++th)
        pool.emplace_back([&, th] {
          for (int64_t n = th; n < N; n += n_threads)
            for (int64_t m = 0; m < M; ++m) {
              double acc = bias_kind ? bias_r[n] : 0.0;
              const double* w = &dense[n * K];
              const double* x = &xr[m * K];
              for (int64_t k = 0; k < K; ++k) acc += x[k] * w[k];
              ref[m * N + n] = acc;
            }
        });
      for (std::thread& t : pool) t.join();
      auto rel = [&](const std::vector<uint16_t>& yb, int* nans) {
        double num = 0, den = 0;
        *nans = 0;
        for (int64_t i = 0; i < M * N; ++i) {
          const double v = from_bits(yb[i], c.f16);
          if (std::isnan(v)) ++*nans;
          num += (v - ref[i]) * (v - ref[i]);
          den += ref[i] * ref[i];
        }
        return std::sqrt(num / std::max(den, 1e-30));
      };
      // The fused GEMM on the same data, for its error.
      std::vector<uint16_t> y1(M * N), y2(M * N), yf(M * N);
      const W4GemmPlan fp = w4_gemm_plan(L, M, sms);
      Dev fpart(std::max<int64_t>(1, fp.workspace_floats) * 4);
      CK(cudaMemset(dy.p, 0xFF, M * N * 2));
      CK(w4_gemm(L, fp, qw.as<uint4>(), sz, c.f16, dxs.p, K_pad, M, dy.p, T, bias_p, bias_t, fpart.as<float>(), 0));
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(yf.data(), dy.p, M * N * 2, cudaMemcpyDeviceToHost));
      // v4 in each split mode (the default plan, stream-K, n-block parts summed in a cluster where
      // it fits, parts summed through the workspace), twice each:
      // both fully written, the same bytes.
      for (W4GemvTmaSplit split : {W4GemvTmaSplit::kAuto, W4GemvTmaSplit::kStreamK, W4GemvTmaSplit::kParts,
                                   W4GemvTmaSplit::kPartsGlobal}) {
        const W4GemvTmaPlan plan = w4_gemv_tma_plan(L, M, c.f16, sms, 0, 0, split);
        Dev part(std::max<int64_t>(1, plan.workspace_floats) * 4), cnt(std::max<int64_t>(1, plan.counters) * 4);
        CK(cudaMemset(cnt.p, 0, cnt.n));
        for (int call = 0; call < 2; ++call) {
          CK(cudaMemset(dy.p, 0xFF, M * N * 2));  // NaN in both formats
          CK(w4_gemv_tma(L, plan, qw.as<uint4>(), sz, c.f16, dxs.p, K_pad, M, dy.p, bias_p, bias_t,
                         part.as<float>(), cnt.as<int>(), 0));
          CK(cudaDeviceSynchronize());
          CK(cudaMemcpy(call ? y2.data() : y1.data(), dy.p, M * N * 2, cudaMemcpyDeviceToHost));
        }
        std::vector<int> zero(std::max<int64_t>(1, plan.counters));
        CK(cudaMemcpy(zero.data(), cnt.p, zero.size() * 4, cudaMemcpyDeviceToHost));
        const bool counters_reset = std::all_of(zero.begin(), zero.end(), [](int v) { return v == 0; });
        int nans = 0, fnans = 0;
        const double err = rel(y1, &nans), ferr = rel(yf, &fnans);
        const bool same = y1 == y2;
        const bool ok = nans == 0 && err <= bound && same && counters_reset;
        (ok ? g_pass : g_fail)++;
        if (!ok || M == 1 || M == 8 || M == 16)
          std::printf("%s %s g%d %s%s K=%lld N=%lld M=%lld bias=%d split=%d: v4 err %.2e (fused %.2e) nan=%d "
                      "same=%d counters0=%d blocks=%d per_cta=%lld parts=%d dsmem=%d\n",
                      ok ? "ok  " : "FAIL", c.f16 ? "f16 " : "bf16", c.group, c.asym ? "asym" : "sym",
                      c.act_order ? " actorder" : "", (long long)K, (long long)N, (long long)M, bias_kind,
                      static_cast<int>(split), err, ferr, nans, same, counters_reset, plan.blocks,
                      (long long)plan.per_cta, plan.parts, plan.dsmem ? 1 : 0);
      }
    }
  }
}

// ---- bench -----------------------------------------------------------------
__global__ void k_fill(uint32_t* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = h;
  }
}
__global__ void k_fill_sz(uint2* p, int64_t n) {  // bf16 scale 0.01, zb 136 (symmetric)
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = make_uint2(0x3C243C24u, 0x43084308u);
}
__global__ void k_fill_bf16(uint16_t* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    const float v = (static_cast<float>(h >> 8) / 16777216.f - 0.5f) * 0.1f;
    p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
  }
}

// Pure reads of n 16-byte words, xor-reduced, four loads in flight a thread:
// grid-stride (per_block = 0: the blocks at one time read one window) or one
// contiguous range of per_block words per block (as v4's split).
__global__ void k_read(const uint4* __restrict__ p, int64_t n, int64_t per_block, uint32_t* out) {
  const bool ranges = per_block > 0;
  const int64_t lo = ranges ? blockIdx.x * per_block : 0, hi = ranges ? std::min(lo + per_block, n) : n;
  const int64_t stride = ranges ? (int64_t)blockDim.x : (int64_t)gridDim.x * blockDim.x;
  int64_t i = lo + threadIdx.x + (ranges ? 0 : blockIdx.x * (int64_t)blockDim.x);
  uint32_t acc = 0;
  for (; i + 3 * stride < hi; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = xqcuda::w4gemv_load(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < hi; i += stride) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *out = acc;
}

template <typename F>
static double time_us(F&& fn, int copies, int reps = 7, int min_batch = 20) {
  const int batch = std::max(min_batch, copies);
  for (int i = 0; i < std::max(3, copies); ++i) fn(i % copies);
  CK(cudaDeviceSynchronize());
  cudaEvent_t s, e;
  cudaEventCreate(&s);
  cudaEventCreate(&e);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(s);
    for (int i = 0; i < batch; ++i) fn(i % copies);
    cudaEventRecord(e);
    CK(cudaEventSynchronize(e));
    float ms = 0;
    cudaEventElapsedTime(&ms, s, e);
    t.push_back(ms * 1000.0 / batch);
  }
  cudaEventDestroy(s);
  cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

static int ncopies(double bytes, double l2) { return std::max(2, std::min(24, (int)std::ceil(3 * l2 / bytes))); }

static std::vector<std::pair<int64_t, int64_t>> parse_shapes(const char* s) {
  std::vector<std::pair<int64_t, int64_t>> v;
  std::string str(s);
  size_t pos = 0;
  while (pos < str.size()) {
    size_t end = str.find(',', pos);
    if (end == std::string::npos) end = str.size();
    std::string t = str.substr(pos, end - pos);
    const size_t x = t.find('x');
    v.push_back({std::atoll(t.substr(0, x).c_str()), std::atoll(t.substr(x + 1).c_str())});
    pos = end + 1;
  }
  return v;
}
static std::vector<int64_t> parse_ms(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoll(p));
    while (*p && *p != ',') ++p;
    if (*p) ++p;
  }
  return v;
}

static void bench(const char* shapes_s, const char* ms_s, bool sweep) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  const double l2 = prop.l2CacheSize;
  // Copy bandwidth.
  double copy_bw;
  {
    const size_t n = size_t(1) << 30;
    Dev a(n), b(n);
    CK(cudaMemset(a.p, 1, n));
    const double us = time_us([&](int) { CK(cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice, 0)); }, 1, 5, 5);
    copy_bw = 2.0 * n / (us * 1e-6) / 1e12;
  }
  std::printf("device: %s, %d SMs, L2 %.0f MB; copy bandwidth %.2f TB/s (read+write)\n", prop.name, sms, l2 / 1e6,
              copy_bw);
  cublasHandle_t h;
  const bool have_cublas = cublasCreate(&h) == CUBLAS_STATUS_SUCCESS;
  std::printf("| K | N | M | bf16 cuBLAS us | fused us (%% copy) | v3 us (%% copy) | v4 us (%% copy) | v4 x bf16 | v4 x fused |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& shape : parse_shapes(shapes_s)) {
    const int64_t K = shape.first, N = shape.second;
    W4Layout L = layout_for(N, K, 128);
    const int64_t qwords = L.n_blocks * 8 * L.chunks * 32, szw = L.n_groups * L.n_blocks * 64;
    const double wbytes = double(N) * K / 2 + double(N) * L.n_groups * 4;
    const int n4 = ncopies(wbytes, l2);
    std::vector<Dev*> qws, szs;
    for (int i = 0; i < n4; ++i) {
      qws.push_back(new Dev(qwords * 16));
      szs.push_back(new Dev(szw * 8));
      k_fill<<<1024, 256>>>(qws.back()->as<uint32_t>(), qwords * 4, 17u + i);
      k_fill_sz<<<1024, 256>>>(szs.back()->as<uint2>(), szw);
    }
    const int nb = have_cublas ? ncopies(double(N) * K * 2, l2) : 0;
    std::vector<Dev*> wbf;
    for (int i = 0; i < nb; ++i) {
      wbf.push_back(new Dev(N * K * 2));
      k_fill_bf16<<<1024, 256>>>(wbf.back()->as<uint16_t>(), N * K, 99u + i);
    }
    CK(cudaDeviceSynchronize());
    for (int64_t M : parse_ms(ms_s)) {
      const int64_t K_pad = L.chunks * 64;
      Dev x(M * K_pad * 2), y(M * N * 2);
      k_fill_bf16<<<256, 256>>>(x.as<uint16_t>(), M * K_pad, 5u);
      double t_bf = -1;
      if (have_cublas) {
        const float alpha = 1.f, beta = 0.f;
        t_bf = time_us(
            [&](int i) {
              // y^T [N][M] = W [N][K] x^T: column-major C (N x M) = A^T (N x K, A = W stored K-major) * B (K x M)
              cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, wbf[i]->p, CUDA_R_16BF,
                           (int)K, x.p, CUDA_R_16BF, (int)K_pad, &beta, y.p, CUDA_R_16BF, (int)N, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT);
            },
            nb);
      }
      const W4GemmPlan fp = w4_gemm_plan(L, M, sms);
      Dev fpart(std::max<int64_t>(1, fp.workspace_floats) * 4);
      const double t_f = time_us(
          [&](int i) {
            CK(w4_gemm(L, fp, qws[i]->as<uint4>(), szs[i]->as<uint2>(), false, x.p, K_pad, M, y.p, DType::BF16,
                       nullptr, DType::F32, fpart.as<float>(), 0));
          },
          n4);
      double t_3 = -1;  // v3 takes M <= 8 only
      if (M <= kW4GemvMaxM) {
        const W4GemvStreamPlan sp = w4_gemv_stream_plan(L, M, false, sms);
        Dev spart(std::max<int64_t>(1, sp.workspace_floats) * 4), scnt(std::max<int64_t>(1, sp.counters) * 4);
        CK(cudaMemset(scnt.p, 0, scnt.n));
        t_3 = time_us(
            [&](int i) {
              CK(w4_gemv_stream(L, sp, qws[i]->as<uint4>(), szs[i]->as<uint2>(), false, x.p, K_pad, M, y.p, nullptr,
                                DType::F32, spart.as<float>(), scnt.as<int>(), 0));
            },
            n4);
      }
      auto t4_of = [&](int stages, int bps, W4GemvTmaPlan* out) {
        const W4GemvTmaPlan tp = w4_gemv_tma_plan(L, M, false, sms, stages, bps);
        if (out) *out = tp;
        Dev tpart(std::max<int64_t>(1, tp.workspace_floats) * 4), tcnt(std::max<int64_t>(1, tp.counters) * 4);
        CK(cudaMemset(tcnt.p, 0, tcnt.n));
        return time_us(
            [&](int i) {
              CK(w4_gemv_tma(L, tp, qws[i]->as<uint4>(), szs[i]->as<uint2>(), false, x.p, K_pad, M, y.p, nullptr,
                             DType::F32, tpart.as<float>(), tcnt.as<int>(), 0));
            },
            n4);
      };
      W4GemvTmaPlan tp;
      const double t_4 = t4_of(0, 0, &tp);
      auto pct = [&](double us) { return 100.0 * wbytes / (us * 1e-6) / 1e12 / copy_bw; };
      std::printf("| %lld | %lld | %lld | %.1f | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f (%.0f%%) | %.2fx | %.2fx |\n",
                  (long long)K, (long long)N, (long long)M, t_bf, t_f, pct(t_f), t_3, pct(t_3), t_4, pct(t_4),
                  t_bf / t_4, t_f / t_4);
      std::fflush(stdout);
      if (sweep) {
        std::printf("  v4 default: blocks %d per_cta %lld parts %d dsmem %d stages %d smem %d B\n", tp.blocks,
                    (long long)tp.per_cta, tp.parts, tp.dsmem ? 1 : 0, tp.stages, tp.smem_bytes);
        Dev flag(4);
        const int64_t n16 = qwords;
        for (int bpsm : {8}) {
          const double t = time_us(
              [&](int i) {
                k_read<<<sms * bpsm, 256>>>(qws[i]->as<uint4>(), n16, 0, flag.as<uint32_t>());
              },
              n4);
          std::printf("  pure read, grid-stride, %d x 256 threads per SM: %.1f us (%.0f%%)\n", bpsm, t, pct(t));
        }
        for (int bpsm : {4}) {
          const int64_t per = (n16 + sms * bpsm - 1) / (sms * bpsm);
          const double t = time_us(
              [&](int i) {
                k_read<<<sms * bpsm, 256>>>(qws[i]->as<uint4>(), n16, per, flag.as<uint32_t>());
              },
              n4);
          std::printf("  pure read, one contiguous range per block, %d blocks per SM: %.1f us (%.0f%%)\n", bpsm, t,
                      pct(t));
        }
        auto t4x = [&](int stages, int bps, int probe, W4GemvTmaSplit split = W4GemvTmaSplit::kAuto, int parts = 0) {
          W4GemvTmaPlan q = w4_gemv_tma_plan(L, M, false, sms, stages, bps, split, parts);
          if (parts > 0 && q.parts != parts) return;  // that many parts do not fit
          q.probe = probe;
          Dev tpart(std::max<int64_t>(1, q.workspace_floats) * 4), tcnt(std::max<int64_t>(1, q.counters) * 4);
          CK(cudaMemset(tcnt.p, 0, tcnt.n));
          const double t = time_us(
              [&](int i) {
                CK(w4_gemv_tma(L, q, qws[i]->as<uint4>(), szs[i]->as<uint2>(), false, x.p, K_pad, M, y.p, nullptr,
                               DType::F32, tpart.as<float>(), tcnt.as<int>(), 0));
              },
              n4);
          static const char* const kSplitNames[] = {"auto", "stream-K", "parts", "parts-global"};
          std::printf("  v4 split=%s stages=%d blocks/SM<=%d%s (grid %d, parts %d, dsmem %d, %lld chunks a block, "
                      "smem %d; clusters resident %d): %.1f us (%.0f%%)\n",
                      kSplitNames[static_cast<int>(split)], q.stages, bps, probe ? " PROBE(no math)" : "", q.blocks,
                      q.parts, q.dsmem ? 1 : 0, (long long)q.per_cta, q.smem_bytes, q.clusters_resident, t, pct(t));
          std::fflush(stdout);
        };
        t4x(0, 0, 1, W4GemvTmaSplit::kStreamK);  // the stream-K plan's ring
        t4x(0, 0, 1, W4GemvTmaSplit::kParts);
        if (std::getenv("W4T_SWEEP_STAGES"))
          for (int st : {2, 3, 4, 6}) t4x(st, 0, 0);
        for (int round = 0; round < 2; ++round) {  // the split modes, interleaved
          t4x(0, 0, 0, W4GemvTmaSplit::kAuto);
          t4x(0, 0, 0, W4GemvTmaSplit::kStreamK);
          t4x(0, 0, 0, W4GemvTmaSplit::kParts);
          t4x(0, 0, 0, W4GemvTmaSplit::kPartsGlobal);
        }
        if (std::getenv("W4T_SWEEP_PARTS"))  // every part count that fits, in a cluster where it can, else not
          for (int parts = 1; parts <= 8; ++parts) {
            t4x(0, 0, 0, W4GemvTmaSplit::kParts, parts);
            t4x(0, 0, 0, W4GemvTmaSplit::kPartsGlobal, parts);
          }
      }
    }
    for (auto* d : qws) delete d;
    for (auto* d : szs) delete d;
    for (auto* d : wbf) delete d;
  }
  if (have_cublas) cublasDestroy(h);
}

#if defined(XQ_W4T_TRACE)
// The marks of w4a16_gemv_tma.cu (trace_mark).
static const char* const kMarkNames[8] = {"block start",       "producer past PDL wait", "sum warp: 1st slot full",
                                          "warp 0 past PDL wait", "warp 0: 1st slot ready", "warp 0: math done",
                                          "warp 0: flushed",    "warp 7: flushed"};

static void trace(const char* shapes_s, const char* ms_s) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  constexpr int kLaunches = 4;  // one after an idle device, then three back to back
  for (const auto& shape : parse_shapes(shapes_s)) {
    const int64_t K = shape.first, N = shape.second;
    W4Layout L = layout_for(N, K, 128);
    const int64_t qwords = L.n_blocks * 8 * L.chunks * 32, szw = L.n_groups * L.n_blocks * 64;
    std::vector<Dev*> qws, szs;
    for (int i = 0; i < kLaunches; ++i) {  // a copy each: no launch reads another's weights from L2
      qws.push_back(new Dev(qwords * 16));
      szs.push_back(new Dev(szw * 8));
      k_fill<<<1024, 256>>>(qws.back()->as<uint32_t>(), qwords * 4, 17u + i);
      k_fill_sz<<<1024, 256>>>(szs.back()->as<uint2>(), szw);
    }
    for (int64_t M : parse_ms(ms_s)) {
      const int64_t K_pad = L.chunks * 64;
      Dev x(M * K_pad * 2), y(M * N * 2);
      k_fill_bf16<<<256, 256>>>(x.as<uint16_t>(), M * K_pad, 5u);
      const W4GemvTmaPlan tp = w4_gemv_tma_plan(L, M, false, sms);
      Dev tpart(std::max<int64_t>(1, tp.workspace_floats) * 4), tcnt(std::max<int64_t>(1, tp.counters) * 4);
      CK(cudaMemset(tcnt.p, 0, tcnt.n));
      const size_t per_launch = size_t(tp.blocks) * kTraceStride;
      Dev marks(kLaunches * per_launch * 8);
      std::vector<unsigned long long> h(kLaunches * per_launch);
      auto run = [&](int i) {
        w4_gemv_tma_set_trace(marks.as<unsigned long long>() + i * per_launch);
        CK(w4_gemv_tma(L, tp, qws[i]->as<uint4>(), szs[i]->as<uint2>(), false, x.p, K_pad, M, y.p, nullptr,
                       DType::F32, tpart.as<float>(), tcnt.as<int>(), 0));
      };
      for (int warm = 0; warm < 3; ++warm) run(0);  // first-launch costs out of the way
      CK(cudaDeviceSynchronize());
      CK(cudaMemset(marks.p, 0, marks.n));
      run(0);
      CK(cudaDeviceSynchronize());
      for (int i = 1; i < kLaunches; ++i) run(i);
      CK(cudaDeviceSynchronize());
      w4_gemv_tma_set_trace(nullptr);
      CK(cudaMemcpy(h.data(), marks.p, marks.n, cudaMemcpyDeviceToHost));
      const double wbytes = double(N) * K / 2 + double(N) * L.n_groups * 4;
      std::printf("\n%lld x %lld, M = %lld: %d blocks x %lld chunks, %d stages; weights %.1f MB\n", (long long)K,
                  (long long)N, (long long)M, tp.blocks, (long long)tp.per_cta, tp.stages, wbytes / 1e6);
      unsigned long long prev_end = 0, granule = ~0ull;
      for (int i = 0; i < kLaunches; ++i) {
        const unsigned long long* m = h.data() + i * per_launch;
        unsigned long long t0 = ~0ull, end = 0;
        for (int b = 0; b < tp.blocks; ++b) {
          t0 = std::min(t0, m[b * kTraceStride]);
          for (int k : {6, 7}) end = std::max(end, m[b * kTraceStride + k]);
        }
        std::printf("launch %d (%s): %.2f us from the first block's start to the last flush", i,
                    i == 0 ? "after an idle device" : "back to back", (end - t0) / 1e3);
        if (i > 0)
          std::printf("; first start %+.2f us after the previous launch's last flush",
                      (double(t0) - double(prev_end)) / 1e3);
        std::printf("\n");
        for (int k = 0; k < 8; ++k) {
          std::vector<double> v;
          for (int b = 0; b < tp.blocks; ++b)
            if (m[b * kTraceStride + k] != 0) {
              v.push_back((double(m[b * kTraceStride + k]) - double(t0)) / 1e3);
              if (m[b * kTraceStride + k] > t0) granule = std::min(granule, m[b * kTraceStride + k] - t0);
            }
          if (v.empty()) continue;
          std::sort(v.begin(), v.end());
          std::printf("  %-26s min %6.2f  median %6.2f  max %6.2f us  (%zu blocks)\n", kMarkNames[k], v.front(),
                      v[v.size() / 2], v.back(), v.size());
        }
        // Per block, in this SM's cycles: the phases' own lengths (clock64; no cross-SM skew).
        std::vector<double> wait_to_ready, ready_to_math, flush;
        for (int b = 0; b < tp.blocks; ++b) {
          const unsigned long long* c = m + b * kTraceStride + 8;
          if (c[3] && c[4]) wait_to_ready.push_back(double(c[4]) - double(c[3]));
          if (c[4] && c[5]) ready_to_math.push_back(double(c[5]) - double(c[4]));
          if (c[5] && c[6]) flush.push_back(double(c[6]) - double(c[5]));
        }
        auto med = [](std::vector<double> v) {
          if (v.empty()) return 0.0;
          std::sort(v.begin(), v.end());
          return v[v.size() / 2];
        };
        std::printf("  warp 0, median cycles: PDL wait -> 1st slot ready %.0f, 1st slot -> math done %.0f, flush %.0f\n",
                    med(wait_to_ready), med(ready_to_math), med(flush));
        // Per ring round, the median over blocks in cycles after warp 0's PDL wait: warp 0's wait
        // began / slot ready / math done, the sum warp's slot full / sums written.
        std::printf("  round: warp 0 wait-begin / ready / math-done, sum warp full / sums-done (median cycles after warp 0's PDL wait)\n");
        for (int r = 0; r < kTraceSlots; ++r) {
          double v[5];
          bool any = false;
          for (int q = 0; q < 5; ++q) {
            std::vector<double> xs;
            const int idx = q < 3 ? 16 + 3 * r + q : 64 + 2 * r + (q - 3);
            for (int b = 0; b < tp.blocks; ++b) {
              const unsigned long long* row = m + b * kTraceStride;
              if (row[idx] && row[8 + 3]) xs.push_back(double(row[idx]) - double(row[8 + 3]));
            }
            v[q] = med(xs);
            any = any || !xs.empty();
          }
          if (!any) break;
          std::printf("    %2d: %7.0f %7.0f %7.0f | %7.0f %7.0f\n", r, v[0], v[1], v[2], v[3], v[4]);
        }
        {  // clock rate: cycles over ns between marks 0 and 6 of each block
          std::vector<double> ghz;
          for (int b = 0; b < tp.blocks; ++b) {
            const unsigned long long* row = m + b * kTraceStride;
            if (row[6] > row[0] + 2000) ghz.push_back((double(row[8 + 6]) - double(row[8])) / (double(row[6]) - double(row[0])));
          }
          std::printf("  SM clock over the call: %.2f GHz (median over blocks)\n", med(ghz));
        }
        prev_end = end;
      }
      std::printf("smallest nonzero mark offset seen: %llu ns (the timer's granularity, at most)\n", granule);
    }
    for (auto* d : qws) delete d;
    for (auto* d : szs) delete d;
  }
}
#endif

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "check";
  if (mode == "check") {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("w4_gemv_tma_supported(%d) = %d\n", prop.major, w4_gemv_tma_supported(prop.major) ? 1 : 0);
    std::vector<Case> cases;
    for (bool f16 : {false, true}) {
      cases.push_back({f16, 128, false, false, 256, 200});
      cases.push_back({f16, 128, false, false, 2048, 384});
      cases.push_back({f16, 128, true, false, 4160, 136});
      cases.push_back({f16, 128, false, true, 4096, 256});
      cases.push_back({f16, 64, true, false, 2048, 77});
      cases.push_back({f16, 32, true, true, 1024, 144});
      cases.push_back({f16, 16, false, false, 1000, 77});
      cases.push_back({f16, 16, true, true, 2048, 256});
      cases.push_back({f16, 0, false, false, 3000, 130});
      cases.push_back({f16, 0, true, false, 512, 1000});
      cases.push_back({f16, 64, true, false, 64, 5000});
      cases.push_back({f16, 128, false, true, 8192, 1024});
      cases.push_back({f16, 128, true, false, 4096, 4096});
      cases.push_back({f16, 32, false, false, 1472, 300});
      cases.push_back({f16, 64, false, false, 64, 38400});   // whole n-blocks, two per block
      cases.push_back({f16, 32, true, false, 320, 25600});   // short slots at n-block ends, shared n-blocks
      cases.push_back({f16, 64, true, false, 192, 51200});   // ranges of a shared, whole and shared n-block
      cases.push_back({f16, 128, true, true, 8256, 6144});   // unaligned ranges over full slots, a short last group
      cases.push_back({f16, 0, false, false, 8256, 3072});   // per-channel over full slots
    }
    // N-block parts (the plan's choice, and each forced mode's) on 40 n-blocks with the last one
    // short of rows, 48 (Llama-3.1-8B's q|k|v), 32, and 224 (whole n-blocks on a 132-SM H200).
    cases.push_back({false, 128, true, false, 1024, 5000});
    cases.push_back({false, 128, false, false, 4096, 6144});
    cases.push_back({false, 64, true, true, 2048, 4096});
    cases.push_back({false, 128, false, false, 512, 28672});
    for (const Case& c : cases) check_case(c);
    std::printf("check: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
  }
  const char* shapes = argc > 2 ? argv[2] : "4096x4096,4096x14336,14336x4096,8192x28672";
  const char* ms = argc > 3 ? argv[3] : "1,2,4,8,16";
  if (mode == "trace") {
#if defined(XQ_W4T_TRACE)
    trace(shapes, ms);
    return 0;
#else
    std::fprintf(stderr, "trace needs a build with -DXQ_W4T_TRACE (scripts/gpu-w4-gemv-tma.sh with W4T_TRACE=1)\n");
    return 2;
#endif
  }
  bench(shapes, ms, mode == "sweep");
  return 0;
}
