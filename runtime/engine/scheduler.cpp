// scheduler.cpp: continuous batching over the paged KV cache (scheduler.hpp).
#include "engine/scheduler.hpp"

#include "core/error.hpp"
#include "engine/model.hpp"

#include <algorithm>

namespace xquant {

Scheduler::Scheduler(Model& model, PagedKvCache& cache, const SchedulerOptions& options)
    : model_(model), cache_(cache), options_(options), t0_(std::chrono::steady_clock::now()) {
  if (options_.max_running <= 0 || options_.max_step_tokens <= 0)
    fail(XQ_ERR_INVALID_ARGUMENT, "scheduler: max_running and max_step_tokens must be positive");
}

double Scheduler::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

int Scheduler::add(GenerationRequest request) {
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) fail(XQ_ERR_INVALID_ARGUMENT, "scheduler: request #{} has an empty prompt", results_.size());
  if (request.max_new_tokens <= 0)
    fail(XQ_ERR_INVALID_ARGUMENT, "scheduler: request #{} asks for {} new tokens", results_.size(), request.max_new_tokens);
  const int64_t total = n + request.max_new_tokens;
  const int64_t ctx = model_.arch().max_positions;
  if (ctx > 0 && total > ctx)
    fail(XQ_ERR_INVALID_ARGUMENT, "scheduler: request #{} needs {} positions ({} prompt + {} new); the model's context is {}",
         results_.size(), total, n, request.max_new_tokens, ctx);
  for (int32_t t : request.prompt)
    if (t < 0 || t >= model_.arch().vocab)
      fail(XQ_ERR_INVALID_ARGUMENT, "scheduler: request #{} has token {} outside the vocabulary [0, {})", results_.size(),
           t, model_.arch().vocab);
  if (cache_.blocks_for(total) > cache_.num_blocks())
    fail(XQ_ERR_OUT_OF_MEMORY, "scheduler: request #{} needs {} KV blocks of {} tokens; the pool has {}", results_.size(),
         cache_.blocks_for(total), cache_.block_size(), cache_.num_blocks());
  Sequence s;
  s.id = static_cast<int>(results_.size());
  s.req = std::move(request);
  results_.emplace_back();
  results_.back().added = now();
  waiting_.push_back(std::move(s));
  return static_cast<int>(results_.size()) - 1;
}

// FIFO admission while the running set has room and the pool can hold the
// request's whole length (so a running sequence never needs preempting).
void Scheduler::admit() {
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_running) {
    Sequence& s = waiting_.front();
    const int64_t total = static_cast<int64_t>(s.req.prompt.size()) + s.req.max_new_tokens;
    if (!cache_.reserve(s.kv, total)) break;
    running_.push_back(std::move(s));
    waiting_.pop_front();
  }
}

void Scheduler::finish(Sequence& s) {
  GenerationResult& r = results_[static_cast<size_t>(s.id)];
  r.finished = now();
  r.done = true;
  cache_.release(s.kv);
}

bool Scheduler::step() {
  admit();
  if (running_.empty()) return false;
  // Decode rows first (one per sequence past its prompt), then prefill
  // chunks in admission order while the step's token budget lasts.
  std::vector<PagedInput> batch;
  std::vector<size_t> which;
  std::vector<int32_t> last(running_.size());
  int64_t budget = options_.max_step_tokens;
  const int64_t decode0 = stats_.decode_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& s = running_[i];
    if (s.prefilled < static_cast<int64_t>(s.req.prompt.size())) continue;
    last[i] = results_[static_cast<size_t>(s.id)].tokens.back();
    batch.push_back({&s.kv, &last[i], 1});
    which.push_back(i);
    --budget;
    ++stats_.decode_tokens;
  }
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& s = running_[i];
    const int64_t left = static_cast<int64_t>(s.req.prompt.size()) - s.prefilled;
    if (left <= 0) continue;
    const int64_t n = std::min(left, budget);
    batch.push_back({&s.kv, s.req.prompt.data() + s.prefilled, n});
    which.push_back(i);
    budget -= n;
    stats_.prefill_tokens += n;
  }
  const bool has_decode = stats_.decode_tokens > decode0, has_prefill = which.size() > static_cast<size_t>(stats_.decode_tokens - decode0);
  if (has_decode && has_prefill) ++stats_.mixed_steps;
  const uint64_t ops0 = model_.kernels().ops_run();
  const double prov0 = model_.kernels().run_seconds(), t = now();
  std::vector<int32_t> ids = model_.forward_paged_greedy(cache_, batch);
  stats_.step_seconds += now() - t;
  stats_.provider_seconds += model_.kernels().run_seconds() - prov0;
  stats_.ops += model_.kernels().ops_run() - ops0;
  ++stats_.steps;
  stats_.max_running_seen = std::max<int64_t>(stats_.max_running_seen, static_cast<int64_t>(running_.size()));
  const double t_done = now();
  for (size_t b = 0; b < batch.size(); ++b) {
    Sequence& s = running_[which[b]];
    const bool prefill_chunk = batch[b].tokens != &last[which[b]];
    if (prefill_chunk) {
      s.prefilled += batch[b].n;
      if (s.prefilled < static_cast<int64_t>(s.req.prompt.size())) continue;  // more prompt to go: no token yet
    }
    GenerationResult& r = results_[static_cast<size_t>(s.id)];
    r.tokens.push_back(ids[b]);
    if (r.first_token < 0) r.first_token = t_done;
    if (static_cast<int64_t>(r.tokens.size()) >= s.req.max_new_tokens || ids[b] == s.req.eos) finish(s);
  }
  std::erase_if(running_, [&](const Sequence& s) { return results_[static_cast<size_t>(s.id)].done; });
  return true;
}

void Scheduler::run(const std::function<void(const Scheduler&)>& progress) {
  while (step())
    if (progress) progress(*this);
}

}  // namespace xquant
