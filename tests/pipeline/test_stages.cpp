// test_stages.cpp: a rule's algorithm chain through the real plugins. After
// SmoothQuant rescales the input (norm / s), GPTQ must see the statistics of
// x / s: the chain's codes equal GPTQ run alone on the smoothed weights with
// the Hessian computed directly from the scaled calibration rows.
#include "core/runtime.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/stages.hpp"

#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_stages {

namespace {

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";

std::vector<float> hessian(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> h(cols * cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t k = 0; k < cols; ++k) h[j * cols + k] += x[r * cols + j] * x[r * cols + k];
  return h;
}

}  // namespace

TEST(Stages, SmoothQuantThenGptqSeesRescaledStatistics) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  Runtime rt(o);
  Pipeline p = parse_pipeline_text("model: {path: " + kModel + "}\nquantize:\n  - algorithm: [smoothquant, gptq]\n"
                                   "    weights: {bits: 4, strategy: channel}\n    params: {smoothquant: {alpha: 0.5}}\n"
                                   "output: {path: /tmp/unused}\n", "p.yaml", ".");
  Pipeline solo = parse_pipeline_text("model: {path: " + kModel + "}\nquantize:\n  - algorithm: gptq\n"
                                      "    weights: {bits: 4, strategy: channel}\noutput: {path: /tmp/unused}\n", "q.yaml", ".");
  validate_with_plugins(p, rt);
  validate_with_plugins(solo, rt);

  const int64_t rows = 24, cols = 16, tokens = 256;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(tokens * cols), w(rows * cols), norm(cols);
  for (auto& v : x) v = nd(rng);
  for (int64_t t = 0; t < tokens; ++t) x[t * cols + 3] *= 20.0f;  // an outlier channel
  for (auto& v : w) v = 0.1f * nd(rng);
  for (auto& v : norm) v = 1.0f + 0.1f * nd(rng);
  std::vector<float> absmax(cols, 0.0f);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < cols; ++j) absmax[j] = std::max(absmax[j], std::fabs(x[t * cols + j]));
  std::vector<float> h = hessian(x, tokens, cols);

  auto st = sdk::make_struct<xq_linear_stats>();
  st.cols = cols;
  st.tokens = tokens;
  st.absmax = absmax.data();
  st.hessian = h.data();
  std::vector<float> w_chain = w, norm_chain = norm;
  auto in = sdk::make_struct<xq_linear_input>();
  in.name = "test.proj";
  in.weight = sdk::f32_view(w_chain, {rows, cols});
  in.stats = &st;
  in.scheme = scheme_of(p.rules[0].weights, p.rules[0].activations, cols, XQ_DTYPE_F32);
  auto g = sdk::make_struct<xq_layer_group>();
  g.name = "test";
  g.n_linears = 1;
  g.linears = &in;
  g.prev_op = sdk::f32_view(norm_chain, {cols});
  g.role = "linear";
  GroupResult chain = run_stages(rt, p.rules[0], g);
  EXPECT_EQ(in.stats, &st);  // the caller's pointers are restored

  // SmoothQuant divided the norm by s and multiplied W's columns by s.
  std::vector<float> s(cols), xs(x.size());
  for (int64_t j = 0; j < cols; ++j) s[j] = norm[j] / norm_chain[j];
  EXPECT_GT(s[3], 1.5f);  // the outlier channel was migrated
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < cols; ++j) xs[t * cols + j] = x[t * cols + j] / s[j];
  std::vector<float> hs = hessian(xs, tokens, cols);
  std::vector<float> w_smoothed(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) w_smoothed[r * cols + j] = w[r * cols + j] * s[j];
  xq_linear_stats st2 = st;
  st2.hessian = hs.data();
  xq_linear_input in2 = in;
  in2.weight = sdk::f32_view(w_smoothed, {rows, cols});
  in2.stats = &st2;
  xq_layer_group g2 = g;
  g2.linears = &in2;
  g2.prev_op.data = nullptr;
  GroupResult direct = run_stages(rt, solo.rules[0], g2);

  ASSERT_EQ(chain.quant[0]->rows, rows);
  int same = 0;
  for (int64_t i = 0; i < rows * cols; ++i) same += chain.quant[0]->codes[i] == direct.quant[0]->codes[i];
  // Float rounding of x/s vs H/(s s) may flip a tie; nearly all must agree.
  EXPECT_GE(same, rows * cols * 99 / 100) << same << " of " << rows * cols;
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_NEAR(chain.quant[0]->scales[r], direct.quant[0]->scales[r], 1e-5f * std::fabs(direct.quant[0]->scales[r]));
}

}  // namespace test_stages
