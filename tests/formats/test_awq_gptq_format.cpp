// test_awq_gptq_format.cpp: the `awq` and `gptq` format plugins.
//
// Random canonical tensors go through the real writer (the plugin's vtable,
// as the pipeline and `xquant convert` call it) and come back through
// Checkpoint (the safetensors loader) + read_module: codes, scales, zero
// points and g_idx must be identical. The stored words are pinned to values
// packed by hand from AutoAWQ's WQLinear_GEMM.from_linear (order_map
// [0,2,4,6,1,3,5,7]) and AutoGPTQ's pack() (v1 stores z - 1), and malformed
// checkpoints must fail with the tensor's name.
#include "test_runtime.hpp"
#include "core/error.hpp"
#include "core/kv.hpp"
#include "core/runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "plugins/call.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/safetensors.hpp>

#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

namespace fs = std::filesystem;
using namespace xquant;
namespace st = xquant::sdk::safetensors;

namespace {

Runtime& runtime() { return test::quiet_runtime(); }

const char* kConfig = R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,
  "intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,
  "rms_norm_eps":1e-05,"rope_theta":10000.0,"torch_dtype":"float16","tie_word_embeddings":true})";

using test::Canon;

struct Spec {
  uint32_t bits = 4;
  bool symmetric = false;
  bool channel = false;
  int64_t rows = 16, cols = 64, group_size = 32;
  bool g_idx = false;
  xq_dtype scale_dtype = XQ_DTYPE_F16;
};

Canon random_canon(const Spec& s, uint32_t seed) {
  std::mt19937 rng(seed);
  Canon c;
  c.q.bits = s.bits;
  c.q.symmetric = s.symmetric ? 1 : 0;
  c.q.strategy = s.channel ? XQ_STRATEGY_CHANNEL : XQ_STRATEGY_GROUP;
  c.q.rows = s.rows;
  c.q.cols = s.cols;
  c.q.group_size = s.channel ? s.cols : s.group_size;
  c.q.n_groups = s.channel ? 1 : s.cols / s.group_size;
  c.q.scale_dtype = s.scale_dtype;
  const int lo = -(1 << (s.bits - 1)), hi = (1 << (s.bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::uniform_real_distribution<float> sc(1e-3f, 0.5f);
  c.codes.resize(static_cast<size_t>(s.rows * s.cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  c.codes.front() = static_cast<int8_t>(lo);
  c.codes.back() = static_cast<int8_t>(hi);
  const int64_t ns = s.rows * c.q.n_groups;
  c.scales.resize(static_cast<size_t>(ns));
  for (auto& v : c.scales) {
    v = sc(rng);
    if (s.scale_dtype == XQ_DTYPE_F16) v = sdk::round_to_f16(v);
    if (s.scale_dtype == XQ_DTYPE_BF16) v = sdk::round_to_bf16(v);
  }
  if (!s.symmetric) {
    c.zps.resize(static_cast<size_t>(ns));
    // lo + 1: unsigned 0 has no GPTQ v1 encoding (tested on its own).
    std::uniform_int_distribution<int> zp(lo + 1, hi);
    for (auto& v : c.zps) v = static_cast<int8_t>(zp(rng));
    c.zps.back() = static_cast<int8_t>(hi);
  }
  if (s.g_idx) {
    c.gidx.resize(static_cast<size_t>(s.cols));
    for (int64_t i = 0; i < s.cols; ++i) c.gidx[static_cast<size_t>(i)] = static_cast<int32_t>(i / s.group_size);
    std::shuffle(c.gidx.begin(), c.gidx.end(), rng);
  }
  c.bind();
  return c;
}

// Writes `modules` through the named plugin's writer vtable; returns the
// status of the first failing call (the writer is aborted then).
xq_status write_checkpoint(const std::string& format, const fs::path& out, const std::vector<std::pair<std::string, const xq_quant_tensor*>>& modules,
                           const Kv& params = {}, std::string* error = nullptr) {
  LoadedPlugin& f = runtime().plugins().require(XQ_PLUGIN_FORMAT, format);
  Kv config;
  config.set("config_json", KvValue::string(kConfig));
  const char* ignored[] = {"lm_head", nullptr};
  const std::string out_s = out.string();
  xq_writer_options o{};
  o.struct_size = sizeof(o);
  o.out_dir = out_s.c_str();
  o.model_config = &config;
  o.params = &params;
  o.ignored_modules = ignored;
  void* w = nullptr;
  xq_status s = f.format().writer_open(f.state, &o, &w);
  if (s != XQ_OK) return s;
  std::vector<uint16_t> embed(512 * 64, 0x3c00);
  xq_tensor_view v{};
  v.struct_size = sizeof(v);
  v.dtype = XQ_DTYPE_F16;
  v.ndim = 2;
  v.shape[0] = 512;
  v.shape[1] = 64;
  v.data = embed.data();
  v.nbytes = embed.size() * 2;
  s = f.format().writer_add_dense(w, "model.embed_tokens.weight", &v);
  for (const auto& [name, q] : modules)
    if (s == XQ_OK) s = f.format().writer_add_quantized(w, name.c_str(), q);
  if (s != XQ_OK) {
    if (error) *error = last_error();
    f.format().writer_abort(w);
    return s;
  }
  s = f.format().writer_finish(w);
  if (s != XQ_OK && error) *error = last_error();
  return s;
}

void expect_same(const xq_quant_tensor& want, const xq_quant_tensor& got) {
  ASSERT_EQ(got.bits, want.bits);
  ASSERT_EQ(got.symmetric, want.symmetric);
  ASSERT_EQ(got.strategy, want.strategy);
  ASSERT_EQ(got.rows, want.rows);
  ASSERT_EQ(got.cols, want.cols);
  ASSERT_EQ(got.group_size, want.group_size);
  ASSERT_EQ(got.n_groups, want.n_groups);
  ASSERT_EQ(got.scale_dtype, want.scale_dtype);
  const size_t n = static_cast<size_t>(want.rows * want.cols), ns = static_cast<size_t>(want.rows * want.n_groups);
  EXPECT_EQ(std::memcmp(got.codes, want.codes, n), 0);
  EXPECT_EQ(std::memcmp(got.scales, want.scales, ns * 4), 0);
  ASSERT_EQ(got.zero_points == nullptr, want.zero_points == nullptr);
  if (want.zero_points) {
    EXPECT_EQ(std::memcmp(got.zero_points, want.zero_points, ns), 0);
  }
  ASSERT_EQ(got.g_idx == nullptr, want.g_idx == nullptr);
  if (want.g_idx) {
    EXPECT_EQ(std::memcmp(got.g_idx, want.g_idx, static_cast<size_t>(want.cols) * 4), 0);
  }
}

void round_trip(const std::string& format, const Spec& spec, const Kv& params = {}) {
  test::TempDir dir("xq-awqgptq");
  Canon c = random_canon(spec, 7);
  ASSERT_EQ(write_checkpoint(format, dir / "out", {{"model.layers.0.self_attn.q_proj", &c.q}}, params), XQ_OK)
      << last_error();
  auto cp = Checkpoint::open(runtime(), dir / "out");
  ASSERT_NE(cp->quant_format(), nullptr);
  EXPECT_EQ(cp->quant_format()->name(), format);
  auto q = cp->read_module("model.layers.0.self_attn.q_proj");
  ASSERT_TRUE(q.has_value());
  expect_same(c.q, q->get());
  EXPECT_FALSE(cp->read_module("model.layers.0.self_attn.k_proj").has_value());  // absent: dense
}

Kv v2_params() {
  Kv p;
  p.set("checkpoint_format", KvValue::string("gptq_v2"));
  return p;
}

nlohmann::json quant_config(const fs::path& dir) {
  return nlohmann::json::parse(test::read_file(dir / "config.json"))["quantization_config"];
}

}  // namespace

TEST(AwqFormat, RoundTripsAsymmetricAndSymmetric) {
  round_trip("awq", {.bits = 4, .symmetric = false});
  round_trip("awq", {.bits = 4, .symmetric = true});
  round_trip("awq", {.bits = 4, .symmetric = false, .rows = 32, .cols = 128, .group_size = 128,
                     .scale_dtype = XQ_DTYPE_F32});
}

TEST(GptqFormat, RoundTripsV1V2ActOrderChannelAndBitWidths) {
  for (uint32_t bits : {2u, 4u, 8u}) {
    round_trip("gptq", {.bits = bits, .symmetric = true});
    round_trip("gptq", {.bits = bits, .symmetric = false});
    round_trip("gptq", {.bits = bits, .symmetric = false}, v2_params());
  }
  round_trip("gptq", {.bits = 4, .symmetric = true, .g_idx = true});
  round_trip("gptq", {.bits = 4, .symmetric = false, .g_idx = true}, v2_params());
  round_trip("gptq", {.bits = 4, .symmetric = true, .channel = true});
  round_trip("gptq", {.bits = 8, .symmetric = false, .channel = true, .scale_dtype = XQ_DTYPE_BF16});
}

// Output column j of 8 holds unsigned code j (codes j - 8): AutoAWQ puts
// column order_map[i] in nibble i, so the word reads 0x75316420.
TEST(AwqFormat, PacksNibblesInAutoAwqOrder) {
  test::TempDir dir("xq-awq");
  Spec s{.bits = 4, .symmetric = true, .rows = 8, .cols = 32, .group_size = 32};
  Canon c = random_canon(s, 1);
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t k = 0; k < 32; ++k) c.codes[static_cast<size_t>(r * 32 + k)] = static_cast<int8_t>(r - 8);
  ASSERT_EQ(write_checkpoint("awq", dir / "out", {{"model.layers.0.mlp.up_proj", &c.q}}), XQ_OK) << last_error();
  auto h = st::read_header(dir / "out" / "model.safetensors");
  auto cp = Checkpoint::open(runtime(), dir / "out");
  const TensorEntry& qw = cp->require("model.layers.0.mlp.up_proj.qweight");
  EXPECT_EQ(qw.shape, (std::vector<int64_t>{32, 1}));
  std::vector<int32_t> words(32);
  cp->read(qw, XQ_DTYPE_I32, words.data(), words.size() * 4);
  for (int32_t w : words) EXPECT_EQ(static_cast<uint32_t>(w), 0x75316420u);
  // Symmetric: every zero point is the midpoint 8.
  const TensorEntry& qz = cp->require("model.layers.0.mlp.up_proj.qzeros");
  int32_t z = 0;
  cp->read(qz, XQ_DTYPE_I32, &z, 4);
  EXPECT_EQ(static_cast<uint32_t>(z), 0x88888888u);
  auto qc = quant_config(dir / "out");
  EXPECT_EQ(qc["quant_method"], "awq");
  EXPECT_EQ(qc["bits"], 4);
  EXPECT_EQ(qc["group_size"], 32);
  EXPECT_EQ(qc["zero_point"], true);
  EXPECT_EQ(qc["version"], "gemm");
  EXPECT_EQ(qc["modules_to_not_convert"], nlohmann::json::array({"lm_head"}));
}

// Input row k of 8 holds unsigned code k: AutoGPTQ packs along the input
// dimension, element k at bit 4k, so the word reads 0x76543210; a symmetric
// zero point 8 is stored as 7 in v1 and as 8 in v2.
TEST(GptqFormat, PacksAlongInputAndOffsetsV1ZeroPoints) {
  for (bool v2 : {false, true}) {
    test::TempDir dir("xq-gptq");
    Spec s{.bits = 4, .symmetric = true, .rows = 8, .cols = 32, .group_size = 32};
    Canon c = random_canon(s, 1);
    for (int64_t r = 0; r < 8; ++r)
      for (int64_t k = 0; k < 32; ++k) c.codes[static_cast<size_t>(r * 32 + k)] = static_cast<int8_t>(k % 8 - 8);
    ASSERT_EQ(write_checkpoint("gptq", dir / "out", {{"model.layers.0.mlp.up_proj", &c.q}}, v2 ? v2_params() : Kv{}),
              XQ_OK)
        << last_error();
    auto cp = Checkpoint::open(runtime(), dir / "out");
    const TensorEntry& qw = cp->require("model.layers.0.mlp.up_proj.qweight");
    EXPECT_EQ(qw.shape, (std::vector<int64_t>{4, 8}));
    std::vector<int32_t> words(32);
    cp->read(qw, XQ_DTYPE_I32, words.data(), words.size() * 4);
    for (int32_t w : words) EXPECT_EQ(static_cast<uint32_t>(w), 0x76543210u);
    int32_t z = 0;
    cp->read(cp->require("model.layers.0.mlp.up_proj.qzeros"), XQ_DTYPE_I32, &z, 4);
    EXPECT_EQ(static_cast<uint32_t>(z), v2 ? 0x88888888u : 0x77777777u);
    auto qc = quant_config(dir / "out");
    EXPECT_EQ(qc["quant_method"], "gptq");
    EXPECT_EQ(qc["checkpoint_format"], v2 ? "gptq_v2" : "gptq");
    EXPECT_EQ(qc["sym"], true);
    EXPECT_EQ(qc["desc_act"], false);
    EXPECT_EQ(qc["group_size"], 32);
  }
}

TEST(AwqGptqWriters, RefuseWhatTheLayoutCannotHoldAndLeaveNothing) {
  struct Case {
    std::string format;
    Spec spec;
    Kv params;
    std::string message;
  };
  Canon zero0 = random_canon({.bits = 4, .symmetric = false}, 3);
  zero0.zps[5] = -8;  // unsigned 0
  std::vector<Case> cases = {
      {"awq", {.bits = 8}, {}, "AWQ's GEMM layout is 4-bit only"},
      {"awq", {.bits = 4, .g_idx = true}, {}, "act-order (g_idx) cannot be stored in AWQ"},
      {"awq", {.bits = 4, .channel = true}, {}, "group-wise scales only"},
      {"awq", {.bits = 4, .rows = 12}, {}, "not a multiple of 8"},
      {"gptq", {.bits = 3}, {}, "GPTQ is written for 2, 4 and 8 bits"},
      {"gptq", {.bits = 4, .cols = 68, .group_size = 34}, {}, "not a multiple of 8"},
  };
  for (const auto& k : cases) {
    test::TempDir dir("xq-refuse");
    Canon c = random_canon(k.spec, 2);
    std::string err;
    EXPECT_EQ(write_checkpoint(k.format, dir / "out", {{"model.layers.0.self_attn.q_proj", &c.q}}, k.params, &err),
              XQ_ERR_UNSUPPORTED);
    EXPECT_NE(err.find("model.layers.0.self_attn.q_proj"), std::string::npos) << err;
    EXPECT_NE(err.find(k.message), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(dir / "out")) << k.format << ": " << err;
  }
  test::TempDir dir("xq-refuse");
  std::string err;
  EXPECT_EQ(write_checkpoint("gptq", dir / "out", {{"model.layers.0.self_attn.q_proj", &zero0.q}}, {}, &err),
            XQ_ERR_UNSUPPORTED);
  EXPECT_NE(err.find("gptq_v2"), std::string::npos) << err;
  EXPECT_EQ(write_checkpoint("gptq", dir / "v2", {{"model.layers.0.self_attn.q_proj", &zero0.q}}, v2_params()), XQ_OK);
  // Mixed group sizes: one quantization_config cannot describe them.
  Canon a = random_canon({.bits = 4, .group_size = 32}, 4), b = random_canon({.bits = 4, .group_size = 64}, 5);
  EXPECT_EQ(write_checkpoint("awq", dir / "mixed", {{"m.a_proj", &a.q}, {"m.b_proj", &b.q}}, {}, &err),
            XQ_ERR_UNSUPPORTED);
  EXPECT_NE(err.find("m.b_proj"), std::string::npos) << err;
}

// ---- malformed checkpoints -------------------------------------------------

namespace {

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
};

template <class T>
Tensor make(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, T fill) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  Tensor t{name, dtype, shape, std::vector<unsigned char>(static_cast<size_t>(n) * sizeof(T))};
  for (int64_t i = 0; i < n; ++i) std::memcpy(t.bytes.data() + i * sizeof(T), &fill, sizeof(T));
  return t;
}

// A one-Linear GPTQ (or AWQ) checkpoint [out 8, in 32], 4-bit, group 32;
// `edit` changes its tensors or config before writing.
std::string read_error(const std::string& method, const std::function<void(std::vector<Tensor>&, nlohmann::json&)>& edit) {
  test::TempDir dir("xq-malformed");
  const std::string m = "model.layers.0.mlp.up_proj";
  std::vector<Tensor> ts;
  nlohmann::json qc;
  if (method == "gptq") {
    ts = {make<int32_t>(m + ".qweight", "I32", {4, 8}, 0x76543210), make<int32_t>(m + ".qzeros", "I32", {1, 1}, 0x77777777),
          make<uint16_t>(m + ".scales", "F16", {1, 8}, 0x3c00), make<int32_t>(m + ".g_idx", "I32", {32}, 0)};
    qc = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 32}, {"desc_act", false}, {"sym", true}};
  } else {
    ts = {make<int32_t>(m + ".qweight", "I32", {32, 1}, 0x75316420), make<int32_t>(m + ".qzeros", "I32", {1, 1}, 0x88888888),
          make<uint16_t>(m + ".scales", "F16", {1, 8}, 0x3c00)};
    qc = {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 32}, {"zero_point", true}, {"version", "gemm"}};
  }
  edit(ts, qc);
  fs::create_directories(dir / "ck");
  st::Writer w(dir / "ck" / "model.safetensors");
  for (const auto& t : ts) w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
  w.stage();
  w.commit();
  nlohmann::json config = nlohmann::json::parse(kConfig);
  config["quantization_config"] = qc;
  test::write_file(dir / "ck" / "config.json", config.dump());
  auto cp = Checkpoint::open(runtime(), dir / "ck");
  try {
    auto q = cp->read_module(m);
    return q ? "" : "(dense)";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST(AwqGptqReaders, WellFormedFixturesRead) {
  EXPECT_EQ(read_error("gptq", [](auto&, auto&) {}), "");
  EXPECT_EQ(read_error("awq", [](auto&, auto&) {}), "");
}

TEST(AwqGptqReaders, MalformedTensorsFailNamingTheTensor) {
  const std::string m = "model.layers.0.mlp.up_proj";
  auto has = [](const std::string& err, const std::string& what) {
    EXPECT_NE(err.find(what), std::string::npos) << "error: " << err << "\nexpected to contain: " << what;
  };
  // Wrong dtype of qweight.
  has(read_error("gptq", [&](auto& ts, auto&) { ts[0] = make<float>(m + ".qweight", "F32", {4, 8}, 0.f); }),
      m + ".qweight': must be a 2-D I32 tensor, got F32");
  // Missing qzeros.
  has(read_error("awq", [&](auto& ts, auto&) { ts.erase(ts.begin() + 1); }), m + ".qzeros': is missing");
  // Scales of the wrong shape.
  has(read_error("awq", [&](auto& ts, auto&) { ts[2] = make<uint16_t>(m + ".scales", "F16", {2, 8}, 0x3c00); }),
      m + ".scales': is [2, 8], expected [1, 8]");
  // Integer scales.
  has(read_error("gptq", [&](auto& ts, auto&) { ts[2] = make<int32_t>(m + ".scales", "I32", {1, 8}, 1); }),
      m + ".scales': must be F16, BF16 or F32, got I32");
  // qzeros of the wrong shape.
  has(read_error("gptq", [&](auto& ts, auto&) { ts[1] = make<int32_t>(m + ".qzeros", "I32", {1, 2}, 0); }),
      m + ".qzeros': is [1, 2], expected [1, 1]");
  // g_idx naming a group that does not exist, of the wrong length, or a
  // permutation without desc_act.
  has(read_error("gptq", [&](auto& ts, auto&) { ts[3] = make<int32_t>(m + ".g_idx", "I32", {32}, 3); }),
      m + ".g_idx': entry 0 = 3 is not a group of 1");
  has(read_error("gptq", [&](auto& ts, auto&) { ts[3] = make<int32_t>(m + ".g_idx", "I32", {31}, 0); }),
      m + ".g_idx': must be I32 [32]");
  has(read_error("gptq",
                 [&](auto& ts, auto&) {
                   ts[3] = make<int32_t>(m + ".g_idx", "I32", {64}, 0);
                   for (int i = 0; i < 64; ++i) {
                     int32_t g = (i % 2);
                     std::memcpy(ts[3].bytes.data() + 4 * i, &g, 4);
                   }
                   ts[0] = make<int32_t>(m + ".qweight", "I32", {8, 8}, 0);
                   ts[1] = make<int32_t>(m + ".qzeros", "I32", {2, 1}, 0x77777777);
                   ts[2] = make<uint16_t>(m + ".scales", "F16", {2, 8}, 0x3c00);
                 }),
      m + ".g_idx': is an act-order permutation but quantization_config.desc_act is false");
  // A v1 zero point of 15 means 16 after the offset of 1.
  has(read_error("gptq", [&](auto& ts, auto&) { ts[1] = make<int32_t>(m + ".qzeros", "I32", {1, 1}, 0x7777777f); }),
      "outside the 4-bit range (is the checkpoint gptq_v2?)");
}

TEST(AwqGptqReaders, UnsupportedConfigsAreRefusedByName) {
  auto err = read_error("awq", [](auto&, auto& qc) { qc["version"] = "gemv"; });
  EXPECT_NE(err.find("version 'gemv' is not supported"), std::string::npos) << err;
  err = read_error("gptq", [](auto&, auto& qc) { qc["bits"] = 3; });
  EXPECT_NE(err.find("3-bit GPTQ is not supported"), std::string::npos) << err;
  err = read_error("gptq", [](auto&, auto& qc) { qc["group_size"] = "32"; });
  EXPECT_NE(err.find("'group_size' must be an integer"), std::string::npos) << err;
  // AutoAWQ's own key names, as vLLM accepts them.
  err = read_error("awq", [](auto&, auto& qc) {
    qc.erase("bits");
    qc.erase("group_size");
    qc["w_bit"] = 4;
    qc["q_group_size"] = 32;
    qc["version"] = "GEMM";
  });
  EXPECT_EQ(err, "");
}
