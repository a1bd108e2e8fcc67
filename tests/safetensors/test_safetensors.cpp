// test_safetensors.cpp: the `safetensors` loader and sdk/safetensors.hpp.
//
// Fixtures are built in a temp dir, either with the SDK writer or as raw
// bytes (for the malformed ones), and loaded through the real plugin via
// xquant::Runtime + xquant::Checkpoint: values are byte-checked, and every
// malformed input must give a clear error (status + message naming the
// file and the problem), never a crash.
#include "test_runtime.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "checkpoint/checkpoint.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/safetensors.hpp>

#include "test_files.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using namespace xquant;
namespace st = xquant::sdk::safetensors;

namespace {

Runtime& runtime() { return test::quiet_runtime(); }


using test::TempDir;
using test::write_file;
std::string bytes_of_file(const fs::path& p) { return test::read_file(p); }

// u64 length + header text (as is, no padding) + data.
std::string raw_file(const std::string& header, const std::string& data, uint64_t claimed = UINT64_MAX) {
  uint64_t n = claimed == UINT64_MAX ? header.size() : claimed;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

template <class T>
std::string bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

struct OpenError {
  xq_status status = XQ_OK;
  std::string message;
};

OpenError open_error(const fs::path& p) {
  try {
    auto cp = Checkpoint::open(runtime(), p, "safetensors");
  } catch (const Error& e) {
    return {e.status(), e.what()};
  }
  return {};
}

#define EXPECT_OPEN_FAILS(file_, status_, needle)                                              \
  do {                                                                                        \
    OpenError e_ = open_error(file_);                                                          \
    EXPECT_EQ(e_.status, status_) << e_.message;                                              \
    EXPECT_NE(e_.message.find(needle), std::string::npos) << "message: " << e_.message;       \
    EXPECT_NE(e_.message.find(fs::path(file_).filename().string()), std::string::npos)         \
        << "message does not name the file: " << e_.message;                                  \
  } while (0)

const std::vector<float> kF32 = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-3f};
const std::vector<uint16_t> kF16 = {sdk::f32_to_f16(0.5f), sdk::f32_to_f16(-1.75f), sdk::f32_to_f16(65504.f),
                                    sdk::f32_to_f16(6.1035156e-05f)};
const std::vector<uint16_t> kBF16 = {sdk::f32_to_bf16(1.0f), sdk::f32_to_bf16(-3.5f), sdk::f32_to_bf16(1e30f),
                                     sdk::f32_to_bf16(0.1f)};
const std::vector<int32_t> kI32 = {-7, 0, 123456};
const std::vector<int8_t> kI8 = {-128, -1, 0, 1, 127};
const std::vector<int64_t> kI64 = {-5, 1LL << 40};
const std::vector<uint8_t> kU8 = {0, 200, 255};

// A file with one tensor of each kind, written by the SDK writer.
void write_mixed(const fs::path& p) {
  st::Writer w(p);
  w.add_metadata("format", "pt");
  w.add("f32", "F32", {2, 3}, kF32.data(), kF32.size() * 4);
  w.add("f16", "F16", {4}, kF16.data(), kF16.size() * 2);
  w.add("bf16", "BF16", {2, 2}, kBF16.data(), kBF16.size() * 2);
  w.add("i32", "I32", {3}, kI32.data(), kI32.size() * 4);
  w.add("i8", "I8", {5}, kI8.data(), kI8.size());
  w.add("i64", "I64", {2}, kI64.data(), kI64.size() * 8);
  w.add("u8", "U8", {3}, kU8.data(), kU8.size());
  float scalar = 42.0f;
  w.add("scalar", "F32", {}, &scalar, 4);
  w.add("empty", "F32", {0, 4}, nullptr, 0);
  w.finish();
}

}  // namespace

TEST(SafetensorsWriter, TinyFileIsByteExact) {
  TempDir d;
  fs::path p = d / "one.safetensors";
  st::Writer w(p);
  w.add_metadata("format", "pt");
  const float v[2] = {1.0f, -2.0f};
  w.add("a", "F32", {2}, v, 8);
  w.finish();
  std::string header = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string expected = raw_file(header, std::string(reinterpret_cast<const char*>(v), 8));
  EXPECT_EQ(bytes_of_file(p), expected);
  // Nothing but the final file is left in the folder.
  EXPECT_EQ(std::distance(fs::directory_iterator(d.path()), fs::directory_iterator()), 1);
}

TEST(SafetensorsWriter, OrdersLikeTheReferenceWriterAndAligns) {
  TempDir d;
  fs::path p = d / "m.safetensors";
  write_mixed(p);
  st::Header h = st::read_header(p);
  ASSERT_EQ(h.tensors.size(), 9u);
  EXPECT_EQ(h.header_bytes % 8, 0u);
  // dtype rank descending (I64 > F32 > I32 > BF16 > F16 > I8 > U8), then name.
  std::vector<std::string> order;
  for (const auto& t : h.tensors)
    if (t.nbytes() > 0 || t.name == "empty") order.push_back(t.name);
  std::vector<std::string> expected = {"i64", "empty", "f32", "scalar", "i32", "bf16", "f16", "i8", "u8"};
  EXPECT_EQ(order, expected);
  for (const auto& t : h.tensors) EXPECT_EQ((h.data_offset + t.begin) % (t.bits / 8), 0u) << t.name;
}

TEST(SafetensorsWriter, AbortLeavesNothing) {
  TempDir d;
  {
    st::Writer w(d / "x.safetensors");
    float v = 1;
    w.add("a", "F32", {1}, &v, 4);
    w.stage();
    w.abort();
  }
  {
    st::Writer w(d / "y.safetensors");  // destroyed unfinished
    float v = 1;
    w.add("a", "F32", {1}, &v, 4);
  }
  EXPECT_TRUE(fs::is_empty(d.path()));
}

TEST(SafetensorsWriter, RejectsSizeMismatchAndDuplicates) {
  TempDir d;
  st::Writer w(d / "x.safetensors");
  float v[2] = {1, 2};
  EXPECT_THROW(w.add("a", "F32", {3}, v, 8), sdk::Error);
  w.add("a", "F32", {2}, v, 8);
  EXPECT_THROW(w.add("a", "F32", {2}, v, 8), sdk::Error);
  EXPECT_THROW(w.add("b", "F99", {2}, v, 8), sdk::Error);
}

TEST(SafetensorsLoader, SingleFileValuesAreExact) {
  TempDir d;
  fs::path p = d / "m.safetensors";
  write_mixed(p);
  auto cp = Checkpoint::open(runtime(), p);
  EXPECT_EQ(cp->loader().name(), "safetensors");
  ASSERT_EQ(cp->tensors().size(), 9u);
  EXPECT_EQ(cp->config().get_string("source.format", ""), "safetensors");
  EXPECT_FALSE(cp->config().has("architecture"));  // no config.json beside it

  const auto& f32 = cp->require("f32");
  EXPECT_EQ(f32.dtype, XQ_DTYPE_F32);
  EXPECT_EQ(f32.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(cp->read_f32(f32), kF32);
  xq_tensor_view raw = cp->raw(f32);
  ASSERT_EQ(raw.nbytes, 24u);
  EXPECT_EQ(std::memcmp(raw.data, kF32.data(), 24), 0);

  std::vector<float> f16 = cp->read_f32(cp->require("f16"));
  for (size_t i = 0; i < kF16.size(); ++i) EXPECT_EQ(f16[i], sdk::f16_to_f32(kF16[i]));
  std::vector<float> bf16 = cp->read_f32(cp->require("bf16"));
  for (size_t i = 0; i < kBF16.size(); ++i) EXPECT_EQ(bf16[i], sdk::bf16_to_f32(kBF16[i]));
  EXPECT_EQ(cp->read_f32(cp->require("i32")), (std::vector<float>{-7, 0, 123456}));
  EXPECT_EQ(cp->read_f32(cp->require("i8")), (std::vector<float>{-128, -1, 0, 1, 127}));
  EXPECT_EQ(cp->read_f32(cp->require("u8")), (std::vector<float>{0, 200, 255}));
  EXPECT_EQ(cp->read_f32(cp->require("i64")), (std::vector<float>{-5, static_cast<float>(1LL << 40)}));
  EXPECT_EQ(cp->read_f32(cp->require("scalar")), std::vector<float>{42.0f});
  EXPECT_TRUE(cp->require("scalar").shape.empty());
  EXPECT_EQ(cp->require("empty").numel(), 0);
  EXPECT_TRUE(cp->read_f32(cp->require("empty")).empty());

  // Conversions to F16/BF16 and the stored-dtype copy.
  std::vector<uint16_t> h(6), b(6);
  cp->read(f32, XQ_DTYPE_F16, h.data(), 12);
  cp->read(f32, XQ_DTYPE_BF16, b.data(), 12);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(h[i], sdk::f32_to_f16(kF32[i]));
    EXPECT_EQ(b[i], sdk::f32_to_bf16(kF32[i]));
  }
  std::vector<int32_t> i32(3);
  cp->read(cp->require("i32"), XQ_DTYPE_I32, i32.data(), 12);
  EXPECT_EQ(i32, kI32);
  // Wrong destination size and unsupported targets are errors, not crashes.
  EXPECT_THROW(cp->read(f32, XQ_DTYPE_F32, h.data(), 12), Error);
  EXPECT_THROW(cp->read(f32, XQ_DTYPE_I8, h.data(), 6), Error);
  EXPECT_THROW(cp->read_quantized(f32), Error);
}

TEST(SafetensorsLoader, UnalignedTensorsAreRead) {
  TempDir d;
  // u8[3] then f32[2] at data offset 3: the floats sit at an odd address.
  std::vector<float> f = {3.25f, -1.0f};
  std::string header = R"({"b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"a":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  write_file(d / "u.safetensors", raw_file(header, std::string("\x01\x02\x03", 3) + bytes(f)));
  auto cp = Checkpoint::open(runtime(), d / "u.safetensors");
  EXPECT_EQ(cp->read_f32(cp->require("a")), f);
  EXPECT_EQ(cp->read_f32(cp->require("b")), (std::vector<float>{1, 2, 3}));
}

TEST(SafetensorsLoader, LeadingWhitespaceBeforeTheHeaderIsAccepted) {
  TempDir d;
  std::vector<float> f = {7.0f};
  write_file(d / "w.safetensors", raw_file(" \n\t{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", bytes(f)));
  auto cp = Checkpoint::open(runtime(), d / "w.safetensors");
  EXPECT_EQ(cp->read_f32(cp->require("a")), f);
}

TEST(SafetensorsLoader, ShardedDirectory) {
  TempDir d;
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7};
  {
    st::Writer w(d / "model-00001-of-00002.safetensors");
    w.add("model.a.weight", "F32", {2, 2}, a.data(), 16);
    w.add("model.b.weight", "F32", {2}, b.data(), 8);
    w.finish();
    st::Writer w2(d / "model-00002-of-00002.safetensors");
    w2.add("model.c.weight", "F32", {1}, c.data(), 4);
    w2.finish();
  }
  write_file(d / "model.safetensors.index.json",
             R"({"metadata":{"total_size":28},"weight_map":{"model.a.weight":"model-00001-of-00002.safetensors",)"
             R"("model.b.weight":"model-00001-of-00002.safetensors","model.c.weight":"model-00002-of-00002.safetensors"}})");
  write_file(d / "config.json", R"({"model_type":"llama","hidden_size":2,"num_attention_heads":1})");
  auto cp = Checkpoint::open(runtime(), d.path());
  EXPECT_EQ(cp->loader().name(), "safetensors");
  ASSERT_EQ(cp->tensors().size(), 3u);
  EXPECT_EQ(cp->read_f32(cp->require("model.a.weight")), a);
  EXPECT_EQ(cp->read_f32(cp->require("model.b.weight")), b);
  EXPECT_EQ(cp->read_f32(cp->require("model.c.weight")), c);
  EXPECT_EQ(cp->config().get_string("architecture", ""), "llama");
  EXPECT_EQ(cp->config().get_int("head_dim", 0), 2);
  EXPECT_EQ(cp->config().get_int("num_key_value_heads", 0), 1);
}

TEST(SafetensorsLoader, HfConfigVariants) {
  TempDir d;
  float v = 1;
  st::Writer w(d / "model.safetensors");
  w.add("x", "F32", {1}, &v, 4);
  w.finish();
  // transformers v5 spelling: rope_parameters, dtype; eos as a list; quantization_config.
  write_file(d / "config.json", R"({"model_type":"qwen3","hidden_size":64,"num_attention_heads":4,
    "num_key_value_heads":2,"head_dim":32,"intermediate_size":128,"num_hidden_layers":2,"vocab_size":100,
    "rms_norm_eps":1e-6,"rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,
    "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192},
    "eos_token_id":[7,8],"bos_token_id":3,"dtype":"bfloat16","tie_word_embeddings":true,
    "quantization_config":{"quant_method":"compressed-tensors","config_groups":{}}})");
  write_file(d / "tokenizer.json", R"({"model":{"type":"BPE"}})");
  auto cp = Checkpoint::open(runtime(), d.path());
  const Kv& c = cp->config();
  EXPECT_EQ(c.get_string("architecture", ""), "qwen3");
  EXPECT_EQ(c.get_int("head_dim", 0), 32);
  EXPECT_EQ(c.get_int("num_key_value_heads", 0), 2);
  EXPECT_DOUBLE_EQ(c.get_float("rope_theta", 0), 500000.0);
  EXPECT_EQ(c.get_string("rope_scaling.type", ""), "llama3");
  EXPECT_DOUBLE_EQ(c.get_float("rope_scaling.factor", 0), 8.0);
  EXPECT_DOUBLE_EQ(c.get_float("rope_scaling.high_freq_factor", 0), 4.0);
  EXPECT_EQ(c.get_int("rope_scaling.original_max_position_embeddings", 0), 8192);
  EXPECT_EQ(c.get_int("eos_token_id", 0), 7);
  EXPECT_EQ(c.get_int("bos_token_id", 0), 3);
  EXPECT_EQ(c.get_string("torch_dtype", ""), "bfloat16");
  EXPECT_TRUE(c.get_bool("tie_word_embeddings", false));
  EXPECT_FALSE(c.get_bool("attention_bias", true));
  EXPECT_DOUBLE_EQ(c.get_float("rms_norm_eps", 0), 1e-6);
  EXPECT_NE(c.get_string("quantization_config", "").find("\"quant_method\":\"compressed-tensors\""), std::string::npos);
  EXPECT_EQ(c.get_string("tokenizer.huggingface_json", ""), R"({"model":{"type":"BPE"}})");
  EXPECT_NE(c.get_string("config_json", "").find("rope_parameters"), std::string::npos);
}

TEST(SafetensorsLoader, ProbeScores) {
  TempDir d;
  write_mixed(d / "m.safetensors");
  write_file(d / "not.safetensors", "hello world, not a checkpoint");
  auto& p = runtime().plugins().require(XQ_PLUGIN_LOADER, "safetensors");
  EXPECT_GT(p.loader().probe(p.state, (d / "m.safetensors").c_str()), 0u);
  EXPECT_EQ(p.loader().probe(p.state, (d / "not.safetensors").c_str()), 0u);
  EXPECT_EQ(p.loader().probe(p.state, (d / "missing").c_str()), 0u);
  EXPECT_EQ(p.loader().probe(p.state, d.path().c_str()), 0u);  // no model.safetensors in it
}

// ---- malformed inputs ---------------------------------------------------------

namespace {
const std::string kGoodHeader = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::string kGoodData(8, '\x11');
}  // namespace

TEST(SafetensorsMalformed, TruncatedFile) {
  TempDir d;
  std::string f = raw_file(kGoodHeader, kGoodData);
  write_file(d / "t.safetensors", f.substr(0, f.size() - 3));
  EXPECT_OPEN_FAILS(d / "t.safetensors", XQ_ERR_MALFORMED, "truncated");
  write_file(d / "tiny.safetensors", std::string("\x05\x00\x00", 3));
  EXPECT_OPEN_FAILS(d / "tiny.safetensors", XQ_ERR_MALFORMED, "fewer than the 8-byte header length");
}

TEST(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
  TempDir d;
  write_file(d / "h.safetensors", raw_file(kGoodHeader, kGoodData, 4096));
  EXPECT_OPEN_FAILS(d / "h.safetensors", XQ_ERR_MALFORMED, "header length 4096 runs past the end of the file");
}

TEST(SafetensorsMalformed, HeaderLargerThan100MB) {
  TempDir d;
  write_file(d / "big.safetensors", raw_file(kGoodHeader, kGoodData, 200'000'000));
  EXPECT_OPEN_FAILS(d / "big.safetensors", XQ_ERR_MALFORMED, "exceeds the 100,000,000-byte limit");
}

TEST(SafetensorsMalformed, HeaderNotStartingWithBrace) {
  TempDir d;
  write_file(d / "b.safetensors", raw_file("[" + kGoodHeader.substr(1, kGoodHeader.size() - 2) + "]", kGoodData));
  EXPECT_OPEN_FAILS(d / "b.safetensors", XQ_ERR_MALFORMED, "does not start with '{'");
}

TEST(SafetensorsMalformed, BadJson) {
  TempDir d;
  write_file(d / "j.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", kGoodData));
  EXPECT_OPEN_FAILS(d / "j.safetensors", XQ_ERR_MALFORMED, "not valid JSON");
  write_file(d / "u.safetensors", raw_file("{\"\xff\":1}", ""));
  EXPECT_OPEN_FAILS(d / "u.safetensors", XQ_ERR_MALFORMED, "not valid UTF-8");
}

TEST(SafetensorsMalformed, DuplicateKey) {
  TempDir d;
  write_file(d / "dup.safetensors",
             raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                      kGoodData));
  EXPECT_OPEN_FAILS(d / "dup.safetensors", XQ_ERR_MALFORMED, "duplicate key 'a'");
}

TEST(SafetensorsMalformed, NonStringMetadata) {
  TempDir d;
  write_file(d / "meta.safetensors",
             raw_file(R"({"__metadata__":{"format":"pt","step":5},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                      kGoodData));
  EXPECT_OPEN_FAILS(d / "meta.safetensors", XQ_ERR_MALFORMED, "__metadata__ value of 'step' is not a string");
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  TempDir d;
  write_file(d / "o.safetensors",
             raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      std::string(12, '\0')));
  EXPECT_OPEN_FAILS(d / "o.safetensors", XQ_ERR_MALFORMED, "tensor 'b': data_offsets [4, 12] leave an overlap");
}

TEST(SafetensorsMalformed, HoleBetweenTensors) {
  TempDir d;
  write_file(d / "hole.safetensors",
             raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                      std::string(20, '\0')));
  EXPECT_OPEN_FAILS(d / "hole.safetensors", XQ_ERR_MALFORMED, "tensor 'b': data_offsets [12, 20] leave a hole");
  // The first tensor must start at 0.
  write_file(d / "start.safetensors",
             raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, '\0')));
  EXPECT_OPEN_FAILS(d / "start.safetensors", XQ_ERR_MALFORMED, "leave a hole");
}

TEST(SafetensorsMalformed, OffsetsOutOfRange) {
  TempDir d;
  // Offsets run past the data in the file.
  write_file(d / "r.safetensors",
             raw_file(R"({"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}})", kGoodData));
  EXPECT_OPEN_FAILS(d / "r.safetensors", XQ_ERR_MALFORMED, "tensor data ends at byte");
  // Reversed and negative offsets.
  write_file(d / "rev.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", kGoodData));
  EXPECT_OPEN_FAILS(d / "rev.safetensors", XQ_ERR_MALFORMED, "end before they begin");
  write_file(d / "neg.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", kGoodData));
  EXPECT_OPEN_FAILS(d / "neg.safetensors", XQ_ERR_MALFORMED, "non-negative integers");
  // Trailing bytes after the last tensor.
  write_file(d / "trail.safetensors", raw_file(kGoodHeader, kGoodData + "xx"));
  EXPECT_OPEN_FAILS(d / "trail.safetensors", XQ_ERR_MALFORMED, "trailing data");
}

TEST(SafetensorsMalformed, DtypeShapeSizeMismatch) {
  TempDir d;
  write_file(d / "s.safetensors", raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", kGoodData));
  EXPECT_OPEN_FAILS(d / "s.safetensors", XQ_ERR_MALFORMED, "needs 12 bytes but data_offsets [0, 8] hold 8");
  // Sub-byte dtypes must come out in whole bytes.
  write_file(d / "f4.safetensors", raw_file(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", "ab"));
  EXPECT_OPEN_FAILS(d / "f4.safetensors", XQ_ERR_MALFORMED, "not a whole number of bytes");
}

TEST(SafetensorsMalformed, UnknownDtype) {
  TempDir d;
  write_file(d / "dt.safetensors", raw_file(R"({"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", kGoodData));
  EXPECT_OPEN_FAILS(d / "dt.safetensors", XQ_ERR_MALFORMED, "tensor 'a': unknown dtype 'F12'");
}

TEST(SafetensorsMalformed, IndexNamesAMissingShard) {
  TempDir d;
  float v = 1;
  st::Writer w(d / "model-00001-of-00002.safetensors");
  w.add("a", "F32", {1}, &v, 4);
  w.finish();
  write_file(d / "model.safetensors.index.json",
             R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  OpenError e = open_error(d.path());
  EXPECT_EQ(e.status, XQ_ERR_NOT_FOUND) << e.message;
  EXPECT_NE(e.message.find("maps 'b' to shard 'model-00002-of-00002.safetensors', which does not exist"),
            std::string::npos)
      << e.message;
}

TEST(SafetensorsMalformed, IndexNamesATensorNotInTheShard) {
  TempDir d;
  float v = 1;
  st::Writer w(d / "model-00001-of-00001.safetensors");
  w.add("a", "F32", {1}, &v, 4);
  w.finish();
  write_file(d / "model.safetensors.index.json",
             R"({"weight_map":{"a":"model-00001-of-00001.safetensors","ghost":"model-00001-of-00001.safetensors"}})");
  OpenError e = open_error(d.path());
  EXPECT_EQ(e.status, XQ_ERR_MALFORMED) << e.message;
  EXPECT_NE(e.message.find("maps 'ghost' to shard 'model-00001-of-00001.safetensors', which has no such tensor"),
            std::string::npos)
      << e.message;
}

TEST(SafetensorsMalformed, ShardsAreValidatedToo) {
  TempDir d;
  write_file(d / "model-00001-of-00001.safetensors", raw_file(kGoodHeader, kGoodData.substr(0, 4)));
  write_file(d / "model.safetensors.index.json", R"({"weight_map":{"a":"model-00001-of-00001.safetensors"}})");
  OpenError e = open_error(d.path());
  EXPECT_EQ(e.status, XQ_ERR_MALFORMED) << e.message;
  EXPECT_NE(e.message.find("model-00001-of-00001.safetensors: tensor data ends"), std::string::npos) << e.message;
  write_file(d / "model.safetensors.index.json", R"({"weight_map":{"a":"../x.safetensors"}})");
  e = open_error(d.path());
  EXPECT_EQ(e.status, XQ_ERR_MALFORMED) << e.message;
  EXPECT_NE(e.message.find("not a file name in the checkpoint folder"), std::string::npos) << e.message;
}

TEST(SafetensorsMalformed, BadConfigJsonIsReportedAtOpen) {
  TempDir d;
  write_mixed(d / "model.safetensors");
  write_file(d / "config.json", "{\"model_type\": ");
  OpenError e = open_error(d.path());
  EXPECT_EQ(e.status, XQ_ERR_MALFORMED) << e.message;
  EXPECT_NE(e.message.find("config.json: not valid JSON"), std::string::npos) << e.message;
}

// ---- the shared stories260K checkpoint -------------------------------------------

TEST(SafetensorsStories260K, ConfigAndTensors) {
  const fs::path dir = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";
  auto cp = Checkpoint::open(runtime(), dir);
  EXPECT_EQ(cp->loader().name(), "safetensors");
  const Kv& c = cp->config();
  EXPECT_EQ(c.get_string("source.format", ""), "safetensors");
  EXPECT_EQ(c.get_string("architecture", ""), "llama");
  EXPECT_EQ(c.get_int("hidden_size", 0), 64);
  EXPECT_EQ(c.get_int("intermediate_size", 0), 172);
  EXPECT_EQ(c.get_int("num_hidden_layers", 0), 5);
  EXPECT_EQ(c.get_int("num_attention_heads", 0), 8);
  EXPECT_EQ(c.get_int("num_key_value_heads", 0), 4);
  EXPECT_EQ(c.get_int("head_dim", 0), 8);
  EXPECT_EQ(c.get_int("vocab_size", 0), 512);
  EXPECT_EQ(c.get_int("max_position_embeddings", 0), 512);
  EXPECT_DOUBLE_EQ(c.get_float("rms_norm_eps", 0), 1e-5);
  EXPECT_DOUBLE_EQ(c.get_float("rope_theta", 0), 10000.0);
  EXPECT_TRUE(c.get_bool("tie_word_embeddings", false));
  EXPECT_FALSE(c.get_bool("attention_bias", true));
  EXPECT_EQ(c.get_int("bos_token_id", -1), 1);
  EXPECT_EQ(c.get_int("eos_token_id", -1), 2);
  EXPECT_EQ(c.get_string("torch_dtype", ""), "float32");
  EXPECT_NE(c.get_string("config_json", "").find("LlamaForCausalLM"), std::string::npos);
  EXPECT_FALSE(c.has("quantization_config"));

  EXPECT_EQ(cp->tensors().size(), 47u);  // embed + norm + 5 layers x 9
  EXPECT_EQ(cp->require("model.embed_tokens.weight").shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(cp->require("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(cp->require("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(cp->require("model.layers.4.mlp.gate_proj.weight").shape, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(cp->require("model.layers.4.mlp.down_proj.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(cp->require("model.norm.weight").shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(cp->find("lm_head.weight"), nullptr);

  // Values equal the file's bytes at the header's offsets.
  st::Header h = st::read_header(dir / "model.safetensors");
  std::string file = bytes_of_file(dir / "model.safetensors");
  for (const char* name : {"model.layers.2.mlp.down_proj.weight", "model.norm.weight"}) {
    auto it = std::find_if(h.tensors.begin(), h.tensors.end(), [&](const auto& t) { return t.name == name; });
    ASSERT_NE(it, h.tensors.end());
    std::vector<float> expected(it->numel());
    std::memcpy(expected.data(), file.data() + h.data_offset + it->begin, it->nbytes());
    EXPECT_EQ(cp->read_f32(cp->require(name)), expected) << name;
  }
}

// Random corruptions of a valid file (length prefix, header bytes, data,
// truncation) must each open fine or fail with an Error: never crash, never
// read outside the file (run under ASan to see the latter).
TEST(SafetensorsMalformed, RandomCorruptionsNeverCrash) {
  TempDir d;
  write_mixed(d / "base.safetensors");
  const std::string base = bytes_of_file(d / "base.safetensors");
  std::mt19937 rng(1234);
  int ok = 0, failed = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::string f = base;
    int kind = iter % 4;
    if (kind == 0) {  // a byte of the length prefix
      f[rng() % 8] = static_cast<char>(rng());
    } else if (kind == 1) {  // 1-3 header bytes
      uint64_t n = st::read_u64_le(reinterpret_cast<const unsigned char*>(base.data()));
      for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) f[8 + rng() % n] = static_cast<char>(rng() % 128);
    } else if (kind == 2) {  // truncate anywhere
      f.resize(rng() % f.size());
    } else {  // a digit in the header changed to another digit (offsets, shapes)
      uint64_t n = st::read_u64_le(reinterpret_cast<const unsigned char*>(base.data()));
      std::vector<size_t> digits;
      for (size_t i = 8; i < 8 + n; ++i)
        if (f[i] >= '0' && f[i] <= '9') digits.push_back(i);
      f[digits[rng() % digits.size()]] = static_cast<char>('0' + rng() % 10);
    }
    fs::path p = d / ("c" + std::to_string(iter) + ".safetensors");
    write_file(p, f);
    try {
      auto cp = Checkpoint::open(runtime(), p, "safetensors");
      for (const auto& t : cp->tensors()) (void)cp->read_f32(t);  // every read stays inside the mapping
      ++ok;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
      ++failed;
    }
    fs::remove(p);
  }
  EXPECT_GT(failed, 200);  // most corruptions are caught
  EXPECT_GT(ok, 0);        // some are harmless (e.g. a changed float value)
}
