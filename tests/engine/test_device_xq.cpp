// test_device_xq.cpp: an xq checkpoint whose quantized weights are stored in
// the cuda provider's layouts (cuda.w4a16-mma.v1) loads on `cuda` with every
// quantized Linear taken as stored (the compressed-tensors copy of the
// quantization is repacked at load) or, where q|k|v and gate|up cannot be
// placed as one weight each, those stacked and repacked at load, and runs
// like the same file on `cpu` (which takes its cpu.int-blocks.v1 segments):
// logits within BF16-activation noise, perplexity within 0.5%. (The two
// formats' quantizations differ where a Linear's input columns are not a
// multiple of the group size: compressed-tensors falls back to per-channel,
// xq keeps a ragged last group; stories260K's down_proj is 172 wide.)
// Skips without a usable GPU.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"
#include "engine/stored_layouts.hpp"

#include <xquant/xquant.h>

#include "../support/hf_test_checkpoint.hpp"
#include "../support/scoped_env.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_device_xq {

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";

Runtime& runtime() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

void quantize_to(const std::string& format, const fs::path& out, int group_size = 32, const char* params = nullptr,
                 const fs::path& model = kShared / "models/stories260K-hf") {
  const std::string yaml = "model:\n  path: " + model.string() +
                           "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n    weights:\n      bits: 4\n"
                           "      symmetric: false\n      group_size: " + std::to_string(group_size) +
                           "\nignore: [lm_head]\noutput:\n  format: " + format + "\n  path: " + out.string() + "\n" +
                           (params ? std::string("  params: ") + params + "\n" : std::string());
  xq_runtime* crt = nullptr;
  ASSERT_EQ(xq_runtime_create(nullptr, &crt), XQ_OK) << xq_last_error();
  ASSERT_EQ(xq_run_pipeline_string(crt, yaml.c_str(), nullptr), XQ_OK) << xq_last_error();
  xq_runtime_destroy(crt);
}

std::unique_ptr<Model> open_on(const fs::path& path, const std::string& provider, std::string* why) {
  ModelOptions o;
  o.provider = provider;
  o.tokenizer_from = kGguf;
  try {
    return Model::open(runtime(), path, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    *why = e.what();
    return nullptr;
  }
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

// stories260K's q|k|v and gate|up cannot be placed as one weight each (its
// 64-row q ends inside a 128-row n-block), so by default they are stacked
// from the canonical tensors (25 Linears repacked, o_proj and down_proj
// taken as stored); with XQUANT_STACK_STORED=0 every Linear is taken as
// stored, nothing repacked. Both run like the file on cpu.
TEST(DeviceXq, StoredCudaLayoutsTakenAsStoredOrStackedWherePlacementRefuses) {
  const fs::path dir = fs::temp_directory_path() / ("xquant_device_xq_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    std::string why;
    // Cheap probe first: without a GPU the open is refused before any quantization.
    auto probe = open_on(kGguf, "cuda", &why);
    if (!probe) GTEST_SKIP() << "cuda provider unusable here: " << why;
  }
  quantize_to("compressed-tensors", dir / "ct");
  quantize_to("xq", dir / "xq");
  std::string why;
  auto ct = open_on(dir / "ct", "cuda", &why);
  std::unique_ptr<Model> xq;
  {
    xquant::test::ScopedEnv off("XQUANT_STACK_STORED", "0");
    xq = open_on(dir / "xq", "cuda", &why);
  }
  auto xq_stacked = open_on(dir / "xq", "cuda", &why);
  auto xq_cpu = open_on(dir / "xq", "cpu", &why);
  ASSERT_TRUE(ct && xq && xq_stacked && xq_cpu) << why;
  const auto& sc = ct->load_stats();
  const auto& sx = xq->load_stats();
  const auto& s_stacked = xq_stacked->load_stats();
  std::printf("compressed-tensors on cuda: %llu bytes repacked (%d Linears); xq one by one: %llu repacked (%d), %llu stored "
              "(%d); xq stacked: %llu repacked (%d), %llu stored (%d)\n",
              static_cast<unsigned long long>(sc.repacked_bytes), sc.repacked_linears,
              static_cast<unsigned long long>(sx.repacked_bytes), sx.repacked_linears,
              static_cast<unsigned long long>(sx.stored_bytes), sx.stored_linears,
              static_cast<unsigned long long>(s_stacked.repacked_bytes), s_stacked.repacked_linears,
              static_cast<unsigned long long>(s_stacked.stored_bytes), s_stacked.stored_linears);
  EXPECT_GT(sc.repacked_bytes, 0u);
  EXPECT_EQ(sx.repacked_bytes, 0u);
  EXPECT_EQ(sx.repacked_linears, 0);
  EXPECT_EQ(sx.stored_linears, xq->quantized_linears());
  EXPECT_EQ(xq->quantized_linears(), 35);
  EXPECT_EQ(xq->dequantized_linears(), 0);
  EXPECT_NE(xq->layer(0).linears[0].layout.find("stored, not repacked"), std::string::npos)
      << xq->layer(0).linears[0].layout;
  EXPECT_EQ(s_stacked.repacked_linears, 25);  // 5 layers x q, k, v, gate, up
  EXPECT_EQ(s_stacked.stored_linears, 10);    // 5 layers x o, down
  EXPECT_EQ(xq_stacked->quantized_linears(), 35);
  EXPECT_EQ(xq_stacked->layer(0).linears[0].layout, "stacked into q|k|v");
  EXPECT_NE(xq_stacked->layer(0).linears[3].layout.find("stored, not repacked"), std::string::npos)
      << xq_stacked->layer(0).linears[3].layout;
  // The same file on cuda and on cpu.
  GenerateOptions o;
  o.n_tokens = 32;
  o.stop_at_eog = false;
  const auto gg = generate(*xq, "Once upon a time", o), gc = generate(*xq_cpu, "Once upon a time", o);
  EXPECT_EQ(gg.tokens.size(), 32u);
  std::printf("xq cuda: %s\nxq cpu:  %s\n", gg.text.c_str(), gc.text.c_str());
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const auto ids = eval_tokens(*xq_cpu, ss.str(), 1024);
  KvCache kc(*xq_cpu, 64), kg(*xq, 64);
  KvCache ks(*xq_stacked, 64);
  const auto lc = xq_cpu->forward({SequenceInput{&kc, ids.data(), 32, true}});
  const auto lg = xq->forward({SequenceInput{&kg, ids.data(), 32, true}});
  const auto ls = xq_stacked->forward({SequenceInput{&ks, ids.data(), 32, true}});
  EXPECT_LE(rel_diff(lg, lc), 3e-2);  // BF16 activations on the GPU, F32 on the CPU
  EXPECT_LE(rel_diff(ls, lc), 3e-2);
  const auto pc = perplexity(*xq_cpu, ids, 256), pg = perplexity(*xq, ids, 256), ps = perplexity(*xq_stacked, ids, 256);
  EXPECT_LE(std::fabs(pg.perplexity / pc.perplexity - 1.0), 5e-3) << pg.perplexity << " vs " << pc.perplexity;
  EXPECT_LE(std::fabs(ps.perplexity / pc.perplexity - 1.0), 5e-3) << ps.perplexity << " vs " << pc.perplexity;
  std::printf("xq W4A16 g32 asym perplexity: cpu %.5f, cuda one by one %.5f, cuda stacked %.5f\n", pc.perplexity,
              pg.perplexity, ps.perplexity);
  fs::remove_all(dir);
}

// The Hopper GEMM's copy stored beside the mma layout (`layouts` with
// cuda-wgmma): stories260K's attention Linears (64 x 64, group 64) fit the
// GEMM, the MLP ones (172 wide) do not. On a device and build with that GEMM
// the adopted weights take the stored copy (counted in load_stats), nothing
// is repacked, and prefill over 96 tokens (its Linears at M = 96, the Hopper
// GEMM's range) matches the same file on cpu as the test above does; elsewhere
// the copy is left in the file and the model runs the same. Whether this
// device and build take the copy is asked of the provider on the same
// quantization written without it (qweight_extra_layout of its q_proj).
TEST(DeviceXq, TheStoredHopperCopyIsTakenAndRunsTheSame) {
  const fs::path dir = fs::temp_directory_path() / ("xquant_device_xq_wgmma_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    std::string why;
    auto probe = open_on(kGguf, "cuda", &why);
    if (!probe) GTEST_SKIP() << "cuda provider unusable here: " << why;
  }
  quantize_to("xq", dir / "xq", 64, "{layouts: \"cpu,cuda,cuda-wgmma\"}");
  quantize_to("xq", dir / "without", 64);
  std::string why;
  bool takes_copy = false;
  // One by one: stories260K's q|k|v would otherwise be stacked and repacked
  // (test above), which makes the provider's own copy.
  xquant::test::ScopedEnv one_by_one("XQUANT_STACK_STORED", "0");
  {
    auto without = open_on(dir / "without", "cuda", &why);
    ASSERT_TRUE(without) << why;
    takes_copy = !without->kernels().extra_layout(without->layer(0).linears[0].q).empty();
    EXPECT_EQ(without->load_stats().stored_copies, 0);
  }
  auto xq = open_on(dir / "xq", "cuda", &why);
  auto xq_cpu = open_on(dir / "xq", "cpu", &why);
  ASSERT_TRUE(xq && xq_cpu) << why;
  const auto& sx = xq->load_stats();
  std::printf("xq with the Hopper copy on cuda: %llu repacked, %llu stored (%d Linears), %d second copies (%llu bytes)\n",
              static_cast<unsigned long long>(sx.repacked_bytes), static_cast<unsigned long long>(sx.stored_bytes),
              sx.stored_linears, sx.stored_copies, static_cast<unsigned long long>(sx.stored_copy_bytes));
  testing::Test::RecordProperty("stored_copies", std::to_string(sx.stored_copies));
  EXPECT_EQ(sx.repacked_bytes, 0u);
  EXPECT_EQ(sx.stored_linears, xq->quantized_linears());
  // 5 layers x q, k, v, o where the GEMM exists; none elsewhere.
  EXPECT_EQ(sx.stored_copies, takes_copy ? 20 : 0) << (takes_copy ? "a Hopper GEMM here" : "no Hopper GEMM here");
  if (takes_copy) {
    EXPECT_TRUE(xq->kernels().extra_layout(xq->layer(0).linears[0].q).empty()) << "q_proj still asks for its copy";
  }
  EXPECT_EQ(xq_cpu->load_stats().stored_copies, 0);
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const auto ids = eval_tokens(*xq_cpu, ss.str(), 1024);
  KvCache kc(*xq_cpu, 128), kg(*xq, 128);
  const auto lc = xq_cpu->forward({SequenceInput{&kc, ids.data(), 96, true}});
  const auto lg = xq->forward({SequenceInput{&kg, ids.data(), 96, true}});
  EXPECT_LE(rel_diff(lg, lc), 3e-2);  // BF16 activations on the GPU, F32 on the CPU
  fs::remove_all(dir);
}

// By default q|k|v and gate|up stored in the provider's layout are adopted
// as one weight each (qweight_adopt_stacked, each part's bytes placed);
// XQUANT_STACK_STORED=0 adopts them one by one. A random Llama-shaped
// checkpoint whose q, k, v and gate, up fill whole 128-row n-blocks
// (stories260K's do not: 64-row q, 172-row gate): nothing repacked either
// way, the stacked load names the stacking, and its logits match the
// one-by-one load's (the GEMMs' N differs, so their split and sum order may
// too).
TEST(DeviceXq, StoredQkvAndGateUpAdoptedStackedRunTheSame) {
  {
    std::string why;
    auto probe = open_on(kGguf, "cuda", &why);
    if (!probe) GTEST_SKIP() << "cuda provider unusable here: " << why;
  }
  xqtest_hf::Cfg c;
  c.type = "llama";
  c.hidden = 256, c.inter = 512, c.layers = 2, c.heads = 4, c.kv = 2, c.hd = 64, c.vocab = 64;
  const fs::path src = xqtest_hf::write_checkpoint(c, xqtest_hf::make_weights(c, 7));
  const fs::path dir = fs::temp_directory_path() / ("xquant_device_xq_stacked_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  quantize_to("xq", dir / "xq", 128, nullptr, src);
  std::string why;
  std::unique_ptr<Model> plain;
  {
    xquant::test::ScopedEnv off("XQUANT_STACK_STORED", "0");
    plain = open_on(dir / "xq", "cuda", &why);
  }
  ASSERT_TRUE(plain) << why;
  auto stacked = open_on(dir / "xq", "cuda", &why);
  ASSERT_TRUE(stacked) << why;
  for (const Model* m : {plain.get(), stacked.get()}) {
    EXPECT_EQ(m->load_stats().repacked_bytes, 0u);
    EXPECT_EQ(m->load_stats().stored_linears, 14);
    EXPECT_EQ(m->quantized_linears(), 14);
  }
  EXPECT_NE(plain->layer(0).linears[0].layout.find("stored, not repacked"), std::string::npos)
      << plain->layer(0).linears[0].layout;
  EXPECT_EQ(stacked->layer(0).linears[0].layout, "stacked into q|k|v");
  EXPECT_EQ(stacked->layer(1).linears[3].layout.find("stacked"), std::string::npos) << "o_proj stays alone";
  std::vector<int32_t> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(3 + (i * 7) % 60);
  KvCache kp(*plain, 32), ks(*stacked, 32);
  const auto lp = plain->forward({SequenceInput{&kp, ids.data(), static_cast<int>(ids.size()), true}});
  const auto ls = stacked->forward({SequenceInput{&ks, ids.data(), static_cast<int>(ids.size()), true}});
  EXPECT_LE(rel_diff(ls, lp), 2e-3);
  fs::remove_all(dir);
}

// The switch itself, on any machine: stacking is the default, 0 turns it
// off, and any other value is refused by name (it is read while a device
// model loads, where a typo would otherwise go unnoticed).
TEST(StoredStackingSwitch, OnByDefaultOffWithZeroAnythingElseRefused) {
  {
    xquant::test::ScopedEnv empty("XQUANT_STACK_STORED", "");
    EXPECT_TRUE(stack_stored_weights());
    unsetenv("XQUANT_STACK_STORED");  // restored when the scope ends
    EXPECT_TRUE(stack_stored_weights());
  }
  {
    xquant::test::ScopedEnv on("XQUANT_STACK_STORED", "1");
    EXPECT_TRUE(stack_stored_weights());
  }
  {
    xquant::test::ScopedEnv off("XQUANT_STACK_STORED", "0");
    EXPECT_FALSE(stack_stored_weights());
  }
  xquant::test::ScopedEnv typo("XQUANT_STACK_STORED", "yes");
  try {
    stack_stored_weights();
    ADD_FAILURE() << "XQUANT_STACK_STORED=yes was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("XQUANT_STACK_STORED must be 0 or 1, got 'yes'"), std::string::npos) << e.what();
  }
}

}  // namespace test_device_xq
