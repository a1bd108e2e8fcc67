// test_compact_tables.cpp: the embedding table and lm_head held in fewer
// bytes (engine/compact_tables.cpp): Q8_0 blocks byte-equal to ggml's
// encoder, the bytes a token reads counted, the looked-up embedding rows
// exactly the Q8_0 / BF16 values, logits near the F32 model's, BF16 as
// stored exact, and a bad form name refused.
//
// Opt-in: XQUANT_SMOLLM2_LLAMACPP_DIR, a folder holding llama.cpp's f32.gguf
// and q8_0.gguf of one model (bench/engine/llamacpp_compare.sh writes them
// under ~/.cache/xquant/bench-llamacpp/SmolLM2-135M): our Q8_0 encoding of
// the F32 token_embd equals llama-quantize's bytes.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/compact_tables.hpp"
#include "engine/model.hpp"
#include "../support/safetensors_file.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/half.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kHf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K-hf";      // tied, F32
const fs::path kGguf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K/stories260K.gguf";  // untied output, F32

std::unique_ptr<Model> open_with(Runtime& rt, const fs::path& p, TableForm form) {
  ModelOptions o;
  o.tables = form;
  return Model::open(rt, p, o);
}

// A Q8_0 block decoded the way ggml's dequantize_row_q8_0 does.
std::vector<float> decode_q8_0(const uint8_t* b, int64_t cols) {
  std::vector<float> y(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols / 32; ++k) {
    uint16_t h;
    std::memcpy(&h, b + k * 34, 2);
    const float d = sdk::f16_to_f32(h);
    for (int j = 0; j < 32; ++j) y[static_cast<size_t>(k * 32 + j)] = d * static_cast<int8_t>(b[k * 34 + 2 + j]);
  }
  return y;
}

// sqrt(mean (a - b)^2) / sqrt(mean b^2)
double relative_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378, 1, 200, 17};

std::vector<float> prefill_logits(Model& m) {
  KvCache c(m.arch(), 32);
  return m.forward({{&c, kPrompt.data(), static_cast<int64_t>(kPrompt.size()), true}});
}

// Prefill, then one decode step (the GEMV path): the decode row's logits.
std::vector<float> decode_logits(Model& m) {
  KvCache c(m.arch(), 32);
  m.forward({{&c, kPrompt.data(), static_cast<int64_t>(kPrompt.size()), false}});
  const int32_t t = 99;
  return m.forward({{&c, &t, 1, false}});
}

// stories260K-hf rewritten into `dir` with every tensor in the 16-bit dtype
// `t` (BF16 or F16; stored16) or as F32 of the values rounded to it, with an
// untied lm_head.weight (the embedding's values) when `untied`, so the file's
// own lm_head tensor is what runs.
void write_rounded_copy(const fs::path& dir, xq_dtype t, bool stored16, bool untied) {
  fs::create_directories(dir);
  fs::copy_file(kHf / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  const test::SafetensorsFile src = test::read_safetensors(kHf / "model.safetensors");
  test::SafetensorsWriter out;
  auto put = [&](const std::string& name, const nlohmann::json& ti) {
    std::string bytes;
    for (float v : src.f32(ti)) {
      const uint16_t h = t == XQ_DTYPE_F16 ? sdk::f32_to_f16(v) : sdk::f32_to_bf16(v);
      if (stored16) {
        bytes.append(reinterpret_cast<const char*>(&h), 2);
      } else {
        const float r = t == XQ_DTYPE_F16 ? sdk::f16_to_f32(h) : sdk::bf16_to_f32(h);
        bytes.append(reinterpret_cast<const char*>(&r), 4);
      }
    }
    out.add(name, stored16 ? sdk::dtype_name(t) : "F32", ti["shape"], bytes.data(), bytes.size());
  };
  for (auto& [name, ti] : src.header.items())
    if (name != "__metadata__") put(name, ti);
  if (untied) put("lm_head.weight", src.header["model.embed_tokens.weight"]);
  out.write(dir / "model.safetensors");
}

}  // namespace

// A 16-bit model against the F32 model of the same rounded values: the
// tables stay in their dtype as stored, logits bit-identical, the lm_head
// GEMV reading half the bytes (embedding rows are not counted per token).
// F32 values on the BF16 grid are held in BF16 as well (f32_layout then
// names it and the bytes are the same).
void check_kept_as_stored(xq_dtype t, bool untied, const std::string& layout, const std::string& f32_layout) {
  const fs::path tmp = fs::temp_directory_path() / ("xquant_compact_tables_" + std::to_string(::getpid()));
  write_rounded_copy(tmp / "16", t, true, untied);
  write_rounded_copy(tmp / "f32", t, false, untied);
  Runtime rt{RuntimeOptions{}};
  auto m16 = Model::open(rt, tmp / "16");
  auto mf = Model::open(rt, tmp / "f32");
  EXPECT_EQ(m16->lm_head().layout, layout);
  EXPECT_EQ(mf->lm_head().layout, f32_layout);
  const uint64_t table = static_cast<uint64_t>(m16->arch().vocab * m16->arch().hidden);
  const bool f32_held_wide = f32_layout.rfind("f32", 0) == 0;
  EXPECT_EQ(mf->weight_bytes_per_token() - m16->weight_bytes_per_token(), f32_held_wide ? table * 2 : 0);
  EXPECT_EQ(prefill_logits(*m16), prefill_logits(*mf));
  EXPECT_EQ(decode_logits(*m16), decode_logits(*mf));
  fs::remove_all(tmp);
}

TEST(CompactTables, UntiedBf16LmHeadStaysBf16AndExact) {
  check_kept_as_stored(XQ_DTYPE_BF16, true, "bf16 (as stored)", "bf16 (F32 on the BF16 grid)");
}
TEST(CompactTables, TiedBf16TableStaysBf16AndExact) {
  check_kept_as_stored(XQ_DTYPE_BF16, false, "bf16 (tied embeddings)", "bf16 (tied embeddings)");
}
TEST(CompactTables, UntiedF16LmHeadStaysF16AndExact) {
  check_kept_as_stored(XQ_DTYPE_F16, true, "f16 (as stored)", "f32");
}
TEST(CompactTables, TiedF16TableStaysF16AndExact) {
  check_kept_as_stored(XQ_DTYPE_F16, false, "f16 (tied embeddings)", "f32 (tied embeddings)");
}

TEST(CompactTables, F32TableOnTheBf16GridIsHeldBf16Exactly) {
  // stories260K-hf's real F32 values stay F32; the same file with every value
  // rounded to BF16 (still stored F32) holds its tied table in BF16: half the
  // table's bytes per token and, as the 16-bit cases above, the same logits
  // as a BF16-stored file (its embedding rows bit-identical to the F32 ones).
  const fs::path tmp = fs::temp_directory_path() / ("xquant_compact_tables_grid_" + std::to_string(::getpid()));
  write_rounded_copy(tmp, XQ_DTYPE_BF16, false, false);
  Runtime rt{RuntimeOptions{}};
  auto real = Model::open(rt, kHf);
  auto grid = Model::open(rt, tmp);
  EXPECT_EQ(real->lm_head().layout, "f32 (tied embeddings)");
  EXPECT_EQ(grid->lm_head().layout, "bf16 (tied embeddings)");
  const int64_t vocab = grid->arch().vocab, hidden = grid->arch().hidden;
  EXPECT_EQ(real->weight_bytes_per_token() - grid->weight_bytes_per_token(), static_cast<uint64_t>(vocab * hidden) * 2);
  std::vector<int32_t> ids = {0, 5, static_cast<int32_t>(vocab - 1)};
  std::vector<float> eg(ids.size() * hidden), er(ids.size() * hidden);
  grid->embed(ids.data(), static_cast<int64_t>(ids.size()), eg.data());
  real->embed(ids.data(), static_cast<int64_t>(ids.size()), er.data());
  for (size_t i = 0; i < eg.size(); ++i) ASSERT_EQ(eg[i], sdk::round_to_bf16(er[i])) << i;
  fs::remove_all(tmp);
}

TEST(CompactTables, Q8_0BlockIsGgmlsEncoding) {
  // Worked by hand from ggml's quantize_row_q8_0_ref: d = max|x|/127 stored
  // as f16, q = round(x / d) with the unrounded d.
  std::vector<float> x(64);
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = static_cast<float>(j - 16) * 0.25f;  // max |x| = 4
  // second block all zeros: d = 0, codes 0
  std::vector<uint8_t> out(68, 0xAB);
  encode_q8_0_rows(x.data(), 1, 64, out.data());
  uint16_t h;
  std::memcpy(&h, out.data(), 2);
  EXPECT_EQ(h, sdk::f32_to_f16(4.0f / 127));
  for (int j = 0; j < 32; ++j)
    EXPECT_EQ(static_cast<int8_t>(out[static_cast<size_t>(2 + j)]), static_cast<int>(std::lround((j - 16) * 0.25 * 127 / 4)))
        << j;
  for (int j = 34; j < 68; ++j) EXPECT_EQ(out[static_cast<size_t>(j)], 0) << j;
  // Halfway cases round away from zero (roundf): x = ±0.5 d.
  std::vector<float> y(32, 0.0f);
  y[0] = 127.0f;
  y[1] = 0.5f;
  y[2] = -0.5f;
  encode_q8_0_rows(y.data(), 1, 32, out.data());
  EXPECT_EQ(static_cast<int8_t>(out[2]), 127);
  EXPECT_EQ(static_cast<int8_t>(out[3]), 1);
  EXPECT_EQ(static_cast<int8_t>(out[4]), -1);
}

TEST(CompactTables, TiedTableAsQ8_0) {
  Runtime rt{RuntimeOptions{}};
  auto mf = Model::open(rt, kHf);
  auto mq = open_with(rt, kHf, TableForm::kQ8_0);
  const int64_t vocab = mf->arch().vocab, hidden = mf->arch().hidden;
  EXPECT_EQ(mf->lm_head().layout, "f32 (tied embeddings)");
  EXPECT_EQ(mq->lm_head().layout, "ggml-blocks Q8_0 (tied embeddings)");
  // Bytes a token reads: the table's F32 bytes replaced by its Q8_0 blocks.
  const uint64_t table = static_cast<uint64_t>(vocab * hidden);
  EXPECT_EQ(mf->weight_bytes_per_token() - mq->weight_bytes_per_token(), table * 4 - table / 32 * 34);

  // Embedding rows: exactly the Q8_0 values of the F32 rows.
  std::vector<int32_t> ids = {0, 1, 255, static_cast<int32_t>(vocab - 1)};
  std::vector<float> ef(ids.size() * hidden), eq(ids.size() * hidden);
  mf->embed(ids.data(), static_cast<int64_t>(ids.size()), ef.data());
  mq->embed(ids.data(), static_cast<int64_t>(ids.size()), eq.data());
  std::vector<uint8_t> blocks(static_cast<size_t>(hidden / 32 * 34));
  for (size_t r = 0; r < ids.size(); ++r) {
    encode_q8_0_rows(ef.data() + r * hidden, 1, hidden, blocks.data());
    const std::vector<float> want = decode_q8_0(blocks.data(), hidden);
    for (int64_t j = 0; j < hidden; ++j) ASSERT_EQ(eq[r * hidden + j], want[static_cast<size_t>(j)]) << ids[r] << "," << j;
  }
  // Logits: near the F32 model's (one 8-bit rounding of the table; the
  // decode GEMV also rounds the activation to 8 bits), and not equal to them.
  const double prefill = relative_rms(prefill_logits(*mq), prefill_logits(*mf));
  const double decode = relative_rms(decode_logits(*mq), decode_logits(*mf));
  std::printf("Q8_0 tables, relative RMS logit error: prefill %.3g, decode %.3g\n", prefill, decode);
  EXPECT_GT(prefill, 0.0);
  EXPECT_LT(prefill, 0.01);
  EXPECT_LT(decode, 0.01);
}

TEST(CompactTables, TiedTableAsBf16) {
  Runtime rt{RuntimeOptions{}};
  auto mf = Model::open(rt, kHf);
  auto mb = open_with(rt, kHf, TableForm::kBf16);
  const int64_t vocab = mf->arch().vocab, hidden = mf->arch().hidden;
  EXPECT_EQ(mb->lm_head().layout, "bf16 (tied embeddings)");
  EXPECT_EQ(mf->weight_bytes_per_token() - mb->weight_bytes_per_token(), static_cast<uint64_t>(vocab * hidden) * 2);
  std::vector<int32_t> ids = {3, 77, static_cast<int32_t>(vocab - 1)};
  std::vector<float> ef(ids.size() * hidden), eb(ids.size() * hidden);
  mf->embed(ids.data(), static_cast<int64_t>(ids.size()), ef.data());
  mb->embed(ids.data(), static_cast<int64_t>(ids.size()), eb.data());
  for (size_t i = 0; i < ef.size(); ++i) ASSERT_EQ(eb[i], sdk::round_to_bf16(ef[i])) << i;
  const double prefill = relative_rms(prefill_logits(*mb), prefill_logits(*mf));
  std::printf("BF16 tables, relative RMS logit error: prefill %.3g\n", prefill);
  EXPECT_GT(prefill, 0.0);
  EXPECT_LT(prefill, 0.004);
}

TEST(CompactTables, UntiedLmHead) {
  // stories260K.gguf stores output.weight beside token_embd (a copy): the
  // untied path, each table converted on its own.
  Runtime rt{RuntimeOptions{}};
  auto mf = Model::open(rt, kGguf);
  auto mq = open_with(rt, kGguf, TableForm::kQ8_0);
  auto mb = open_with(rt, kGguf, TableForm::kBf16);
  const uint64_t table = static_cast<uint64_t>(mf->arch().vocab * mf->arch().hidden);
  EXPECT_EQ(mf->lm_head().layout, "f32");
  EXPECT_EQ(mq->lm_head().layout, "ggml-blocks Q8_0");
  EXPECT_EQ(mb->lm_head().layout, "bf16 (rounded from F32)");
  EXPECT_EQ(mf->weight_bytes_per_token() - mq->weight_bytes_per_token(), table * 4 - table / 32 * 34);
  EXPECT_EQ(mf->weight_bytes_per_token() - mb->weight_bytes_per_token(), table * 2);
  const std::vector<float> f = decode_logits(*mf);
  EXPECT_LT(relative_rms(decode_logits(*mq), f), 0.01);
  EXPECT_LT(relative_rms(decode_logits(*mb), f), 0.004);
}

TEST(CompactTables, TheSourcePagesAreGivenBackAsForTheF32Copy) {
  // Every form releases exactly the whole pages of the table it read
  // (plus the Linears'), the same bytes as the F32 copy's read_and_release.
  Runtime rt{RuntimeOptions{}};
  for (const fs::path& p : {kHf, kGguf}) {
    const uint64_t f32 = Model::open(rt, p)->load_stats().source_bytes_released;
    std::printf("%s: the F32 copy released %llu bytes\n", p.filename().c_str(), static_cast<unsigned long long>(f32));
    EXPECT_GT(f32, 0u) << p;
    EXPECT_EQ(open_with(rt, p, TableForm::kQ8_0)->load_stats().source_bytes_released, f32) << p;
    EXPECT_EQ(open_with(rt, p, TableForm::kBf16)->load_stats().source_bytes_released, f32) << p;
  }
}

TEST(CompactTables, FormNamesAndRefusal) {
  EXPECT_EQ(table_form_from_name("as-stored"), TableForm::kAsStored);
  EXPECT_EQ(table_form_from_name("BF16"), TableForm::kBf16);
  EXPECT_EQ(table_form_from_name("q8_0"), TableForm::kQ8_0);
  try {
    table_form_from_name("q4");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'q4'"), std::string::npos) << e.what();
  }
}

TEST(CompactTables, LlamaCppQ8_0TokenEmbdBytes) {
  const char* dir = std::getenv("XQUANT_SMOLLM2_LLAMACPP_DIR");
  if (!dir || !*dir) GTEST_SKIP() << "XQUANT_SMOLLM2_LLAMACPP_DIR not set (llama.cpp's f32.gguf and q8_0.gguf of one model)";
  Runtime rt{RuntimeOptions{}};
  auto f32 = Checkpoint::open(rt, fs::path(dir) / "f32.gguf");
  auto q8 = Checkpoint::open(rt, fs::path(dir) / "q8_0.gguf");
  const TensorEntry& tf = f32->require("model.embed_tokens.weight");
  const TensorEntry& tq = q8->require("model.embed_tokens.weight");
  ASSERT_EQ(tf.dtype, XQ_DTYPE_F32);
  ASSERT_EQ(tq.storage_type, "Q8_0");
  const int64_t rows = tf.shape[0], cols = tf.shape[1];
  const std::vector<float> x = f32->read_f32(tf);
  std::vector<uint8_t> ours(static_cast<size_t>(rows * cols / 32 * 34));
  encode_q8_0_rows(x.data(), rows, cols, ours.data());
  const xq_tensor_view v = q8->raw(tq);
  ASSERT_EQ(v.nbytes, ours.size());
  EXPECT_EQ(std::memcmp(ours.data(), v.data, ours.size()), 0);
}
