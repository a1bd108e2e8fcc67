// test_row_norms.cpp: the 16-byte RMS_NORM / ADD_RMS_NORM kernels of the
// `cuda` provider (plugins/cuda/src/row_norms.cu) on fresh random rows,
// against a float64 reference and against the scalar kernels they replace
// (XQUANT_VECTOR_NORMS=0), at the widths the engine uses (head_dim 64/128
// for q/k norms, hidden 4096/8192, up to the 16384 limit) and at widths the
// vector path does not take (4098: not a multiple of 4; 20000: too wide),
// which must still be right. Bounds: F32 outputs within 1e-6 relative RMS of
// float64 (the sum in another order), BF16 outputs within 4e-3 (one BF16
// rounding); the residual stream after ADD is bit-identical to x + r in
// float; in-place RMS_NORM (the engine's q/k norm) as out of place.
#include "test_host.hpp"

#include <cstdlib>

using namespace xqtest;

namespace {

struct NormRun {
  std::vector<float> x_after, y;  // the residual after the add (ADD only), the output as F32
};

// Runs [ADD_]RMS_NORM on the GPU: x F32 [M, D], optional addend r (rt), w F32, y (yt).
NormRun run_norm(int64_t M, int64_t D, const std::vector<float>& x, const std::vector<float>* r, xq_dtype rt,
                 const std::vector<float>& w, xq_dtype yt, bool in_place = false) {
  auto& P = Plugin::get();
  DevBuf dx(x.size() * 4), dw(w.size() * 4), dy(x.size() * 4), dr(x.size() * 4);
  dx.put(x);
  dw.put(w);
  dy.poison();
  xq_op op = make_op(r ? XQ_OP_ADD_RMS_NORM : XQ_OP_RMS_NORM);
  op.src[0] = tensor2(XQ_DTYPE_F32, M, D, dx.p);
  op.src[1] = tensor1(XQ_DTYPE_F32, D, dw.p);
  if (r) {
    if (rt == XQ_DTYPE_BF16) dr.put(to_half_bits(*r, XQ_DTYPE_BF16, nullptr));
    else dr.put(*r);
    op.src[2] = tensor2(rt, M, D, dr.p);
  }
  op.dst = tensor2(yt, M, D, in_place ? dx.p : dy.p);
  op.f[0] = 1e-5;
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  NormRun out;
  if (yt == XQ_DTYPE_BF16) {
    const auto b = dy.get<uint16_t>(x.size());
    for (uint16_t h : b) out.y.push_back(half_bits_to_f32(h, XQ_DTYPE_BF16));
  } else {
    out.y = (in_place ? dx : dy).get<float>(x.size());
  }
  if (r) out.x_after = dx.get<float>(x.size());
  return out;
}

std::vector<double> ref_norm(int64_t M, int64_t D, const std::vector<float>& x, const std::vector<float>& w) {
  std::vector<double> y(x.size());
  for (int64_t m = 0; m < M; ++m) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(x[m * D + i]) * x[m * D + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(D) + 1e-5);
    for (int64_t i = 0; i < D; ++i) y[m * D + i] = x[m * D + i] * inv * w[i];
  }
  return y;
}

struct VectorNormsOff {  // the scalar kernels for the lifetime of this object
  VectorNormsOff() { ::setenv("XQUANT_VECTOR_NORMS", "0", 1); }
  ~VectorNormsOff() { ::unsetenv("XQUANT_VECTOR_NORMS"); }
};

}  // namespace

TEST(CudaRowNorms, MatchFloat64AndTheScalarKernels) {
  XQ_REQUIRE_GPU();
  for (int64_t D : {64, 128, 172, 4096, 8192, 16384, 4098, 20000}) {
    for (int64_t M : {1, 3}) {
      SCOPED_TRACE("D=" + std::to_string(D) + " M=" + std::to_string(M));
      std::vector<float> x(static_cast<size_t>(M * D)), r(x.size()), w(static_cast<size_t>(D));
      for (auto& v : x) v = uniform(-2.f, 2.f);
      for (auto& v : r) v = uniform(-1.f, 1.f);
      for (auto& v : w) v = uniform(0.5f, 1.5f);
      // RMS_NORM, F32 out.
      const auto plain = run_norm(M, D, x, nullptr, XQ_DTYPE_F32, w, XQ_DTYPE_F32);
      EXPECT_EQ(count_nan(plain.y), 0u);
      EXPECT_LE(rel_error(plain.y, ref_norm(M, D, x, w)), 1e-6);
      // ADD_RMS_NORM with a BF16 addend (a BF16 GEMM's output) and BF16 out, and all-F32.
      for (xq_dtype t : {XQ_DTYPE_BF16, XQ_DTYPE_F32}) {
        std::vector<float> r_stored = r;
        if (t == XQ_DTYPE_BF16) to_half_bits(r, XQ_DTYPE_BF16, &r_stored);
        std::vector<float> sum(x.size());
        for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + r_stored[i];
        const auto fused = run_norm(M, D, x, &r, t, w, t);
        EXPECT_EQ(0, std::memcmp(fused.x_after.data(), sum.data(), sum.size() * 4)) << "residual after the add";
        EXPECT_EQ(count_nan(fused.y), 0u);
        EXPECT_LE(rel_error(fused.y, ref_norm(M, D, sum, w)), t == XQ_DTYPE_BF16 ? 4e-3 : 1e-6);
        VectorNormsOff off;
        const auto scalar = run_norm(M, D, x, &r, t, w, t);
        EXPECT_LE(rel_error(fused.y, std::vector<double>(scalar.y.begin(), scalar.y.end())), t == XQ_DTYPE_BF16 ? 4e-3 : 1e-6)
            << "vector vs scalar kernel";
      }
    }
  }
}

TEST(CudaRowNorms, InPlaceLikeTheEnginesQkNorm) {
  XQ_REQUIRE_GPU();
  const int64_t M = 40, D = 128;  // 5 rows x 8 heads of head_dim 128
  std::vector<float> x(static_cast<size_t>(M * D)), w(static_cast<size_t>(D));
  for (auto& v : x) v = uniform(-2.f, 2.f);
  for (auto& v : w) v = uniform(0.5f, 1.5f);
  const auto out = run_norm(M, D, x, nullptr, XQ_DTYPE_F32, w, XQ_DTYPE_F32, /*in_place=*/true);
  const auto ref = run_norm(M, D, x, nullptr, XQ_DTYPE_F32, w, XQ_DTYPE_F32);
  EXPECT_EQ(0, std::memcmp(out.y.data(), ref.y.data(), ref.y.size() * 4));
}
