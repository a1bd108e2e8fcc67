// bench_engine.cpp: CPU prefill and decode speed of the inference engine
// (SmolLM2-135M by default), each beside the baseline that bounds it,
// measured in the same run with the same thread count:
//   - decode: tokens/s vs the memory-bandwidth floor = copy bandwidth
//     (bytes copied per second by a parallel memcpy of a 512 MiB buffer, far
//     larger than the caches) / bytes of weights one decode step reads. Also
//     printed: the floor from a pure read stream (a parallel sum over the
//     buffer), the tighter bound, and the STREAM-convention copy rate
//     (read + write bytes) for comparison with published numbers;
//   - prefill: the Linears' FLOP rate (2 * linear params * tokens / time,
//     attention and the rest counted as overhead) vs OpenBLAS's own SGEMM
//     rate on the model's largest prefill GEMM shape.
// No timed assertions: it prints numbers (and --json) for docs/engine.md.
//
//   bench_engine [--model PATH] [--threads 1,2] [--prefill 512] [--decode 64] [--json]
// PATH defaults to $XQUANT_SMOLLM2_GGUF.
#include "bandwidth.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

using namespace xquant;
using bench::copy_bandwidth;
using bench::read_bandwidth;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double sgemm_gflops(int m, int n, int k, int reps) {
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), b(static_cast<size_t>(n) * k, 0.25f), c(static_cast<size_t>(m) * n);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), n);
    best = std::min(best, secs(t0, Clock::now()));
  }
  return 2.0 * m * n * k / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = std::getenv("XQUANT_SMOLLM2_GGUF") ? std::getenv("XQUANT_SMOLLM2_GGUF") : "";
  std::vector<unsigned> threads = {1, 2};
  int64_t prefill = 512, decode = 64;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model_path = next();
    else if (a == "--prefill") prefill = std::stoll(next());
    else if (a == "--decode") decode = std::stoll(next());
    else if (a == "--json") json = true;
    else if (a == "--threads") {
      threads.clear();
      std::stringstream ss(next());
      std::string t;
      while (std::getline(ss, t, ',')) threads.push_back(static_cast<unsigned>(std::stoul(t)));
    } else {
      std::fprintf(stderr, "usage: bench_engine [--model PATH] [--threads 1,2] [--prefill N] [--decode N] [--json]\n");
      return 2;
    }
  }
  if (model_path.empty()) {
    std::fprintf(stderr, "bench_engine: give --model PATH or set XQUANT_SMOLLM2_GGUF (scripts/fetch-smollm2.sh)\n");
    return 2;
  }
  nlohmann::json out = nlohmann::json::array();
  try {
    for (unsigned nt : threads) {
      RuntimeOptions ro;
      ro.threads = nt;
      ro.log_level = XQ_LOG_WARN;
      Runtime rt(ro);
      auto model = Model::open(rt, model_path);  // the cpu plugin runs OpenBLAS single-threaded, in blocks on its pool
      const Architecture& a = model->arch();
      uint64_t linear_params = 0;
      for (const auto* l : a.all_linears()) linear_params += static_cast<uint64_t>(l->out * l->in);
      linear_params += static_cast<uint64_t>(a.vocab * a.hidden);  // lm_head

      std::vector<int32_t> ids(static_cast<size_t>(prefill));
      for (int64_t i = 0; i < prefill; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % a.vocab);
      // Prefill with logits for every row (what eval does, lm_head included in
      // the FLOP count); the first run warms up, the best of the other two counts.
      double best_prefill = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        KvCache cache(a, prefill + decode + 1);
        auto t0 = Clock::now();
        model->forward({SequenceInput{&cache, ids.data(), prefill, true}});  // all logits, as eval
        double s = secs(t0, Clock::now());
        if (rep > 0 || prefill <= 0) best_prefill = std::min(best_prefill, s);
      }
      // Decode: `decode` single-token steps after a 16-token prompt; best of 3.
      double decode_s = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        KvCache cache(a, 16 + decode + 1);
        model->forward({SequenceInput{&cache, ids.data(), 16, false}});
        int32_t tok = ids[16];
        auto t0 = Clock::now();
        for (int64_t i = 0; i < decode; ++i) {
          auto lg = model->forward({SequenceInput{&cache, &tok, 1, false}});
          tok = static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin());
        }
        decode_s = std::min(decode_s, secs(t0, Clock::now()));
      }

      double bw = copy_bandwidth(rt.pool(), size_t{512} << 20, 5);
      double rbw = read_bandwidth(rt.pool(), size_t{512} << 20, 5);
      uint64_t wbytes = model->weight_bytes_per_token();
      double floor_tps = bw / static_cast<double>(wbytes);
      double read_floor_tps = rbw / static_cast<double>(wbytes);
      double decode_tps = static_cast<double>(decode) / decode_s;
      // The largest prefill GEMM of the model: [prefill, hidden] x [inter, hidden]^T.
      // The baseline is OpenBLAS with its own threading at nt threads (the
      // cpu provider keeps it at 1 and splits GEMMs over our pool itself).
      openblas_set_num_threads(static_cast<int>(nt));
      double blas = sgemm_gflops(static_cast<int>(prefill), static_cast<int>(a.intermediate), static_cast<int>(a.hidden), 5);
      openblas_set_num_threads(1);
      double prefill_tps = static_cast<double>(prefill) / best_prefill;
      double prefill_gflops = 2.0 * static_cast<double>(linear_params) * static_cast<double>(prefill) / best_prefill / 1e9;

      nlohmann::json j{{"model", model_path},
                       {"threads", nt},
                       {"prefill_tokens", prefill},
                       {"prefill_tokens_per_s", prefill_tps},
                       {"prefill_linear_gflops", prefill_gflops},
                       {"blas_sgemm_gflops", blas},
                       {"prefill_vs_blas", prefill_gflops / blas},
                       {"decode_tokens", decode},
                       {"decode_tokens_per_s", decode_tps},
                       {"weight_bytes_per_token", wbytes},
                       {"copy_bandwidth_gb_s", bw / 1e9},
                       {"stream_copy_gb_s", 2 * bw / 1e9},
                       {"read_bandwidth_gb_s", rbw / 1e9},
                       {"decode_floor_tokens_per_s", floor_tps},
                       {"decode_vs_floor", decode_tps / floor_tps},
                       {"decode_read_floor_tokens_per_s", read_floor_tps},
                       {"decode_vs_read_floor", decode_tps / read_floor_tps}};
      out.push_back(j);
      std::fprintf(json ? stderr : stdout,
            "threads %u: prefill %.1f tok/s (Linears %.1f GFLOP/s = %.0f%% of SGEMM %.1f GFLOP/s) | decode %.2f tok/s, "
            "floor %.2f tok/s (%.1f MB/token at %.2f GB/s copy) = %.0f%% of floor; read-stream floor %.2f tok/s "
            "(%.2f GB/s) = %.0f%%\n",
            nt, prefill_tps, prefill_gflops, 100.0 * prefill_gflops / blas, blas, decode_tps, floor_tps, wbytes / 1e6,
            bw / 1e9, 100.0 * decode_tps / floor_tps, read_floor_tps, rbw / 1e9, 100.0 * decode_tps / read_floor_tps);
      std::fflush(json ? stderr : stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine: %s\n", e.what());
    return 1;
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
