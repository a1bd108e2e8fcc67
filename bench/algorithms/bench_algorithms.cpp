// bench_algorithms.cpp: time and peak RSS of the calibration algorithms
// (gptq, awq, smoothquant; rtn as the data-free floor) on one large Linear,
// with the plugins called through the runtime's registry as the pipeline does.
//
//   bench_algorithms prepare --cache DIR --shape 4096x14336 [--tokens 262144] [--seed 1]
//   bench_algorithms run --cache DIR --algo gptq|gptq-static|gptq-actorder|awq|smoothquant|rtn
//                        [--threads 2] [--awq-tokens 1024]
//
// `prepare` generates calibration activations chunk by chunk (Gaussian,
// neighbour-correlated, every 37th channel a 20x outlier), accumulates
// X^T X with the host's ssyrk plus absmax / mean|x| / 512 strided sample
// rows / the first awq-tokens rows for AWQ's forward, and writes them with a
// random W (sd 0.02) to DIR as raw little-endian files (the Python bench of
// llm-compressor reads the same W and X^T X). `run` loads them into memory
// (as a host holding its statistics would), quantizes once, and prints one
// JSON line: seconds, peak RSS (VmHWM) and the RSS before the algorithm ran,
// so a separate process per algorithm gives each its own peak. AWQ's
// compared module is the Linear itself (y = x W^T via the host's sgemm) on
// awq-tokens rows: the forward is the host's cost, kept small here.
#include "core/kv.hpp"
#include "core/linalg.hpp"
#include "core/memory.hpp"
#include "core/runtime.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::strtol(line.c_str() + std::strlen(field), nullptr, 10);
  return -1;
}

template <class T>
void write_raw(const fs::path& p, const std::vector<T>& v) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}
template <class T>
std::vector<T> read_raw(const fs::path& p, size_t n) {
  std::vector<T> v(n);
  std::ifstream in(p, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  if (!in) throw std::runtime_error("cannot read " + p.string());
  return v;
}

// A fast approximately-normal generator (Irwin-Hall of 4 uniforms from
// xorshift64*, unit variance): billions of draws in seconds, where
// std::normal_distribution would take minutes. The tails are lighter than a
// Gaussian's; the outlier channels are explicit anyway.
struct FastNormal {
  uint64_t s;
  explicit FastNormal(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float operator()() {
    const uint64_t a = next(), b = next();
    const float u = static_cast<float>(a & 0xFFFFFFFFu) + static_cast<float>(a >> 32) +
                    static_cast<float>(b & 0xFFFFFFFFu) + static_cast<float>(b >> 32);
    return (u * (1.0f / 4294967296.0f) - 2.0f) * 1.7320508f;
  }
};

int prepare(const fs::path& dir, int64_t rows, int64_t cols, int64_t tokens, unsigned seed, int64_t awq_tokens) {
  fs::create_directories(dir);
  std::mt19937 rng(seed);
  FastNormal nd(seed);
  const int64_t chunk = 8192;
  std::vector<float> x(static_cast<size_t>(chunk * cols)), xtx(static_cast<size_t>(cols * cols), 0.0f);
  std::vector<float> absmax(static_cast<size_t>(cols), 0.0f), fwd;
  std::vector<double> sum_abs(static_cast<size_t>(cols), 0.0);
  std::vector<float> samples;
  const int64_t stride = std::max<int64_t>(1, tokens / 512);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t t0k = 0; t0k < tokens; t0k += chunk) {
    const int64_t n = std::min(chunk, tokens - t0k);
    for (int64_t t = 0; t < n; ++t) {
      float* row = x.data() + t * cols;
      for (int64_t j = 0; j < cols; ++j) row[j] = nd();
      for (int64_t j = cols - 1; j > 0; --j) row[j] += 0.5f * row[j - 1];
      for (int64_t j = 0; j < cols; j += 37) row[j] *= 20.0f;
      for (int64_t j = 0; j < cols; ++j) {
        absmax[j] = std::max(absmax[j], std::fabs(row[j]));
        sum_abs[j] += std::fabs(row[j]);
      }
      const int64_t tok = t0k + t;
      if (tok % stride == 0 && static_cast<int64_t>(samples.size()) < 512 * cols) samples.insert(samples.end(), row, row + cols);
      if (tok < awq_tokens) fwd.insert(fwd.end(), row, row + cols);
    }
    xquant::linalg::ssyrk(cols, n, 1.0f, x.data(), cols, 1.0f, xtx.data(), cols);
    std::fprintf(stderr, "\rprepare %s: %lld / %lld tokens", dir.c_str(), static_cast<long long>(t0k + n),
                 static_cast<long long>(tokens));
  }
  std::fprintf(stderr, "\n");
  std::vector<float> mean_abs(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) mean_abs[j] = static_cast<float>(sum_abs[j] / static_cast<double>(tokens));
  std::vector<float> w(static_cast<size_t>(rows * cols));
  std::normal_distribution<float> wd(0.0f, 0.02f);
  for (auto& v : w) v = wd(rng);
  write_raw(dir / "W.f32", w);
  write_raw(dir / "XtX.f32", xtx);
  write_raw(dir / "absmax.f32", absmax);
  write_raw(dir / "mean_abs.f32", mean_abs);
  write_raw(dir / "samples.f32", samples);
  write_raw(dir / "fwd_input.f32", fwd);
  nlohmann::json meta = {{"rows", rows},
                         {"cols", cols},
                         {"tokens", tokens},
                         {"n_samples", static_cast<int64_t>(samples.size()) / cols},
                         {"awq_tokens", static_cast<int64_t>(fwd.size()) / cols},
                         {"prepare_seconds",
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
  std::ofstream(dir / "meta.json") << meta.dump(2);
  return 0;
}

struct ForwardCtx {
  const float* input;
  int64_t T, rows, cols;
};

int run(const fs::path& dir, const std::string& algo, unsigned threads) {
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(dir / "meta.json"));
  const int64_t rows = meta["rows"], cols = meta["cols"], tokens = meta["tokens"], ns = meta["n_samples"],
                awq_t = meta["awq_tokens"];
  xquant::RuntimeOptions ro;
  ro.threads = threads;
  ro.log_level = XQ_LOG_INFO;  // gptq's info line has its time breakdown (stderr)
  xquant::Runtime rt(ro);
  const std::string plugin = algo.rfind("gptq", 0) == 0 ? "gptq" : algo;
  auto& p = rt.plugins().require(XQ_PLUGIN_ALGORITHM, plugin);

  // Load only what the algorithm asks for (as the host would collect).
  const uint32_t needs = p.algorithm().needs(p.state, nullptr);
  std::vector<float> w = read_raw<float>(dir / "W.f32", static_cast<size_t>(rows * cols));
  std::vector<float> xtx, absmax, mean_abs, samples, fwd;
  if (needs & XQ_NEED_HESSIAN) xtx = read_raw<float>(dir / "XtX.f32", static_cast<size_t>(cols * cols));
  if (needs & XQ_NEED_ABSMAX) absmax = read_raw<float>(dir / "absmax.f32", static_cast<size_t>(cols));
  if (needs & XQ_NEED_MEAN_ABS) mean_abs = read_raw<float>(dir / "mean_abs.f32", static_cast<size_t>(cols));
  if (needs & XQ_NEED_SAMPLES) samples = read_raw<float>(dir / "samples.f32", static_cast<size_t>(ns * cols));
  if (plugin == "awq") fwd = read_raw<float>(dir / "fwd_input.f32", static_cast<size_t>(awq_t * cols));
  std::vector<float> norm(static_cast<size_t>(cols), 1.0f);

  auto st = xquant::sdk::make_struct<xq_linear_stats>();
  st.cols = cols;
  st.tokens = static_cast<uint64_t>(tokens);
  st.hessian = xtx.empty() ? nullptr : xtx.data();
  st.absmax = absmax.empty() ? nullptr : absmax.data();
  st.mean_abs = mean_abs.empty() ? nullptr : mean_abs.data();
  st.samples = samples.empty() ? nullptr : samples.data();
  st.n_samples = samples.empty() ? 0 : ns;
  auto in = xquant::sdk::make_struct<xq_linear_input>();
  in.name = "bench.fc";
  in.weight = xquant::sdk::f32_view(w, {rows, cols});
  in.stats = &st;
  in.scheme = xquant::sdk::make_struct<xq_quant_scheme>();
  const bool w8 = plugin == "smoothquant";  // SmoothQuant's W8A8; the others W4 g128 (sym, as llm-compressor's W4A16)
  in.scheme.bits = w8 ? 8 : 4;
  in.scheme.symmetric = 1;
  in.scheme.strategy = w8 ? XQ_STRATEGY_CHANNEL : XQ_STRATEGY_GROUP;
  in.scheme.group_size = w8 ? cols : 128;
  in.scheme.scale_dtype = XQ_DTYPE_F32;
  in.scheme.act_scheme = w8 ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_NONE;
  in.scheme.act_bits = w8 ? 8 : 0;

  ForwardCtx fctx{fwd.data(), awq_t, rows, cols};
  auto f = xquant::sdk::make_struct<xq_group_forward>();
  f.ctx = &fctx;
  f.n_tokens = awq_t;
  f.in_features = cols;
  f.out_features = rows;
  f.input = fwd.data();
  f.run = [](void* ctx, const float* const* weights, float* y) -> xq_status {
    auto* c = static_cast<ForwardCtx*>(ctx);
    xquant::linalg::sgemm(false, true, c->T, c->rows, c->cols, 1.0f, c->input, c->cols, weights[0], c->cols, 0.0f, y,
                          c->rows);
    return XQ_OK;
  };

  auto g = xquant::sdk::make_struct<xq_layer_group>();
  g.name = "bench";
  g.n_linears = 1;
  g.linears = &in;
  g.prev_op = plugin == "awq" || plugin == "smoothquant" ? xquant::sdk::f32_view(norm, {cols}) : xquant::sdk::empty_view();
  g.role = plugin == "awq" ? "mlp_down" : "linear";
  g.forward = plugin == "awq" ? &f : nullptr;
  xq_kv params;
  if (algo == "gptq-static") params.set("static_groups", xquant::KvValue::boolean(true));
  if (algo == "gptq-actorder") params.set("act_order", xquant::KvValue::boolean(true));

  const long rss_before = status_kb("VmRSS:");
  auto o = xquant::sdk::make_struct<xq_linear_output>();
  o.quant = xquant::sdk::make_struct<xq_quant_tensor>();
  auto t0 = std::chrono::steady_clock::now();
  xq_status s = p.algorithm().quantize(p.state, &params, &g, &o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  xquant::QuantTensor q = xquant::adopt_quant_tensor(o.quant);
  if (s != XQ_OK) {
    std::fprintf(stderr, "%s failed\n", algo.c_str());
    return 1;
  }
  nlohmann::json r = {{"impl", "xquant"},
                      {"algo", algo},
                      {"shape", std::to_string(rows) + "x" + std::to_string(cols)},
                      {"threads", threads},
                      {"seconds", secs},
                      {"peak_rss_mb", status_kb("VmHWM:") / 1024.0},
                      {"rss_before_mb", rss_before / 1024.0},
                      {"rel_error", o.rel_error}};
  std::printf("%s\n", r.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s prepare|run --cache DIR ...\n", argv[0]);
    return 2;
  }
  const std::string cmd = argv[1];
  fs::path dir;
  std::string algo = "gptq", shape = "4096x4096";
  int64_t tokens = 128 * 2048, awq_tokens = 1024;
  unsigned threads = 2, seed = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--cache") dir = v;
    else if (a == "--algo") algo = v;
    else if (a == "--shape") shape = v;
    else if (a == "--tokens") tokens = std::stoll(v);
    else if (a == "--awq-tokens") awq_tokens = std::stoll(v);
    else if (a == "--threads") threads = static_cast<unsigned>(std::stoul(v));
    else if (a == "--seed") seed = static_cast<unsigned>(std::stoul(v));
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "--cache DIR is required\n");
    return 2;
  }
  try {
    if (cmd == "prepare") {
      const size_t x = shape.find('x');
      return prepare(dir, std::stoll(shape.substr(0, x)), std::stoll(shape.substr(x + 1)), tokens, seed, awq_tokens);
    }
    if (cmd == "run") return run(dir, algo, threads);
    std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_algorithms: %s\n", e.what());
    return 1;
  }
}
