// test_static_input_scale.cpp: a calibrated static-W8A8 pipeline on the real
// stories260K model writes, as each Linear's input_scale, the sdk's one
// formula (the compressed-tensors symmetric scale, max|x| / 127.5 for int8,
// compressed_tensors/quantization/utils/helpers.py calculate_qparams) over
// the input's absmax as it reaches the Linear. Layer 0's q/k/v input is
// norm(embedding), independent of any quantization, so the test captures its
// absmax with the calibrator itself and compares with what was written.
#include "calibrate/calibrator.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "checkpoint/checkpoint.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"
#include "test_files.hpp"

#include <xquant/sdk/quantizer.hpp>

#include <gtest/gtest.h>

#include <cmath>

namespace fs = std::filesystem;
using namespace xquant;

namespace {

const fs::path kModel = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";
const fs::path kTokenizer = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K" / "stories260K.gguf";
const fs::path kText = fs::path(XQUANT_SHARED_DIR) / "data" / "tinystories" / "tinystories_val.subset.txt";
constexpr int kSamples = 8, kSeqLen = 64;

RuntimeOptions quiet() {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  return o;
}

void run_static_w8a8(Runtime& rt, const std::string& algorithm, const fs::path& out) {
  const std::string yaml =
      "model: {path: " + kModel.string() + "}\n" + "calibration: {text: " + kText.string() +
      ", tokenizer: " + kTokenizer.string() + ", samples: " + std::to_string(kSamples) +
      ", seq_len: " + std::to_string(kSeqLen) + "}\n" + "quantize:\n  - {algorithm: " + algorithm +
      ", weights: {bits: 8, strategy: channel}, activations: {bits: 8, strategy: tensor}}\n" +
      "ignore: [lm_head]\noutput: {path: " + out.string() + "}\n";
  Pipeline p = parse_pipeline_text(yaml, "static-w8a8", out.parent_path());
  run_pipeline(rt, p);
}

// max |x| per column of layer 0's attention input over the calibration samples.
std::vector<float> layer0_attention_absmax(Runtime& rt) {
  ModelOptions mo;
  mo.dequantize_all = true;
  mo.tokenizer_from = kTokenizer;
  auto model = Model::open(rt, kModel, mo);
  auto samples =
      LayerwiseCalibrator::samples_from_text(*model, test::read_file(kText), kSamples, kSeqLen, /*seed=*/0);
  std::vector<float> absmax;
  CalibrationOptions co;
  co.sequential_groups = true;
  LayerwiseCalibrator cal(*model, std::move(samples));
  cal.run(XQ_NEED_ABSMAX, [&](int layer, LayerStats& stats, LayerWeights&) {
    if (layer == 0 && stats.active_group == LayerDesc::kAttnIn) absmax = stats.groups[LayerDesc::kAttnIn].absmax;
  }, co);
  return absmax;
}

float written_input_scale(Runtime& rt, const fs::path& out, const std::string& module) {
  auto cp = Checkpoint::open(rt, out);
  std::vector<float> v = cp->read_f32(cp->require(module + ".input_scale"));
  EXPECT_EQ(v.size(), 1u);
  return v.empty() ? 0.0f : v[0];
}

}  // namespace

TEST(StaticInputScale, GptqWritesTheSdkFormulaOverTheInputAbsmax) {
  test::TempDir dir("xquant-static-scale");
  Runtime rt(quiet());
  run_static_w8a8(rt, "gptq", dir / "gptq");
  const std::vector<float> absmax = layer0_attention_absmax(rt);
  ASSERT_EQ(absmax.size(), 64u);
  const float expected = sdk::quant::static_input_scale(absmax.data(), nullptr, static_cast<int64_t>(absmax.size()),
                                                        8, XQ_DTYPE_F32);
  float amax = 0;
  for (float a : absmax) amax = std::max(amax, a);
  ASSERT_GT(amax, 0.0f);
  EXPECT_FLOAT_EQ(expected, amax / 127.5f);
  for (const char* m : {"q_proj", "k_proj", "v_proj"})
    EXPECT_EQ(written_input_scale(rt, dir / "gptq", std::string("model.layers.0.self_attn.") + m), expected) << m;
}

// SmoothQuant divides the norm by s and multiplies the weights' columns by
// s: the input reaching q/k/v is x_j / s_j, and the scale must be of that
// input (as written after the whole chain), not of the original one.
TEST(StaticInputScale, SmoothQuantChainUsesTheSmoothedInput) {
  test::TempDir dir("xquant-static-scale");
  Runtime rt(quiet());
  run_static_w8a8(rt, "[smoothquant, gptq]", dir / "sq");
  const std::vector<float> absmax = layer0_attention_absmax(rt);
  auto source = Checkpoint::open(rt, kModel);
  auto written = Checkpoint::open(rt, dir / "sq");
  const std::string norm = "model.layers.0.input_layernorm.weight";
  const std::vector<float> before = source->read_f32(source->require(norm));
  const std::vector<float> after = written->read_f32(written->require(norm));
  ASSERT_EQ(before.size(), absmax.size());
  ASSERT_NE(before, after) << "smoothquant did not rescale the norm";
  std::vector<float> divisor(before.size(), 1.0f);
  for (size_t j = 0; j < before.size(); ++j)
    if (before[j] != 0.0f && after[j] != 0.0f) divisor[j] = std::fabs(before[j] / after[j]);
  const float expected = sdk::quant::static_input_scale(absmax.data(), divisor.data(),
                                                        static_cast<int64_t>(absmax.size()), 8, XQ_DTYPE_F32);
  EXPECT_EQ(written_input_scale(rt, dir / "sq", "model.layers.0.self_attn.q_proj"), expected);
}
