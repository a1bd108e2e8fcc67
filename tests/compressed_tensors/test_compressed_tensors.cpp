// test_compressed_tensors.cpp: the `compressed-tensors` format plugin.
//
// Random canonical tensors go through the real writer (via the plugin's
// vtable, as the pipeline calls it) and come back through Checkpoint (the
// safetensors loader) + read_module: codes, scales (bit-exact), zero points
// and g_idx must be identical. Byte-level checks pin the packing to
// hand-computed words, the config.json content is checked field by field,
// and abort/replace behaviour is checked on the folder's contents.
#include "test_runtime.hpp"
#include "core/error.hpp"
#include "core/kv.hpp"
#include "core/runtime.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "checkpoint/checkpoint.hpp"
#include "plugins/call.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/tensor.hpp>
#include <xquant/sdk/safetensors.hpp>

#include "gguf_builder.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using namespace xquant;
namespace st = xquant::sdk::safetensors;

namespace {

Runtime& runtime() { return test::quiet_runtime(); }

LoadedPlugin& format_plugin() { return runtime().plugins().require(XQ_PLUGIN_FORMAT, "compressed-tensors"); }


using test::TempDir;
std::string read_text(const fs::path& p) { return test::read_file(p); }
void write_text(const fs::path& p, const std::string& s) { test::write_file(p, s); }

std::set<std::string> listing(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

const char* kLlamaConfig = R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,
  "intermediate_size":172,"num_hidden_layers":1,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,
  "rms_norm_eps":1e-05,"rope_theta":10000.0,"torch_dtype":"float32","tie_word_embeddings":true})";

using test::Canon;

struct Spec {
  uint32_t bits = 4;
  bool symmetric = true;
  xq_strategy gran = XQ_STRATEGY_GROUP;
  int64_t rows = 16, cols = 64, group_size = 32;
  bool g_idx = false;
  xq_dtype scale_dtype = XQ_DTYPE_F32;
  xq_act_scheme act = XQ_ACT_NONE;
};

float representable(float x, xq_dtype t) {
  if (t == XQ_DTYPE_F16) return sdk::round_to_f16(x);
  if (t == XQ_DTYPE_BF16) return sdk::round_to_bf16(x);
  return x;
}

Canon random_canon(const Spec& s, uint32_t seed) {
  std::mt19937 rng(seed);
  Canon c;
  c.q.bits = s.bits;
  c.q.symmetric = s.symmetric ? 1 : 0;
  c.q.strategy = s.gran;
  c.q.rows = s.rows;
  c.q.cols = s.cols;
  c.q.group_size = s.gran == XQ_STRATEGY_GROUP ? s.group_size : s.cols;
  c.q.n_groups = s.gran == XQ_STRATEGY_GROUP ? (s.cols + s.group_size - 1) / s.group_size : 1;
  c.q.scale_dtype = s.scale_dtype;
  c.q.act_scheme = s.act;
  c.q.act_bits = s.act == XQ_ACT_NONE ? 0 : 8;
  c.q.input_scale = s.act == XQ_ACT_STATIC_TENSOR ? 0.0123f : 0.0f;
  const int lo = -(1 << (s.bits - 1)), hi = (1 << (s.bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::uniform_real_distribution<float> sc(1e-4f, 0.5f);
  c.codes.resize(static_cast<size_t>(s.rows * s.cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  // Make sure the extremes appear (they exercise the offset and masks).
  c.codes[0] = static_cast<int8_t>(lo);
  c.codes[c.codes.size() - 1] = static_cast<int8_t>(hi);
  int64_t ns = s.gran == XQ_STRATEGY_TENSOR ? 1 : s.rows * c.q.n_groups;
  c.scales.resize(static_cast<size_t>(ns));
  for (auto& v : c.scales) v = representable(sc(rng), s.scale_dtype);
  if (!s.symmetric) {
    c.zps.resize(static_cast<size_t>(ns));
    for (auto& v : c.zps) v = static_cast<int8_t>(code(rng));
    c.zps[0] = static_cast<int8_t>(lo);
    c.zps[ns - 1] = static_cast<int8_t>(hi);
  }
  if (s.g_idx) {
    c.gidx.resize(static_cast<size_t>(s.cols));
    for (int64_t i = 0; i < s.cols; ++i) c.gidx[i] = static_cast<int32_t>(i / s.group_size);
    std::shuffle(c.gidx.begin(), c.gidx.end(), rng);  // act-order: any permutation of the group map
  }
  c.bind();
  return c;
}

// Drives the writer exactly as the pipeline does (through the vtable).
class CtWriter {
 public:
  explicit CtWriter(const fs::path& out, const std::string& config_json = kLlamaConfig,
                    std::vector<std::string> ignored = {"lm_head"}, int64_t max_shard = 0,
                    const fs::path& source = {}, Kv* model_override = nullptr, bool allow_ragged = false)
      : ignored_(std::move(ignored)) {
    params_.set("allow_ragged_groups", KvValue::boolean(allow_ragged));
    if (!config_json.empty()) model_.set("config_json", KvValue::string(config_json));
    model_.set("source.format", KvValue::string("safetensors"));
    if (max_shard > 0) params_.set("max_shard_bytes", KvValue::integer(max_shard));
    for (const auto& s : ignored_) ignored_ptrs_.push_back(s.c_str());
    ignored_ptrs_.push_back(nullptr);
    auto o = xquant::sdk::make_struct<xq_writer_options>();
    out_ = out.string();
    source_ = source.string();
    o.out_dir = out_.c_str();
    o.source_path = source_.empty() ? nullptr : source_.c_str();
    o.model_config = model_override ? model_override : &model_;
    o.params = &params_;
    o.ignored_modules = ignored_ptrs_.data();
    auto& p = format_plugin();
    check_plugin_call(p.format().writer_open(p.state, &o, &w_), "writer_open");
  }
  ~CtWriter() {
    if (w_) format_plugin().format().writer_abort(w_);
  }
  void dense(const std::string& name, std::vector<float> data, std::vector<int64_t> shape) {
    xq_tensor_view v = xquant::sdk::tensor_view(XQ_DTYPE_F32, shape, data.data());
    check_plugin_call(format_plugin().format().writer_add_dense(w_, name.c_str(), &v), "add_dense " + name);
  }
  void quantized(const std::string& module, const xq_quant_tensor& q) {
    check_plugin_call(format_plugin().format().writer_add_quantized(w_, module.c_str(), &q), "add_quantized " + module);
  }
  xq_status try_quantized(const std::string& module, const xq_quant_tensor& q) {
    xq_status s = format_plugin().format().writer_add_quantized(w_, module.c_str(), &q);
    set_last_error("");
    return s;
  }
  void finish() {
    void* w = w_;
    w_ = nullptr;
    check_plugin_call(format_plugin().format().writer_finish(w), "finish");
  }
  void abort() {
    format_plugin().format().writer_abort(w_);
    w_ = nullptr;
  }

 private:
  Kv model_, params_;
  std::vector<std::string> ignored_;
  std::vector<const char*> ignored_ptrs_;
  std::string out_, source_;
  void* w_ = nullptr;
};

void expect_same(const xq_quant_tensor& a, const xq_quant_tensor& b, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(a.bits, b.bits);
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.symmetric, b.symmetric);
  EXPECT_EQ(a.strategy, b.strategy);
  EXPECT_EQ(a.group_size, b.group_size);
  ASSERT_EQ(a.n_groups, b.n_groups);
  EXPECT_EQ(a.scale_dtype, b.scale_dtype);
  EXPECT_EQ(a.act_scheme, b.act_scheme);
  if (a.act_scheme != XQ_ACT_NONE) { EXPECT_EQ(a.act_bits, b.act_bits); }
  if (a.act_scheme == XQ_ACT_STATIC_TENSOR) { EXPECT_EQ(a.input_scale, b.input_scale); }
  EXPECT_EQ(std::memcmp(a.codes, b.codes, static_cast<size_t>(a.rows * a.cols)), 0) << "codes differ";
  int64_t ns = a.strategy == XQ_STRATEGY_TENSOR ? 1 : a.rows * a.n_groups;
  EXPECT_EQ(std::memcmp(a.scales, b.scales, static_cast<size_t>(ns) * 4), 0) << "scales differ (bitwise)";
  ASSERT_EQ(a.zero_points == nullptr, b.zero_points == nullptr);
  if (a.zero_points) { EXPECT_EQ(std::memcmp(a.zero_points, b.zero_points, static_cast<size_t>(ns)), 0) << "zero points differ"; }
  ASSERT_EQ(a.g_idx == nullptr, b.g_idx == nullptr);
  if (a.g_idx) { EXPECT_EQ(std::memcmp(a.g_idx, b.g_idx, static_cast<size_t>(a.cols) * 4), 0) << "g_idx differs"; }
}

nlohmann::json config_of(const fs::path& dir) { return nlohmann::json::parse(read_text(dir / "config.json")); }

}  // namespace

TEST(CompressedTensors, MixedSchemesRoundTripExactly) {
  TempDir d;
  fs::path out = d / "out";
  std::vector<std::pair<std::string, Spec>> cases;
  int k = 0;
  auto add = [&](Spec s) { cases.emplace_back("model.layers.0.mlp.m" + std::to_string(k++), s); };
  for (uint32_t bits : {2u, 3u, 4u, 5u, 6u, 7u, 8u})
    for (bool sym : {true, false}) {
      Spec g;  // ragged last group: 172 = 2*64 + 44
      g.bits = bits, g.symmetric = sym, g.gran = XQ_STRATEGY_GROUP, g.rows = 37, g.cols = 172, g.group_size = 64;
      add(g);
      Spec ch;  // rows not a multiple of 32/bits: the zero-point packing along dim 0 has a partial word
      ch.bits = bits, ch.symmetric = sym, ch.gran = XQ_STRATEGY_CHANNEL, ch.rows = 29, ch.cols = 70;
      add(ch);
    }
  Spec gi;
  gi.bits = 4, gi.gran = XQ_STRATEGY_GROUP, gi.rows = 24, gi.cols = 172, gi.group_size = 32, gi.g_idx = true;
  add(gi);
  Spec f16;
  f16.bits = 4, f16.symmetric = false, f16.scale_dtype = XQ_DTYPE_F16, f16.cols = 96, f16.group_size = 32;
  add(f16);
  Spec bf16;
  bf16.bits = 3, bf16.scale_dtype = XQ_DTYPE_BF16, bf16.gran = XQ_STRATEGY_CHANNEL;
  add(bf16);
  Spec tensor;
  tensor.bits = 4, tensor.gran = XQ_STRATEGY_TENSOR, tensor.symmetric = false;
  add(tensor);
  Spec w8a8;
  w8a8.bits = 8, w8a8.gran = XQ_STRATEGY_CHANNEL, w8a8.act = XQ_ACT_DYNAMIC_TOKEN, w8a8.scale_dtype = XQ_DTYPE_BF16;
  add(w8a8);
  Spec w8a8s;
  w8a8s.bits = 8, w8a8s.gran = XQ_STRATEGY_CHANNEL, w8a8s.act = XQ_ACT_STATIC_TENSOR;
  add(w8a8s);
  Spec w4a8;  // activations quantized: int-quantized (unpacked int8) by the library's priority rule
  w4a8.bits = 4, w4a8.symmetric = false, w4a8.gran = XQ_STRATEGY_GROUP, w4a8.act = XQ_ACT_DYNAMIC_TOKEN;
  add(w4a8);

  std::vector<Canon> canons;
  {
    CtWriter w(out, kLlamaConfig, {"lm_head"}, 0, {}, nullptr, /*allow_ragged=*/true);
    w.dense("model.norm.weight", std::vector<float>(64, 1.0f), {64});
    w.dense("lm_head.weight", std::vector<float>(8 * 64, 0.5f), {8, 64});
    for (size_t i = 0; i < cases.size(); ++i) {
      canons.push_back(random_canon(cases[i].second, 1000 + static_cast<uint32_t>(i)));
      w.quantized(cases[i].first, canons.back().q);
    }
    w.finish();
  }
  EXPECT_EQ(listing(out), (std::set<std::string>{"config.json", "model.safetensors"}));
  auto cp = Checkpoint::open(runtime(), out);
  ASSERT_NE(cp->quant_format(), nullptr);
  EXPECT_EQ(cp->quant_format()->name(), "compressed-tensors");
  for (size_t i = 0; i < cases.size(); ++i) {
    auto got = cp->read_module(cases[i].first);
    ASSERT_TRUE(got.has_value()) << cases[i].first;
    canons[i].bind();
    expect_same(canons[i].q, got->get(), cases[i].first);
  }
  // Dense modules read as "not quantized", not as an error.
  EXPECT_FALSE(cp->read_module("lm_head").has_value());
  EXPECT_FALSE(cp->read_module("model.layers.0.mlp.nothing").has_value());
  EXPECT_EQ(cp->read_f32(cp->require("lm_head.weight")), std::vector<float>(8 * 64, 0.5f));

  // Stored layouts: packed vs int8, zero-point packing along dim 0.
  EXPECT_EQ(cp->require("model.layers.0.mlp.m0.weight_packed").shape, (std::vector<int64_t>{37, (172 * 2 + 31) / 32}));
  EXPECT_EQ(cp->require("model.layers.0.mlp.m4.weight_packed").shape, (std::vector<int64_t>{37, (172 * 3 + 31) / 32}));
  EXPECT_EQ(cp->require("model.layers.0.mlp.m7.weight_zero_point").shape, (std::vector<int64_t>{(29 * 3 + 31) / 32, 1}));
  EXPECT_EQ(cp->require("model.layers.0.mlp.m28.weight_g_idx").dtype, XQ_DTYPE_I32);
  EXPECT_EQ(cp->require("model.layers.0.mlp.m32.weight").dtype, XQ_DTYPE_I8);
  EXPECT_EQ(cp->require("model.layers.0.mlp.m33.input_scale").shape, (std::vector<int64_t>{1}));
  EXPECT_EQ(cp->require("model.layers.0.mlp.m34.weight_zero_point").dtype, XQ_DTYPE_I8);
  EXPECT_EQ(cp->find("model.layers.0.mlp.m0.weight_zero_point"), nullptr);  // symmetric: dropped

  // Mixed schemes: one group per distinct scheme, exact-name targets.
  nlohmann::json qc = config_of(out)["quantization_config"];
  EXPECT_EQ(qc["format"], "mixed-precision");
  EXPECT_EQ(qc["ignore"], nlohmann::json::array({"lm_head"}));
  std::set<std::string> targeted;
  for (auto& [name, g] : qc["config_groups"].items())
    for (auto& t : g["targets"]) EXPECT_TRUE(targeted.insert(t.get<std::string>()).second) << t;
  EXPECT_EQ(targeted.size(), cases.size());
}

TEST(CompressedTensors, UniformW4A16ConfigLooksLikeLlmCompressor) {
  TempDir d;
  fs::path out = d / "w4";
  Spec s;
  s.bits = 4, s.gran = XQ_STRATEGY_GROUP, s.group_size = 32, s.rows = 64, s.cols = 64;
  Canon a = random_canon(s, 1), b = random_canon(s, 2);
  {
    CtWriter w(out);
    w.dense("model.embed_tokens.weight", std::vector<float>(512 * 64, 0.25f), {512, 64});
    w.quantized("model.layers.0.self_attn.q_proj", a.q);
    w.quantized("model.layers.0.self_attn.o_proj", b.q);
    // A Linear left dense without being in the ignore list: the writer
    // must still ignore it so the "Linear" target does not claim it.
    w.dense("model.layers.0.self_attn.k_proj.weight", std::vector<float>(32 * 64, 1.0f), {32, 64});
    w.finish();
  }
  nlohmann::json cfg = config_of(out);
  // The source config survives.
  EXPECT_EQ(cfg["model_type"], "llama");
  EXPECT_EQ(cfg["hidden_size"], 64);
  EXPECT_EQ(cfg["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  const nlohmann::json& qc = cfg["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "compressed-tensors");
  EXPECT_EQ(qc["format"], "pack-quantized");
  EXPECT_EQ(qc["quantization_status"], "compressed");
  EXPECT_EQ(qc["version"], "0.20.0");
  EXPECT_TRUE(qc["kv_cache_scheme"].is_null());
  EXPECT_EQ(qc["ignore"], nlohmann::json::array({"lm_head", "model.layers.0.self_attn.k_proj"}));
  ASSERT_EQ(qc["config_groups"].size(), 1u);
  const nlohmann::json& g = qc["config_groups"]["group_0"];
  EXPECT_EQ(g["targets"], nlohmann::json::array({"Linear"}));
  EXPECT_TRUE(g["input_activations"].is_null());
  EXPECT_TRUE(g["output_activations"].is_null());
  EXPECT_EQ(g["format"], "pack-quantized");
  const nlohmann::json& wa = g["weights"];
  EXPECT_EQ(wa["num_bits"], 4);
  EXPECT_EQ(wa["type"], "int");
  EXPECT_EQ(wa["symmetric"], true);
  EXPECT_EQ(wa["strategy"], "group");
  EXPECT_EQ(wa["group_size"], 32);
  EXPECT_EQ(wa["dynamic"], false);
  EXPECT_TRUE(wa["actorder"].is_null());
  EXPECT_EQ(wa["observer"], "minmax");

  auto cp = Checkpoint::open(runtime(), out);
  expect_same(a.q, cp->read_module("model.layers.0.self_attn.q_proj")->get(), "q_proj");
  expect_same(b.q, cp->read_module("model.layers.0.self_attn.o_proj")->get(), "o_proj");
  EXPECT_FALSE(cp->read_module("model.layers.0.self_attn.k_proj").has_value());
  EXPECT_EQ(cp->require("model.layers.0.self_attn.q_proj.weight_shape").dtype, XQ_DTYPE_I64);
  std::vector<float> shape = cp->read_f32(cp->require("model.layers.0.self_attn.q_proj.weight_shape"));
  EXPECT_EQ(shape, (std::vector<float>{64, 64}));
}

TEST(CompressedTensors, W8A8ConfigHasDynamicTokenActivations) {
  TempDir d;
  fs::path out = d / "w8a8";
  Spec s;
  s.bits = 8, s.gran = XQ_STRATEGY_CHANNEL, s.act = XQ_ACT_DYNAMIC_TOKEN;
  Canon a = random_canon(s, 3);
  {
    CtWriter w(out);
    w.quantized("model.layers.0.mlp.up_proj", a.q);
    w.finish();
  }
  const nlohmann::json qc = config_of(out)["quantization_config"];
  EXPECT_EQ(qc["format"], "int-quantized");
  const nlohmann::json& g = qc["config_groups"]["group_0"];
  EXPECT_EQ(g["weights"]["strategy"], "channel");
  EXPECT_TRUE(g["weights"]["group_size"].is_null());
  EXPECT_EQ(g["input_activations"]["num_bits"], 8);
  EXPECT_EQ(g["input_activations"]["strategy"], "token");
  EXPECT_EQ(g["input_activations"]["dynamic"], true);
  EXPECT_EQ(g["input_activations"]["symmetric"], true);
  auto cp = Checkpoint::open(runtime(), out);
  EXPECT_EQ(cp->require("model.layers.0.mlp.up_proj.weight").shape, (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(cp->require("model.layers.0.mlp.up_proj.weight_scale").shape, (std::vector<int64_t>{16, 1}));
  expect_same(a.q, cp->read_module("model.layers.0.mlp.up_proj")->get(), "up_proj");
}

TEST(CompressedTensors, PackedWordsMatchHandComputedValues) {
  TempDir d;
  fs::path out = d / "bytes";
  // 4-bit codes -8..7 in one row: unsigned 0..15, nibble i of word 0 holds
  // element i -> words 0x76543210 and 0xFEDCBA98.
  Canon c4;
  c4.q.bits = 4, c4.q.symmetric = 1, c4.q.strategy = XQ_STRATEGY_CHANNEL, c4.q.rows = 1, c4.q.cols = 16;
  c4.q.group_size = 16, c4.q.n_groups = 1, c4.q.scale_dtype = XQ_DTYPE_F32;
  for (int i = 0; i < 16; ++i) c4.codes.push_back(static_cast<int8_t>(i - 8));
  c4.scales = {0.5f};
  c4.bind();
  // 3-bit, dense (>= 0.18): 11 codes of +3 (unsigned 7 = 0b111) fill 33 bits:
  // word 0 = 0xFFFFFFFF, word 1 = 0x1 (element 10 straddles the boundary).
  Canon c3;
  c3.q.bits = 3, c3.q.symmetric = 1, c3.q.strategy = XQ_STRATEGY_CHANNEL, c3.q.rows = 1, c3.q.cols = 11;
  c3.q.group_size = 11, c3.q.n_groups = 1, c3.q.scale_dtype = XQ_DTYPE_F32;
  c3.codes.assign(11, 3);
  c3.scales = {1.0f};
  c3.bind();
  // Asymmetric 4-bit zero points packed along dim 0: rows 0..8 with zp r-8
  // (unsigned r) -> column word 0 = 0x76543210, word 1 = 0x8.
  Canon z;
  z.q.bits = 4, z.q.symmetric = 0, z.q.strategy = XQ_STRATEGY_CHANNEL, z.q.rows = 9, z.q.cols = 8;
  z.q.group_size = 8, z.q.n_groups = 1, z.q.scale_dtype = XQ_DTYPE_F32;
  z.codes.assign(72, 0);
  for (int r = 0; r < 9; ++r) {
    z.zps.push_back(static_cast<int8_t>(r - 8));
    z.scales.push_back(1.0f);
  }
  z.bind();
  {
    CtWriter w(out);
    w.quantized("a", c4.q);
    w.quantized("b", c3.q);
    w.quantized("c", z.q);
    w.finish();
  }
  auto cp = Checkpoint::open(runtime(), out);
  auto words = [&](const std::string& name) {
    xq_tensor_view v = cp->raw(cp->require(name));
    EXPECT_EQ(v.dtype, XQ_DTYPE_I32);
    std::vector<uint32_t> w(v.nbytes / 4);
    std::memcpy(w.data(), v.data, v.nbytes);
    return w;
  };
  EXPECT_EQ(words("a.weight_packed"), (std::vector<uint32_t>{0x76543210u, 0xFEDCBA98u}));
  EXPECT_EQ(words("b.weight_packed"), (std::vector<uint32_t>{0xFFFFFFFFu, 0x1u}));
  EXPECT_EQ(words("c.weight_zero_point"), (std::vector<uint32_t>{0x76543210u, 0x8u}));
  EXPECT_EQ(cp->require("c.weight_zero_point").shape, (std::vector<int64_t>{2, 1}));
  // All codes 0 (unsigned 8): every nibble 8.
  EXPECT_EQ(words("c.weight_packed"), std::vector<uint32_t>(9, 0x88888888u));
}

TEST(CompressedTensors, LegacyPackingIsReadFor3Bit) {
  // A checkpoint written by compressed-tensors <= 0.17: 3-bit codes, 10 per
  // word (bits 30-31 unused). Built by hand; the version selects the layout.
  TempDir d;
  // 21 columns: legacy needs ceil(21/10) = 3 words a row, dense ceil(63/32) = 2.
  const int64_t O = 2, I = 21, W = 3;
  std::vector<int8_t> codes(O * I);
  for (int64_t i = 0; i < O * I; ++i) codes[i] = static_cast<int8_t>((i * 5) % 8 - 4);
  std::vector<uint32_t> packed(O * W, 0);
  for (int64_t r = 0; r < O; ++r)
    for (int64_t c = 0; c < I; ++c)
      packed[r * W + c / 10] |= static_cast<uint32_t>(codes[r * I + c] + 4) << (3 * (c % 10));
  std::vector<float> scale = {0.25f, 0.5f};
  int64_t shape[2] = {O, I};
  st::Writer w(d / "model.safetensors");
  w.add("m.weight_packed", "I32", {O, W}, packed.data(), packed.size() * 4);
  w.add("m.weight_scale", "F32", {O, 1}, scale.data(), 8);
  w.add("m.weight_shape", "I64", {2}, shape, 16);
  w.finish();
  auto config = [&](const char* version) {
    return std::string(R"({"model_type":"llama","quantization_config":{"quant_method":"compressed-tensors",)"
                       R"("format":"pack-quantized","version":")") +
           version +
           R"(","ignore":[],"config_groups":{"g":{"targets":["re:^m$"],"weights":{"num_bits":3,"type":"int",)"
           R"("symmetric":true,"strategy":"channel"}}}}})";
  };
  write_text(d / "config.json", config("0.17.1"));
  {
    auto cp = Checkpoint::open(runtime(), d.path());
    auto q = cp->read_module("m");
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(std::memcmp(q->get().codes, codes.data(), codes.size()), 0);
    EXPECT_EQ(q->get().scales[1], 0.5f);
  }
  // The same file claimed as dense (>= 0.18) has the wrong packed width.
  write_text(d / "config.json", config("0.18.0"));
  auto cp = Checkpoint::open(runtime(), d.path());
  try {
    cp->read_module("m");
    FAIL() << "expected a layout error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_MALFORMED);
    EXPECT_NE(std::string(e.what()).find("weight_packed is [2, 3] but weight_shape [2, 21] at 3 bits needs [2, 2]"),
              std::string::npos) << e.what();
  }
}

TEST(CompressedTensors, TargetsAndIgnoreMatchLikeVllm) {
  // Hand-written config: regex targets (Python re.match: anchored at the
  // start only), exact names beating regexes, and an ignore regex.
  TempDir d;
  Spec s4, s8;
  s4.bits = 4, s4.gran = XQ_STRATEGY_CHANNEL, s4.rows = 4, s4.cols = 8;
  s8.bits = 8, s8.gran = XQ_STRATEGY_CHANNEL, s8.rows = 4, s8.cols = 8;
  Canon a = random_canon(s4, 5), b = random_canon(s8, 6);
  {
    CtWriter w(d / "w");
    w.quantized("model.layers.0.mlp.down_proj", a.q);
    w.quantized("model.layers.0.mlp.up_proj", b.q);
    w.finish();
  }
  nlohmann::json cfg = config_of(d / "w");
  nlohmann::json& groups = cfg["quantization_config"]["config_groups"];
  // Rewrite the targets: the 4-bit group by a regex that is a prefix match,
  // the 8-bit group by exact name; a catch-all regex group would claim both
  // if exact names did not come first.
  for (auto& [name, g] : groups.items()) {
    if (g["weights"]["num_bits"] == 4) g["targets"] = {"re:model\\.layers\\.\\d+\\.mlp\\.down"};
    else g["targets"] = {"model.layers.0.mlp.up_proj", "re:.*"};
  }
  cfg["quantization_config"]["ignore"] = {"re:.*gate_proj$"};
  write_text(d / "w" / "config.json", cfg.dump());
  auto cp = Checkpoint::open(runtime(), d / "w");
  expect_same(a.q, cp->read_module("model.layers.0.mlp.down_proj")->get(), "down (regex prefix)");
  expect_same(b.q, cp->read_module("model.layers.0.mlp.up_proj")->get(), "up (exact)");
  EXPECT_FALSE(cp->read_module("model.layers.0.mlp.gate_proj").has_value());
}

TEST(CompressedTensors, ShardedOutputRoundTrips) {
  TempDir d;
  fs::path out = d / "sharded";
  Spec s;
  s.bits = 4, s.gran = XQ_STRATEGY_GROUP, s.group_size = 16, s.rows = 32, s.cols = 64;
  std::vector<Canon> canons;
  {
    CtWriter w(out, kLlamaConfig, {"lm_head"}, /*max_shard=*/3000);
    for (int i = 0; i < 5; ++i) {
      canons.push_back(random_canon(s, 40 + i));
      w.quantized("model.layers." + std::to_string(i) + ".mlp.up_proj", canons.back().q);
    }
    w.dense("model.norm.weight", std::vector<float>(64, 2.0f), {64});
    w.finish();
  }
  std::set<std::string> files = listing(out);
  EXPECT_TRUE(files.count("model.safetensors.index.json"));
  EXPECT_FALSE(files.count("model.safetensors"));
  EXPECT_TRUE(files.count("model-00001-of-00005.safetensors")) << files.size();
  nlohmann::json index = nlohmann::json::parse(read_text(out / "model.safetensors.index.json"));
  // A module's tensors share a shard.
  for (int i = 0; i < 5; ++i) {
    std::string m = "model.layers." + std::to_string(i) + ".mlp.up_proj";
    EXPECT_EQ(index["weight_map"][m + ".weight_packed"], index["weight_map"][m + ".weight_scale"]);
    EXPECT_EQ(index["weight_map"][m + ".weight_packed"], index["weight_map"][m + ".weight_shape"]);
  }
  auto cp = Checkpoint::open(runtime(), out);
  for (int i = 0; i < 5; ++i)
    expect_same(canons[i].q, cp->read_module("model.layers." + std::to_string(i) + ".mlp.up_proj")->get(), "shard");
  EXPECT_EQ(cp->read_f32(cp->require("model.norm.weight")), std::vector<float>(64, 2.0f));

  // Rewriting the folder as one file replaces the old shards at finish.
  {
    CtWriter w(out);
    w.quantized("model.layers.0.mlp.up_proj", canons[0].q);
    w.finish();
  }
  EXPECT_EQ(listing(out), (std::set<std::string>{"config.json", "model.safetensors"}));
}

TEST(CompressedTensors, AbortLeavesNoFiles) {
  TempDir d;
  Spec s;
  Canon a = random_canon(s, 9);
  {
    CtWriter w(d / "fresh");
    w.quantized("x", a.q);
    w.dense("model.norm.weight", std::vector<float>(64, 1.0f), {64});
    w.abort();
  }
  EXPECT_FALSE(fs::exists(d / "fresh"));  // the writer created it, and removes it
  // An existing folder keeps exactly what it had.
  fs::create_directories(d / "old");
  write_text(d / "old" / "model.safetensors", "previous");
  write_text(d / "old" / "config.json", "{}");
  {
    CtWriter w(d / "old");
    w.quantized("x", a.q);
    // destroyed without finish: same as abort
  }
  EXPECT_EQ(listing(d / "old"), (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(read_text(d / "old" / "model.safetensors"), "previous");
}

TEST(CompressedTensors, InvalidInputsAreRejectedClearly) {
  TempDir d;
  CtWriter w(d / "bad");
  Spec s;
  Canon c = random_canon(s, 11);
  c.codes[5] = 9;  // outside the 4-bit range
  c.bind();
  EXPECT_EQ(w.try_quantized("m", c.q), XQ_ERR_INVALID_ARGUMENT);
  Canon f = random_canon(Spec{4, true, XQ_STRATEGY_GROUP, 16, 64, 32, false, XQ_DTYPE_BF16}, 12);
  f.scales[0] = 0.1f;  // not a bf16 value
  f.bind();
  EXPECT_EQ(w.try_quantized("m", f.q), XQ_ERR_INVALID_ARGUMENT);
  Canon g = random_canon(s, 13);
  g.q.n_groups = 3;  // 64 / 32 = 2
  EXPECT_EQ(w.try_quantized("m", g.q), XQ_ERR_INVALID_ARGUMENT);
  // A ragged last group (172 = 2*64 + 44) is refused unless allowed: the
  // reference library and vLLM cannot load it.
  Canon ragged = random_canon(Spec{4, true, XQ_STRATEGY_GROUP, 8, 172, 64}, 15);
  try {
    w.quantized("r", ragged.q);
    ADD_FAILURE() << "a ragged group was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("172 input columns are not a multiple of group_size 64"), std::string::npos)
        << e.what();
  }
  Canon ok = random_canon(s, 14);
  EXPECT_EQ(w.try_quantized("lm_head", ok.q), XQ_ERR_INVALID_ARGUMENT);  // it is in the ignore list
  EXPECT_EQ(w.try_quantized("m", ok.q), XQ_OK);
  EXPECT_EQ(w.try_quantized("m", ok.q), XQ_ERR_INVALID_ARGUMENT);  // twice
}

TEST(CompressedTensors, CompanionsAreCopiedAndConfigSynthesised) {
  TempDir d;
  fs::path src = d / "src";
  fs::create_directories(src);
  write_text(src / "tokenizer.json", R"({"version":"1.0"})");
  write_text(src / "tokenizer_config.json", R"({"bos_token":"<s>"})");
  write_text(src / "generation_config.json", R"({"do_sample":false})");
  write_text(src / "notes.txt", "not a companion");
  write_text(src / "model.safetensors", "weights are never copied");
  write_text(src / "config.json", "{}");
  Spec s;
  Canon a = random_canon(s, 21);
  {
    CtWriter w(d / "out", kLlamaConfig, {"lm_head"}, 0, src);
    w.quantized("model.layers.0.mlp.up_proj", a.q);
    w.finish();
  }
  EXPECT_EQ(listing(d / "out"), (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json",
                                                      "tokenizer_config.json", "generation_config.json"}));
  EXPECT_EQ(read_text(d / "out" / "tokenizer.json"), R"({"version":"1.0"})");

  // No config.json in the source (a GGUF input): one is synthesised.
  Kv m;
  m.set("architecture", KvValue::string("qwen3"));
  m.set("hidden_size", KvValue::integer(64));
  m.set("intermediate_size", KvValue::integer(128));
  m.set("num_hidden_layers", KvValue::integer(2));
  m.set("num_attention_heads", KvValue::integer(4));
  m.set("num_key_value_heads", KvValue::integer(2));
  m.set("head_dim", KvValue::integer(16));
  m.set("vocab_size", KvValue::integer(100));
  m.set("max_position_embeddings", KvValue::integer(2048));
  m.set("rms_norm_eps", KvValue::number(1e-6));
  m.set("rope_theta", KvValue::number(1e6));
  m.set("tie_word_embeddings", KvValue::boolean(true));
  m.set("eos_token_id", KvValue::integer(7));
  m.set("tokenizer.huggingface_json", KvValue::string(R"({"model":{}})"));
  {
    CtWriter w(d / "synth", "", {}, 0, d / "model.gguf", &m);
    w.dense("model.embed_tokens.weight", std::vector<float>(100 * 64, 0.0f), {100, 64});
    w.quantized("model.layers.0.mlp.up_proj", a.q);
    w.finish();
  }
  nlohmann::json cfg = config_of(d / "synth");
  EXPECT_EQ(cfg["architectures"], nlohmann::json::array({"Qwen3ForCausalLM"}));
  EXPECT_EQ(cfg["model_type"], "qwen3");
  EXPECT_EQ(cfg["head_dim"], 16);
  EXPECT_EQ(cfg["num_key_value_heads"], 2);
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["torch_dtype"], "float32");  // from the dense embedding
  EXPECT_DOUBLE_EQ(cfg["rope_theta"].get<double>(), 1e6);
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "compressed-tensors");
  EXPECT_EQ(read_text(d / "synth" / "tokenizer.json"), R"({"model":{}})");
  // And it loads back through the safetensors loader with those keys.
  auto cp = Checkpoint::open(runtime(), d / "synth");
  EXPECT_EQ(cp->config().get_string("architecture", ""), "qwen3");
  EXPECT_EQ(cp->config().get_int("num_hidden_layers", 0), 2);
  expect_same(a.q, cp->read_module("model.layers.0.mlp.up_proj")->get(), "synth");
}

// A small llama model's canonical keys, as the gguf loader gives them (no
// config.json: the writer synthesises one).
Kv gguf_source_model() {
  Kv m;
  m.set("architecture", KvValue::string("llama"));
  m.set("hidden_size", KvValue::integer(64));
  m.set("intermediate_size", KvValue::integer(128));
  m.set("num_hidden_layers", KvValue::integer(1));
  m.set("num_attention_heads", KvValue::integer(4));
  m.set("vocab_size", KvValue::integer(4));
  return m;
}

// A vocabulary-only GGUF with a byte-level BPE vocabulary: a, b, ab (by the
// merge "a b") and the control token <|endoftext|> (EOS).
void write_bpe_vocab_gguf(const fs::path& path, const std::string& pre) {
  gguf_test::Builder b;
  b.str("general.architecture", "llama");
  b.str("tokenizer.ggml.model", "gpt2");
  b.str("tokenizer.ggml.pre", pre);
  b.strs("tokenizer.ggml.tokens", {"a", "b", "ab", "<|endoftext|>"});
  b.array<int32_t>("tokenizer.ggml.token_type", 5, {1, 1, 1, 3});
  b.strs("tokenizer.ggml.merges", {"a b"});
  b.u32("tokenizer.ggml.eos_token_id", 3);
  gguf_test::Builder::write(path.string(), b.build());
}

TEST(CompressedTensors, GgufSourceGetsSynthesisedTokenizerFiles) {
  TempDir d;
  write_bpe_vocab_gguf(d / "v.gguf", "gpt-2");
  Kv m = gguf_source_model();
  Canon a = random_canon(Spec{}, 41);
  {
    CtWriter w(d / "out", "", {}, 0, d / "v.gguf", &m);
    w.quantized("model.layers.0.mlp.up_proj", a.q);
    w.finish();
  }
  EXPECT_EQ(listing(d / "out"), (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json",
                                                      "tokenizer_config.json", "special_tokens_map.json"}));
  const auto tj = nlohmann::json::parse(read_text(d / "out" / "tokenizer.json"));
  EXPECT_EQ(tj["model"]["merges"], nlohmann::json::parse(R"([["a", "b"]])"));
  EXPECT_EQ(tj["added_tokens"][0]["content"], "<|endoftext|>");
  const auto tc = nlohmann::json::parse(read_text(d / "out" / "tokenizer_config.json"));
  EXPECT_EQ(tc["eos_token"], "<|endoftext|>");
  EXPECT_EQ(tc["add_bos_token"], false);
  // The checkpoint's own tokenizer: no --tokenizer needed.
  auto cp = Checkpoint::open(runtime(), d / "out");
  auto tok = Tokenizer::from_config(cp->config());
  EXPECT_EQ(tok->encode("abab<|endoftext|>", false, true), (std::vector<int32_t>{2, 2, 3}));
}

TEST(CompressedTensors, GgufVocabularyHfCannotExpressCostsOnlyTheTokenizerFiles) {
  TempDir d;
  write_bpe_vocab_gguf(d / "v.gguf", "kimi-k2");  // a custom splitter, no HF regex here
  Kv m = gguf_source_model();
  Canon a = random_canon(Spec{}, 42);
  {
    CtWriter w(d / "out", "", {}, 0, d / "v.gguf", &m);
    w.quantized("model.layers.0.mlp.up_proj", a.q);
    w.finish();
  }
  EXPECT_EQ(listing(d / "out"), (std::set<std::string>{"config.json", "model.safetensors"}));
}

// The AWQ and GPTQ writers share hf_synth.cpp and write the same files.
TEST(CompressedTensors, AwqAndGptqWritersSynthesiseTheTokenizerFilesToo) {
  for (const char* format : {"awq", "gptq"}) {
    TempDir d;
    write_bpe_vocab_gguf(d / "v.gguf", "gpt-2");
    Kv m = gguf_source_model(), params;
    const std::string out = (d / "out").string(), source = (d / "v.gguf").string();
    xq_writer_options o{};
    o.struct_size = sizeof(o);
    o.out_dir = out.c_str();
    o.source_path = source.c_str();
    o.model_config = &m;
    o.params = &params;
    auto& p = runtime().plugins().require(XQ_PLUGIN_FORMAT, format);
    void* w = nullptr;
    check_plugin_call(p.format().writer_open(p.state, &o, &w), std::string(format) + " writer_open");
    Spec s;
    s.symmetric = std::string(format) == "gptq";  // AWQ stores zero points; GPTQ v1 cannot hold z = 0
    Canon a = random_canon(s, 43);
    const xq_status added = p.format().writer_add_quantized(w, "model.layers.0.mlp.up_proj", &a.q);
    if (added != XQ_OK) p.format().writer_abort(w);
    check_plugin_call(added, std::string(format) + " add_quantized");
    check_plugin_call(p.format().writer_finish(w), std::string(format) + " finish");
    const auto names = listing(d / "out");
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
      EXPECT_TRUE(names.count(f)) << format << ": no " << f;
    auto cp = Checkpoint::open(runtime(), d / "out");
    EXPECT_EQ(Tokenizer::from_config(cp->config())->encode("ab"), (std::vector<int32_t>{2})) << format;
  }
}

TEST(CompressedTensors, MalformedStoredModulesGiveClearErrors) {
  TempDir d;
  Spec s;
  s.symmetric = false;
  Canon a = random_canon(s, 31);
  {
    CtWriter w(d / "m");
    w.quantized("x", a.q);
    w.finish();
  }
  // Drop the zero point from the config's point of view: claim 8 bits.
  nlohmann::json cfg = config_of(d / "m");
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 8;
  write_text(d / "m" / "config.json", cfg.dump());
  auto cp = Checkpoint::open(runtime(), d / "m");
  try {
    cp->read_module("x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_MALFORMED);
    EXPECT_NE(std::string(e.what()).find("module 'x': weight_packed is [16, 8]"), std::string::npos) << e.what();
  }
}

// Ground truth from the reference library: the folder XQUANT_CT_REFERENCE_FIXTURE
// names was written by compressed-tensors' own compressors
// (tests/interop/make_ct_fixture.py, run by tests/interop/ct_interop.sh in its
// venv with compressed-tensors 0.20.0, which then runs this test on it):
// 4-bit asymmetric groups (F32 scales), 3-bit channel (BF16 scales, dense
// 3-bit packing), 5-bit asymmetric channel (F16 scales, zero points packed
// along dim 0) and int-quantized W8A8. expected.safetensors holds the codes,
// scales and zero points that library computed. Made at test time, not
// committed: making it needs PyTorch, which only the interop venv has.
TEST(CompressedTensors, ReadsCheckpointsWrittenByTheReferenceLibrary) {
  const char* fixture = std::getenv("XQUANT_CT_REFERENCE_FIXTURE");
  if (!fixture || !*fixture)
    GTEST_SKIP() << "needs a checkpoint written by compressed-tensors itself: tests/interop/ct_interop.sh makes one "
                    "(tests/interop/make_ct_fixture.py) and runs this test on it";
  const fs::path dir = fixture;
  auto cp = Checkpoint::open(runtime(), dir);
  ASSERT_NE(cp->quant_format(), nullptr);
  auto expected = Checkpoint::open(runtime(), dir / "expected.safetensors");
  struct Case {
    const char* module;
    uint32_t bits;
    xq_strategy gran;
    bool symmetric;
    xq_dtype scale_dtype;
    xq_act_scheme act;
  };
  const Case cases[] = {
      {"model.layers.0.mlp.gate_proj", 4, XQ_STRATEGY_GROUP, false, XQ_DTYPE_F32, XQ_ACT_NONE},
      {"model.layers.0.mlp.up_proj", 3, XQ_STRATEGY_CHANNEL, true, XQ_DTYPE_BF16, XQ_ACT_NONE},
      {"model.layers.0.mlp.down_proj", 5, XQ_STRATEGY_CHANNEL, false, XQ_DTYPE_F16, XQ_ACT_NONE},
      {"model.layers.0.self_attn.o_proj", 8, XQ_STRATEGY_CHANNEL, true, XQ_DTYPE_F32, XQ_ACT_DYNAMIC_TOKEN},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.module);
    auto q = cp->read_module(c.module);
    ASSERT_TRUE(q.has_value());
    const xq_quant_tensor& t = q->get();
    EXPECT_EQ(t.bits, c.bits);
    EXPECT_EQ(t.strategy, c.gran);
    EXPECT_EQ(t.symmetric != 0, c.symmetric);
    EXPECT_EQ(t.scale_dtype, c.scale_dtype);
    EXPECT_EQ(t.act_scheme, c.act);
    const std::string m = c.module;
    std::vector<float> codes = expected->read_f32(expected->require(m + ".codes"));
    ASSERT_EQ(static_cast<int64_t>(codes.size()), t.rows * t.cols);
    int64_t bad = 0;
    for (int64_t i = 0; i < t.rows * t.cols; ++i) bad += codes[i] != static_cast<float>(t.codes[i]);
    EXPECT_EQ(bad, 0) << "codes differ from the reference";
    std::vector<float> scales = expected->read_f32(expected->require(m + ".scales"));
    ASSERT_EQ(static_cast<int64_t>(scales.size()), t.rows * t.n_groups);
    EXPECT_EQ(std::memcmp(scales.data(), t.scales, scales.size() * 4), 0) << "scales differ";
    if (!c.symmetric) {
      std::vector<float> zps = expected->read_f32(expected->require(m + ".zero_points"));
      ASSERT_NE(t.zero_points, nullptr);
      for (size_t i = 0; i < zps.size(); ++i) EXPECT_EQ(zps[i], static_cast<float>(t.zero_points[i])) << i;
    }
  }
  EXPECT_FALSE(cp->read_module("lm_head").has_value());

  // And our writer, given those canonical tensors, reproduces the library's
  // stored bytes for every quantized tensor.
  TempDir d;
  {
    CtWriter w(d / "again", read_text(dir / "config.json"));
    for (const auto& c : cases) w.quantized(c.module, cp->read_module(c.module)->get());
    w.finish();
  }
  auto again = Checkpoint::open(runtime(), d / "again");
  for (const auto& t : cp->tensors()) {
    if (t.name == "model.norm.weight") continue;
    const TensorEntry* ours = again->find(t.name);
    ASSERT_NE(ours, nullptr) << t.name;
    EXPECT_EQ(ours->dtype, t.dtype) << t.name;
    EXPECT_EQ(ours->shape, t.shape) << t.name;
    xq_tensor_view a = cp->raw(t), b = again->raw(*ours);
    ASSERT_EQ(a.nbytes, b.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << t.name << " bytes differ from the reference library's";
  }
}

// FP8 E4M3 (float-quantized): every finite code byte, per channel with F32
// scales and dynamic FP8 activations, per tensor with BF16 scales weight-only;
// the stored bytes are the codes as they are, the config is compressed-tensors'
// FP8_DYNAMIC shape, and the reader gives back the same canonical tensor.
namespace {

Canon fp8_canon(xq_strategy st, xq_dtype scale_dtype, bool dynamic_acts, uint32_t seed) {
  std::mt19937 rng(seed);
  Canon c;
  c.q.bits = XQ_BITS_F8_E4M3;
  c.q.symmetric = 1;
  c.q.strategy = st;
  c.q.rows = 16;
  c.q.cols = 64;
  c.q.group_size = 64;
  c.q.n_groups = 1;
  c.q.scale_dtype = scale_dtype;
  c.q.act_scheme = dynamic_acts ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_NONE;
  c.q.act_bits = dynamic_acts ? XQ_BITS_F8_E4M3 : 0;
  c.codes.resize(16 * 64);
  for (size_t i = 0; i < c.codes.size(); ++i) {
    uint8_t b = static_cast<uint8_t>(i < 256 ? i : rng() & 0xFF);  // every byte once, then random
    if ((b & 0x7F) == 0x7F) b ^= 0x01;                               // no NaN
    c.codes[i] = static_cast<int8_t>(b);
  }
  std::uniform_real_distribution<float> sc(1e-5f, 0.01f);
  c.scales.resize(st == XQ_STRATEGY_TENSOR ? 1 : 16);
  for (auto& v : c.scales) v = representable(sc(rng), scale_dtype);
  c.bind();
  return c;
}

// The raw bytes of one stored tensor.
std::vector<unsigned char> stored_bytes(const fs::path& file, const std::string& name, std::string* dtype,
                                        std::vector<int64_t>* shape) {
  st::Header h = st::read_header(file);
  for (const auto& t : h.tensors)
    if (t.name == name) {
      *dtype = t.dtype;
      *shape = t.shape;
      std::ifstream in(file, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(h.data_offset + t.begin));
      std::vector<unsigned char> out(t.nbytes());
      in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
      return out;
    }
  ADD_FAILURE() << name << " not in " << file;
  return {};
}

}  // namespace

TEST(CompressedTensors, Fp8FloatQuantizedRoundTripsByteForByte) {
  TempDir d;
  fs::path out = d / "fp8";
  Canon ch = fp8_canon(XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, true, 5);
  Canon te = fp8_canon(XQ_STRATEGY_TENSOR, XQ_DTYPE_BF16, false, 6);
  {
    CtWriter w(out);
    w.quantized("model.layers.0.mlp.up_proj", ch.q);
    w.quantized("model.layers.0.mlp.down_proj", te.q);
    w.finish();
  }
  const nlohmann::json qc = config_of(out)["quantization_config"];
  EXPECT_EQ(qc["format"], "float-quantized");
  bool saw_channel = false, saw_tensor = false;
  for (const auto& [name, g] : qc["config_groups"].items()) {
    EXPECT_EQ(g["format"], "float-quantized") << name;
    EXPECT_EQ(g["weights"]["type"], "float");
    EXPECT_EQ(g["weights"]["num_bits"], 8);
    EXPECT_EQ(g["weights"]["symmetric"], true);
    EXPECT_EQ(g["weights"]["dynamic"], false);
    if (g["weights"]["strategy"] == "channel") {
      saw_channel = true;
      EXPECT_EQ(g["input_activations"]["type"], "float");
      EXPECT_EQ(g["input_activations"]["num_bits"], 8);
      EXPECT_EQ(g["input_activations"]["strategy"], "token");
      EXPECT_EQ(g["input_activations"]["dynamic"], true);
    } else {
      saw_tensor = g["weights"]["strategy"] == "tensor";
      EXPECT_TRUE(g["input_activations"].is_null());
    }
  }
  EXPECT_TRUE(saw_channel && saw_tensor);

  // Bytes on disk: F8_E4M3 codes unchanged, scales [16, 1] F32 and [1] BF16.
  std::string dt;
  std::vector<int64_t> shape;
  auto wb = stored_bytes(out / "model.safetensors", "model.layers.0.mlp.up_proj.weight", &dt, &shape);
  EXPECT_EQ(dt, "F8_E4M3");
  EXPECT_EQ(shape, (std::vector<int64_t>{16, 64}));
  ASSERT_EQ(wb.size(), ch.codes.size());
  EXPECT_EQ(std::memcmp(wb.data(), ch.codes.data(), wb.size()), 0);
  auto sb = stored_bytes(out / "model.safetensors", "model.layers.0.mlp.up_proj.weight_scale", &dt, &shape);
  EXPECT_EQ(dt, "F32");
  EXPECT_EQ(shape, (std::vector<int64_t>{16, 1}));
  ASSERT_EQ(sb.size(), 64u);
  EXPECT_EQ(std::memcmp(sb.data(), ch.scales.data(), 64), 0);
  sb = stored_bytes(out / "model.safetensors", "model.layers.0.mlp.down_proj.weight_scale", &dt, &shape);
  EXPECT_EQ(dt, "BF16");
  EXPECT_EQ(shape, (std::vector<int64_t>{1}));
  ASSERT_EQ(sb.size(), 2u);
  uint16_t h;
  std::memcpy(&h, sb.data(), 2);
  EXPECT_EQ(sdk::bf16_to_f32(h), te.scales[0]);

  auto cp = Checkpoint::open(runtime(), out);
  expect_same(ch.q, cp->read_module("model.layers.0.mlp.up_proj")->get(), "up_proj (channel, dynamic FP8 acts)");
  expect_same(te.q, cp->read_module("model.layers.0.mlp.down_proj")->get(), "down_proj (tensor, weight-only)");
}

TEST(CompressedTensors, Fp8InvalidInputsAreRejectedClearly) {
  TempDir d;
  Canon g = fp8_canon(XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 9);
  g.q.strategy = XQ_STRATEGY_GROUP;
  g.q.group_size = 32;
  g.q.n_groups = 2;
  Canon nan = fp8_canon(XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 9);
  nan.codes[17] = 0x7F;
  Canon int_acts = fp8_canon(XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, true, 9);
  int_acts.q.act_bits = 8;
  CtWriter w(d / "bad");
  EXPECT_EQ(w.try_quantized("a", g.q), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w.try_quantized("b", nan.q), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w.try_quantized("c", int_acts.q), XQ_ERR_INVALID_ARGUMENT);
  w.abort();
  EXPECT_FALSE(fs::exists(d / "bad" / "model.safetensors"));

  // A stored FP8 weight whose config group claims int weights is reported, not misread.
  fs::path out = d / "mislabelled";
  Canon ok = fp8_canon(XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 10);
  {
    CtWriter ww(out);
    ww.quantized("x", ok.q);
    ww.finish();
  }
  nlohmann::json cfg = config_of(out);
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["type"] = "int";
  write_text(out / "config.json", cfg.dump());
  auto cp = Checkpoint::open(runtime(), out);
  try {
    cp->read_module("x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_MALFORMED);
    EXPECT_NE(std::string(e.what()).find("module 'x': weight is F8_E4M3 but its config group says type 'int'"),
              std::string::npos)
        << e.what();
  }
}

// MoE routed experts get config groups of their own, targeted by anchored
// regexes that mention "experts" (transformers finds the experts' scheme
// that way, and gives every other module the first group without one:
// plugins/compressed_tensors/src/group_targets.hpp), even where a non-expert
// module has the same scheme; every module still reads back exactly, and
// each pattern matches exactly its group's experts.
TEST(CompressedTensors, MoeExpertsGetTheirOwnRegexTargetedGroup) {
  TempDir d;
  fs::path out = d / "out";
  Spec int4;
  int4.bits = 4, int4.gran = XQ_STRATEGY_GROUP, int4.rows = 16, int4.cols = 64, int4.group_size = 32;
  Spec int8;
  int8.bits = 8, int8.gran = XQ_STRATEGY_CHANNEL, int8.rows = 16, int8.cols = 64;
  std::vector<std::pair<std::string, Spec>> cases = {{"model.layers.0.self_attn.q_proj", int4},
                                                     {"model.layers.0.self_attn.k_proj", int8},
                                                     {"model.layers.0.mlp.shared_expert.up_proj", int4}};
  std::set<std::string> experts_int4, experts_int8;
  for (int e = 0; e < 11; ++e)  // 11: the index 10 sorts after 9
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      cases.push_back({"model.layers.0.mlp.experts." + std::to_string(e) + "." + proj, int4});
      experts_int4.insert(cases.back().first);
      cases.push_back({"model.layers.1.mlp.experts." + std::to_string(e) + "." + proj, e == 3 ? int8 : int4});
      (e == 3 ? experts_int8 : experts_int4).insert(cases.back().first);
    }
  std::vector<Canon> canons;
  {
    CtWriter w(out, kLlamaConfig, {}, 0, {}, nullptr, false);
    for (size_t i = 0; i < cases.size(); ++i) {
      canons.push_back(random_canon(cases[i].second, 2000 + static_cast<uint32_t>(i)));
      w.quantized(cases[i].first, canons.back().q);
    }
    w.finish();
  }
  auto cp = Checkpoint::open(runtime(), out);
  for (size_t i = 0; i < cases.size(); ++i) {
    auto got = cp->read_module(cases[i].first);
    ASSERT_TRUE(got.has_value()) << cases[i].first;
    canons[i].bind();
    expect_same(canons[i].q, got->get(), cases[i].first);
  }
  const nlohmann::json qc = config_of(out)["quantization_config"];
  ASSERT_EQ(qc["config_groups"].size(), 4u);  // int4, int8 (plain); int4, int8 (experts)
  std::vector<std::string> probes(experts_int4.begin(), experts_int4.end());
  probes.insert(probes.end(), experts_int8.begin(), experts_int8.end());
  for (const char* other : {"model.layers.0.mlp.experts.11.gate_proj", "model.layers.0.mlp.experts.1.gate_proj_x",
                            "model.layers.0.mlp.shared_expert.up_proj", "model.layers.0.self_attn.q_proj",
                            "xmodel.layers.0.mlp.experts.1.up_proj"})
    probes.push_back(other);
  int expert_groups = 0;
  for (auto& [name, g] : qc["config_groups"].items()) {
    bool regex = false, plain = false;
    std::set<std::string> matched;
    for (const auto& t : g["targets"]) {
      const std::string s = t.get<std::string>();
      if (s.rfind("re:", 0) != 0) {
        plain = true;
        EXPECT_EQ(s.find(".experts."), std::string::npos) << name << ": " << s;
        continue;
      }
      regex = true;
      EXPECT_NE(s.find("experts"), std::string::npos) << s;
      const std::regex re(s.substr(3), std::regex::ECMAScript);
      for (const auto& p : probes)
        if (std::regex_search(p, re, std::regex_constants::match_continuous)) matched.insert(p);
    }
    EXPECT_FALSE(regex && plain) << name << " mixes experts and other modules";
    if (!regex) continue;
    ++expert_groups;
    const int bits = g["weights"]["num_bits"];
    EXPECT_EQ(matched, bits == 4 ? experts_int4 : experts_int8) << name << " " << g["targets"];
  }
  EXPECT_EQ(expert_groups, 2);
}

// W4AFP8 (compressed-tensors' preset of that name, vLLM's
// CompressedTensorsW4A8Fp8): int4 symmetric group weights with dynamic
// per-token FP8 activations. Stored pack-quantized (weight_packed, the
// layout vLLM's scheme loads), config group with float input activations,
// read back to the same canonical tensor with act_bits XQ_BITS_F8_E4M3.
TEST(CompressedTensors, W4Afp8PackQuantizedRoundTripsByteForByte) {
  TempDir d;
  fs::path out = d / "w4afp8";
  Spec s;
  s.bits = 4, s.gran = XQ_STRATEGY_GROUP, s.group_size = 32, s.scale_dtype = XQ_DTYPE_BF16, s.act = XQ_ACT_DYNAMIC_TOKEN;
  Canon a = random_canon(s, 21);
  a.q.act_bits = XQ_BITS_F8_E4M3;
  {
    CtWriter w(out);
    w.quantized("model.layers.0.mlp.up_proj", a.q);
    w.finish();
  }
  const nlohmann::json qc = config_of(out)["quantization_config"];
  EXPECT_EQ(qc["format"], "pack-quantized");
  const nlohmann::json& g = qc["config_groups"]["group_0"];
  EXPECT_EQ(g["weights"]["type"], "int");
  EXPECT_EQ(g["weights"]["num_bits"], 4);
  EXPECT_EQ(g["weights"]["strategy"], "group");
  EXPECT_EQ(g["weights"]["group_size"], 32);
  EXPECT_EQ(g["weights"]["symmetric"], true);
  EXPECT_EQ(g["input_activations"]["type"], "float");
  EXPECT_EQ(g["input_activations"]["num_bits"], 8);
  EXPECT_EQ(g["input_activations"]["strategy"], "token");
  EXPECT_EQ(g["input_activations"]["dynamic"], true);
  EXPECT_EQ(g["input_activations"]["symmetric"], true);

  // Bytes on disk: 8 codes per int32 word, code + 8 in each nibble, the
  // first code in the low nibble (compressed-tensors' pack_to_int32).
  std::string dt;
  std::vector<int64_t> shape;
  auto wb = stored_bytes(out / "model.safetensors", "model.layers.0.mlp.up_proj.weight_packed", &dt, &shape);
  EXPECT_EQ(dt, "I32");
  EXPECT_EQ(shape, (std::vector<int64_t>{16, 8}));
  ASSERT_EQ(wb.size(), 16u * 8u * 4u);
  for (size_t word = 0; word < 16 * 8; ++word) {
    uint32_t expect = 0;
    for (int k = 0; k < 8; ++k) expect |= static_cast<uint32_t>(a.codes[word * 8 + k] + 8) << (4 * k);
    uint32_t got;
    std::memcpy(&got, wb.data() + 4 * word, 4);
    ASSERT_EQ(got, expect) << "word " << word;
  }
  auto sb = stored_bytes(out / "model.safetensors", "model.layers.0.mlp.up_proj.weight_scale", &dt, &shape);
  EXPECT_EQ(dt, "BF16");
  EXPECT_EQ(shape, (std::vector<int64_t>{16, 2}));
  ASSERT_EQ(sb.size(), 16u * 2u * 2u);
  for (size_t i = 0; i < 32; ++i) {
    uint16_t h;
    std::memcpy(&h, sb.data() + 2 * i, 2);
    ASSERT_EQ(sdk::bf16_to_f32(h), a.scales[i]) << "scale " << i;
  }

  auto cp = Checkpoint::open(runtime(), out);
  expect_same(a.q, cp->read_module("model.layers.0.mlp.up_proj")->get(), "up_proj (W4AFP8)");
  EXPECT_EQ(cp->read_module("model.layers.0.mlp.up_proj")->get().act_bits, XQ_BITS_F8_E4M3);
}

TEST(CompressedTensors, W4Afp8InvalidInputsAreRejectedClearly) {
  TempDir d;
  Spec s;
  s.bits = 4, s.act = XQ_ACT_DYNAMIC_TOKEN;
  Canon static_acts = random_canon(s, 22);
  static_acts.q.act_bits = XQ_BITS_F8_E4M3;
  static_acts.q.act_scheme = XQ_ACT_STATIC_TENSOR;
  static_acts.q.input_scale = 0.5f;
  s.symmetric = false;
  Canon asym = random_canon(s, 23);
  asym.q.act_bits = XQ_BITS_F8_E4M3;
  s.symmetric = true, s.bits = 8;
  Canon w8 = random_canon(s, 24);
  w8.q.act_bits = XQ_BITS_F8_E4M3;
  CtWriter w(d / "bad");
  EXPECT_EQ(w.try_quantized("a", static_acts.q), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w.try_quantized("b", asym.q), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w.try_quantized("c", w8.q), XQ_ERR_INVALID_ARGUMENT);
  w.abort();
  EXPECT_FALSE(fs::exists(d / "bad" / "model.safetensors"));

  // A stored file whose float input activations sit beside 8-bit int weights
  // is refused when read, naming the module.
  fs::path out = d / "w8afp8";
  s.bits = 8;
  Canon ok = random_canon(s, 25);
  ok.q.act_bits = 8;
  {
    CtWriter ww(out);
    ww.quantized("x", ok.q);
    ww.finish();
  }
  nlohmann::json cfg = config_of(out);
  cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"]["type"] = "float";
  write_text(out / "config.json", cfg.dump());
  auto cp = Checkpoint::open(runtime(), out);
  try {
    cp->read_module("x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("module 'x': FP8 input activations with int weights are supported as W4AFP8"),
              std::string::npos)
        << e.what();
  }
}
