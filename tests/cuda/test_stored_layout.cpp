// test_stored_layout.cpp: the host packing of the cuda layouts
// (sdk/cuda_layout.hpp, what the xq writer stores) against the provider's
// own device packing, and adopt of those bytes.
//
// For fresh random canonical weights (W4 groups 16/32/128, per-channel and
// per-tensor, symmetric and asymmetric, act-order, F32/F16/BF16 scales, odd
// shapes that leave partial tiles, groups and chunks; INT8 and FP8 W8A8):
// qweight_prepare packs on the device, the test copies every device buffer
// back and compares it byte for byte with cuda_layout::pack. Then the packed
// bytes go through qweight_adopt and DEQUANTIZE of both weights must agree
// bit for bit. Bytes that do not fit (truncated, another shape, a wrong
// layout name) are refused with the status the ABI names.
//
// The Hopper GEMM's copy (sdk/cuda_wgmma_layout.hpp, where this build and
// device have that GEMM: the prepared weight has one): cuda_wgmma_layout::
// pack against the device's w4h_pack / w4h_pack_scales byte for byte; the
// adopted weight names the copy (qweight_extra_layout), takes it
// (qweight_attach), and QMATMUL forced to the Hopper GEMM (op.i[7] = 3) at
// M = 64 and 200 gives the prepared weight's bits; a copy that does not fit
// is refused and leaves the weight running without it.
#include "test_host.hpp"

#include <cuda_runtime.h>

#include <xquant/sdk/cuda_layout.hpp>
#include <xquant/sdk/cuda_wgmma_layout.hpp>

#include "provider.hpp"  // xq_qweight's fields, to read the prepared device buffers back
#include "../support/quant_description.hpp"

using namespace xqtest;
namespace cl = xquant::sdk::cuda_layout;
namespace cw = xquant::sdk::cuda_wgmma_layout;
using xquant::test::description_of;

namespace {

struct Case {
  const char* name;
  uint32_t bits;
  xq_strategy strategy;
  int64_t group;
  bool asym, act_order;
  int64_t N, K;
  xq_dtype scale_dtype;
  xq_act_scheme act;
};

struct Weight {
  std::vector<int8_t> codes, zp;
  std::vector<float> scales;
  std::vector<int32_t> g_idx;
  xq_quant_tensor q{};
};

Weight make(const Case& c) {
  Weight w;
  const int64_t N = c.N, K = c.K;
  const bool fp8 = c.bits == XQ_BITS_F8_E4M3;
  const int64_t G = c.strategy == XQ_STRATEGY_GROUP ? (K + c.group - 1) / c.group : 1;
  const int64_t n_scales = c.strategy == XQ_STRATEGY_TENSOR ? 1 : N * G;
  const int qmax = c.bits >= 8 ? 127 : (1 << (c.bits - 1)) - 1;
  w.codes.resize(static_cast<size_t>(N * K));
  for (auto& v : w.codes) {
    if (fp8) {
      int b;
      do b = uniform_int(0, 255);
      while ((b & 0x7F) == 0x7F);  // no NaN
      v = static_cast<int8_t>(b);
    } else {
      v = static_cast<int8_t>(uniform_int(-qmax - 1, qmax));
    }
  }
  w.scales.resize(static_cast<size_t>(n_scales));
  // Some scales below f16's normal range, so the f32-dequant flag varies.
  for (auto& s : w.scales) s = uniform(0.f, 1.f) < 0.1f ? uniform(1e-6f, 5e-5f) : uniform(0.002f, 0.05f);
  if (c.scale_dtype == XQ_DTYPE_F16)
    for (auto& s : w.scales) s = xquant::sdk::round_to_f16(s);
  if (c.scale_dtype == XQ_DTYPE_BF16)
    for (auto& s : w.scales) s = xquant::sdk::round_to_bf16(s);
  if (c.asym) {
    w.zp.resize(w.scales.size());
    for (auto& z : w.zp) z = static_cast<int8_t>(uniform_int(-64, 64));
  }
  if (c.act_order) {
    std::vector<int32_t> p(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) p[k] = static_cast<int32_t>(k);
    std::shuffle(p.begin(), p.end(), rng());
    w.g_idx.resize(static_cast<size_t>(K));
    for (int64_t i = 0; i < K; ++i) w.g_idx[p[i]] = static_cast<int32_t>(i / c.group);
  }
  xq_quant_tensor& q = w.q;
  q.struct_size = sizeof(q);
  q.bits = c.bits;
  q.symmetric = c.asym ? 0 : 1;
  q.strategy = c.strategy;
  q.rows = N;
  q.cols = K;
  q.group_size = c.strategy == XQ_STRATEGY_GROUP ? c.group : K;
  q.n_groups = G;
  q.codes = w.codes.data();
  q.scales = w.scales.data();
  q.zero_points = c.asym ? w.zp.data() : nullptr;
  q.g_idx = c.act_order ? w.g_idx.data() : nullptr;
  q.scale_dtype = c.scale_dtype;
  q.act_scheme = c.act;
  q.act_bits = c.act == XQ_ACT_NONE ? 0 : (fp8 ? XQ_BITS_F8_E4M3 : 8);
  return w;
}

std::vector<uint8_t> device_bytes(const void* p, uint64_t n) {
  std::vector<uint8_t> v(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(v.data(), p, n, cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// Index of the first differing byte, or -1.
int64_t first_diff(const std::vector<uint8_t>& a, const uint8_t* b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  return -1;
}

std::vector<uint16_t> dequantize(xq_qweight* w, int64_t N, int64_t K, xq_dtype t) {
  auto& P = Plugin::get();
  const size_t es = t == XQ_DTYPE_F32 ? 4 : 2;
  DevBuf out(static_cast<size_t>(N * K) * es);
  out.poison();
  xq_op op = make_op(XQ_OP_DEQUANTIZE);
  op.qweight = w;
  op.dst = tensor2(t, N, K, out.p);
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  return out.get<uint16_t>(static_cast<size_t>(N * K) * es / 2);
}

std::vector<Case> cases() {
  const auto F32 = XQ_DTYPE_F32, F16 = XQ_DTYPE_F16, BF16 = XQ_DTYPE_BF16;
  const auto GRP = XQ_STRATEGY_GROUP, CH = XQ_STRATEGY_CHANNEL, TEN = XQ_STRATEGY_TENSOR;
  return {
      {"w4_g128_sym_4096x4096", 4, GRP, 128, false, false, 4096, 4096, BF16, XQ_ACT_NONE},
      {"w4_g128_asym_odd", 4, GRP, 128, true, false, 37, 200, F32, XQ_ACT_NONE},
      {"w4_g32_sym_actorder_odd", 4, GRP, 32, false, true, 131, 320, F16, XQ_ACT_NONE},
      {"w4_g16_asym_actorder", 4, GRP, 16, true, true, 144, 96, F32, XQ_ACT_NONE},
      {"w4_g64_ragged_last_group", 4, GRP, 64, false, false, 20, 72, F32, XQ_ACT_NONE},
      {"w4_channel_asym_odd", 4, CH, 0, true, false, 129, 65, BF16, XQ_ACT_NONE},
      {"w4_tensor_sym", 4, TEN, 0, false, false, 48, 64, F32, XQ_ACT_NONE},
      {"w3_g32_asym", 3, GRP, 32, true, false, 64, 128, F16, XQ_ACT_NONE},
      {"w2_g64_sym", 2, GRP, 64, false, false, 17, 130, F32, XQ_ACT_NONE},
      {"w8a8_int8_channel_dynamic", 8, CH, 0, false, false, 48, 80, F32, XQ_ACT_DYNAMIC_TOKEN},
      {"w8a8_int8_tensor_static", 8, TEN, 0, false, false, 32, 64, F32, XQ_ACT_STATIC_TENSOR},
      {"w8a8_fp8_channel_dynamic", XQ_BITS_F8_E4M3, CH, 0, false, false, 64, 48, F32, XQ_ACT_DYNAMIC_TOKEN},
  };
}

class StoredLayout : public testing::TestWithParam<Case> {};

TEST_P(StoredLayout, HostPackEqualsDevicePackAndAdoptRunsTheSame) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const Case& c = GetParam();
  Weight w = make(c);
  if (c.act == XQ_ACT_STATIC_TENSOR) w.q.input_scale = 0.05f;
  xq_qweight* prepared = nullptr;
  const xq_status s = P.vt->qweight_prepare(P.state, &w.q, &prepared);
  if (s == XQ_ERR_UNSUPPORTED && c.bits == XQ_BITS_F8_E4M3) GTEST_SKIP() << g_last_error;  // pre-sm_89
  ASSERT_EQ(s, XQ_OK) << g_last_error;
  const cl::Packed packed = cl::pack(w.q);
  const cl::View v = cl::view(w.q, packed.bytes.data(), packed.bytes.size());
  const cl::Geometry& g = v.g;
  // Byte equality with what prepare left on the device.
  if (g.kind == cl::Kind::W4) {
    ASSERT_EQ(prepared->L.n_blocks, g.n_blocks);
    ASSERT_EQ(prepared->L.chunks, g.chunks);
    ASSERT_EQ(prepared->L.gs_shift, g.gs_shift);
    EXPECT_EQ(first_diff(device_bytes(prepared->qw, 16 * g.qw_words()), v.qw), -1) << "qw";
    EXPECT_EQ(first_diff(device_bytes(prepared->sz_bf16, 8 * g.sz_words()), v.sz_bf16), -1) << "sz_bf16";
    EXPECT_EQ(first_diff(device_bytes(prepared->sz_f16, 8 * g.sz_words()), v.sz_f16), -1) << "sz_f16";
    ASSERT_EQ(prepared->perm != nullptr, v.perm != nullptr);
    ASSERT_EQ(v.perm != nullptr, c.act_order);
    if (v.perm) {
      EXPECT_EQ(first_diff(device_bytes(prepared->perm, 4 * static_cast<uint64_t>(c.K)),
                           reinterpret_cast<const uint8_t*>(v.perm)),
                -1)
          << "perm";
    }
    EXPECT_EQ(prepared->f32_dequant_uses_f16, (v.flags & cl::kFlagF32DequantF16) != 0);
  } else {
    EXPECT_EQ(first_diff(device_bytes(prepared->w8, static_cast<uint64_t>(c.N * c.K)), v.codes), -1) << "codes";
    EXPECT_EQ(first_diff(device_bytes(prepared->sw, 4 * static_cast<uint64_t>(c.N)),
                         reinterpret_cast<const uint8_t*>(v.row_scales)),
              -1)
        << "row scales";
  }
  // Adopt the bytes through the ABI with a description whose buffers are NULL.
  const xq_quant_tensor desc = description_of(w.q);
  const char* name = P.vt->qweight_packed_layout(P.state, &desc);
  ASSERT_NE(name, nullptr);
  EXPECT_STREQ(name, cl::name_of(g.kind));
  xq_qweight* adopted = nullptr;
  ASSERT_EQ(P.vt->qweight_adopt(P.state, &desc, name, packed.bytes.data(), packed.bytes.size(), &adopted), XQ_OK)
      << g_last_error;
  EXPECT_NE(std::string(P.vt->qweight_layout(P.state, adopted)).find("stored, not repacked"), std::string::npos);
  for (xq_dtype t : {XQ_DTYPE_F32, XQ_DTYPE_BF16, XQ_DTYPE_F16}) {
    const auto a = dequantize(prepared, c.N, c.K, t), b = dequantize(adopted, c.N, c.K, t);
    EXPECT_TRUE(a == b) << "DEQUANTIZE to " << xquant::sdk::dtype_name(t) << " differs";
  }
  P.vt->qweight_release(P.state, adopted);
  P.vt->qweight_release(P.state, prepared);
}

INSTANTIATE_TEST_SUITE_P(Cuda, StoredLayout, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(StoredLayoutErrors, BytesThatDoNotFitAreRefused) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  Weight w = make({"w4", 4, XQ_STRATEGY_GROUP, 32, false, false, 64, 128, XQ_DTYPE_F32, XQ_ACT_NONE});
  const cl::Packed packed = cl::pack(w.q);
  const xq_quant_tensor desc = description_of(w.q);
  xq_qweight* out = nullptr;
  // Truncated.
  EXPECT_EQ(P.vt->qweight_adopt(P.state, &desc, cl::kW4Name, packed.bytes.data(), packed.bytes.size() - 64, &out),
            XQ_ERR_MALFORMED);
  EXPECT_NE(g_last_error.find("size"), std::string::npos) << g_last_error;
  // Another shape than the description's.
  xq_quant_tensor other = desc;
  other.rows = 80;
  EXPECT_EQ(P.vt->qweight_adopt(P.state, &other, cl::kW4Name, packed.bytes.data(), packed.bytes.size(), &out),
            XQ_ERR_MALFORMED);
  EXPECT_NE(g_last_error.find("header"), std::string::npos) << g_last_error;
  // A layout this weight does not run in, and the cpu provider's.
  EXPECT_EQ(P.vt->qweight_adopt(P.state, &desc, cl::kInt8Name, packed.bytes.data(), packed.bytes.size(), &out),
            XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(P.vt->qweight_adopt(P.state, &desc, "cpu.int-blocks.v1", packed.bytes.data(), packed.bytes.size(), &out),
            XQ_ERR_UNSUPPORTED);
  // A bad magic.
  std::vector<uint8_t> bad = packed.bytes;
  bad[0] = 'Y';
  EXPECT_EQ(P.vt->qweight_adopt(P.state, &desc, cl::kW4Name, bad.data(), bad.size(), &out), XQ_ERR_MALFORMED);
  EXPECT_EQ(out, nullptr);
}

// ---- the Hopper GEMM's copy ----------------------------------------------------

// y = x W^T on `w` with QMATMUL forced to the Hopper GEMM (i[7] = 3), BF16 x [M, K] -> y [M, N] bits.
std::vector<uint16_t> hopper_matmul(xq_qweight* w, const std::vector<uint16_t>& x, int64_t M, int64_t N, int64_t K) {
  auto& P = Plugin::get();
  DevBuf dx(static_cast<size_t>(M * K) * 2), dy(static_cast<size_t>(M * N) * 2);
  dx.put(x);
  dy.poison();
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = w;
  op.src[0] = tensor2(XQ_DTYPE_BF16, M, K, dx.p);
  op.dst = tensor2(XQ_DTYPE_BF16, M, N, dy.p);
  op.i[7] = 3;
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  return dy.get<uint16_t>(static_cast<size_t>(M * N));
}

// qweight_attach with one part: `bytes` (its first n) as the copy of `w`, made from `desc`.
xq_status attach_one(xq_qweight* w, const char* layout, const xq_quant_tensor& desc, const std::vector<uint8_t>& bytes,
                     size_t n = SIZE_MAX) {
  auto& P = Plugin::get();
  const void* data = bytes.data();
  const uint64_t nbytes = n == SIZE_MAX ? bytes.size() : n;
  return P.vt->qweight_attach(P.state, w, layout, &desc, &data, &nbytes, 1);
}

class StoredWgmmaCopy : public testing::TestWithParam<Case> {};

TEST_P(StoredWgmmaCopy, HostPackEqualsDevicePackAndAttachRunsTheSame) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const Case& c = GetParam();
  Weight w = make(c);
  xq_qweight* prepared = nullptr;
  ASSERT_EQ(P.vt->qweight_prepare(P.state, &w.q, &prepared), XQ_OK) << g_last_error;
  if (!prepared->hq) {
    P.vt->qweight_release(P.state, prepared);
    GTEST_SKIP() << "no Hopper W4A16 GEMM here (a build without CUTLASS, or not sm_90)";
  }
  const std::vector<uint8_t> copy = cw::pack(w.q);
  const cw::View v = cw::view(w.q, copy.data(), copy.size());
  const uint64_t scale_bytes = 2 * static_cast<uint64_t>(c.N * v.g.n_groups);
  EXPECT_EQ(first_diff(device_bytes(prepared->hq, static_cast<uint64_t>(c.N * c.K / 2)), v.codes), -1) << "codes";
  EXPECT_EQ(first_diff(device_bytes(prepared->hs, scale_bytes), v.scales), -1) << "scales";
  EXPECT_EQ(first_diff(device_bytes(prepared->hz, scale_bytes), v.offsets), -1) << "offsets";
  // Adopt the mma copy, then attach the wgmma one.
  const xq_quant_tensor desc = description_of(w.q);
  const cl::Packed mma = cl::pack(w.q);
  xq_qweight* adopted = nullptr;
  ASSERT_EQ(P.vt->qweight_adopt(P.state, &desc, cl::kW4Name, mma.bytes.data(), mma.bytes.size(), &adopted), XQ_OK)
      << g_last_error;
  ASSERT_TRUE(XQ_HAS_FIELD(P.vt, xq_kernel_vtable, qweight_attach) && P.vt->qweight_extra_layout && P.vt->qweight_attach);
  const char* extra = P.vt->qweight_extra_layout(P.state, adopted);
  ASSERT_NE(extra, nullptr);
  EXPECT_STREQ(extra, cw::kName);
  EXPECT_EQ(P.vt->qweight_extra_layout(P.state, prepared), nullptr) << "a prepared weight has its copy";
  ASSERT_EQ(attach_one(adopted, extra, desc, copy), XQ_OK) << g_last_error;
  EXPECT_EQ(P.vt->qweight_extra_layout(P.state, adopted), nullptr) << "attached once, asked again";
  for (int64_t M : {64, 200}) {
    std::vector<uint16_t> x(static_cast<size_t>(M * c.K));
    for (auto& b : x) b = xquant::sdk::f32_to_bf16(uniform(-1.f, 1.f));
    EXPECT_TRUE(hopper_matmul(prepared, x, M, c.N, c.K) == hopper_matmul(adopted, x, M, c.N, c.K))
        << "M=" << M << ": the attached copy gave other bits than the prepared one";
  }
  P.vt->qweight_release(P.state, adopted);
  P.vt->qweight_release(P.state, prepared);
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, StoredWgmmaCopy,
    testing::Values(Case{"w4_g128_asym_actorder", 4, XQ_STRATEGY_GROUP, 128, true, true, 256, 512, XQ_DTYPE_F32,
                         XQ_ACT_NONE},
                    Case{"w4_g64_sym", 4, XQ_STRATEGY_GROUP, 64, false, false, 96, 192, XQ_DTYPE_BF16, XQ_ACT_NONE},
                    Case{"w4_g128_ragged_last_group", 4, XQ_STRATEGY_GROUP, 128, false, false, 64, 4160, XQ_DTYPE_F16,
                         XQ_ACT_NONE},
                    Case{"w4_channel_asym", 4, XQ_STRATEGY_CHANNEL, 0, true, false, 128, 256, XQ_DTYPE_F32, XQ_ACT_NONE},
                    Case{"w3_g128_sym", 3, XQ_STRATEGY_GROUP, 128, false, false, 64, 256, XQ_DTYPE_F32, XQ_ACT_NONE}),
    [](const testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(StoredWgmmaCopyErrors, ACopyThatDoesNotFitIsRefusedAndTheWeightStillRuns) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  Weight w = make({"w4", 4, XQ_STRATEGY_GROUP, 128, false, false, 64, 256, XQ_DTYPE_F32, XQ_ACT_NONE});
  const xq_quant_tensor desc = description_of(w.q);
  const cl::Packed mma = cl::pack(w.q);
  xq_qweight* adopted = nullptr;
  ASSERT_EQ(P.vt->qweight_adopt(P.state, &desc, cl::kW4Name, mma.bytes.data(), mma.bytes.size(), &adopted), XQ_OK)
      << g_last_error;
  const char* extra = P.vt->qweight_extra_layout(P.state, adopted);
  if (!extra) {
    P.vt->qweight_release(P.state, adopted);
    GTEST_SKIP() << "no Hopper W4A16 GEMM here (a build without CUTLASS, or not sm_90)";
  }
  const std::vector<uint8_t> copy = cw::pack(w.q);
  EXPECT_EQ(attach_one(adopted, extra, desc, copy, copy.size() - 64), XQ_ERR_MALFORMED);
  EXPECT_NE(g_last_error.find("size"), std::string::npos) << g_last_error;
  EXPECT_EQ(attach_one(adopted, cl::kW4Name, desc, copy), XQ_ERR_UNSUPPORTED);
  // Columns sorted for act-order, but the adopted weight has no permutation.
  std::vector<uint8_t> sorted = copy;
  sorted[8] = 1;
  Weight ao = make({"w4ao", 4, XQ_STRATEGY_GROUP, 128, false, true, 64, 256, XQ_DTYPE_F32, XQ_ACT_NONE});
  const xq_quant_tensor ao_desc = description_of(ao.q);
  EXPECT_EQ(attach_one(adopted, extra, ao_desc, sorted), XQ_ERR_MALFORMED);
  EXPECT_NE(g_last_error.find("permutation"), std::string::npos) << g_last_error;
  // Still no copy, and the weight runs (the older kernels at M = 64).
  EXPECT_STREQ(P.vt->qweight_extra_layout(P.state, adopted), cw::kName);
  const int64_t M = 64;
  DevBuf dx(static_cast<size_t>(M * 256) * 2), dy(static_cast<size_t>(M * 64) * 2);
  std::vector<uint16_t> x(static_cast<size_t>(M * 256), xquant::sdk::f32_to_bf16(0.5f));
  dx.put(x);
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = adopted;
  op.src[0] = tensor2(XQ_DTYPE_BF16, M, 256, dx.p);
  op.dst = tensor2(XQ_DTYPE_BF16, M, 64, dy.p);
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  P.vt->qweight_release(P.state, adopted);
}

// ---- several stored weights adopted as one -----------------------------------

// The parts' rows stacked in the canonical form (what the engine's canonical stacking hands prepare).
Weight stacked_rows(const std::vector<Weight>& parts) {
  Weight s;
  s.q = parts[0].q;
  s.q.rows = 0;
  for (const Weight& p : parts) {
    s.q.rows += p.q.rows;
    s.codes.insert(s.codes.end(), p.codes.begin(), p.codes.end());
    s.scales.insert(s.scales.end(), p.scales.begin(), p.scales.end());
    s.zp.insert(s.zp.end(), p.zp.begin(), p.zp.end());
  }
  s.q.codes = s.codes.data();
  s.q.scales = s.scales.data();
  s.q.zero_points = s.zp.empty() ? nullptr : s.zp.data();
  return s;
}

// qweight_adopt_stacked over the parts' bytes in `layout`.
xq_status adopt_stacked(const char* layout, const std::vector<xq_quant_tensor>& descs,
                        const std::vector<std::vector<uint8_t>>& bytes, xq_qweight** out) {
  auto& P = Plugin::get();
  std::vector<const void*> data;
  std::vector<uint64_t> nbytes;
  for (const auto& b : bytes) {
    data.push_back(b.data());
    nbytes.push_back(b.size());
  }
  return P.vt->qweight_adopt_stacked(P.state, layout, descs.data(), data.data(), nbytes.data(),
                                     static_cast<uint32_t>(bytes.size()), out);
}

struct StackCase {
  const char* name;
  std::vector<Case> parts;
};

class StoredStacked : public testing::TestWithParam<StackCase> {};

// Each part's stored bytes placed (qweight_adopt_stacked) against prepare of the stacked canonical rows:
// the same device bytes, the same DEQUANTIZE; and for W4 on a Hopper build, each part's stored copy of
// the Hopper GEMM placed (qweight_attach with the parts) against the prepared weight's copy.
TEST_P(StoredStacked, PlacedPartsEqualPreparingTheStackedRows) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const StackCase& c = GetParam();
  std::vector<Weight> parts;
  for (const Case& pc : c.parts) parts.push_back(make(pc));
  for (Weight& p : parts) {  // copied into the vector: point the structs at the copies
    p.q.codes = p.codes.data();
    p.q.scales = p.scales.data();
    p.q.zero_points = p.zp.empty() ? nullptr : p.zp.data();
  }
  Weight whole = stacked_rows(parts);
  xq_qweight* prepared = nullptr;
  const xq_status s = P.vt->qweight_prepare(P.state, &whole.q, &prepared);
  if (s == XQ_ERR_UNSUPPORTED && whole.q.bits == XQ_BITS_F8_E4M3) GTEST_SKIP() << g_last_error;  // pre-sm_89
  ASSERT_EQ(s, XQ_OK) << g_last_error;
  std::vector<xq_quant_tensor> descs;
  std::vector<std::vector<uint8_t>> bytes;
  for (const Weight& p : parts) {
    descs.push_back(description_of(p.q));
    bytes.push_back(cl::pack(p.q).bytes);
  }
  const char* layout = P.vt->qweight_packed_layout(P.state, &descs[0]);
  ASSERT_NE(layout, nullptr);
  xq_qweight* adopted = nullptr;
  ASSERT_EQ(adopt_stacked(layout, descs, bytes, &adopted), XQ_OK) << g_last_error;
  const int64_t N = whole.q.rows, K = whole.q.cols;
  if (prepared->kind == xq_qweight::Kind::W4) {
    const cl::Packed want = cl::pack(whole.q);
    const cl::View v = cl::view(whole.q, want.bytes.data(), want.bytes.size());
    EXPECT_EQ(first_diff(device_bytes(adopted->qw, 16 * v.g.qw_words()), v.qw), -1) << "qw";
    EXPECT_EQ(first_diff(device_bytes(adopted->sz_bf16, 8 * v.g.sz_words()), v.sz_bf16), -1) << "sz_bf16";
    EXPECT_EQ(first_diff(device_bytes(adopted->sz_f16, 8 * v.g.sz_words()), v.sz_f16), -1) << "sz_f16";
    EXPECT_EQ(adopted->f32_dequant_uses_f16, prepared->f32_dequant_uses_f16);
  } else {
    EXPECT_TRUE(device_bytes(adopted->w8, static_cast<uint64_t>(N * K)) ==
                device_bytes(prepared->w8, static_cast<uint64_t>(N * K)))
        << "codes";
    EXPECT_TRUE(device_bytes(adopted->sw, 4 * static_cast<uint64_t>(N)) ==
                device_bytes(prepared->sw, 4 * static_cast<uint64_t>(N)))
        << "row scales";
  }
  for (xq_dtype t : {XQ_DTYPE_F32, XQ_DTYPE_BF16}) {
    const auto a = dequantize(prepared, N, K, t), b = dequantize(adopted, N, K, t);
    EXPECT_TRUE(a == b) << "DEQUANTIZE to " << xquant::sdk::dtype_name(t) << " differs";
  }
  if (prepared->hq) {  // a Hopper build, and the stacked shape fits its GEMM
    const char* extra = P.vt->qweight_extra_layout(P.state, adopted);
    ASSERT_NE(extra, nullptr);
    std::vector<std::vector<uint8_t>> copies;
    std::vector<const void*> data;
    std::vector<uint64_t> nbytes;
    for (const Weight& p : parts) copies.push_back(cw::pack(p.q));
    for (const auto& b : copies) {
      data.push_back(b.data());
      nbytes.push_back(b.size());
    }
    ASSERT_EQ(P.vt->qweight_attach(P.state, adopted, extra, descs.data(), data.data(), nbytes.data(),
                                   static_cast<uint32_t>(copies.size())),
              XQ_OK)
        << g_last_error;
    const std::vector<uint8_t> want = cw::pack(whole.q);
    const cw::View v = cw::view(whole.q, want.data(), want.size());
    const uint64_t scale_bytes = 2 * static_cast<uint64_t>(N * v.g.n_groups);
    EXPECT_EQ(first_diff(device_bytes(adopted->hq, static_cast<uint64_t>(N * K / 2)), v.codes), -1) << "wgmma codes";
    EXPECT_EQ(first_diff(device_bytes(adopted->hs, scale_bytes), v.scales), -1) << "wgmma scales";
    EXPECT_EQ(first_diff(device_bytes(adopted->hz, scale_bytes), v.offsets), -1) << "wgmma offsets";
  }
  P.vt->qweight_release(P.state, adopted);
  P.vt->qweight_release(P.state, prepared);
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, StoredStacked,
    testing::Values(
        StackCase{"w4_g128_asym_qkv",
                  {{"q", 4, XQ_STRATEGY_GROUP, 128, true, false, 256, 384, XQ_DTYPE_F32, XQ_ACT_NONE},
                   {"k", 4, XQ_STRATEGY_GROUP, 128, true, false, 128, 384, XQ_DTYPE_F32, XQ_ACT_NONE},
                   {"v", 4, XQ_STRATEGY_GROUP, 128, true, false, 48, 384, XQ_DTYPE_F32, XQ_ACT_NONE}}},
        StackCase{"w4_channel_sym_last_part_odd",
                  {{"gate", 4, XQ_STRATEGY_CHANNEL, 0, false, false, 128, 200, XQ_DTYPE_BF16, XQ_ACT_NONE},
                   {"up", 4, XQ_STRATEGY_CHANNEL, 0, false, false, 37, 200, XQ_DTYPE_BF16, XQ_ACT_NONE}}},
        StackCase{"w8a8_int8_dynamic",
                  {{"q", 8, XQ_STRATEGY_CHANNEL, 0, false, false, 48, 80, XQ_DTYPE_F32, XQ_ACT_DYNAMIC_TOKEN},
                   {"k", 8, XQ_STRATEGY_CHANNEL, 0, false, false, 80, 80, XQ_DTYPE_F32, XQ_ACT_DYNAMIC_TOKEN},
                   {"v", 8, XQ_STRATEGY_CHANNEL, 0, false, false, 16, 80, XQ_DTYPE_F32, XQ_ACT_DYNAMIC_TOKEN}}},
        StackCase{"w8a8_fp8_dynamic",
                  {{"gate", XQ_BITS_F8_E4M3, XQ_STRATEGY_CHANNEL, 0, false, false, 64, 48, XQ_DTYPE_F32,
                    XQ_ACT_DYNAMIC_TOKEN},
                   {"up", XQ_BITS_F8_E4M3, XQ_STRATEGY_CHANNEL, 0, false, false, 32, 48, XQ_DTYPE_F32,
                    XQ_ACT_DYNAMIC_TOKEN}}}),
    [](const testing::TestParamInfo<StackCase>& i) { return std::string(i.param.name); });

TEST(StoredStackedErrors, WhatPlacementCannotStackIsRefusedWithAReason) {
  XQ_REQUIRE_GPU();
  const auto refused = [](const std::vector<Case>& cases, const char* why) {
    std::vector<Weight> parts;
    for (const Case& c : cases) parts.push_back(make(c));
    std::vector<xq_quant_tensor> descs;
    std::vector<std::vector<uint8_t>> bytes;
    float input_scale = 0.05f;
    for (Weight& p : parts) {
      p.q.codes = p.codes.data();
      p.q.scales = p.scales.data();
      p.q.zero_points = p.zp.empty() ? nullptr : p.zp.data();
      p.q.g_idx = p.g_idx.empty() ? nullptr : p.g_idx.data();
      if (p.q.act_scheme == XQ_ACT_STATIC_TENSOR) p.q.input_scale = (input_scale += 0.02f);  // one per part
      descs.push_back(description_of(p.q));
      bytes.push_back(cl::pack(p.q).bytes);
    }
    xq_qweight* out = nullptr;
    EXPECT_EQ(adopt_stacked(cl::name_of(cl::pack(parts[0].q).g.kind), descs, bytes, &out), XQ_ERR_UNSUPPORTED);
    EXPECT_NE(g_last_error.find(why), std::string::npos) << g_last_error;
    EXPECT_EQ(out, nullptr);
  };
  refused({{"a", 4, XQ_STRATEGY_GROUP, 64, false, false, 100, 128, XQ_DTYPE_F32, XQ_ACT_NONE},
           {"b", 4, XQ_STRATEGY_GROUP, 64, false, false, 128, 128, XQ_DTYPE_F32, XQ_ACT_NONE}},
          "n-block");
  refused({{"a", 4, XQ_STRATEGY_GROUP, 64, false, true, 128, 128, XQ_DTYPE_F32, XQ_ACT_NONE},
           {"b", 4, XQ_STRATEGY_GROUP, 64, false, false, 128, 128, XQ_DTYPE_F32, XQ_ACT_NONE}},
          "act-order");
  refused({{"a", 8, XQ_STRATEGY_TENSOR, 0, false, false, 32, 64, XQ_DTYPE_F32, XQ_ACT_STATIC_TENSOR},
           {"b", 8, XQ_STRATEGY_TENSOR, 0, false, false, 32, 64, XQ_DTYPE_F32, XQ_ACT_STATIC_TENSOR}},
          "activation");
}

}  // namespace
