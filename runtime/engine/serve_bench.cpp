// serve_bench.cpp: one row of `xquant bench` (serve_bench.hpp).
#include "engine/serve_bench.hpp"

#include "engine/model.hpp"
#include "engine/op_profile_env.hpp"

#include <algorithm>
#include <random>
#include <string>

namespace xquant {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double at = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(at);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

ServeBenchResult run_serve_bench(Model& model, const ServeBenchConfig& c,
                                 const std::function<void(const Scheduler&)>& progress) {
  PagedKvOptions ko;
  ko.block_size = c.block_size;
  ko.dtype = c.kv_dtype;
  ko.num_blocks = c.concurrency * ((c.input_len + c.output_len + c.block_size - 1) / c.block_size);
  xq_memory_info mi{};
  model.kernels().memory_info(&mi);  // starts the provider's peak window
  PagedKvCache cache(model, ko);
  SchedulerOptions so;
  so.max_running = c.concurrency;
  so.max_step_tokens = std::max(c.max_step_tokens, c.concurrency);
  Scheduler sched(model, cache, so);
  std::mt19937_64 rng(c.seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(model.arch().vocab) - 1);
  for (int64_t i = 0; i < c.concurrency; ++i) {
    GenerationRequest r;
    r.prompt.resize(static_cast<size_t>(c.input_len));
    for (auto& t : r.prompt) t = tok(rng);
    r.max_new_tokens = c.output_len;
    sched.add(std::move(r));
  }
  ServeBenchResult out;
  {
    const OpProfileFromEnv profile("xquant bench, concurrency " + std::to_string(c.concurrency) + ", " +
                                   std::to_string(c.input_len) + ":" + std::to_string(c.output_len));
    const double t0 = sched.now();
    sched.run(progress);
    out.seconds = sched.now() - t0;
  }
  std::vector<double> ttft, tpot;
  for (int64_t i = 0; i < sched.requests(); ++i) {
    const GenerationResult& r = sched.result(static_cast<int>(i));
    out.output_tokens += static_cast<int64_t>(r.tokens.size());
    ttft.push_back(r.first_token - r.added);
    if (r.tokens.size() > 1) tpot.push_back((r.finished - r.first_token) / static_cast<double>(r.tokens.size() - 1));
  }
  out.prompt_tokens = c.concurrency * c.input_len;
  out.output_tok_s = out.seconds > 0 ? static_cast<double>(out.output_tokens) / out.seconds : 0;
  out.total_tok_s = out.seconds > 0 ? static_cast<double>(out.output_tokens + out.prompt_tokens) / out.seconds : 0;
  out.ttft_p50 = percentile(ttft, 50);
  out.ttft_p99 = percentile(ttft, 99);
  out.tpot_p50 = percentile(tpot, 50);
  out.tpot_p99 = percentile(tpot, 99);
  out.kv_blocks = cache.num_blocks();
  out.kv_bytes = cache.bytes();
  if (model.kernels().memory_info(&mi)) out.peak_device_bytes = mi.peak;
  out.stats = sched.stats();
  out.launch_share = out.stats.step_seconds > 0 ? out.stats.provider_seconds / out.stats.step_seconds : 0;
  return out;
}

}  // namespace xquant
