// cmd_bench.cpp: `xquant bench --models LABEL=PATH[,...] [--concurrency 1,8,32]
// [--lengths IN:OUT[,...]] [--provider cuda] [--json FILE]`: offline serving
// throughput of each model at each concurrency and length (engine/serve_bench.hpp):
// output tokens/s, TTFT and TPOT p50/p99, peak device memory, the KV pool,
// and the KV capacity a memory budget leaves beside the weights, as a table
// (stdout), JSON (--json) and a progress line per few seconds (stderr). A
// configuration that runs out of memory gets a "does not fit" row (an
// "error" entry in the JSON) and the rest still run; the exit status is then 1.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "engine/model.hpp"
#include "engine/serve_bench.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <new>
#include <string>
#include <unistd.h>
#include <vector>

namespace xquant::cli {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t end = s.find(sep, at);
    const std::string part = s.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (!part.empty()) out.push_back(part);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

int64_t parse_positive(const std::string& s, const char* what) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(std::string(what) + ": '" + s + "' is not a positive integer");
}

struct ModelSpec {
  std::string label, path;
};

std::vector<ModelSpec> parse_models(const std::string& s) {
  std::vector<ModelSpec> out;
  for (const auto& item : split(s, ',')) {
    const size_t eq = item.find('=');
    ModelSpec m;
    m.path = eq == std::string::npos ? item : item.substr(eq + 1);
    m.label = eq == std::string::npos ? std::filesystem::path(item).filename().string() : item.substr(0, eq);
    if (m.path.empty() || m.label.empty()) throw UsageError("--models: expected LABEL=PATH, got '" + item + "'");
    out.push_back(m);
  }
  if (out.empty()) throw UsageError("--models: no model given");
  return out;
}

double gib(uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }

}  // namespace

int cmd_bench(const RuntimeOptions& options, int argc, char** argv) {
  Args args("bench", "Offline serving throughput (continuous batching over a paged KV cache).",
            {{"models", "LABEL=PATH,...", "checkpoints to compare (the first is the baseline of the x column)", true},
             {"concurrency", "N,...", "requests run at once (default 1,8,32)"},
             {"lengths", "IN:OUT,...", "prompt and output tokens per request (default 1024:1024)"},
             {"provider", "NAME", "kernel provider (default cuda)"},
             {"kv-dtype", "T", "KV cache element type: bf16 (device default) or f32"},
             {"block-size", "N", "tokens per KV block (default 16)"},
             {"max-step-tokens", "N", "rows one step may run (decode + prefill chunks; default 2048)"},
             {"memory-budget-gb", "G", "for the KV capacity column: weights + KV within G GB (default 40)"},
             {"copy-gbs", "B", "device copy bandwidth (GB/s, read + write) for the batch-1 HBM floor"},
             {"seed", "S", "prompt token seed (default 0)"},
             {"json", "FILE", "also write every row as JSON"}});
  if (!args.parse(argc, argv)) return 0;
  const std::vector<ModelSpec> models = parse_models(*args.get("models"));
  std::vector<int64_t> conc;
  for (const auto& c : split(args.get_or("concurrency", "1,8,32"), ',')) conc.push_back(parse_positive(c, "--concurrency"));
  std::vector<std::pair<int64_t, int64_t>> lengths;
  for (const auto& l : split(args.get_or("lengths", "1024:1024"), ',')) {
    const auto io = split(l, ':');
    if (io.size() != 2) throw UsageError("--lengths: expected IN:OUT, got '" + l + "'");
    lengths.emplace_back(parse_positive(io[0], "--lengths"), parse_positive(io[1], "--lengths"));
  }
  const std::string provider = args.get_or("provider", "cuda");
  const std::string kv = args.get_or("kv-dtype", provider == "cpu" ? "f32" : "bf16");
  if (kv != "bf16" && kv != "f32") throw UsageError("--kv-dtype must be bf16 or f32");
  const double budget_gb = args.get_double("memory-budget-gb", 40.0);
  const double copy_gbs = args.get_double("copy-gbs", 0.0);
  const bool tty = isatty(2);

  Runtime runtime(options);
  nlohmann::json rows = nlohmann::json::array();
  std::map<std::string, double> baseline;  // "in:out:c" -> first model's output tok/s
  std::vector<std::string> did_not_fit;     // configurations whose memory ran out
  std::printf("%-12s %11s %5s %10s %6s %10s %10s %9s %9s %8s %9s %7s %9s %9s\n", "model", "in:out", "conc", "out tok/s",
              "x base", "total t/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "peak GiB", "launch", "KV seqs",
              "KV seq16k");
  std::fflush(stdout);
  for (const auto& spec : models) {
    ModelOptions mo;
    mo.provider = provider;
    if (provider != "cpu") mo.device_weights = XQ_DTYPE_BF16;
    std::fprintf(stderr, "bench: loading %s (%s)\n", spec.label.c_str(), spec.path.c_str());
    auto model = Model::open(runtime, spec.path, mo);
    xq_memory_info mi{};
    const bool have_mem = model->kernels().memory_info(&mi);
    const uint64_t resident = have_mem ? mi.in_use : model->weight_bytes();
    const uint64_t wbytes = model->weight_bytes_per_token();
    {  // warm-up: kernels' first launches, cuBLAS handles, scratch growth
      ServeBenchConfig w;
      w.concurrency = 2;
      w.input_len = 32;
      w.output_len = 4;
      w.kv_dtype = kv == "bf16" ? XQ_DTYPE_BF16 : XQ_DTYPE_F32;
      run_serve_bench(*model, w);
      // On a device, also the widest prefill step the runs below take, so
      // that no TTFT includes the engine's scratch growing to that many rows
      // (each growth frees the old buffer, which waits for the device).
      if (provider != "cpu") {
        const int64_t step_rows = args.get_int("max-step-tokens", 2048);
        int64_t longest = 1;
        for (const auto& io : lengths) longest = std::max(longest, io.first);
        w.input_len = std::min(longest, step_rows);
        const int64_t most = *std::max_element(conc.begin(), conc.end());
        w.concurrency = std::max<int64_t>(1, std::min(most, step_rows / w.input_len));
        w.output_len = 1;
        w.max_step_tokens = step_rows;
        w.block_size = args.get_int("block-size", 16);
        run_serve_bench(*model, w);
      }
    }
    for (const auto& [in, out] : lengths)
      for (int64_t c : conc) {
        ServeBenchConfig cfg;
        cfg.concurrency = c;
        cfg.input_len = in;
        cfg.output_len = out;
        cfg.block_size = args.get_int("block-size", 16);
        cfg.kv_dtype = kv == "bf16" ? XQ_DTYPE_BF16 : XQ_DTYPE_F32;
        cfg.max_step_tokens = args.get_int("max-step-tokens", 2048);
        cfg.seed = static_cast<uint64_t>(args.get_int("seed", 0));
        auto last = std::chrono::steady_clock::now();
        const int64_t want = c * out;
        auto progress = [&](const Scheduler& s) {
          const auto now = std::chrono::steady_clock::now();
          if (now - last < (tty ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5000))) return;
          last = now;
          int64_t done = 0;
          for (int64_t i = 0; i < s.requests(); ++i) done += static_cast<int64_t>(s.result(static_cast<int>(i)).tokens.size());
          std::fprintf(stderr, "%sbench: %s %lld:%lld c=%lld  step %lld  output %lld/%lld  running %lld waiting %lld  %.1f s%s",
                       tty ? "\r" : "", spec.label.c_str(), static_cast<long long>(in), static_cast<long long>(out),
                       static_cast<long long>(c), static_cast<long long>(s.stats().steps), static_cast<long long>(done),
                       static_cast<long long>(want), static_cast<long long>(s.running()),
                       static_cast<long long>(s.waiting()), s.now(), tty ? "   " : "\n");
        };
        // This configuration's KV cache (or a workspace) not fitting beside
        // the weights: its row says so and the sweep goes on (the exit
        // status says some rows have no numbers).
        auto does_not_fit = [&](const std::string& why) {
          if (tty) std::fprintf(stderr, "\n");
          std::printf("%-12s %5lld:%-5lld %5lld  does not fit: %s\n", spec.label.c_str(), static_cast<long long>(in),
                      static_cast<long long>(out), static_cast<long long>(c), why.c_str());
          std::fflush(stdout);
          rows.push_back({{"model", spec.label},
                          {"path", spec.path},
                          {"provider", provider},
                          {"input_len", in},
                          {"output_len", out},
                          {"concurrency", c},
                          {"error", why}});
          did_not_fit.push_back(fmt::format("{} {}:{} at concurrency {}", spec.label, in, out, c));
        };
        ServeBenchResult r;
        try {
          r = run_serve_bench(*model, cfg, progress);
        } catch (const Error& e) {
          if (e.status() != XQ_ERR_OUT_OF_MEMORY) throw;
          does_not_fit(e.what());
          continue;
        } catch (const std::bad_alloc&) {  // host memory (host providers' KV pools)
          does_not_fit(fmt::format("out of host memory for {} sequences of {} tokens", c, in + out));
          continue;
        }
        if (tty) std::fprintf(stderr, "\n");
        // KV capacity within the budget: what the weights leave, in blocks.
        const uint64_t per_block = r.kv_bytes / static_cast<uint64_t>(std::max<int64_t>(r.kv_blocks, 1));
        const double left = budget_gb * 1e9 - static_cast<double>(resident);
        const int64_t budget_blocks = left > 0 ? static_cast<int64_t>(left / static_cast<double>(per_block)) : 0;
        auto seqs_of = [&](int64_t len) { return budget_blocks / ((len + cfg.block_size - 1) / cfg.block_size); };
        // Ratios are to the first model only: where it has no row (it did
        // not fit), the others have no ratio rather than one to each other.
        const std::string key = std::to_string(in) + ":" + std::to_string(out) + ":" + std::to_string(c);
        if (&spec == &models.front()) baseline[key] = r.output_tok_s;
        const bool has_base = baseline.count(key) && baseline[key] > 0;
        const double ratio = has_base ? r.output_tok_s / baseline[key] : 0;
        const std::string ratio_text = has_base ? fmt::format("{:6.2f}", ratio) : "     -";
        std::printf("%-12s %5lld:%-5lld %5lld %10.1f %s %10.1f %8.1fms %7.1fms %7.2fms %7.2fms %8.1f %8.0f%% %9lld %9lld\n",
                    spec.label.c_str(), static_cast<long long>(in), static_cast<long long>(out),
                    static_cast<long long>(c), r.output_tok_s, ratio_text.c_str(), r.total_tok_s, r.ttft_p50 * 1e3, r.ttft_p99 * 1e3,
                    r.tpot_p50 * 1e3, r.tpot_p99 * 1e3, gib(r.peak_device_bytes), r.launch_share * 100,
                    static_cast<long long>(seqs_of(in + out)), static_cast<long long>(seqs_of(16384)));
        std::fflush(stdout);
        nlohmann::json j{{"model", spec.label},
                         {"path", spec.path},
                         {"provider", provider},
                         {"input_len", in},
                         {"output_len", out},
                         {"concurrency", c},
                         {"seconds", r.seconds},
                         {"output_tokens", r.output_tokens},
                         {"output_tok_s", r.output_tok_s},
                         {"ratio_to_first_model", has_base ? nlohmann::json(ratio) : nlohmann::json(nullptr)},
                         {"total_tok_s", r.total_tok_s},
                         {"ttft_ms", {{"p50", r.ttft_p50 * 1e3}, {"p99", r.ttft_p99 * 1e3}}},
                         {"tpot_ms", {{"p50", r.tpot_p50 * 1e3}, {"p99", r.tpot_p99 * 1e3}}},
                         {"peak_device_gib", gib(r.peak_device_bytes)},
                         {"resident_after_load_gib", gib(resident)},
                         {"weight_bytes_per_token", wbytes},  // MoE: top_k experts per layer
                         {"weight_bytes_total", model->weight_bytes()},
                         {"kv_dtype", kv},
                         {"kv_block_size", cfg.block_size},
                         {"kv_blocks", r.kv_blocks},
                         {"kv_bytes_per_block", per_block},
                         {"kv_budget_gb", budget_gb},
                         {"kv_budget_blocks", budget_blocks},
                         {"kv_budget_max_seqs", seqs_of(in + out)},
                         {"kv_budget_max_seqs_16k", seqs_of(16384)},
                         {"steps", r.stats.steps},
                         {"mixed_steps", r.stats.mixed_steps},
                         {"ops_per_step", r.stats.steps ? static_cast<double>(r.stats.ops) / r.stats.steps : 0.0},
                         {"launch_share", r.launch_share}};
        // HBM floor at batch 1: the weight bytes of a step over the copy rate
        // (read + write bytes per second, the rate HBM sustains in all).
        if (copy_gbs > 0) j["hbm_floor_batch1_tok_s"] = copy_gbs * 1e9 / static_cast<double>(wbytes);
        rows.push_back(j);
      }
  }
  if (auto path = args.get("json")) {
    std::ofstream f(*path);
    if (!f) fail(XQ_ERR_IO, "cannot write '{}'", *path);
    f << rows.dump(2) << "\n";
  }
  if (!did_not_fit.empty()) {
    std::fprintf(stderr, "xquant: error: %zu configuration(s) did not fit and have no numbers:\n", did_not_fit.size());
    for (const auto& d : did_not_fit) std::fprintf(stderr, "  %s\n", d.c_str());
    return 1;
  }
  return 0;
}

}  // namespace xquant::cli
