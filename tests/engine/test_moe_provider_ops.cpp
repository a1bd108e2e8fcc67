// test_moe_provider_ops.cpp: the device engine's Mixture-of-Experts block
// (engine/moe_device.cpp: MOE_ROUTE, then the fused moe_qmatmul path or the
// per-expert loop, MOE_COMBINE, the shared expert) run through the `cpu`
// provider (ModelOptions::moe_provider_ops) against the engine's host block
// (engine/moe_layer.cpp), on tiny random qwen3_moe, qwen2_moe and mixtral
// checkpoints, F32 (the loop) and W4A16 RTN g32 written here (the fused
// path through the cpu provider's moe_qmatmul). Both run the same
// arithmetic on the same provider, so prompt logits must agree to 1e-6
// relative (seen: identical) and greedy tokens through the paged KV cache
// must be equal. This pins the device path's routing, sorting, gathers and
// combine on every machine; test_device_moe.cpp runs it on the GPU.
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "engine/paged_kv.hpp"

#include "../support/moe_checkpoint.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

fs::path checkpoint(const std::string& type) {
  test::Cfg c;
  c.type = type;
  c.hidden = 64, c.inter = 64, c.moe_inter = 64, c.experts = 8, c.top_k = 2, c.layers = 2, c.heads = 4, c.kv = 2,
  c.hd = 16, c.vocab = 48;
  c.norm_topk = type != "qwen2_moe";
  if (type == "qwen2_moe") c.shared = 96;
  return test::write_checkpoint(c, test::make_weights(c, 5u), "provider-ops-" + type);
}

fs::path rtn_w4(const fs::path& src) {
  const fs::path out = src.parent_path() / (src.filename().string() + "-w4");
  fs::remove_all(out);
  const std::string yaml = "model:\n  path: " + src.string() +
                           "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n    weights:\n      bits: 4\n"
                           "      symmetric: true\n      group_size: 32\n"
                           "ignore: [\"re:.*mlp\\\\.gate$\", \"re:.*block_sparse_moe\\\\.gate$\", "
                           "\"re:.*shared_expert_gate$\", lm_head]\n"
                           "output:\n  format: compressed-tensors\n  path: " + out.string() + "\n";
  xq_runtime* crt = nullptr;
  EXPECT_EQ(xq_runtime_create(nullptr, &crt), XQ_OK);
  const xq_status s = xq_run_pipeline_string(crt, yaml.c_str(), nullptr);
  EXPECT_EQ(s, XQ_OK) << xq_last_error();
  xq_runtime_destroy(crt);
  return out;
}

void expect_same(const fs::path& path, bool fused) {
  auto host = Model::open(rt(), path);
  ModelOptions o;
  o.moe_provider_ops = true;
  auto ops = Model::open(rt(), path, o);
  for (int l = 0; l < ops->arch().n_layers; ++l) EXPECT_EQ(ops->layer(l).experts_fused, fused) << "layer " << l;
  const std::vector<int32_t> prompt = {3, 17, 5, 40, 22, 9, 31, 1, 12, 44, 7};
  const auto n = static_cast<int64_t>(prompt.size());
  KvCache ch(*host, 64), co(*ops, 64);
  const auto lh = host->forward({SequenceInput{&ch, prompt.data(), n, true}});
  const auto lo = ops->forward({SequenceInput{&co, prompt.data(), n, true}});
  double num = 0, den = 0;
  for (size_t i = 0; i < lh.size(); ++i) {
    num += (static_cast<double>(lo[i]) - lh[i]) * (static_cast<double>(lo[i]) - lh[i]);
    den += static_cast<double>(lh[i]) * lh[i];
  }
  EXPECT_LE(std::sqrt(num / den), 1e-6) << path;
  PagedKvCache ph(*host, {.block_size = 16, .num_blocks = 4}), po(*ops, {.block_size = 16, .num_blocks = 4});
  PagedSequence sh, so;
  auto gh = host->forward_paged_greedy(ph, {{&sh, prompt.data(), n}});
  auto go = ops->forward_paged_greedy(po, {{&so, prompt.data(), n}});
  for (int step = 0; step < 16; ++step) {
    ASSERT_EQ(go, gh) << path << ": step " << step;
    gh = host->forward_paged_greedy(ph, {{&sh, gh.data(), 1}});
    go = ops->forward_paged_greedy(po, {{&so, go.data(), 1}});
  }
}

struct MoeProviderOps : testing::TestWithParam<std::string> {};

TEST_P(MoeProviderOps, F32ExpertsThroughThePerExpertLoopEqualTheHostBlock) { expect_same(checkpoint(GetParam()), false); }

TEST_P(MoeProviderOps, W4ExpertsThroughMoeQmatmulEqualTheHostBlock) {
  expect_same(rtn_w4(checkpoint(GetParam())), true);
}

INSTANTIATE_TEST_SUITE_P(Cpu, MoeProviderOps, testing::Values("qwen3_moe", "qwen2_moe", "mixtral"),
                         [](const testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
