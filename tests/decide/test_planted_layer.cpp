// test_planted_layer.cpp: whole `auto` decisions on a copy of stories260K
// with a planted sensitive layer: every row of layers.2 down_proj gets one
// weight 10x its largest, so that group's 4-bit scale crushes the rest of
// the group. (An equivalent rescaling, a column up and the feeding row
// down, does not make a layer sensitive: AWQ undoes exactly that.) The
// planted copy is its own float reference. The analysis must rank that group
// first by both the measured KLD and the proxy, the fallback (greedy and
// knapsack) must move exactly it, and `auto` must never keep a candidate it
// measured worse.
#include "core/runtime.hpp"
#include "decide/decision.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_planted_layer {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;
const std::string kModel = kShared + "/models/stories260K-hf";
const std::string kPlanted = "model.layers.2.mlp_down";

// Edits F32 tensors inside a safetensors file's bytes.
class SafetensorsEdit {
 public:
  explicit SafetensorsEdit(std::string bytes) {
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    header_ = nlohmann::json::parse(bytes.substr(8, n));
    base_ = 8 + n;
    bytes_ = std::move(bytes);
  }
  // One weight per row set to `factor` times the row's largest |w|, at a
  // column that moves with the row (so every column group is hit).
  void plant_huge_weights(const std::string& name, float factor) {
    auto [data, rows, cols] = tensor(name);
    for (int64_t r = 0; r < rows; ++r) {
      float mx = 0;
      for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, std::fabs(data[r * cols + c]));
      data[r * cols + (r * 37 + 5) % cols] = (r % 2 ? -factor : factor) * mx;
    }
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::tuple<float*, int64_t, int64_t> tensor(const std::string& name) {
    const auto& t = header_.at(name);
    EXPECT_EQ(t.at("dtype"), "F32");
    const uint64_t begin = t.at("data_offsets")[0];
    return {reinterpret_cast<float*>(bytes_.data() + base_ + begin), t.at("shape")[0], t.at("shape")[1]};
  }
  std::string bytes_;
  nlohmann::json header_;
  uint64_t base_ = 0;
};

std::filesystem::path planted_copy(const test::TempDir& dir) {
  const auto model = dir / "planted";
  std::filesystem::create_directories(model);
  std::filesystem::copy_file(kModel + "/config.json", model / "config.json");
  SafetensorsEdit st(test::read_file(kModel + "/model.safetensors"));
  st.plant_huge_weights("model.layers.2.mlp.down_proj.weight", 10.0f);
  test::write_file(model / "model.safetensors", st.bytes());
  return model;
}

Pipeline auto_pipeline(const std::filesystem::path& model, const std::filesystem::path& out) {
  const std::string yaml =
      "model: {path: " + model.string() + "}\n"
      "calibration: {text: " + kShared + "/data/tinystories/tinystories_val.subset.txt, tokenizer: " + kShared +
      "/models/stories260K/stories260K.gguf, samples: 8, seq_len: 128}\n"
      "quantize:\n  - algorithm: auto\n    weights: {bits: 4, group_size: 32}\n"
      "ignore: [lm_head]\n"
      // A target far away: no fallback inside decide(); the test drives it.
      "accuracy: {text: " + kShared + "/data/wikitext-2-raw/wiki.test.raw, metric: kld, max_increase: 100, "
      "fallback: [bf16], max_tokens: 768}\n"
      "output: {path: " + out.string() + "}\n";
  return parse_pipeline_text(yaml, "planted.yaml", ".");
}

size_t argmax(const std::vector<double>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); }

}  // namespace

TEST(PlantedLayer, RankedFirstBothWaysAndTheFallbackMovesExactlyIt) {
  test::TempDir dir;
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  Runtime rt(o);
  Pipeline p = auto_pipeline(planted_copy(dir), dir / "out");
  validate_with_plugins(p, rt);
  decide::Decision d = decide::decide(rt, p);
  ASSERT_EQ(d.groups.size(), 20u);

  std::vector<double> measured, proxy;
  for (const auto& s : d.sensitivity) {
    measured.push_back(s.kld.front());
    proxy.push_back(s.proxy);
  }
  EXPECT_EQ(d.groups[argmax(measured)].name, kPlanted);
  EXPECT_EQ(d.groups[argmax(proxy)].name, kPlanted);

  // `auto` never keeps a candidate it measured worse than another: the
  // lowest output error per group, unless a fixed candidate everywhere
  // measured better end to end (then the reason says so).
  for (const auto& g : d.groups)
    for (const auto& c : g.candidates) {
      if (c.ok && g.candidates[g.chosen].output_error > c.output_error) {
        EXPECT_NE(g.why.find("end to end"), std::string::npos) << g.name << " vs " << c.algorithm << ": " << g.why;
      }
    }

  // A target met by the planted group alone at bf16 and missed by all-int4:
  // the greedy must move exactly that group, once.
  const decide::Accuracy all_int4 = d.fallback.steps.front().accuracy;
  const size_t planted = argmax(measured);
  for (size_t i = 0; i < d.groups.size(); ++i)
    if (i != planted) decide::set_group_weights(*d.float_model, d.groups[i], d.groups[i].candidates[d.groups[i].chosen].weights);
  const double without_planted = d.evaluator->evaluate(*d.float_model).kld;
  ASSERT_LT(without_planted * 1.05, all_int4.kld);
  // Back to float weights for the fallback.
  auto reopened = Model::open(rt, p.model_path, ModelOptions{"cpu", true, p.calibration.tokenizer});
  for (size_t i = 0; i < d.groups.size(); ++i) {
    std::vector<std::vector<float>> w;
    for (int li : d.groups[i].linears) w.push_back(reopened->layer(d.groups[i].layer).linears[li].w);
    decide::set_group_weights(*d.float_model, d.groups[i], w);
  }
  AccuracySpec spec = p.accuracy;
  spec.max_increase = without_planted * 1.05;
  const auto ladder = std::vector<decide::Rung>{decide::Rung::Chosen, decide::Rung::Dense};
  const auto costs = decide::rung_costs(d.groups, ladder, d.sensitivity);
  for (auto method : {decide::BudgetMethod::Greedy, decide::BudgetMethod::Knapsack}) {
    decide::FallbackResult f =
        decide::fall_back(*d.float_model, d.groups, ladder, decide::allocation_path(costs, method),
                          decide::method_name(method), *d.evaluator, *d.evaluator, spec);
    EXPECT_TRUE(f.met) << f.method;
    EXPECT_EQ(f.steps.back().moved, "1 group up: " + kPlanted + " -> dense") << f.method;
    for (size_t i = 0; i < d.groups.size(); ++i)
      EXPECT_EQ(f.rung_of_group[i], i == planted ? 1 : 0) << f.method << " " << d.groups[i].name;
  }
}

}  // namespace test_planted_layer
