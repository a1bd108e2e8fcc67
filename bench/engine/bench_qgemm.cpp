// bench_qgemm.cpp: the prefill GEMM alone (QMATMUL with M activation rows,
// default 256) of the `cpu` provider, per weight format, side by side in one
// run as ratios to F32 SGEMM on the same shape. On a shared, loaded machine
// only same-run ratios mean anything, so every format runs once per round,
// interleaved, and keeps its best round.
//
//   bench_qgemm [--threads 2] [--rounds 5] [--m 256] [--shapes smollm2,qwen25]
//
// Columns: best wall time, its GFLOP/s and ratio to F32; best process CPU
// time and its ratio (on a busy box run --threads 1 and read the CPU column).
//
// Shapes are the Linears of SmolLM2-135M (hidden 576, MLP 1536) and
// Qwen2.5-1.5B (hidden 1536, MLP 8960), [N, K] as the weight is stored.
// Weights are random (codes, scales, GGUF blocks with finite f16 scales): the
// speed of these kernels does not depend on the values.
//
// Rows, each against F32 (MATMUL on the F32 weight, OpenBLAS SGEMM):
//   deq+sgemm   DEQUANTIZE the whole W4A16 weight to F32, then MATMUL: the
//               bar a prefill path must keep up with;
//   w4a16 / w8a16 / w8a8 / w4a8 / q4_0 / q8_0 / q4_k / q6_k   QMATMUL as the engine calls it, with
//               the provider's default prefill path (XQUANT_CPU_PREFILL unset);
//   *-int8      the same weight prepared with XQUANT_CPU_PREFILL=int8;
//   *-sgemm     and with XQUANT_CPU_PREFILL=sgemm (dequantized pieces + SGEMM).
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/tensor.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace xquant;
using Clock = std::chrono::steady_clock;

namespace {

std::mt19937 rng(20261201);

struct Provider {
  Runtime rt;
  LoadedPlugin* p = nullptr;
  explicit Provider(unsigned threads) : rt(RuntimeOptions{XQ_LOG_WARN, threads, {}, true}) {
    p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu");
    if (!p) throw std::runtime_error("the cpu provider did not load");
  }
  const xq_kernel_vtable& vt() const { return p->kernel(); }
  void run(const xq_op& op) const {
    if (vt().run_op(p->state, &op) != XQ_OK) throw std::runtime_error("run_op failed");
  }
};

std::vector<float> random_floats(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A canonical quantized tensor with random codes and positive scales.
struct Canon {
  std::vector<int8_t> codes;
  std::vector<float> scales;
  xq_quant_tensor t{};
};
Canon make_canon(int64_t rows, int64_t cols, uint32_t bits, int64_t gs, bool w8a8) {
  Canon c;
  const int64_t g = gs ? gs : cols, ng = (cols + g - 1) / g;
  std::uniform_int_distribution<int> code(-(1 << (bits - 1)), (1 << (bits - 1)) - 1);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  c.scales = random_floats(static_cast<size_t>(rows * ng), 0.001f, 0.02f);
  xq_quant_tensor& t = c.t;
  t.struct_size = sizeof(t);
  t.bits = bits;
  t.symmetric = 1;
  t.strategy = gs ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  t.rows = rows;
  t.cols = cols;
  t.group_size = g;
  t.n_groups = ng;
  t.codes = c.codes.data();
  t.scales = c.scales.data();
  t.scale_dtype = XQ_DTYPE_F32;
  if (w8a8) t.act_scheme = XQ_ACT_DYNAMIC_TOKEN, t.act_bits = 8;
  return c;
}

void put_f16(uint8_t* p, float v) {
  const uint16_t h = sdk::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Random GGUF blocks: ggml type 2 (Q4_0, 18 bytes per 32) or 12 (Q4_K, 144
// bytes per 256), random code bytes, small finite f16 scales.
std::vector<uint8_t> random_blocks(uint32_t type, int64_t rows, int64_t cols) {
  // ggml block geometry: Q4_0, Q8_0 (32 columns), Q4_K, Q6_K (256); the f16
  // scale at byte 0 (Q6_K: 208), Q4_K's min at 2.
  const int64_t bs = type == 2 || type == 8 ? 32 : 256;
  const int64_t ts = type == 2 ? 18 : type == 8 ? 34 : type == 12 ? 144 : 210;
  std::vector<uint8_t> v(static_cast<size_t>(rows * cols / bs * ts));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : v) b = static_cast<uint8_t>(byte(rng));
  for (size_t o = 0; o < v.size(); o += static_cast<size_t>(ts)) {
    put_f16(&v[o + (type == 14 ? 208 : 0)], 0.01f);
    if (type == 12) put_f16(&v[o + 2], 0.005f);
  }
  return v;
}

xq_device_tensor f32(int64_t r, int64_t c, const float* data) { return sdk::device_tensor(XQ_DTYPE_F32, {r, c}, data); }

struct Case {
  std::string label;
  std::function<void()> run;
  double best = 1e30, best_cpu = 1e30;
};

// CPU seconds this process has used: on a loaded box a 1-thread run's CPU
// time leaves out the time other processes held the core (the pool's spin
// waits count, so it means little with more threads).
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct Shape {
  std::string model, name;
  int64_t n, k;
};

void set_prefill(const char* mode) {
  if (mode) setenv("XQUANT_CPU_PREFILL", mode, 1);
  else unsetenv("XQUANT_CPU_PREFILL");
}

}  // namespace

int main(int argc, char** argv) try {
  unsigned threads = 2;
  int rounds = 5;
  int64_t M = 256;
  std::string shapes = "smollm2,qwen25";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " wants a value");
      return argv[++i];
    };
    if (a == "--threads") threads = static_cast<unsigned>(std::stoul(next()));
    else if (a == "--rounds") rounds = std::stoi(next());
    else if (a == "--m") M = std::stoll(next());
    else if (a == "--shapes") shapes = next();
    else throw std::runtime_error("unknown argument " + a);
  }
  Provider pv(threads);
  const std::vector<Shape> all = {
      {"smollm2", "gate/up", 1536, 576}, {"smollm2", "down", 576, 1536}, {"smollm2", "q/o", 576, 576},
      {"qwen25", "gate/up", 8960, 1536}, {"qwen25", "down", 1536, 8960}, {"qwen25", "q/o", 1536, 1536}};
  std::FILE* la = std::fopen("/proc/loadavg", "r");
  char load[64] = "?";
  if (la && std::fgets(load, sizeof load, la)) load[std::strcspn(load, "\n")] = 0;
  if (la) std::fclose(la);
  std::printf("bench_qgemm: M=%lld threads=%u rounds=%d load average before: %s\n", static_cast<long long>(M), threads,
              rounds, load);
  for (const Shape& s : all) {
    if (shapes.find(s.model) == std::string::npos) continue;
    const int64_t N = s.n, K = s.k;
    auto x = random_floats(static_cast<size_t>(M * K), -1.0f, 1.0f);
    std::vector<float> y(static_cast<size_t>(M * N)), wf = random_floats(static_cast<size_t>(N * K), -0.05f, 0.05f);
    std::vector<float> deq(static_cast<size_t>(N * K));
    std::vector<Case> cases;
    std::vector<xq_qweight*> held;
    std::vector<Canon> canons;
    canons.reserve(8);
    std::vector<std::vector<uint8_t>> blocks;
    blocks.reserve(4);
    auto matmul = [&](const float* w, int64_t n) {
      xq_op op = sdk::make_op(XQ_OP_MATMUL);
      op.src[0] = f32(M, K, x.data());
      op.src[1] = f32(n, K, w);
      op.dst = f32(M, n, y.data());
      pv.run(op);
    };
    auto qmatmul = [&](xq_qweight* w) {
      xq_op op = sdk::make_op(XQ_OP_QMATMUL);
      op.qweight = w;
      op.src[0] = f32(M, K, x.data());
      op.dst = f32(M, N, y.data());
      pv.run(op);
    };
    auto prepare = [&](const Canon& c, const char* prefill) {
      set_prefill(prefill);
      xq_qweight* w = nullptr;
      if (pv.vt().qweight_prepare(pv.p->state, &c.t, &w) != XQ_OK) throw std::runtime_error("qweight_prepare failed");
      set_prefill(nullptr);
      held.push_back(w);
      return w;
    };
    auto prepare_blocks = [&](uint32_t type, const char* prefill) {
      blocks.push_back(random_blocks(type, N, K));
      xq_block_tensor b{};
      b.struct_size = sizeof(b);
      b.family = XQ_BLOCKS_GGML;
      b.type = type;
      b.rows = N;
      b.cols = K;
      b.row_bytes = blocks.back().size() / static_cast<size_t>(N);
      b.data = blocks.back().data();
      set_prefill(prefill);
      xq_qweight* w = nullptr;
      if (xq_status st = pv.vt().qweight_prepare_blocks(pv.p->state, &b, 1, &w); st != XQ_OK)
        throw std::runtime_error("qweight_prepare_blocks failed for ggml type " + std::to_string(type) + ": status " +
                                 std::to_string(st));
      set_prefill(nullptr);
      held.push_back(w);
      return w;
    };
    canons.push_back(make_canon(N, K, 4, 128, false));
    xq_qweight* w4 = prepare(canons.back(), nullptr);
    xq_qweight* w4i = prepare(canons.back(), "int8");
    xq_qweight* w4s = prepare(canons.back(), "sgemm");
    canons.push_back(make_canon(N, K, 8, 0, false));
    xq_qweight* w8 = prepare(canons.back(), nullptr);
    xq_qweight* w8i = prepare(canons.back(), "int8");
    xq_qweight* w8s = prepare(canons.back(), "sgemm");
    canons.push_back(make_canon(N, K, 8, 0, true));
    xq_qweight* w8a8 = prepare(canons.back(), nullptr);
    canons.push_back(make_canon(N, K, 4, 128, true));
    xq_qweight* w4a8 = prepare(canons.back(), nullptr);
    xq_qweight* q40 = prepare_blocks(2, nullptr);
    xq_qweight* q80 = prepare_blocks(8, nullptr);
    xq_qweight* q40i = prepare_blocks(2, "int8");
    xq_qweight* q40s = prepare_blocks(2, "sgemm");
    xq_qweight* q80i = prepare_blocks(8, "int8");
    // Q4_K needs K a multiple of 256 (SmolLM2's 576 is not; its Q4_K_M
    // files hold those tensors in other types).
    const bool k_quants = K % 256 == 0;
    xq_qweight* q4k = k_quants ? prepare_blocks(12, nullptr) : nullptr;
    xq_qweight* q4ki = k_quants ? prepare_blocks(12, "int8") : nullptr;
    xq_qweight* q4ks = k_quants ? prepare_blocks(12, "sgemm") : nullptr;
    xq_qweight* q6k = k_quants ? prepare_blocks(14, nullptr) : nullptr;
    xq_qweight* q6ki = k_quants ? prepare_blocks(14, "int8") : nullptr;
    xq_qweight* q6ks = k_quants ? prepare_blocks(14, "sgemm") : nullptr;
    cases.push_back({"f32 sgemm", [&] { matmul(wf.data(), N); }});
    cases.push_back({"deq+sgemm", [&] {
                       xq_op op = sdk::make_op(XQ_OP_DEQUANTIZE);
                       op.qweight = w4;
                       op.dst = f32(N, K, deq.data());
                       pv.run(op);
                       matmul(deq.data(), N);
                     }});
    cases.push_back({"w4a16 g128", [&] { qmatmul(w4); }});
    cases.push_back({"w4a16-int8", [&] { qmatmul(w4i); }});
    cases.push_back({"w4a16-sgemm", [&] { qmatmul(w4s); }});
    cases.push_back({"w8a16", [&] { qmatmul(w8); }});
    cases.push_back({"w8a16-int8", [&] { qmatmul(w8i); }});
    cases.push_back({"w8a16-sgemm", [&] { qmatmul(w8s); }});
    cases.push_back({"w8a8", [&] { qmatmul(w8a8); }});
    cases.push_back({"w4a8 g128", [&] { qmatmul(w4a8); }});
    cases.push_back({"q4_0", [&] { qmatmul(q40); }});
    cases.push_back({"q8_0", [&] { qmatmul(q80); }});
    cases.push_back({"q4_0-int8", [&] { qmatmul(q40i); }});
    cases.push_back({"q4_0-sgemm", [&] { qmatmul(q40s); }});
    cases.push_back({"q8_0-int8", [&] { qmatmul(q80i); }});
    if (k_quants) {
      cases.push_back({"q4_k", [&] { qmatmul(q4k); }});
      cases.push_back({"q4_k-int8", [&] { qmatmul(q4ki); }});
      cases.push_back({"q4_k-sgemm", [&] { qmatmul(q4ks); }});
      cases.push_back({"q6_k", [&] { qmatmul(q6k); }});
      cases.push_back({"q6_k-int8", [&] { qmatmul(q6ki); }});
      cases.push_back({"q6_k-sgemm", [&] { qmatmul(q6ks); }});
    }
    for (auto& c : cases) c.run();  // warm-up: scratch buffers, pages
    for (int r = 0; r < rounds; ++r)
      for (auto& c : cases) {
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        c.run();
        c.best_cpu = std::min(c.best_cpu, cpu_seconds() - c0);
        c.best = std::min(c.best, std::chrono::duration<double>(Clock::now() - t0).count());
      }
    const double flop = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
    std::printf("\n%s %s [N=%lld, K=%lld]\n  %-12s %9s %8s %8s %9s %8s\n", s.model.c_str(), s.name.c_str(),
                static_cast<long long>(N), static_cast<long long>(K), "path", "ms", "GFLOP/s", "x f32", "cpu ms",
                "x f32");
    for (const auto& c : cases)
      std::printf("  %-12s %9.3f %8.1f %8.2f %9.3f %8.2f\n", c.label.c_str(), c.best * 1e3, flop / c.best * 1e-9,
                  cases[0].best / c.best, c.best_cpu * 1e3, cases[0].best_cpu / c.best_cpu);
    for (xq_qweight* w : held) pv.vt().qweight_release(pv.p->state, w);
  }
  la = std::fopen("/proc/loadavg", "r");
  if (la && std::fgets(load, sizeof load, la)) load[std::strcspn(load, "\n")] = 0;
  if (la) std::fclose(la);
  std::printf("\nload average after: %s\n", load);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_qgemm: %s\n", e.what());
  return 1;
}
