// test_gguf_loader.cpp: the `gguf` loader plugin end to end through
// Checkpoint: the real stories260K GGUF against its HF safetensors copy (every
// tensor bit-identical after the Q/K un-permutation, docs/references.md), hand-built
// llama/qwen2 files with every block type (names, shapes, permutation of
// quantized rows, read_quantized, F16/BF16 reads, config keys), and malformed
// files, each of which must fail with a message naming file, field, offset.
#include "block_encoders.hpp"
#include "gguf_builder.hpp"
#include "gguf_types.hpp"

#include "core/error.hpp"
#include "core/runtime.hpp"
#include "checkpoint/checkpoint.hpp"

#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

using namespace gguf_test;
namespace fs = std::filesystem;

namespace {

xquant::Runtime& runtime() {
  static xquant::Runtime rt(xquant::RuntimeOptions{});
  return rt;
}

const std::string kShared = XQUANT_SHARED_DIR;

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

fs::path temp_dir() {
  static fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("xquant-gguf-test-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// Removes the temporary files when the run ends.
struct CleanTemp : ::testing::Environment {
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(temp_dir(), ec);
  }
};
const auto* const kCleanTemp = ::testing::AddGlobalTestEnvironment(new CleanTemp);

std::string write_file(const std::string& name, const std::vector<uint8_t>& bytes) {
  std::string p = (temp_dir() / name).string();
  Builder::write(p, bytes);
  return p;
}

// ---- real model ---------------------------------------------------------------

// Minimal safetensors reader for the F32 HF copy: name -> values.
std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> read_safetensors(const std::string& path) {
  auto b = slurp(path);
  uint64_t n;
  std::memcpy(&n, b.data(), 8);
  auto header = nlohmann::json::parse(std::string(b.begin() + 8, b.begin() + 8 + static_cast<long>(n)));
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    EXPECT_EQ(it.value()["dtype"], "F32") << it.key();
    auto off = it.value()["data_offsets"].get<std::vector<uint64_t>>();
    std::vector<float> v((off[1] - off[0]) / 4);
    std::memcpy(v.data(), b.data() + 8 + n + off[0], off[1] - off[0]);
    out[it.key()] = {it.value()["shape"].get<std::vector<int64_t>>(), std::move(v)};
  }
  return out;
}

TEST(GgufReal, Stories260KConfig) {
  auto ck = xquant::Checkpoint::open(runtime(), kShared + "/models/stories260K/stories260K.gguf");
  EXPECT_EQ(ck->loader().name(), "gguf");
  const auto& c = ck->config();
  EXPECT_EQ(c.get_string("architecture", ""), "llama");
  EXPECT_EQ(c.get_string("source.format", ""), "gguf");
  EXPECT_EQ(c.get_int("hidden_size", 0), 64);
  EXPECT_EQ(c.get_int("intermediate_size", 0), 172);
  EXPECT_EQ(c.get_int("num_hidden_layers", 0), 5);
  EXPECT_EQ(c.get_int("num_attention_heads", 0), 8);
  EXPECT_EQ(c.get_int("num_key_value_heads", 0), 4);
  EXPECT_EQ(c.get_int("head_dim", 0), 8);
  EXPECT_EQ(c.get_int("vocab_size", 0), 512);
  EXPECT_EQ(c.get_int("max_position_embeddings", 0), 2048);  // llama.context_length as the file states it
  EXPECT_NEAR(c.get_float("rms_norm_eps", 0), 1e-5, 1e-12);
  EXPECT_EQ(c.get_float("rope_theta", 0), 10000.0);
  EXPECT_FALSE(c.get_bool("tie_word_embeddings", true));  // the file has output.weight
  EXPECT_FALSE(c.get_bool("attention_bias", true));
  EXPECT_EQ(c.get_string("torch_dtype", ""), "float32");
  EXPECT_EQ(c.get_int("bos_token_id", -1), 1);
  EXPECT_EQ(c.get_int("eos_token_id", -1), 2);
  EXPECT_EQ(c.get_string("tokenizer.model", ""), "llama");
  ASSERT_NE(c.find("tokenizer.tokens"), nullptr);
  EXPECT_EQ(c.find("tokenizer.tokens")->as_strings().size(), 512u);
  EXPECT_EQ(c.find("tokenizer.scores")->as_floats().size(), 512u);
  EXPECT_EQ(c.find("tokenizer.token_type")->as_ints().size(), 512u);
  EXPECT_EQ(c.get_string("gguf.general.architecture", ""), "llama");
  EXPECT_EQ(c.get_int("gguf.llama.block_count", 0), 5);
  EXPECT_EQ(c.find("gguf.tokenizer.ggml.tokens")->as_strings().size(), 512u);  // small arrays are mirrored too
  ASSERT_NE(ck->find("lm_head.weight"), nullptr);
  EXPECT_NE(ck->find("model.layers.4.mlp.down_proj.weight"), nullptr);
  EXPECT_EQ(ck->require("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(ck->require("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{32, 64}));
}

TEST(GgufReal, Stories260KMatchesHfCopyBitExactly) {
  auto ck = xquant::Checkpoint::open(runtime(), kShared + "/models/stories260K/stories260K.gguf");
  auto hf = read_safetensors(kShared + "/models/stories260K-hf/model.safetensors");
  ASSERT_FALSE(hf.empty());
  size_t compared = 0;
  for (const auto& [name, tv] : hf) {
    const auto* t = ck->find(name);
    ASSERT_NE(t, nullptr) << name << " missing from the GGUF view";
    EXPECT_EQ(t->shape, tv.first) << name;
    auto got = ck->read_f32(*t);
    ASSERT_EQ(got.size(), tv.second.size()) << name;
    EXPECT_EQ(std::memcmp(got.data(), tv.second.data(), got.size() * 4), 0) << name << " differs from the HF copy";
    ++compared;
  }
  EXPECT_EQ(compared, hf.size());
  EXPECT_EQ(ck->tensors().size(), hf.size() + 1);  // + lm_head.weight
  // lm_head (output.weight) is the token embedding's copy.
  EXPECT_EQ(ck->read_f32(ck->require("lm_head.weight")), hf["model.embed_tokens.weight"].second);

  // The un-permutation is not the identity here: the HF rows re-permuted to
  // GGUF order (GGUF row 2i = HF i, 2i+1 = HF i+hd/2) differ from HF order,
  // and the raw() view holds the HF order too.
  for (const char* proj : {"q_proj", "k_proj"}) {
    const std::string name = std::string("model.layers.0.self_attn.") + proj + ".weight";
    const auto& [shape, w] = hf[name];
    const int64_t hd = 8, rows = shape[0], cols = shape[1];
    std::vector<float> gguf_order(w.size());
    for (int64_t h = 0; h < rows / hd; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        std::memcpy(&gguf_order[(h * hd + 2 * i) * cols], &w[(h * hd + i) * cols], cols * 4);
        std::memcpy(&gguf_order[(h * hd + 2 * i + 1) * cols], &w[(h * hd + i + hd / 2) * cols], cols * 4);
      }
    EXPECT_NE(gguf_order, w) << name;
    auto view = ck->raw(ck->require(name));
    ASSERT_EQ(view.nbytes, w.size() * 4);
    EXPECT_EQ(view.dtype, XQ_DTYPE_F32);
    EXPECT_EQ(std::memcmp(view.data, w.data(), view.nbytes), 0) << name << " raw() is not in HF order";
  }
}

// The same model through the safetensors loader (when it is built): both
// loaders must produce the same canonical view. Skipped without it.
TEST(GgufReal, CanonicalViewMatchesSafetensorsLoader) {
  bool have = false;
  for (auto* p : runtime().plugins().of_kind(XQ_PLUGIN_LOADER)) have = have || p->name() == "safetensors";
  if (!have) GTEST_SKIP() << "safetensors loader plugin not built";
  auto g = xquant::Checkpoint::open(runtime(), kShared + "/models/stories260K/stories260K.gguf");
  auto h = xquant::Checkpoint::open(runtime(), kShared + "/models/stories260K-hf");
  for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "head_dim", "vocab_size"})
    EXPECT_EQ(g->config().get_int(k, -1), h->config().get_int(k, -2)) << k;
  for (const char* k : {"rms_norm_eps", "rope_theta"})
    EXPECT_NEAR(g->config().get_float(k, -1), h->config().get_float(k, -2), 1e-9) << k;
  EXPECT_EQ(g->config().get_string("architecture", "?"), h->config().get_string("architecture", "!"));
  for (const auto& t : h->tensors()) {
    const auto* gt = g->find(t.name);
    ASSERT_NE(gt, nullptr) << t.name;
    EXPECT_EQ(gt->shape, t.shape) << t.name;
    EXPECT_EQ(g->read_f32(*gt), h->read_f32(t)) << t.name;
  }
}

TEST(GgufReal, HalfPrecisionReads) {
  auto ck = xquant::Checkpoint::open(runtime(), kShared + "/models/stories260K/stories260K.gguf");
  const auto& t = ck->require("model.layers.1.self_attn.q_proj.weight");
  auto f = ck->read_f32(t);
  std::vector<uint16_t> h(f.size()), bf(f.size());
  ck->read(t, XQ_DTYPE_F16, h.data(), h.size() * 2);
  ck->read(t, XQ_DTYPE_BF16, bf.data(), bf.size() * 2);
  for (size_t i = 0; i < f.size(); ++i) {
    ASSERT_EQ(h[i], xquant::sdk::f32_to_f16(f[i])) << i;
    ASSERT_EQ(bf[i], xquant::sdk::f32_to_bf16(f[i])) << i;
  }
  std::vector<float> small(3);
  EXPECT_THROW(ck->read(t, XQ_DTYPE_F32, small.data(), 12), xquant::Error);
  EXPECT_THROW(ck->read_quantized(t), xquant::Error);  // F32 has no canonical quantized form
}

TEST(GgufReal, VocabOnlyFilesOpen) {
  for (const char* f : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
    auto ck = xquant::Checkpoint::open(runtime(), kShared + "/data/tokenizer-tests/" + f);
    EXPECT_TRUE(ck->tensors().empty()) << f;
    EXPECT_TRUE(ck->config().has("tokenizer.tokens")) << f;
    EXPECT_TRUE(ck->config().has("tokenizer.model")) << f;
    EXPECT_FALSE(ck->config().has("gguf.tokenizer.ggml.tokens")) << f;  // big arrays are not mirrored under gguf.
    EXPECT_TRUE(ck->config().has("gguf.tokenizer.ggml.model")) << f;
  }
}

// ---- hand-built files ---------------------------------------------------------

// HF row r of a head of 4 comes from GGUF row kFromGguf[r] (HF row i = GGUF
// row 2i, HF row i + hd/2 = GGUF row 2i+1 with hd = 4; docs/references.md).
constexpr int kFromGguf[4] = {0, 2, 1, 3};

struct Rows {
  std::vector<uint8_t> bytes;               // GGUF order
  std::vector<std::vector<float>> expect;   // per GGUF row
  std::vector<std::vector<uint8_t>> raw;    // per GGUF row
};

template <class Enc>
Rows make_rows(std::mt19937& rng, int rows, int cols, Enc enc) {
  Rows r;
  std::normal_distribution<float> nd(0, 1);
  for (int i = 0; i < rows; ++i) {
    std::vector<float> x(cols);
    for (auto& v : x) v = nd(rng);
    Encoded e = enc(x);
    r.bytes.insert(r.bytes.end(), e.bytes.begin(), e.bytes.end());
    r.expect.push_back(e.expect);
    r.raw.push_back(e.bytes);
  }
  return r;
}

template <class Gen>
Rows make_k_rows(std::mt19937& rng, int rows, Gen gen) {
  Rows r;
  for (int i = 0; i < rows; ++i) {
    Encoded e = gen(rng);
    r.bytes.insert(r.bytes.end(), e.bytes.begin(), e.bytes.end());
    r.expect.push_back(e.expect);
    r.raw.push_back(e.bytes);
  }
  return r;
}

std::vector<float> flatten(const Rows& r, bool permute_heads_of_4) {
  std::vector<float> out;
  for (size_t i = 0; i < r.expect.size(); ++i) {
    size_t src = permute_heads_of_4 ? (i / 4) * 4 + kFromGguf[i % 4] : i;
    out.insert(out.end(), r.expect[src].begin(), r.expect[src].end());
  }
  return out;
}

struct Fixture {
  Rows q, k, v, gate, up, down, vec1d;
  std::vector<float> qbias{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<uint16_t> norm16, norm_bf16;
  std::string path;
};

Fixture build_model(const std::string& arch, const std::string& file) {
  std::mt19937 rng(7);
  Fixture f;
  f.q = make_rows(rng, 8, 64, encode_q8_0);   // 2 heads x hd 4, 64 inputs
  f.k = make_rows(rng, 4, 64, encode_q4_0);   // 1 kv head
  f.v = make_rows(rng, 4, 64, encode_q4_1);
  f.gate = make_k_rows(rng, 2, [](std::mt19937& g) { return make_k45(g, false); });
  f.up = make_k_rows(rng, 2, [](std::mt19937& g) { return make_k45(g, true); });
  f.down = make_k_rows(rng, 2, make_q6_k);
  f.vec1d = make_rows(rng, 1, 64, encode_q8_0);
  for (int i = 0; i < 64; ++i) {
    f.norm16.push_back(xquant::sdk::f32_to_f16(0.5f + i));
    f.norm_bf16.push_back(xquant::sdk::f32_to_bf16(-1.0f - i));
  }
  Builder b;
  b.str("general.architecture", arch);
  b.u32(arch + ".block_count", 1);
  b.u32(arch + ".embedding_length", 64);
  b.u32(arch + ".feed_forward_length", 2);
  b.u32(arch + ".attention.head_count", 2);
  b.u32(arch + ".attention.head_count_kv", 1);
  b.u32(arch + ".attention.key_length", 4);
  b.u32(arch + ".context_length", 128);
  b.f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  b.f32(arch + ".rope.freq_base", 1e6f);
  b.u32("general.quantization_version", 2);
  b.str("tokenizer.ggml.model", "gpt2");
  b.strs("tokenizer.ggml.tokens", {"a", "b"});
  b.array<int32_t>("tokenizer.ggml.token_type", 5, {1, 1});
  b.u32("tokenizer.ggml.bos_token_id", 0);
  b.array<uint8_t>("test.small_u8_array", 0, {1, 2, 3});
  b.array<double>("test.f64_array", 12, {0.5, 1.5});
  b.u64("test.u64", 1ull << 40);
  b.raw_kv("test.i16", 3, Builder::bytes(int16_t{-7}));
  b.boolean("test.flag", true);
  b.raw_kv("test.i8", 1, Builder::bytes(int8_t{-3}));
  b.raw_kv("test.u16", 2, Builder::bytes(uint16_t{65535}));
  b.raw_kv("test.i64", 11, Builder::bytes(int64_t{-(1ll << 50)}));
  b.raw_kv("test.f64", 12, Builder::bytes(0.125));
  b.array<uint8_t>("test.bool_array", 7, {1, 0, 1});
  b.array<int16_t>("test.i16_array", 3, {-1, 2});
  b.array<float>("test.f32_array", 6, {0.25f});
  auto bytes16 = [](const std::vector<uint16_t>& v) {
    std::vector<uint8_t> o(v.size() * 2);
    std::memcpy(o.data(), v.data(), o.size());
    return o;
  };
  std::vector<uint8_t> bias(32);
  std::memcpy(bias.data(), f.qbias.data(), 32);
  b.add("blk.0.attn_q.weight", {64, 8}, 8, f.q.bytes);
  b.add("blk.0.attn_q.bias", {8}, 0, bias);
  b.add("blk.0.attn_k.weight", {64, 4}, 2, f.k.bytes);
  b.add("blk.0.attn_v.weight", {64, 4}, 3, f.v.bytes);
  b.add("blk.0.ffn_gate.weight", {256, 2}, 12, f.gate.bytes);
  b.add("blk.0.ffn_up.weight", {256, 2}, 13, f.up.bytes);
  b.add("blk.0.ffn_down.weight", {256, 2}, 14, f.down.bytes);
  b.add("blk.0.attn_norm.weight", {64}, 1, bytes16(f.norm16));
  b.add("output_norm.weight", {64}, 30, bytes16(f.norm_bf16));
  b.add("token_embd.weight", {64, 2}, 0, std::vector<uint8_t>(64 * 2 * 4, 0));
  b.add("some.custom.tensor", {4}, 0, std::vector<uint8_t>(16, 0));
  b.add("some.custom.q8", {64}, 8, f.vec1d.bytes);  // a 1-D block tensor: one row of two blocks
  f.path = write_file(file, b.build());
  return f;
}

TEST(GgufBuilt, LlamaNamesShapesAndPermutedReads) {
  Fixture f = build_model("llama", "llama.gguf");
  auto ck = xquant::Checkpoint::open(runtime(), f.path);
  const auto& q = ck->require("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(q.shape, (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(q.dtype, XQ_DTYPE_BLOCKS);
  EXPECT_EQ(q.storage_type, "Q8_0");
  EXPECT_EQ(q.nbytes, 8u * 2 * 34);
  EXPECT_TRUE(q.has_quantized);
  EXPECT_TRUE(ck->require("model.layers.0.self_attn.k_proj.weight").has_quantized);
  EXPECT_FALSE(ck->require("model.layers.0.self_attn.v_proj.weight").has_quantized);
  EXPECT_FALSE(ck->require("model.layers.0.mlp.gate_proj.weight").has_quantized);
  EXPECT_EQ(ck->require("model.layers.0.mlp.gate_proj.weight").storage_type, "Q4_K");
  EXPECT_EQ(ck->require("model.layers.0.mlp.up_proj.weight").storage_type, "Q5_K");
  EXPECT_EQ(ck->require("model.layers.0.mlp.down_proj.weight").storage_type, "Q6_K");
  EXPECT_EQ(ck->require("model.layers.0.input_layernorm.weight").dtype, XQ_DTYPE_F16);
  EXPECT_EQ(ck->require("model.norm.weight").dtype, XQ_DTYPE_BF16);
  EXPECT_EQ(ck->require("model.embed_tokens.weight").shape, (std::vector<int64_t>{2, 64}));
  EXPECT_NE(ck->find("some.custom.tensor"), nullptr);  // unknown names are kept
  EXPECT_EQ(ck->require("some.custom.q8").shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(ck->read_f32(ck->require("some.custom.q8")), flatten(f.vec1d, false));
  EXPECT_EQ(ck->find("lm_head.weight"), nullptr);

  // Q (2 heads) and K (1 kv head) come back in HF row order; V is not permuted.
  EXPECT_EQ(ck->read_f32(q), flatten(f.q, true));
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.self_attn.k_proj.weight")), flatten(f.k, true));
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.self_attn.v_proj.weight")), flatten(f.v, false));
  std::vector<float> bias_hf;
  for (int i = 0; i < 8; ++i) bias_hf.push_back(f.qbias[(i / 4) * 4 + kFromGguf[i % 4]]);
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.self_attn.q_proj.bias")), bias_hf);
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.mlp.gate_proj.weight")), flatten(f.gate, false));
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.mlp.up_proj.weight")), flatten(f.up, false));
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.mlp.down_proj.weight")), flatten(f.down, false));
  auto n16 = ck->read_f32(ck->require("model.layers.0.input_layernorm.weight"));
  auto nbf = ck->read_f32(ck->require("model.norm.weight"));
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(n16[i], 0.5f + i);
    EXPECT_EQ(nbf[i], -1.0f - i);
  }
  // Stored F16 read as F16 is a copy; BF16 read as F16 converts.
  std::vector<uint16_t> h(64);
  ck->read(ck->require("model.layers.0.input_layernorm.weight"), XQ_DTYPE_F16, h.data(), 128);
  EXPECT_EQ(h, f.norm16);
  ck->read(ck->require("model.norm.weight"), XQ_DTYPE_BF16, h.data(), 128);
  EXPECT_EQ(h, f.norm_bf16);

  // raw(): whole row byte ranges moved into HF order.
  auto view = ck->raw(q);
  ASSERT_EQ(view.nbytes, q.nbytes);
  EXPECT_EQ(view.dtype, XQ_DTYPE_BLOCKS);
  for (int r = 0; r < 8; ++r) {
    const auto& want = f.q.raw[(r / 4) * 4 + kFromGguf[r % 4]];
    EXPECT_EQ(std::memcmp(static_cast<const uint8_t*>(view.data) + r * want.size(), want.data(), want.size()), 0) << r;
  }
  auto vview = ck->raw(ck->require("model.layers.0.self_attn.v_proj.weight"));
  EXPECT_EQ(std::memcmp(vview.data, f.v.bytes.data(), f.v.bytes.size()), 0);
}

TEST(GgufBuilt, ReadQuantizedQ8_0AndQ4_0) {
  Fixture f = build_model("llama", "llama_q.gguf");
  auto ck = xquant::Checkpoint::open(runtime(), f.path);
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"}) {
    const auto& t = ck->require(name);
    auto qt = ck->read_quantized(t);
    const bool q8 = t.storage_type == "Q8_0";
    EXPECT_EQ(qt->bits, q8 ? 8u : 4u) << name;
    EXPECT_EQ(qt->symmetric, 1u);
    EXPECT_EQ(qt->zero_points, nullptr);
    EXPECT_EQ(qt->strategy, XQ_STRATEGY_GROUP);
    EXPECT_EQ(qt->group_size, 32);
    EXPECT_EQ(qt->n_groups, 2);
    EXPECT_EQ(qt->rows, t.shape[0]);
    EXPECT_EQ(qt->cols, 64);
    EXPECT_EQ(qt->scale_dtype, XQ_DTYPE_F16);
    auto dense = ck->read_f32(t);
    for (int64_t r = 0; r < qt->rows; ++r)
      for (int64_t c = 0; c < 64; ++c) {
        const int8_t code = qt->codes[r * 64 + c];
        if (!q8) { ASSERT_TRUE(code >= -8 && code <= 7); }
        const float s = qt->scales[r * 2 + c / 32];
        ASSERT_EQ(xquant::sdk::round_to_f16(s), s);
        ASSERT_EQ(code * s, dense[r * 64 + c]) << name << " " << r << "," << c;
      }
  }
  EXPECT_THROW(ck->read_quantized(ck->require("model.layers.0.self_attn.v_proj.weight")), xquant::Error);
  // The plugin itself explains why Q4_1 has no canonical form (the runtime
  // stops at has_quantized = 0 before calling it).
  auto& p = runtime().plugins().require(XQ_PLUGIN_LOADER, "gguf");
  void* h = nullptr;
  ASSERT_EQ(p.loader().open(p.state, f.path.c_str(), &h), XQ_OK);
  auto qt = xquant::sdk::make_struct<xq_quant_tensor>();
  const auto& v = ck->require("model.layers.0.self_attn.v_proj.weight");
  EXPECT_EQ(p.loader().read_quantized(h, v.index, &qt), XQ_ERR_UNSUPPORTED);
  const std::string msg = xquant::last_error();
  EXPECT_NE(msg.find("Q4_1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("zero point"), std::string::npos) << msg;
  EXPECT_EQ(qt.codes, nullptr);  // outputs untouched on failure
  const auto& g = ck->require("model.layers.0.mlp.gate_proj.weight");
  EXPECT_EQ(p.loader().read_quantized(h, g.index, &qt), XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(p.loader().read_quantized(h, 1u << 30, &qt), XQ_ERR_INVALID_ARGUMENT);
  p.loader().close(h);
}

TEST(GgufBuilt, LlamaConfigAndRawMetadata) {
  Fixture f = build_model("llama", "llama_cfg.gguf");
  auto ck = xquant::Checkpoint::open(runtime(), f.path);
  const auto& c = ck->config();
  EXPECT_EQ(c.get_string("architecture", ""), "llama");
  EXPECT_EQ(c.get_int("head_dim", 0), 4);
  EXPECT_EQ(c.get_int("num_key_value_heads", 0), 1);
  EXPECT_EQ(c.get_int("vocab_size", 0), 2);
  EXPECT_TRUE(c.get_bool("tie_word_embeddings", false));  // no output.weight
  EXPECT_TRUE(c.get_bool("attention_bias", false));
  EXPECT_EQ(c.get_float("rope_theta", 0), 1e6);
  EXPECT_EQ(c.get_int("gguf.test.u64", 0), 1ll << 40);
  EXPECT_EQ(c.get_int("gguf.test.i16", 0), -7);
  EXPECT_TRUE(c.get_bool("gguf.test.flag", false));
  EXPECT_EQ(c.get_int("gguf.test.i8", 0), -3);
  EXPECT_EQ(c.get_int("gguf.test.u16", 0), 65535);
  EXPECT_EQ(c.get_int("gguf.test.i64", 0), -(1ll << 50));
  EXPECT_EQ(c.get_float("gguf.test.f64", 0), 0.125);
  EXPECT_EQ(c.find("gguf.test.bool_array")->as_ints(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(c.find("gguf.test.i16_array")->as_ints(), (std::vector<int64_t>{-1, 2}));
  EXPECT_EQ(c.find("gguf.test.f32_array")->as_floats(), (std::vector<double>{0.25}));
  EXPECT_EQ(c.get_int("gguf.llama.attention.head_count", 0), 2);
  EXPECT_EQ(c.get_string("gguf.general.architecture", ""), "llama");
  EXPECT_EQ(c.find("gguf.test.small_u8_array")->as_ints(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(c.find("gguf.test.f64_array")->as_floats(), (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(c.find("tokenizer.token_type")->as_ints(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(c.get_int("tokenizer.bos_token_id", -1), 0);
}

TEST(GgufBuilt, Qwen2IsNotPermuted) {
  Fixture f = build_model("qwen2", "qwen2.gguf");
  auto ck = xquant::Checkpoint::open(runtime(), f.path);
  EXPECT_EQ(ck->config().get_string("architecture", ""), "qwen2");
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.self_attn.q_proj.weight")), flatten(f.q, false));
  EXPECT_EQ(ck->read_f32(ck->require("model.layers.0.self_attn.q_proj.bias")), f.qbias);
  auto view = ck->raw(ck->require("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_EQ(std::memcmp(view.data, f.q.bytes.data(), f.q.bytes.size()), 0);
}

// ---- malformed files ----------------------------------------------------------

Builder valid_builder() {
  Builder b;
  b.str("general.architecture", "llama");
  b.u32("llama.attention.head_count", 1);
  b.add("output_norm.weight", {8}, 0, std::vector<uint8_t>(32, 0));
  b.add("blk.0.ffn_up.weight", {32, 1}, 8, std::vector<uint8_t>(34, 0));
  return b;
}

// Opens `bytes` and expects an Error whose message names the file, contains
// every fragment, and carries `status`.
void expect_error(const std::string& name, const std::vector<uint8_t>& bytes, xq_status status,
                  std::vector<std::string> fragments) {
  const std::string path = write_file(name + ".gguf", bytes);
  try {
    auto ck = xquant::Checkpoint::open(runtime(), path, "gguf");
    ADD_FAILURE() << name << ": opened without error";
  } catch (const xquant::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.status(), status) << name << ": " << msg;
    fragments.push_back(path);
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << name << ": '" << f << "' not in: " << msg;
  }
}

std::string at(uint64_t off) { return "byte offset " + std::to_string(off); }

TEST(GgufMalformed, HeaderErrors) {
  Builder b = valid_builder();
  auto good = b.build();
  {
    Builder v2 = valid_builder();
    v2.version = 2;  // same little-endian layout as v3
    auto ck = xquant::Checkpoint::open(runtime(), write_file("v2.gguf", v2.build()));
    EXPECT_EQ(ck->tensors().size(), 2u);
  }
  {
    auto x = good;
    x[0] = 'X';
    expect_error("bad_magic", x, XQ_ERR_MALFORMED, {"magic", at(0)});
  }
  {
    auto x = good;
    uint32_t v = 1;
    std::memcpy(&x[4], &v, 4);
    expect_error("v1", x, XQ_ERR_MALFORMED, {"version", at(4), "version 1"});
    v = 0x03000000;
    std::memcpy(&x[4], &v, 4);
    expect_error("big_endian", x, XQ_ERR_MALFORMED, {"version", at(4), "big-endian"});
    v = 4;
    std::memcpy(&x[4], &v, 4);
    expect_error("v4", x, XQ_ERR_UNSUPPORTED, {"version", at(4)});
  }
  expect_error("truncated_header", std::vector<uint8_t>(good.begin(), good.begin() + 10), XQ_ERR_MALFORMED,
               {"tensor count", at(8)});
  expect_error("empty", {}, XQ_ERR_MALFORMED, {"empty"});
  {
    auto x = good;
    uint64_t n = 1ull << 60;
    std::memcpy(&x[b.at["kv_count"]], &n, 8);
    expect_error("huge_kv_count", x, XQ_ERR_MALFORMED, {"metadata count", at(b.at["kv_count"])});
    x = good;
    std::memcpy(&x[b.at["tensor_count"]], &n, 8);
    expect_error("huge_tensor_count", x, XQ_ERR_MALFORMED, {"tensor count", at(b.at["tensor_count"])});
  }
}

TEST(GgufMalformed, MetadataErrors) {
  {
    Builder b = valid_builder();
    auto x = b.build();
    uint64_t len = 1ull << 40;  // the key length of the first key
    std::memcpy(&x[b.at["key:general.architecture"]], &len, 8);
    expect_error("key_past_eof", x, XQ_ERR_MALFORMED, {"key of metadata entry 0", at(b.at["key:general.architecture"]), "past the end"});
  }
  {
    Builder b = valid_builder();
    b.raw_kv("x.bad", 13, {0});
    auto x = b.build();
    expect_error("unknown_value_type", x, XQ_ERR_MALFORMED, {"value type of key 'x.bad'", "unknown GGUF value type 13",
                                                             at(b.at["key:x.bad"] + 8 + 5)});
  }
  {
    Builder b = valid_builder();
    std::vector<uint8_t> v = Builder::bytes(uint32_t{9});  // array of arrays
    Builder::append(v, Builder::bytes(uint64_t{1}));
    b.raw_kv("x.nested", 9, v);
    auto x = b.build();
    expect_error("nested_array", x, XQ_ERR_MALFORMED, {"x.nested", "nested arrays", at(b.at["key:x.nested"] + 8 + 8 + 4)});
  }
  {
    Builder b = valid_builder();
    std::vector<uint8_t> v = Builder::bytes(uint32_t{8});  // string array with an absurd count
    Builder::append(v, Builder::bytes(uint64_t{1} << 62));
    b.raw_kv("x.arr", 9, v);
    auto x = b.build();
    expect_error("huge_array", x, XQ_ERR_MALFORMED, {"array length of key 'x.arr'", "cannot fit"});
  }
  {
    Builder b = valid_builder();
    b.raw_kv("x.bool", 7, {2});
    expect_error("bad_bool", b.build(), XQ_ERR_MALFORMED, {"x.bool", "neither 0 nor 1"});
  }
  {
    Builder b = valid_builder();
    b.u32("general.alignment", 48);
    expect_error("alignment_not_pow2", b.build(), XQ_ERR_MALFORMED, {"general.alignment", "power of two"});
    Builder c = valid_builder();
    c.u64("general.alignment", 32);
    expect_error("alignment_not_u32", c.build(), XQ_ERR_MALFORMED, {"general.alignment", "u32"});
  }
  {
    Builder b = valid_builder();
    b.u32("x.dup", 1);
    b.u32("x.dup", 2);
    auto x = b.build();
    expect_error("duplicate_key", x, XQ_ERR_MALFORMED, {"duplicate metadata key", "x.dup"});
  }
  {
    Builder b = valid_builder();
    b.str("x.s", "hello");
    auto x = b.build();
    uint64_t len = 1ull << 50;
    std::memcpy(&x[b.at["key:x.s"] + 8 + 3 + 4], &len, 8);  // the string value's length
    expect_error("string_value_past_eof", x, XQ_ERR_MALFORMED, {"value of key 'x.s'", "past the end", at(b.at["key:x.s"] + 15)});
  }
}

TEST(GgufMalformed, TensorInfoErrors) {
  {
    Builder b = valid_builder();
    b.tensors[1].offset_override = 40;  // not a multiple of 32
    auto x = b.build();
    expect_error("misaligned", x, XQ_ERR_MALFORMED, {"tensor 'blk.0.ffn_up.weight' offset", "not a multiple of the alignment",
                                                     at(b.at["offset:blk.0.ffn_up.weight"])});
  }
  {
    Builder b = valid_builder();
    b.tensors[1].type = 99;
    auto x = b.build();
    expect_error("unknown_type", x, XQ_ERR_MALFORMED, {"unknown ggml type 99", at(b.at["type:blk.0.ffn_up.weight"])});
    Builder c = valid_builder();
    c.tensors[1].type = 4;  // removed Q4_2
    expect_error("removed_type", c.build(), XQ_ERR_MALFORMED, {"unknown ggml type 4"});
  }
  {
    Builder b = valid_builder();
    b.tensors[1].offset_override = 1 << 20;
    auto x = b.build();
    expect_error("past_end", x, XQ_ERR_MALFORMED, {"tensor 'blk.0.ffn_up.weight' data", "past the end",
                                                   at(b.at["tensor:blk.0.ffn_up.weight"])});
    auto y = valid_builder().build();
    y.resize(y.size() - 1);  // last tensor's data cut short
    expect_error("truncated_data", y, XQ_ERR_MALFORMED, {"tensor 'blk.0.ffn_up.weight' data", "past the end"});
  }
  {
    Builder b = valid_builder();
    b.tensors[0].ne = {8, 1, 1, 1, 1};
    auto x = b.build();
    expect_error("five_dims", x, XQ_ERR_MALFORMED, {"n_dims", "at most 4", at(b.at["n_dims:output_norm.weight"])});
  }
  {
    Builder b = valid_builder();
    b.tensors[1].name = "output_norm.weight";
    auto x = b.build();
    expect_error("duplicate_tensor", x, XQ_ERR_MALFORMED, {"duplicate tensor name", at(b.at["tensor:output_norm.weight"])});
  }
  {
    Builder b = valid_builder();
    b.tensors[0].name = std::string(64, 'n');
    expect_error("long_name", b.build(), XQ_ERR_MALFORMED, {"name is 64 bytes"});
  }
  {
    Builder b = valid_builder();
    b.tensors[1].ne = {16, 1};  // Q8_0 needs multiples of 32
    expect_error("ne0_not_block_multiple", b.build(), XQ_ERR_MALFORMED, {"ne[0]", "block size 32"});
  }
  {
    Builder b = valid_builder();
    b.tensors[1].ne = {32, 1ull << 62, 1ull << 62};
    expect_error("size_overflow", b.build(), XQ_ERR_MALFORMED, {"blk.0.ffn_up.weight"});
  }
  {
    Builder b = valid_builder();
    b.tensors[0].ne = {1ull << 63};
    expect_error("negative_dim", b.build(), XQ_ERR_MALFORMED, {"ne[0]", "out of range"});
  }
  {
    Builder b = valid_builder();
    b.add("blk.0.attn_q.weight", {32, 3}, 0, std::vector<uint8_t>(32 * 3 * 4, 0));  // 3 rows: odd head size
    expect_error("q_rows_not_heads", b.build(), XQ_ERR_MALFORMED, {"blk.0.attn_q.weight", "heads"});
  }
  {
    Builder c;
    c.str("general.architecture", "gptneox");
    c.add("output_norm.weight", {8}, 0, std::vector<uint8_t>(32, 0));
    expect_error("unsupported_arch", c.build(), XQ_ERR_UNSUPPORTED, {"gptneox", "not supported"});
  }
}

// Every truncation and many random corruptions of a valid file either open
// or fail with an Error: never a crash, never another exception.
TEST(GgufMalformed, TruncationsAndCorruptionsNeverCrash) {
  Fixture f = build_model("llama", "fuzz_base.gguf");
  const auto good = slurp(f.path);
  const std::string path = (temp_dir() / "fuzz.gguf").string();
  auto attempt = [&](const std::vector<uint8_t>& bytes) {
    Builder::write(path, bytes);
    try {
      auto ck = xquant::Checkpoint::open(runtime(), path, "gguf");
      for (const auto& t : ck->tensors()) {
        try {
          (void)ck->read_f32(t);
        } catch (const xquant::Error&) {
        }
      }
      return true;
    } catch (const xquant::Error&) {
      return false;
    }
  };
  int opened = 0;
  for (size_t n = 0; n < good.size(); n += (n < 1100 ? 1 : 61)) opened += attempt(std::vector<uint8_t>(good.begin(), good.begin() + n));
  EXPECT_EQ(opened, 0) << "a truncated file opened";
  std::mt19937 rng(5);
  std::uniform_int_distribution<size_t> pos(0, 1500);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 1500; ++i) {
    auto x = good;
    for (int k = 0; k < 1 + i % 4; ++k) x[pos(rng) % x.size()] = static_cast<uint8_t>(byte(rng));
    attempt(x);
  }
  EXPECT_TRUE(attempt(good));
}

}  // namespace
