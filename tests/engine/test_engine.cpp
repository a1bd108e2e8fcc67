// test_engine.cpp: the inference engine on the real stories260K model (GGUF
// and its HF safetensors copy): greedy text, GGUF-vs-HF logits, KV-cache and
// batching consistency, perplexity sanity; plus the architecture description
// built from configurations of every supported model type.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "checkpoint/architecture.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";
const fs::path kHf = kShared / "models/stories260K-hf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

Model& gguf() {
  static auto m = Model::open(rt(), kGguf);
  return *m;
}

Model& hf() {
  static auto m = [] {
    ModelOptions o;
    o.tokenizer_from = kGguf;
    return Model::open(rt(), kHf, o);
  }();
  return *m;
}

Kv base_config(const std::string& type) {
  Kv c;
  c.set("architecture", KvValue::string(type));
  c.set("hidden_size", KvValue::integer(64));
  c.set("intermediate_size", KvValue::integer(96));
  c.set("num_hidden_layers", KvValue::integer(2));
  c.set("num_attention_heads", KvValue::integer(8));
  c.set("num_key_value_heads", KvValue::integer(2));
  c.set("vocab_size", KvValue::integer(100));
  return c;
}

}  // namespace

TEST(Architecture, DescribesLayersGroupsAndVariants) {
  auto a = Architecture::from_config(base_config("llama"));
  EXPECT_EQ(a.head_dim, 8);
  ASSERT_EQ(a.layers.size(), 2u);
  const auto& L = a.layers[1];
  ASSERT_EQ(L.linears.size(), 7u);
  EXPECT_EQ(L.linears[LayerDesc::kK].module, "model.layers.1.self_attn.k_proj");
  EXPECT_EQ(L.linears[LayerDesc::kK].out, 16);
  EXPECT_EQ(L.linears[LayerDesc::kDown].in, 96);
  EXPECT_EQ(L.groups[LayerDesc::kAttnIn].prev_norm, "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(L.groups[LayerDesc::kMlpIn].linears, (std::vector<int>{LayerDesc::kGate, LayerDesc::kUp}));
  EXPECT_FALSE(L.linears[LayerDesc::kQ].bias);
  EXPECT_EQ(a.all_linears().size(), 14u);

  auto q2 = Architecture::from_config(base_config("qwen2"));
  EXPECT_TRUE(q2.layers[0].linears[LayerDesc::kV].bias);
  EXPECT_FALSE(q2.layers[0].linears[LayerDesc::kO].bias);
  auto c3 = base_config("qwen3");
  c3.set("head_dim", KvValue::integer(16));
  auto q3 = Architecture::from_config(c3);
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.layers[0].k_norm, "model.layers.0.self_attn.k_norm.weight");
  EXPECT_EQ(q3.layers[0].linears[LayerDesc::kQ].out, 128);

  EXPECT_THROW(Architecture::from_config(base_config("gpt2")), Error);
  auto bad = base_config("llama");
  bad.set("num_key_value_heads", KvValue::integer(3));
  EXPECT_THROW(Architecture::from_config(bad), Error);
}

TEST(Architecture, Llama3RopeFactorsFollowTheReferenceFormula) {
  auto c = base_config("llama");
  c.set("hidden_size", KvValue::integer(1024));
  c.set("num_attention_heads", KvValue::integer(8));  // head_dim 128
  c.set("rope_theta", KvValue::number(500000.0));
  c.set("rope_scaling.type", KvValue::string("llama3"));
  c.set("rope_scaling.factor", KvValue::number(8.0));
  c.set("rope_scaling.low_freq_factor", KvValue::number(1.0));
  c.set("rope_scaling.high_freq_factor", KvValue::number(4.0));
  c.set("rope_scaling.original_max_position_embeddings", KvValue::integer(8192));
  auto a = Architecture::from_config(c);
  auto f = a.llama3_freq_factors();
  ASSERT_EQ(f.size(), 64u);
  for (size_t i = 0; i < f.size(); ++i) {
    double inv = std::pow(500000.0, -2.0 * i / 128.0), wl = 2 * M_PI / inv;
    double want = wl < 8192 / 4.0 ? 1.0 : wl > 8192 / 1.0 ? 8.0 : 1.0 / ((1 - (8192 / wl - 1) / 3) / 8 + (8192 / wl - 1) / 3);
    EXPECT_NEAR(f[i], want, 1e-5 * want) << i;
  }
  EXPECT_EQ(f.front(), 1.0f);
  EXPECT_EQ(f.back(), 8.0f);
  c.set("rope_scaling.type", KvValue::string("linear"));
  c.set("rope_scaling.factor", KvValue::number(4.0));
  EXPECT_DOUBLE_EQ(Architecture::from_config(c).rope_position_scale(), 0.25);
}

TEST(Engine, Stories260KGreedyFromBos) {
  GenerateOptions o;
  o.n_tokens = 16;
  auto r = generate(gguf(), "", o);
  EXPECT_EQ(r.full_text.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.full_text;
}

// ModelOptions::tokenizer_first builds the tokenizer at open: stories260K-hf
// has no vocabulary, so open then fails with tokenizer()'s NOT_FOUND naming
// --tokenizer (before any weight is read); without the option it opens, and
// with a vocabulary from elsewhere the tokenizer is there at once.
TEST(Engine, TokenizerFirstBuildsTheTokenizerAtOpen) {
  ModelOptions first;
  first.tokenizer_first = true;
  try {
    (void)Model::open(rt(), kHf, first);
    FAIL() << "a checkpoint without a vocabulary opened with tokenizer_first";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_NOT_FOUND) << e.what();
    EXPECT_NE(std::string(e.what()).find("--tokenizer"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW((void)Model::open(rt(), kHf, ModelOptions{}));
  first.tokenizer_from = kGguf;
  auto m = Model::open(rt(), kHf, first);
  EXPECT_EQ(m->tokenizer().bos_id(), gguf().tokenizer().bos_id());
}

TEST(Engine, TokenizerFirstDropsTheVocabularyFromTheConfig) {
  // Built at open, the tokenizer is the only reader of the config's
  // vocabulary arrays: they go (Checkpoint::drop_vocabulary), the small
  // tokenizer keys and the model's own stay, and it still tokenizes as a
  // model opened the plain way.
  ASSERT_NE(gguf().config().find("tokenizer.tokens"), nullptr);
  ModelOptions first;
  first.tokenizer_first = true;
  auto m = Model::open(rt(), kGguf, first);
  for (const auto& [key, v] : m->config().values) {
    const bool array = v.type() == XQ_VALUE_STRING_ARRAY || v.type() == XQ_VALUE_INT_ARRAY || v.type() == XQ_VALUE_FLOAT_ARRAY;
    EXPECT_FALSE(key.rfind("tokenizer.", 0) == 0 && array) << key << " kept";
  }
  EXPECT_NE(m->config().find("tokenizer.model"), nullptr);
  EXPECT_EQ(m->config().get_int("vocab_size", 0), gguf().config().get_int("vocab_size", -1));
  const std::string text = "Once upon a time, a little fox";
  EXPECT_EQ(m->tokenizer().encode(text), gguf().tokenizer().encode(text));
}

TEST(Engine, GgufAndHfGiveTheSameLogits) {
  // The greedy continuation from BOS (a real sequence), scored by both copies.
  GenerateOptions o;
  o.n_tokens = 40;
  o.stop_at_eog = false;
  int32_t bos = gguf().tokenizer().bos_id();
  auto g = generate_tokens(gguf(), {bos}, o);
  std::vector<int32_t> ids = {bos};
  ids.insert(ids.end(), g.tokens.begin(), g.tokens.end());
  KvCache c1(gguf().arch(), 64), c2(hf().arch(), 64);
  auto a = gguf().forward({{&c1, ids.data(), (int64_t)ids.size(), true}});
  auto b = hf().forward({{&c2, ids.data(), (int64_t)ids.size(), true}});
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (double)std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, 1e-4);
  std::printf("GGUF vs HF max |logit diff| over %zu tokens x %lld vocab: %.3g\n", ids.size(),
              (long long)gguf().arch().vocab, worst);
  // Same greedy tokens from the HF copy.
  auto h = generate_tokens(hf(), {bos}, o);
  EXPECT_EQ(h.tokens, g.tokens);
}

TEST(Engine, ForwardGreedyReturnsTheArgmaxOfEachLogitsRow) {
  Model& m = gguf();
  std::vector<int32_t> s1 = {1, 403, 407, 261, 378, 53}, s2 = {1, 68, 306};
  const int64_t V = m.arch().vocab;
  KvCache a1(m.arch(), 16), a2(m.arch(), 16), g1(m.arch(), 16), g2(m.arch(), 16);
  auto logits = m.forward({{&a1, s1.data(), (int64_t)s1.size(), false}, {&a2, s2.data(), (int64_t)s2.size(), true}});
  auto ids = m.forward_greedy({{&g1, s1.data(), (int64_t)s1.size(), false}, {&g2, s2.data(), (int64_t)s2.size(), true}});
  ASSERT_EQ(ids.size(), 1 + s2.size());
  for (size_t r = 0; r < ids.size(); ++r) {
    const float* row = logits.data() + r * V;
    EXPECT_EQ(ids[r], std::max_element(row, row + V) - row) << "row " << r;
  }
  EXPECT_EQ(g1.size(), (int64_t)s1.size());  // the caches advanced as forward's do
}

TEST(Engine, IncrementalDecodeAndBatchingMatchOnePass) {
  Model& m = gguf();
  std::vector<int32_t> s1 = {1, 403, 407, 261, 378, 53, 333, 407, 84, 291, 270, 313};
  std::vector<int32_t> s2 = {1, 68, 306, 430, 384, 267};
  const int64_t V = m.arch().vocab;
  KvCache full(m.arch(), 32);
  auto ref = m.forward({{&full, s1.data(), (int64_t)s1.size(), true}});
  // Prefill 5, then one token at a time.
  KvCache inc(m.arch(), 32);
  auto l = m.forward({{&inc, s1.data(), 5, true}});
  std::vector<float> got(l);
  for (size_t t = 5; t < s1.size(); ++t) {
    auto step = m.forward({{&inc, &s1[t], 1, false}});
    got.insert(got.end(), step.begin(), step.end());
  }
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-4) << "row " << i / V;
  // Two sequences in one batch: each matches its own single run.
  KvCache b1(m.arch(), 32), b2(m.arch(), 32), solo(m.arch(), 32);
  auto both = m.forward({{&b1, s1.data(), (int64_t)s1.size(), false}, {&b2, s2.data(), (int64_t)s2.size(), true}});
  auto only2 = m.forward({{&solo, s2.data(), (int64_t)s2.size(), true}});
  ASSERT_EQ(both.size(), (1 + s2.size()) * V);
  for (int64_t i = 0; i < V; ++i) ASSERT_NEAR(both[i], ref[(s1.size() - 1) * V + i], 1e-4);
  for (size_t i = 0; i < only2.size(); ++i) ASSERT_NEAR(both[V + i], only2[i], 1e-4);
  // A full cache is an error, not an overflow.
  EXPECT_THROW(m.forward({{&full, s1.data(), 30, false}}), Error);
}

TEST(Engine, PerplexityProtocolAndSanity) {
  Model& m = gguf();
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  auto ids = eval_tokens(m, ss.str(), 2000);
  ASSERT_EQ(ids.size(), 2000u);
  EXPECT_EQ(ids[0], m.tokenizer().bos_id());
  EXPECT_NE(ids[1], m.tokenizer().bos_id());
  auto r = perplexity(m, ids, 512);
  EXPECT_EQ(r.windows, 4u);
  EXPECT_EQ(r.tokens_scored, 3u * 511 + (2000 - 1536 - 1));
  EXPECT_TRUE(std::isfinite(r.perplexity));
  // A 260K-parameter TinyStories model: far better than uniform (512), worse than perfect.
  EXPECT_GT(r.perplexity, 2.0);
  EXPECT_LT(r.perplexity, 12.0);
  // Direct check of the protocol on the first window: mean NLL of tokens 1..511.
  KvCache c(m.arch(), 512);
  auto lg = m.forward({{&c, ids.data(), 512, true}});
  double s = 0;
  for (int j = 0; j < 511; ++j) s += token_nll(lg.data() + (size_t)j * m.arch().vocab, m.arch().vocab, ids[j + 1]);
  auto r1 = perplexity(m, std::vector<int32_t>(ids.begin(), ids.begin() + 512), 512);
  EXPECT_NEAR(r1.mean_nll, s / 511, 1e-9);
  std::printf("stories260K perplexity (first 2000 tokens, ctx 512): %.4f\n", r.perplexity);
}

// ModelOptions::weight_memory_limit (engine/weight_fit.cpp): a model whose
// layers need more is refused once layer 0 is loaded, with the sizes and the
// limit named; one at the limit of its whole weight bytes opens and runs as
// without the limit.
TEST(Engine, WeightMemoryLimitRefusesAModelWhoseLayersDoNotFit) {
  const uint64_t all = gguf().weight_bytes();
  ModelOptions tight;
  tight.weight_memory_limit = all / 2;  // five equal layers hold most of it
  try {
    Model::open(rt(), kGguf, tight);
    FAIL() << "a model above the weight memory limit opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_OUT_OF_MEMORY);
    const std::string what = e.what();
    for (const char* part : {"does not fit", "its 5 layers need at least", "kernel provider 'cpu'",
                             "as layer 0 loaded", "the weight memory limit is", "nothing was kept"})
      EXPECT_NE(what.find(part), std::string::npos) << part << " in: " << what;
  }
  ModelOptions enough;
  enough.weight_memory_limit = all;
  auto m = Model::open(rt(), kGguf, enough);
  GenerateOptions o;
  o.n_tokens = 16;
  EXPECT_EQ(generate(*m, "", o).full_text, generate(gguf(), "", o).full_text);
}
