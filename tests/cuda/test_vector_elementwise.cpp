// test_vector_elementwise.cpp: the 16-byte paths of SWIGLU and CONVERT
// (plugins/cuda/src/vector_elementwise.cu) through the provider's ops, on
// fresh random inputs with poisoned outputs:
//  * SWIGLU over BF16 gate|up column slices (the prefill step's shape) is
//    bit-identical to the scalar kernel on the same values (a row pitch
//    that is not a multiple of 8 sends the op there), and within F32/BF16
//    rounding of a float64 reference;
//  * CONVERT F32 -> BF16 -> F32 (contiguous, with and without a length
//    that is a multiple of 8) and a strided BF16 column slice -> F32 are
//    exact (round-to-nearest-even, as the host's f32_to_bf16).
#include "test_host.hpp"

#include <xquant/sdk/half.hpp>

#include <cmath>
#include <cstring>

using namespace xqtest;

namespace {

xq_device_tensor slice(xq_dtype t, int64_t rows, int64_t cols, int64_t ld, void* data) {
  xq_device_tensor v = tensor2(t, rows, cols, data);
  v.strides[0] = ld;
  v.strides[1] = 1;
  return v;
}

void run_on_gpu(const xq_op& op) {
  auto& P = Plugin::get();
  ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u) << g_last_error;
  ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
}

// SWIGLU of the [R, I] gate and up halves of a BF16 [R, ld] buffer (gate
// at column 0, up at column I); returns the output's raw bits.
std::vector<uint8_t> swiglu(const std::vector<uint16_t>& gu, int64_t R, int64_t I, int64_t ld, xq_dtype out_t) {
  const size_t esz = out_t == XQ_DTYPE_F32 ? 4 : 2;
  DevBuf src(gu.size() * 2), dst(static_cast<size_t>(R * I) * esz);
  src.put(gu);
  dst.poison();
  xq_op op = make_op(XQ_OP_SWIGLU);
  op.src[0] = slice(XQ_DTYPE_BF16, R, I, ld, src.p);
  op.src[1] = slice(XQ_DTYPE_BF16, R, I, ld, static_cast<uint16_t*>(src.p) + I);
  op.dst = tensor2(out_t, R, I, dst.p);
  run_on_gpu(op);
  return dst.get<uint8_t>(static_cast<size_t>(R * I) * esz);
}

}  // namespace

TEST(CudaVectorElementwise, BF16SwigluOfGateUpSlicesMatchesTheScalarKernelBitForBit) {
  XQ_REQUIRE_GPU();
  const int64_t R = 37, I = 136;  // 16-byte aligned halves: I * 2 bytes = 272
  for (xq_dtype out_t : {XQ_DTYPE_BF16, XQ_DTYPE_F32}) {
    SCOPED_TRACE(out_t == XQ_DTYPE_BF16 ? "BF16 out" : "F32 out");
    std::vector<float> vals(static_cast<size_t>(R * 2 * I)), rounded;
    for (auto& x : vals) x = uniform(-6.f, 6.f);
    const std::vector<uint16_t> packed = to_half_bits(vals, XQ_DTYPE_BF16, &rounded);
    // The same values at a row pitch of 2I + 1: not a multiple of 8, so the scalar kernel runs.
    const int64_t ld_odd = 2 * I + 1;
    std::vector<uint16_t> odd(static_cast<size_t>(R * ld_odd), 0);
    for (int64_t r = 0; r < R; ++r) std::memcpy(&odd[r * ld_odd], &packed[r * 2 * I], 2 * I * 2);
    const auto vec = swiglu(packed, R, I, 2 * I, out_t);
    const auto scalar = swiglu(odd, R, I, ld_odd, out_t);
    ASSERT_EQ(vec.size(), scalar.size());
    EXPECT_EQ(std::memcmp(vec.data(), scalar.data(), vec.size()), 0) << "16-byte and scalar paths differ";
    std::vector<float> out(static_cast<size_t>(R * I));
    for (size_t i = 0; i < out.size(); ++i) {
      if (out_t == XQ_DTYPE_F32) std::memcpy(&out[i], &vec[i * 4], 4);
      else {
        uint16_t b;
        std::memcpy(&b, &vec[i * 2], 2);
        out[i] = xquant::sdk::bf16_to_f32(b);
      }
    }
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < I; ++c) {
        const double g = rounded[r * 2 * I + c], u = rounded[r * 2 * I + I + c];
        const double ref = g / (1.0 + std::exp(-g)) * u, got = out[r * I + c];
        // F32: a few ulp of expf and the division; BF16: one rounding (2^-9 relative).
        const double bound = (out_t == XQ_DTYPE_F32 ? 1e-6 : 4e-3) * std::fabs(ref) + 1e-30;
        ASSERT_LE(std::fabs(got - ref), bound) << r << "," << c;
      }
  }
}

TEST(CudaVectorElementwise, ConvertRoundsToBf16AndBackExactly) {
  XQ_REQUIRE_GPU();
  for (int64_t n : {int64_t{8}, int64_t{4096 * 3}, int64_t{4099}}) {  // 16-byte path twice, then the scalar tail case
    SCOPED_TRACE(testing::Message() << "n " << n);
    std::vector<float> v(static_cast<size_t>(n)), rounded;
    for (auto& x : v) x = uniform(-100.f, 100.f);
    const std::vector<uint16_t> want = to_half_bits(v, XQ_DTYPE_BF16, &rounded);
    DevBuf f(v.size() * 4), h(v.size() * 2), back(v.size() * 4);
    f.put(v);
    h.poison();
    back.poison();
    xq_op to16 = make_op(XQ_OP_CONVERT);
    to16.src[0] = tensor1(XQ_DTYPE_F32, n, f.p);
    to16.dst = tensor1(XQ_DTYPE_BF16, n, h.p);
    run_on_gpu(to16);
    xq_op to32 = make_op(XQ_OP_CONVERT);
    to32.src[0] = tensor1(XQ_DTYPE_BF16, n, h.p);
    to32.dst = tensor1(XQ_DTYPE_F32, n, back.p);
    run_on_gpu(to32);
    EXPECT_EQ(h.get<uint16_t>(v.size()), want);
    EXPECT_EQ(back.get<float>(v.size()), rounded);
  }
}

TEST(CudaVectorElementwise, StridedBf16SliceConvertsToF32Exactly) {
  XQ_REQUIRE_GPU();
  const int64_t R = 19, LD = 6144, C0 = 4096, C = 1024;  // the k slice of a q|k|v row, Llama-3.1-8B widths
  std::vector<float> v(static_cast<size_t>(R * LD)), rounded;
  for (auto& x : v) x = uniform(-3.f, 3.f);
  const std::vector<uint16_t> bits = to_half_bits(v, XQ_DTYPE_BF16, &rounded);
  DevBuf src(bits.size() * 2), dst(static_cast<size_t>(R * C) * 4);
  src.put(bits);
  dst.poison();
  xq_op op = make_op(XQ_OP_CONVERT);
  op.src[0] = slice(XQ_DTYPE_BF16, R, C, LD, static_cast<uint16_t*>(src.p) + C0);
  op.dst = tensor2(XQ_DTYPE_F32, R, C, dst.p);
  run_on_gpu(op);
  const auto out = dst.get<float>(static_cast<size_t>(R * C));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) ASSERT_EQ(out[r * C + c], rounded[r * LD + C0 + c]) << r << "," << c;
}
