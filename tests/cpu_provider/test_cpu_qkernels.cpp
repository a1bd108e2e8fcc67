// test_cpu_qkernels.cpp: the `cpu` provider's packed quantized kernels.
//   1. Each instruction-set table (AVX2, AVX-512 VNNI) against the scalar
//      reference kernels on fresh random blocks and random group splits:
//      per-token integer paths bit-exact, float ones within float rounding.
//   2. QMATMUL through the real plugin with each ISA forced
//      (XQUANT_CPU_ISA, read when a weight is prepared) and the weight-only
//      decode modes (XQUANT_CPU_GEMV: f32, q8, and auto = q8 but for INT8 on scalar;
//      XQUANT_CPU_GEMV_ROWS8: off, transpose, interleaved), against a double-precision reference
//      built here from the canonical tensor: odd shapes (K not a multiple of
//      the group or of 32), M = 1, 3, 17, sym/asym, act-order, group sizes
//      32/64/128/per-channel, 2..8 bits, weight-only and W8A8.
//   3. The packed layout's memory: INT4 group 128 costs <= 0.5625 bytes per
//      weight, INT8 <= 1.07.
// A path the CPU lacks is skipped with a message naming it; scalar and AVX2
// always run on x86-64 CI machines of this project's kind.
#include "../support/cpu_provider_fixture.hpp"
#include "core/runtime.hpp"
#include "cpu.hpp"
#include "plugins/registry.hpp"
#include "qkernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using namespace xquant;
using xquant::cpu::Isa;
using xquant::cpu::kBlock;

namespace {

std::mt19937 rng(20261130);

test::CpuProvider& fx() { return test::cpu_provider(); }

using test::ScopedEnv;

#define SKIP_UNLESS_CPU_HAS(isa)                                                                        \
  if (!cpu::cpu_has(isa)) GTEST_SKIP() << "this CPU lacks " << cpu::isa_name(isa) << ": path not tested"

std::vector<float> rnd_f(size_t n) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
std::vector<int8_t> rnd_i8(size_t n, int lo = -128, int hi = 127) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

// ---------------------------------------------------------------- kernels

// Random groups of 1..5 blocks covering nblk blocks; bb as the kernels take it.
std::vector<int64_t> random_groups(int64_t nblk) {
  std::uniform_int_distribution<int64_t> d(1, 5);
  std::vector<int64_t> bb{0};
  while (bb.back() < nblk) bb.push_back(std::min(nblk, bb.back() + d(rng)));
  return bb;
}

void expect_kernels_match_scalar(Isa isa) {
  const cpu::QKernels& ref = cpu::kScalarKernels;
  const cpu::QKernels& k = cpu::kernels_of(isa);
  for (int64_t nblk : {1, 2, 3, 4, 5, 18, 48}) {
    const int64_t n = nblk * kBlock;
    auto w4v = rnd_i8(static_cast<size_t>(nblk * 16));  // any byte is two valid nibbles
    std::vector<uint8_t> w4(w4v.begin(), w4v.end());
    auto w8 = rnd_i8(static_cast<size_t>(n));  // the full int8 range, -128 included
    auto a = rnd_i8(static_cast<size_t>(n));   // -128 included (static activation scales reach it)
    auto a127 = rnd_i8(static_cast<size_t>(n), -127, 127);  // dynamic scales' codes
    auto x = rnd_f(static_cast<size_t>(n));
    auto sa = rnd_f(static_cast<size_t>(nblk));
    for (auto bb : {std::vector<int64_t>{0, nblk}, random_groups(nblk)}) {
      const int64_t G = static_cast<int64_t>(bb.size()) - 1;
      auto s = rnd_f(static_cast<size_t>(G));
      std::string where = std::to_string(nblk) + " blocks in " + std::to_string(G) + " groups";
      // Integer paths: exact int32 per group, scaled and summed in the
      // reference's order, so bit-identical (W8A8 relies on it: a rounding
      // difference would flip later int8 activation roundings).
      EXPECT_EQ(k.dot4_i8(w4.data(), a.data(), bb.data(), G, s.data()),
                ref.dot4_i8(w4.data(), a.data(), bb.data(), G, s.data())) << where;
      EXPECT_EQ(k.dot8_i8(w8.data(), a.data(), bb.data(), G, s.data()),
                ref.dot8_i8(w8.data(), a.data(), bb.data(), G, s.data())) << where;
      // The dynamic-activation form (codes within [-127, 127], weights any
      // int8; weight -128 against activation -127 and 127 so the extreme
      // products occur): the same bits as the reference.
      a127[0] = -127, a127[1] = 127, w8[0] = -128, w8[1] = -128;
      EXPECT_EQ(k.dot8_i8_a127(w8.data(), a127.data(), bb.data(), G, s.data()),
                ref.dot8_i8(w8.data(), a127.data(), bb.data(), G, s.data())) << where << " (a127)";
      // Float paths: summation order differs; bound by float rounding of the
      // sum of |terms| (each at most 255 * 128 per column).
      const float tol = 1e-5f * 255.0f * 128.0f * static_cast<float>(n);
      EXPECT_NEAR(k.dot4_f32(w4.data(), x.data(), bb.data(), G, s.data()),
                  ref.dot4_f32(w4.data(), x.data(), bb.data(), G, s.data()), tol / 128) << where;
      EXPECT_NEAR(k.dot8_f32(w8.data(), x.data(), bb.data(), G, s.data()),
                  ref.dot8_f32(w8.data(), x.data(), bb.data(), G, s.data()), tol / 128) << where;
      EXPECT_NEAR(k.dot4_q8(w4.data(), a.data(), sa.data(), bb.data(), G, s.data()),
                  ref.dot4_q8(w4.data(), a.data(), sa.data(), bb.data(), G, s.data()), tol) << where;
      EXPECT_NEAR(k.dot8_q8(w8.data(), a.data(), sa.data(), bb.data(), G, s.data()),
                  ref.dot8_q8(w8.data(), a.data(), sa.data(), bb.data(), G, s.data()), tol) << where;
    }
  }
}

// The prefill tiles give, for every (weight row, activation row) pair, the
// same float as the table's own dot*_q8 for that pair, bit for bit.
void expect_tiles_match_pairs(Isa isa) {
  const cpu::QKernels& k = cpu::kernels_of(isa);
  constexpr int64_t R = cpu::kTileRows, C = cpu::kTileCols;
  for (int64_t nblk : {1, 3, 5, 18}) {
    const int64_t n = nblk * kBlock, ld4 = nblk * 16 + 5, ld8 = n + 7, lda = n + 3, ldsa = nblk + 2;  // odd strides
    auto w4v = rnd_i8(static_cast<size_t>(R * ld4));
    std::vector<uint8_t> w4(w4v.begin(), w4v.end());
    auto w8 = rnd_i8(static_cast<size_t>(R * ld8));
    auto a = rnd_i8(static_cast<size_t>(C * lda), -127, 127);  // q8 blocks never reach -128
    auto sa = rnd_f(static_cast<size_t>(C * ldsa));
    for (auto bb : {std::vector<int64_t>{0, nblk}, random_groups(nblk)}) {
      const int64_t G = static_cast<int64_t>(bb.size()) - 1;
      auto s = rnd_f(static_cast<size_t>(R * G));
      float t4[R * C], t8[R * C];
      k.tile4_q8(w4.data(), ld4, s.data(), a.data(), lda, sa.data(), ldsa, bb.data(), G, t4);
      k.tile8_q8(w8.data(), ld8, s.data(), a.data(), lda, sa.data(), ldsa, bb.data(), G, t8);
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < C; ++j) {
          const std::string where = std::string(cpu::isa_name(isa)) + ": " + std::to_string(nblk) + " blocks in " +
                                    std::to_string(G) + " groups, pair " + std::to_string(i) + "," + std::to_string(j);
          EXPECT_EQ(t4[i * C + j], k.dot4_q8(w4.data() + i * ld4, a.data() + j * lda, sa.data() + j * ldsa, bb.data(),
                                             G, s.data() + i * G)) << where;
          EXPECT_EQ(t8[i * C + j], k.dot8_q8(w8.data() + i * ld8, a.data() + j * lda, sa.data() + j * ldsa, bb.data(),
                                             G, s.data() + i * G)) << where;
        }
    }
  }
}

TEST(CpuQKernels, PrefillTilesMatchTheirPairDots) {
  expect_tiles_match_pairs(Isa::scalar);
  if (cpu::cpu_has(Isa::avx2)) expect_tiles_match_pairs(Isa::avx2);
  else std::printf("this CPU lacks avx2: its tiles not tested\n");
  if (cpu::cpu_has(Isa::avx512)) expect_tiles_match_pairs(Isa::avx512);
  else std::printf("this CPU lacks avx512: its tiles not tested\n");
}

TEST(CpuQKernels, ScalarReferenceIsWhatItSays) {
  // One block by hand: nibble order of block_q4_0 (low nibbles = columns 0..15).
  std::vector<uint8_t> w4(16);
  std::vector<int8_t> a(kBlock, 0);
  for (int i = 0; i < 16; ++i) w4[i] = static_cast<uint8_t>(i | ((15 - i) << 4));
  a[3] = 2;   // column 3: low nibble of byte 3 = 3
  a[19] = 5;  // column 19: high nibble of byte 3 = 12
  const int64_t bb[2] = {0, 1};
  const float s = 0.5f;
  EXPECT_FLOAT_EQ(cpu::kScalarKernels.dot4_i8(w4.data(), a.data(), bb, 1, &s), 0.5f * (3 * 2 + 12 * 5));
  std::vector<float> x(kBlock, 0.0f);
  x[0] = 1.5f;   // low nibble of byte 0 = 0
  x[16] = 0.5f;  // high nibble of byte 0 = 15
  EXPECT_FLOAT_EQ(cpu::kScalarKernels.dot4_f32(w4.data(), x.data(), bb, 1, &s), 0.5f * 7.5f);
}

TEST(CpuQKernels, Avx2MatchesScalar) {
  SKIP_UNLESS_CPU_HAS(Isa::avx2);
  expect_kernels_match_scalar(Isa::avx2);
}

TEST(CpuQKernels, Avx512VnniMatchesScalar) {
  SKIP_UNLESS_CPU_HAS(Isa::avx512);
  expect_kernels_match_scalar(Isa::avx512);
}

// ---------------------------------------------------------------- provider

struct Canon {
  int64_t rows, cols, gs, ng;
  std::vector<int8_t> codes, zps;
  std::vector<float> scales;
  std::vector<int32_t> gidx;
  xq_quant_tensor t{};
  double w(int64_t r, int64_t c) const {
    int64_t g = r * ng + (gidx.empty() ? c / gs : gidx[c]);
    double z = zps.empty() ? 0.0 : zps[g];
    return (codes[r * cols + c] - z) * scales[g];
  }
};

// gs = 0: per channel.
Canon make_canon(int64_t rows, int64_t cols, uint32_t bits, int64_t gs, bool sym, bool act_order) {
  Canon c;
  c.rows = rows;
  c.cols = cols;
  c.gs = gs ? gs : cols;
  c.ng = (cols + c.gs - 1) / c.gs;
  int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  c.codes = rnd_i8(static_cast<size_t>(rows * cols), lo, hi);
  c.scales = rnd_f(static_cast<size_t>(rows * c.ng));
  for (auto& s : c.scales) s = 0.01f + 0.05f * std::fabs(s);
  if (!sym) c.zps = rnd_i8(static_cast<size_t>(rows * c.ng), lo, hi);
  if (act_order) {
    c.gidx.resize(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) c.gidx[i] = static_cast<int32_t>(i / c.gs);
    std::shuffle(c.gidx.begin(), c.gidx.end(), rng);
  }
  auto& t = c.t;
  t.struct_size = sizeof(t);
  t.bits = bits;
  t.symmetric = sym;
  t.strategy = gs ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  t.rows = rows;
  t.cols = cols;
  t.group_size = c.gs;
  t.n_groups = c.ng;
  t.codes = c.codes.data();
  t.scales = c.scales.data();
  t.zero_points = sym ? nullptr : c.zps.data();
  t.g_idx = act_order ? c.gidx.data() : nullptr;
  t.scale_dtype = XQ_DTYPE_F32;
  return c;
}

struct QW {
  xq_qweight* w = nullptr;
  xq_status status;
  explicit QW(const xq_quant_tensor& t) { status = fx().vt().qweight_prepare(fx().p->state, &t, &w); }
  ~QW() {
    if (w) fx().vt().qweight_release(fx().p->state, w);
  }
};

xq_device_tensor f32(int64_t r, int64_t c, const float* data) {
  xq_device_tensor t{};
  t.struct_size = sizeof(t);
  t.dtype = XQ_DTYPE_F32;
  t.ndim = 2;
  t.shape[0] = r;
  t.shape[1] = c;
  t.data = const_cast<float*>(data);
  return t;
}

std::vector<float> qmatmul(const QW& qw, const std::vector<float>& x, int64_t M, int64_t N, int64_t K) {
  std::vector<float> y(static_cast<size_t>(M * N));
  xq_op op{};
  op.struct_size = sizeof(op);
  op.type = XQ_OP_QMATMUL;
  op.qweight = qw.w;
  op.src[0] = f32(M, K, x.data());
  op.dst = f32(M, N, y.data());
  EXPECT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK);
  return y;
}

// Activation as the provider's modes see it (in canonical column order).
enum class Act { f32, q8_blocks, i8_token };

// The activation row the reference multiplies: x itself, or x after the
// provider's int8 quantization (per 32-column block of the weight's permuted,
// padded order; or per token, clamped to [-127, 127]).
std::vector<double> act_image(const Canon& c, const float* x, Act act) {
  const int64_t K = c.cols;
  std::vector<double> out(x, x + K);
  if (act == Act::i8_token) {
    float amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
    float s = amax / 127.0f, inv = 1.0f / s;
    for (int64_t k = 0; k < K; ++k) out[k] = std::max(-127.0f, std::min(127.0f, std::nearbyint(x[k] * inv))) * s;
  } else if (act == Act::q8_blocks) {
    // Columns of each group in permuted order, cut into blocks of 32.
    for (int64_t g = 0; g < c.ng; ++g) {
      std::vector<int64_t> cols;
      for (int64_t k = 0; k < K; ++k)
        if ((c.gidx.empty() ? k / c.gs : c.gidx[k]) == g) cols.push_back(k);
      for (size_t b = 0; b < cols.size(); b += kBlock) {
        size_t e = std::min(cols.size(), b + kBlock);
        float amax = 0;
        for (size_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(x[cols[i]]));
        float s = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        for (size_t i = b; i < e; ++i) out[cols[i]] = std::nearbyint(x[cols[i]] * inv) * s;
      }
    }
  }
  return out;
}

// prefill: how calls with more rows than the GEMV takes run (XQUANT_CPU_PREFILL).
void expect_qmatmul_matches_reference(Isa isa, const char* gemv_mode, const char* prefill = "sgemm") {
  ScopedEnv force_isa("XQUANT_CPU_ISA", cpu::isa_name(isa));
  ScopedEnv force_mode("XQUANT_CPU_GEMV", gemv_mode);
  ScopedEnv force_prefill("XQUANT_CPU_PREFILL", prefill);
  // auto (the default): int8 activations for INT4 weights, and for INT8
  // weights on AVX2 and AVX-512 (qweight.cpp auto_gemv_q8).
  const bool q8_all = std::string(gemv_mode) == "q8", q8_auto = std::string(gemv_mode) == "auto";
  const bool prefill_q8 = std::string(prefill) == "int8";
  struct Case {
    uint32_t bits;
    int64_t gs;  // 0 = per channel
    bool sym, act_order, w8a8;
  };
  const Case cases[] = {
      {4, 32, true, false, false},  {4, 64, false, false, false}, {4, 128, true, true, false},
      {4, 0, false, false, false},  {8, 128, false, false, false}, {8, 0, true, false, false},
      {8, 32, true, true, false},   {3, 64, false, true, false},  {2, 32, true, false, false},
      {6, 0, false, false, false},  {8, 0, true, false, true},    {4, 128, false, true, true},
      {8, 64, false, false, true},
  };
  // K = 300: not a multiple of 32, 64 or 128 (ragged last group; act-order
  // groups of 128 leave one of 44).
  const int64_t N = 23, K = 300;
  for (const Case& cs : cases) {
    Canon c = make_canon(N, K, cs.bits, cs.gs, cs.sym, cs.act_order);
    if (cs.w8a8) {
      c.t.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
      c.t.act_bits = 8;
    }
    QW qw(c.t);
    ASSERT_EQ(qw.status, XQ_OK);
    EXPECT_STREQ(qw.w->kernels->name, cpu::isa_name(isa));
    const bool q8 = q8_all || (q8_auto && (cs.bits <= 4 || isa != Isa::scalar));
    EXPECT_EQ(qw.w->gemv_q8, q8) << gemv_mode << " bits " << cs.bits;
    for (int64_t M : {1, 3, 17}) {
      auto x = rnd_f(static_cast<size_t>(M * K));
      auto y = qmatmul(qw, x, M, N, K);
      // Which activations the provider multiplies: W8A8 always int8 per
      // token; weight-only decode (M <= 4) per-block int8 in q8 mode.
      const bool gemv = M <= qw.w->gemv_max_rows;
      Act act = cs.w8a8 ? Act::i8_token : ((gemv && q8) || (!gemv && prefill_q8)) ? Act::q8_blocks : Act::f32;
      double worst = 0;
      for (int64_t m = 0; m < M; ++m) {
        auto xa = act_image(c, &x[m * K], act);
        for (int64_t n = 0; n < N; ++n) {
          double ref = 0, mag = 0;
          for (int64_t k = 0; k < K; ++k) ref += xa[k] * c.w(n, k), mag += std::fabs(xa[k] * c.w(n, k));
          worst = std::max(worst, std::fabs(y[m * N + n] - ref) / (1e-3 + mag));
        }
      }
      // Float rounding of a 300-term sum relative to its magnitude (the
      // int8 roundings are reproduced by the reference, so they cancel).
      EXPECT_LE(worst, 2e-5) << cpu::isa_name(isa) << " " << gemv_mode << ": bits " << cs.bits << " group " << cs.gs
                             << (cs.sym ? " sym" : " asym") << (cs.act_order ? " act-order" : "")
                             << (cs.w8a8 ? " w8a8" : "") << " prefill " << prefill << " M " << M;
    }
  }
}

TEST(CpuQMatmul, FusedGemvForEveryRowCountMatchesReference) {
  // XQUANT_CPU_GEMV_ROWS=64: M = 17 also takes the decode kernels.
  ScopedEnv rows("XQUANT_CPU_GEMV_ROWS", "64");
  expect_qmatmul_matches_reference(cpu::selected_isa(), "f32");
  expect_qmatmul_matches_reference(cpu::selected_isa(), "q8");
  expect_qmatmul_matches_reference(cpu::selected_isa(), "auto");
}

// Integer prefill (M = 17 > 4 rows): the q8 activation image, through the
// tiles on every ISA the CPU has, and the q8 GEMV of each row alone (the
// row-range kernels of qgemv_rows.hpp) up to float summation order: the
// same int8 activations, the same exact block dot products. (The tiles are
// pinned bit for bit to the pair dots in PrefillTilesMatchTheirPairDots.)
TEST(CpuQMatmul, IntegerPrefillMatchesReferenceAndTheQ8Gemv) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: integer prefill on it not tested\n", cpu::isa_name(isa));
      continue;
    }
    expect_qmatmul_matches_reference(isa, "f32", "int8");
    ScopedEnv force_isa("XQUANT_CPU_ISA", cpu::isa_name(isa));
    for (uint32_t bits : {4u, 8u}) {
      const int64_t N = 22, K = 300, M = 17;  // N: 5 whole tiles of 4 rows and 2 left; M: 8 pairs and 1 left
      Canon c = make_canon(N, K, bits, 64, false, bits == 4);
      auto x = rnd_f(static_cast<size_t>(M * K));
      std::vector<float> tiled, gemv;
      {
        ScopedEnv p("XQUANT_CPU_PREFILL", "int8");
        QW qw(c.t);
        ASSERT_EQ(qw.status, XQ_OK);
        tiled = qmatmul(qw, x, M, N, K);
      }
      {
        // One row at a time: the q8 GEMV.
        ScopedEnv g("XQUANT_CPU_GEMV", "q8");
        QW qw(c.t);
        ASSERT_EQ(qw.status, XQ_OK);
        for (int64_t m = 0; m < M; ++m) {
          std::vector<float> row(x.begin() + m * K, x.begin() + (m + 1) * K);
          auto y = qmatmul(qw, row, 1, N, K);
          gemv.insert(gemv.end(), y.begin(), y.end());
        }
      }
      // Float rounding of 300-term sums, relative to the outputs' scale (a
      // single output may be a near-cancellation of large terms).
      ASSERT_EQ(tiled.size(), gemv.size());
      float scale = 0.0f;
      for (float v : tiled) scale = std::max(scale, std::fabs(v));
      for (size_t i = 0; i < tiled.size(); ++i)
        EXPECT_NEAR(tiled[i], gemv[i], 2e-6f * (1.0f + scale))
            << cpu::isa_name(isa) << " bits " << bits << " output " << i;
    }
  }
}

TEST(CpuQMatmul, UnknownPrefillModeIsRefused) {
  ScopedEnv p("XQUANT_CPU_PREFILL", "fast");
  Canon c = make_canon(4, 64, 4, 32, true, false);
  QW qw(c.t);
  EXPECT_NE(qw.status, XQ_OK);
  EXPECT_EQ(qw.w, nullptr);
}

TEST(CpuQMatmul, ScalarMatchesReference) {
  expect_qmatmul_matches_reference(Isa::scalar, "f32");
  expect_qmatmul_matches_reference(Isa::scalar, "q8");
}

TEST(CpuQMatmul, Avx2MatchesReference) {
  SKIP_UNLESS_CPU_HAS(Isa::avx2);
  expect_qmatmul_matches_reference(Isa::avx2, "f32");
  expect_qmatmul_matches_reference(Isa::avx2, "q8");
}

TEST(CpuQMatmul, Avx512VnniMatchesReference) {
  SKIP_UNLESS_CPU_HAS(Isa::avx512);
  expect_qmatmul_matches_reference(Isa::avx512, "f32");
  expect_qmatmul_matches_reference(Isa::avx512, "q8");
}

// INT4 (and on AVX-512 INT8) decode eight rows at a time (qgemv_rows8.hpp): each XQUANT_CPU_GEMV_ROWS8
// mode on every ISA the CPU has through QMATMUL (N = 23: two groups of eight
// and a one-row tail; K = 300, act-order and asymmetric cases, M = 1, 3, 17),
// the interleaved copy made only where that mode reads it, and an unknown
// mode refused.
TEST(CpuQMatmul, EightRowDecodeModesMatchReference) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: its eight-row decode not tested\n", cpu::isa_name(isa));
      continue;
    }
    for (const char* mode : {"off", "transpose", "interleaved"}) {
      ScopedEnv e("XQUANT_CPU_GEMV_ROWS8", mode);
      expect_qmatmul_matches_reference(isa, "auto");
      ScopedEnv force_isa("XQUANT_CPU_ISA", cpu::isa_name(isa));
      for (uint32_t bits : {4u, 8u}) {
        Canon c = make_canon(23, 300, bits, 128, true, true);
        QW qw(c.t);
        ASSERT_EQ(qw.status, XQ_OK);
        // INT8 weight-only weights have an eight-row kernel on AVX-512 VNNI only.
        const bool copy = (bits == 4 ? isa != Isa::scalar : isa == Isa::avx512) && std::string(mode) == "interleaved";
        EXPECT_EQ(qw.w->codes8.empty(), !copy) << cpu::isa_name(isa) << " " << mode << " bits " << bits;
      }
    }
  }
  ScopedEnv e("XQUANT_CPU_GEMV_ROWS8", "sideways");
  Canon c = make_canon(4, 64, 4, 32, true, false);
  QW qw(c.t);
  EXPECT_EQ(qw.status, XQ_ERR_INVALID_ARGUMENT);
}

TEST(CpuQMatmul, W8A8IsBitIdenticalOnEveryPath) {
  // Per-token int8 activations are re-rounded at every Linear, so a float
  // summation difference between paths would grow into a different model
  // (it moved SmolLM2's W8A8 perplexity by 0.3% once): every ISA must give
  // the scalar path's bits, for per-channel and grouped, INT8 and INT4;
  // M = 1 and 3 take AVX-512's eight-row decode on the interleaved copy of
  // symmetric INT8 weights (qgemv_rows8.hpp), M = 5 the per-row dots.
  const int64_t N = 19, K = 1536;
  for (int64_t M : {1, 3, 5}) {
    for (auto [bits, gs, sym] : {std::tuple{8u, int64_t{0}, true}, std::tuple{8u, int64_t{128}, true},
                                 std::tuple{8u, int64_t{128}, false}, std::tuple{4u, int64_t{32}, false}}) {
      Canon c = make_canon(N, K, bits, gs, sym, false);
      c.t.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
      c.t.act_bits = 8;
      auto x = rnd_f(static_cast<size_t>(M * K));
      std::vector<float> want;
      {
        ScopedEnv e("XQUANT_CPU_ISA", "scalar");
        QW qw(c.t);
        ASSERT_EQ(qw.status, XQ_OK);
        want = qmatmul(qw, x, M, N, K);
      }
      for (Isa isa : {Isa::avx2, Isa::avx512}) {
        if (!cpu::cpu_has(isa)) continue;  // Avx2/Avx512VnniMatchesReference report the skip
        ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
        QW qw(c.t);
        ASSERT_EQ(qw.status, XQ_OK);
        EXPECT_EQ(qmatmul(qw, x, M, N, K), want) << cpu::isa_name(isa) << " bits " << bits << " group " << gs;
      }
    }
  }
}

TEST(CpuQMatmul, ForcingAnUnknownPathIsAnError) {
  Canon c = make_canon(4, 64, 4, 32, true, false);
  {
    ScopedEnv e("XQUANT_CPU_ISA", "avx9000");
    QW qw(c.t);
    EXPECT_EQ(qw.status, XQ_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qw.w, nullptr);
  }
  {
    ScopedEnv e("XQUANT_CPU_GEMV", "fast");
    QW qw(c.t);
    EXPECT_EQ(qw.status, XQ_ERR_INVALID_ARGUMENT);
  }
  {
    ScopedEnv e("XQUANT_CPU_GEMV_ROWS", "0");
    QW qw(c.t);
    EXPECT_EQ(qw.status, XQ_ERR_INVALID_ARGUMENT);
  }
}

TEST(CpuQWeight, PackedLayoutMemory) {
  // SmolLM2's down_proj shape, 576 x 1536, group 128 asym: half a byte per
  // code plus an f32 scale and zero per 128 codes = 0.5625 bytes per weight.
  Canon c4 = make_canon(576, 1536, 4, 128, false, false);
  QW q4(c4.t);
  ASSERT_EQ(q4.status, XQ_OK);
  EXPECT_TRUE(q4.w->int4);
  EXPECT_DOUBLE_EQ(static_cast<double>(q4.w->bytes()) / (576.0 * 1536.0), 0.5 + 8.0 / 128);
  // Its gate_proj shape, 1536 x 576: 4.5 groups per row, the ragged one padded
  // to 64 columns (whole blocks, no extra bytes) but with a scale of its own.
  Canon r4 = make_canon(1536, 576, 4, 128, true, false);
  QW qr(r4.t);
  ASSERT_EQ(qr.status, XQ_OK);
  EXPECT_EQ(qr.w->padded_cols, 576);
  EXPECT_DOUBLE_EQ(static_cast<double>(qr.w->bytes()) / (1536.0 * 576.0), 0.5 + 4.0 * 5 / 576);
  // INT8 per channel: one byte per code plus one scale per row.
  Canon c8 = make_canon(1536, 576, 8, 0, true, false);
  QW q8(c8.t);
  ASSERT_EQ(q8.status, XQ_OK);
  EXPECT_FALSE(q8.w->int4);
  EXPECT_DOUBLE_EQ(static_cast<double>(q8.w->bytes()) / (1536.0 * 576.0), 1.0 + 4.0 / 576);
}

}  // namespace
