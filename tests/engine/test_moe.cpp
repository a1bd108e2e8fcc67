// test_moe.cpp: the engine's Mixture-of-Experts block (engine/moe_layer.cpp)
// against a naive double-precision transcription of transformers'
// Qwen3MoeSparseMoeBlock / Qwen2MoeSparseMoeBlock / MixtralSparseMoeBlock
// (every token through its top-k experts one at a time), on tiny random
// checkpoints written here (config.json + safetensors, read through the
// real safetensors loader); and the MoE architecture parsing.
#include "checkpoint/architecture.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "moe_checkpoint.hpp"
#include "test_runtime.hpp"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

using namespace xquant::test;

namespace {

// y = W x in double for one row.
std::vector<double> matvec(const std::vector<float>& w, int64_t out, int64_t in, const double* x) {
  std::vector<double> y(static_cast<size_t>(out), 0.0);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) y[r] += static_cast<double>(w[r * in + c]) * x[c];
  return y;
}

// transformers' sparse MoE block, token by token, in double.
std::vector<double> reference_block(const Cfg& c, const Tensors& t, const std::vector<float>& h, int64_t rows,
                                    std::vector<std::vector<int>>* chosen) {
  const int64_t H = c.hidden, I = c.type == "mixtral" ? c.inter : c.moe_inter, E = c.experts;
  std::vector<double> out(static_cast<size_t>(rows * H), 0.0);
  auto W = [&](const std::string& n) -> const std::vector<float>& { return t.at(n).second; };
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> x(h.begin() + r * H, h.begin() + (r + 1) * H);
    std::vector<double> logits = matvec(W(block(c, 0) + "gate.weight"), E, H, x.data());
    double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
    std::vector<double> p(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(logits[e] - mx);
    for (auto& v : p) v /= sum;
    std::vector<int> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    order.resize(static_cast<size_t>(c.top_k));
    chosen->push_back(order);
    double top = 0;
    for (int e : order) top += p[e];
    for (int e : order) {
      const double w = (c.norm_topk || c.type == "mixtral") ? p[e] / top : p[e];
      auto g = matvec(W(expert_name(c, 0, e, 0)), I, H, x.data());
      auto u = matvec(W(expert_name(c, 0, e, 1)), I, H, x.data());
      for (int64_t i = 0; i < I; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      auto y = matvec(W(expert_name(c, 0, e, 2)), H, I, g.data());
      for (int64_t k = 0; k < H; ++k) out[r * H + k] += w * y[k];
    }
    if (c.shared) {
      const std::string s = block(c, 0) + "shared_expert.";
      auto g = matvec(W(s + "gate_proj.weight"), c.shared, H, x.data());
      auto u = matvec(W(s + "up_proj.weight"), c.shared, H, x.data());
      for (int64_t i = 0; i < c.shared; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      auto y = matvec(W(s + "down_proj.weight"), H, c.shared, g.data());
      const double gate = matvec(W(block(c, 0) + "shared_expert_gate.weight"), 1, H, x.data())[0];
      for (int64_t k = 0; k < H; ++k) out[r * H + k] += y[k] / (1.0 + std::exp(-gate));
    }
  }
  return out;
}

Runtime& runtime() { return test::quiet_runtime(); }

void check_block(const Cfg& c, uint32_t seed) {
  const Tensors t = make_weights(c, seed);
  auto model = Model::open(runtime(), write_checkpoint(c, t));
  ASSERT_TRUE(model->arch().layers[0].moe);
  const int64_t rows = 37;  // few rows for 8 experts: some experts get none or one
  std::mt19937 rng(seed + 1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> h(static_cast<size_t>(rows * c.hidden));
  for (auto& v : h) v = nd(rng);
  std::vector<float> out(h.size());
  model->moe_forward(0, h.data(), rows, out.data());
  std::vector<std::vector<int>> chosen;
  const std::vector<double> ref = reference_block(c, t, h, rows, &chosen);
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    max_err = std::max(max_err, std::fabs(out[i] - ref[i]));
    max_ref = std::max(max_ref, std::fabs(ref[i]));
  }
  EXPECT_LT(max_err, 1e-5 * std::max(1.0, max_ref)) << c.type;
  const MoeRouting r = model->moe_routing(0, h.data(), rows);
  for (int64_t t2 = 0; t2 < rows; ++t2)
    for (int64_t k = 0; k < c.top_k; ++k) EXPECT_EQ(r.expert[t2 * c.top_k + k], chosen[t2][k]) << c.type << " row " << t2;
}

}  // namespace

TEST(Moe, Qwen3MoeBlockMatchesNaiveReference) {
  Cfg c{"qwen3_moe"};
  c.norm_topk = true;
  check_block(c, 11);
}

TEST(Moe, Qwen2MoeBlockWithSharedExpertMatchesNaiveReference) {
  Cfg c{"qwen2_moe"};
  c.shared = 56;
  c.top_k = 3;
  check_block(c, 12);
}

TEST(Moe, MixtralBlockMatchesNaiveReference) {
  Cfg c{"mixtral"};
  c.experts = 4;
  check_block(c, 13);
}

// A decode token reads top_k of a layer's experts: the bytes-per-token
// floor leaves out the other n_experts - top_k (F32 on cpu: 4 bytes a
// weight); the shared expert and router count in both.
TEST(Moe, BytesPerTokenCountOnlyTheTopKExperts) {
  Cfg c{"qwen2_moe"};
  c.shared = 56;
  c.top_k = 3;
  c.layers = 2;
  auto model = Model::open(runtime(), write_checkpoint(c, make_weights(c, 5), "bytes-qwen2_moe"));
  const uint64_t one_expert = 3 * static_cast<uint64_t>(c.hidden * c.moe_inter) * 4;
  EXPECT_EQ(model->weight_bytes() - model->weight_bytes_per_token(),
            static_cast<uint64_t>(c.layers * (c.experts - c.top_k)) * one_expert);
  EXPECT_GT(model->weight_bytes_per_token(), static_cast<uint64_t>(c.layers * c.top_k) * one_expert);
}

TEST(Moe, RoutingNormalisesTopKOnlyWhenAsked) {
  const float logits[] = {0.0f, 1.0f, 2.0f, 3.0f};
  MoeRouting plain = moe_route(logits, 1, 4, 2, false), norm = moe_route(logits, 1, 4, 2, true);
  EXPECT_EQ(plain.expert, (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(norm.expert, (std::vector<int32_t>{3, 2}));
  const double z = 1 + std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(plain.weight[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(norm.weight[0] + norm.weight[1], 1.0, 1e-6);
  EXPECT_NEAR(norm.weight[0], std::exp(1.0) / (1 + std::exp(1.0)), 1e-6);
}

TEST(Moe, SparseStepAndMlpOnlyLayersKeepDenseLayers) {
  Cfg c{"qwen3_moe"};
  c.layers = 4;
  const Tensors t = make_weights(c, 3);
  Kv kv;
  kv.set("architecture", KvValue::string("qwen3_moe"));
  for (auto [k, v] : std::initializer_list<std::pair<const char*, int64_t>>{
           {"hidden_size", 32}, {"intermediate_size", 40}, {"num_hidden_layers", 4}, {"num_attention_heads", 4},
           {"vocab_size", 40}, {"num_experts", 8}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 24},
           {"decoder_sparse_step", 2}})
    kv.set(k, KvValue::integer(v));
  kv.set("mlp_only_layers", KvValue::string("3"));
  const Architecture a = Architecture::from_config(kv);
  EXPECT_FALSE(a.layers[0].moe);  // (0 + 1) % 2 != 0
  EXPECT_TRUE(a.layers[1].moe);
  EXPECT_FALSE(a.layers[2].moe);
  EXPECT_FALSE(a.layers[3].moe);  // listed in mlp_only_layers
  const LayerDesc& L = a.layers[1];
  EXPECT_EQ(L.linears[static_cast<size_t>(L.experts.router)].module, "model.layers.1.mlp.gate");
  EXPECT_EQ(L.linears[static_cast<size_t>(L.experts.down[7])].module, "model.layers.1.mlp.experts.7.down_proj");
  EXPECT_EQ(L.quant_groups(), 3 + 8);  // attn_in, attn_out, mlp_in, 8 expert downs
  EXPECT_EQ(L.groups.size(), static_cast<size_t>(3 + 8 + 8));
  kv.set("num_experts_per_tok", KvValue::integer(9));
  EXPECT_THROW(Architecture::from_config(kv), Error);
}
