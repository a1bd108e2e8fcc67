// evaluate.cpp: perplexity protocol and generation loops (see evaluate.hpp).
#include "engine/evaluate.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace xquant {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

std::vector<int32_t> eval_tokens(Model& model, const std::string& text, uint64_t max_tokens) {
  const Tokenizer& tok = model.tokenizer();
  int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : model.arch().bos_id;
  if (bos < 0) fail(XQ_ERR_UNSUPPORTED, "the model has no BOS token; the perplexity protocol starts with one");
  std::vector<int32_t> ids;
  ids.push_back(bos);
  auto body = tok.encode(text, /*add_bos=*/false, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  if (max_tokens > 0 && ids.size() > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
  return ids;
}

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return std::log(sum) + mx - static_cast<double>(logits[target]);
}

PerplexityResult perplexity(Model& model, const std::vector<int32_t>& tokens, int64_t ctx,
                            const std::function<void(uint64_t, uint64_t)>& progress) {
  if (ctx < 2) fail(XQ_ERR_INVALID_ARGUMENT, "perplexity context must be at least 2 tokens (got {})", ctx);
  if (ctx > model.arch().max_positions)
    logger().warn("perplexity context {} exceeds the model's max_position_embeddings {}", ctx, model.arch().max_positions);
  const int64_t V = model.arch().vocab;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= V) fail(XQ_ERR_INVALID_ARGUMENT, "token #{} = {} is outside the vocabulary [0, {})", i, tokens[i], V);
  const int64_t n = static_cast<int64_t>(tokens.size());
  uint64_t to_score = 0;
  for (int64_t b = 0; b < n; b += ctx) to_score += static_cast<uint64_t>(std::max<int64_t>(0, std::min(ctx, n - b) - 1));
  if (to_score == 0) fail(XQ_ERR_INVALID_ARGUMENT, "the text gives {} token(s): nothing to score", n);

  PerplexityResult r;
  r.ctx = ctx;
  r.tokens_total = static_cast<uint64_t>(n);
  auto t0 = Clock::now();
  KvCache cache(model, ctx);
  double total = 0;
  for (int64_t b = 0; b < n; b += ctx) {
    int64_t len = std::min(ctx, n - b);
    if (len < 2) break;
    cache.clear();
    auto logits = model.forward({SequenceInput{&cache, tokens.data() + b, len, true}});
    std::vector<double> nll(static_cast<size_t>(len - 1));
    model.runtime().pool().parallel_for(static_cast<uint64_t>(len - 1), 8, [&](uint64_t s, uint64_t e) {
      for (uint64_t j = s; j < e; ++j) nll[j] = token_nll(logits.data() + j * V, V, tokens[b + j + 1]);
    });
    for (double v : nll) total += v;
    r.tokens_scored += static_cast<uint64_t>(len - 1);
    ++r.windows;
    if (progress) progress(r.tokens_scored, to_score);
  }
  r.mean_nll = total / static_cast<double>(r.tokens_scored);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = since(t0);
  return r;
}

GenerateResult generate_tokens(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                               const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail(XQ_ERR_INVALID_ARGUMENT, "generate: the prompt has no tokens");
  if (o.n_tokens < 0) fail(XQ_ERR_INVALID_ARGUMENT, "generate: negative token count");
  if (!(o.temperature >= 0.0f)) fail(XQ_ERR_INVALID_ARGUMENT, "generate: temperature must be >= 0");
  const int64_t V = model.arch().vocab;
  for (int32_t t : prompt)
    if (t < 0 || t >= V) fail(XQ_ERR_INVALID_ARGUMENT, "generate: prompt token {} outside the vocabulary", t);
  GenerateResult r;
  r.prompt_tokens = prompt;
  KvCache cache(model, static_cast<int64_t>(prompt.size()) + std::max<int64_t>(o.n_tokens, 1));
  std::mt19937_64 rng(o.seed);
  const Tokenizer* tok = nullptr;
  if (o.stop_at_eog) {
    try {
      tok = &model.tokenizer();
    } catch (const Error&) {
      tok = nullptr;  // token-level use without a vocabulary: stop only at the config's EOS
    }
  }
  auto pick = [&](const float* lg) -> int32_t {
    if (o.temperature <= 0.0f) return static_cast<int32_t>(std::max_element(lg, lg + V) - lg);
    float mx = *std::max_element(lg, lg + V);
    std::vector<double> p(static_cast<size_t>(V));
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += (p[i] = std::exp((static_cast<double>(lg[i]) - mx) / o.temperature));
    std::uniform_real_distribution<double> u(0.0, z);
    double x = u(rng), acc = 0;
    for (int64_t i = 0; i < V; ++i)
      if ((acc += p[i]) >= x) return static_cast<int32_t>(i);
    return static_cast<int32_t>(V - 1);
  };
  // Greedy: the model picks the id (on the device when it can), so a step
  // brings back one id instead of a vocabulary of logits.
  const bool greedy = o.temperature <= 0.0f;
  std::vector<float> logits;
  int32_t chosen = 0;
  auto run = [&](const int32_t* ids, int64_t n) {
    std::vector<SequenceInput> batch{SequenceInput{&cache, ids, n, false}};
    if (greedy) chosen = model.forward_greedy(batch).at(0);
    else logits = model.forward(batch);
  };
  auto t0 = Clock::now();
  run(prompt.data(), static_cast<int64_t>(prompt.size()));
  r.prefill_seconds = since(t0);
  const uint64_t ops0 = model.kernels().ops_run();
  const ThreadPoolStats pool0 = model.runtime().pool().stats();
  t0 = Clock::now();
  for (int64_t i = 0; i < o.n_tokens; ++i) {
    int32_t next = greedy ? chosen : pick(logits.data());
    bool eog = tok ? tok->is_eog(next) : next == model.arch().eos_id;
    if (o.stop_at_eog && eog) break;
    r.tokens.push_back(next);
    if (on_token) on_token(next);
    if (i + 1 == o.n_tokens) break;
    run(&next, 1);
    ++r.decode_steps;
  }
  r.decode_seconds = since(t0);
  const ThreadPoolStats pool1 = model.runtime().pool().stats();
  r.decode_ops = model.kernels().ops_run() - ops0;
  r.decode_pool_jobs = pool1.jobs - pool0.jobs;
  r.decode_pool_wakeups = pool1.wakeups - pool0.wakeups;
  r.decode_pool_parks = pool1.parks - pool0.parks;
  if (tok) r.text = tok->decode(r.tokens);
  return r;
}

GenerateResult generate(Model& model, const std::string& prompt, const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_piece) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<int32_t> ids = tok.encode(prompt, tok.add_bos_by_default(), /*parse_special=*/true);
  if (ids.empty() || (prompt.empty() && ids.front() != tok.bos_id())) {
    int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : model.arch().bos_id;
    if (bos < 0) fail(XQ_ERR_INVALID_ARGUMENT, "generate: empty prompt and the model has no BOS token");
    ids.insert(ids.begin(), bos);
  }
  std::function<void(int32_t)> cb;
  if (on_piece) cb = [&](int32_t id) { on_piece(tok.token_to_piece(id)); };
  GenerateResult r = generate_tokens(model, ids, o, cb);
  // Decode prompt + continuation together: SentencePiece drops the leading
  // space of the first token only, so decoding the continuation alone would
  // glue its first word to the prompt.
  // A leading BOS is dropped first so the first real token is the one whose
  // leading space is removed.
  std::vector<int32_t> head_ids = r.prompt_tokens;
  if (!head_ids.empty() && head_ids.front() == tok.bos_id()) head_ids.erase(head_ids.begin());
  std::vector<int32_t> all = head_ids;
  all.insert(all.end(), r.tokens.begin(), r.tokens.end());
  r.full_text = tok.decode(all);
  std::string head = tok.decode(head_ids);
  if (r.full_text.compare(0, head.size(), head) == 0) r.text = r.full_text.substr(head.size());
  return r;
}

}  // namespace xquant
