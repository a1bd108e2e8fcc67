// bench_decode_formats.cpp: decode speed of one model in several weight
// formats, side by side in one run, as ratios to the first format, each
// beside its memory-bandwidth floor. On a shared, loaded machine only
// same-run ratios mean anything, so the formats are measured interleaved
// (round r runs every format once; each keeps its best round) with the same
// thread pool, prompt and token count.
//
//   bench_decode_formats --model LABEL=PATH[,gemv=q8][,isa=NAME][,rows=N][,prefill=int8][,blockrows=off][,rows8=MODE][,hugepages=off][,dequant] ...
//       [--threads 1,2] [--decode 32] [--prefill 0] [--rounds 3] [--json]
//
// gemv=q8 / isa=NAME / rows=N / prefill=int8 / blockrows=off / rows8=MODE / hugepages=off load that entry with
// XQUANT_CPU_GEMV / XQUANT_CPU_ISA / XQUANT_CPU_GEMV_ROWS / XQUANT_CPU_PREFILL / XQUANT_CPU_BLOCK_ROWS /
// XQUANT_CPU_GEMV_ROWS8 / XQUANT_CPU_HUGE_PAGES set (the cpu provider reads them when
// it prepares a weight), so the same checkpoint can be compared across decode
// and prefill paths; `dequant` loads it with every Linear dequantized to F32
// (ModelOptions::dequantize_all). So one run compares a GGUF file executed
// natively from its blocks, the same file dequantized at load, and our F32:
//   --model f32=model-f32.gguf --model native=model-q4_k_m.gguf
//   --model deq=model-q4_k_m.gguf,dequant --model native-int8-prefill=model-q4_k_m.gguf,rows=100000
// --prefill N adds prefill tokens/s of an N-token prompt (rows=N picks the
// integer kernels or dequantize + SGEMM for it).
//
// Memory: "load MB" is the growth of the process's resident set while the
// entry is opened and warmed up (weights, mapped file pages touched, KV
// cache), and the process's peak RSS (VmHWM) is printed at the end; entries
// share one process, so for a single format's peak RSS run it alone.
//
// Weight bytes per token: what the engine reports, with each quantized
// Linear replaced by the bytes of the cpu provider's packed weight (codes +
// scales + zero points, qweight.cpp), the provider's own figure (the
// engine's, engine/quantized_bytes.cpp, counts act-order groups as equal); GGUF blocks run natively count their stored bytes. Floor = bytes per token / read bandwidth (a parallel read
// stream, bandwidth.hpp); "% floor" = measured tok/s / floor tok/s.
#include "bandwidth.hpp"
#include "core/runtime.hpp"
#include "cpu.hpp"
#include "engine/model.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using namespace xquant;
using Clock = std::chrono::steady_clock;

namespace {

// The per-entry options that set one cpu provider variable while the entry's
// model is opened (the provider reads them when it prepares a weight).
struct EnvOption {
  const char *key, *variable;
};
constexpr EnvOption kEnvOptions[] = {{"gemv", "XQUANT_CPU_GEMV"},           {"isa", "XQUANT_CPU_ISA"},
                                     {"rows", "XQUANT_CPU_GEMV_ROWS"},      {"prefill", "XQUANT_CPU_PREFILL"},
                                     {"blockrows", "XQUANT_CPU_BLOCK_ROWS"}, {"rows8", "XQUANT_CPU_GEMV_ROWS8"},
                                     {"hugepages", "XQUANT_CPU_HUGE_PAGES"}};

struct Entry {
  std::string label, path;
  std::vector<std::pair<const char*, std::string>> env;  // variable, value
  bool dequant = false;
  std::unique_ptr<Model> model;
  uint64_t bytes_per_token = 0;
  double best_tps = 0, best_prefill_tps = 0;
  double load_rss_mb = 0;
};

// A /proc/self/status field in kB ("VmRSS", "VmHWM"); 0 when unreadable.
double proc_status_kb(const char* field) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  const size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') kb = std::atof(line + n + 1);
  std::fclose(f);
  return kb;
}

Entry parse_entry(const std::string& spec) {
  Entry e;
  auto eq = spec.find('=');
  if (eq == std::string::npos) throw std::runtime_error("--model wants LABEL=PATH[,gemv=q8][,isa=NAME], got '" + spec + "'");
  e.label = spec.substr(0, eq);
  std::stringstream ss(spec.substr(eq + 1));
  std::string item;
  std::getline(ss, e.path, ',');
  while (std::getline(ss, item, ',')) {
    if (item == "dequant") {
      e.dequant = true;
      continue;
    }
    const auto q = item.find('=');
    const std::string key = item.substr(0, q);
    const EnvOption* o = std::find_if(std::begin(kEnvOptions), std::end(kEnvOptions),
                                      [&](const EnvOption& x) { return key == x.key; });
    if (q == std::string::npos || o == std::end(kEnvOptions))
      throw std::runtime_error("--model " + spec + ": unknown option '" + item + "'");
    e.env.emplace_back(o->variable, item.substr(q + 1));
  }
  return e;
}

// Opens the entry's model with its provider settings in the environment.
void open_entry(Runtime& rt, Entry& e) {
  for (const auto& [variable, value] : e.env) setenv(variable, value.c_str(), 1);
  ModelOptions mo;
  mo.dequantize_all = e.dequant;
  e.model = Model::open(rt, e.path, mo);
  for (const auto& [variable, value] : e.env) unsetenv(variable);
  uint64_t b = e.model->weight_bytes_per_token();
  auto packed = [&](const LinearWeights& lw) {
    if (lw.q && lw.layout.rfind("cpu-", 0) == 0) b = b - lw.bytes + lw.q->bytes();
  };
  for (int i = 0; i < static_cast<int>(e.model->arch().layers.size()); ++i) {
    const LayerWeights& l = e.model->layer(i);
    for (const auto& lw : l.linears) packed(lw);
    packed(l.qkv);  // q|k|v and gate|up stacked on the cpu provider
    packed(l.gate_up);
  }
  e.bytes_per_token = b;
}

// Tokens/s of `decode` single-token steps after a 16-token prompt.
double decode_tps(Model& m, int64_t decode) {
  const Architecture& a = m.arch();
  std::vector<int32_t> ids(17);
  for (int i = 0; i < 17; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % a.vocab);
  KvCache cache(a, 16 + decode + 1);
  m.forward({SequenceInput{&cache, ids.data(), 16, false}});
  int32_t tok = ids[16];
  auto t0 = Clock::now();
  for (int64_t i = 0; i < decode; ++i) {
    auto lg = m.forward({SequenceInput{&cache, &tok, 1, false}});
    tok = static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin());
  }
  return static_cast<double>(decode) / bench::seconds_between(t0, Clock::now());
}

// Tokens/s of one `n`-token prompt (no logits but the last row's).
double prefill_tps(Model& m, int64_t n) {
  const Architecture& a = m.arch();
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % a.vocab);
  KvCache cache(a, n);
  auto t0 = Clock::now();
  m.forward({SequenceInput{&cache, ids.data(), n, false}});
  return static_cast<double>(n) / bench::seconds_between(t0, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> specs;
  std::vector<unsigned> threads = {1, 2};
  int64_t decode = 32, prefill = 0;
  int rounds = 3;
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
    if (a == "--model") specs.push_back(next());
    else if (a == "--decode") decode = std::stoll(next());
    else if (a == "--prefill") prefill = std::stoll(next());
    else if (a == "--rounds") rounds = std::stoi(next());
    else if (a == "--json") json = true;
    else if (a == "--threads") {
      threads.clear();
      std::stringstream ss(next());
      std::string t;
      while (std::getline(ss, t, ',')) threads.push_back(static_cast<unsigned>(std::stoul(t)));
    } else {
      std::fprintf(stderr,
                   "usage: bench_decode_formats --model LABEL=PATH[,gemv=q8][,isa=NAME][,rows=N][,prefill=int8][,blockrows=off][,rows8=MODE][,hugepages=off][,dequant] ... "
                   "[--threads 1,2] [--decode N] [--prefill N] [--rounds R] [--json]\n");
      return 2;
    }
  }
  if (specs.empty()) {
    std::fprintf(stderr, "bench_decode_formats: give at least one --model LABEL=PATH (the first is the reference)\n");
    return 2;
  }
  nlohmann::json out = nlohmann::json::array();
  FILE* text = json ? stderr : stdout;
  try {
    for (unsigned nt : threads) {
      RuntimeOptions ro;
      ro.threads = nt;
      ro.log_level = XQ_LOG_ERROR;
      Runtime rt(ro);
      std::vector<Entry> entries;
      for (const auto& s : specs) entries.push_back(parse_entry(s));
      for (auto& e : entries) {
        const double before = proc_status_kb("VmRSS");
        open_entry(rt, e);
        decode_tps(*e.model, 4);  // warm-up
        e.load_rss_mb = (proc_status_kb("VmRSS") - before) / 1024.0;
      }
      for (int r = 0; r < rounds; ++r)
        for (auto& e : entries) {
          e.best_tps = std::max(e.best_tps, decode_tps(*e.model, decode));
          if (prefill > 0) e.best_prefill_tps = std::max(e.best_prefill_tps, prefill_tps(*e.model, prefill));
        }
      const double rbw = bench::read_bandwidth(rt.pool(), size_t{512} << 20, 5);
      std::fprintf(text, "threads %u (read bandwidth %.2f GB/s; best of %d interleaved rounds of %lld tokens)\n", nt,
                   rbw / 1e9, rounds, static_cast<long long>(decode));
      std::fprintf(text, "  %-14s %10s %8s %10s %9s %10s %7s %11s %8s %8s\n", "format", "MB/token", "x bytes", "decode t/s",
                   "x first", "floor t/s", "%floor", "prefill t/s", "x first", "load MB");
      for (auto& e : entries) {
        const double floor_tps = rbw / static_cast<double>(e.bytes_per_token);
        const double pre_ratio = entries[0].best_prefill_tps > 0 ? e.best_prefill_tps / entries[0].best_prefill_tps : 0;
        std::fprintf(text, "  %-14s %10.1f %8.3f %10.2f %9.2f %10.2f %6.0f%% %11.1f %8.2f %8.0f\n", e.label.c_str(),
                     e.bytes_per_token / 1e6,
                     static_cast<double>(e.bytes_per_token) / static_cast<double>(entries[0].bytes_per_token),
                     e.best_tps, e.best_tps / entries[0].best_tps, floor_tps, 100.0 * e.best_tps / floor_tps,
                     e.best_prefill_tps, pre_ratio, e.load_rss_mb);
        out.push_back({{"threads", nt},
                       {"format", e.label},
                       {"path", e.path},
                       {"weight_bytes_per_token", e.bytes_per_token},
                       {"decode_tokens_per_s", e.best_tps},
                       {"ratio_to_first", e.best_tps / entries[0].best_tps},
                       {"read_bandwidth_gb_s", rbw / 1e9},
                       {"read_floor_tokens_per_s", floor_tps},
                       {"decode_vs_read_floor", e.best_tps / floor_tps},
                       {"prefill_tokens", prefill},
                       {"prefill_tokens_per_s", e.best_prefill_tps},
                       {"load_rss_mb", e.load_rss_mb}});
      }
      std::fflush(text);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode_formats: %s\n", e.what());
    return 1;
  }
  std::fprintf(json ? stderr : stdout, "peak RSS of this process (VmHWM): %.0f MB\n", proc_status_kb("VmHWM") / 1024.0);
  if (json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
