// test_gguf_importance.cpp: importance-weighted GGUF requantization
// (plugins/gguf_writer: weighted_encode, imatrix_file, the writer's
// `importance` / `imatrix` / `imatrix_out` params and the format ABI's
// writer_set_importance).
//
// Encoders: on fresh random rows with a skewed importance, every weighted
// type's importance-weighted error is lower than the plain encoder's, and
// decoding stays finite for zero rows and zero importance. Files: llama.cpp's
// GGUF imatrix round-trips byte for byte, the legacy .dat is read as
// llama-quantize reads it, and malformed files (every truncation, missing
// halves, wrong types, negative values) fail naming what is wrong. End to
// end: a calibrated GPTQ pipeline on stories260K into a requantized GGUF is
// weighted by its own calibration; the imatrix it writes, fed back, gives
// the same bytes; `importance: false` gives other bytes.
#include "block_encode.hpp"
#include "gguf_emit.hpp"
#include "gguf_file.hpp"
#include "gguf_types.hpp"
#include "imatrix_file.hpp"
#include "test_files.hpp"
#include "weighted_encode.hpp"

#include <xquant/sdk/error.hpp>
#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

namespace fs = std::filesystem;
namespace gg = xquant::gguf;
using xquant::test::TempDir;
using xquant::test::read_file;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";
const fs::path kText = kShared / "data/tinystories/tinystories_val.subset.txt";

constexpr uint32_t kWeightedTypes[] = {gg::kQ4_0, gg::kQ4_1, gg::kQ5_0, gg::kQ5_1, gg::kQ4_K, gg::kQ5_K, gg::kQ6_K};

// sum over rows and columns of importance[c] * (x - decoded)^2.
double weighted_error(uint32_t type, const std::vector<float>& x, const std::vector<float>& imp, int64_t rows,
                      int64_t cols, bool use_importance) {
  const gg::TypeInfo* ti = gg::type_info(type);
  const size_t row_bytes = static_cast<size_t>(cols / ti->block_size) * ti->type_size;
  std::vector<uint8_t> blocks(row_bytes);
  std::vector<float> back(static_cast<size_t>(cols));
  double e = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    if (use_importance) gg::encode_row_weighted(type, xr, cols, imp.data(), blocks.data());
    else gg::encode_floats(type, xr, cols, blocks.data());
    EXPECT_TRUE(gg::dequantize_row(type, blocks.data(), back.data(), cols));
    for (int64_t c = 0; c < cols; ++c) e += imp[c] * (double(xr[c]) - back[c]) * (double(xr[c]) - back[c]);
  }
  return e;
}

TEST(GgufImportanceEncode, ImportanceLowersTheErrorItWeights) {
  std::mt19937 rng(20261130);
  std::normal_distribution<float> w(0.0f, 0.02f);
  std::lognormal_distribution<float> act(0.0f, 1.5f);  // activation scales spread like an LLM's channels
  const int64_t rows = 64, cols = 512;
  std::vector<float> x(static_cast<size_t>(rows * cols)), imp(static_cast<size_t>(cols));
  for (auto& v : x) v = w(rng);
  for (auto& v : imp) {
    const float a = act(rng);
    v = a * a;  // mean x^2 of the input column
  }
  for (uint32_t type : kWeightedTypes) {
    const double plain = weighted_error(type, x, imp, rows, cols, false);
    const double weighted = weighted_error(type, x, imp, rows, cols, true);
    std::printf("%-5s importance-weighted error: plain %.4g, weighted %.4g (%.1f%% lower)\n",
                gg::type_info(type)->name, plain, weighted, 100 * (1 - weighted / plain));
    EXPECT_LT(weighted, 0.9 * plain) << gg::type_info(type)->name;
  }
}

TEST(GgufImportanceEncode, ZeroRowsAndZeroImportanceDecodeFinite) {
  std::mt19937 rng(5);
  std::normal_distribution<float> w(0.0f, 0.02f);
  const int64_t cols = 256;
  std::vector<float> zero(cols, 0.f), x(cols), no_imp(cols, 0.f), imp(cols, 1.f);
  for (auto& v : x) v = w(rng);
  for (uint32_t type : kWeightedTypes) {
    const gg::TypeInfo* ti = gg::type_info(type);
    std::vector<uint8_t> b(static_cast<size_t>(cols / ti->block_size) * ti->type_size);
    std::vector<float> back(cols);
    gg::encode_row_weighted(type, zero.data(), cols, imp.data(), b.data());
    ASSERT_TRUE(gg::dequantize_row(type, b.data(), back.data(), cols));
    for (float v : back) EXPECT_EQ(v, 0.f) << ti->name;
    gg::encode_row_weighted(type, x.data(), cols, no_imp.data(), b.data());
    ASSERT_TRUE(gg::dequantize_row(type, b.data(), back.data(), cols));
    for (float v : back) EXPECT_TRUE(std::isfinite(v)) << ti->name;
  }
}

TEST(GgufImportanceEncode, Q8_0TakesNoImportanceAsInGgml) {
  std::mt19937 rng(9);
  std::normal_distribution<float> w(0.0f, 0.02f);
  std::vector<float> x(64), imp(64);
  for (auto& v : x) v = w(rng);
  for (size_t i = 0; i < imp.size(); ++i) imp[i] = float(i * i);
  std::vector<uint8_t> a(2 * 34), b(2 * 34);
  gg::encode_row_weighted(gg::kQ8_0, x.data(), 64, imp.data(), a.data());
  gg::encode_floats(gg::kQ8_0, x.data(), 64, b.data());
  EXPECT_EQ(a, b);
  EXPECT_FALSE(gg::uses_importance(gg::kQ8_0));
}

// ---- imatrix files ----------------------------------------------------------------

gg::ImportanceMatrix sample_matrix() {
  gg::ImportanceMatrix m;
  m.datasets = {"tinystories_val.subset.txt"};
  m.chunk_count = 12;
  m.chunk_size = 512;
  m.entries["blk.0.attn_q.weight"] = {{1.5f, 0.f, 3.25f, 1e-8f}, {6.f}};
  m.entries["blk.0.ffn_up_exps.weight"] = {{1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2.f, 0.f}};  // two experts
  return m;
}

TEST(GgufImatrixFile, GgufRoundTripsByteForByteInLlamaCppsLayout) {
  TempDir dir("xquant-imatrix");
  const gg::ImportanceMatrix m = sample_matrix();
  gg::write_imatrix((dir / "a.gguf").string(), m);
  const gg::ImportanceMatrix back = gg::read_imatrix((dir / "a.gguf").string());
  EXPECT_FALSE(back.legacy);
  EXPECT_EQ(back.datasets, m.datasets);
  EXPECT_EQ(back.chunk_count, 12u);
  EXPECT_EQ(back.chunk_size, 512u);
  ASSERT_EQ(back.entries.size(), 2u);
  for (const auto& [name, e] : m.entries) {
    EXPECT_EQ(back.entries.at(name).sums, e.sums) << name;
    EXPECT_EQ(back.entries.at(name).counts, e.counts) << name;
  }
  gg::write_imatrix((dir / "b.gguf").string(), back);
  EXPECT_EQ(read_file(dir / "a.gguf"), read_file(dir / "b.gguf"));

  // The layout llama-imatrix writes (tools/imatrix/imatrix.cpp save_imatrix),
  // its data section padded to the alignment after the last tensor too (ggml's
  // gguf_init_from_file reads the padded blob: llama-quantize refuses less).
  gg::File f((dir / "a.gguf").string());
  EXPECT_EQ((f.size() - f.data_offset()) % 32, 0u);
  ASSERT_NE(f.find("general.type"), nullptr);
  EXPECT_EQ(f.find("general.type")->s, "imatrix");
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.type, gg::kF32) << t.name;
    if (t.name == "blk.0.ffn_up_exps.weight.in_sum2") {
      EXPECT_EQ(t.ne[0], 3);
      EXPECT_EQ(t.ne[1], 2);
    }
    if (t.name == "blk.0.ffn_up_exps.weight.counts") {
      EXPECT_EQ(t.ne[0], 1);
      EXPECT_EQ(t.ne[1], 2);
    }
  }
  // llama-quantize's importance: sums / count, 1 for a matrix that saw no token.
  EXPECT_EQ(back.mean_squares("blk.0.attn_q.weight"), (std::vector<float>{1.5f / 6, 0.f, 3.25f / 6, 1e-8f / 6}));
  EXPECT_EQ(back.mean_squares("blk.0.ffn_up_exps.weight"), (std::vector<float>{0.5f, 1.f, 1.5f, 1.f, 1.f, 1.f}));
  EXPECT_TRUE(back.mean_squares("blk.9.attn_q.weight").empty());
}

void put_i32(std::string& s, int32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }

// A legacy .dat as llama-imatrix wrote it before GGUF (values: means times ncall).
std::string legacy_dat() {
  std::string s;
  put_i32(s, 2);
  for (const auto& [name, ncall] : {std::pair<std::string, int>{"blk.0.attn_k.weight", 4}, {"output.weight", 0}}) {
    put_i32(s, static_cast<int32_t>(name.size()));
    s += name;
    put_i32(s, ncall);
    put_i32(s, 3);
    for (float v : {8.f, 2.f, 0.5f}) s.append(reinterpret_cast<const char*>(&v), 4);
  }
  put_i32(s, 7);  // chunk count
  put_i32(s, 5);
  s += "wiki2";
  return s;
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size()));
}

TEST(GgufImatrixFile, LegacyDatIsReadAsLlamaQuantizeReadsIt) {
  TempDir dir("xquant-imatrix");
  write_bytes(dir / "m.dat", legacy_dat());
  const gg::ImportanceMatrix m = gg::read_imatrix((dir / "m.dat").string());
  EXPECT_TRUE(m.legacy);
  EXPECT_EQ(m.chunk_count, 7u);
  EXPECT_EQ(m.datasets, std::vector<std::string>{"wiki2"});
  EXPECT_EQ(m.mean_squares("blk.0.attn_k.weight"), (std::vector<float>{2.f, 0.5f, 0.125f}));
  EXPECT_EQ(m.mean_squares("output.weight"), (std::vector<float>{8.f, 2.f, 0.5f}));  // ncall 0: as stored
}

// Every prefix of a legacy file either reads (the trailer is optional) or
// fails with a message naming the file; none crashes or reads past the end.
TEST(GgufImatrixFile, EveryTruncationOfALegacyFileFailsCleanly) {
  TempDir dir("xquant-imatrix");
  const std::string whole = legacy_dat();
  const size_t entries_end = whole.size() - 13;  // before the trailer
  for (size_t n = 0; n < whole.size(); ++n) {
    write_bytes(dir / "t.dat", whole.substr(0, n));
    try {
      const gg::ImportanceMatrix m = gg::read_imatrix((dir / "t.dat").string());
      EXPECT_GE(n, entries_end) << "a file cut at byte " << n << " inside the entries was accepted";
      EXPECT_EQ(m.entries.size(), 2u);
    } catch (const xquant::sdk::Error& e) {
      EXPECT_LT(n, entries_end) << "cut at " << n << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("t.dat"), std::string::npos) << e.what();
    }
  }
}

std::string error_of(const fs::path& p) {
  try {
    gg::read_imatrix(p.string());
  } catch (const xquant::sdk::Error& e) {
    return e.what();
  }
  return "";
}

TEST(GgufImatrixFile, MalformedGgufImatricesNameWhatIsWrong) {
  TempDir dir("xquant-imatrix");
  const float sums[4] = {1, 2, 3, 4}, count = 2, negative[4] = {1, -2, 3, 4};
  auto file = [&](const std::string& name, auto&& add) {
    gg::Emitter e(dir / name);
    e.set("general.type", gg::str_value("imatrix"));
    add(e);
    e.finish();
    return error_of(dir / name);
  };
  EXPECT_NE(file("no_counts.gguf", [&](gg::Emitter& e) {
              e.add_tensor("blk.0.attn_q.weight.in_sum2", gg::kF32, {4, 1}, sums, sizeof sums);
            }).find("'blk.0.attn_q.weight' has in_sum2 but no counts"),
            std::string::npos);
  EXPECT_NE(file("f16.gguf", [&](gg::Emitter& e) {
              const uint16_t h[4] = {0x3c00, 0x3c00, 0x3c00, 0x3c00};
              e.add_tensor("blk.0.attn_q.weight.in_sum2", gg::kF16, {4, 1}, h, sizeof h);
              e.add_tensor("blk.0.attn_q.weight.counts", gg::kF32, {1, 1}, &count, 4);
            }).find("'blk.0.attn_q.weight.in_sum2' is F16, not F32"),
            std::string::npos);
  EXPECT_NE(file("negative.gguf", [&](gg::Emitter& e) {
              e.add_tensor("blk.0.attn_q.weight.in_sum2", gg::kF32, {4, 1}, negative, sizeof negative);
              e.add_tensor("blk.0.attn_q.weight.counts", gg::kF32, {1, 1}, &count, 4);
            }).find("element 1 is -2"),
            std::string::npos);
  EXPECT_NE(file("uneven.gguf", [&](gg::Emitter& e) {
              e.add_tensor("blk.0.attn_q.weight.in_sum2", gg::kF32, {4, 1}, sums, sizeof sums);
              const float counts[3] = {1, 1, 1};
              e.add_tensor("blk.0.attn_q.weight.counts", gg::kF32, {1, 3}, counts, sizeof counts);
            }).find("4 sums do not split into 3 matrices"),
            std::string::npos);
  EXPECT_NE(file("model.gguf", [&](gg::Emitter& e) {
              e.add_tensor("blk.0.attn_q.weight", gg::kF32, {4, 1}, sums, sizeof sums);
            }).find("not a llama.cpp imatrix"),
            std::string::npos);
}

// ---- pipelines ------------------------------------------------------------------

// A calibrated GPTQ pipeline (int4 asymmetric g32: Q4_0 has no zero point, so
// every Linear is requantized) into GGUF; returns "" or the error text.
std::string quantize_gguf(const fs::path& out, const std::string& params) {
  const std::string yaml = "model: {path: " + kGguf.string() + "}\ncalibration: {text: " + kText.string() +
                           ", samples: 8, seq_len: 128}\nquantize:\n  - {algorithm: gptq, weights: {bits: 4, "
                           "symmetric: false, group_size: 32}}\nignore: [lm_head]\noutput: {format: gguf, path: " +
                           out.string() + ", params: {type: Q4_0" + params + "}}\n";
  xq_runtime* r = nullptr;
  EXPECT_EQ(xq_runtime_create(nullptr, &r), XQ_OK) << xq_last_error();
  const xq_status s = xq_run_pipeline_string(r, yaml.c_str(), nullptr);
  std::string err = s == XQ_OK ? "" : std::string(xq_last_error());
  xq_runtime_destroy(r);
  return err;
}

TEST(GgufImportanceWriter, CalibrationWeightsTheRequantizationAndItsImatrixReproducesIt) {
  TempDir dir("xquant-gguf-importance");
  ASSERT_EQ(quantize_gguf(dir / "weighted.gguf", ", imatrix_out: " + (dir / "run.imatrix.gguf").string()), "");
  ASSERT_EQ(quantize_gguf(dir / "plain.gguf", ", importance: false"), "");
  ASSERT_EQ(quantize_gguf(dir / "fed.gguf", ", importance: false, imatrix: " + (dir / "run.imatrix.gguf").string()),
            "");
  EXPECT_NE(read_file(dir / "weighted.gguf"), read_file(dir / "plain.gguf"));
  EXPECT_EQ(read_file(dir / "weighted.gguf"), read_file(dir / "fed.gguf"));

  // The run's imatrix: one entry per quantized Linear (5 layers x 7), every
  // one over the 8 x 128 calibration tokens.
  const gg::ImportanceMatrix m = gg::read_imatrix((dir / "run.imatrix.gguf").string());
  EXPECT_EQ(m.entries.size(), 35u);
  for (const auto& [name, e] : m.entries) {
    ASSERT_EQ(e.counts.size(), 1u) << name;
    EXPECT_EQ(e.counts[0], 8.f * 128) << name;
    double sum = 0;
    for (float v : e.sums) sum += v;
    EXPECT_GT(sum, 0) << name;
  }
  EXPECT_EQ(m.entries.at("blk.0.attn_q.weight").sums.size(), 64u);
  EXPECT_EQ(m.entries.at("blk.0.ffn_down.weight").sums.size(), 172u);
}

TEST(GgufImportanceWriter, AnImatrixThatDoesNotFitFailsNamingTheTensor) {
  TempDir dir("xquant-gguf-importance");
  gg::ImportanceMatrix m;
  m.entries["blk.0.attn_q.weight"] = {std::vector<float>(10, 1.f), {1.f}};
  gg::write_imatrix((dir / "bad.gguf").string(), m);
  const std::string err = quantize_gguf(dir / "out.gguf", ", imatrix: " + (dir / "bad.gguf").string());
  EXPECT_NE(err.find("blk.0.attn_q.weight: the importance from imatrix"), std::string::npos) << err;
  EXPECT_NE(err.find("10 values for 64 columns"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));
  const std::string missing = quantize_gguf(dir / "out.gguf", ", imatrix: " + (dir / "none.gguf").string());
  EXPECT_NE(missing.find("none.gguf"), std::string::npos) << missing;
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));
}

}  // namespace
