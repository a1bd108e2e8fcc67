// test_device_engine.cpp: the engine on a device-memory kernel provider
// (`cuda`) against the same engine on `cpu`, on the real stories260K
// weights: greedy text identical for 64 tokens, perplexity within 0.5%,
// prefill logits and batched decoding close, a host KV cache refused, a
// compressed-tensors W4A16 checkpoint (RTN int4 g32) generating on the GPU,
// and a GPTQ act-order one running q|k|v and gate|up stacked.
// Every test skips when the cuda provider is not built or has no GPU here.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "plugins/registry.hpp"
#include "engine/evaluate.hpp"
#include "engine/op_profile.hpp"
#include "engine/model.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

// The model on `provider`, or nullptr with *why when that provider cannot run here.
std::unique_ptr<Model> open_on(const fs::path& path, const std::string& provider, std::string* why,
                               const fs::path& tokenizer_from = {}) {
  ModelOptions o;
  o.provider = provider;
  o.tokenizer_from = tokenizer_from;
  try {
    return Model::open(rt(), path, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    *why = e.what();
    return nullptr;
  }
}

Model& cpu() {
  static auto m = Model::open(rt(), kGguf);
  return *m;
}

Model* gpu(std::string* why) {
  static std::string reason;
  static auto m = open_on(kGguf, "cuda", &reason);
  *why = reason;
  return m.get();
}

#define REQUIRE_GPU_MODEL(var)                                         \
  std::string why_;                                                    \
  Model* var = gpu(&why_);                                             \
  if (!var) GTEST_SKIP() << "cuda provider unusable here: " << why_

std::vector<int32_t> eval_ids(Model& m, uint64_t max_tokens) {
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  return eval_tokens(m, ss.str(), max_tokens);
}

// The cuda provider's decode kernels (split-K ATTENTION over a contiguous
// cache, the few-row BF16 MATMUL, the W4A16 TMA-ring GEMV) off (the kernels
// they replaced) or on; the provider reads these switches per op.
void set_previous_decode_kernels(bool previous) {
  ::setenv("XQUANT_DECODE_ATTENTION", previous ? "0" : "1", 1);
  ::setenv("XQUANT_BF16_GEMV", previous ? "0" : "1", 1);
  ::setenv("XQUANT_CUDA_W4_GEMV_TMA", previous ? "0" : "1", 1);  // W4A16 at M <= 4: fused GEMM / TMA-ring GEMV
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

// Runs everywhere the cuda provider is built: without a usable GPU (CI), a
// model on it is refused at open with the provider's reason, before any
// weight is read.
TEST(DeviceEngine, ProviderWithoutADeviceIsRefusedAtOpenWithItsReason) {
  LoadedPlugin* p = rt().plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cuda");
  if (!p) GTEST_SKIP() << "the cuda provider is not built";
  const char* why = nullptr;
  if (p->kernel().score(p->state, &why) > 0) GTEST_SKIP() << "a GPU is present: " << (why ? why : "");
  ModelOptions o;
  o.provider = "cuda";
  try {
    Model::open(rt(), kGguf, o);
    FAIL() << "opened a model on a provider with score 0";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_DEVICE);
    EXPECT_NE(std::string(e.what()).find("cannot run on this machine"), std::string::npos) << e.what();
  }
}

// A model whose layers need more than the weight memory limit (or the
// device's free memory) is refused once layer 0 is up, and what it had
// uploaded is freed: the device's memory in use is back where it was.
TEST(DeviceEngine, AModelThatDoesNotFitIsRefusedAndLeavesNothingAllocated) {
  REQUIRE_GPU_MODEL(g);
  xq_memory_info before{}, after{};
  ASSERT_TRUE(g->kernels().memory_info(&before));
  ModelOptions o;
  o.provider = "cuda";
  o.weight_memory_limit = 1;
  try {
    Model::open(rt(), kGguf, o);
    FAIL() << "a model above the weight memory limit opened on cuda";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_OUT_OF_MEMORY);
    const std::string what = e.what();
    for (const char* part : {"does not fit", "on kernel provider 'cuda'", "the weight memory limit is", "nothing was kept"})
      EXPECT_NE(what.find(part), std::string::npos) << part << " in: " << what;
  }
  ASSERT_TRUE(g->kernels().memory_info(&after));
  EXPECT_LE(after.in_use, before.in_use + (2u << 20)) << "bytes in use before " << before.in_use << ", after "
                                                      << after.in_use;
}

TEST(DeviceEngine, UnknownDeviceWeightsSettingIsRefused) {
  ::setenv("XQUANT_DEVICE_WEIGHTS", "fp8", 1);
  try {
    Model::open(rt(), kGguf);
    ::unsetenv("XQUANT_DEVICE_WEIGHTS");
    FAIL() << "XQUANT_DEVICE_WEIGHTS=fp8 accepted";
  } catch (const Error& e) {
    ::unsetenv("XQUANT_DEVICE_WEIGHTS");
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("XQUANT_DEVICE_WEIGHTS"), std::string::npos) << e.what();
  }
}

// XQUANT_DEVICE_WEIGHTS=bf16 puts the dense Linears on the device as BF16,
// so fewer bytes are read per token than with F32. The engine decides it
// with a supports() probe whose operands point at a host address; the cuda
// provider refuses BF16 MATMUL operands off a 16-byte boundary, and a
// float[1] probe left the weights F32 (silently) in builds where the linker
// put it off one (kernels.hpp, support_probe).
TEST(DeviceEngine, Bf16DeviceWeightsAreTaken) {
  uint64_t bytes[2] = {0, 0};
  const char* settings[2] = {"f32", "bf16"};
  for (int i = 0; i < 2; ++i) {
    ::setenv("XQUANT_DEVICE_WEIGHTS", settings[i], 1);
    std::string why;
    auto m = open_on(kGguf, "cuda", &why);
    ::unsetenv("XQUANT_DEVICE_WEIGHTS");
    if (!m) GTEST_SKIP() << "cuda provider unusable here: " << why;
    bytes[i] = m->weight_bytes_per_token();
  }
  std::printf("weight bytes per token on cuda: f32 %llu, bf16 %llu\n", static_cast<unsigned long long>(bytes[0]),
              static_cast<unsigned long long>(bytes[1]));
  EXPECT_LT(bytes[1], bytes[0]);
}

TEST(DeviceEngine, LayerTapsAreRefusedOnTheDevice) {
  REQUIRE_GPU_MODEL(g);
  KvCache c(*g, 4);
  float* x = nullptr;  // never reached: the tap is refused first
  try {
    g->layer_forward(0, x, 1, {SequenceSpan{0, 1, 0, c.k(0), c.v(0)}}, [](int, const float*, int64_t, int64_t) {});
    FAIL() << "a host tap ran on device activations";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED);
  }
}

TEST(DeviceEngine, GreedyTextEqualsCpuForTheFirst64Tokens) {
  REQUIRE_GPU_MODEL(g);
  GenerateOptions o;
  o.n_tokens = 64;
  o.stop_at_eog = false;
  auto rc = generate(cpu(), "Once upon a time", o);
  auto rg = generate(*g, "Once upon a time", o);
  ASSERT_EQ(rc.tokens.size(), 64u);
  EXPECT_EQ(rg.tokens, rc.tokens);
  EXPECT_EQ(rg.text, rc.text);
  std::printf("cuda greedy: %s\n", rg.text.c_str());
}

TEST(DeviceEngine, PerplexityWithinHalfAPercentOfCpu) {
  REQUIRE_GPU_MODEL(g);
  const auto ids = eval_ids(cpu(), 2048);
  const auto pc = perplexity(cpu(), ids, 256);
  const auto pg = perplexity(*g, ids, 256);
  EXPECT_EQ(pg.tokens_scored, pc.tokens_scored);
  EXPECT_LE(std::fabs(pg.perplexity / pc.perplexity - 1.0), 0.005) << pg.perplexity << " vs " << pc.perplexity;
  std::printf("perplexity cpu %.6f cuda %.6f (%llu tokens)\n", pc.perplexity, pg.perplexity,
              static_cast<unsigned long long>(pc.tokens_scored));
}

TEST(DeviceEngine, PrefillLogitsAndBatchedDecodeMatchCpu) {
  REQUIRE_GPU_MODEL(g);
  const auto ids = eval_ids(cpu(), 41);
  KvCache cc(cpu(), 64), gc(*g, 64);
  const auto lc = cpu().forward({SequenceInput{&cc, ids.data(), 40, true}});
  const auto lg = g->forward({SequenceInput{&gc, ids.data(), 40, true}});
  ASSERT_EQ(lg.size(), lc.size());
  EXPECT_LE(rel_diff(lg, lc), 1e-4);
  // One more token for the prefilled sequence, batched with a fresh one of 7 tokens.
  KvCache fresh_c(cpu(), 64), fresh_g(*g, 64);
  const auto bc = cpu().forward({SequenceInput{&cc, ids.data() + 40, 1, false}, SequenceInput{&fresh_c, ids.data(), 7, false}});
  const auto bg = g->forward({SequenceInput{&gc, ids.data() + 40, 1, false}, SequenceInput{&fresh_g, ids.data(), 7, false}});
  ASSERT_EQ(bg.size(), bc.size());
  EXPECT_LE(rel_diff(bg, bc), 1e-4);
}

TEST(DeviceEngine, RefusesAHostKvCache) {
  REQUIRE_GPU_MODEL(g);
  KvCache host(g->arch(), 8);
  const int32_t tok = 1;
  try {
    g->forward({SequenceInput{&host, &tok, 1, false}});
    FAIL() << "a host KV cache ran on the cuda provider";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("KvCache(model"), std::string::npos) << e.what();
  }
}

namespace {

// The same quantized file on cuda and on cpu: BF16 activations on the GPU
// against F32 on the CPU, the prompt's logits and the perplexity within BF16
// noise.
void expect_cuda_follows_cpu(Model& on_cuda, Model& on_cpu, const char* label) {
  const auto ids = eval_ids(on_cpu, 33);
  KvCache cc(on_cpu, 64), gc(on_cuda, 64);
  const auto lc = on_cpu.forward({SequenceInput{&cc, ids.data(), 32, true}});
  const auto lg = on_cuda.forward({SequenceInput{&gc, ids.data(), 32, true}});
  EXPECT_LE(rel_diff(lg, lc), 3e-2) << label;
  const auto eval = eval_ids(on_cpu, 1024);
  const auto pc = perplexity(on_cpu, eval, 256), pg = perplexity(on_cuda, eval, 256);
  EXPECT_LE(std::fabs(pg.perplexity / pc.perplexity - 1.0), 0.02)
      << label << ": " << pg.perplexity << " vs " << pc.perplexity;
  std::printf("%s: logits rel diff %.4f, perplexity cpu %.5f cuda %.5f\n", label, rel_diff(lg, lc), pc.perplexity,
              pg.perplexity);
}

// stories260K-hf quantized by the pipeline with the YAML `quantize` list
// `rules` (and `extra` top-level lines) into a compressed-tensors checkpoint
// at `out`, replaced if there; false with the reason in *why on failure.
bool write_quantized_stories(const fs::path& out, const std::string& rules, const std::string& extra, std::string* why) {
  fs::remove_all(out);
  const std::string yaml = "model:\n  path: " + (kShared / "models/stories260K-hf").string() + "\nquantize:\n" + rules +
                           "ignore: [lm_head]\n" + extra + "output:\n  format: compressed-tensors\n  path: " +
                           out.string() + "\n";
  xq_runtime* crt = nullptr;
  if (xq_runtime_create(nullptr, &crt) != XQ_OK) return *why = xq_last_error(), false;
  const bool ok = xq_run_pipeline_string(crt, yaml.c_str(), nullptr) == XQ_OK;
  if (!ok) *why = xq_last_error();
  xq_runtime_destroy(crt);
  return ok;
}

}  // namespace

TEST(DeviceEngine, CompressedTensorsW4A16GeneratesOnTheGpu) {
  REQUIRE_GPU_MODEL(g);
  const fs::path out = fs::temp_directory_path() / ("xquant_device_test_" + std::to_string(::getpid())) / "w4a16-g32";
  std::string why;
  ASSERT_TRUE(write_quantized_stories(out,
                                      "  - targets: [Linear]\n    algorithm: rtn\n    weights:\n      bits: 4\n"
                                      "      symmetric: true\n      group_size: 32\n",
                                      "", &why))
      << why;
  auto q = open_on(out, "cuda", &why, kGguf);
  ASSERT_TRUE(q) << why;
  EXPECT_EQ(q->quantized_linears() + q->dequantized_linears(), 35);
  // q_proj itself, or the q|k|v weight it was stacked into.
  const LinearWeights& q0 = q->layer(0).qkv.desc ? q->layer(0).qkv : q->layer(0).linears[0];
  std::printf("W4A16 on cuda: %d Linears through QMATMUL (layer 0 q_proj: %s, layout %s, activations %s), %d dequantized "
              "on load\n",
              q->quantized_linears(), q->layer(0).linears[0].layout.c_str(), q0.layout.c_str(),
              q0.act == XQ_DTYPE_BF16 ? "BF16" : "F32", q->dequantized_linears());
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto qc = Model::open(rt(), out, mo);
  GenerateOptions o;
  o.n_tokens = 32;
  o.stop_at_eog = false;
  auto rg = generate(*q, "Once upon a time", o);
  auto rc = generate(*qc, "Once upon a time", o);
  EXPECT_EQ(rg.tokens.size(), 32u);
  std::printf("W4A16 cuda: %s\nW4A16 cpu:  %s\n", rg.text.c_str(), rc.text.c_str());
  expect_cuda_follows_cpu(*q, *qc, "W4A16");
  fs::remove_all(out.parent_path());
}

// A GPTQ act-order checkpoint (W4A16 g32, asymmetric, every Linear but
// lm_head): q|k|v and gate|up share one g_idx each (GPTQ sorts the columns of
// Linears that read one input the same way), so on the device they run as one
// stacked weight each (engine/fuse.cpp), and the logits and perplexity follow
// the cpu engine's on the same file within BF16 noise.
TEST(DeviceEngine, GptqActOrderRunsStackedAndMatchesCpu) {
  REQUIRE_GPU_MODEL(g);
  const fs::path out = fs::temp_directory_path() / ("xquant_device_test_" + std::to_string(::getpid())) / "gptq-act";
  std::string why;
  ASSERT_TRUE(write_quantized_stories(
      out,
      "  - targets: [Linear]\n    algorithm: gptq\n    params: {act_order: true}\n    weights:\n      bits: 4\n"
      "      symmetric: false\n      group_size: 32\n",
      "calibration: {text: " + (kShared / "data/tinystories/tinystories_val.subset.txt").string() +
          ", samples: 4, seq_len: 64, tokenizer: " + kGguf.string() + "}\n",
      &why))
      << why;
  auto q = open_on(out, "cuda", &why, kGguf);
  ASSERT_TRUE(q) << why;
  for (int l = 0; l < q->arch().n_layers; ++l) {
    EXPECT_NE(q->layer(l).qkv.desc, nullptr) << "layer " << l << ": q|k|v not stacked";
    EXPECT_NE(q->layer(l).gate_up.desc, nullptr) << "layer " << l << ": gate|up not stacked";
  }
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto qc = Model::open(rt(), out, mo);
  expect_cuda_follows_cpu(*q, *qc, "GPTQ act-order, q|k|v and gate|up stacked");
  fs::remove_all(out.parent_path());
}

// Decode speed at batch 1 (opt-in: --gtest_also_run_disabled_tests). Reads
// XQUANT_BENCH_MODELS = "label:path:weights,..." (weights f32 or bf16: the
// dense Linears' device dtype) and XQUANT_BENCH_COPY_GBS (the device-to-device
// copy bandwidth measured in the same run, GB/s, read + write); prints per
// model the decode tokens/s after a 128-token prompt, the weight bytes a step
// reads, and that time's share of the HBM floor. Token-level: no tokenizer.
TEST(DeviceEngine, DISABLED_DecodeSpeedAtBatch1) {
  const char* spec = std::getenv("XQUANT_BENCH_MODELS");
  if (!spec) GTEST_SKIP() << "XQUANT_BENCH_MODELS not set";
  const char* bw = std::getenv("XQUANT_BENCH_COPY_GBS");
  const double copy_gbs = bw ? std::atof(bw) : 0.0;
  std::stringstream ss(spec);
  std::string item;
  std::printf("%-10s %12s %12s %10s %10s %8s\n", "model", "weights GB", "decode t/s", "ms/token", "floor ms", "% floor");
  while (std::getline(ss, item, ',')) {
    const auto a = item.find(':'), b = item.rfind(':');
    ASSERT_TRUE(a != std::string::npos && b > a) << item;
    const std::string label = item.substr(0, a), path = item.substr(a + 1, b - a - 1), weights = item.substr(b + 1);
    ::setenv("XQUANT_DEVICE_WEIGHTS", weights.c_str(), 1);
    std::string why;
    auto m = open_on(path, "cuda", &why);
    ::unsetenv("XQUANT_DEVICE_WEIGHTS");
    if (!m) GTEST_SKIP() << why;
    std::vector<int32_t> prompt(128);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 13) % m->arch().vocab);
    GenerateOptions o;
    o.n_tokens = 256;
    o.stop_at_eog = false;
    GenerateOptions warm;
    warm.n_tokens = 8;
    warm.stop_at_eog = false;
    generate_tokens(*m, std::vector<int32_t>(prompt.begin(), prompt.begin() + 8), warm);  // plans, handles, buffers
    // The same generation on the kernels the split-K ATTENTION, the BF16
    // few-row MATMUL and the W4A16 TMA-ring GEMV replaced (cuda provider
    // switches): tokens/s and greedy ids beside the current kernels', in the
    // same process.
    set_previous_decode_kernels(true);
    generate_tokens(*m, std::vector<int32_t>(prompt.begin(), prompt.begin() + 8), warm);
    const auto before = generate_tokens(*m, prompt, o);
    set_previous_decode_kernels(false);
    const uint64_t ops0 = m->kernels().ops_run();
    const double launch0 = m->kernels().run_seconds();
    auto r = generate_tokens(*m, prompt, o);
    ASSERT_EQ(r.tokens.size(), 256u);
    // 256 forward steps (the prefill and 255 decodes; one sequence, so the
    // same op count each): the provider ops one decode step launches.
    const double ops_per_step = static_cast<double>(m->kernels().ops_run() - ops0) / 256.0;
    // Host time inside run_op per step (launch cost), against the decode step time.
    const double launch_ms = (m->kernels().run_seconds() - launch0) / 256.0 * 1e3;
    const double tps = 255.0 / r.decode_seconds;
    const double gb = static_cast<double>(m->weight_bytes_per_token()) / 1e9;
    const double floor_ms = copy_gbs > 0 ? gb / copy_gbs * 1e3 : 0.0;  // weights read once at the copy rate
    std::printf("%-10s %12.3f %12.1f %10.3f %10.3f %7.1f%%  (%.0f ops/step, %.3f ms/step in run_op; %d quantized Linears, %d dequantized; "
                "prefill %.1f ms)\n",
                label.c_str(), gb, tps, 1e3 / tps, floor_ms, floor_ms > 0 ? floor_ms * tps / 10.0 : 0.0, ops_per_step, launch_ms,
                m->quantized_linears(), m->dequantized_linears(), r.prefill_seconds * 1e3);
    const double tps_before = 255.0 / before.decode_seconds;
    size_t same = 0;
    while (same < r.tokens.size() && same < before.tokens.size() && r.tokens[same] == before.tokens[same]) ++same;
    std::printf("    previous kernels (one-block ATTENTION, cuBLASLt BF16 M=1): %.1f tok/s, %.1f%% of floor; now / "
                "previous %.3fx; greedy ids equal for the first %zu of 256\n",
                tps_before, floor_ms > 0 ? floor_ms * tps_before / 10.0 : 0.0, tps / tps_before, same);
    std::fflush(stdout);  // each model's lines survive a time limit that cuts the run short
    // Where a decode step goes: 64 steps with a synchronisation after every op
    // (engine/op_profile.hpp), per label: device time + one launch + one sync.
    GenerateOptions prof;
    prof.n_tokens = 65;
    prof.stop_at_eog = false;
    generate_tokens(*m, std::vector<int32_t>(prompt.begin(), prompt.begin() + 8), warm);
    op_profile_take();
    // On from the first token on: the 64 decode steps, not the prefill.
    generate_tokens(*m, prompt, prof, [](int32_t) { op_profile_enable(true); });
    op_profile_enable(false);
    auto times = op_profile_take();
    std::vector<std::pair<double, std::string>> by_time;
    double total = 0;
    for (const auto& [label, t] : times) {
      by_time.push_back({t.seconds / 64.0 * 1e3, label + " x" + std::to_string(t.calls / 64)});
      total += t.seconds / 64.0 * 1e3;
    }
    std::sort(by_time.rbegin(), by_time.rend());
    std::printf("    per step, each op synchronised (%.3f ms in all):", total);
    for (const auto& [ms, label] : by_time) std::printf(" %s %.3f;", label.c_str(), ms);
    std::printf("\n");
    std::fflush(stdout);
  }
}

// The decode kernels against the ones they replaced, on stories260K's real
// weights (head_dim 8, 8 heads over 4: both new kernels run at its shapes):
// a 24-token prefill, 16 teacher-forced decode rows and 32 greedy tokens,
// with F32 and with BF16 device weights. Bounds: logits within 1e-5 relative
// RMS with F32 weights (the same F32 math in another summation order), 1e-2
// with BF16 weights (the few-row MATMUL rounds its BF16 outputs where
// cuBLASLt rounded its own); greedy ids equal.
TEST(DeviceEngine, DecodeKernelsMatchThePreviousOnes) {
  for (const char* weights : {"f32", "bf16"}) {
    ::setenv("XQUANT_DEVICE_WEIGHTS", weights, 1);
    std::string why;
    auto m = open_on(kGguf, "cuda", &why);
    ::unsetenv("XQUANT_DEVICE_WEIGHTS");
    if (!m) GTEST_SKIP() << "cuda provider unusable here: " << why;
    const auto ids = eval_ids(*m, 41);
    ASSERT_GE(ids.size(), 40u);
    auto run = [&](bool previous, std::vector<int32_t>* tokens) {
      set_previous_decode_kernels(previous);
      KvCache c(*m, 64);
      auto logits = m->forward({SequenceInput{&c, ids.data(), 24, false}});
      for (size_t i = 24; i < 40; ++i) {
        const auto row = m->forward({SequenceInput{&c, ids.data() + i, 1, false}});
        logits.insert(logits.end(), row.begin(), row.end());
      }
      GenerateOptions o;
      o.n_tokens = 32;
      o.stop_at_eog = false;
      *tokens = generate_tokens(*m, std::vector<int32_t>(ids.begin(), ids.begin() + 8), o).tokens;
      ::unsetenv("XQUANT_DECODE_ATTENTION");
      ::unsetenv("XQUANT_BF16_GEMV");
      ::unsetenv("XQUANT_CUDA_W4_GEMV_TMA");
      return logits;
    };
    std::vector<int32_t> t_before, t_now;
    const auto before = run(true, &t_before);
    const auto now = run(false, &t_now);
    const double d = rel_diff(now, before);
    std::printf("%s weights: logits now vs previous kernels, relative RMS %.3g over 17 rows; greedy ids %s\n", weights, d,
                t_now == t_before ? "equal" : "differ");
    EXPECT_LE(d, std::string(weights) == "f32" ? 1e-5 : 1e-2) << weights;
    EXPECT_EQ(t_now, t_before) << weights;
  }
}
