// test_argmax_vec.cpp: the 16-byte ARGMAX kernel of the `cuda` provider
// (plugins/cuda/src/argmax_vec.cu) against the scalar kernel it replaces
// (XQUANT_VECTOR_ARGMAX=0) and a host reference, on fresh random F32 rows:
// Llama 3's vocabulary (128,256), a width that leaves a partial tail of
// loads (32,004), a short row (12), ties between far-apart columns (the
// lower index wins), NaN never winning, an all-NaN row (id 0). Ids equal.
// A long row is split over several CTAs whose last merges their winners:
// winners in every CTA's share, launches one after another (the arrival
// counters must be back to zero), and more rows than the split takes.
#include "test_host.hpp"

#include <algorithm>
#include <cfloat>
#include <cstdlib>

using namespace xqtest;

namespace {

std::vector<int32_t> gpu_argmax(const std::vector<float>& x, int64_t M, int64_t N) {
  auto& P = Plugin::get();
  DevBuf dx(x.size() * 4), di(static_cast<size_t>(M) * 4);
  dx.put(x);
  di.poison();
  xq_op op = make_op(XQ_OP_ARGMAX);
  op.src[0] = tensor2(XQ_DTYPE_F32, M, N, dx.p);
  op.dst = tensor1(XQ_DTYPE_I32, M, di.p);
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  return di.get<int32_t>(static_cast<size_t>(M));
}

int32_t host_argmax(const float* r, int64_t N) {
  float v = -FLT_MAX;
  int64_t idx = N;
  for (int64_t n = 0; n < N; ++n) {
    const float e = std::isnan(r[n]) ? -FLT_MAX : r[n];
    if (e > v || (e == v && n < idx)) v = e, idx = n;
  }
  return static_cast<int32_t>(idx < N ? idx : 0);
}

}  // namespace

TEST(CudaArgmaxVec, EqualsTheScalarKernelAndTheHost) {
  XQ_REQUIRE_GPU();
  for (int64_t N : {128256, 32004, 12}) {
    const int64_t M = 4;
    SCOPED_TRACE("N=" + std::to_string(N));
    std::vector<float> x(static_cast<size_t>(M * N));
    for (auto& v : x) v = uniform(-8.f, 8.f);
    // Row 1: a tie between a late and an early column, above everything else.
    x[N + N - 1] = 100.f;
    x[N + N / 3] = 100.f;
    // Row 2: NaNs, one where the maximum would be.
    for (int64_t i = 0; i < N; i += 7) x[2 * N + i] = NAN;
    // Row 3: all NaN.
    for (int64_t i = 0; i < N; ++i) x[3 * N + i] = NAN;
    const auto vec = gpu_argmax(x, M, N);
    ::setenv("XQUANT_VECTOR_ARGMAX", "0", 1);
    const auto scalar = gpu_argmax(x, M, N);
    ::unsetenv("XQUANT_VECTOR_ARGMAX");
    EXPECT_EQ(vec, scalar);
    for (int64_t m = 0; m < M; ++m) EXPECT_EQ(vec[m], host_argmax(&x[m * N], N)) << "row " << m;
    EXPECT_EQ(vec[1], static_cast<int32_t>(N / 3));
    EXPECT_EQ(vec[3], 0);
  }
}

TEST(CudaArgmaxVec, SplitRowsFindTheWinnerInEveryShareAndLaunchAfterLaunch) {
  XQ_REQUIRE_GPU();
  const int64_t N = 128256, M = 8, share = 4096;  // logits per CTA (argmax_vec.cu)
  for (int64_t cta = 0; cta * share < N; ++cta) {
    SCOPED_TRACE("winner in CTA " + std::to_string(cta));
    std::vector<float> x(static_cast<size_t>(M * N));
    for (auto& v : x) v = uniform(-8.f, 8.f);
    for (int64_t m = 0; m < M; ++m) {
      const int64_t at = std::min(N - 1, cta * share + (m * 997) % share);
      x[m * N + at] = 50.f + static_cast<float>(m);
    }
    const auto got = gpu_argmax(x, M, N);
    for (int64_t m = 0; m < M; ++m) ASSERT_EQ(got[m], host_argmax(&x[m * N], N)) << "row " << m;
  }
}

TEST(CudaArgmaxVec, ManyRowsKeepOneCtaEach) {
  XQ_REQUIRE_GPU();
  for (int64_t M : {256, 257, 300}) {
    const int64_t N = 8196;  // two CTAs' shares when split
    SCOPED_TRACE("M=" + std::to_string(M));
    std::vector<float> x(static_cast<size_t>(M * N));
    for (auto& v : x) v = uniform(-8.f, 8.f);
    for (int64_t m = 0; m < M; m += 3) x[m * N + (m * 131) % N] = 9.f;
    const auto got = gpu_argmax(x, M, N);
    for (int64_t m = 0; m < M; ++m) ASSERT_EQ(got[m], host_argmax(&x[m * N], N)) << "row " << m;
  }
}
