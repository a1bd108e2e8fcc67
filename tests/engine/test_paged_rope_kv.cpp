// test_paged_rope_kv.cpp: the device engine's decode steps with ROPE_KV
// (its paged form, and Qwen3's q/k norms inside it) against the same steps
// on the ops it replaces (XQUANT_ROPE_KV=0: CONVERT and ROPE of q and k, two
// KV_WRITEs or the K/V appends, the two q/k RMS_NORMs), on the `cuda`
// provider (skips without a GPU). Models: stories260K as GGUF (real weights;
// 8 heads over 4 kv heads, head_dim 8) and tiny random Hugging Face
// checkpoints (tests/support/hf_test_checkpoint.hpp): Qwen3 (q/k norms,
// head_dim 32 != hidden / heads, 4 heads over 2 kv heads) and Llama with
// llama3 RoPE scaling (the frequency divisors); F32 and BF16 device weights.
// Paged cache (F32 and BF16 pools, 16-slot blocks): two sequences' prompts
// in one step (20 and 7 rows), a third's 35-row prompt (crossing two block
// boundaries), then 10 decode steps of the three together; a decode step
// runs 5 ops per layer fewer (7 with q/k norms). Contiguous cache: a 20-row
// prompt, 10 decode steps; 4 ops per layer fewer (6 with q/k norms).
// Bounds: logits within 1e-5 relative RMS with F32 weights and KV (the same
// rotation formula; the q/k norms sum in another order than RMS_NORM), 1e-3
// with BF16 KV (a K element whose F32 value differs in the last bit can
// round to the other BF16 value), 1e-2 with BF16 weights (a norm's BF16
// output can round the other way, as DeviceDecodeStepOps); on stories260K
// the greedy id of every step equal. Decode graphs are off here so that ops
// are counted (tests/engine/test_decode_graphs.cpp replays paged steps from
// graphs).
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "engine/paged_kv.hpp"

#include "../support/hf_test_checkpoint.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

using namespace xquant;
namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_paged_rope_kv {

namespace {

Runtime& runtime() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

struct PagedRun {
  std::vector<float> logits;  // every step's last rows, in order
  double ops_per_decode_step = 0;
};

std::vector<int32_t> tokens(int n, int offset, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(1 + (i * 7 + offset * 13) % (vocab - 1));
  return t;
}

PagedRun run(Model& m, xq_dtype kv, bool previous_ops) {
  if (previous_ops) ::setenv("XQUANT_ROPE_KV", "0", 1);
  PagedRun r;
  const int64_t V = m.arch().vocab;
  PagedKvCache cache(m, {.block_size = 16, .num_blocks = 16, .dtype = kv});
  PagedSequence a, b, c;
  const auto pa = tokens(20, 1, V), pb = tokens(7, 2, V), pc = tokens(35, 3, V);
  auto add = [&](const std::vector<float>& l) { r.logits.insert(r.logits.end(), l.begin(), l.end()); };
  add(m.forward_paged(cache, {{&a, pa.data(), 20}, {&b, pb.data(), 7}}));
  add(m.forward_paged(cache, {{&c, pc.data(), 35}}));
  const uint64_t ops0 = m.kernels().ops_run();
  for (int s = 0; s < 10; ++s) {
    const auto next = tokens(3, 10 + s, V);
    add(m.forward_paged(cache, {{&a, &next[0], 1}, {&b, &next[1], 1}, {&c, &next[2], 1}}));
  }
  r.ops_per_decode_step = static_cast<double>(m.kernels().ops_run() - ops0) / 10.0;
  ::unsetenv("XQUANT_ROPE_KV");
  return r;
}

// The contiguous cache (one ROPE_KV per sequence; with q/k norms since this
// change): a 20-row prompt, then 10 decode steps.
PagedRun run_contiguous(Model& m, bool previous_ops) {
  if (previous_ops) ::setenv("XQUANT_ROPE_KV", "0", 1);
  PagedRun r;
  const int64_t V = m.arch().vocab;
  KvCache cache(m, 32);
  const auto p = tokens(20, 4, V);
  r.logits = m.forward({SequenceInput{&cache, p.data(), 20, false}});
  const uint64_t ops0 = m.kernels().ops_run();
  for (int s = 0; s < 10; ++s) {
    const auto next = tokens(1, 20 + s, V);
    const auto l = m.forward({SequenceInput{&cache, next.data(), 1, false}});
    r.logits.insert(r.logits.end(), l.begin(), l.end());
  }
  r.ops_per_decode_step = static_cast<double>(m.kernels().ops_run() - ops0) / 10.0;
  ::unsetenv("XQUANT_ROPE_KV");
  return r;
}

std::vector<int32_t> argmax_rows(const std::vector<float>& logits, int64_t V) {
  std::vector<int32_t> ids;
  for (size_t o = 0; o + static_cast<size_t>(V) <= logits.size(); o += static_cast<size_t>(V))
    ids.push_back(static_cast<int32_t>(std::max_element(logits.begin() + o, logits.begin() + o + V) - logits.begin() - o));
  return ids;
}

struct Subject {
  std::string name;
  fs::path path;
  bool real_weights;
};

}  // namespace

TEST(DevicePagedRopeKv, MatchesTheSeparateOps) {
  const fs::path gguf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K/stories260K.gguf";
  try {
    ModelOptions o;
    o.provider = "cuda";
    Model::open(runtime(), gguf, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    GTEST_SKIP() << "cuda provider unusable here: " << e.what();
  }
  xqtest_hf::Cfg qwen3;
  qwen3.type = "qwen3";
  qwen3.qk_norm = true;
  qwen3.hidden = 64, qwen3.inter = 96, qwen3.heads = 4, qwen3.kv = 2, qwen3.hd = 32, qwen3.vocab = 48;
  xqtest_hf::Cfg llama = qwen3;
  llama.type = "llama";
  llama.qk_norm = false;
  llama.rope = "llama3";
  const std::vector<Subject> subjects = {
      {"stories260K", gguf, true},
      {"qwen3", xqtest_hf::write_checkpoint(qwen3, xqtest_hf::make_weights(qwen3, 77)), false},
      {"llama3-rope", xqtest_hf::write_checkpoint(llama, xqtest_hf::make_weights(llama, 78)), false}};
  ::setenv("XQUANT_DECODE_GRAPHS", "0", 1);
  for (const Subject& s : subjects) {
    for (const char* weights : {"f32", "bf16"}) {
      ::setenv("XQUANT_DEVICE_WEIGHTS", weights, 1);
      ModelOptions o;
      o.provider = "cuda";
      const auto m = Model::open(runtime(), s.path, o);
      ::unsetenv("XQUANT_DEVICE_WEIGHTS");
      const int64_t L = m->arch().n_layers, V = m->arch().vocab;
      for (xq_dtype kv : {XQ_DTYPE_F32, XQ_DTYPE_BF16}) {
        SCOPED_TRACE(s.name + ", " + weights + " weights, " + (kv == XQ_DTYPE_F32 ? "F32" : "BF16") + " KV");
        const PagedRun before = run(*m, kv, true), now = run(*m, kv, false);
        const double d = rel_rms(now.logits, before.logits);
        const bool same_ids = argmax_rows(now.logits, V) == argmax_rows(before.logits, V);
        std::printf("%s, %s weights, %s KV: paged logits with ROPE_KV vs the separate ops, relative RMS %.3g over 13 "
                    "steps; greedy ids %s; ops per decode step %.0f -> %.0f\n",
                    s.name.c_str(), weights, kv == XQ_DTYPE_F32 ? "F32" : "BF16", d, same_ids ? "equal" : "differ",
                    before.ops_per_decode_step, now.ops_per_decode_step);
        EXPECT_LE(d, std::string(weights) != "f32" ? 1e-2 : kv == XQ_DTYPE_F32 ? 1e-5 : 1e-3);
        if (s.real_weights) {
          EXPECT_TRUE(same_ids);
        }
        EXPECT_EQ(before.ops_per_decode_step - now.ops_per_decode_step, (m->arch().qk_norm ? 7.0 : 5.0) * L);
      }
      SCOPED_TRACE(s.name + ", " + weights + " weights, contiguous cache");
      const PagedRun before = run_contiguous(*m, true), now = run_contiguous(*m, false);
      const double d = rel_rms(now.logits, before.logits);
      std::printf("%s, %s weights, contiguous cache: logits with ROPE_KV vs the separate ops, relative RMS %.3g over 11 "
                  "steps; ops per decode step %.0f -> %.0f\n",
                  s.name.c_str(), weights, d, before.ops_per_decode_step, now.ops_per_decode_step);
      EXPECT_LE(d, std::string(weights) == "f32" ? 1e-5 : 1e-2);
      if (s.real_weights) {
        EXPECT_EQ(argmax_rows(now.logits, V), argmax_rows(before.logits, V));
      }
      EXPECT_EQ(before.ops_per_decode_step - now.ops_per_decode_step, (m->arch().qk_norm ? 6.0 : 4.0) * L);
    }
  }
  ::unsetenv("XQUANT_DECODE_GRAPHS");
  fs::remove_all(subjects[1].path.parent_path());
}

}  // namespace test_paged_rope_kv
