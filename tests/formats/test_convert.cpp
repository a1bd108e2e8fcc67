// test_convert.cpp: `xquant convert` between compressed-tensors, AWQ and
// GPTQ on a real model.
//
// stories260K-hf's attention projections are quantized (4-bit, groups of 32)
// by rtn, gptq (act-order) and awq to compressed-tensors with `xquant run`,
// converted to awq / gptq (v1 and v2) and back, and every converted
// checkpoint must give the same canonical tensors (codes, scales, zero
// points, g_idx, bit for bit) and the same logits as the compressed-tensors
// copy. The MLP stays dense: its width 172 is not a multiple of 8, which the
// AWQ/GPTQ layouts need (convert refuses it, tested below).
#include "scoped_env.hpp"
#include "test_runtime.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "checkpoint/checkpoint.hpp"

#include "stories_checks.hpp"
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <utility>

namespace fs = std::filesystem;
using namespace xquant;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kModel = kShared / "models" / "stories260K-hf";
const fs::path kVocab = kShared / "models" / "stories260K" / "stories260K.gguf";
const fs::path kText = kShared / "data" / "tinystories" / "tinystories_val.subset.txt";

Runtime& runtime() { return test::quiet_runtime(); }

test::ProcessResult run_cli(std::vector<std::string> args) { return test::run_xquant(std::move(args)); }

class Convert : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("xq-convert");
    // algorithm, symmetric, params
    const std::vector<std::tuple<std::string, bool, std::string>> runs = {
        {"rtn", true, ""}, {"rtn", false, ""}, {"gptq", false, "params: {act_order: true}"}, {"awq", false, ""}};
    for (const auto& [alg, sym, params] : runs) {
      const std::string name = alg + (sym ? "-sym" : "-asym");
      std::string yaml = "model: {path: " + kModel.string() + "}\nquantize:\n  - targets: [\"re:.*self_attn\\\\..*_proj$\"]\n" +
                         "    algorithm: " + alg + "\n" + (params.empty() ? "" : "    " + params + "\n") +
                         "    weights: {bits: 4, symmetric: " + (sym ? "true" : "false") + ", group_size: 32}\n" +
                         "ignore: [\"re:.*mlp\\\\..*\", lm_head]\n" + "calibration: {text: " + kText.string() +
                         ", samples: 4, seq_len: 64, tokenizer: " + kVocab.string() + "}\n" +
                         "output: {format: compressed-tensors, path: " + (*dir_ / (name + "-ct")).string() + "}\n";
      test::write_file(*dir_ / (name + ".yaml"), yaml);
      auto r = run_cli({"run", (*dir_ / (name + ".yaml")).string()});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path path(const std::string& name) { return *dir_ / name; }

  // Converts and returns the JSON report.
  static nlohmann::json convert(const std::string& in, const std::string& out, const std::string& format,
                                const std::string& param = "") {
    std::vector<std::string> args = {"convert", "--model", path(in).string(), "--out", path(out).string(),
                                     "--format", format, "--json"};
    if (!param.empty()) args.insert(args.end(), {"--param", param});
    auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }

  static test::TempDir* dir_;
};
test::TempDir* Convert::dir_ = nullptr;

void expect_same_canonical(const fs::path& a_path, const fs::path& b_path) {
  auto a = Checkpoint::open(runtime(), a_path), b = Checkpoint::open(runtime(), b_path);
  int n = 0;
  for (int layer = 0; layer < 5; ++layer)
    for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      const std::string m = "model.layers." + std::to_string(layer) + ".self_attn." + p;
      auto qa = a->read_module(m), qb = b->read_module(m);
      ASSERT_TRUE(qa && qb) << m;
      const xq_quant_tensor &x = qa->get(), &y = qb->get();
      ASSERT_EQ(x.bits, y.bits) << m;
      ASSERT_EQ(x.symmetric, y.symmetric) << m;
      ASSERT_EQ(x.strategy, y.strategy) << m;
      ASSERT_EQ(x.rows, y.rows) << m;
      ASSERT_EQ(x.cols, y.cols) << m;
      ASSERT_EQ(x.group_size, y.group_size) << m;
      ASSERT_EQ(x.n_groups, y.n_groups) << m;
      ASSERT_EQ(x.scale_dtype, y.scale_dtype) << m;
      const size_t ns = static_cast<size_t>(x.rows * x.n_groups);
      EXPECT_EQ(std::memcmp(x.codes, y.codes, static_cast<size_t>(x.rows * x.cols)), 0) << m;
      EXPECT_EQ(std::memcmp(x.scales, y.scales, ns * 4), 0) << m;
      ASSERT_EQ(x.zero_points == nullptr, y.zero_points == nullptr) << m;
      if (x.zero_points) {
        EXPECT_EQ(std::memcmp(x.zero_points, y.zero_points, ns), 0) << m;
      }
      ASSERT_EQ(x.g_idx == nullptr, y.g_idx == nullptr) << m;
      if (x.g_idx) {
        EXPECT_EQ(std::memcmp(x.g_idx, y.g_idx, static_cast<size_t>(x.cols) * 4), 0) << m;
      }
      ++n;
    }
  EXPECT_EQ(n, 20);
}

std::vector<float> logits(const fs::path& p) {
  auto model = Model::open(runtime(), p);
  return test::stories_prompt_logits(*model);
}

void expect_same_logits(const fs::path& a, const fs::path& b) {
  auto la = logits(a), lb = logits(b);
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * 4), 0) << a << " vs " << b;
}

TEST_F(Convert, AwqAndGptqHoldTheCompressedTensorsQuantizationExactly) {
  for (const std::string name : {"rtn-sym", "rtn-asym", "awq-asym", "gptq-asym"}) {
    std::vector<std::pair<std::string, std::string>> outs = {{"gptq", ""}, {"gptq", "checkpoint_format=gptq_v2"}};
    if (name != "gptq-asym") outs.push_back({"awq", ""});  // act-order: AWQ has no g_idx
    for (const auto& [format, param] : outs) {
      SCOPED_TRACE(name + " -> " + format + " " + param);
      const std::string out = name + "-" + format + (param.empty() ? "" : "-v2");
      auto report = convert(name + "-ct", out, format, param);
      EXPECT_EQ(report["linears"], 20);
      EXPECT_EQ(report["exact"], 20);
      expect_same_canonical(path(name + "-ct"), path(out));
      expect_same_logits(path(name + "-ct"), path(out));
      // And back: the compressed-tensors copy of the converted checkpoint.
      auto back = convert(out, out + "-ct", "compressed-tensors");
      EXPECT_EQ(back["exact"], 20);
      expect_same_canonical(path(name + "-ct"), path(out + "-ct"));
    }
  }
  auto qc = nlohmann::json::parse(test::read_file(path("gptq-asym-gptq") / "config.json"))["quantization_config"];
  EXPECT_EQ(qc["desc_act"], true);
  EXPECT_EQ(qc["sym"], false);
  qc = nlohmann::json::parse(test::read_file(path("rtn-sym-awq") / "config.json"))["quantization_config"];
  EXPECT_EQ(qc["modules_to_not_convert"].size(), 16u);  // 15 MLP Linears + lm_head
}

// GPTQ's act-order gives Linears that read one input (q, k, v here) the same
// column permutation, which the engine relies on to stack them into one
// weight on a device (engine/fuse.cpp); o_proj reads another input. Checked
// on the written compressed-tensors file, every layer.
TEST_F(Convert, GptqActOrderGivesTheLinearsOfOneInputOneGIdx) {
  auto cp = Checkpoint::open(runtime(), path("gptq-asym-ct"));
  const int layers = 5;  // stories260K
  for (int l = 0; l < layers; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const std::string at = "model.layers." + std::to_string(l) + ".self_attn.";
    auto q = cp->read_module(at + "q_proj"), k = cp->read_module(at + "k_proj"), v = cp->read_module(at + "v_proj"),
         o = cp->read_module(at + "o_proj");
    ASSERT_TRUE(q && k && v && o);
    ASSERT_NE(q->get().g_idx, nullptr);
    const auto g = [](const std::optional<QuantTensor>& t) {
      return std::vector<int32_t>(t->get().g_idx, t->get().g_idx + t->get().cols);
    };
    EXPECT_EQ(g(k), g(q));
    EXPECT_EQ(g(v), g(q));
    std::vector<int32_t> plain(q->get().cols);
    for (size_t c = 0; c < plain.size(); ++c) plain[c] = static_cast<int32_t>(c / 32);
    EXPECT_NE(g(q), plain) << "act-order left the columns in order: this case cannot tell";
    ASSERT_NE(o->get().g_idx, nullptr);
  }
  // So the engine stacks q|k|v (on the cpu provider too: foreign_blocks.cpp's
  // canonical stacking), and the stacked layers follow each Linear's own
  // dequantized weight (dequantize_all: nothing stacked, F32) within the cpu
  // provider's int8 activation blocks (qgemv_rows.hpp): 0.0068 here, the same
  // value to six digits as with q, k and v one by one before act-order parts
  // stacked. A wrong column order would be off by the logits' own size.
  auto stacked = Model::open(runtime(), path("gptq-asym-ct"));
  for (int l = 0; l < layers; ++l) EXPECT_NE(stacked->layer(l).qkv.desc, nullptr) << "layer " << l;
  ModelOptions one_by_one;
  one_by_one.dequantize_all = true;
  auto dense = Model::open(runtime(), path("gptq-asym-ct"), one_by_one);
  EXPECT_EQ(dense->layer(0).qkv.desc, nullptr);
  const auto ls = test::stories_prompt_logits(*stacked), ld = test::stories_prompt_logits(*dense);
  ASSERT_EQ(ls.size(), ld.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ls.size(); ++i) num += (ls[i] - ld[i]) * double(ls[i] - ld[i]), den += ld[i] * double(ld[i]);
  EXPECT_LE(std::sqrt(num / den), 2e-2);
}

TEST_F(Convert, DenseOutputIsTheDequantizedWeights) {
  auto report = convert("awq-asym-ct", "awq-asym-f32", "f32");
  EXPECT_EQ(report["exact"], 20) << report.dump(1);
  report = convert("awq-asym-ct", "awq-asym-f16", "f16");
  ASSERT_EQ(report["tensors"].size(), 20u);
  for (const auto& t : report["tensors"]) {
    EXPECT_EQ(t["result"], "dense F16");
    EXPECT_LT(t["max_abs_error"].get<double>(), 1e-2);
  }
}

TEST_F(Convert, RefusesWhatTheTargetCannotHoldAndWritesNothing) {
  auto r = run_cli({"convert", "--model", path("gptq-asym-ct").string(), "--out", path("refused").string(), "--format",
                   "awq"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cannot be stored in AWQ: act-order (g_idx)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model.layers.0.self_attn"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("refused")));
  r = run_cli({"convert", "--model", path("rtn-sym-ct").string(), "--out", path("refused").string(), "--format",
              "gptq", "--param", "checkpoint_format=gptq_v3"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("checkpoint_format must be gptq or gptq_v2"), std::string::npos) << r.err;
  r = run_cli({"convert", "--model", path("rtn-sym-ct").string(), "--out", path("refused").string(), "--format",
              "gptq", "--param", "bits=4"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("'gptq' has no parameter 'bits'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("refused")));
}

// A writer parameter whose value is itself a comma list (xq's `layouts`)
// goes through --param beside others: a piece without '=' continues the
// value before it.
TEST_F(Convert, AParamValueMayHoldCommas) {
  const auto has_packed = [](const fs::path& file, const std::string& layout) {
    auto cp = Checkpoint::open(runtime(), file);
    auto desc = sdk::make_struct<xq_quant_tensor>();
    auto view = sdk::make_struct<xq_tensor_view>();
    return cp->read_packed(cp->require("model.layers.0.self_attn.q_proj.weight"), layout, desc, view);
  };
  convert("rtn-sym-ct", "both.xq", "xq", "layouts=cuda,cpu,alignment=4096");
  EXPECT_TRUE(has_packed(path("both.xq"), "cpu.int-blocks.v1"));
  EXPECT_TRUE(has_packed(path("both.xq"), "cuda.w4a16-mma.v1"));
  convert("rtn-sym-ct", "cpu.xq", "xq", "alignment=4096,layouts=cpu");
  EXPECT_TRUE(has_packed(path("cpu.xq"), "cpu.int-blocks.v1"));
  EXPECT_FALSE(has_packed(path("cpu.xq"), "cuda.w4a16-mma.v1"));
  // A list that starts without KEY= is still refused, naming the piece.
  auto r = run_cli({"convert", "--model", path("rtn-sym-ct").string(), "--out", path("refused.xq").string(), "--format",
                    "xq", "--param", "cpu,layouts=cuda"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--param expects KEY=VALUE[,KEY=VALUE...], got 'cpu'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("refused.xq")));
}

TEST_F(Convert, InspectShowsTheAwqAndGptqSpecifics) {
  convert("gptq-asym-ct", "inspect-gptq", "gptq");
  auto r = run_cli({"inspect", path("inspect-gptq").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("GPTQ v1: 4-bit, group_size 32, sym false, desc_act true"), std::string::npos) << r.out;
  convert("rtn-sym-ct", "inspect-awq", "awq");
  r = run_cli({"inspect", path("inspect-awq").string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["quantization_format"], "awq");
  EXPECT_NE(j["format_specifics"].get<std::string>().find("nibble order 0,2,4,6,1,3,5,7"), std::string::npos);
}

// A GGUF Q4_0 weight is symmetric 4-bit groups of 32 with an F16 scale: AWQ
// and GPTQ hold it exactly, so the converted model computes the same logits.
TEST_F(Convert, GgufQ4_0ConvertsToAwqAndGptqExactly) {
  // GGUF blocks and packed AWQ/GPTQ codes give the same logits bit for bit
  // only with float prefill on both (the default integer prefill takes
  // int8 activations for packed codes, not for GGUF blocks).
  const xquant::test::FloatPrefill float_prefill;
  auto r = run_cli({"convert", "--model", path("rtn-sym-ct").string(), "--out", path("q4_0.gguf").string(), "--format",
                    "gguf", "--param", "type=Q4_0,tokenizer=" + kVocab.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string format : {"awq", "gptq"}) {
    auto report = convert("q4_0.gguf", "q4_0-" + format, format);
    EXPECT_EQ(report["linears"], 20);
    EXPECT_EQ(report["exact"], 20) << report.dump(1);
    expect_same_logits(path("q4_0.gguf"), path("q4_0-" + format));
  }
}

}  // namespace
