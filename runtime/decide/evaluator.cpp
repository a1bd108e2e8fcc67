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
  std::vector<float> lp = log_probs(reference);
  reference_p_log_p_.assign(lp.size() / static_cast<size_t>(vocab_), 0.0);
  for (size_t pos = 0; pos < reference_p_log_p_.size(); ++pos) {
    float* row = lp.data() + pos * static_cast<size_t>(vocab_);
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
  reference_probs_ = std::move(lp);
  reference_ = evaluate(reference);
}

std::vector<std::pair<int64_t, int64_t>> HeldOutEvaluator::windows() const {
  std::vector<std::pair<int64_t, int64_t>> w;
  const int64_t n = static_cast<int64_t>(tokens_.size());
  for (int64_t b = 0; b < n; b += ctx_)
    if (std::min(ctx_, n - b) >= 2) w.emplace_back(b, std::min(ctx_, n - b));
  return w;
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

std::vector<float> HeldOutEvaluator::log_probs(Model& model) const {
  check_vocab(model, vocab_);
  std::vector<float> out;
  out.reserve(static_cast<size_t>((tokens_.size() - 1) * vocab_));
  KvCache cache(model.arch(), ctx_);
  for (auto [b, len] : windows()) {
    cache.clear();
    auto logits = model.forward({SequenceInput{&cache, tokens_.data() + b, len, true}});
    append_log_probs(model, logits.data(), len, vocab_, out);
  }
  return out;
}

void HeldOutEvaluator::cache_layer_inputs(Model& reference) {
  check_vocab(reference, vocab_);
  const Architecture& a = reference.arch();
  const int64_t H = a.hidden;
  layer_inputs_.assign(static_cast<size_t>(a.n_layers), std::vector<float>(tokens_.size() * static_cast<size_t>(H)));
  std::vector<float> x, k(static_cast<size_t>(ctx_ * a.n_kv_heads * a.head_dim)), v(k.size());
  for (auto [b, len] : windows()) {
    x.resize(static_cast<size_t>(len * H));
    reference.embed(tokens_.data() + b, len, x.data());
    for (int l = 0; l < a.n_layers; ++l) {
      std::copy(x.begin(), x.end(), layer_inputs_[static_cast<size_t>(l)].begin() + b * H);
      reference.layer_forward(l, x.data(), len, {SequenceSpan{0, len, 0, k.data(), v.data()}});
    }
  }
}

std::vector<float> HeldOutEvaluator::log_probs_from(Model& model, int first) const {
  check_vocab(model, vocab_);
  const Architecture& a = model.arch();
  const int64_t H = a.hidden;
  std::vector<float> out, x, logits, k(static_cast<size_t>(ctx_ * a.n_kv_heads * a.head_dim)), v(k.size());
  out.reserve(static_cast<size_t>((tokens_.size() - 1) * vocab_));
  for (auto [b, len] : windows()) {
    const auto& in = layer_inputs_[static_cast<size_t>(first)];
    x.assign(in.begin() + b * H, in.begin() + (b + len) * H);
    for (int l = first; l < a.n_layers; ++l)
      model.layer_forward(l, x.data(), len, {SequenceSpan{0, len, 0, k.data(), v.data()}});
    logits.resize(static_cast<size_t>(len * vocab_));
    model.logits_from_hidden(x.data(), len, logits.data());
    append_log_probs(model, logits.data(), len, vocab_, out);
  }
  return out;
}

Accuracy HeldOutEvaluator::evaluate(Model& model) const { return compare(log_probs(model)); }

Accuracy HeldOutEvaluator::evaluate_from(Model& model, int first) const {
  if (layer_inputs_.empty() || first < 0 || first >= static_cast<int>(layer_inputs_.size())) return evaluate(model);
  if (model.arch().n_layers != static_cast<int>(layer_inputs_.size()) || model.arch().hidden * static_cast<int64_t>(tokens_.size()) !=
                                                                            static_cast<int64_t>(layer_inputs_[0].size()))
    fail(XQ_ERR_INVALID_ARGUMENT, "accuracy: the model's layers differ from the cached reference's");
  return compare(log_probs_from(model, first));
}

Accuracy HeldOutEvaluator::compare(const std::vector<float>& lq) const {
  Accuracy a;
  double nll = 0, kl = 0;
  int64_t pos = 0;
  for (auto [b, len] : windows()) {
    for (int64_t j = 0; j + 1 < len; ++j, ++pos) {
      const float* q = lq.data() + pos * vocab_;
      const float* p = reference_probs_.data() + pos * vocab_;
      nll -= q[tokens_[static_cast<size_t>(b + j + 1)]];
      double p_log_q = 0;
      for (int64_t v = 0; v < vocab_; ++v) p_log_q += static_cast<double>(p[v]) * q[v];
      kl += std::max(0.0, reference_p_log_p_[static_cast<size_t>(pos)] - p_log_q);
    }
  }
  a.positions = static_cast<uint64_t>(pos);
  a.mean_nll = nll / static_cast<double>(pos);
  a.ppl = std::exp(a.mean_nll);
  a.kld = kl / static_cast<double>(pos);
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
