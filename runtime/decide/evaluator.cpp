// evaluator.cpp: see evaluator.hpp.
#include "decide/evaluator.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace xquant::decide {

namespace {

void log_softmax_row(const float* logits, int64_t n, float* out) {
  const float mx = *std::max_element(logits, logits + n);
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp(static_cast<double>(logits[i]) - mx);
  const double lz = std::log(z) + mx;
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(logits[i] - lz);
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[order[k]] = (static_cast<double>(i) + static_cast<double>(j)) / 2.0;
    i = j + 1;
  }
  return r;
}

}  // namespace

HeldOutEvaluator::HeldOutEvaluator(Model& reference, std::vector<int32_t> tokens, int64_t ctx)
    : tokens_(std::move(tokens)), ctx_(ctx), vocab_(reference.arch().vocab) {
  if (tokens_.size() < 2) fail(XQ_ERR_INVALID_ARGUMENT, "accuracy: the evaluation text has fewer than 2 tokens");
  if (ctx_ < 2) fail(XQ_ERR_INVALID_ARGUMENT, "accuracy: context {} is too short", ctx_);
  const std::vector<size_t> all = all_windows();
  std::vector<float> lp = log_probs(reference, all);
  const size_t n = lp.size() / static_cast<size_t>(vocab_);
  reference_p_log_p_.assign(n, 0.0);
  reference_target_log_p_.assign(n, 0.0f);
  // The reference's own accuracy from the same pass (an evaluate(reference)
  // would run the model again for the same numbers): the NLL term for term
  // as compare() adds it, and KL 0 exactly, since compare() would form
  // sum p log q from the same stored p and log p that make sum p log p.
  Sums sums;
  const auto ww = windows();
  for (size_t i : all) {
    const auto [b, len] = ww[i];
    for (int64_t j = 0; j + 1 < len; ++j) {
      const size_t pos = static_cast<size_t>(first_position(b, i) + j);
      float* row = lp.data() + pos * static_cast<size_t>(vocab_);
      reference_target_log_p_[pos] = row[tokens_[static_cast<size_t>(b + j + 1)]];
      sums.nll -= reference_target_log_p_[pos];
      ++sums.positions;
      double plogp = 0;
      for (int64_t v = 0; v < vocab_; ++v) {
        // The stored (float) probability in both sums, term for term as
        // compare() forms them: the float model against itself is exactly 0.
        const float prob = static_cast<float>(std::exp(static_cast<double>(row[v])));
        plogp += static_cast<double>(prob) * row[v];
        row[v] = prob;
      }
      reference_p_log_p_[pos] = plogp;
    }
  }
  reference_probs_ = std::move(lp);
  reference_ = accuracy_of(sums);
}

HeldOutEvaluator::HeldOutEvaluator(const HeldOutEvaluator& whole, const std::vector<size_t>& which)
    : ctx_(whole.ctx_), vocab_(whole.vocab_), parent_(&whole), parent_windows_(which) {
  const auto ww = whole.windows();
  const size_t V = static_cast<size_t>(vocab_);
  Sums sums;
  for (size_t k = 0; k < which.size(); ++k) {
    const size_t i = which[k];
    if (i >= ww.size() || (k > 0 && i <= which[k - 1]))
      fail(XQ_ERR_INTERNAL, "accuracy: part windows must rise and lie within the {} windows (got {})", ww.size(), i);
    const auto [b, len] = ww[i];
    // Re-windowed by ctx, the part must cut its tokens where the whole did.
    if (len != ctx_ && k + 1 != which.size())
      fail(XQ_ERR_INTERNAL, "accuracy: a short window ({} tokens) can only be a part's last", len);
    tokens_.insert(tokens_.end(), whole.tokens_.begin() + b, whole.tokens_.begin() + b + len);
    const size_t p0 = static_cast<size_t>(first_position(b, i)), n = static_cast<size_t>(len - 1);
    reference_probs_.insert(reference_probs_.end(), whole.reference_probs_.begin() + static_cast<std::ptrdiff_t>(p0 * V),
                            whole.reference_probs_.begin() + static_cast<std::ptrdiff_t>((p0 + n) * V));
    reference_p_log_p_.insert(reference_p_log_p_.end(), whole.reference_p_log_p_.begin() + static_cast<std::ptrdiff_t>(p0),
                              whole.reference_p_log_p_.begin() + static_cast<std::ptrdiff_t>(p0 + n));
    for (size_t j = 0; j < n; ++j) {
      reference_target_log_p_.push_back(whole.reference_target_log_p_[p0 + j]);
      sums.nll -= reference_target_log_p_.back();
      ++sums.positions;
    }
  }
  if (tokens_.size() < 2) fail(XQ_ERR_INVALID_ARGUMENT, "accuracy: the evaluation part has fewer than 2 tokens");
  reference_ = accuracy_of(sums);
}

std::vector<std::pair<int64_t, int64_t>> HeldOutEvaluator::windows() const {
  std::vector<std::pair<int64_t, int64_t>> w;
  const int64_t n = static_cast<int64_t>(tokens_.size());
  for (int64_t b = 0; b < n; b += ctx_)
    if (std::min(ctx_, n - b) >= 2) w.emplace_back(b, std::min(ctx_, n - b));
  return w;
}

std::vector<size_t> HeldOutEvaluator::all_windows() const {
  std::vector<size_t> all(windows().size());
  std::iota(all.begin(), all.end(), size_t{0});
  return all;
}

namespace {

void append_log_probs(Model& model, const float* logits, int64_t len, int64_t vocab, std::vector<float>& out) {
  const size_t at = out.size();
  out.resize(at + static_cast<size_t>((len - 1) * vocab));
  model.runtime().pool().parallel_for(static_cast<uint64_t>(len - 1), 8, [&](uint64_t s, uint64_t e) {
    for (uint64_t j = s; j < e; ++j) log_softmax_row(logits + j * vocab, vocab, out.data() + at + j * vocab);
  });
}

void check_vocab(const Model& model, int64_t vocab) {
  if (model.arch().vocab != vocab)
    fail(XQ_ERR_INVALID_ARGUMENT, "accuracy: vocabulary {} differs from the float model's {}", model.arch().vocab, vocab);
}

}  // namespace

std::vector<float> HeldOutEvaluator::log_probs(Model& model, const std::vector<size_t>& which) const {
  check_vocab(model, vocab_);
  const auto ww = windows();
  std::vector<float> out;
  size_t positions = 0;
  for (size_t i : which) positions += static_cast<size_t>(ww[i].second - 1);
  out.reserve(positions * static_cast<size_t>(vocab_));
  KvCache cache(model.arch(), ctx_);
  for (size_t i : which) {
    const auto [b, len] = ww[i];
    cache.clear();
    auto logits = model.forward({SequenceInput{&cache, tokens_.data() + b, len, true}});
    append_log_probs(model, logits.data(), len, vocab_, out);
    layer_tokens_run_ += static_cast<uint64_t>(len * model.arch().n_layers);
  }
  return out;
}

void HeldOutEvaluator::cache_layer_inputs(Model& reference) {
  check_vocab(reference, vocab_);
  const Architecture& a = reference.arch();
  const int64_t H = a.hidden;
  layer_inputs_.assign(static_cast<size_t>(a.n_layers), std::vector<float>(tokens_.size() * static_cast<size_t>(H)));
  mlp_inputs_ = layer_inputs_;
  std::vector<float> x, k(static_cast<size_t>(ctx_ * a.n_kv_heads * a.head_dim)), v(k.size());
  for (auto [b, len] : windows()) {
    x.resize(static_cast<size_t>(len * H));
    reference.embed(tokens_.data() + b, len, x.data());
    const std::vector<SequenceSpan> span{SequenceSpan{0, len, 0, k.data(), v.data()}};
    for (int l = 0; l < a.n_layers; ++l) {
      std::copy(x.begin(), x.end(), layer_inputs_[static_cast<size_t>(l)].begin() + b * H);
      reference.layer_forward(l, x.data(), len, span, nullptr, LayerPart::Attention);
      std::copy(x.begin(), x.end(), mlp_inputs_[static_cast<size_t>(l)].begin() + b * H);
      reference.layer_forward(l, x.data(), len, span, nullptr, LayerPart::Mlp);
    }
    layer_tokens_run_ += static_cast<uint64_t>(len * a.n_layers);
  }
}

std::vector<float> HeldOutEvaluator::log_probs_from(Model& model, int first, bool from_mlp) const {
  check_vocab(model, vocab_);
  const Architecture& a = model.arch();
  const int64_t H = a.hidden;
  std::vector<float> out, x, logits, k(static_cast<size_t>(ctx_ * a.n_kv_heads * a.head_dim)), v(k.size());
  out.reserve(static_cast<size_t>((tokens_.size() - 1) * vocab_));
  for (auto [b, len] : windows()) {
    const auto& in = (from_mlp ? mlp_inputs_ : layer_inputs_)[static_cast<size_t>(first)];
    x.assign(in.begin() + b * H, in.begin() + (b + len) * H);
    for (int l = first; l < a.n_layers; ++l)
      model.layer_forward(l, x.data(), len, {SequenceSpan{0, len, 0, k.data(), v.data()}}, nullptr,
                          from_mlp && l == first ? LayerPart::Mlp : LayerPart::Whole);
    logits.resize(static_cast<size_t>(len * vocab_));
    model.logits_from_hidden(x.data(), len, logits.data());
    append_log_probs(model, logits.data(), len, vocab_, out);
    layer_tokens_run_ += static_cast<uint64_t>(len * (a.n_layers - first));
  }
  return out;
}

Accuracy HeldOutEvaluator::evaluate(Model& model) const {
  const std::vector<size_t> all = all_windows();
  return accuracy_of(compare(log_probs(model, all), all));
}

Accuracy HeldOutEvaluator::evaluate_knowing(Model& model, const HeldOutEvaluator& part, const Accuracy& on_part) const {
  if (!part.is_part_of(*this) || on_part.positions != part.reference_.positions)
    fail(XQ_ERR_INTERNAL, "accuracy: a part's evaluation joined to a whole it is not part of");
  std::vector<size_t> rest;
  for (size_t i : all_windows())
    if (!std::binary_search(part.parent_windows_.begin(), part.parent_windows_.end(), i)) rest.push_back(i);
  Sums s = compare(log_probs(model, rest), rest);
  s.nll += on_part.mean_nll * static_cast<double>(on_part.positions);
  s.kl += on_part.kld * static_cast<double>(on_part.positions);
  s.positions += on_part.positions;
  return accuracy_of(s);
}

Accuracy HeldOutEvaluator::evaluate_from(Model& model, int first, bool from_mlp) const {
  if (layer_inputs_.empty() || first < 0 || first >= static_cast<int>(layer_inputs_.size())) return evaluate(model);
  if (model.arch().n_layers != static_cast<int>(layer_inputs_.size()) || model.arch().hidden * static_cast<int64_t>(tokens_.size()) !=
                                                                            static_cast<int64_t>(layer_inputs_[0].size()))
    fail(XQ_ERR_INVALID_ARGUMENT, "accuracy: the model's layers differ from the cached reference's");
  const std::vector<size_t> all = all_windows();
  return accuracy_of(compare(log_probs_from(model, first, from_mlp), all));
}

HeldOutEvaluator::Sums HeldOutEvaluator::compare(const std::vector<float>& lq, const std::vector<size_t>& which) const {
  Sums s;
  const auto ww = windows();
  int64_t at = 0;  // position in lq
  for (size_t i : which) {
    const auto [b, len] = ww[i];
    const int64_t p0 = first_position(b, i);
    for (int64_t j = 0; j + 1 < len; ++j, ++at) {
      const float* q = lq.data() + at * vocab_;
      const float* p = reference_probs_.data() + (p0 + j) * vocab_;
      s.nll -= q[tokens_[static_cast<size_t>(b + j + 1)]];
      double p_log_q = 0;
      for (int64_t v = 0; v < vocab_; ++v) p_log_q += static_cast<double>(p[v]) * q[v];
      s.kl += std::max(0.0, reference_p_log_p_[static_cast<size_t>(p0 + j)] - p_log_q);
      ++s.positions;
    }
  }
  return s;
}

Accuracy HeldOutEvaluator::accuracy_of(const Sums& s) {
  Accuracy a;
  a.positions = s.positions;
  a.mean_nll = s.nll / static_cast<double>(s.positions);
  a.ppl = std::exp(a.mean_nll);
  a.kld = s.kl / static_cast<double>(s.positions);
  return a;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) return 0;
  const auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n, mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

}  // namespace xquant::decide
