// test_xq_fp8.cpp: FP8 E4M3 weights in the native `xq` container
// (plugins/xq, bits XQ_BITS_F8_E4M3 of abi/include/xquant/xq_tensor.h).
//
//  * A small file through the real writer reads back through the real
//    loader byte for byte: the codes are stored as the E4M3FN bytes they are
//    (the canonical segment's first rows*cols bytes equal the input), scales
//    in their dtype, no cpu packed segment (the cpu provider has none for
//    FP8), the dynamic FP8 activation scheme kept.
//  * What the ABI says FP8 weights are not (zero points, g_idx, groups) is
//    refused by the writer and, in a manifest that claims it, by the loader,
//    each naming FP8 E4M3 (never "3592 bits"); so are NaN codes.
//  * stories260K quantized with --scheme FP8_DYNAMIC to compressed-tensors
//    and to xq: the same canonical tensors byte for byte, the same logits
//    and perplexity on the cpu provider, and xq -> compressed-tensors ->
//    back gives the same tensors again; AWQ, GPTQ and GGUF refuse it
//    naming FP8 E4M3.
#include "test_runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "core/error.hpp"
#include "engine/model.hpp"
#include "pipeline/output_writer.hpp"

#include "stories_checks.hpp"
#include "subprocess.hpp"
#include "test_files.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/xq_generated.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <tuple>

namespace fs = std::filesystem;
using namespace xquant;
namespace xf = xquant::xqfile;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_xq_fp8 {

namespace {

const fs::path& kModel = test::kStoriesHf;
const fs::path& kVocab = test::kStoriesGguf;
const fs::path& kText = test::kTinyStoriesText;

Runtime& runtime() { return test::quiet_runtime(); }

// Random E4M3FN codes (every byte but the two NaNs), one scale per row
// (channel) or one in all (tensor), in `scale_dtype`.
test::Canon random_fp8(int64_t rows, int64_t cols, xq_strategy strategy, xq_dtype scale_dtype, bool dynamic_acts,
                       uint32_t seed) {
  std::mt19937 rng(seed);
  test::Canon c;
  xq_quant_tensor& q = c.q;
  q.bits = XQ_BITS_F8_E4M3;
  q.symmetric = 1;
  q.strategy = strategy;
  q.rows = rows;
  q.cols = cols;
  q.group_size = cols;
  q.n_groups = 1;
  q.scale_dtype = scale_dtype;
  q.act_scheme = dynamic_acts ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_NONE;
  q.act_bits = dynamic_acts ? XQ_BITS_F8_E4M3 : 0;
  std::uniform_int_distribution<int> byte(0, 255);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) {
    int b = byte(rng);
    while ((b & 0x7F) == 0x7F) b = byte(rng);
    v = static_cast<int8_t>(static_cast<uint8_t>(b));
  }
  std::uniform_real_distribution<float> scale(1e-4f, 1e-2f);
  c.scales.resize(strategy == XQ_STRATEGY_TENSOR ? 1 : static_cast<size_t>(rows));
  for (auto& s : c.scales)
    s = scale_dtype == XQ_DTYPE_BF16 ? sdk::bf16_to_f32(sdk::f32_to_bf16(scale(rng))) : scale(rng);
  c.bind();
  return c;
}

void expect_same_fp8(const xq_quant_tensor& x, const xq_quant_tensor& y, const std::string& m) {
  ASSERT_EQ(x.bits, y.bits) << m;
  ASSERT_EQ(x.strategy, y.strategy) << m;
  ASSERT_EQ(x.rows, y.rows) << m;
  ASSERT_EQ(x.cols, y.cols) << m;
  ASSERT_EQ(x.n_groups, y.n_groups) << m;
  ASSERT_EQ(x.scale_dtype, y.scale_dtype) << m;
  EXPECT_EQ(x.act_scheme, y.act_scheme) << m;
  EXPECT_EQ(x.act_bits, y.act_bits) << m;
  EXPECT_TRUE(x.zero_points == nullptr && y.zero_points == nullptr) << m;
  EXPECT_TRUE(x.g_idx == nullptr && y.g_idx == nullptr) << m;
  EXPECT_EQ(std::memcmp(x.codes, y.codes, static_cast<size_t>(x.rows * x.cols)), 0) << m;
  const size_t ns = x.strategy == XQ_STRATEGY_TENSOR ? 1 : static_cast<size_t>(x.rows);
  EXPECT_EQ(std::memcmp(x.scales, y.scales, ns * 4), 0) << m;
}

struct TinyFp8 {
  test::Canon channel = random_fp8(6, 40, XQ_STRATEGY_CHANNEL, XQ_DTYPE_BF16, true, 11);
  test::Canon tensor = random_fp8(5, 64, XQ_STRATEGY_TENSOR, XQ_DTYPE_F32, false, 12);

  void write(const fs::path& out) {
    Kv config, params;
    OutputWriter w(runtime().plugins().require(XQ_PLUGIN_FORMAT, "xq"), out, "", config, params, {});
    w.add_quantized("model.layers.0.mlp.up_proj", channel.q);
    w.add_quantized("model.layers.0.mlp.down_proj", tensor.q);
    w.finish();
  }
};

TEST(XqFp8, SmallFileReadsBackByteForByte) {
  test::TempDir dir("xq-fp8-small");
  TinyFp8 t;
  t.write(dir / "fp8.xq");
  // tests/fuzz/corpus/xq/fp8 is this file (regenerate with this variable set).
  if (const char* seed = std::getenv("XQUANT_WRITE_XQ_FP8_SEED")) test::write_file(seed, test::read_file(dir / "fp8.xq"));
  auto cp = Checkpoint::open(runtime(), dir / "fp8.xq");
  ASSERT_EQ(cp->tensors().size(), 2u);
  for (auto [name, canon] : {std::pair{"model.layers.0.mlp.up_proj", &t.channel}, {"model.layers.0.mlp.down_proj", &t.tensor}}) {
    const TensorEntry& te = cp->require(std::string(name) + ".weight");
    EXPECT_TRUE(te.has_quantized) << name;
    QuantTensor q = cp->read_quantized(te);
    expect_same_fp8(canon->q, q.get(), name);
    // Stored canonical only, and its code part is the E4M3FN bytes as given.
    auto desc = sdk::make_struct<xq_quant_tensor>();
    auto view = sdk::make_struct<xq_tensor_view>();
    EXPECT_FALSE(cp->read_packed(te, "cpu.int-blocks.v1", desc, view)) << name;
    ASSERT_TRUE(cp->read_packed(te, "canonical", desc, view)) << name;
    EXPECT_EQ(desc.bits, XQ_BITS_F8_E4M3);
    ASSERT_GE(view.nbytes, canon->codes.size());
    EXPECT_EQ(std::memcmp(view.data, canon->codes.data(), canon->codes.size()), 0) << name;
  }
  // Dequantized through the engine's view of the canonical tensor: e4m3 x scale.
  QuantTensor q = cp->read_quantized(cp->require("model.layers.0.mlp.up_proj.weight"));
  const auto& g = q.get();
  const float w13 = sdk::e4m3_to_f32(static_cast<uint8_t>(g.codes[1 * 40 + 3])) * g.scales[1];
  EXPECT_EQ(w13, sdk::e4m3_to_f32(static_cast<uint8_t>(t.channel.codes[43])) * t.channel.scales[1]);
}

TEST(XqFp8, WhatFp8IsNotIsRefusedNamingFp8) {
  test::TempDir dir("xq-fp8-refused");
  Kv config, params;
  LoadedPlugin& xq = runtime().plugins().require(XQ_PLUGIN_FORMAT, "xq");
  auto refusal = [&](const test::Canon& c) {
    OutputWriter w(xq, dir / "refused.xq", "", config, params, {});
    try {
      w.add_quantized("model.layers.0.mlp.up_proj", c.q);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  {
    test::Canon c = random_fp8(4, 32, XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 3);
    c.zps.assign(4, 0);
    c.q.symmetric = 0;
    c.bind();
    EXPECT_NE(refusal(c).find("FP8 E4M3 weights are symmetric"), std::string::npos) << refusal(c);
  }
  {
    test::Canon c = random_fp8(4, 32, XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 4);
    c.q.strategy = XQ_STRATEGY_GROUP;
    c.q.group_size = 16;
    c.q.n_groups = 2;
    c.scales.assign(8, 0.01f);
    c.bind();
    EXPECT_NE(refusal(c).find("FP8 E4M3 weights have tensor or channel scales"), std::string::npos) << refusal(c);
  }
  {
    test::Canon c = random_fp8(4, 32, XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 6);
    c.codes[37] = static_cast<int8_t>(0xFF);
    EXPECT_NE(refusal(c).find("FP8 E4M3 code at element 37 is NaN"), std::string::npos) << refusal(c);
  }
  {
    // Neither integer nor E4M3 codes: named by value, not as "3592 bits".
    test::Canon c = random_fp8(4, 32, XQ_STRATEGY_CHANNEL, XQ_DTYPE_F32, false, 5);
    c.q.bits = XQ_FLOAT_CODE_BITS(XQ_DTYPE_F8_E5M2, 8);
    EXPECT_NE(refusal(c).find("codes 0x0f08 codes: xq stores 2..8-bit integer or FP8 E4M3 codes"), std::string::npos)
        << refusal(c);
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// A manifest that claims an FP8 tensor has zero points (the writer never
// writes one): the loader refuses it naming the field.
TEST(XqFp8, AManifestClaimingAsymmetricFp8IsRefused) {
  test::TempDir dir("xq-fp8-lying");
  TinyFp8 t;
  t.write(dir / "good.xq");
  const std::string good = test::read_file(dir / "good.xq");
  uint64_t off;
  std::memcpy(&off, good.data() + 16, 8);
  const auto* m = xf::GetManifest(good.data() + off);
  flatbuffers::FlatBufferBuilder b;
  std::vector<flatbuffers::Offset<xf::Tensor>> ts;
  for (const auto* tensor : *m->tensors()) {
    std::vector<flatbuffers::Offset<xf::Segment>> segs;
    for (const auto* s : *tensor->segments())
      segs.push_back(xf::CreateSegment(b, b.CreateString(s->layout()->str()), s->range()));
    const auto* q = tensor->quant();
    auto qd = xf::CreateQuantDesc(b, q->bits(), /*symmetric=*/false, q->strategy(), q->rows(), q->cols(), q->group_size(),
                                  q->n_groups(), q->scale_dtype(), false, q->act_scheme(), q->act_bits(), q->input_scale());
    auto name = b.CreateString(tensor->name()->str());
    auto shape = b.CreateVector(std::vector<int64_t>(tensor->shape()->begin(), tensor->shape()->end()));
    auto sv = b.CreateVector(segs);
    ts.push_back(xf::CreateTensor(b, name, tensor->dtype(), shape, qd, sv));
  }
  auto tv = b.CreateVector(ts);
  b.Finish(xf::CreateManifest(b, 1, 0, 0, 0, 0, 0, tv), xf::ManifestIdentifier());
  std::string bad = good.substr(0, off);
  const uint64_t size = b.GetSize();
  bad.append(reinterpret_cast<const char*>(b.GetBufferPointer()), size);
  std::memcpy(bad.data() + 24, &size, 8);
  test::write_file(dir / "bad.xq", bad);
  try {
    (void)Checkpoint::open(runtime(), dir / "bad.xq", "xq");
    ADD_FAILURE() << "opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensors[0] 'model.layers.0.mlp.up_proj.weight'.quant.bits (0x0e08): FP8 E4M3 "
                                         "weights are symmetric"),
              std::string::npos)
        << e.what();
  }
}

// A NaN code in a stored FP8 tensor (the writer refuses them, so only damage
// makes one): reading the tensor is refused, naming the tensor and element.
TEST(XqFp8, ANanCodeInTheFileIsRefusedWhenRead) {
  test::TempDir dir("xq-fp8-nan");
  TinyFp8 t;
  t.write(dir / "good.xq");
  std::string bytes = test::read_file(dir / "good.xq");
  uint64_t off;
  std::memcpy(&off, bytes.data() + 16, 8);
  const auto* m = xf::GetManifest(bytes.data() + off);
  const xf::Tensor* up = m->tensors()->Get(0);
  ASSERT_EQ(up->name()->str(), "model.layers.0.mlp.up_proj.weight");
  const uint64_t codes_at = up->segments()->Get(0)->range()->offset();
  ASSERT_EQ(up->segments()->Get(0)->layout()->str(), "canonical");
  ASSERT_EQ(static_cast<int8_t>(bytes[codes_at + 5]), t.channel.codes[5]);  // the codes start the segment
  bytes[codes_at + 5] = static_cast<char>(0x7F);
  test::write_file(dir / "nan.xq", bytes);
  auto cp = Checkpoint::open(runtime(), dir / "nan.xq", "xq");
  try {
    (void)cp->read_quantized(cp->require("model.layers.0.mlp.up_proj.weight"));
    ADD_FAILURE() << "read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model.layers.0.mlp.up_proj.weight': FP8 E4M3 code at element 5 is NaN"),
              std::string::npos)
        << e.what();
  }
  // The other tensor is untouched and still reads.
  EXPECT_NO_THROW((void)cp->read_quantized(cp->require("model.layers.0.mlp.down_proj.weight")));
}

// ---- stories260K FP8_DYNAMIC: xq against compressed-tensors ----------------------

void expect_same_fp8_checkpoint(const fs::path& ct_path, const fs::path& xq_path) {
  auto ct = Checkpoint::open(runtime(), ct_path), xq = Checkpoint::open(runtime(), xq_path);
  int quantized = 0;
  for (const auto& t : xq->tensors()) {
    if (!t.has_quantized) continue;
    const std::string module = t.name.substr(0, t.name.size() - 7);  // ".weight"
    auto a = ct->read_module(module);
    ASSERT_TRUE(a) << module;
    QuantTensor b = xq->read_quantized(t);
    expect_same_fp8(a->get(), b.get(), module);
    ++quantized;
  }
  EXPECT_EQ(quantized, 35);  // 5 layers x 7 Linears; lm_head is tied
}

TEST(XqFp8, Stories260KFp8DynamicInXqEqualsCompressedTensors) {
  test::TempDir dir("xq-fp8-model");
  for (const auto& [format, out] : {std::pair{"compressed-tensors", "fp8-ct"}, {"xq", "fp8.xq"}}) {
    auto r = test::run_xquant({"quantize", "--model", kModel.string(), "--out", (dir / out).string(), "--scheme",
                               "FP8_DYNAMIC", "--format", format});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  expect_same_fp8_checkpoint(dir / "fp8-ct", dir / "fp8.xq");

  auto ct = Model::open(runtime(), dir / "fp8-ct");
  auto xq = Model::open(runtime(), dir / "fp8.xq");
  const auto la = test::stories_prompt_logits(*ct), lb = test::stories_prompt_logits(*xq);
  ASSERT_EQ(la.size(), lb.size());
  float amax = 0.0f, diff = 0.0f;
  for (size_t i = 0; i < la.size(); ++i) {
    amax = std::max(amax, std::fabs(la[i]));
    diff = std::max(diff, std::fabs(la[i] - lb[i]));
  }
  // The same weights; only the host's stacking of q|k|v and gate|up for a
  // compressed-tensors load (runtime/engine/foreign_blocks.cpp) can change
  // the order of float sums.
  EXPECT_LE(diff, 1e-5f * std::max(1.0f, amax));
  const double pa = test::stories_cli_perplexity(dir / "fp8-ct"), pb = test::stories_cli_perplexity(dir / "fp8.xq");
  EXPECT_GT(pa, 1.0);
  EXPECT_NEAR(pa, pb, 1e-6 * pa);

  // xq -> compressed-tensors -> xq: exact every way.
  for (const auto& [in, out, format] : {std::tuple{"fp8.xq", "back-ct", "compressed-tensors"}, {"back-ct", "again.xq", "xq"}}) {
    auto r = test::run_xquant({"convert", "--model", (dir / in).string(), "--out", (dir / out).string(), "--format",
                               format, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["exact"], 35) << r.out;
  }
  expect_same_fp8_checkpoint(dir / "back-ct", dir / "fp8.xq");
  expect_same_fp8_checkpoint(dir / "fp8-ct", dir / "again.xq");

  // The formats of integer codes refuse FP8 by its name, and write nothing.
  // (stories260K-hf has no tokenizer: the GGUF writer takes the GGUF's.)
  const std::string vocab = "tokenizer=" + kVocab.string();
  for (const auto& [format, out, param] : {std::tuple{"awq", "fp8-awq", ""}, {"gptq", "fp8-gptq", ""},
                                           {"gguf", "fp8.gguf", vocab.c_str()}}) {
    std::vector<std::string> args = {"convert", "--model", (dir / "fp8.xq").string(), "--out", (dir / out).string(),
                                     "--format", format};
    if (*param) args.insert(args.end(), {"--param", param});
    auto r = test::run_xquant(args);
    EXPECT_NE(r.exit_code, 0) << format;
    EXPECT_NE(r.err.find("FP8 E4M3 codes"), std::string::npos) << format << ": " << r.err;
    EXPECT_EQ(r.err.find("3592"), std::string::npos) << format << ": " << r.err;
    EXPECT_FALSE(fs::exists(dir / out)) << format;
  }
}

}  // namespace

}  // namespace test_xq_fp8
