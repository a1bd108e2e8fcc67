// test_gguf_moe_writer.cpp: the `gguf` writer on Mixture-of-Experts models.
//
// Tiny random qwen3_moe, qwen2_moe (shared expert) and Mixtral checkpoints
// (tests/support/moe_checkpoint.hpp, HF per-expert names) are written as GGUF
// with llama.cpp's stacked ffn_{gate,up,down}_exps tensors and read back by
// our GGUF loader (which splits the stacks per expert again):
// - F32: the logits equal the source's bit for bit, the metadata and shapes
//   are the ones llama.cpp's qwen3moe / qwen2moe / llama loaders read;
// - Q8_0 from int8 sym g32 RTN codes (through `xquant convert`): every expert
//   is reported exact, its weights equal the compressed-tensors checkpoint's
//   canonical dequantization, the logits agree within 1e-4 relative;
// - Q4_0 from the same int8 codes requantizes every expert (reported as
//   such, relative RMS error below 15%);
// - a layer whose experts are not quantized alike, and a model mixing dense
//   and MoE layers, are refused by name and leave no file.
#include "gguf_file.hpp"
#include "gguf_types.hpp"
#include "moe_checkpoint.hpp"
#include "subprocess.hpp"
#include "test_files.hpp"
#include "test_runtime.hpp"

#include "checkpoint/checkpoint.hpp"
#include "engine/model.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

using namespace xquant;
namespace fs = std::filesystem;
namespace gg = xquant::gguf;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kVocab = kShared / "models/stories260K/stories260K.gguf";  // 512 tokens, as the configs below

test::Cfg config(const std::string& type) {
  test::Cfg c{type};
  c.hidden = 64;
  c.inter = 64;
  c.moe_inter = 32;  // whole 32-blocks: the codes convert without a second rounding
  c.experts = 4;
  c.top_k = 2;
  c.layers = 2;
  c.heads = 4;
  c.kv = 2;
  c.hd = 16;
  c.vocab = 512;
  c.norm_topk = type != "qwen2_moe";  // as llama.cpp's graphs fix it per architecture
  if (type == "qwen2_moe") c.shared = 32;
  return c;
}

Runtime& rt() { return test::quiet_runtime(); }

test::ProcessResult xquant(std::vector<std::string> args) { return test::run_xquant(std::move(args)); }

// dequantize_all: the cpu provider runs few-row GGUF blocks through integer
// kernels with int8 activations (docs/engine.md), and each expert sees few
// rows; dequantized, both files compute in float.
std::vector<float> logits(const fs::path& model) {
  ModelOptions o;
  o.dequantize_all = true;
  auto m = Model::open(rt(), model, o);
  std::vector<int32_t> ids = {1, 37, 400, 9, 255, 81, 3, 511};
  KvCache cache(m->arch(), 16);
  return m->forward({{&cache, ids.data(), static_cast<int64_t>(ids.size()), true}});
}

const gg::TensorInfo* find_tensor(const gg::File& f, const std::string& name) {
  for (const auto& t : f.tensors())
    if (t.name == name) return &t;
  return nullptr;
}

std::string gguf_arch(const std::string& type) {
  return type == "qwen3_moe" ? "qwen3moe" : type == "qwen2_moe" ? "qwen2moe" : "llama";
}

class GgufMoeWriter : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    cfg_ = config(GetParam());
    src_ = test::write_checkpoint(cfg_, test::make_weights(cfg_, 7), GetParam() + "-gguf-writer");
  }
  fs::path out(const std::string& name) const { return dir_ / (GetParam() + "-" + name); }

  test::Cfg cfg_;
  fs::path src_;
  test::TempDir dir_{"xq-gguf-moe"};
};

TEST_P(GgufMoeWriter, F32StacksTheExpertsAndComputesTheSameLogits) {
  const fs::path gguf = out("f32.gguf");
  auto r = xquant({"convert", "--model", src_.string(), "--out", gguf.string(), "--format", "gguf", "--param",
                   "type=F32,tokenizer=" + kVocab.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  gg::File f(gguf.string());
  const std::string A = gguf_arch(GetParam());
  EXPECT_EQ(f.find("general.architecture")->s, A);
  EXPECT_EQ(f.find(A + ".expert_count")->i, cfg_.experts);
  EXPECT_EQ(f.find(A + ".expert_used_count")->i, cfg_.top_k);
  if (A != "llama") {
    EXPECT_EQ(f.find(A + ".expert_feed_forward_length")->i, cfg_.moe_inter);
  }
  if (A == "qwen2moe") {
    EXPECT_EQ(f.find(A + ".expert_shared_feed_forward_length")->i, cfg_.shared);
  }
  const int64_t I = GetParam() == "mixtral" ? cfg_.inter : cfg_.moe_inter;
  for (int64_t l = 0; l < cfg_.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    // GGUF order, fastest first: {cols, rows, experts} (llama-model.cpp's create_tensor shapes).
    const std::map<std::string, std::vector<int64_t>> shapes = {
        {b + "ffn_gate_exps.weight", {cfg_.hidden, I, cfg_.experts}},
        {b + "ffn_up_exps.weight", {cfg_.hidden, I, cfg_.experts}},
        {b + "ffn_down_exps.weight", {I, cfg_.hidden, cfg_.experts}},
        {b + "ffn_gate_inp.weight", {cfg_.hidden, cfg_.experts}}};
    for (const auto& [name, ne] : shapes) {
      const gg::TensorInfo* t = find_tensor(f, name);
      ASSERT_TRUE(t) << name;
      EXPECT_EQ(std::vector<int64_t>(t->ne, t->ne + t->n_dims), ne) << name;
      EXPECT_EQ(t->type, gg::kF32) << name;
    }
    if (cfg_.shared) {
      const gg::TensorInfo* t = find_tensor(f, b + "ffn_gate_inp_shexp.weight");
      ASSERT_TRUE(t);
      EXPECT_EQ(t->n_dims, 1u);  // qwen2moe's {n_embd}
      EXPECT_TRUE(find_tensor(f, b + "ffn_down_shexp.weight"));
    }
  }

  const std::vector<float> a = logits(src_), b = logits(gguf);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;
}

TEST_P(GgufMoeWriter, Q8_0FromInt8CodesIsExactPerExpert) {
  const fs::path ct = out("int8-ct"), gguf = out("q8_0.gguf");
  auto r = xquant({"quantize", "--model", src_.string(), "--out", ct.string(), "--algorithm", "rtn", "--bits", "8",
                   "--group-size", "32", "--sym", "--scale-dtype", "float16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = xquant({"convert", "--model", ct.string(), "--out", gguf.string(), "--format", "gguf", "--param",
              "type=Q8_0,exact=true,tokenizer=" + kVocab.string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  // The experts (3 per expert per layer) are in the report one by one.
  int experts_exact = 0;
  for (const auto& t : report["tensors"])
    if (t["module"].get<std::string>().find("experts.") != std::string::npos) {
      EXPECT_TRUE(t["exact"].get<bool>()) << t.dump();
      experts_exact += t["exact"].get<bool>();
    }
  EXPECT_EQ(experts_exact, 3 * cfg_.experts * cfg_.layers);
  EXPECT_EQ(report["exact"], report["linears"]) << report.dump(1);
  gg::File f(gguf.string());
  EXPECT_EQ(find_tensor(f, "blk.0.ffn_up_exps.weight")->type, gg::kQ8_0);
  EXPECT_EQ(find_tensor(f, "blk.1.ffn_down_exps.weight")->type, gg::kQ8_0);

  const std::vector<float> a = logits(ct), b = logits(gguf);
  ASSERT_EQ(a.size(), b.size());
  double worst = 0, scale = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(a[i])));
  }
  EXPECT_LE(worst, 1e-4 * scale);
}

// 8-bit codes do not fit Q4_0's 4-bit grid: every expert is requantized
// alike, within 4-bit error, and reported so.
TEST_P(GgufMoeWriter, Q4_0FromInt8CodesRequantizesEveryExpertWithinItsError) {
  const fs::path ct = out("int8-ct"), gguf = out("q4_0.gguf");
  auto r = xquant({"quantize", "--model", src_.string(), "--out", ct.string(), "--algorithm", "rtn", "--bits", "8",
                   "--group-size", "32", "--sym"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = xquant({"convert", "--model", ct.string(), "--out", gguf.string(), "--format", "gguf", "--param",
              "type=Q4_0,tokenizer=" + kVocab.string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  int experts = 0;
  for (const auto& t : report["tensors"]) {
    if (t["module"].get<std::string>().find("experts.") == std::string::npos) continue;
    ++experts;
    EXPECT_FALSE(t["exact"].get<bool>()) << t.dump();
    EXPECT_GT(t["rel_rms_error"].get<double>(), 0) << t.dump();
    EXPECT_LT(t["rel_rms_error"].get<double>(), 0.15) << t.dump();  // 4-bit, 32-column blocks
  }
  EXPECT_EQ(experts, 3 * cfg_.experts * cfg_.layers);
  gg::File f(gguf.string());
  EXPECT_EQ(find_tensor(f, "blk.1.ffn_gate_exps.weight")->type, gg::kQ4_0);
  EXPECT_EQ(find_tensor(f, "blk.1.ffn_down_exps.weight")->type, gg::kQ4_0);
}

TEST_P(GgufMoeWriter, ExpertsQuantizedUnalikeAreRefusedAndLeaveNoFile) {
  const fs::path ct = out("mixed-ct"), gguf = out("mixed.gguf");
  // Expert 3 stays float: its layer's stack cannot have one type.
  auto r = xquant({"quantize", "--model", src_.string(), "--out", ct.string(), "--algorithm", "rtn", "--bits", "8",
                   "--group-size", "32", "--sym", "--scale-dtype", "float16", "--ignore",
                   "lm_head,re:.*mlp\\.gate$,re:.*block_sparse_moe\\.gate$,re:.*shared_expert_gate$,re:.*experts\\.3\\..*"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = xquant({"convert", "--model", ct.string(), "--out", gguf.string(), "--format", "gguf", "--param",
              "tokenizer=" + kVocab.string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("ffn_"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("one type"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(gguf));
}

// llama.cpp's qwen3moe / qwen2moe / llama graphs make every layer MoE.
TEST_P(GgufMoeWriter, MixedDenseAndMoeLayersAreRefusedAndLeaveNoFile) {
  nlohmann::json cfg = nlohmann::json::parse(test::read_file(src_ / "config.json"));
  cfg["mlp_only_layers"] = {1};
  test::write_file(src_ / "config.json", cfg.dump());
  const fs::path gguf = out("mixed-layers.gguf");
  auto r = xquant({"convert", "--model", src_.string(), "--out", gguf.string(), "--format", "gguf", "--param",
                   "type=F32,tokenizer=" + kVocab.string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("mixes dense and MoE layers"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(gguf));
}

// A norm_topk_prob unlike the one llama.cpp's graph fixes is written (our
// loader reads expert_weights_norm) with a warning that llama.cpp ignores it.
TEST_P(GgufMoeWriter, TopKRenormalisationLlamaCppIgnoresIsWrittenWithAWarning) {
  nlohmann::json cfg = nlohmann::json::parse(test::read_file(src_ / "config.json"));
  cfg["norm_topk_prob"] = !cfg["norm_topk_prob"].get<bool>();
  test::write_file(src_ / "config.json", cfg.dump());
  const fs::path gguf = out("norm.gguf");
  auto r = xquant({"convert", "--model", src_.string(), "--out", gguf.string(), "--format", "gguf", "--param",
                   "type=F32,tokenizer=" + kVocab.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE((r.out + r.err).find("llama.cpp will not compute this model as trained"), std::string::npos)
      << r.out << r.err;
  gg::File f(gguf.string());
  EXPECT_EQ(f.find(gguf_arch(GetParam()) + ".expert_weights_norm")->i, cfg["norm_topk_prob"].get<bool>() ? 1 : 0);
  const std::vector<float> a = logits(src_), b = logits(gguf);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Architectures, GgufMoeWriter, ::testing::Values("qwen3_moe", "qwen2_moe", "mixtral"));

}  // namespace
