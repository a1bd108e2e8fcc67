// group_forward.cpp: see group_forward.hpp.
#include "pipeline/group_forward.hpp"

#include "core/error.hpp"

#include <algorithm>

namespace xquant {

GroupForward::GroupForward(Model& model, int layer, int group, const std::vector<int>& linears,
                           const LayerStats& stats)
    : model_(model), layer_(layer), linears_(linears), layer_input_(stats.layer_input) {
  const Architecture& arch = model.arch();
  const LayerDesc& desc = arch.layers[static_cast<size_t>(layer)];
  const auto& off = *stats.offsets;
  int64_t max_len = 0;
  for (size_t s = 0; s + 1 < off.size() && rows_ < kMaxRows; ++s) {
    const int64_t n = off[s + 1] - off[s];
    first_row_.push_back(off[s]);
    rows_of_sample_.push_back(n);
    rows_ += n;
    max_len = std::max(max_len, n);
  }
  mlp_half_ = group >= LayerDesc::kMlpIn;
  kbuf_.resize(static_cast<size_t>(max_len * arch.n_kv_heads * arch.head_dim));
  vbuf_.resize(kbuf_.size());
  capture_group_input(group);
  abi_.struct_size = sizeof(abi_);
  abi_.ctx = this;
  abi_.n_tokens = rows_;
  abi_.in_features = desc.linears[static_cast<size_t>(linears_[0])].in;
  abi_.out_features = arch.hidden;
  abi_.input = input_.data();
  abi_.run = &GroupForward::run;
}

void GroupForward::capture_group_input(int group) {
  const int64_t H = model_.arch().hidden;
  const int64_t cols = model_.arch().layers[static_cast<size_t>(layer_)].linears[static_cast<size_t>(linears_[0])].in;
  input_.reserve(static_cast<size_t>(rows_ * cols));
  std::vector<float> y;
  for (size_t s = 0; s < rows_of_sample_.size(); ++s) {
    const int64_t n = rows_of_sample_[s];
    y.assign(layer_input_ + first_row_[s] * H, layer_input_ + (first_row_[s] + n) * H);
    const std::vector<SequenceSpan> span{SequenceSpan{0, n, 0, kbuf_.data(), vbuf_.data()}};
    auto tap = [&](int grp, const float* x, int64_t rows, int64_t c) {
      if (grp == group) input_.insert(input_.end(), x, x + rows * c);
    };
    if (!mlp_half_) {
      model_.layer_forward(layer_, y.data(), n, span, tap);
      continue;
    }
    model_.layer_forward(layer_, y.data(), n, span, nullptr, LayerPart::Attention);
    mid_.insert(mid_.end(), y.begin(), y.end());
    model_.layer_forward(layer_, y.data(), n, span, tap, LayerPart::Mlp);
  }
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

void GroupForward::forward(const float* const* weights, float* out) {
  LayerWeights& lw = model_.layer(layer_);
  const int64_t H = model_.arch().hidden;
  std::vector<std::vector<float>> saved(linears_.size());
  for (size_t i = 0; i < linears_.size(); ++i)
    if (weights && weights[i]) {
      auto& w = lw.linears[static_cast<size_t>(linears_[i])].w;
      saved[i] = w;
      std::copy(weights[i], weights[i] + w.size(), w.begin());
    }
  int64_t at = 0;
  for (size_t s = 0; s < rows_of_sample_.size(); ++s) {
    const int64_t n = rows_of_sample_[s];
    float* y = out + at * H;
    const float* from = mlp_half_ ? mid_.data() + at * H : layer_input_ + first_row_[s] * H;
    std::copy(from, from + n * H, y);
    model_.layer_forward(layer_, y, n, {SequenceSpan{0, n, 0, kbuf_.data(), vbuf_.data()}}, nullptr,
                         mlp_half_ ? LayerPart::Mlp : LayerPart::Whole);
    at += n;
  }
  // Copy back into the same buffers: the group's weight views point there.
  for (size_t i = 0; i < linears_.size(); ++i)
    if (!saved[i].empty())
      std::copy(saved[i].begin(), saved[i].end(), lw.linears[static_cast<size_t>(linears_[i])].w.begin());
}

}  // namespace xquant
