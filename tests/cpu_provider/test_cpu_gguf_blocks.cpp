// test_cpu_gguf_blocks.cpp: GGUF (ggml) blocks executed natively by the `cpu`
// provider (plugins/cpu/src/gguf_blocks*.cpp).
//   1. Each block kernel (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) on every instruction-set
//      table the CPU has (scalar and AVX2 always on x86-64 CI; AVX-512 VNNI
//      skipped with a message naming it where missing), on fresh random
//      blocks: against a double-precision dot product of the weight row
//      dequantized by the loader's own decoders (plugins/gguf/gguf_types.cpp)
//      with the activation row as the kernel sees it (d * q), within float
//      rounding (2e-6 of sum |w * a|); and against the float activation row
//      within the int8 activation quantization's bound:
//        |error| <= sum_i |w_i| * d(block of i) / 2 + float rounding,
//      since round-to-nearest puts every |x - d * q| <= d / 2.
//   2. QMATMUL through the real plugin (qweight_prepare_blocks) for every
//      supported type with each ISA forced (XQUANT_CPU_ISA), odd row counts,
//      M = 1, 3, 17, through both the integer path and the prefill paths
//      (XQUANT_CPU_GEMV_ROWS; dequantize + SGEMM, or on AVX-512 the q8 panels
//      for Q4_0 / Q8_0), a stacked weight of mixed types, Q4_0 / Q8_0 on the
//      panels against the row kernels, which prefill each takes by default,
//      DEQUANTIZE and GET_ROWS bit-identical to the loader's decoder.
//   3. Bad input: wrong row_bytes, an unknown type, mismatched cols are
//      refused with XQ_ERR_* naming the part.
#include "../support/cpu_provider_fixture.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "gguf_blocks.hpp"
#include "gguf_gemv_rows.hpp"
#include "gguf_types.hpp"
#include "plugins/registry.hpp"
#include "qkernels.hpp"

#include <xquant/sdk/half.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
using xquant::cpu::Isa;

namespace {

// Fresh inputs every run; the seed is printed so a failure can be replayed
// (XQUANT_TEST_SEED=N).
uint32_t test_seed() {
  static const uint32_t seed = [] {
    const char* e = std::getenv("XQUANT_TEST_SEED");
    const uint32_t s = e && *e ? static_cast<uint32_t>(std::strtoul(e, nullptr, 10)) : std::random_device{}();
    std::printf("test_cpu_gguf_blocks: seed %u (XQUANT_TEST_SEED=%u replays it)\n", s, s);
    return s;
  }();
  return seed;
}
std::mt19937 rng(test_seed());

test::CpuProvider& fx() { return test::cpu_provider(); }

using test::ScopedEnv;

void put_f16(uint8_t* p, float v) {
  uint16_t h = sdk::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

// One random row of nb blocks of `type`: random code bytes, finite scales of
// either sign where the type allows (mins/scales as real files have them).
std::vector<uint8_t> random_row(uint32_t type, int64_t nb) {
  const gguf::TypeInfo* ti = gguf::type_info(type);
  std::vector<uint8_t> row(static_cast<size_t>(nb) * ti->type_size);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* p = row.data() + b * ti->type_size;
    switch (type) {
      case gguf::kQ4_0: case gguf::kQ5_0: case gguf::kQ8_0: put_f16(p, uniform(-0.05f, 0.05f)); break;
      case gguf::kQ4_1: case gguf::kQ5_1: put_f16(p, uniform(0.0f, 0.05f)), put_f16(p + 2, uniform(-0.5f, 0.5f)); break;
      case gguf::kQ4_K: case gguf::kQ5_K: put_f16(p, uniform(0.0f, 0.01f)), put_f16(p + 2, uniform(0.0f, 0.01f)); break;
      case gguf::kQ6_K: put_f16(p + 208, uniform(-0.01f, 0.01f)); break;
    }
    if (type == gguf::kQ8_0)  // ggml's quantize_row_q8_0 never writes -128
      for (int j = 0; j < 32; ++j)
        if (static_cast<int8_t>(p[2 + j]) == -128) p[2 + j] = 0x81;
  }
  return row;
}

std::vector<float> random_x(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = uniform(-2.0f, 2.0f);
  // Some blocks with one large outlier, some all zero: the scale's edges.
  if (n >= 64) x[static_cast<size_t>(n / 2)] = 40.0f;
  if (n >= 96) std::fill(x.begin() + 64, x.begin() + 96, 0.0f);
  return x;
}

const cpu::BlockKernels& table(Isa isa) {
  return isa == Isa::avx512 ? cpu::kAvx512BlockKernels : isa == Isa::avx2 ? cpu::kAvx2BlockKernels : cpu::kScalarBlockKernels;
}

void check_kernels(Isa isa) {
  const uint32_t types[] = {gguf::kQ4_0, gguf::kQ4_1, gguf::kQ5_0, gguf::kQ5_1, gguf::kQ8_0, gguf::kQ4_K, gguf::kQ5_K, gguf::kQ6_K};
  for (uint32_t type : types) {
    const gguf::TypeInfo* ti = gguf::type_info(type);
    const bool kq = ti->block_size == 256;
    for (int64_t nb : {1, 3, 17}) {
      const int64_t K = nb * ti->block_size;
      for (int trial = 0; trial < 8; ++trial) {
        std::vector<uint8_t> w = random_row(type, nb);
        std::vector<float> x = random_x(K), wf(static_cast<size_t>(K));
        ASSERT_TRUE(gguf::dequantize_row(type, w.data(), wf.data(), K));
        std::vector<int8_t> q(K), q256(K);
        std::vector<float> d32(K / 32), d256(K / 256 + 1);
        std::vector<int16_t> bs(K / 16), s32(K / 32);
        cpu::quantize_row_blocks(x.data(), K, q.data(), d32.data(), s32.data(), q256.data(), d256.data(), bs.data());
        const cpu::QuantizedRow a{q.data(), d32.data(), d256.data(), q256.data(), bs.data(), s32.data()};
        const float got = cpu::block_kernel(table(isa), type)(w.data(), a, nb);
        // The activation as the kernel sees it, and the float one.
        double exact_q = 0, mag = 0, exact_x = 0, bound = 0;
        for (int64_t i = 0; i < K; ++i) {
          const double d = kq ? d256[i / 256] : d32[i / 32];
          const double xq = d * (kq ? q256[i] : q[i]);
          exact_q += static_cast<double>(wf[i]) * xq;
          exact_x += static_cast<double>(wf[i]) * x[i];
          mag += std::fabs(wf[i] * xq);
          bound += std::fabs(wf[i]) * d / 2;
        }
        const std::string where = std::string(ti->name) + " on " + cpu::isa_name(isa) + ", K=" + std::to_string(K);
        EXPECT_NEAR(got, exact_q, 2e-6 * mag + 1e-6) << where;
        EXPECT_NEAR(got, exact_x, bound + 2e-6 * mag + 1e-6) << where << " (activation quantization bound " << bound << ")";
      }
    }
  }
}

#define SKIP_UNLESS_CPU_HAS(isa) \
  if (!cpu::cpu_has(isa)) GTEST_SKIP() << "this CPU lacks " << cpu::isa_name(isa) << ": path not tested"

TEST(GgufBlockKernels, Scalar) { check_kernels(Isa::scalar); }
TEST(GgufBlockKernels, Avx2) {
  SKIP_UNLESS_CPU_HAS(Isa::avx2);
  check_kernels(Isa::avx2);
}
TEST(GgufBlockKernels, Avx512Vnni) {
  SKIP_UNLESS_CPU_HAS(Isa::avx512);
  check_kernels(Isa::avx512);
}

TEST(GgufBlockKernels, QuantizedActivationIsWithinHalfAStep) {
  const int64_t K = 512;
  std::vector<float> x = random_x(K);
  std::vector<int8_t> q(K), q256(K);
  std::vector<float> d32(K / 32), d256(K / 256);
  std::vector<int16_t> bs(K / 16), s32(K / 32);
  cpu::quantize_row_blocks(x.data(), K, q.data(), d32.data(), s32.data(), q256.data(), d256.data(), bs.data());
  for (int64_t i = 0; i < K; ++i) {
    EXPECT_LE(std::fabs(x[i] - d32[i / 32] * q[i]), d32[i / 32] / 2 * (1 + 1e-6f)) << i;
    EXPECT_LE(std::fabs(x[i] - d256[i / 256] * q256[i]), d256[i / 256] / 2 * (1 + 1e-6f)) << i;
  }
  for (int64_t j = 0; j < K / 16; ++j) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += q256[16 * j + i];
    EXPECT_EQ(bs[j], s);
  }
  for (int64_t j = 0; j < K / 32; ++j) {
    int s = 0;
    for (int i = 0; i < 32; ++i) s += q[32 * j + i];
    EXPECT_EQ(s32[j], s);
  }
}

// ---------------------------------------------------------------- through the plugin

struct Part {
  uint32_t type;
  int64_t rows;
  std::vector<uint8_t> bytes;
};

Part random_part(uint32_t type, int64_t rows, int64_t K) {
  const gguf::TypeInfo* ti = gguf::type_info(type);
  Part p{type, rows, {}};
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<uint8_t> row = random_row(type, K / ti->block_size);
    p.bytes.insert(p.bytes.end(), row.begin(), row.end());
  }
  return p;
}

xq_block_tensor describe(const Part& p, int64_t K) {
  xq_block_tensor b;
  std::memset(&b, 0, sizeof b);
  b.struct_size = sizeof b;
  b.family = XQ_BLOCKS_GGML;
  b.type = p.type;
  b.rows = p.rows;
  b.cols = K;
  b.row_bytes = p.bytes.size() / static_cast<size_t>(p.rows);
  b.data = p.bytes.data();
  return b;
}

struct Prepared {
  xq_qweight* w = nullptr;
  xq_status status = XQ_OK;
  explicit Prepared(const std::vector<xq_block_tensor>& parts) {
    status = fx().vt().qweight_prepare_blocks(fx().p->state, parts.data(), static_cast<uint32_t>(parts.size()), &w);
  }
  ~Prepared() { fx().vt().qweight_release(fx().p->state, w); }
};

xq_device_tensor dt(xq_dtype t, std::initializer_list<int64_t> shape, const void* data) {
  xq_device_tensor v;
  std::memset(&v, 0, sizeof v);
  v.struct_size = sizeof v;
  v.dtype = t;
  v.ndim = static_cast<uint32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) v.shape[i++] = s;
  v.data = const_cast<void*>(data);
  return v;
}

xq_op make_op(xq_op_type type) {
  xq_op op;
  std::memset(&op, 0, sizeof op);
  op.struct_size = sizeof op;
  op.type = type;
  return op;
}

// The weight dequantized by the loader's decoder, rows stacked.
std::vector<float> dequantized(const std::vector<Part>& parts, int64_t K) {
  std::vector<float> w;
  for (const Part& p : parts) {
    const size_t rb = p.bytes.size() / static_cast<size_t>(p.rows);
    for (int64_t r = 0; r < p.rows; ++r) {
      std::vector<float> row(static_cast<size_t>(K));
      gguf::dequantize_row(p.type, p.bytes.data() + r * rb, row.data(), K);
      w.insert(w.end(), row.begin(), row.end());
    }
  }
  return w;
}

// QMATMUL on `parts` against the float reference within the activation
// quantization bound (a 32-column block's scale bounds both activation
// quantizations: a 256-column block's scale is at least as large, so the
// bound uses the 256-column scale where K allows, the larger of the two).
void check_qmatmul(const std::vector<Part>& parts, int64_t K, int64_t M, const std::string& where) {
  std::vector<xq_block_tensor> desc;
  for (const Part& p : parts) desc.push_back(describe(p, K));
  Prepared w(desc);
  ASSERT_EQ(w.status, XQ_OK) << where;
  std::vector<float> wf = dequantized(parts, K);
  const int64_t N = static_cast<int64_t>(wf.size()) / K;
  std::vector<float> x = random_x(M * K), bias(static_cast<size_t>(N)), y(static_cast<size_t>(M * N));
  for (auto& b : bias) b = uniform(-1.0f, 1.0f);
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = w.w;
  op.src[0] = dt(XQ_DTYPE_F32, {M, K}, x.data());
  op.src[2] = dt(XQ_DTYPE_F32, {N}, bias.data());
  op.dst = dt(XQ_DTYPE_F32, {M, N}, y.data());
  ASSERT_EQ(fx().vt().supports_op(fx().p->state, &op), 1u) << where;
  ASSERT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK) << where;
  for (int64_t m = 0; m < M; ++m) {
    std::vector<double> step(static_cast<size_t>(K));
    for (int64_t b = 0; b < K / 32; ++b) {
      float amax32 = 0;
      for (int i = 0; i < 32; ++i) amax32 = std::max(amax32, std::fabs(x[m * K + 32 * b + i]));
      for (int i = 0; i < 32; ++i) step[32 * b + i] = amax32 / 127.0;
    }
    if (K % 256 == 0)
      for (int64_t b = 0; b < K / 256; ++b) {
        float amax = 0;
        for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[m * K + 256 * b + i]));
        for (int i = 0; i < 256; ++i) step[256 * b + i] = std::max(step[256 * b + i], amax / 127.0);
      }
    for (int64_t n = 0; n < N; ++n) {
      double ref = bias[n], mag = std::fabs(bias[n]), bound = 0;
      for (int64_t k = 0; k < K; ++k) {
        ref += static_cast<double>(wf[n * K + k]) * x[m * K + k];
        mag += std::fabs(wf[n * K + k] * x[m * K + k]);
        bound += std::fabs(wf[n * K + k]) * step[k] / 2;
      }
      ASSERT_NEAR(y[m * N + n], ref, bound + 1e-5 * mag + 1e-5) << where << " m=" << m << " n=" << n;
    }
  }
}

void check_all_types(Isa isa) {
  ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
  const uint32_t types[] = {gguf::kQ4_0, gguf::kQ4_1, gguf::kQ5_0, gguf::kQ5_1,
                            gguf::kQ8_0, gguf::kQ4_K, gguf::kQ5_K, gguf::kQ6_K};
  for (const char* rows_env : {"4", "64"}) {  // 17 rows: the prefill path, then the integer one
    ScopedEnv r("XQUANT_CPU_GEMV_ROWS", rows_env);
    for (uint32_t type : types) {
      const int64_t K = gguf::type_info(type)->block_size == 256 ? 512 : 96;
      for (int64_t M : {1, 3, 17})
        check_qmatmul({random_part(type, 13, K)}, K, M,
                      std::string(gguf::type_info(type)->name) + " " + cpu::isa_name(isa) + " M=" + std::to_string(M) +
                          " GEMV_ROWS=" + rows_env);
    }
    // q|k|v of a Q4_K_M file: parts of different types stacked.
    for (int64_t M : {1, 3, 17})
      check_qmatmul({random_part(gguf::kQ4_K, 7, 256), random_part(gguf::kQ6_K, 3, 256), random_part(gguf::kQ8_0, 5, 256)},
                    256, M, std::string("stacked Q4_K|Q6_K|Q8_0 ") + cpu::isa_name(isa) + " M=" + std::to_string(M));
  }
}

TEST(GgufBlocksQMatmul, Scalar) { check_all_types(Isa::scalar); }
TEST(GgufBlocksQMatmul, Avx2) {
  SKIP_UNLESS_CPU_HAS(Isa::avx2);
  check_all_types(Isa::avx2);
}
TEST(GgufBlocksQMatmul, Avx512Vnni) {
  SKIP_UNLESS_CPU_HAS(Isa::avx512);
  check_all_types(Isa::avx512);
}

// y = x . W^T for `parts` through QMATMUL under the current environment.
std::vector<float> blocks_qmatmul(const std::vector<Part>& parts, int64_t K, const std::vector<float>& x, int64_t M) {
  std::vector<xq_block_tensor> desc;
  for (const Part& p : parts) desc.push_back(describe(p, K));
  Prepared w(desc);
  EXPECT_EQ(w.status, XQ_OK);
  int64_t N = 0;
  for (const Part& p : parts) N += p.rows;
  std::vector<float> y(static_cast<size_t>(M * N));
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = w.w;
  op.src[0] = dt(XQ_DTYPE_F32, {M, K}, x.data());
  op.dst = dt(XQ_DTYPE_F32, {M, N}, y.data());
  EXPECT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK);
  return y;
}

// Q4_0 / Q8_0 prefill on the q8 panels (gguf_blocks_panels.cpp; M >= 16,
// XQUANT_CPU_PREFILL=int8, each table with the kernel) against the blocks'
// own integer row kernels on the same quantized activations
// (XQUANT_CPU_GEMV_ROWS large): exact block dots, so only the float
// summation order differs (<= 1e-5 of sum |w x|). Stacked parts of one type
// with a panel across their boundary (13 + 7 rows); check_all_types' stack of
// mixed types keeps the older paths.
TEST(GgufBlocksQMatmul, Q4_0AndQ8_0PrefillOnPanelsIsTheRowKernelsWithinRounding) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: its GGUF panel prefill not tested\n", cpu::isa_name(isa));
      continue;
    }
    ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
    for (uint32_t type : {gguf::kQ4_0, gguf::kQ8_0})
      for (int64_t M : {17, 40}) {
        const int64_t K = 160;
        const std::vector<Part> parts = {random_part(type, 13, K), random_part(type, 7, K)};
        const std::vector<float> x = random_x(M * K);
        std::vector<float> rows, panels;
        {
          ScopedEnv r("XQUANT_CPU_GEMV_ROWS", "100000");
          rows = blocks_qmatmul(parts, K, x, M);
        }
        {
          ScopedEnv p("XQUANT_CPU_PREFILL", "int8");
          panels = blocks_qmatmul(parts, K, x, M);
        }
        const std::vector<float> wf = dequantized(parts, K);
        const int64_t N = 20;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double mag = 0;
            for (int64_t k = 0; k < K; ++k) mag += std::fabs(wf[n * K + k] * x[m * K + k]);
            ASSERT_NEAR(panels[m * N + n], rows[m * N + n], 1e-5 * mag + 1e-6)
                << gguf::type_info(type)->name << " " << cpu::isa_name(isa) << " M=" << M << " m=" << m << " n=" << n;
          }
      }
  }
}

// Integer activations with a 127 in every 32-column block, so their q8
// quantization (per 32 or per 256 columns) is exact and what is left of a
// GGUF product is float rounding.
std::vector<float> exact_q8_activations(int64_t M, int64_t K) {
  std::vector<float> x(static_cast<size_t>(M * K));
  std::uniform_int_distribution<int> code(-127, 127), column(0, 31);
  for (auto& v : x) v = static_cast<float>(code(rng));
  for (int64_t i = 0; i < M * K; i += 32) x[static_cast<size_t>(i + column(rng))] = 127.0f;
  return x;
}

// y [M, N] against the dequantized weights wf [N, K] in double, within 2e-5
// of each product's magnitude: a code or sub-block out of place would be
// off by the product's size.
void expect_dequantized_product(const std::vector<float>& y, const std::vector<float>& wf, const std::vector<float>& x,
                                int64_t M, int64_t N, int64_t K, const std::string& where) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        ref += static_cast<double>(wf[n * K + k]) * x[m * K + k];
        mag += std::fabs(static_cast<double>(wf[n * K + k]) * x[m * K + k]);
      }
      ASSERT_NEAR(y[m * N + n], ref, 2e-5 * mag + 1e-4) << where << " M=" << M << " m=" << m << " n=" << n;
    }
}

// A K-quant weight's prefill with XQUANT_CPU_PREFILL=int8 (its panels, or on a
// table without them its integer row kernels) against the dequantized weights
// in double (exact_q8_activations), on every ISA the CPU has; and that the
// default path gives the int8 bits where panels_by_default(isa) says so, the
// SGEMM bits elsewhere. Parts of 13 and 9 rows (a panel across their
// boundary; on AVX2 and AVX-512 the first eight rows of each are rebuilt
// from decode's interleaved copy).
void check_k_quant_prefill(uint32_t type, int64_t K, bool (*panels_by_default)(Isa)) {
  const int64_t N = 22;
  const std::vector<Part> parts = {random_part(type, 13, K), random_part(type, 9, K)};
  const std::vector<float> wf = dequantized(parts, K);
  const std::string name = gguf::type_info(type)->name;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: its %s prefill not tested\n", cpu::isa_name(isa), name.c_str());
      continue;
    }
    ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
    for (int64_t M : {17, 40}) {
      const std::vector<float> x = exact_q8_activations(M, K);
      std::vector<float> int8, sgemm;
      {
        ScopedEnv p("XQUANT_CPU_PREFILL", "int8");
        int8 = blocks_qmatmul(parts, K, x, M);
      }
      {
        ScopedEnv p("XQUANT_CPU_PREFILL", "sgemm");
        sgemm = blocks_qmatmul(parts, K, x, M);
      }
      const std::string where = name + " " + cpu::isa_name(isa);
      ASSERT_NE(int8, sgemm) << where << ": the integer and SGEMM paths gave the same bits";
      EXPECT_EQ(blocks_qmatmul(parts, K, x, M), panels_by_default(isa) ? int8 : sgemm) << where << ": default path";
      expect_dequantized_product(int8, wf, x, M, N, K, where);
    }
  }
}

// Q4_K prefill on the q8 panels (the codes moved into the packed INT4
// order, d * sc per 32-column sub-block as its scale, dmin * m taken off
// with the block's activation sum). By default Q4_K takes the panels where
// INT4 codes do (AVX2, AVX-512).
TEST(GgufBlocksQMatmul, Q4_KPrefillOnPanelsIsTheDequantizedProduct) {
  check_k_quant_prefill(gguf::kQ4_K, 512, [](Isa isa) { return isa != Isa::scalar; });
}

// Q6_K prefill on INT8 panels (panel_q6k: the six-bit codes, two 16-column
// sub-block scales per 32-column block applied to the halves' integer dots,
// d per super-block) on the scalar and AVX-512 tables, which have the
// kernel; AVX2's has none, so XQUANT_CPU_PREFILL=int8 runs the Q6_K row
// kernels' integer dots there (checked the same way). K = 768, three
// super-blocks. By default the panels on AVX-512 (measured faster,
// qgemm_kernels_avx512.cpp), SGEMM elsewhere.
TEST(GgufBlocksQMatmul, Q6_KPrefillOnPanelsIsTheDequantizedProduct) {
  check_k_quant_prefill(gguf::kQ6_K, 768, [](Isa isa) { return isa == Isa::avx512; });
}

// Which prefill GGUF blocks take by default (XQUANT_CPU_PREFILL unset): on
// AVX-512 and AVX2, Q4_0 weights the q8 panels (the bits of
// XQUANT_CPU_PREFILL=int8), Q8_0 weights dequantize + SGEMM (the bits of
// sgemm; they are also the engine's own lm_head tables, gguf_blocks_panels.cpp
// says why); on the scalar ISA both SGEMM.
TEST(GgufBlocksQMatmul, DefaultPrefillPathPerType) {
  const int64_t K = 160, M = 17;
  const std::vector<float> x = random_x(M * K);
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: its default GGUF prefill not tested\n", cpu::isa_name(isa));
      continue;
    }
    ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
    for (uint32_t type : {gguf::kQ4_0, gguf::kQ8_0}) {
      const std::vector<Part> parts = {random_part(type, 21, K)};
      std::vector<float> panels, sgemm;
      {
        ScopedEnv p("XQUANT_CPU_PREFILL", "int8");
        panels = blocks_qmatmul(parts, K, x, M);
      }
      {
        ScopedEnv p("XQUANT_CPU_PREFILL", "sgemm");
        sgemm = blocks_qmatmul(parts, K, x, M);
      }
      ASSERT_NE(panels, sgemm) << gguf::type_info(type)->name << ": the two paths gave the same bits";
      const bool panels_expected = type == gguf::kQ4_0 && isa != Isa::scalar;
      const std::vector<float> got = blocks_qmatmul(parts, K, x, M);
      EXPECT_EQ(got, panels_expected ? panels : sgemm)
          << gguf::type_info(type)->name << " on " << cpu::isa_name(isa)
          << (panels_expected ? ": q8 panels expected" : ": SGEMM expected");
    }
  }
}

// Q6_K and Q4_K parts of 13 and 9 rows: on AVX2 their first eight rows are
// read back from the decode's interleaved copy (gguf_blocks.cpp part_row),
// the rest from the stored bytes; both must give the decoder's floats exactly.
TEST(GgufBlocksQWeight, DequantizeAndGetRowsEqualTheLoadersDecoder) {
  const int64_t K = 256;
  std::vector<Part> parts{random_part(gguf::kQ6_K, 13, K), random_part(gguf::kQ4_K, 9, K), random_part(gguf::kQ4_0, 4, K)};
  std::vector<xq_block_tensor> desc{describe(parts[0], K), describe(parts[1], K), describe(parts[2], K)};
  Prepared w(desc);
  ASSERT_EQ(w.status, XQ_OK);
  EXPECT_STREQ(fx().vt().qweight_layout(fx().p->state, w.w), "ggml-blocks (mixed types)");
  std::vector<float> ref = dequantized(parts, K), all(ref.size());
  xq_op op = make_op(XQ_OP_DEQUANTIZE);
  op.qweight = w.w;
  op.dst = dt(XQ_DTYPE_F32, {26, K}, all.data());
  ASSERT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK);
  EXPECT_EQ(0, std::memcmp(all.data(), ref.data(), ref.size() * sizeof(float)));
  const int32_t ids[6] = {25, 0, 5, 12, 13, 21};
  std::vector<float> rows(6 * K);
  xq_op g = make_op(XQ_OP_GET_ROWS);
  g.qweight = w.w;
  g.src[1] = dt(XQ_DTYPE_I32, {6}, ids);
  g.dst = dt(XQ_DTYPE_F32, {6, K}, rows.data());
  ASSERT_EQ(fx().vt().supports_op(fx().p->state, &g), 1u);
  ASSERT_EQ(fx().vt().run_op(fx().p->state, &g), XQ_OK);
  for (int t = 0; t < 6; ++t) EXPECT_EQ(0, std::memcmp(&rows[t * K], &ref[ids[t] * K], K * sizeof(float))) << t;
  const int32_t bad[1] = {26};
  g.src[1] = dt(XQ_DTYPE_I32, {1}, bad);
  g.dst = dt(XQ_DTYPE_F32, {1, K}, rows.data());
  EXPECT_EQ(fx().vt().run_op(fx().p->state, &g), XQ_ERR_INVALID_ARGUMENT);
}

TEST(GgufBlocksQWeight, BadDescriptionsAreRefusedNamingThePart) {
  Part p = random_part(gguf::kQ4_0, 3, 64);
  xq_block_tensor b = describe(p, 64);
  b.row_bytes += 1;
  EXPECT_EQ(Prepared({b}).status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(xquant::last_error().find("row_bytes"), std::string::npos) << xquant::last_error();
  b = describe(p, 64);
  b.type = gguf::kQ2_K;  // a ggml type with no decoder here
  EXPECT_EQ(Prepared({b}).status, XQ_ERR_UNSUPPORTED);
  b = describe(p, 64);
  b.family = 7;
  EXPECT_EQ(Prepared({b}).status, XQ_ERR_UNSUPPORTED);
  Part q = random_part(gguf::kQ8_0, 2, 32);
  EXPECT_EQ(Prepared({describe(p, 64), describe(q, 32)}).status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(xquant::last_error().find("part 1"), std::string::npos) << xquant::last_error();
}

}  // namespace

// qweight_borrows: a weight whose every part runs from its interleaved copy
// (Q8_0 on AVX-512 VNNI; Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K on AVX2 and
// AVX-512) answers 0, and then nothing of the caller's bytes is read again:
// with those bytes overwritten after prepare, QMATMUL (decode, the M = 2..17
// rows, prefill), DEQUANTIZE and GET_ROWS give the bits they gave before.
// Rows 8k + 5 (a tail after the whole groups). A part without such a copy
// (Q5_K, run by its per-row kernel) answers 1; so does everything under
// XQUANT_CPU_GEMV_ROWS8=off. The same with the bytes marked
// XQ_BLOCKS_DISPOSABLE (the provider may drop the pages it copied; 300 rows:
// two copy chunks and whole pages to drop).
TEST(GgufBlocksQWeight, WeightsThatKeepTheirOwnCopyBorrowNothing) {
  const int64_t K = 512;
  for (uint32_t type : {gguf::kQ8_0, gguf::kQ4_K, gguf::kQ6_K, gguf::kQ4_0, gguf::kQ4_1, gguf::kQ5_0, gguf::kQ5_1, gguf::kQ5_K})
    for (const char* rows8 : {"interleaved", "off"})
      for (bool disposable : {false, true}) {
        ScopedEnv e("XQUANT_CPU_GEMV_ROWS8", rows8);
        const std::string where = std::string(gguf::type_info(type)->name) + " rows8 " + rows8 +
                                  (disposable ? " disposable" : "");
        Part part = random_part(type, disposable ? 300 : 21, K);
        const Part original = part;
        xq_block_tensor desc = describe(part, K);
        if (disposable) desc.flags = XQ_BLOCKS_DISPOSABLE;
        Prepared w({desc});
        ASSERT_EQ(w.status, XQ_OK) << where;
        const bool copy = std::string(rows8) == "interleaved" &&
                          cpu::block_rows8_kernel(cpu::selected_isa(), type) != nullptr;
        EXPECT_EQ(fx().vt().qweight_borrows(fx().p->state, w.w), copy ? 0u : 1u) << where;
        const int64_t Ms[3] = {1, 3, 17};
        std::vector<float> xs[3];
        for (int i = 0; i < 3; ++i) xs[i] = exact_q8_activations(Ms[i], K);
        auto outputs = [&] {
          std::vector<float> all;
          for (int i = 0; i < 3; ++i) {
            const int64_t M = Ms[i];
            const std::vector<float>& x = xs[i];
            std::vector<float> y(static_cast<size_t>(M * part.rows));
            xq_op op = make_op(XQ_OP_QMATMUL);
            op.qweight = w.w;
            op.src[0] = dt(XQ_DTYPE_F32, {M, K}, x.data());
            op.dst = dt(XQ_DTYPE_F32, {M, part.rows}, y.data());
            EXPECT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK) << where << " M=" << M;
            all.insert(all.end(), y.begin(), y.end());
          }
          std::vector<float> deq(static_cast<size_t>(part.rows * K));
          xq_op op = make_op(XQ_OP_DEQUANTIZE);
          op.qweight = w.w;
          op.dst = dt(XQ_DTYPE_F32, {part.rows, K}, deq.data());
          EXPECT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK) << where;
          all.insert(all.end(), deq.begin(), deq.end());
          const int32_t ids[3] = {static_cast<int32_t>(part.rows - 1), 3, 16};
          std::vector<float> rows(3 * K);
          xq_op g = make_op(XQ_OP_GET_ROWS);
          g.qweight = w.w;
          g.src[1] = dt(XQ_DTYPE_I32, {3}, ids);
          g.dst = dt(XQ_DTYPE_F32, {3, K}, rows.data());
          EXPECT_EQ(fx().vt().run_op(fx().p->state, &g), XQ_OK) << where;
          all.insert(all.end(), rows.begin(), rows.end());
          return all;
        };
        const std::vector<float> before = outputs();
        EXPECT_EQ(0, std::memcmp(before.data() + before.size() - 3 * K - part.rows * K, dequantized({original}, K).data(),
                                 part.rows * K * sizeof(float)))
            << where << ": DEQUANTIZE is the loader's decoder";
        if (!copy) continue;
        std::fill(part.bytes.begin(), part.bytes.end(), uint8_t{0xFF});  // f16 NaN scales, were they read
        const std::vector<float> after = outputs();
        size_t first = 0;
        while (first < before.size() && std::memcmp(&before[first], &after[first], sizeof(float)) == 0) ++first;
        EXPECT_EQ(first, before.size()) << where << ": first output changed (QMATMUL M = 1, 3, 17, DEQUANTIZE, GET_ROWS)";
      }
}
