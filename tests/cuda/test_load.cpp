// test_load.cpp: the provider loads everywhere (CI has no GPU): descriptor,
// capabilities, the score-0 contract without a device, and clear errors for
// what it does not run. Runs on CPU-only machines; GPU checks skip there.
#include "test_host.hpp"

using namespace xqtest;

TEST(CudaLoad, DescriptorAndCapabilities) {
  auto& P = Plugin::get();
  ASSERT_TRUE(P.desc) << P.load_error;
  EXPECT_EQ(P.desc->kind, XQ_PLUGIN_KERNEL_PROVIDER);
  EXPECT_STREQ(P.desc->name, "cuda");
  ASSERT_TRUE(P.vt) << P.load_error;
  EXPECT_EQ(P.vt->struct_size, sizeof(xq_kernel_vtable));
  std::vector<std::string> caps;
  for (const char* const* c = P.desc->capabilities; c && *c; ++c) caps.emplace_back(*c);
  for (const char* want : {"op:qmatmul", "op:matmul", "op:dequantize", "op:quantize_act", "op:get_rows", "op:rms_norm",
                           "op:rope", "op:attention", "op:swiglu", "op:add", "op:mul", "op:convert",
                           "layout:cuda-w4a16-mma", "layout:cuda-w8a8-int8-nk"})
    EXPECT_NE(std::find(caps.begin(), caps.end(), want), caps.end()) << want;
  // Device memory: the engine must never hand it host pointers.
  EXPECT_EQ(std::find(caps.begin(), caps.end(), "memory:host"), caps.end());
}

TEST(CudaLoad, ScoreMatchesDevicePresence) {
  auto& P = Plugin::get();
  ASSERT_TRUE(P.vt) << P.load_error;
  const char* why = nullptr;
  const uint32_t s = P.vt->score(P.state, &why);
  ASSERT_NE(why, nullptr);
  std::fprintf(stderr, "cuda score %u: %s\n", s, why);
  if (s == 0) {
    // Unusable: a clear reason, and every device call fails cleanly.
    EXPECT_TRUE(std::string(why).find("CUDA") != std::string::npos) << why;
    void* p = nullptr;
    EXPECT_EQ(P.vt->alloc(P.state, 64, &p), XQ_ERR_DEVICE);
    xq_op op = make_op(XQ_OP_QMATMUL);
    EXPECT_EQ(P.vt->supports_op(P.state, &op), 0u);
    EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_ERR_DEVICE);
    int8_t codes[16] = {};
    float scale = 1.f;
    xq_quant_tensor q{};
    q.struct_size = sizeof(q);
    q.bits = 4;
    q.symmetric = 1;
    q.strategy = XQ_STRATEGY_CHANNEL;
    q.rows = 1;
    q.cols = 16;
    q.group_size = 16;
    q.n_groups = 1;
    q.codes = codes;
    q.scales = &scale;
    q.scale_dtype = XQ_DTYPE_F32;
    xq_qweight* w = nullptr;
    EXPECT_EQ(P.vt->qweight_prepare(P.state, &q, &w), XQ_ERR_DEVICE);
    EXPECT_EQ(w, nullptr);
  } else {
    EXPECT_TRUE(std::string(why).find("sm_") != std::string::npos) << why;
  }
}

TEST(CudaLoad, UnsupportedOpsAreRefused) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  DevBuf a(64 * 64 * 2);
  xq_op op = make_op(static_cast<xq_op_type>(99));  // an op type no ABI version defines
  op.src[0] = tensor2(XQ_DTYPE_BF16, 64, 64, a.p);
  op.dst = op.src[0];
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 0u);
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("not provided"), std::string::npos) << g_last_error;
}
