// test_gguf_writer.cpp: the `gguf` format plugin (plugins/gguf_writer).
//
// Block encoders: every type's float quantizer decodes (with the loader's
// own decoders) within its grid's error, and codes on a grid encode exactly.
// End to end: stories260K (GGUF source, and the HF copy with the tokenizer
// taken from the GGUF) goes through RTN pipelines into GGUF files at F32,
// Q8_0 (from int8 sym g32), Q4_0 (from int4 sym g32), Q4_1 (from int4 asym
// g32) and Q4_K; each file is read back with our gguf loader and compared
// with the compressed-tensors output of the same quantization: equal where
// the conversion is exact, within the type's error where it requantizes;
// the engine generates the same greedy text from the lossless GGUFs as from
// the compressed-tensors checkpoints. Bad requests fail with a clear error
// and leave no file.
#include "scoped_env.hpp"
#include "block_encode.hpp"
#include "gguf_file.hpp"
#include "gguf_types.hpp"
#include "test_files.hpp"

#include "core/error.hpp"
#include "core/kv.hpp"
#include "core/runtime.hpp"
#include "plugins/call.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"
#include "checkpoint/checkpoint.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <random>

using namespace xquant;
namespace fs = std::filesystem;
namespace gg = xquant::gguf;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";
const fs::path kHf = kShared / "models/stories260K-hf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

// ---- block encoders ------------------------------------------------------------

double round_trip_error(uint32_t type, const std::vector<float>& x) {
  const gg::TypeInfo* ti = gg::type_info(type);
  std::vector<uint8_t> blocks(x.size() / ti->block_size * ti->type_size);
  gg::encode_floats(type, x.data(), static_cast<int64_t>(x.size()), blocks.data());
  std::vector<float> y(x.size());
  EXPECT_TRUE(gg::dequantize_row(type, blocks.data(), y.data(), static_cast<int64_t>(x.size())));
  double e = 0, r = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (x[i] - y[i]) * (x[i] - y[i]);
    r += x[i] * x[i];
  }
  return std::sqrt(e / r);
}

TEST(GgufBlockEncode, EveryTypeDecodesWithinItsGridError) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> x(256 * 8);
  for (auto& v : x) v = nd(rng) + 0.003f;  // an offset, so the min/offset types have something to fit
  // Relative RMS error of Gaussian weights per bit width: about 2^-bits * 2.
  const std::pair<uint32_t, double> bounds[] = {{gg::kQ8_0, 0.006}, {gg::kQ4_0, 0.12}, {gg::kQ4_1, 0.10},
                                                {gg::kQ5_0, 0.06},  {gg::kQ5_1, 0.05}, {gg::kQ4_K, 0.09},
                                                {gg::kQ5_K, 0.045}, {gg::kQ6_K, 0.025}};
  for (auto [type, bound] : bounds) {
    const double e = round_trip_error(type, x);
    EXPECT_GT(e, 0.0) << gg::type_info(type)->name;
    EXPECT_LT(e, bound) << gg::type_info(type)->name;
  }
  // K-quants beat the legacy type of the same width (their scales are fitted).
  EXPECT_LT(round_trip_error(gg::kQ4_K, x), round_trip_error(gg::kQ4_1, x));
  EXPECT_LT(round_trip_error(gg::kQ5_K, x), round_trip_error(gg::kQ5_1, x));
}

TEST(GgufBlockEncode, CodesOnTheGridEncodeExactly) {
  std::mt19937 rng(3);
  const int64_t n = 64;
  std::vector<int8_t> codes(n);
  std::vector<float> scales = {sdk::round_to_f16(0.0123f), sdk::round_to_f16(0.5f)};
  std::vector<int8_t> zeros = {-3, 5};
  struct Case {
    uint32_t type;
    int bits;
    bool sym;
  };
  for (Case c : {Case{gg::kQ4_0, 4, true}, Case{gg::kQ5_0, 5, true}, Case{gg::kQ8_0, 8, true},
                 Case{gg::kQ4_1, 4, false}, Case{gg::kQ5_1, 5, false}, Case{gg::kQ4_1, 3, true}}) {
    std::uniform_int_distribution<int> d(-(1 << (c.bits - 1)), (1 << (c.bits - 1)) - 1);
    for (auto& v : codes) v = static_cast<int8_t>(d(rng));
    const gg::TypeInfo* ti = gg::type_info(c.type);
    std::vector<uint8_t> blocks(n / 32 * ti->type_size);
    std::vector<int8_t> z = c.sym ? std::vector<int8_t>{0, 0} : zeros;
    // A zero point on this grid: s*z must be an f16 too (0.5 * small ints is).
    if (!c.sym) scales[0] = 0.5f;
    gg::encode_codes(c.type, codes.data(), scales.data(), z.data(), n, blocks.data());
    std::vector<float> y(n);
    ASSERT_TRUE(gg::dequantize_row(c.type, blocks.data(), y.data(), n));
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(y[i], static_cast<float>(codes[i] - z[i / 32]) * scales[i / 32]) << ti->name << " element " << i;
  }
}

TEST(GgufBlockEncode, Q4_1PicksACodeOffsetWhoseMinIsAnF16) {
  // s*(z+8) with this s and z is no f16, but the codes span only [-2, 3], so
  // q = c + k with k = 4 (m = -s*(z+4) = -s) holds them exactly.
  const float s = (1.0f + 1.0f / 1024) / 128;  // an f16 with its last mantissa bit set
  const int8_t z = -3;
  ASSERT_NE(sdk::round_to_f16(s * 5), s * 5);
  std::vector<int8_t> codes(32);
  for (int i = 0; i < 32; ++i) codes[i] = static_cast<int8_t>(i % 6 - 2);
  std::vector<uint8_t> block(gg::type_info(gg::kQ4_1)->type_size);
  gg::encode_codes(gg::kQ4_1, codes.data(), &s, &z, 32, block.data());
  std::vector<float> y(32);
  ASSERT_TRUE(gg::dequantize_row(gg::kQ4_1, block.data(), y.data(), 32));
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], static_cast<float>(codes[i] - z) * s) << i;
}

// ---- pipelines -----------------------------------------------------------------

// Runs an RTN pipeline on `source`; returns "" or the error text.
std::string quantize(const fs::path& source, const std::string& weights, const std::string& format,
                     const fs::path& out, const std::string& params = "", const std::string& targets = "[Linear]") {
  std::string yaml = "model:\n  path: " + source.string() + "\nquantize:\n  - targets: " + targets +
                     "\n    algorithm: rtn\n    weights: " + weights +
                     "\nignore: [lm_head]\noutput:\n  format: " + format + "\n  path: " + out.string() + "\n";
  if (!params.empty()) yaml += "  params: " + params + "\n";
  xq_runtime* r = nullptr;
  EXPECT_EQ(xq_runtime_create(nullptr, &r), XQ_OK) << xq_last_error();
  const xq_status s = xq_run_pipeline_string(r, yaml.c_str(), nullptr);
  std::string err = s == XQ_OK ? "" : std::string(xq_last_error());
  xq_runtime_destroy(r);
  return err;
}

const char* kInt4Sym = "{bits: 4, symmetric: true, group_size: 32, scale_dtype: float16}";
const char* kInt4Asym = "{bits: 4, symmetric: false, group_size: 32, scale_dtype: float16}";
const char* kInt8Sym = "{bits: 8, symmetric: true, group_size: 32, scale_dtype: float16}";

struct Compared {
  int modules = 0, exact = 0;
  double worst_rel = 0;  // largest per-module relative error
};

// Every quantized Linear of the compressed-tensors checkpoint `ct`, dequantized
// canonically, against the same weight read from the GGUF by our loader.
Compared compare_with_ct(const fs::path& gguf, const fs::path& ct) {
  auto g = Checkpoint::open(rt(), gguf);
  auto c = Checkpoint::open(rt(), ct);
  Compared out;
  for (const auto& t : c->tensors()) {
    const std::string suffix = ".weight_scale";
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string module = t.name.substr(0, t.name.size() - suffix.size());
    auto q = c->read_module(module);
    if (!q) continue;
    const xq_quant_tensor& qt = q->get();
    const std::vector<float> got = g->read_f32(g->require(module + ".weight"));
    EXPECT_EQ(got.size(), static_cast<size_t>(qt.rows * qt.cols)) << module;
    if (got.size() != static_cast<size_t>(qt.rows * qt.cols)) continue;
    double e = 0, r = 0;
    bool exact = true;
    for (int64_t i = 0; i < qt.rows; ++i)
      for (int64_t j = 0; j < qt.cols; ++j) {
        const int64_t k = i * qt.n_groups + j / qt.group_size;
        const float w = static_cast<float>(qt.codes[i * qt.cols + j] - (qt.zero_points ? qt.zero_points[k] : 0)) *
                        qt.scales[k];
        const float v = got[i * qt.cols + j];
        exact = exact && v == w;
        e += (double(v) - w) * (double(v) - w);
        r += double(w) * w;
      }
    ++out.modules;
    out.exact += exact;
    out.worst_rel = std::max(out.worst_rel, std::sqrt(e / r));
  }
  return out;
}

std::string meta_string(const fs::path& file, const std::string& key) {
  gg::File f(file.string());
  const gg::Value* v = f.find(key);
  return v && v->type == gg::VType::STRING ? v->s : "";
}

uint32_t tensor_type(const fs::path& file, const std::string& name) {
  gg::File f(file.string());
  for (const auto& t : f.tensors())
    if (t.name == name) return t.type;
  ADD_FAILURE() << name << " not in " << file;
  return ~0u;
}

// Greedy text and first-step logits of two models must agree.
void expect_same_generation(const fs::path& a, const fs::path& b) {
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto ma = Model::open(rt(), a, mo);
  auto mb = Model::open(rt(), b, mo);
  // The five 172-column down_proj rows hold no whole 32-block: the GGUF
  // stores them as exact F32, the checkpoint as per-channel codes.
  EXPECT_EQ(ma->quantized_linears() + 5, mb->quantized_linears());
  GenerateOptions go;
  go.n_tokens = 24;
  const std::string ta = generate(*ma, "Once upon a time", go).full_text;
  EXPECT_EQ(ta, generate(*mb, "Once upon a time", go).full_text);
  std::printf("greedy: %s\n", ta.c_str());
  std::vector<int32_t> ids = {1, 403, 407, 261, 378, 292};
  KvCache ca(ma->arch(), 16), cb(mb->arch(), 16);
  auto la = ma->forward({{&ca, ids.data(), static_cast<int64_t>(ids.size()), true}});
  auto lb = mb->forward({{&cb, ids.data(), static_cast<int64_t>(ids.size()), true}});
  ASSERT_EQ(la.size(), lb.size());
  double worst = 0;
  for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, double(std::fabs(la[i] - lb[i])));
  EXPECT_LE(worst, 1e-4);
}

TEST(GgufWriter, F32IsTheCanonicalDequantizationAndCarriesTheGgufMetadata) {
  test::TempDir dir("xquant-gguf-writer");
  ASSERT_EQ(quantize(kGguf, kInt4Sym, "gguf", dir / "f32.gguf", "{type: F32}"), "");
  ASSERT_EQ(quantize(kGguf, kInt4Sym, "compressed-tensors", dir / "ct"), "");
  const Compared c = compare_with_ct(dir / "f32.gguf", dir / "ct");
  EXPECT_EQ(c.modules, 35);
  EXPECT_EQ(c.exact, c.modules);

  gg::File out((dir / "f32.gguf").string()), src(kGguf.string());
  EXPECT_EQ(out.version(), 3u);
  EXPECT_EQ(meta_string(dir / "f32.gguf", "general.architecture"), "llama");
  EXPECT_EQ(meta_string(dir / "f32.gguf", "general.name"), "llama");  // the source's
  EXPECT_EQ(out.find("general.file_type")->i, 0);                      // all F32
  for (const char* k : {"llama.context_length", "llama.embedding_length", "llama.block_count",
                        "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv"})
    ASSERT_TRUE(out.find(k) && src.find(k) && out.find(k)->i == src.find(k)->i) << k;
  EXPECT_FLOAT_EQ(out.find("llama.attention.layer_norm_rms_epsilon")->f,
                  src.find("llama.attention.layer_norm_rms_epsilon")->f);
  // The tokenizer is the source's, key by key.
  for (const auto& [key, v] : src.kv())
    if (key.rfind("tokenizer.", 0) == 0) {
      const gg::Value* w = out.find(key);
      ASSERT_TRUE(w) << key;
      EXPECT_EQ(w->type, v.type) << key;
      EXPECT_EQ(out.strings(*w), src.strings(v)) << key;  // long string arrays are read from the file
      EXPECT_EQ(w->floats, v.floats) << key;
      EXPECT_EQ(w->ints, v.ints) << key;
    }
  // Dense tensors are the source's bytes (q/k permuted back to llama.cpp's order).
  for (const auto& t : src.tensors()) {
    if (t.name.find("ffn_down") != std::string::npos) continue;  // quantized
    if (t.name.find("attn_") != std::string::npos && t.name.find("norm") == std::string::npos) continue;
    if (t.name.find("ffn_gate") != std::string::npos || t.name.find("ffn_up") != std::string::npos) continue;
    bool found = false;
    for (const auto& u : out.tensors())
      if (u.name == t.name) {
        found = true;
        ASSERT_EQ(u.nbytes, t.nbytes) << t.name;
        EXPECT_EQ(std::memcmp(out.tensor_data(u), src.tensor_data(t), t.nbytes), 0) << t.name;
      }
    EXPECT_TRUE(found) << t.name;
  }
}

TEST(GgufWriter, Q8_0FromInt8SymG32IsLosslessFromTheHfCopy) {
  // GGUF blocks against packed codes within float rounding: float prefill
  // on both (the default integer prefill is for packed codes only).
  const xquant::test::FloatPrefill float_prefill;
  test::TempDir dir("xquant-gguf-writer");
  ASSERT_EQ(quantize(kHf, kInt8Sym, "gguf", dir / "q8.gguf", "{type: Q8_0, exact: true, tokenizer: " + kGguf.string() + "}"), "");
  ASSERT_EQ(quantize(kHf, kInt8Sym, "compressed-tensors", dir / "ct"), "");
  EXPECT_EQ(tensor_type(dir / "q8.gguf", "blk.0.attn_q.weight"), gg::kQ8_0);
  EXPECT_EQ(tensor_type(dir / "q8.gguf", "blk.0.ffn_down.weight"), gg::kF32);  // 172 columns: no whole blocks
  const Compared c = compare_with_ct(dir / "q8.gguf", dir / "ct");
  EXPECT_EQ(c.modules, 35);
  EXPECT_EQ(c.exact, c.modules);
  // The HF copy's weights went through the llama Q/K permutation: the engine
  // reading the GGUF (which undoes it) must match the checkpoint.
  expect_same_generation(dir / "q8.gguf", dir / "ct");
}

TEST(GgufWriter, DenseTensorsFromTheHfCopyAreTheBytesLlamaCppsConverterWrote) {
  // stories260K.gguf came from llama.cpp's converter and the HF copy from it:
  // writing the HF copy back must give the same bytes, q/k rows included.
  test::TempDir dir("xquant-gguf-writer");
  ASSERT_EQ(quantize(kHf, "{bits: 8, symmetric: true, strategy: channel}", "gguf", dir / "hf.gguf",
                     "{tokenizer: " + kGguf.string() + "}", "[\"re:.*down_proj\"]"),
            "");
  gg::File out((dir / "hf.gguf").string()), src(kGguf.string());
  int compared = 0;
  for (const auto& u : out.tensors()) {
    if (u.name.find("ffn_down") != std::string::npos) continue;  // quantized
    for (const auto& t : src.tensors())
      if (t.name == u.name) {
        ASSERT_EQ(u.nbytes, t.nbytes) << t.name;
        EXPECT_EQ(std::memcmp(out.tensor_data(u), src.tensor_data(t), t.nbytes), 0) << t.name;
        ++compared;
      }
  }
  EXPECT_EQ(compared, 2 + 5 * 8);  // token_embd, output_norm; per layer q, k, v, o, gate, up and two norms
}

TEST(GgufWriter, Q4_0FromInt4SymG32IsLosslessAndReadsBackAsTheSameCodes) {
  // GGUF blocks against packed codes within float rounding: float prefill
  // on both (the default integer prefill is for packed codes only).
  const xquant::test::FloatPrefill float_prefill;
  test::TempDir dir("xquant-gguf-writer");
  ASSERT_EQ(quantize(kGguf, kInt4Sym, "gguf", dir / "q4.gguf", "{exact: true}"), "");
  ASSERT_EQ(quantize(kGguf, kInt4Sym, "compressed-tensors", dir / "ct"), "");
  EXPECT_EQ(tensor_type(dir / "q4.gguf", "blk.2.ffn_up.weight"), gg::kQ4_0);
  EXPECT_EQ(gg::File((dir / "q4.gguf").string()).find("general.file_type")->i, 2);  // LLAMA_FTYPE_MOSTLY_Q4_0
  const Compared c = compare_with_ct(dir / "q4.gguf", dir / "ct");
  EXPECT_EQ(c.exact, c.modules);
  // Our loader reads Q4_0 as canonical codes: the very codes and scales we wrote.
  auto g = Checkpoint::open(rt(), dir / "q4.gguf");
  auto ct = Checkpoint::open(rt(), dir / "ct");
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.4.mlp.gate_proj"}) {
    QuantTensor a = g->read_quantized(g->require(std::string(m) + ".weight"));
    auto b = ct->read_module(m);
    ASSERT_TRUE(b);
    ASSERT_EQ(a->rows * a->cols, (*b)->rows * (*b)->cols);
    EXPECT_EQ(std::memcmp(a->codes, (*b)->codes, a->rows * a->cols), 0) << m;
    for (int64_t i = 0; i < a->rows * a->n_groups; ++i) ASSERT_EQ(a->scales[i], (*b)->scales[i]) << m;
  }
  expect_same_generation(dir / "q4.gguf", dir / "ct");
}

TEST(GgufWriter, GroupsOfSeveralBlocksAreExactQ4_0Too) {
  // One scale per 64 columns is one scale repeated over two 32-blocks.
  test::TempDir dir("xquant-gguf-writer");
  const char* g64 = "{bits: 4, symmetric: true, group_size: 64, scale_dtype: float16}";
  ASSERT_EQ(quantize(kGguf, g64, "gguf", dir / "q4.gguf", "{type: Q4_0, exact: true}"), "");
  ASSERT_EQ(quantize(kGguf, g64, "compressed-tensors", dir / "ct"), "");
  EXPECT_EQ(tensor_type(dir / "q4.gguf", "blk.0.attn_output.weight"), gg::kQ4_0);
  const Compared c = compare_with_ct(dir / "q4.gguf", dir / "ct");
  EXPECT_EQ(c.modules, 35);
  EXPECT_EQ(c.exact, c.modules);
}

TEST(GgufWriter, Q4_1FromInt4AsymG32KeepsTheCodes) {
  test::TempDir dir("xquant-gguf-writer");
  ASSERT_EQ(quantize(kGguf, kInt4Asym, "gguf", dir / "q41.gguf", "{type: Q4_1}"), "");
  ASSERT_EQ(quantize(kGguf, kInt4Asym, "compressed-tensors", dir / "ct"), "");
  EXPECT_EQ(tensor_type(dir / "q41.gguf", "blk.1.attn_v.weight"), gg::kQ4_1);
  const Compared c = compare_with_ct(dir / "q41.gguf", dir / "ct");
  EXPECT_EQ(c.modules, 35);
  // The per-block min -s*(z+8) is rounded to f16 where it is not one: an
  // error of at most half an f16 ulp of the min, far below a requantization's.
  EXPECT_LT(c.worst_rel, 2e-3);
  std::printf("Q4_1: %d of %d Linears exact, worst relative error %.3g\n", c.exact, c.modules, c.worst_rel);
}

TEST(GgufWriter, Q4_KRequantizesWithinItsErrorAndFallsBackForShortRows) {
  test::TempDir dir("xquant-gguf-writer");
  ASSERT_EQ(quantize(kGguf, "{bits: 8, symmetric: true, strategy: channel}", "gguf", dir / "q4k.gguf", "{type: Q4_K}"), "");
  ASSERT_EQ(quantize(kGguf, "{bits: 8, symmetric: true, strategy: channel}", "compressed-tensors", dir / "ct"), "");
  // 64-column rows are no whole 256-element super-block: llama.cpp's fallback Q5_0.
  EXPECT_EQ(tensor_type(dir / "q4k.gguf", "blk.0.attn_q.weight"), gg::kQ5_0);
  const Compared c = compare_with_ct(dir / "q4k.gguf", dir / "ct");
  EXPECT_EQ(c.modules, 35);
  EXPECT_LT(c.exact, c.modules);
  EXPECT_LT(c.worst_rel, 0.06);
  EXPECT_GT(c.worst_rel, 0.0);
}

TEST(GgufWriter, AnHfBpeTokenizerBecomesGgufVocabulary) {
  test::TempDir dir("xquant-gguf-writer");
  // The HF copy plus a small byte-level BPE tokenizer.json (Llama 3 split).
  const fs::path model = dir / "model";
  fs::create_directories(model);
  for (const char* f : {"config.json", "model.safetensors"}) fs::create_symlink(kHf / f, model / f);
  const std::string tokenizer = R"({
    "added_tokens": [{"id": 5, "content": "<|end|>", "special": true},
                     {"id": 6, "content": "<tool>", "special": false}],
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|end|>", "type_id": 0}},
                                                               {"Sequence": {"id": "A", "type_id": 0}}]},
    "model": {"type": "BPE", "vocab": {"h": 0, "i": 1, "hi": 2, "\u0120": 3, "\u0120hi": 4},
              "merges": [["h", "i"], "\u0120 hi"]}})";
  test::write_file(model / "tokenizer.json", tokenizer);
  ASSERT_EQ(quantize(model, kInt8Sym, "gguf", dir / "out.gguf"), "");
  gg::File f((dir / "out.gguf").string());
  EXPECT_EQ(f.find("tokenizer.ggml.model")->s, "gpt2");
  EXPECT_EQ(f.find("tokenizer.ggml.pre")->s, "llama-bpe");
  EXPECT_EQ(f.strings(*f.find("tokenizer.ggml.tokens")),
            (std::vector<std::string>{"h", "i", "hi", "\xC4\xA0", "\xC4\xA0hi", "<|end|>", "<tool>"}));
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->ints, (std::vector<int64_t>{1, 1, 1, 1, 1, 3, 4}));
  EXPECT_EQ(f.strings(*f.find("tokenizer.ggml.merges")), (std::vector<std::string>{"h i", "\xC4\xA0 hi"}));
  EXPECT_EQ(f.find("tokenizer.ggml.add_bos_token")->i, 1);
  EXPECT_EQ(f.find("tokenizer.ggml.bos_token_id")->i, 1);  // config.json's
  EXPECT_FALSE(f.find("tokenizer.chat_template"));
  // tokenizer_config.json beside it: the chat template, and its add_bos_token wins.
  test::write_file(model / "tokenizer_config.json",
                   R"({"add_bos_token": false, "add_eos_token": true, "chat_template": "{{ messages }}"})");
  ASSERT_EQ(quantize(model, kInt8Sym, "gguf", dir / "out.gguf"), "");
  gg::File g((dir / "out.gguf").string());
  EXPECT_EQ(g.find("tokenizer.ggml.add_bos_token")->i, 0);
  EXPECT_EQ(g.find("tokenizer.ggml.add_eos_token")->i, 1);
  EXPECT_EQ(g.find("tokenizer.chat_template")->s, "{{ messages }}");
  // A unigram (SentencePiece) tokenizer.json is refused by name.
  test::write_file(model / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
  const std::string e = quantize(model, kInt8Sym, "gguf", dir / "out2.gguf");
  EXPECT_NE(e.find("only BPE"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir / "out2.gguf"));
}

TEST(GgufWriter, BadRequestsFailClearlyAndLeaveNoFile) {
  test::TempDir dir("xquant-gguf-writer");
  std::string e = quantize(kGguf, kInt4Asym, "gguf", dir / "x.gguf", "{type: Q4_0, exact: true}");
  EXPECT_NE(e.find("zero point"), std::string::npos) << e;
  EXPECT_NE(e.find("exact"), std::string::npos) << e;
  e = quantize(kGguf, "{bits: 4, symmetric: true, group_size: 16, scale_dtype: float16}", "gguf", dir / "x.gguf",
               "{type: Q4_0, exact: true}");
  EXPECT_NE(e.find("group 16"), std::string::npos) << e;
  e = quantize(kGguf, kInt4Sym, "gguf", dir / "x.gguf", "{type: Q3_K}");
  EXPECT_NE(e.find("Q3_K"), std::string::npos) << e;
  e = quantize(kGguf, kInt4Sym, "gguf", dir / "folder");
  EXPECT_NE(e.find(".gguf"), std::string::npos) << e;
  e = quantize(kHf, kInt4Sym, "gguf", dir / "x.gguf");
  EXPECT_NE(e.find("tokenizer"), std::string::npos) << e;
  // A folder the writer made for the file goes too when the run fails.
  e = quantize(kGguf, kInt4Asym, "gguf", dir / "new" / "x.gguf", "{type: Q4_0, exact: true}");
  EXPECT_NE(e.find("zero point"), std::string::npos) << e;
  e = quantize(kHf, kInt4Sym, "gguf", dir / "new" / "x.gguf");  // fails while opening
  EXPECT_NE(e.find("tokenizer"), std::string::npos) << e;
  // Nothing written, no temporaries left.
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(GgufWriter, TemporariesOfAKilledWriterAreRemovedByTheNextOne) {
  test::TempDir dir("xquant-gguf-writer");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid that no process has now
  const std::string dead = std::to_string(child), live = std::to_string(::getpid());
  const std::vector<std::string> stale = {".q4.gguf." + dead + ".0.data", ".q4.gguf." + dead + ".1.tmp"};
  const std::vector<std::string> kept = {".q4.gguf." + live + ".7.data",      // a live writer's
                                         ".other.gguf." + dead + ".0.data",   // another file's
                                         ".q4.gguf." + dead + ".0.partial"};  // not our pattern
  for (const auto& n : stale) test::write_file(dir / n, "partial");
  for (const auto& n : kept) test::write_file(dir / n, "keep");
  ASSERT_EQ(quantize(kGguf, kInt4Sym, "gguf", dir / "q4.gguf"), "");
  for (const auto& n : stale) EXPECT_FALSE(fs::exists(dir / n)) << n;
  for (const auto& n : kept) EXPECT_EQ(test::read_file(dir / n), "keep") << n;
}

// ---- the plugin called directly ---------------------------------------------------

// A writer opened on the `gguf` format plugin with stories260K's config.
class DirectWriter {
 public:
  explicit DirectWriter(const fs::path& out) : out_(out.string()), source_(kGguf.string()) {
    cp_ = Checkpoint::open(rt(), kGguf);
    xq_writer_options o{};
    o.struct_size = sizeof(o);
    o.out_dir = out_.c_str();
    o.source_path = source_.c_str();
    o.model_config = &cp_->config();
    o.params = &params_;
    const char* none[] = {nullptr};
    o.ignored_modules = none;
    check_plugin_call(plugin().format().writer_open(plugin().state, &o, &w_), "writer_open");
  }
  ~DirectWriter() { plugin().format().writer_abort(w_); }
  // "" or the error message.
  std::string add(const char* module, const xq_quant_tensor& q) {
    try {
      check_plugin_call(plugin().format().writer_add_quantized(w_, module, &q), "add_quantized");
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  }

 private:
  static LoadedPlugin& plugin() { return rt().plugins().require(XQ_PLUGIN_FORMAT, "gguf"); }
  std::string out_, source_;
  std::unique_ptr<Checkpoint> cp_;
  Kv params_;
  void* w_ = nullptr;
};

TEST(GgufWriterPlugin, InconsistentCanonicalTensorsAreRefusedNotRead) {
  test::TempDir dir("xquant-gguf-writer");
  std::vector<int8_t> codes(64 * 64, 1);
  std::vector<float> scales(64 * 2, 0.01f);
  std::vector<int32_t> g_idx(64, 0);
  g_idx[9] = 7;  // only groups 0 and 1 exist
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = 4;
  q.symmetric = 1;
  q.strategy = XQ_STRATEGY_GROUP;
  q.rows = 64;
  q.cols = 64;
  q.group_size = 32;
  q.n_groups = 2;
  q.codes = codes.data();
  q.scales = scales.data();
  q.scale_dtype = XQ_DTYPE_F32;
  {
    DirectWriter w(dir / "x.gguf");
    EXPECT_EQ(w.add("model.layers.0.self_attn.o_proj", q), "");  // the consistent tensor goes in
    q.g_idx = g_idx.data();
    std::string e = w.add("model.layers.0.mlp.up_proj", q);
    EXPECT_NE(e.find("g_idx[9] = 7"), std::string::npos) << e;
    q.g_idx = nullptr;
    q.group_size = 0;
    e = w.add("model.layers.0.mlp.up_proj", q);
    EXPECT_NE(e.find("group_size 0"), std::string::npos) << e;
    q.group_size = 32;
    e = w.add("model.layers.0.mlp.router", q);
    EXPECT_NE(e.find("no GGUF name"), std::string::npos) << e;
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));  // aborted: no file, no temporaries
}

}  // namespace
