// test_gather_columns.cpp: the activation column gather of act-order weights
// and K padding (gather_columns, plugins/cuda/src/w4a16_layout.cu), called
// directly: xs[m][c] = x[m][perm[c]] (or x[m][c] without perm) for c < K,
// zero up to ld, compared bit for bit with the same gather on the host, on
// fresh random bits (NaN patterns included: the gather moves bits, it does
// not round), outputs poisoned first. Every kernel: for 2-byte types with ld
// a multiple of 8, the one-block-a-row kernel (32 rows and more; 16-byte row
// loads or 2-byte ones; rows past the 65,535 blocks a grid holds) and the
// column-split one (fewer rows, or rows too long for shared memory); the
// per-element one (F32, or ld not a multiple of 8).
#include "test_host.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels.hpp"

using namespace xqtest;

namespace {

struct GatherCase {
  xqcuda::DType t;
  int64_t M, K, ld;
  bool perm;
};

std::string gather_case_name(const testing::TestParamInfo<GatherCase>& i) {
  const GatherCase& c = i.param;
  const char* t = c.t == xqcuda::DType::BF16 ? "bf16" : c.t == xqcuda::DType::F16 ? "f16" : "f32";
  return std::string(t) + "_M" + std::to_string(c.M) + "_K" + std::to_string(c.K) + "_ld" + std::to_string(c.ld) +
         (c.perm ? "_perm" : "_pad");
}

class GatherColumns : public testing::TestWithParam<GatherCase> {};

TEST_P(GatherColumns, MatchesTheHostGatherBitForBit) {
  XQ_REQUIRE_GPU();
  const GatherCase c = GetParam();
  const size_t es = c.t == xqcuda::DType::F32 ? 4 : 2;
  std::vector<uint8_t> x(static_cast<size_t>(c.M * c.K) * es);
  for (auto& b : x) b = static_cast<uint8_t>(uniform_int(0, 255));
  std::vector<int32_t> perm(c.K);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng());
  std::vector<uint8_t> want(static_cast<size_t>(c.M * c.ld) * es, 0);
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t col = 0; col < c.K; ++col)
      std::memcpy(&want[(m * c.ld + col) * es], &x[(m * c.K + (c.perm ? perm[col] : col)) * es], es);
  void *dx = nullptr, *dxs = nullptr, *dperm = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, x.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dxs, want.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dperm, perm.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), x.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dperm, perm.data(), perm.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dxs, 0xA5, want.size()), cudaSuccess);  // poison
  ASSERT_EQ(xqcuda::gather_columns(dx, c.t, c.M, c.K, c.K, c.perm ? static_cast<int32_t*>(dperm) : nullptr, dxs, c.ld,
                                   nullptr),
            cudaSuccess);
  std::vector<uint8_t> got(want.size());
  ASSERT_EQ(cudaMemcpy(got.data(), dxs, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx);
  cudaFree(dxs);
  cudaFree(dperm);
  size_t first_bad = got.size();
  for (size_t i = 0; i < got.size() && first_bad == got.size(); ++i)
    if (got[i] != want[i]) first_bad = i;
  EXPECT_EQ(first_bad, got.size()) << "first differing element: row " << first_bad / es / c.ld << ", column "
                                   << first_bad / es % c.ld;
}

INSTANTIATE_TEST_SUITE_P(Cuda, GatherColumns,
                         testing::Values(GatherCase{xqcuda::DType::BF16, 1, 4096, 4096, true},
                                         GatherCase{xqcuda::DType::BF16, 31, 1000, 1024, true},
                                         GatherCase{xqcuda::DType::F16, 5, 1000, 1024, false},
                                         GatherCase{xqcuda::DType::BF16, 64, 4096, 4096, true},   // a block a row
                                         GatherCase{xqcuda::DType::F16, 40, 1000, 1024, false},
                                         GatherCase{xqcuda::DType::BF16, 33, 1001, 1008, true},   // 2-byte row loads
                                         GatherCase{xqcuda::DType::BF16, 70000, 24, 32, true},    // rows past the grid
                                         GatherCase{xqcuda::DType::BF16, 33, 50000, 50000, true},  // row > 96 KB
                                         GatherCase{xqcuda::DType::F16, 3, 1000, 1000, true},     // ld % 8 != 0
                                         GatherCase{xqcuda::DType::F32, 9, 640, 704, true}),
                         gather_case_name);

}  // namespace
