// test_xq_cuda_layout.cpp: the cuda provider's stored layouts on a machine
// without a GPU (the GPU half, byte equality with the provider's own device
// packing and adopt, is tests/cuda/test_stored_layout.cpp).
//
//  * sdk::cuda_layout::pack of fresh random W4 weights (odd shapes, act-order,
//    zero points) decoded back with the layout as plugins/cuda/src/kernels.hpp
//    documents it, independently of the packing loops: every code, scale and
//    zero word where that text says.
//  * The xq writer stores the cuda segment beside the cpu one by default (and
//    only the chosen ones with `layouts`), the loader hands it out unchanged,
//    a reader ignores a layout it does not know, and a cuda segment whose
//    bytes lie about the tensor is refused at open, naming the segment.
//  * The Hopper GEMM's copy (sdk::cuda_wgmma_layout): its nibble order
//    against values CUTLASS's CuTe layout printed (the provider builds the
//    order with CuTe), every code, scale and offset where that order puts
//    them, the shapes the GEMM refuses, and the xq segment written only when
//    `layouts` asks for cuda-wgmma, handed out unchanged, refused when it lies.
//  * Several stored weights adopted as one (q|k|v, gate|up): placing each
//    part's bytes (cuda_layout::stack, cuda_wgmma_layout::stack) gives the
//    bytes pack() gives for the rows stacked in the canonical form, for W4,
//    W8A8 INT8 and FP8 and the Hopper copy; what placement cannot stack is
//    refused with a reason.
#include "test_runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "core/error.hpp"
#include "pipeline/output_writer.hpp"

#include "test_files.hpp"

#include <xquant/sdk/cuda_layout.hpp>
#include <xquant/sdk/cuda_wgmma_layout.hpp>
#include <xquant/sdk/half.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

namespace fs = std::filesystem;
using namespace xquant;
namespace cl = xquant::sdk::cuda_layout;
namespace cw = xquant::sdk::cuda_wgmma_layout;

namespace {

Runtime& runtime() { return test::quiet_runtime(); }

test::Canon random_w4(int64_t rows, int64_t cols, int64_t group, bool sym, bool act_order, uint32_t seed) {
  std::mt19937 rng(seed);
  test::Canon c;
  xq_quant_tensor& q = c.q;
  q.bits = 4;
  q.symmetric = sym ? 1 : 0;
  q.strategy = group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group ? group : cols;
  q.n_groups = group ? (cols + group - 1) / group : 1;
  q.scale_dtype = XQ_DTYPE_F32;
  std::uniform_int_distribution<int> code(-8, 7), zp(-64, 64);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  c.scales.resize(static_cast<size_t>(rows * q.n_groups));
  for (auto& s : c.scales) s = scale(rng);
  if (!sym) {
    c.zps.resize(c.scales.size());
    for (auto& z : c.zps) z = static_cast<int8_t>(zp(rng));
  }
  if (act_order) {  // GPTQ desc_act: every group has group_size columns, scattered
    std::vector<int32_t> p(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) p[static_cast<size_t>(k)] = static_cast<int32_t>(k);
    std::shuffle(p.begin(), p.end(), rng);
    c.gidx.resize(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) c.gidx[static_cast<size_t>(p[static_cast<size_t>(i)])] = static_cast<int32_t>(i / group);
  }
  c.bind();
  return c;
}

uint32_t u32_at(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct W4Case {
  int64_t rows, cols, group;
  bool sym, act_order;
};

class CudaLayoutPack : public testing::TestWithParam<W4Case> {};

// kernels.hpp: lane l = 4*gid + tig of tile t8 in n-block nb, chunk ch holds
// for k-tile kt the word whose nibble 4j + 16e is row nt*16 + gid + 8*(j&1),
// column ch*64 + kt*16 + 2*tig + 8*(j>>1) + e (nt = 8*nb + t8), as code + 8;
// columns in native order (canonical column perm[c]).
TEST_P(CudaLayoutPack, EveryCodeScaleAndZeroSitsWhereTheLayoutSays) {
  const W4Case& c = GetParam();
  test::Canon w = random_w4(c.rows, c.cols, c.group, c.sym, c.act_order, 7);
  const cl::Packed p = cl::pack(w.q);
  const cl::View v = cl::view(w.q, p.bytes.data(), p.bytes.size());
  const cl::Geometry& g = v.g;
  ASSERT_EQ(g.kind, cl::Kind::W4);
  ASSERT_EQ(v.perm != nullptr, c.act_order);
  const int64_t K = c.cols;
  int64_t bad = 0;
  for (int64_t r = 0; r < g.n_blocks * 128; ++r)
    for (int64_t col = 0; col < g.chunks * 64; ++col) {
      const int64_t nt = r / 16, nb = nt / 8, t8 = nt % 8, ch = col / 64, kt = (col % 64) / 16, in16 = col % 16;
      const int gid = static_cast<int>(r % 8), rsel = static_cast<int>((r % 16) / 8);
      const int csel = static_cast<int>(in16 / 8), tig = static_cast<int>((in16 % 8) / 2), e = static_cast<int>(in16 % 2);
      const int j = rsel + 2 * csel, lane = 4 * gid + tig;
      const uint64_t word = static_cast<uint64_t>(((nb * g.chunks + ch) * 8 + t8) * 32 + lane);
      const int nibble = static_cast<int>((u32_at(v.qw + word * 16 + 4 * kt) >> (4 * j + 16 * e)) & 0xF);
      int want = 0;
      if (r < c.rows && col < K) want = w.codes[static_cast<size_t>(r * K + (v.perm ? v.perm[col] : col))];
      bad += nibble - 8 != want;
    }
  EXPECT_EQ(bad, 0) << "codes out of place";
  // The permutation sorts columns by group, stably.
  if (v.perm) {
    for (int64_t col = 1; col < K; ++col) {
      const int32_t a = v.perm[col - 1], b = v.perm[col];
      ASSERT_TRUE(w.gidx[a] < w.gidx[b] || (w.gidx[a] == w.gidx[b] && a < b)) << col;
    }
  }
  // Scale/zero words [n_blocks][n_groups][8][8]: rows r and r+8 of a tile.
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t grp = 0; grp < g.n_groups; ++grp) {
      const int64_t nt = r / 16;
      const uint64_t idx = static_cast<uint64_t>((((nt / 8) * g.n_groups + grp) * 8 + nt % 8) * 8 + r % 8);
      const int shift = (r % 16) >= 8 ? 16 : 0;
      const float s = w.scales[static_cast<size_t>(r * g.n_groups + grp)];
      const int z = c.sym ? 0 : w.zps[static_cast<size_t>(r * g.n_groups + grp)];
      ASSERT_EQ((u32_at(v.sz_bf16 + idx * 8) >> shift) & 0xFFFF, sdk::f32_to_bf16(s)) << r << "," << grp;
      ASSERT_EQ((u32_at(v.sz_bf16 + idx * 8 + 4) >> shift) & 0xFFFF, sdk::f32_to_bf16(136.f + z)) << r << "," << grp;
      ASSERT_EQ((u32_at(v.sz_f16 + idx * 8) >> shift) & 0xFFFF, sdk::f32_to_f16(s)) << r << "," << grp;
      ASSERT_EQ((u32_at(v.sz_f16 + idx * 8 + 4) >> shift) & 0xFFFF, sdk::f32_to_f16(1032.f + z)) << r << "," << grp;
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLayoutPack,
                         testing::Values(W4Case{37, 200, 32, false, false}, W4Case{131, 320, 64, true, true},
                                         W4Case{16, 64, 16, false, true}, W4Case{129, 65, 0, false, false},
                                         W4Case{256, 256, 128, true, false}),
                         [](const testing::TestParamInfo<W4Case>& i) {
                           const W4Case& c = i.param;
                           return std::to_string(c.rows) + "x" + std::to_string(c.cols) + "_g" + std::to_string(c.group) +
                                  (c.sym ? "_sym" : "_asym") + (c.act_order ? "_actorder" : "");
                         });

TEST(CudaLayoutPack, RefusesWhatTheProviderRefuses) {
  test::Canon w = random_w4(32, 96, 32, true, false, 3);
  w.q.group_size = 48;  // not a power of two
  w.q.n_groups = 2;
  EXPECT_THROW(cl::pack(w.q), sdk::Error);
  test::Canon a = random_w4(32, 96, 32, true, false, 3);
  a.codes[5] = 9;  // outside the 4-bit range
  EXPECT_THROW(cl::pack(a.q), sdk::Error);
  test::Canon b = random_w4(32, 96, 32, true, false, 3);
  b.q.bits = 8;  // weight-only 8-bit: no cuda W4A16 layout
  EXPECT_THROW(cl::pack(b.q), sdk::Error);
}

// ---- the Hopper GEMM's copy ------------------------------------------------------

// CuTe's layout (plugins/cuda/src/w4a16_hopper_gemm.cuh weight_layout, CUTLASS
// 4.2.0, printed on the host by a program that instantiates it) at four
// shapes: a hash of every offset in row-major (n, c) order, h = h * 1000003 +
// offset mod 2^61, and ten offsets each.
struct CuteShape {
  int64_t N, K;
  uint64_t hash;
  int64_t at[10][3];  // n, c, offset
};
constexpr CuteShape kCute[] = {
    {16, 16, 1406468177645746432ULL, {{0, 0, 0}, {1, 0, 32}, {0, 1, 4}, {7, 3, 236}, {8, 0, 1}, {15, 15, 255}, {15, 15, 255}, {11, 13, 119}, {15, 0, 225}, {0, 15, 30}}},
    {32, 64, 1130345422792542208ULL, {{0, 0, 0}, {1, 0, 32}, {0, 1, 4}, {7, 3, 236}, {8, 0, 1}, {15, 15, 255}, {31, 63, 2047}, {19, 37, 1396}, {31, 0, 481}, {0, 63, 1566}}},
    {48, 192, 1079871224694965248ULL, {{0, 0, 0}, {1, 0, 32}, {0, 1, 4}, {7, 3, 236}, {8, 0, 1}, {15, 15, 255}, {47, 191, 9215}, {27, 101, 4981}, {47, 0, 737}, {0, 191, 8478}}},
    {128, 256, 746314217058762752ULL, {{0, 0, 0}, {1, 0, 32}, {0, 1, 4}, {7, 3, 236}, {8, 0, 1}, {15, 15, 255}, {127, 255, 32767}, {67, 133, 17524}, {127, 0, 2017}, {0, 255, 30750}}},
};

TEST(CudaWgmmaLayout, NibbleOrderIsCuTes) {
  for (const CuteShape& s : kCute) {
    SCOPED_TRACE(std::to_string(s.N) + "x" + std::to_string(s.K));
    uint64_t h = 0;
    std::vector<uint8_t> seen(static_cast<size_t>(s.N * s.K), 0);
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t c = 0; c < s.K; ++c) {
        const int64_t at = cw::nibble_at(s.N, n, c);
        ASSERT_TRUE(at >= 0 && at < s.N * s.K) << n << "," << c;
        ++seen[static_cast<size_t>(at)];
        h = static_cast<uint64_t>((static_cast<unsigned __int128>(h) * 1000003u + static_cast<uint64_t>(at)) %
                                  (static_cast<unsigned __int128>(1) << 61));
      }
    EXPECT_EQ(h, s.hash);
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](uint8_t v) { return v == 1; })) << "not a permutation";
    for (const auto& a : s.at) EXPECT_EQ(cw::nibble_at(s.N, a[0], a[1]), a[2]) << a[0] << "," << a[1];
  }
}

class CudaWgmmaPack : public testing::TestWithParam<W4Case> {};

// Each code at nibble_at(N, n, c) (native column c: canonical perm[c]), as a
// signed nibble; scales and offsets bf16 [G][N], offset = -scale * zero point.
TEST_P(CudaWgmmaPack, EveryCodeScaleAndOffsetSitsWhereTheLayoutSays) {
  const W4Case& c = GetParam();
  test::Canon w = random_w4(c.rows, c.cols, c.group, c.sym, c.act_order, 21);
  const std::vector<uint8_t> bytes = cw::pack(w.q);
  const cw::View v = cw::view(w.q, bytes.data(), bytes.size());
  const cl::Packed mma = cl::pack(w.q);
  const cl::View mv = cl::view(w.q, mma.bytes.data(), mma.bytes.size());
  ASSERT_EQ(v.g.sorted, mv.perm != nullptr);  // the same column order as the mma copy
  const int64_t N = c.rows, K = c.cols, G = v.g.n_groups;
  int64_t bad = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t col = 0; col < K; ++col) {
      const int64_t at = cw::nibble_at(N, n, col);
      const int nib = (v.codes[at >> 1] >> (4 * (at & 1))) & 0xF;
      const int code = nib >= 8 ? nib - 16 : nib;
      bad += code != w.codes[static_cast<size_t>(n * K + (mv.perm ? mv.perm[col] : col))];
    }
  EXPECT_EQ(bad, 0) << "codes out of place";
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t n = 0; n < N; ++n) {
      uint16_t s = 0, z = 0;
      std::memcpy(&s, v.scales + 2 * (grp * N + n), 2);
      std::memcpy(&z, v.offsets + 2 * (grp * N + n), 2);
      const uint16_t want_s = sdk::f32_to_bf16(w.scales[static_cast<size_t>(n * G + grp)]);
      const float zp = c.sym ? 0.f : static_cast<float>(w.zps[static_cast<size_t>(n * G + grp)]);
      ASSERT_EQ(s, want_s) << n << "," << grp;
      ASSERT_EQ(z, sdk::f32_to_bf16(-sdk::bf16_to_f32(want_s) * zp)) << n << "," << grp;
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaWgmmaPack,
                         testing::Values(W4Case{128, 256, 128, false, true}, W4Case{48, 192, 64, true, false},
                                         W4Case{32, 128, 0, false, false}, W4Case{16, 4160, 128, true, false}),
                         [](const testing::TestParamInfo<W4Case>& i) {
                           const W4Case& c = i.param;
                           return std::to_string(c.rows) + "x" + std::to_string(c.cols) + "_g" + std::to_string(c.group) +
                                  (c.sym ? "_sym" : "_asym") + (c.act_order ? "_actorder" : "");
                         });

TEST(CudaWgmmaPack, RefusesWhatTheHopperGemmRefuses) {
  const auto reason = [](const test::Canon& w) -> std::string {
    try {
      (void)cw::pack(w.q);
    } catch (const sdk::Error& e) {
      EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED) << e.what();
      return e.what();
    }
    return "";
  };
  EXPECT_NE(reason(random_w4(40, 128, 64, true, false, 5)).find("multiple of 16"), std::string::npos);
  EXPECT_NE(reason(random_w4(32, 96, 32, true, false, 5)).find("multiple of 64"), std::string::npos);
  EXPECT_NE(reason(random_w4(32, 128, 32, true, false, 5)).find("group size"), std::string::npos);
  test::Canon w8 = random_w4(32, 128, 64, true, false, 5);
  w8.q.bits = 8;  // weight-only 8-bit: no W4A16 weight at all
  EXPECT_NE(reason(w8), "");
}

TEST(CudaWgmmaPack, ViewRefusesBytesThatLie) {
  test::Canon w = random_w4(32, 128, 64, false, false, 6);
  const std::vector<uint8_t> good = cw::pack(w.q);
  const auto refused = [&](std::vector<uint8_t> bytes, const xq_quant_tensor& q, const char* part) {
    try {
      (void)cw::view(q, bytes.data(), bytes.size());
      ADD_FAILURE() << "accepted; expected a complaint about " << part;
    } catch (const sdk::Error& e) {
      EXPECT_EQ(e.status(), XQ_ERR_MALFORMED) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused(std::vector<uint8_t>(good.begin(), good.end() - 64), w.q, "size");
  std::vector<uint8_t> magic = good;
  magic[2] = 'X';
  refused(magic, w.q, "header.magic");
  std::vector<uint8_t> flags = good;
  flags[8] = 2;  // a flag this reader does not know
  refused(flags, w.q, "header.flags");
  xq_quant_tensor taller = w.q;
  taller.rows = 48;
  refused(good, taller, "header");
}

// ---- several stored weights as one ------------------------------------------------

test::Canon random_w8(int64_t rows, int64_t cols, bool fp8, uint32_t seed) {
  std::mt19937 rng(seed);
  test::Canon c;
  xq_quant_tensor& q = c.q;
  q.bits = fp8 ? XQ_BITS_F8_E4M3 : 8;
  q.symmetric = 1;
  q.strategy = XQ_STRATEGY_CHANNEL;
  q.rows = rows;
  q.cols = cols;
  q.group_size = cols;
  q.n_groups = 1;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
  q.act_bits = fp8 ? XQ_BITS_F8_E4M3 : 8;
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) {
    int b = byte(rng);
    if (fp8 && (b & 0x7F) == 0x7F) b = 0;  // no NaN
    v = static_cast<int8_t>(fp8 ? b : b - 128);
  }
  c.scales.resize(static_cast<size_t>(rows));
  for (auto& x : c.scales) x = scale(rng);
  c.bind();
  return c;
}

// The parts' rows stacked in the canonical form (what the engine's canonical stacking builds).
test::Canon stacked_rows(const std::vector<test::Canon>& parts) {
  test::Canon s;
  s.q = parts[0].q;
  s.q.rows = 0;
  for (const test::Canon& p : parts) {
    s.q.rows += p.q.rows;
    s.codes.insert(s.codes.end(), p.codes.begin(), p.codes.end());
    s.scales.insert(s.scales.end(), p.scales.begin(), p.scales.end());
    s.zps.insert(s.zps.end(), p.zps.begin(), p.zps.end());
  }
  s.bind();
  return s;
}

std::vector<cl::View> views_of(const std::vector<cl::Packed>& packed, const std::vector<test::Canon>& parts) {
  std::vector<cl::View> v;
  for (size_t i = 0; i < parts.size(); ++i) v.push_back(cl::view(parts[i].q, packed[i].bytes.data(), packed[i].bytes.size()));
  return v;
}

TEST(CudaLayoutStack, PlacementEqualsPackingTheStackedRows) {
  struct Shape {
    const char* name;
    std::vector<test::Canon> parts;
  };
  std::vector<Shape> shapes;
  // q|k|v-like: whole n-blocks, then a last part with a partial one; asymmetric groups of 128.
  shapes.push_back({"w4_g128_asym", {random_w4(256, 384, 128, false, false, 31), random_w4(128, 384, 128, false, false, 32),
                                     random_w4(37, 384, 128, false, false, 33)}});
  shapes.push_back({"w4_channel_sym", {random_w4(128, 200, 0, true, false, 34), random_w4(300, 200, 0, true, false, 35)}});
  shapes.push_back({"w8a8_int8", {random_w8(48, 80, false, 36), random_w8(80, 80, false, 37), random_w8(16, 80, false, 38)}});
  shapes.push_back({"w8a8_fp8", {random_w8(32, 64, true, 39), random_w8(96, 64, true, 40)}});
  for (Shape& sh : shapes) {
    SCOPED_TRACE(sh.name);
    for (test::Canon& p : sh.parts) p.bind();  // copied into the list: point the structs at the copies
    std::vector<cl::Packed> packed;
    for (const test::Canon& p : sh.parts) packed.push_back(cl::pack(p.q));
    const std::vector<cl::View> views = views_of(packed, sh.parts);
    const cl::StackPlan plan = cl::stack_plan(views);
    const cl::Packed placed = cl::stack(views, plan);
    const test::Canon whole = stacked_rows(sh.parts);
    const cl::Packed want = cl::pack(whole.q);
    ASSERT_EQ(placed.bytes.size(), want.bytes.size());
    EXPECT_EQ(placed.flags, want.flags);
    EXPECT_TRUE(placed.bytes == want.bytes) << "placed bytes differ from packing the stacked rows";
    // And the stacked bytes are a valid stored weight for the stacked description.
    EXPECT_NO_THROW((void)cl::view(whole.q, placed.bytes.data(), placed.bytes.size()));
  }
}

TEST(CudaLayoutStack, RefusesWhatPlacementCannotStack) {
  const auto refused = [](std::vector<test::Canon> parts, const char* why) {
    for (test::Canon& p : parts) p.bind();
    std::vector<cl::Packed> packed;
    for (const test::Canon& p : parts) packed.push_back(cl::pack(p.q));
    try {
      (void)cl::stack_plan(views_of(packed, parts));
      ADD_FAILURE() << "stacked; expected: " << why;
    } catch (const sdk::Error& e) {
      EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  refused({random_w4(100, 128, 64, true, false, 41), random_w4(128, 128, 64, true, false, 42)}, "n-block");
  refused({random_w4(128, 128, 64, true, false, 43), random_w4(128, 128, 64, true, true, 44)}, "act-order");
  refused({random_w4(128, 128, 64, true, false, 45), random_w4(128, 192, 64, true, false, 46)}, "column count");
  refused({random_w4(128, 128, 64, true, false, 47), random_w8(128, 128, false, 48)}, "kind");
}

TEST(CudaWgmmaStack, PlacementEqualsPackingTheStackedRows) {
  std::vector<test::Canon> parts = {random_w4(64, 256, 128, false, false, 51), random_w4(32, 256, 128, false, false, 52),
                                    random_w4(48, 256, 128, false, false, 53)};
  for (test::Canon& p : parts) p.bind();
  std::vector<std::vector<uint8_t>> packed;
  std::vector<cw::View> views;
  for (const test::Canon& p : parts) packed.push_back(cw::pack(p.q));
  for (size_t i = 0; i < parts.size(); ++i) views.push_back(cw::view(parts[i].q, packed[i].data(), packed[i].size()));
  const cw::StackPlan plan = cw::stack_plan(views);
  EXPECT_EQ(plan.row0, (std::vector<int64_t>{0, 64, 96}));
  const test::Canon whole = stacked_rows(parts);
  EXPECT_TRUE(cw::stack(views, plan) == cw::pack(whole.q)) << "placed bytes differ from packing the stacked rows";
  // Act-order columns: each part has its own order.
  test::Canon ao = random_w4(64, 256, 128, false, true, 54);
  const std::vector<uint8_t> ao_bytes = cw::pack(ao.q);
  views.push_back(cw::view(ao.q, ao_bytes.data(), ao_bytes.size()));
  try {
    (void)cw::stack_plan(views);
    ADD_FAILURE() << "stacked act-order columns";
  } catch (const sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("act-order"), std::string::npos) << e.what();
  }
}

// ---- the xq container ----------------------------------------------------------

constexpr const char* kModule = "model.layers.0.self_attn.q_proj";

void write_xq(const fs::path& out, const test::Canon& w, const char* layouts = nullptr) {
  Kv config, params;
  if (layouts) params.set("layouts", KvValue::string(layouts));
  OutputWriter wr(runtime().plugins().require(XQ_PLUGIN_FORMAT, "xq"), out, "", config, params, {});
  wr.add_quantized(kModule, w.q);
  wr.finish();
}

bool has_packed(const Checkpoint& cp, const std::string& layout) {
  auto desc = sdk::make_struct<xq_quant_tensor>();
  auto view = sdk::make_struct<xq_tensor_view>();
  return cp.read_packed(cp.require(std::string(kModule) + ".weight"), layout, desc, view);
}

TEST(XqCudaSegment, StoredByDefaultAndHandedOutUnchanged) {
  test::TempDir dir("xq-cuda");
  test::Canon w = random_w4(40, 160, 32, false, true, 11);
  write_xq(dir / "m.xq", w);
  auto cp = Checkpoint::open(runtime(), dir / "m.xq");
  const TensorEntry& te = cp->require(std::string(kModule) + ".weight");
  auto desc = sdk::make_struct<xq_quant_tensor>();
  auto view = sdk::make_struct<xq_tensor_view>();
  ASSERT_TRUE(cp->read_packed(te, cl::kW4Name, desc, view));
  const cl::Packed p = cl::pack(w.q);
  ASSERT_EQ(view.nbytes, p.bytes.size());
  EXPECT_EQ(std::memcmp(view.data, p.bytes.data(), p.bytes.size()), 0);
  EXPECT_TRUE(has_packed(*cp, "cpu.int-blocks.v1"));
  // Every provider still reads the canonical tensor.
  QuantTensor q = cp->read_quantized(te);
  EXPECT_EQ(std::memcmp(q.get().codes, w.codes.data(), w.codes.size()), 0);
}

TEST(XqCudaSegment, TheLayoutsParameterChooses) {
  test::TempDir dir("xq-cuda-choice");
  test::Canon w = random_w4(32, 64, 32, true, false, 12);
  write_xq(dir / "cpu.xq", w, "cpu");
  write_xq(dir / "cuda.xq", w, "cuda");
  write_xq(dir / "none.xq", w, "none");
  auto cpu = Checkpoint::open(runtime(), dir / "cpu.xq");
  auto cuda = Checkpoint::open(runtime(), dir / "cuda.xq");
  auto none = Checkpoint::open(runtime(), dir / "none.xq");
  EXPECT_TRUE(has_packed(*cpu, "cpu.int-blocks.v1"));
  EXPECT_FALSE(has_packed(*cpu, cl::kW4Name));
  EXPECT_FALSE(has_packed(*cuda, "cpu.int-blocks.v1"));
  EXPECT_TRUE(has_packed(*cuda, cl::kW4Name));
  EXPECT_FALSE(has_packed(*none, "cpu.int-blocks.v1"));
  EXPECT_FALSE(has_packed(*none, cl::kW4Name));
  try {
    write_xq(dir / "bad.xq", w, "cpu,tpu");
    ADD_FAILURE() << "an unknown provider in layouts was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'tpu'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "bad.xq"));
}

// The file's bytes with `from` replaced by `to` (same length) everywhere.
std::string replaced(std::string bytes, const std::string& from, const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  size_t n = 0;
  for (size_t at = bytes.find(from); at != std::string::npos; at = bytes.find(from, at + 1), ++n)
    bytes.replace(at, from.size(), to);
  EXPECT_GT(n, 0u) << from;
  return bytes;
}

TEST(XqCudaSegment, TheWgmmaCopyIsStoredOnlyWhenAsked) {
  test::TempDir dir("xq-cuda-wgmma");
  test::Canon w = random_w4(64, 256, 128, false, true, 14);
  write_xq(dir / "default.xq", w);
  write_xq(dir / "wgmma.xq", w, "cuda,cuda-wgmma");
  auto plain = Checkpoint::open(runtime(), dir / "default.xq");
  EXPECT_FALSE(has_packed(*plain, cw::kName));
  auto cp = Checkpoint::open(runtime(), dir / "wgmma.xq");
  EXPECT_TRUE(has_packed(*cp, cl::kW4Name));
  auto desc = sdk::make_struct<xq_quant_tensor>();
  auto view = sdk::make_struct<xq_tensor_view>();
  ASSERT_TRUE(cp->read_packed(cp->require(std::string(kModule) + ".weight"), cw::kName, desc, view));
  const std::vector<uint8_t> want = cw::pack(w.q);
  ASSERT_EQ(view.nbytes, want.size());
  EXPECT_EQ(std::memcmp(view.data, want.data(), want.size()), 0);
  // A weight the Hopper GEMM does not take gets no copy, and the file is still written.
  test::Canon g32 = random_w4(64, 256, 32, true, false, 15);
  write_xq(dir / "g32.xq", g32, "cuda,cuda-wgmma");
  auto cp32 = Checkpoint::open(runtime(), dir / "g32.xq");
  EXPECT_TRUE(has_packed(*cp32, cl::kW4Name));
  EXPECT_FALSE(has_packed(*cp32, cw::kName));
  // A copy whose header gives another row count is refused at open, naming the segment.
  std::string lying = test::read_file(dir / "wgmma.xq");
  const size_t at = lying.find(std::string(cw::kMagic, 8));
  ASSERT_NE(at, std::string::npos);
  const int64_t rows = 80;
  std::memcpy(lying.data() + at + 16, &rows, 8);
  test::write_file(dir / "lying.xq", lying);
  try {
    (void)Checkpoint::open(runtime(), dir / "lying.xq");
    ADD_FAILURE() << "a wgmma segment with another shape opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::string("segments[") + cw::kName + "]"), std::string::npos) << e.what();
  }
}

TEST(XqCudaSegment, AnUnknownLayoutIsIgnoredAndALyingOneRefused) {
  test::TempDir dir("xq-cuda-unknown");
  test::Canon w = random_w4(48, 128, 64, true, false, 13);
  write_xq(dir / "m.xq", w);
  const std::string good = test::read_file(dir / "m.xq");
  // A layout of a provider newer than this reader (the name in the manifest).
  test::write_file(dir / "newer.xq", replaced(good, cl::kW4Name, "cuda.w4a16-mma.v9"));
  auto cp = Checkpoint::open(runtime(), dir / "newer.xq");
  EXPECT_FALSE(has_packed(*cp, "cuda.w4a16-mma.v9"));
  EXPECT_FALSE(has_packed(*cp, cl::kW4Name));
  EXPECT_TRUE(has_packed(*cp, "cpu.int-blocks.v1"));
  (void)cp->read_quantized(cp->require(std::string(kModule) + ".weight"));
  // A cuda segment whose header gives another row count than the tensor's.
  std::string lying = good;
  const size_t at = lying.find(std::string(cl::kMagic, 8));
  ASSERT_NE(at, std::string::npos);
  const int64_t rows = 64;
  std::memcpy(lying.data() + at + 16, &rows, 8);
  test::write_file(dir / "lying.xq", lying);
  try {
    (void)Checkpoint::open(runtime(), dir / "lying.xq");
    ADD_FAILURE() << "a cuda segment with another shape opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::string("segments[") + cl::kW4Name + "]"), std::string::npos) << e.what();
  }
}

}  // namespace
