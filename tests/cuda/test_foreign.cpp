// test_foreign.cpp: the on-device repack kernels from checkpoint layouts
// (AutoAWQ GEMM, GPTQ v1/v2) to the canonical form, which the ABI does not
// expose (a loader would call them), so this test links the provider's
// kernel library directly. A CPU packer writes random canonical weights in
// each layout; the kernels must recover codes, zero points and scales exactly.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <xquant/sdk/half.hpp>

#include <random>
#include <vector>

#include "kernels.hpp"

namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <class T>
T* dev_copy(const std::vector<T>& v) {
  void* p = nullptr;
  if (cudaMalloc(&p, v.size() * sizeof(T) + 16) != cudaSuccess) return nullptr;
  cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T*>(p);
}
template <class T>
std::vector<T> host_copy(const T* p, size_t n) {
  std::vector<T> v(n);
  cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

struct Canon {
  int64_t N, K, gs, G;
  std::vector<int8_t> codes, zp;  // [N][K], [N][G]
  std::vector<uint16_t> scales_f16;  // [G][N] as stored in checkpoints
};

Canon random_canon(int64_t N, int64_t K, int64_t gs, int zmin) {
  std::mt19937 g(std::random_device{}());
  Canon c{N, K, gs, (K + gs - 1) / gs, {}, {}, {}};
  c.codes.resize(N * K);
  for (auto& v : c.codes) v = static_cast<int8_t>(std::uniform_int_distribution<int>(-8, 7)(g));
  c.zp.resize(N * c.G);
  for (auto& v : c.zp) v = static_cast<int8_t>(std::uniform_int_distribution<int>(zmin, 15)(g) - 8);
  c.scales_f16.resize(c.G * N);
  for (auto& s : c.scales_f16) s = xquant::sdk::f32_to_f16(std::uniform_real_distribution<float>(1e-3f, 2e-2f)(g));
  return c;
}

void expect_canonical(const Canon& c, int8_t* d_codes, float* d_scales, int8_t* d_zp) {
  auto codes = host_copy(d_codes, c.N * c.K);
  auto zp = host_copy(d_zp, c.N * c.G);
  auto sc = host_copy(d_scales, c.N * c.G);
  EXPECT_EQ(codes, c.codes);
  EXPECT_EQ(zp, c.zp);
  size_t bad = 0;
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t g = 0; g < c.G; ++g) bad += sc[n * c.G + g] != xquant::sdk::f16_to_f32(c.scales_f16[g * c.N + n]);
  EXPECT_EQ(bad, 0u);
}

TEST(ForeignLayouts, AwqGemmUnpack) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (auto [N, K, gs] : {std::tuple<int64_t, int64_t, int64_t>{64, 256, 128}, {200, 1000, 64}, {8, 96, 32}}) {
    Canon c = random_canon(N, K, gs, 0);
    std::vector<int32_t> qw(K * (N / 8)), qz(c.G * (N / 8));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t w = 0; w < N / 8; ++w) {
        uint32_t word = 0;
        for (int i = 0; i < 8; ++i) word |= static_cast<uint32_t>(c.codes[(8 * w + kOrder[i]) * K + k] + 8) << (4 * i);
        qw[k * (N / 8) + w] = static_cast<int32_t>(word);
      }
    for (int64_t g = 0; g < c.G; ++g)
      for (int64_t w = 0; w < N / 8; ++w) {
        uint32_t word = 0;
        for (int i = 0; i < 8; ++i) word |= static_cast<uint32_t>(c.zp[(8 * w + kOrder[i]) * c.G + g] + 8) << (4 * i);
        qz[g * (N / 8) + w] = static_cast<int32_t>(word);
      }
    int32_t *dqw = dev_copy(qw), *dqz = dev_copy(qz);
    uint16_t* ds = dev_copy(c.scales_f16);
    int8_t *codes = nullptr, *zp = nullptr;
    float* scales = nullptr;
    ASSERT_EQ(cudaMalloc(&codes, N * K), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&zp, N * c.G), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&scales, N * c.G * 4), cudaSuccess);
    ASSERT_EQ(xqcuda::awq_unpack(dqw, dqz, ds, K, N, gs, codes, scales, zp, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_canonical(c, codes, scales, zp);
    for (void* p : {(void*)dqw, (void*)dqz, (void*)ds, (void*)codes, (void*)zp, (void*)scales}) cudaFree(p);
  }
}

TEST(ForeignLayouts, GptqUnpackV1AndV2) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (bool v1 : {true, false})
    for (auto [N, K, gs] : {std::tuple<int64_t, int64_t, int64_t>{64, 256, 128}, {200, 1000, 64}, {8, 96, 32}}) {
      Canon c = random_canon(N, K, gs, v1 ? 1 : 0);  // v1 cannot store z = 0
      std::vector<int32_t> qw((K / 8) * N), qz(c.G * (N / 8));
      for (int64_t k8 = 0; k8 < K / 8; ++k8)
        for (int64_t n = 0; n < N; ++n) {
          uint32_t word = 0;
          for (int i = 0; i < 8; ++i) word |= static_cast<uint32_t>(c.codes[n * K + k8 * 8 + i] + 8) << (4 * i);
          qw[k8 * N + n] = static_cast<int32_t>(word);
        }
      for (int64_t g = 0; g < c.G; ++g)
        for (int64_t w = 0; w < N / 8; ++w) {
          uint32_t word = 0;
          for (int i = 0; i < 8; ++i)
            word |= (static_cast<uint32_t>(c.zp[(8 * w + i) * c.G + g] + 8 - (v1 ? 1 : 0)) & 0xFu) << (4 * i);
          qz[g * (N / 8) + w] = static_cast<int32_t>(word);
        }
      int32_t *dqw = dev_copy(qw), *dqz = dev_copy(qz);
      uint16_t* ds = dev_copy(c.scales_f16);
      int8_t *codes = nullptr, *zp = nullptr;
      float* scales = nullptr;
      ASSERT_EQ(cudaMalloc(&codes, N * K), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&zp, N * c.G), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&scales, N * c.G * 4), cudaSuccess);
      ASSERT_EQ(xqcuda::gptq_unpack(dqw, dqz, ds, K, N, c.G, v1, codes, scales, zp, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      expect_canonical(c, codes, scales, zp);
      for (void* p : {(void*)dqw, (void*)dqz, (void*)ds, (void*)codes, (void*)zp, (void*)scales}) cudaFree(p);
    }
}

}  // namespace
