// bench_rtn.cpp: RTN pipeline throughput and memory on a synthetic
// multi-GB checkpoint that this program writes itself.
//
//   bench_rtn [--gb 2] [--dir /tmp] [--threads 1,2] [--bits 4] [--group-size 128]
//
// Writes a safetensors checkpoint of Llama-shaped F32 Linears (4096x4096
// and 4096x11008 mixes) plus a config.json, then runs the real pipeline
// (safetensors loader -> rtn -> compressed-tensors writer) at each thread
// count and reports: GB of F32 input per second (total and per thread), and
// peak anonymous RSS (heap; the mmap'd input pages are file-backed and
// reclaimable, so they are reported separately as peak total RSS). Also
// measures memcpy bandwidth in the same run as a reference ceiling.
#include "core/runtime.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

long read_status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::strtol(line.c_str() + std::strlen(field), nullptr, 10);
  return -1;
}

// Samples RssAnon every 5 ms and keeps the maximum.
class AnonPeak {
 public:
  AnonPeak() : thread_([this] {
      while (!stop_) {
        long v = read_status_kb("RssAnon:");
        long cur = peak_.load();
        while (v > cur && !peak_.compare_exchange_weak(cur, v)) {}
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }) {}
  ~AnonPeak() {
    stop_ = true;
    thread_.join();
  }
  long peak_kb() const { return peak_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> peak_{0};
  std::thread thread_;
};

void write_checkpoint(const fs::path& dir, double gb, uint64_t& total_bytes, uint64_t& largest_tensor) {
  fs::create_directories(dir);
  struct T {
    std::string name;
    int64_t rows, cols;
  };
  std::vector<T> tensors;
  const int64_t hidden = 4096, ffn = 11008;
  uint64_t bytes = 0;
  for (int layer = 0; bytes < gb * 1e9; ++layer) {
    std::string p = "model.layers." + std::to_string(layer);
    for (auto [n, r, c] : std::vector<std::tuple<const char*, int64_t, int64_t>>{
             {".self_attn.q_proj.weight", hidden, hidden}, {".self_attn.o_proj.weight", hidden, hidden},
             {".mlp.up_proj.weight", ffn, hidden}, {".mlp.down_proj.weight", hidden, ffn}}) {
      tensors.push_back({p + n, r, c});
      bytes += uint64_t(r * c * 4);
    }
  }
  nlohmann::json header;
  uint64_t off = 0;
  largest_tensor = 0;
  for (const auto& t : tensors) {
    uint64_t n = uint64_t(t.rows * t.cols * 4);
    header[t.name] = {{"dtype", "F32"}, {"shape", {t.rows, t.cols}}, {"data_offsets", {off, off + n}}};
    off += n;
    largest_tensor = std::max(largest_tensor, n);
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  uint64_t hl = h.size();
  out.write(reinterpret_cast<const char*>(&hl), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> buf(1 << 20);
  for (auto& x : buf) x = nd(rng);
  for (const auto& t : tensors) {
    uint64_t left = uint64_t(t.rows * t.cols);
    size_t shift = rng() % 1024;  // not the same bytes in every tensor
    while (left) {
      uint64_t n = std::min<uint64_t>(left, buf.size() - shift);
      out.write(reinterpret_cast<const char*>(buf.data() + shift), static_cast<std::streamsize>(n * 4));
      left -= n;
      shift = 0;
    }
  }
  std::ofstream cfg(dir / "config.json");
  cfg << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
  "intermediate_size": 11008, "num_hidden_layers": )"
      << tensors.size() / 4 << R"(, "num_attention_heads": 32, "num_key_value_heads": 32,
  "vocab_size": 32000, "rms_norm_eps": 1e-05, "torch_dtype": "float32"})";
  total_bytes = off;
}

double memcpy_gbps() {
  std::vector<char> a(512 << 20, 1), b(512 << 20);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) std::memcpy(b.data(), a.data(), a.size());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 4 * a.size() / s / 1e9;  // read + write
}

}  // namespace

int main(int argc, char** argv) {
  double gb = 2.0;
  fs::path base = fs::temp_directory_path();
  std::vector<unsigned> threads = {1, 2};
  int bits = 4;
  long group = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--gb") gb = std::stod(v);
    else if (a == "--dir") base = v;
    else if (a == "--bits") bits = std::stoi(v);
    else if (a == "--group-size") group = std::stol(v);
    else if (a == "--threads") {
      threads.clear();
      std::stringstream ss(v);
      std::string t;
      while (std::getline(ss, t, ',')) threads.push_back(static_cast<unsigned>(std::stoul(t)));
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  fs::path dir = base / "xquant-bench-rtn";
  fs::remove_all(dir);
  uint64_t total = 0, largest = 0;
  auto tw = std::chrono::steady_clock::now();
  write_checkpoint(dir / "model", gb, total, largest);
  std::printf("synthetic checkpoint: %.2f GB F32 (largest tensor %.1f MB), written in %.1f s\n", total / 1e9,
              largest / 1e6, std::chrono::duration<double>(std::chrono::steady_clock::now() - tw).count());
  double bw = memcpy_gbps();
  std::printf("memcpy bandwidth (read+write, 1 thread): %.1f GB/s\n\n", bw);
  std::printf("%-8s %-10s %-12s %-14s %-16s %-16s %s\n", "threads", "seconds", "GB/s", "GB/s/thread",
              "peak anon MB", "peak total MB", "anon / largest tensor");
  for (unsigned t : threads) {
    xquant::RuntimeOptions o;
    o.threads = t;
    o.log_level = XQ_LOG_WARN;
    xquant::Runtime rt(o);
    std::string yaml = "model: {path: " + (dir / "model").string() + "}\nquantize: [{algorithm: rtn, weights: {bits: " +
                       std::to_string(bits) + ", group_size: " + std::to_string(group) + "}}]\noutput: {path: " +
                       (dir / ("out" + std::to_string(t))).string() + "}\n";
    xquant::Pipeline p = xquant::parse_pipeline_text(yaml, "<bench>", dir);
    long before = read_status_kb("RssAnon:");
    xquant::RunReport r;
    long peak = 0;
    {
      AnonPeak sampler;
      r = xquant::run_pipeline(rt, p);
      peak = sampler.peak_kb();
    }
    double gbps = r.quantized_input_bytes / r.seconds / 1e9;
    std::printf("%-8u %-10.2f %-12.3f %-14.3f %-16.1f %-16.1f %.2f\n", t, r.seconds, gbps, gbps / t,
                (peak - before) / 1024.0, read_status_kb("VmHWM:") / 1024.0,
                (peak - before) * 1024.0 / static_cast<double>(largest));
    fs::remove_all(dir / ("out" + std::to_string(t)));
  }
  fs::remove_all(dir);
  return 0;
}
