// scheduler.hpp: continuous batching over the paged KV cache. Requests of
// any prompt and output length join a waiting queue; each step() runs one
// engine step over every running sequence: one decode row per sequence
// that has its first token, then prefill chunks of the others up to a
// per-step token budget (chunked prefill mixed with decode, as vLLM and
// Sarathi-Serve, Agrawal et al. 2024, arXiv:2403.02310), so requests join
// and leave between steps. Greedy decoding; the scheduler is
// provider-independent (it only calls Model::forward_paged_greedy).
//
// Admission reserves a request's whole KV need (prompt + max new tokens) up
// front, so a running sequence never runs out of blocks and nothing is
// preempted; a request that could never fit is refused by add().
#pragma once

#include "engine/paged_kv.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

namespace xquant {

class Model;

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 16;
  int32_t eos = -1;  // stop after this token; -1: run to max_new_tokens
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (the prompt excluded)
  // Seconds since the scheduler started: when the request was added, got
  // its first token, finished.
  double added = 0, first_token = -1, finished = -1;
  bool done = false;
};

struct SchedulerOptions {
  int64_t max_running = 256;       // sequences admitted at once
  int64_t max_step_tokens = 2048;  // rows of one step (decode rows + prefill chunks)
};

struct SchedulerStats {
  int64_t steps = 0, prefill_tokens = 0, decode_tokens = 0, max_running_seen = 0;
  int64_t mixed_steps = 0;     // steps with decode rows and prefill chunks together
  double step_seconds = 0;     // wall time inside forward_paged_greedy
  double provider_seconds = 0; // host time inside the provider's run_op (launches)
  uint64_t ops = 0;            // ops run
};

class Scheduler {
 public:
  Scheduler(Model& model, PagedKvCache& cache, const SchedulerOptions& options = {});
  // Queues a request; returns its id (results are indexed by it). Throws
  // before any device work when the request is empty, longer than the
  // model's context, or needs more blocks than the whole pool has.
  int add(GenerationRequest request);
  bool idle() const { return waiting_.empty() && running_.empty(); }
  // One engine step (admits waiting requests first). False when idle.
  bool step();
  // Steps until every request is done; `progress` after each step.
  void run(const std::function<void(const Scheduler&)>& progress = nullptr);

  const GenerationResult& result(int id) const { return results_.at(static_cast<size_t>(id)); }
  int64_t requests() const { return static_cast<int64_t>(results_.size()); }
  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  const SchedulerStats& stats() const { return stats_; }
  double now() const;

 private:
  struct Sequence {
    int id = 0;
    GenerationRequest req;
    PagedSequence kv;
    int64_t prefilled = 0;  // prompt tokens already in the cache
  };
  void admit();
  void finish(Sequence& s);

  Model& model_;
  PagedKvCache& cache_;
  SchedulerOptions options_;
  std::deque<Sequence> waiting_;
  std::vector<Sequence> running_;
  std::vector<GenerationResult> results_;
  SchedulerStats stats_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace xquant
