// group_forward.cpp: see group_forward.hpp.
#include "pipeline/group_forward.hpp"

#include "core/error.hpp"

#include <algorithm>

namespace xquant {

namespace {

bool on_all_token_statistics(const LayerStats& stats, int expert) {
  for (const auto& e : stats.experts)
    if (e.expert == expert) return e.all_tokens;
  return false;
}

}  // namespace

int GroupForward::expert_of_down_group(const LayerDesc& desc, int group) {
  if (!desc.moe) return -1;
  const auto& groups = desc.experts.expert_out_group;
  const auto it = std::find(groups.begin(), groups.end(), group);
  return it == groups.end() ? -1 : static_cast<int>(it - groups.begin());
}

GroupForward::GroupForward(Model& model, int layer, int group, const std::vector<int>& linears,
                           const LayerStats& stats, const MoeBlockRows* block)
    : model_(model),
      layer_(layer),
      linears_(linears),
      layer_input_(stats.layer_input),
      samples_(TrialSamples::choose(*stats.offsets, kMaxRows)) {
  const Architecture& arch = model.arch();
  const LayerDesc& desc = arch.layers[static_cast<size_t>(layer)];
  expert_ = expert_of_down_group(desc, group);
  module_ = expert_ >= 0 ? Module::ExpertDown : group >= LayerDesc::kMlpIn ? Module::MlpHalf : Module::Layer;
  if (module_ == Module::ExpertDown) {
    std::unique_ptr<MoeBlockRows> own;
    if (!block) block = (own = std::make_unique<MoeBlockRows>(model, layer, layer_input_, samples_)).get();
    if (block->layer() != layer || block->rows() != samples_.rows)
      fail(XQ_ERR_INTERNAL, "layer {} expert {}: the MoE block rows given are layer {}'s, {} rows (expected {})",
           layer, expert_, block->layer(), block->rows(), samples_.rows);
    capture_expert_down_input(*block, on_all_token_statistics(stats, expert_));
  } else {
    kbuf_.resize(static_cast<size_t>(samples_.longest * arch.n_kv_heads * arch.head_dim));
    vbuf_.resize(kbuf_.size());
    capture_group_input(group);
  }
  abi_.struct_size = sizeof(abi_);
  abi_.ctx = this;
  abi_.n_tokens = module_ == Module::ExpertDown ? static_cast<int64_t>(row_weight_.size()) : samples_.rows;
  abi_.in_features = desc.linears[static_cast<size_t>(linears_[0])].in;
  abi_.out_features = arch.hidden;
  abi_.input = input_.data();
  abi_.run = &GroupForward::run;
}

void GroupForward::capture_group_input(int group) {
  const int64_t H = model_.arch().hidden;
  const int64_t cols = model_.arch().layers[static_cast<size_t>(layer_)].linears[static_cast<size_t>(linears_[0])].in;
  input_.reserve(static_cast<size_t>(samples_.rows * cols));
  std::vector<float> y;
  for (size_t s = 0; s < samples_.n_rows.size(); ++s) {
    const int64_t n = samples_.n_rows[s];
    y.assign(layer_input_ + samples_.first_row[s] * H, layer_input_ + (samples_.first_row[s] + n) * H);
    const std::vector<SequenceSpan> span{SequenceSpan{0, n, 0, kbuf_.data(), vbuf_.data()}};
    auto tap = [&](int grp, const float* x, int64_t rows, int64_t c) {
      if (grp == group) input_.insert(input_.end(), x, x + rows * c);
    };
    if (module_ == Module::Layer) {
      model_.layer_forward(layer_, y.data(), n, span, tap);
      continue;
    }
    model_.layer_forward(layer_, y.data(), n, span, nullptr, LayerPart::Attention);
    mid_.insert(mid_.end(), y.begin(), y.end());
    model_.layer_forward(layer_, y.data(), n, span, tap, LayerPart::Mlp);
  }
}

// The expert's down_proj input on its routed rows of the block's input
// (every row when `every_row` or when none is routed to it) and each row's
// combine weight (1 on every row).
void GroupForward::capture_expert_down_input(const MoeBlockRows& block, bool every_row) {
  const int64_t H = model_.arch().hidden;
  const auto& rows = block.routed().rows[static_cast<size_t>(expert_)];
  every_row = every_row || rows.empty();
  const int64_t n = every_row ? block.rows() : static_cast<int64_t>(rows.size());
  std::vector<float> gathered;
  const float* x = block.input().data();
  if (!every_row) {
    gathered.resize(static_cast<size_t>(n * H));
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(block.input().data() + rows[static_cast<size_t>(i)] * H, H, gathered.data() + i * H);
    x = gathered.data();
  }
  const int64_t I = model_.arch().layers[static_cast<size_t>(layer_)].experts.expert_intermediate;
  input_.resize(static_cast<size_t>(n * I));
  model_.expert_down_input(layer_, expert_, x, n, input_.data());
  if (every_row)
    row_weight_.assign(static_cast<size_t>(n), 1.0f);
  else
    row_weight_ = block.routed().weight[static_cast<size_t>(expert_)];
}

xq_status GroupForward::run(void* ctx, const float* const* weights, float* out) {
  auto* self = static_cast<GroupForward*>(ctx);
  try {
    self->forward(weights, out);
    return XQ_OK;
  } catch (const Error& e) {
    set_last_error(e.what());
    return e.status();
  } catch (const std::exception& e) {
    set_last_error(e.what());
    return XQ_ERR_INTERNAL;
  }
}

// The candidate weights run in the model's place (LinearWeights::w_candidate)
// until the forward ends, thrown or not: the model's own buffers, which the
// group's weight views point at, are never written, and nothing is copied
// (a MoE mlp_in group's candidates are all experts' gate/up, 1.6 GB on
// Qwen3-30B-A3B, 21 trials; the copy a trial was about 30% of a trial's
// time on a 2-core VM, docs/algorithms.md).
class GroupForward::CandidatesInPlace {
 public:
  CandidatesInPlace(LayerWeights& lw, const std::vector<int>& linears, const float* const* weights)
      : lw_(lw), linears_(linears) {
    if (!weights) return;
    for (size_t i = 0; i < linears_.size(); ++i) {  // all checked before any is set
      const auto& target = lw_.linears[static_cast<size_t>(linears_[i])];
      if (weights[i] && (target.q || target.dw))  // Model::linear would run those, not the candidate
        fail(XQ_ERR_INTERNAL, "a candidate for '{}', which the forward runs prepared by its provider",
             target.desc ? target.desc->module : std::string("?"));
    }
    for (size_t i = 0; i < linears_.size(); ++i)
      if (weights[i]) lw_.linears[static_cast<size_t>(linears_[i])].w_candidate = weights[i];
  }
  ~CandidatesInPlace() {
    for (int li : linears_) lw_.linears[static_cast<size_t>(li)].w_candidate = nullptr;
  }
  CandidatesInPlace(const CandidatesInPlace&) = delete;
  CandidatesInPlace& operator=(const CandidatesInPlace&) = delete;

 private:
  LayerWeights& lw_;
  const std::vector<int>& linears_;
};

void GroupForward::forward(const float* const* weights, float* out) {
  const int64_t H = model_.arch().hidden;
  const CandidatesInPlace candidates(model_.layer(layer_), linears_, weights);
  if (module_ == Module::ExpertDown) {
    forward_expert_down(out);
  } else {
    int64_t at = 0;
    for (size_t s = 0; s < samples_.n_rows.size(); ++s) {
      const int64_t n = samples_.n_rows[s];
      float* y = out + at * H;
      const float* from = module_ == Module::MlpHalf ? mid_.data() + at * H : layer_input_ + samples_.first_row[s] * H;
      std::copy(from, from + n * H, y);
      model_.layer_forward(layer_, y, n, {SequenceSpan{0, n, 0, kbuf_.data(), vbuf_.data()}}, nullptr,
                           module_ == Module::MlpHalf ? LayerPart::Mlp : LayerPart::Whole);
      at += n;
    }
  }
}

void GroupForward::forward_expert_down(float* out) const {
  const LayerDesc& desc = model_.arch().layers[static_cast<size_t>(layer_)];
  const int64_t H = model_.arch().hidden, rows = static_cast<int64_t>(row_weight_.size());
  const int down = desc.experts.down[static_cast<size_t>(expert_)];
  model_.linear(model_.layer(layer_).linears[static_cast<size_t>(down)], input_.data(), rows, out,
                "expert down_proj (AWQ trial)");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < H; ++c) out[r * H + c] *= row_weight_[static_cast<size_t>(r)];
}

}  // namespace xquant
