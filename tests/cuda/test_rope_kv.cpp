// test_rope_kv.cpp: XQ_OP_ROPE_KV on the `cuda` provider
// (plugins/cuda/src/rope_kv.cu) against the `cpu` provider's
// (plugins/cpu/src/rope_kv.cpp) on fresh random q|k|v rows: F32 and BF16
// rows (the cpu gets the BF16-rounded values as F32), a column slice of a
// wider GEMM output, neox and adjacent pairing, llama3 frequency divisors,
// partial rotation, odd head counts (5 over 1, 9 over 3), head_dim 8 to 128,
// and a position outside the cache (no K/V row written). Bounds: q and K
// within 1e-5 relative RMS (powf/sincosf against libm at angles up to ~300
// rad; the ROPE test's bound is 1e-4 at 4096); V rows and the rows left
// alone bit-identical. And against the cuda ops it replaces in the engine
// (CONVERT of the q slice, then ROPE): q within 1e-6 absolute (the kernel
// computes each angle with rope_kernel's formula; the count of elements that
// differ at all is printed).
#include "test_host.hpp"

#include <dlfcn.h>

#include <xquant/sdk/half.hpp>

using namespace xqtest;

namespace {

// The cpu provider, loaded beside the cuda one (as test_decoder_ops.cpp does).
struct CpuProvider {
  const xq_kernel_vtable* vt = nullptr;
  void* state = nullptr;
  std::string error;
  bool built = false;
  static CpuProvider& get() {
    static CpuProvider r;
    return r;
  }

 private:
  CpuProvider() {
    const char* env = std::getenv("XQ_CPU_PLUGIN");
    const char* path = env && *env ? env : XQ_CPU_PLUGIN_PATH;
    if (!*path) {
      error = "this build has no cpu provider";
      return;
    }
    built = true;
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      error = std::string("dlopen failed: ") + dlerror();
      return;
    }
    auto entry = reinterpret_cast<xq_plugin_entry_fn>(dlsym(lib, XQ_PLUGIN_ENTRY_SYMBOL));
    const xq_plugin_descriptor* desc = entry ? entry(XQ_ABI_VERSION_1_0, XQ_ABI_VERSION) : nullptr;
    if (!desc || desc->init(&Plugin::get().host, XQ_ABI_VERSION, &state) != XQ_OK) {
      error = "cpu plugin init failed: " + g_last_error;
      return;
    }
    vt = static_cast<const xq_kernel_vtable*>(desc->vtable);
  }
};

struct Case {
  int64_t T, H, KVH, D, rot, S;
  int pairing;
  bool factors;
  int64_t extra_cols;
  xq_dtype rows_t;
};

std::vector<double> f64(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

xq_op rope_kv_op(const Case& c, int64_t ld, void* rows, void* pos, void* q, void* kv, void* factors) {
  xq_op o = make_op(XQ_OP_ROPE_KV);
  o.src[0] = xquant::sdk::device_tensor(c.rows_t, {c.T, (c.H + 2 * c.KVH) * c.D}, rows);
  o.src[0].strides[0] = ld;
  o.src[0].strides[1] = 1;
  o.src[1] = tensor1(XQ_DTYPE_I32, c.T, pos);
  o.src[2] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {2, c.S, c.KVH, c.D}, kv);
  o.src[2].strides[0] = c.S * c.KVH * c.D;
  o.src[2].strides[1] = c.KVH * c.D;
  o.src[2].strides[2] = c.D;
  o.src[2].strides[3] = 1;
  if (c.factors) o.src[3] = tensor1(XQ_DTYPE_F32, c.rot / 2, factors);
  o.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {c.T, c.H, c.D}, q);
  o.i[0] = c.pairing;
  o.i[1] = c.rot;
  o.f[0] = 500000.0;
  o.f[1] = 1.0;
  return o;
}

}  // namespace

TEST(CudaRopeKv, MatchesTheCpuProvider) {
  XQ_REQUIRE_GPU();
  if (!CpuProvider::get().built) GTEST_SKIP() << CpuProvider::get().error;
  auto& C = CpuProvider::get();
  ASSERT_TRUE(C.vt) << C.error;
  auto& P = Plugin::get();
  for (const Case& c :
       {Case{1, 32, 8, 128, 128, 300, 0, true, 0, XQ_DTYPE_BF16}, Case{1, 32, 8, 128, 128, 300, 0, true, 0, XQ_DTYPE_F32},
        Case{7, 5, 1, 64, 32, 20, 1, false, 3, XQ_DTYPE_BF16}, Case{3, 6, 3, 8, 8, 9, 0, false, 0, XQ_DTYPE_F32},
        Case{4, 9, 3, 16, 12, 6, 1, true, 16, XQ_DTYPE_BF16}, Case{5, 4, 2, 96, 96, 40, 0, false, 8, XQ_DTYPE_F32},
        // 48 rows x 48 heads: past rope_kv.cu's one-head-a-CTA limit, four heads a CTA.
        Case{48, 32, 8, 128, 128, 300, 0, true, 0, XQ_DTYPE_BF16}}) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) + " KVH=" + std::to_string(c.KVH) +
                 " D=" + std::to_string(c.D) + " rot=" + std::to_string(c.rot) + (c.rows_t == XQ_DTYPE_BF16 ? " bf16" : " f32"));
    const int64_t ld = (c.H + 2 * c.KVH) * c.D + c.extra_cols;
    std::vector<float> rows(static_cast<size_t>(c.T * ld));
    for (auto& v : rows) v = uniform(-2.f, 2.f);
    std::vector<uint8_t> dev_rows(rows.size() * 4);
    if (c.rows_t == XQ_DTYPE_BF16) {
      auto bits = to_half_bits(rows, XQ_DTYPE_BF16, &rows);  // rows: the values stored
      dev_rows.assign(reinterpret_cast<uint8_t*>(bits.data()), reinterpret_cast<uint8_t*>(bits.data()) + bits.size() * 2);
    } else {
      std::memcpy(dev_rows.data(), rows.data(), dev_rows.size());
    }
    std::vector<int32_t> pos;
    for (int64_t t = 0; t < c.T; ++t) pos.push_back(static_cast<int32_t>(c.S - c.T + t));
    if (c.T >= 3) pos[1] = -1;  // writes q only
    std::vector<float> factors;
    for (int64_t i = 0; i < c.rot / 2; ++i) factors.push_back(1.0f + 0.37f * static_cast<float>(i % 5));
    std::vector<float> q_cpu(static_cast<size_t>(c.T * c.H * c.D), -9.f), kv_cpu(static_cast<size_t>(2 * c.S * c.KVH * c.D), 7.f);
    // The cpu takes F32 rows (the same values).
    Case cc = c;
    cc.rows_t = XQ_DTYPE_F32;
    xq_op co = rope_kv_op(cc, ld, rows.data(), pos.data(), q_cpu.data(), kv_cpu.data(), factors.data());
    ASSERT_EQ(C.vt->run_op(C.state, &co), XQ_OK) << g_last_error;

    DevBuf d_rows(dev_rows.size()), d_pos(pos.size() * 4), d_q(q_cpu.size() * 4), d_kv(kv_cpu.size() * 4),
        d_f(std::max<size_t>(factors.size(), 1) * 4);
    d_rows.put(dev_rows);
    d_pos.put(pos);
    d_q.poison();
    d_kv.put(std::vector<float>(kv_cpu.size(), 7.f));
    if (!factors.empty()) d_f.put(factors);
    xq_op go = rope_kv_op(c, ld, d_rows.p, d_pos.p, d_q.p, d_kv.p, d_f.p);
    ASSERT_EQ(P.vt->supports_op(P.state, &go), 1u) << g_last_error;
    ASSERT_EQ(P.vt->run_op(P.state, &go), XQ_OK) << g_last_error;
    const auto q_gpu = d_q.get<float>(q_cpu.size()), kv_gpu = d_kv.get<float>(kv_cpu.size());
    EXPECT_EQ(count_nan(q_gpu), 0u) << "unwritten q";
    EXPECT_LE(rel_error(q_gpu, f64(q_cpu)), 1e-5) << "q";
    EXPECT_LE(rel_error(kv_gpu, f64(kv_cpu)), 1e-5) << "K/V";
    const size_t plane = kv_cpu.size() / 2;
    EXPECT_EQ(0, std::memcmp(kv_gpu.data() + plane, kv_cpu.data() + plane, plane * 4)) << "V plane";
    size_t untouched_cpu = 0, untouched_gpu = 0;
    for (size_t i = 0; i < plane; ++i) untouched_cpu += kv_cpu[i] == 7.f, untouched_gpu += kv_gpu[i] == 7.f;
    EXPECT_EQ(untouched_cpu, untouched_gpu) << "K rows written";
  }
}

TEST(CudaRopeKv, QEqualsConvertThenRopeOnCuda) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const Case c{1, 32, 8, 128, 128, 400, 0, true, 0, XQ_DTYPE_BF16};
  const int64_t ld = (c.H + 2 * c.KVH) * c.D;
  std::vector<float> rows(static_cast<size_t>(ld));
  for (auto& v : rows) v = uniform(-2.f, 2.f);
  auto bits = to_half_bits(rows, XQ_DTYPE_BF16, nullptr);
  std::vector<int32_t> pos{387};
  std::vector<float> factors;
  for (int64_t i = 0; i < c.rot / 2; ++i) factors.push_back(i < 16 ? 1.0f : i < 40 ? 3.5f : 8.0f);
  DevBuf d_rows(bits.size() * 2), d_pos(4), d_q(c.H * c.D * 4), d_q2(c.H * c.D * 4), d_kv(2 * c.S * c.KVH * c.D * 4),
      d_f(factors.size() * 4);
  d_rows.put(bits);
  d_pos.put(pos);
  d_f.put(factors);
  xq_op go = rope_kv_op(c, ld, d_rows.p, d_pos.p, d_q.p, d_kv.p, d_f.p);
  ASSERT_EQ(P.vt->run_op(P.state, &go), XQ_OK) << g_last_error;
  // The ops it replaces: CONVERT of the q column slice, then ROPE in place.
  xq_op cv = make_op(XQ_OP_CONVERT);
  cv.src[0] = tensor2(XQ_DTYPE_BF16, 1, c.H * c.D, d_rows.p);
  cv.src[0].strides[0] = ld;
  cv.src[0].strides[1] = 1;
  cv.dst = tensor2(XQ_DTYPE_F32, 1, c.H * c.D, d_q2.p);
  ASSERT_EQ(P.vt->run_op(P.state, &cv), XQ_OK) << g_last_error;
  xq_op r = make_op(XQ_OP_ROPE);
  r.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {1, c.H, c.D}, d_q2.p);
  r.src[0] = r.dst;
  r.src[1] = tensor1(XQ_DTYPE_I32, 1, d_pos.p);
  r.src[2] = tensor1(XQ_DTYPE_F32, c.rot / 2, d_f.p);
  r.i[0] = c.pairing;
  r.i[1] = c.rot;
  r.f[0] = 500000.0;
  r.f[1] = 1.0;
  ASSERT_EQ(P.vt->run_op(P.state, &r), XQ_OK) << g_last_error;
  const auto a = d_q.get<float>(c.H * c.D), b = d_q2.get<float>(c.H * c.D);
  double worst = 0;
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
    differ += a[i] != b[i];
  }
  std::printf("ROPE_KV q vs CONVERT + ROPE: %zu of %zu elements differ, max |diff| %.3g\n", differ, a.size(), worst);
  EXPECT_LE(worst, 1e-6);
}

TEST(CudaRopeKv, RefusesBadOperands) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const Case c{2, 4, 2, 16, 16, 8, 0, false, 0, XQ_DTYPE_BF16};
  int dummy = 0;
  xq_op o = rope_kv_op(c, (c.H + 2 * c.KVH) * c.D, &dummy, &dummy, &dummy, &dummy, nullptr);
  EXPECT_EQ(P.vt->supports_op(P.state, &o), 1u) << g_last_error;
  xq_op bad = o;
  bad.src[0].shape[1] -= 2;
  EXPECT_EQ(P.vt->supports_op(P.state, &bad), 0u);
  bad = o;
  bad.src[0].dtype = XQ_DTYPE_I8;
  EXPECT_EQ(P.vt->supports_op(P.state, &bad), 0u);
  bad = o;
  bad.src[2].shape[0] = 1;
  EXPECT_EQ(P.vt->supports_op(P.state, &bad), 0u);
  bad = o;
  bad.i[1] = 18;
  EXPECT_EQ(P.vt->supports_op(P.state, &bad), 0u);
  bad = o;
  bad.i[0] = 2;
  EXPECT_EQ(P.vt->supports_op(P.state, &bad), 0u);
  EXPECT_NE(P.vt->run_op(P.state, &bad), XQ_OK);
  EXPECT_NE(g_last_error.find("ROPE_KV"), std::string::npos) << g_last_error;
}

// The appended forms (docs/abi.md, XQ_OP_ROPE_KV): slots into paged pools
// (F32 and BF16) and Qwen3's q/k norms, against the cpu provider's op on the
// same values (F32 pools there: a BF16 pool is compared after rounding the
// cpu's rows). Several sequences with scattered blocks, rows crossing a
// block boundary, a padding row (slot -1). Bounds: q and K within 1e-5
// relative RMS with F32 pools (the norms sum squares in float here, in
// double on the cpu), K within 4e-3 with BF16 pools (one BF16 rounding,
// 2^-9 relative at most per element); V rows bit-identical after the same
// rounding; the same rows left untouched.
TEST(CudaRopeKv, PagedAndQkNormFormsMatchTheCpuProvider) {
  XQ_REQUIRE_GPU();
  if (!CpuProvider::get().built) GTEST_SKIP() << CpuProvider::get().error;
  auto& C = CpuProvider::get();
  ASSERT_TRUE(C.vt) << C.error;
  auto& P = Plugin::get();
  struct Form {
    int64_t H, KVH, D, rot;
    int pairing;
    bool paged, norms, factors;
    xq_dtype rows_t, pool_t;
  };
  constexpr int64_t NB = 8, BS = 16, T = 6;
  for (const Form& f : {Form{32, 8, 128, 128, 0, true, false, true, XQ_DTYPE_BF16, XQ_DTYPE_BF16},
                        Form{32, 8, 128, 128, 0, true, false, false, XQ_DTYPE_BF16, XQ_DTYPE_F32},
                        Form{5, 1, 64, 32, 1, true, false, true, XQ_DTYPE_F32, XQ_DTYPE_BF16},
                        Form{16, 8, 128, 128, 0, true, true, false, XQ_DTYPE_BF16, XQ_DTYPE_BF16},
                        Form{16, 8, 128, 128, 0, false, true, false, XQ_DTYPE_BF16, XQ_DTYPE_F32},
                        Form{6, 3, 16, 12, 1, true, true, false, XQ_DTYPE_F32, XQ_DTYPE_F32},
                        Form{9, 3, 96, 96, 1, false, true, false, XQ_DTYPE_F32, XQ_DTYPE_F32}}) {
    SCOPED_TRACE("H=" + std::to_string(f.H) + " KVH=" + std::to_string(f.KVH) + " D=" + std::to_string(f.D) +
                 (f.paged ? " paged" : " contiguous") + (f.norms ? " q/k norms" : "") +
                 (f.pool_t == XQ_DTYPE_BF16 ? " bf16 pool" : " f32 pool") + (f.rows_t == XQ_DTYPE_BF16 ? " bf16 rows" : ""));
    const int64_t ld = (f.H + 2 * f.KVH) * f.D + 8, S = NB * BS, row = f.KVH * f.D;
    std::vector<float> rows(static_cast<size_t>(T * ld));
    for (auto& v : rows) v = uniform(-2.f, 2.f);
    std::vector<uint8_t> dev_rows(rows.size() * 4);
    if (f.rows_t == XQ_DTYPE_BF16) {
      auto bits = to_half_bits(rows, XQ_DTYPE_BF16, &rows);
      dev_rows.assign(reinterpret_cast<uint8_t*>(bits.data()), reinterpret_cast<uint8_t*>(bits.data()) + bits.size() * 2);
    } else {
      std::memcpy(dev_rows.data(), rows.data(), dev_rows.size());
    }
    // Sequence A (blocks 5, 2) rows at 15 and 16 across its block boundary,
    // B (block 7) at 0, C (blocks 1, 3, 6) at 40 and 33, a padding row.
    std::vector<int32_t> ids = {15, 16, 0, 40, 33, 0};
    const std::vector<int32_t> slots = {5 * BS + 15, 2 * BS + 0, 7 * BS + 0, 6 * BS + 8, 3 * BS + 1, -1};
    if (f.paged) ids.insert(ids.end(), slots.begin(), slots.end());
    else ids.back() = -1;  // contiguous: the rows are the positions
    std::vector<float> extra(static_cast<size_t>(2 * f.D));  // norm weights [2, D] or factors [rot/2]
    for (size_t i = 0; i < extra.size(); ++i) extra[i] = f.norms ? uniform(0.5f, 1.5f) : 1.0f + 0.37f * static_cast<float>(i % 5);
    auto op = [&](xq_dtype rows_t, xq_dtype pool_t, void* r, void* p, void* q, void* kv, void* x) {
      xq_op o = make_op(XQ_OP_ROPE_KV);
      o.src[0] = xquant::sdk::device_tensor(rows_t, {T, ld - 8}, r);
      o.src[0].strides[0] = ld;
      o.src[0].strides[1] = 1;
      o.src[1] = f.paged ? tensor2(XQ_DTYPE_I32, 2, T, p) : tensor1(XQ_DTYPE_I32, T, p);
      o.src[2] = xquant::sdk::device_tensor(pool_t, {2, S, f.KVH, f.D}, kv);
      if (f.norms) {
        o.src[3] = tensor2(XQ_DTYPE_F32, 2, f.D, x);
        o.f[2] = 1e-6;
      } else if (f.factors) {
        o.src[3] = tensor1(XQ_DTYPE_F32, f.rot / 2, x);
      }
      o.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {T, f.H, f.D}, q);
      o.i[0] = f.pairing;
      o.i[1] = f.rot;
      o.f[0] = 1000000.0;
      o.f[1] = 1.0;
      return o;
    };
    std::vector<float> q_cpu(static_cast<size_t>(T * f.H * f.D), -9.f), kv_cpu(static_cast<size_t>(2 * S * row), 7.f);
    xq_op co = op(XQ_DTYPE_F32, XQ_DTYPE_F32, rows.data(), ids.data(), q_cpu.data(), kv_cpu.data(), extra.data());
    ASSERT_EQ(C.vt->run_op(C.state, &co), XQ_OK) << g_last_error;

    const size_t pool_elem = f.pool_t == XQ_DTYPE_BF16 ? 2 : 4;
    DevBuf d_rows(dev_rows.size()), d_ids(ids.size() * 4), d_q(q_cpu.size() * 4), d_kv(kv_cpu.size() * pool_elem),
        d_x(extra.size() * 4);
    d_rows.put(dev_rows);
    d_ids.put(ids);
    d_q.poison();
    d_x.put(extra);
    if (f.pool_t == XQ_DTYPE_BF16) d_kv.put(to_half_bits(std::vector<float>(kv_cpu.size(), 7.f), XQ_DTYPE_BF16, nullptr));
    else d_kv.put(std::vector<float>(kv_cpu.size(), 7.f));
    xq_op go = op(f.rows_t, f.pool_t, d_rows.p, d_ids.p, d_q.p, d_kv.p, d_x.p);
    ASSERT_EQ(P.vt->supports_op(P.state, &go), 1u) << g_last_error;
    ASSERT_EQ(P.vt->run_op(P.state, &go), XQ_OK) << g_last_error;
    const auto q_gpu = d_q.get<float>(q_cpu.size());
    std::vector<float> kv_gpu(kv_cpu.size());
    if (f.pool_t == XQ_DTYPE_BF16) {
      const auto bits = d_kv.get<uint16_t>(kv_cpu.size());
      for (size_t i = 0; i < bits.size(); ++i) kv_gpu[i] = half_bits_to_f32(bits[i], XQ_DTYPE_BF16);
    } else {
      kv_gpu = d_kv.get<float>(kv_cpu.size());
    }
    EXPECT_EQ(count_nan(q_gpu), 0u) << "unwritten q";
    EXPECT_LE(rel_error(q_gpu, f64(q_cpu)), 1e-5) << "q";
    const size_t plane = kv_cpu.size() / 2;
    const std::vector<float> k_gpu(kv_gpu.begin(), kv_gpu.begin() + plane), k_cpu(kv_cpu.begin(), kv_cpu.begin() + plane);
    EXPECT_LE(rel_error(k_gpu, f64(k_cpu)), f.pool_t == XQ_DTYPE_BF16 ? 4e-3 : 1e-5) << "K";
    std::vector<float> v_expected(kv_cpu.begin() + plane, kv_cpu.end());
    if (f.pool_t == XQ_DTYPE_BF16) to_half_bits(std::vector<float>(v_expected), XQ_DTYPE_BF16, &v_expected);
    EXPECT_EQ(0, std::memcmp(kv_gpu.data() + plane, v_expected.data(), plane * 4)) << "V plane";
    size_t untouched_cpu = 0, untouched_gpu = 0;
    for (size_t i = 0; i < plane; ++i) untouched_cpu += kv_cpu[i] == 7.f, untouched_gpu += kv_gpu[i] == 7.f;
    EXPECT_EQ(untouched_cpu, untouched_gpu) << "K rows written";
    EXPECT_EQ(untouched_cpu, plane - 5 * static_cast<size_t>(row)) << "five K rows written (the padding row none)";
  }
}
