// test_calibration_memory.cpp: calibrated quantization holds one layer's F32
// weights at a time, not the model's. The engine loads each layer from the
// mapped checkpoint when calibration reaches it and drops it once the
// layer is written (ModelOptions::layers_on_demand), so the most F32 weight
// bytes held at once (RunReport::peak_float_weight_bytes, counted by the
// engine on every load and release) must equal the final norm plus the
// larger of the embeddings and the largest layer, exactly: a MoE checkpoint
// (experts and router per layer) and the dense stories260K, through GPTQ
// and AWQ.
#include "checkpoint/checkpoint.hpp"
#include "core/runtime.hpp"
#include "moe_checkpoint.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"
#include "test_runtime.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

namespace fs = std::filesystem;
using namespace xquant;

namespace {

const fs::path kGguf = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K" / "stories260K.gguf";
const fs::path kDense = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";
const fs::path kText = fs::path(XQUANT_SHARED_DIR) / "data" / "tinystories" / "tinystories_val.subset.txt";

// F32 bytes of the checkpoint's tensors: per decoder layer, the embeddings,
// the final norm and the whole model.
struct FloatBytes {
  std::map<int, uint64_t> layer;
  uint64_t embed = 0, final_norm = 0, total = 0;
  uint64_t largest_layer() const {
    uint64_t m = 0;
    for (const auto& [l, b] : layer) m = std::max(m, b);
    return m;
  }
};

FloatBytes float_bytes(const fs::path& model) {
  auto cp = Checkpoint::open(test::quiet_runtime(), model);
  FloatBytes fb;
  const std::string prefix = "model.layers.";
  for (const auto& t : cp->tensors()) {
    const uint64_t b = static_cast<uint64_t>(t.numel()) * sizeof(float);
    fb.total += b;
    if (t.name == "model.embed_tokens.weight") fb.embed = b;
    else if (t.name == "model.norm.weight") fb.final_norm = b;
    else if (t.name.rfind(prefix, 0) == 0) fb.layer[std::stoi(t.name.substr(prefix.size()))] += b;
  }
  return fb;
}

RunReport quantize(const fs::path& model, const std::string& algorithm, const fs::path& out) {
  const std::string yaml =
      "model: {path: " + model.string() + "}\n" +
      "calibration: {text: " + kText.string() + ", tokenizer: " + kGguf.string() + ", samples: 2, seq_len: 16}\n" +
      "quantize:\n  - {targets: [\"re:.*_proj$\"], algorithm: " + algorithm +
      ", weights: {bits: 4, group_size: 4, symmetric: false}}\n" +
      "ignore: [\"re:.*mlp\\\\.gate$\", lm_head]\noutput: {path: " + out.string() + "}\n";
  Pipeline p = parse_pipeline_text(yaml, algorithm, out.parent_path());
  return run_pipeline(test::quiet_runtime(), p);
}

void expect_one_layer_at_a_time(const fs::path& model, const fs::path& out_dir, size_t n_layers) {
  const FloatBytes fb = float_bytes(model);
  ASSERT_EQ(fb.layer.size(), n_layers);
  const uint64_t bound = fb.final_norm + std::max(fb.embed, fb.largest_layer());
  for (const std::string algorithm : {"gptq", "awq"}) {
    const RunReport r = quantize(model, algorithm, out_dir / ("out-" + algorithm));
    EXPECT_EQ(r.peak_float_weight_bytes, bound) << algorithm;
    EXPECT_LT(r.peak_float_weight_bytes * 2, fb.total) << algorithm << ": not the whole model";
  }
}

}  // namespace

TEST(CalibrationMemory, MoeLayersLoadOneAtATime) {
  test::Cfg c{"qwen3_moe"};
  c.layers = 4;
  c.vocab = 512;  // stories260K's vocabulary tokenizes the calibration text
  c.norm_topk = true;
  const fs::path model = test::write_checkpoint(c, test::make_weights(c, 11), "memory");
  expect_one_layer_at_a_time(model, model.parent_path(), 4);
}

TEST(CalibrationMemory, DenseLayersLoadOneAtATime) {
  const fs::path out_dir = test::process_temp_dir("xquant_memory_test");
  expect_one_layer_at_a_time(kDense, out_dir, 5);
}
