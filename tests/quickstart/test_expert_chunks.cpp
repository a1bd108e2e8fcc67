// test_expert_chunks.cpp: a MoE layer's per-expert gate/up statistics are
// held a chunk of calibration.moe.experts_per_pass experts at a time
// (calibrate/moe_calibration.hpp). GPTQ's H x H Hessian per expert is what
// dominates, so the model here has a hidden size far above the experts'
// width, as Qwen3-30B-A3B (2048 vs 768). Pinned: the most statistics bytes
// held at once (RunReport::peak_statistics_bytes, the calibrator's count
// of every accumulated statistics vector and the kept gate/up input) is
// exactly the largest stage's, with the gate/up stage holding one chunk of
// experts; and chunking changes no byte of the written checkpoint. A rule
// with a rescaling algorithm (AWQ) needs every expert in one call, so its
// run ignores experts_per_pass.
#include "moe_checkpoint.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"
#include "test_runtime.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;
using namespace xquant;

namespace {

const fs::path kGguf = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K" / "stories260K.gguf";
const fs::path kText = fs::path(XQUANT_SHARED_DIR) / "data" / "tinystories" / "tinystories_val.subset.txt";

constexpr int64_t kSamples = 4, kSeqLen = 64;

test::Cfg config() {
  test::Cfg c{"qwen3_moe"};
  c.hidden = 64;
  c.moe_inter = 8;
  c.experts = 8;
  c.top_k = 2;
  c.layers = 2;
  c.vocab = 512;  // stories260K's vocabulary tokenizes the calibration text
  c.norm_topk = true;
  return c;
}

RunReport quantize(const fs::path& model, const std::string& algorithm, int64_t experts_per_pass, const fs::path& out) {
  const std::string yaml =
      "model: {path: " + model.string() + "}\n" + "calibration: {text: " + kText.string() +
      ", tokenizer: " + kGguf.string() + ", samples: " + std::to_string(kSamples) +
      ", seq_len: " + std::to_string(kSeqLen) + ", moe: {min_tokens: 1, experts_per_pass: " +
      std::to_string(experts_per_pass) + "}}\n" + "quantize:\n  - {targets: [\"re:.*_proj$\"], algorithm: " +
      algorithm + ", weights: {bits: 4, group_size: 8, symmetric: false}}\n" +
      "ignore: [\"re:.*mlp\\\\.gate$\", lm_head]\noutput: {path: " + out.string() + "}\n";
  Pipeline p = parse_pipeline_text(yaml, algorithm, out.parent_path());
  return run_pipeline(test::quiet_runtime(), p);
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// GPTQ asks for the Hessian only: a group of input width w holds w*w floats.
// Per stage: attn_in (hidden), attn_out (heads*head_dim), mlp_in's own
// all-token Hessian plus the kept gate/up input (every token's row and its
// top_k routing entries: row index int64 + weight float) plus one chunk of
// experts' Hessians, every expert's down_proj (moe_inter).
uint64_t expected_peak(const test::Cfg& c, int64_t chunk) {
  auto hessian = [](int64_t w) { return static_cast<uint64_t>(w * w) * sizeof(float); };
  const int64_t tokens = kSamples * kSeqLen;
  const uint64_t kept_input = static_cast<uint64_t>(tokens * c.hidden) * sizeof(float) +
                              static_cast<uint64_t>(tokens * c.top_k) * (sizeof(int64_t) + sizeof(float));
  const uint64_t gate_up = hessian(c.hidden) + kept_input + static_cast<uint64_t>(chunk) * hessian(c.hidden);
  return std::max({hessian(c.hidden), hessian(c.heads * c.hd), gate_up, static_cast<uint64_t>(c.experts) * hessian(c.moe_inter)});
}

}  // namespace

TEST(ExpertChunks, GptqHoldsOneChunkOfExpertStatisticsAndWritesTheSameCheckpoint) {
  const test::Cfg c = config();
  const fs::path model = test::write_checkpoint(c, test::make_weights(c, 21), "chunks");
  std::string reference;
  for (const int64_t per_pass : {0, 1, 3, 8}) {
    const fs::path out = model.parent_path() / ("gptq-" + std::to_string(per_pass));
    const RunReport r = quantize(model, "gptq", per_pass, out);
    ASSERT_EQ(r.experts.size(), static_cast<size_t>(c.layers * c.experts));
    for (const auto& e : r.experts) ASSERT_EQ(e.statistics, "routed tokens") << "layer " << e.layer << " expert " << e.expert;
    const int64_t chunk = per_pass == 0 ? c.experts : per_pass;
    EXPECT_EQ(r.peak_statistics_bytes, expected_peak(c, chunk)) << "experts_per_pass " << per_pass;
    const std::string bytes = file_bytes(out / "model.safetensors");
    ASSERT_FALSE(bytes.empty());
    if (reference.empty()) reference = bytes;
    else EXPECT_TRUE(bytes == reference) << "experts_per_pass " << per_pass << " changed the checkpoint";
  }
  EXPECT_LT(expected_peak(c, 1) * 2, expected_peak(c, 8)) << "the model must make the chunk matter";
}

TEST(ExpertChunks, AwqTakesEveryExpertInOneCall) {
  const test::Cfg c = config();
  const fs::path model = test::write_checkpoint(c, test::make_weights(c, 22), "chunks-awq");
  const RunReport whole = quantize(model, "awq", 0, model.parent_path() / "awq-0");
  const RunReport chunked = quantize(model, "awq", 2, model.parent_path() / "awq-2");
  EXPECT_EQ(chunked.layers.size(), whole.layers.size());
  EXPECT_TRUE(file_bytes(model.parent_path() / "awq-2" / "model.safetensors") ==
              file_bytes(model.parent_path() / "awq-0" / "model.safetensors"));
}
