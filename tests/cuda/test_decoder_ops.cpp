// test_decoder_ops.cpp: the decoder's dense ops on the `cuda` provider
// (GET_ROWS, RMS_NORM, ROPE, ATTENTION, SWIGLU, ADD, MUL, CONVERT, F32
// MATMUL), each run through both plugins' ABI on fresh random inputs: the
// CPU provider (host pointers) is the reference, the GPU output is poisoned
// before every run so an unwritten element shows as NaN.
//
// Bounds (||gpu - cpu|| / ||cpu||): F32 ops <= 1e-5 (same float formulas,
// different summation order); ROPE <= 1e-4 (powf/sincosf vs libm at angles
// up to 4096 rad); BF16 storage <= 1e-2 against the CPU on the
// BF16-rounded inputs; GET_ROWS and CONVERT exact.
#include "test_host.hpp"

#include <xquant/sdk/half.hpp>

using namespace xqtest;

namespace {

// The CPU provider, loaded beside the cuda one with the same host table.
struct CpuRef {
  void* lib = nullptr;
  const xq_kernel_vtable* vt = nullptr;
  void* state = nullptr;
  std::string error;
  bool built = false;  // the build has a cpu provider: failing to load it is an error

  static CpuRef& get() {
    static CpuRef r;
    return r;
  }

 private:
  CpuRef() {
    const char* env = std::getenv("XQ_CPU_PLUGIN");
    const char* path = env && *env ? env : XQ_CPU_PLUGIN_PATH;
    if (!*path) {
      error = "this build has no cpu provider (the standalone cuda build)";
      return;
    }
    built = true;
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
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

#define XQ_REQUIRE_GPU_AND_CPU()                                                   \
  XQ_REQUIRE_GPU();                                                                \
  if (!CpuRef::get().built) GTEST_SKIP() << "no reference: " << CpuRef::get().error; \
  ASSERT_TRUE(CpuRef::get().vt) << CpuRef::get().error

std::vector<float> random_vec(size_t n, float lo = -2.f, float hi = 2.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = uniform(lo, hi);
  return v;
}

xq_device_tensor tensor(xq_dtype t, std::initializer_list<int64_t> shape, void* data) {
  xq_device_tensor d{};
  d.struct_size = sizeof(d);
  d.dtype = t;
  d.ndim = static_cast<uint32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) d.shape[i++] = s;
  d.data = data;
  return d;
}

// An op's operands: host copies for the CPU provider, device copies for the
// GPU. Slot `kDst` is the output; `in_place` makes src[0] alias it.
struct Operands {
  struct Slot {
    xq_dtype type = XQ_DTYPE_F32;
    std::vector<int64_t> shape;
    std::vector<uint8_t> host;
    std::unique_ptr<DevBuf> dev;
  };
  Slot dst, src[4];

  static std::vector<uint8_t> bytes_of(const void* p, size_t n) {
    std::vector<uint8_t> b(n);
    std::memcpy(b.data(), p, n);
    return b;
  }
  void set(Slot& s, xq_dtype t, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    s.type = t;
    s.shape = std::move(shape);
    s.host = std::move(bytes);
    s.dev = std::make_unique<DevBuf>(s.host.size());
    ASSERT_TRUE(s.dev->p);
    s.dev->put(s.host);
  }
  void f32(Slot& s, std::vector<int64_t> shape, const std::vector<float>& v) {
    set(s, XQ_DTYPE_F32, std::move(shape), bytes_of(v.data(), v.size() * 4));
  }
  void i32(Slot& s, std::vector<int64_t> shape, const std::vector<int32_t>& v) {
    set(s, XQ_DTYPE_I32, std::move(shape), bytes_of(v.data(), v.size() * 4));
  }
  static xq_device_tensor view(const Slot& s, void* data) {
    xq_device_tensor d{};
    d.struct_size = sizeof(d);
    d.dtype = s.type;
    d.ndim = static_cast<uint32_t>(s.shape.size());
    for (size_t i = 0; i < s.shape.size(); ++i) d.shape[i] = s.shape[i];
    d.data = data;
    return d;
  }
  // Runs `proto` (its f/i fields) on both providers; returns {cpu, gpu} dst bytes.
  std::pair<std::vector<uint8_t>, std::vector<uint8_t>> run(xq_op proto, bool in_place = false) {
    xq_op c = proto, g = proto;
    c.dst = view(dst, dst.host.data());
    g.dst = view(dst, dst.dev->p);
    dst.dev->poison();
    if (in_place) dst.dev->put(src[0].host);
    for (int i = 0; i < 4; ++i) {
      if (src[i].shape.empty()) continue;
      c.src[i] = view(src[i], i == 0 && in_place ? dst.host.data() : src[i].host.data());
      g.src[i] = view(src[i], i == 0 && in_place ? dst.dev->p : src[i].dev->p);
    }
    if (in_place) std::memcpy(dst.host.data(), src[0].host.data(), dst.host.size());
    auto& P = Plugin::get();
    auto& C = CpuRef::get();
    EXPECT_EQ(C.vt->run_op(C.state, &c), XQ_OK) << "cpu: " << g_last_error;
    EXPECT_EQ(P.vt->supports_op(P.state, &g), 1u);
    EXPECT_EQ(P.vt->run_op(P.state, &g), XQ_OK) << "cuda: " << g_last_error;
    return {dst.host, dst.dev->get<uint8_t>(dst.host.size())};
  }
};

std::vector<float> as_f32(const std::vector<uint8_t>& b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}
std::vector<double> as_f64(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

void expect_close(const std::vector<uint8_t>& cpu, const std::vector<uint8_t>& gpu, double bound, const char* what) {
  const auto c = as_f32(cpu), g = as_f32(gpu);
  EXPECT_EQ(count_nan(g), 0u) << what << ": unwritten or NaN outputs";
  const double e = rel_error(g, as_f64(c));
  EXPECT_LE(e, bound) << what;
}

// BF16 bytes of `v`, and `v` rounded through BF16.
std::vector<uint8_t> bf16_bytes(const std::vector<float>& v, std::vector<float>* rounded) {
  auto bits = to_half_bits(v, XQ_DTYPE_BF16, rounded);
  return Operands::bytes_of(bits.data(), bits.size() * 2);
}
std::vector<float> bf16_to_f32(const std::vector<uint8_t>& b) {
  std::vector<float> v(b.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, b.data() + 2 * i, 2);
    v[i] = half_bits_to_f32(h, XQ_DTYPE_BF16);
  }
  return v;
}

}  // namespace

TEST(CudaDecoderOps, GetRowsGathersExactly) {
  XQ_REQUIRE_GPU_AND_CPU();
  // D = 4136: the kernel's 256-element CTAs of a row, the last one partial.
  for (int64_t D : {72, 4136}) {
    const int64_t V = 100, T = 17;
    std::vector<int32_t> ids(T);
    for (auto& i : ids) i = uniform_int(0, V - 1);
    Operands o;
    o.f32(o.src[0], {V, D}, random_vec(V * D));
    o.i32(o.src[1], {T}, ids);
    o.f32(o.dst, {T, D}, std::vector<float>(T * D));
    auto [c, g] = o.run(make_op(XQ_OP_GET_ROWS));
    EXPECT_EQ(c, g) << "D=" << D;
  }
}

TEST(CudaDecoderOps, RmsNormMatchesCpu) {
  XQ_REQUIRE_GPU_AND_CPU();
  for (int64_t D : {64, 172, 4096}) {
    const int64_t M = 5;
    Operands o;
    o.f32(o.src[0], {M, D}, random_vec(M * D));
    o.f32(o.src[1], {D}, random_vec(D, 0.5f, 1.5f));
    o.f32(o.dst, {M, D}, std::vector<float>(M * D));
    xq_op op = make_op(XQ_OP_RMS_NORM);
    op.f[0] = 1e-5;
    auto [c, g] = o.run(op);
    expect_close(c, g, 1e-5, "RMS_NORM");
  }
}

TEST(CudaDecoderOps, RopeMatchesCpuForBothPairingsScalingAndPartialRotation) {
  XQ_REQUIRE_GPU_AND_CPU();
  const int64_t T = 7, H = 4, D = 64;
  for (int pairing : {0, 1})
    for (int64_t rot : {D, int64_t{32}})
      for (bool factors : {false, true}) {
        std::vector<int32_t> pos(T);
        for (auto& p : pos) p = uniform_int(0, 4096);
        Operands o;
        const auto x = random_vec(T * H * D);
        o.f32(o.src[0], {T, H, D}, x);
        o.i32(o.src[1], {T}, pos);
        if (factors) o.f32(o.src[2], {rot / 2}, random_vec(rot / 2, 1.f, 8.f));
        o.f32(o.dst, {T, H, D}, x);
        xq_op op = make_op(XQ_OP_ROPE);
        op.i[0] = pairing;
        op.i[1] = rot;
        op.f[0] = 500000.0;
        op.f[1] = factors ? 0.5 : 0.0;
        auto [c, g] = o.run(op, /*in_place=*/true);
        expect_close(c, g, 1e-4, pairing ? "ROPE norm" : "ROPE neox");
      }
}

TEST(CudaDecoderOps, AttentionMatchesCpuForPrefillChunksAndDecode) {
  XQ_REQUIRE_GPU_AND_CPU();
  const int64_t H = 8, KVH = 2, D = 64;
  struct Case {
    int64_t T, start;
  };
  for (Case cs : {Case{20, 0}, Case{5, 11}, Case{1, 37}, Case{1, 600}}) {
    const int64_t S = cs.start + cs.T;
    Operands o;
    o.f32(o.src[0], {cs.T, H, D}, random_vec(cs.T * H * D));
    o.f32(o.src[1], {S, KVH, D}, random_vec(S * KVH * D));
    o.f32(o.src[2], {S, KVH, D}, random_vec(S * KVH * D));
    o.f32(o.dst, {cs.T, H, D}, std::vector<float>(cs.T * H * D));
    xq_op op = make_op(XQ_OP_ATTENTION);
    op.f[0] = 1.0 / 8.0;
    op.i[0] = cs.start;
    auto [c, g] = o.run(op);
    expect_close(c, g, 1e-5, "ATTENTION");
  }
}

TEST(CudaDecoderOps, AttentionInBf16MatchesCpuOnRoundedInputs) {
  XQ_REQUIRE_GPU_AND_CPU();
  const int64_t T = 9, H = 4, KVH = 4, D = 128, start = 30, S = start + T;
  std::vector<float> q, k, v;
  auto qb = bf16_bytes(random_vec(T * H * D), &q), kb = bf16_bytes(random_vec(S * KVH * D), &k),
       vb = bf16_bytes(random_vec(S * KVH * D), &v);
  // CPU reference on the rounded values (F32), GPU on the BF16 bytes.
  Operands ref;
  ref.f32(ref.src[0], {T, H, D}, q);
  ref.f32(ref.src[1], {S, KVH, D}, k);
  ref.f32(ref.src[2], {S, KVH, D}, v);
  ref.f32(ref.dst, {T, H, D}, std::vector<float>(T * H * D));
  xq_op op = make_op(XQ_OP_ATTENTION);
  op.f[0] = 1.0 / std::sqrt(128.0);
  op.i[0] = start;
  auto [c, unused] = ref.run(op);
  Operands b;
  b.set(b.src[0], XQ_DTYPE_BF16, {T, H, D}, qb);
  b.set(b.src[1], XQ_DTYPE_BF16, {S, KVH, D}, kb);
  b.set(b.src[2], XQ_DTYPE_BF16, {S, KVH, D}, vb);
  b.set(b.dst, XQ_DTYPE_BF16, {T, H, D}, std::vector<uint8_t>(T * H * D * 2));
  auto& P = Plugin::get();
  xq_op g = op;
  g.dst = Operands::view(b.dst, b.dst.dev->p);
  for (int i = 0; i < 3; ++i) g.src[i] = Operands::view(b.src[i], b.src[i].dev->p);
  b.dst.dev->poison();
  XQ_OK_OR_FAIL(P.vt->run_op(P.state, &g));
  const auto out = bf16_to_f32(b.dst.dev->get<uint8_t>(b.dst.host.size()));
  EXPECT_EQ(count_nan(out), 0u);
  EXPECT_LE(rel_error(out, as_f64(as_f32(c))), 1e-2);
}

TEST(CudaDecoderOps, ElementwiseOpsMatchCpuWithAndWithoutBroadcast) {
  XQ_REQUIRE_GPU_AND_CPU();
  const int64_t R = 13, N = 77;
  for (xq_op_type t : {XQ_OP_SWIGLU, XQ_OP_ADD, XQ_OP_MUL})
    for (bool bcast : {false, true}) {
      if (bcast && t == XQ_OP_SWIGLU) continue;
      Operands o;
      o.f32(o.src[0], {R, N}, random_vec(R * N));
      if (bcast) o.f32(o.src[1], {N}, random_vec(N));
      else o.f32(o.src[1], {R, N}, random_vec(R * N));
      o.f32(o.dst, {R, N}, std::vector<float>(R * N));
      auto [c, g] = o.run(make_op(t));
      expect_close(c, g, 1e-6, "elementwise");
    }
}

TEST(CudaDecoderOps, ConvertRoundTripsThroughBf16AndCopiesF32) {
  XQ_REQUIRE_GPU_AND_CPU();
  const int64_t n = 1000;
  Operands o;
  o.f32(o.src[0], {n}, random_vec(n, -100.f, 100.f));
  o.set(o.dst, XQ_DTYPE_BF16, {n}, std::vector<uint8_t>(n * 2));
  auto [c, g] = o.run(make_op(XQ_OP_CONVERT));
  EXPECT_EQ(c, g);  // both round to nearest even
  Operands f;
  f.f32(f.src[0], {n}, random_vec(n));
  f.f32(f.dst, {n}, std::vector<float>(n));
  auto [c2, g2] = f.run(make_op(XQ_OP_CONVERT));
  EXPECT_EQ(c2, g2);
}

TEST(CudaDecoderOps, F32MatmulWithBiasMatchesCpu) {
  XQ_REQUIRE_GPU_AND_CPU();
  for (int64_t M : {1, 3, 40}) {
    const int64_t K = 172, N = 64;
    Operands o;
    o.f32(o.src[0], {M, K}, random_vec(M * K));
    o.f32(o.src[1], {N, K}, random_vec(N * K));
    o.f32(o.src[2], {N}, random_vec(N));
    o.f32(o.dst, {M, N}, std::vector<float>(M * N));
    auto [c, g] = o.run(make_op(XQ_OP_MATMUL));
    expect_close(c, g, 1e-5, "MATMUL F32");
  }
}

TEST(CudaDecoderOps, RefusesWhatItCannotRunWithAReason) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  DevBuf a(4096), b(4096);
  xq_op rope = make_op(XQ_OP_ROPE);
  rope.dst = tensor(XQ_DTYPE_F32, {2, 2, 8}, a.p);
  rope.src[0] = tensor(XQ_DTYPE_F32, {2, 2, 8}, b.p);  // not in place
  rope.src[1] = tensor(XQ_DTYPE_I32, {2}, b.p);
  rope.i[1] = 8;
  rope.f[0] = 10000.0;
  EXPECT_EQ(P.vt->supports_op(P.state, &rope), 0u);
  EXPECT_EQ(P.vt->run_op(P.state, &rope), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("in place"), std::string::npos) << g_last_error;

  xq_op att = make_op(XQ_OP_ATTENTION);
  const int64_t S = 1 << 20;  // a million keys: past the shared-memory kernel
  att.src[0] = tensor(XQ_DTYPE_F32, {1, 1, 64}, a.p);
  att.src[1] = tensor(XQ_DTYPE_F32, {S, 1, 64}, a.p);
  att.src[2] = tensor(XQ_DTYPE_F32, {S, 1, 64}, a.p);
  att.dst = tensor(XQ_DTYPE_F32, {1, 1, 64}, b.p);
  att.i[0] = S - 1;
  att.f[0] = 0.125;
  EXPECT_EQ(P.vt->supports_op(P.state, &att), 0u);
  EXPECT_EQ(P.vt->run_op(P.state, &att), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("too long"), std::string::npos) << g_last_error;
}

// ---- ops that shorten a decode step (fused_ops.cu) --------------------------
// References are computed here on the host: the CPU provider has no
// ADD_RMS_NORM or ARGMAX and refuses strided tensors.

namespace {

xq_device_tensor column_slice(xq_dtype t, int64_t rows, int64_t cols, int64_t ld, void* data) {
  xq_device_tensor v = tensor(t, {rows, cols}, data);
  v.strides[0] = ld;
  v.strides[1] = 1;
  return v;
}

void run_on_gpu(const xq_op& op) {
  auto& P = Plugin::get();
  ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u) << g_last_error;
  ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
}

}  // namespace

TEST(CudaFusedOps, StridedConvertCopiesAColumnSliceExactly) {
  XQ_REQUIRE_GPU();
  const int64_t R = 9, LD = 48, C0 = 32, C = 8;  // the k slice of a [R, 48] q|k|v row
  const auto m = random_vec(R * LD);
  DevBuf src(m.size() * 4), dst(R * C * 4);
  src.put(m);
  dst.poison();
  xq_op op = make_op(XQ_OP_CONVERT);
  op.src[0] = column_slice(XQ_DTYPE_F32, R, C, LD, static_cast<float*>(src.p) + C0);
  op.dst = tensor(XQ_DTYPE_F32, {R, C}, dst.p);
  run_on_gpu(op);
  const auto out = dst.get<float>(R * C);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) ASSERT_EQ(out[r * C + c], m[r * LD + C0 + c]) << r << "," << c;
}

TEST(CudaFusedOps, StridedSwigluReadsTheGateAndUpHalvesOfOneRow) {
  XQ_REQUIRE_GPU();
  const int64_t R = 5, I = 77;
  const auto gu = random_vec(R * 2 * I);
  DevBuf src(gu.size() * 4), dst(R * I * 4);
  src.put(gu);
  dst.poison();
  xq_op op = make_op(XQ_OP_SWIGLU);
  op.src[0] = column_slice(XQ_DTYPE_F32, R, I, 2 * I, src.p);
  op.src[1] = column_slice(XQ_DTYPE_F32, R, I, 2 * I, static_cast<float*>(src.p) + I);
  op.dst = tensor(XQ_DTYPE_F32, {R, I}, dst.p);
  run_on_gpu(op);
  const auto out = dst.get<float>(R * I);
  std::vector<double> ref(R * I);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < I; ++c) {
      const double g = gu[r * 2 * I + c], u = gu[r * 2 * I + I + c];
      ref[r * I + c] = g / (1.0 + std::exp(-g)) * u;
    }
  EXPECT_LE(rel_error(out, ref), 1e-6);
}

TEST(CudaFusedOps, AddRmsNormUpdatesTheResidualAndNormsTheSum) {
  XQ_REQUIRE_GPU();
  for (int64_t D : {64, 4096}) {
    const int64_t M = 3;
    const auto x = random_vec(M * D), r = random_vec(M * D), w = random_vec(D, 0.5f, 1.5f);
    std::vector<float> r_rounded;
    const auto r_bf16 = bf16_bytes(r, &r_rounded);  // the addend as a BF16 GEMM output
    DevBuf dx(x.size() * 4), dr(r_bf16.size()), dw(w.size() * 4), dy(M * D * 2);
    dx.put(x), dr.put(r_bf16), dw.put(w);
    dy.poison();
    xq_op op = make_op(XQ_OP_ADD_RMS_NORM);
    op.src[0] = tensor(XQ_DTYPE_F32, {M, D}, dx.p);
    op.src[1] = tensor(XQ_DTYPE_F32, {D}, dw.p);
    op.src[2] = tensor(XQ_DTYPE_BF16, {M, D}, dr.p);
    op.dst = tensor(XQ_DTYPE_BF16, {M, D}, dy.p);
    op.f[0] = 1e-5;
    run_on_gpu(op);
    const auto sum = dx.get<float>(M * D);
    const auto y = bf16_to_f32(dy.get<uint8_t>(M * D * 2));
    std::vector<double> ref(M * D);
    for (int64_t m = 0; m < M; ++m) {
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) {
        const float s = x[m * D + i] + r_rounded[m * D + i];
        ASSERT_EQ(sum[m * D + i], s) << "residual not updated in place at " << m << "," << i;
        ss += double(s) * s;
      }
      const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
      for (int64_t i = 0; i < D; ++i) ref[m * D + i] = sum[m * D + i] * inv * w[i];
    }
    EXPECT_LE(rel_error(y, ref), 1e-2);  // BF16 output
  }
}

TEST(CudaFusedOps, ArgmaxTakesTheLowestIdOnTiesAndSkipsNaN) {
  XQ_REQUIRE_GPU();
  const int64_t M = 4, N = 128256;
  std::vector<float> x = random_vec(M * N);
  x[0 * N + 5] = 10.f, x[0 * N + 70000] = 10.f;  // tie: 5 wins
  x[1 * N + 128255] = 9.f;                       // last column
  x[2 * N + 3] = NAN, x[2 * N + 4] = 7.f;        // NaN never wins
  for (int64_t i = 0; i < N; ++i) x[3 * N + i] = -1e30f;
  x[3 * N + 1234] = -1e29f;
  DevBuf dx(x.size() * 4), di(M * 4);
  dx.put(x);
  di.poison();
  xq_op op = make_op(XQ_OP_ARGMAX);
  op.src[0] = tensor(XQ_DTYPE_F32, {M, N}, dx.p);
  op.dst = tensor(XQ_DTYPE_I32, {M}, di.p);
  run_on_gpu(op);
  EXPECT_EQ(di.get<int32_t>(M), (std::vector<int32_t>{5, 128255, 4, 1234}));
}

TEST(CudaFusedOps, RefusesAliasedAddRmsNormAndNonI32Argmax) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  DevBuf a(4096), b(4096), c(4096);
  xq_op n = make_op(XQ_OP_ADD_RMS_NORM);
  n.src[0] = tensor(XQ_DTYPE_F32, {2, 8}, a.p);
  n.src[1] = tensor(XQ_DTYPE_F32, {8}, b.p);
  n.src[2] = tensor(XQ_DTYPE_F32, {2, 8}, c.p);
  n.dst = n.src[0];
  EXPECT_EQ(P.vt->supports_op(P.state, &n), 0u);
  xq_op am = make_op(XQ_OP_ARGMAX);
  am.src[0] = tensor(XQ_DTYPE_F32, {2, 8}, a.p);
  am.dst = tensor(XQ_DTYPE_F32, {2}, b.p);
  EXPECT_EQ(P.vt->supports_op(P.state, &am), 0u);
}
