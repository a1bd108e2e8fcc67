// test_moe_group_forward.cpp: AWQ's forward for a MoE expert's down_proj
// group (pipeline/group_forward.cpp) runs that expert's down_proj alone on
// its rows, each scaled by its combine weight, instead of the whole MoE
// block. Pinned against the block itself: with a perturbed down_proj, the
// change of the layer's output (Model::layer_forward's MLP half, weights
// swapped in) is w_e(t) times the change of the expert forward's row for t,
// and zero on every row not routed to e. On a tiny random qwen3_moe with 16
// experts, top-1 and 9 rows, so at least 7 experts get no routed row (they
// are compared on every row), and one routed expert is marked as on
// all-token statistics (also every row).
#include "engine/model.hpp"
#include "moe_checkpoint.hpp"
#include "pipeline/group_forward.hpp"
#include "pipeline/moe_block_rows.hpp"
#include "test_runtime.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

using namespace xquant;
using namespace xquant::test;

namespace test_moe_group_forward {

namespace {

struct BlockRun {
  std::vector<float> out;        // the layer's output rows, all samples
  std::vector<float> mlp_input;  // the post-attention norm's output (the router's input)
};

// The MLP half of layer 0 on every sample, from the attention half's output.
BlockRun run_block(const Model& model, const std::vector<float>& input, const std::vector<int64_t>& offsets) {
  const int64_t H = model.arch().hidden;
  const int64_t kv = offsets.back() * model.arch().n_kv_heads * model.arch().head_dim;
  std::vector<float> kbuf(static_cast<size_t>(kv)), vbuf(kbuf.size());
  BlockRun r;
  for (size_t s = 0; s + 1 < offsets.size(); ++s) {
    const int64_t n = offsets[s + 1] - offsets[s];
    std::vector<float> y(input.begin() + offsets[s] * H, input.begin() + offsets[s + 1] * H);
    const std::vector<SequenceSpan> span{SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}};
    model.layer_forward(0, y.data(), n, span, nullptr, LayerPart::Attention);
    model.layer_forward(0, y.data(), n, span,
                        [&](int g, const float* x, int64_t rows, int64_t c) {
                          if (g == LayerDesc::kMlpIn) r.mlp_input.insert(r.mlp_input.end(), x, x + rows * c);
                        },
                        LayerPart::Mlp);
    r.out.insert(r.out.end(), y.begin(), y.end());
  }
  return r;
}

}  // namespace

TEST(MoeGroupForward, AnExpertsDownProjTrialIsItsShareOfTheBlocksChange) {
  Cfg c;
  c.type = "qwen3_moe";
  c.experts = 16;
  c.top_k = 1;
  c.norm_topk = false;  // combine weights below 1, so a missing weight shows
  ModelOptions mo;
  mo.dequantize_all = true;  // F32 weights the trials swap in, as calibration loads them
  auto model = Model::open(quiet_runtime(), write_checkpoint(c, make_weights(c, 31), "group-forward-qwen3_moe"), mo);
  const LayerDesc& desc = model->arch().layers[0];
  const MoeDesc& m = desc.experts;
  const int64_t H = c.hidden, I = c.moe_inter;

  const std::vector<int64_t> offsets{0, 5, 9};  // two samples
  const int64_t rows = offsets.back();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> input(static_cast<size_t>(rows * H));
  for (auto& v : input) v = normal(rng);

  const BlockRun base = run_block(*model, input, offsets);
  const ExpertRows routed = rows_per_expert(model->moe_routing(0, base.mlp_input.data(), rows), c.experts);
  int marked_all_tokens = -1;  // a routed expert whose statistics come from every token
  for (int64_t e = 0; e < c.experts && marked_all_tokens < 0; ++e)
    if (!routed.rows[static_cast<size_t>(e)].empty()) marked_all_tokens = static_cast<int>(e);
  ASSERT_GE(marked_all_tokens, 0);

  LayerStats stats;
  stats.layer = 0;
  stats.desc = &desc;
  stats.layer_input = input.data();
  stats.offsets = &offsets;
  for (int64_t e = 0; e < c.experts; ++e) {
    ExpertCalibration ec;
    ec.expert = static_cast<int>(e);
    ec.routed_tokens = routed.rows[static_cast<size_t>(e)].size();
    ec.all_tokens = e == marked_all_tokens;
    stats.experts.push_back(ec);
  }

  // What the calibrated runner shares between a layer's expert groups.
  const MoeBlockRows block(*model, 0, input.data(), TrialSamples::choose(offsets, GroupForward::kMaxRows));
  int empty_experts = 0;
  for (int64_t e = 0; e < c.experts; ++e) {
    SCOPED_TRACE("expert " + std::to_string(e));
    const auto& rows_e = routed.rows[static_cast<size_t>(e)];
    const auto& weight_e = routed.weight[static_cast<size_t>(e)];
    const bool every_row = rows_e.empty() || e == marked_all_tokens;
    empty_experts += rows_e.empty();
    const int down = m.down[static_cast<size_t>(e)];
    GroupForward fwd(*model, 0, m.expert_out_group[static_cast<size_t>(e)], {down}, stats);
    EXPECT_EQ(fwd.expert(), e);
    const xq_group_forward& f = *fwd.abi();
    ASSERT_EQ(f.n_tokens, every_row ? rows : static_cast<int64_t>(rows_e.size()));
    EXPECT_EQ(f.in_features, I);
    EXPECT_EQ(f.out_features, H);

    std::vector<float>& w = model->layer(0).linears[static_cast<size_t>(down)].w;
    const std::vector<float> original = w;
    std::vector<float> perturbed = w;
    for (auto& v : perturbed) v += 0.05f * normal(rng);

    std::vector<float> ref(static_cast<size_t>(f.n_tokens * H)), trial(ref.size());
    ASSERT_EQ(f.run(f.ctx, nullptr, ref.data()), XQ_OK);
    const float* trial_weights[] = {perturbed.data()};
    ASSERT_EQ(f.run(f.ctx, trial_weights, trial.data()), XQ_OK);
    EXPECT_EQ(w, original) << "the trial left its weights in the model";
    {
      GroupForward shared(*model, 0, m.expert_out_group[static_cast<size_t>(e)], {down}, stats, &block);
      std::vector<float> again(ref.size());
      ASSERT_EQ(shared.abi()->n_tokens, f.n_tokens);
      ASSERT_EQ(shared.abi()->run(shared.abi()->ctx, trial_weights, again.data()), XQ_OK);
      EXPECT_EQ(again, trial) << "a forward on the shared block rows differs from one on its own";
    }

    w = perturbed;
    const BlockRun changed = run_block(*model, input, offsets);
    w = original;

    // The expert forward's row for block row t, and t's combine weight.
    std::vector<int64_t> row_of(static_cast<size_t>(rows), -1);
    std::vector<float> combine(static_cast<size_t>(rows), 0.0f);
    for (size_t i = 0; i < rows_e.size(); ++i) {
      combine[static_cast<size_t>(rows_e[i])] = weight_e[i];
      row_of[static_cast<size_t>(rows_e[i])] = static_cast<int64_t>(i);
    }
    double block_loss = 0, expert_loss = 0;
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t r = every_row ? t : row_of[static_cast<size_t>(t)];
      for (int64_t k = 0; k < H; ++k) {
        const float block_change = changed.out[t * H + k] - base.out[t * H + k];
        block_loss += static_cast<double>(block_change) * block_change;
        if (r < 0) {
          ASSERT_EQ(block_change, 0.0f) << "row " << t << " is not routed to this expert";
          continue;
        }
        const float expert_change = trial[r * H + k] - ref[r * H + k];
        const float expected = every_row ? combine[static_cast<size_t>(t)] * expert_change : expert_change;
        ASSERT_NEAR(block_change, expected, 2e-5f + 1e-4f * std::fabs(expected)) << "row " << t << " column " << k;
      }
    }
    for (int64_t r = 0; r < f.n_tokens; ++r)
      for (int64_t k = 0; k < H; ++k) {
        const double d = static_cast<double>(trial[r * H + k]) - ref[r * H + k];
        expert_loss += d * d;
      }
    if (every_row) {
      EXPECT_GT(expert_loss, 0.0);  // compared on rows the block may not route to it
    } else {
      EXPECT_NEAR(expert_loss, block_loss, 1e-4 * block_loss);  // AWQ's loss, up to its 1/(rows*H)
      EXPECT_GT(block_loss, 0.0);
    }
  }
  EXPECT_GE(empty_experts, 7);  // 9 top-1 rows over 16 experts
}

}  // namespace test_moe_group_forward
