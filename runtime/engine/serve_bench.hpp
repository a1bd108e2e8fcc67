// serve_bench.hpp: offline serving throughput of one model at one
// concurrency and one (input, output) length: `concurrency` requests of
// random prompt tokens, all queued at once, run to their full output length
// (no stop token) through the continuous-batching scheduler over a paged KV
// cache sized to hold them all. What `xquant bench` reports per row.
#pragma once

#include "engine/paged_kv.hpp"
#include "engine/scheduler.hpp"

#include <cstdint>
#include <functional>
#include <string>

namespace xquant {

class Model;

struct ServeBenchConfig {
  int64_t concurrency = 1;
  int64_t input_len = 128, output_len = 128;
  int64_t block_size = 16;
  xq_dtype kv_dtype = XQ_DTYPE_F32;
  int64_t max_step_tokens = 2048;
  uint64_t seed = 0;
};

struct ServeBenchResult {
  double seconds = 0;                        // first request queued .. last token
  int64_t output_tokens = 0, prompt_tokens = 0;
  double output_tok_s = 0, total_tok_s = 0;  // output, and prompt + output, per second
  double ttft_p50 = 0, ttft_p99 = 0;         // seconds to the first token
  double tpot_p50 = 0, tpot_p99 = 0;         // seconds per output token after the first
  int64_t kv_blocks = 0;
  uint64_t kv_bytes = 0;
  uint64_t peak_device_bytes = 0;            // provider memory_info peak (0 when not reported)
  SchedulerStats stats;
  double launch_share = 0;                   // host time in run_op / step wall time
};

// Runs the benchmark; `progress` after every step with the scheduler.
ServeBenchResult run_serve_bench(Model& model, const ServeBenchConfig& config,
                                 const std::function<void(const Scheduler&)>& progress = nullptr);

// The p-th percentile (0..100) of `v` by linear interpolation (v is sorted).
double percentile(std::vector<double> v, double p);

}  // namespace xquant
