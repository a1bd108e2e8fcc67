// bench_gemv_rows.cpp: where one-thread decode time goes in the 4-bit GEMVs,
// without perf: each decode GEMV kernel alone, called directly on one thread
// over weights far larger than the caches (random codes of real model
// shapes), against a plain read loop over the same bytes in the same run.
// "% read" = the kernel's weight bytes per second / the read loop's: 100%
// means the kernel runs at the bandwidth floor, below it the kernel's
// instructions are the limit. Kernels and the read loop are measured in
// interleaved rounds (best of each), so load changes hit them alike; only
// same-run ratios mean anything on a shared machine.
//
//   bench_gemv_rows [--mb 256] [--rounds 5] [--shapes KxN,...]
//     INT4 g128 in the cpu provider's layout (qgemv_rows.hpp's one-row
//     kernels, qgemv_rows8.hpp's eight-row ones on the stored rows and on
//     the interleaved copy), INT8 per-channel (the one-row kernels and AVX-512's
//     eight-row one on its copy, weight-only and W8A8), GGUF Q4_0 and Q8_0 (Q8_0 also
//     eight rows at a time on its copy)
//     (gguf_gemv_rows.hpp), every ISA the CPU has; GGUF Q4_1, Q5_0 and Q5_1
//     one row at a time and on their interleaved copies (AVX2, AVX-512);
//     GGUF Q4_K and Q6_K (K a
//     multiple of 256) one row at a time (AVX2) and on their interleaved
//     copies (AVX2 and AVX-512);
//   bench_gemv_rows --read-bandwidth T [--mb 512]
//     prints {"threads": T, "read_bytes_per_s": ...}: the parallel read
//     stream of bandwidth.hpp on T threads (bench/engine/llamacpp_compare.py
//     divides the weight bytes per token by it: the decode floor).
#include "bandwidth.hpp"
#include "core/thread_pool.hpp"
#include "gguf_blocks.hpp"
#include "gguf_gemv_rows.hpp"
#include "qgemv_rows.hpp"
#include "qgemv_rows8.hpp"
#include "qkernels.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
using cpu::Isa;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Shape {
  int64_t K, N;  // columns (input features), rows (output features)
};

std::vector<Shape> parse_shapes(const std::string& s) {
  std::vector<Shape> out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t comma = std::min(s.find(',', i), s.size());
    const std::string one = s.substr(i, comma - i);
    const size_t x = one.find('x');
    if (x == std::string::npos) throw std::runtime_error("--shapes: '" + one + "' is not KxN");
    out.push_back({std::stoll(one.substr(0, x)), std::stoll(one.substr(x + 1))});
    i = comma + 1;
  }
  return out;
}

// One timed thing: a pass over every copy of the weight.
struct Entry {
  std::string label;
  std::function<void()> pass;
  double best = 1e30;
};

// Keeps the read loop's sums alive.
volatile uint64_t g_sink = 0;

// Plain one-thread read of the same buffers: four uint64 sums per step.
uint64_t read_pass(const std::vector<std::vector<uint8_t>>& bufs) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (const auto& b : bufs) {
    const uint64_t* p = reinterpret_cast<const uint64_t*>(b.data());
    const size_t n = b.size() / 8;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
    for (; i < n; ++i) s0 += p[i];
  }
  return s0 + s1 + s2 + s3;
}

void run_entries(const char* what, std::vector<Entry>& entries, double bytes, int rounds) {
  for (int r = 0; r < rounds; ++r)
    for (auto& e : entries) {
      const double t0 = now();
      e.pass();
      e.best = std::min(e.best, now() - t0);
    }
  std::printf("%s: %.1f MB of weights per pass\n", what, bytes / 1e6);
  std::printf("  %-22s %9s %8s %12s\n", "kernel", "GB/s", "% read", "x 1st kernel");
  for (auto& e : entries)  // entries[0] is the read loop, entries[1] the first kernel
    std::printf("  %-22s %9.2f %7.0f%% %12.2f\n", e.label.c_str(), bytes / e.best / 1e9, 100.0 * entries[0].best / e.best,
                entries.size() > 1 ? entries[1].best / e.best : 1.0);
}

// INT4 g128 or INT8 per-channel rows in the cpu provider's layout
// (qkernels.hpp; what RTN W4A16 g128 and W8A16 produce): copies of an N x K
// weight until `mb` is filled. INT4 runs the one-row and both eight-row
// kernels, INT8 the one-row kernels and AVX-512's eight-row one on its copy,
// then W8A8's decode (one activation scale per token) both ways.
void bench_int(const Shape& s, bool int4, int64_t mb, int rounds, std::mt19937& rng) {
  const int64_t nblk = (s.K + 31) / 32, group_blocks = int4 ? 4 : nblk, G = (nblk + group_blocks - 1) / group_blocks;
  const int64_t row_bytes = nblk * (int4 ? 16 : 32);
  std::vector<int64_t> bb(static_cast<size_t>(G + 1));
  for (int64_t g = 0; g <= G; ++g) bb[static_cast<size_t>(g)] = std::min(nblk, g * group_blocks);
  const double one = static_cast<double>(s.N * row_bytes + s.N * G * 4);
  const int64_t copies = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(mb << 20) / one));
  std::vector<std::vector<uint8_t>> codes(static_cast<size_t>(copies)), scales(static_cast<size_t>(copies));
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t c = 0; c < copies; ++c) {
    codes[c].resize(static_cast<size_t>(s.N * row_bytes));
    for (auto& b : codes[c]) b = static_cast<uint8_t>(byte(rng));
    std::vector<float> sc(static_cast<size_t>(s.N * G), 0.01f);
    scales[c].resize(sc.size() * 4);
    std::memcpy(scales[c].data(), sc.data(), scales[c].size());
  }
  std::vector<float> x(static_cast<size_t>(nblk * 32));
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& v : x) v = d(rng);
  std::vector<float> y(static_cast<size_t>(s.N));
  std::vector<std::vector<uint8_t>> all = codes;
  all.insert(all.end(), scales.begin(), scales.end());
  std::vector<Entry> entries{{"read loop", [&] { g_sink = read_pass(all); }}};
  std::vector<cpu::QuantizedActsBuffers> bufs(6);
  std::vector<cpu::QuantizedActs> acts;
  acts.reserve(6);
  // The interleaved copies (qgemv_rows8.hpp), made once as the provider does at prepare time.
  std::vector<cpu::Rows8Copy> copies8;
  for (int64_t c = 0; c < copies; ++c) {
    const float* sc = reinterpret_cast<const float*>(scales[c].data());
    copies8.push_back(int4 ? cpu::interleave_rows8(codes[c].data(), row_bytes, sc, s.N, G, nblk)
                           : cpu::interleave_int8_rows8(codes[c].data(), row_bytes, sc, s.N, G, nblk));
  }
  using cpu::Rows8Mode;
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (!cpu::cpu_has(isa)) continue;
    for (Rows8Mode mode : {Rows8Mode::off, Rows8Mode::transpose, Rows8Mode::interleaved}) {
      // INT8: the one-row kernels, and AVX-512's eight-row one on its copy.
      if (!int4 && !(mode == Rows8Mode::off || (mode == Rows8Mode::interleaved && isa == Isa::avx512))) continue;
      const cpu::GemvRowsKernels& t = cpu::gemv_rows_table(isa, mode);
      acts.push_back(cpu::quantize_acts(t, int4, x.data(), nblk, bb.data(), G, false, bufs[acts.size()]));
      const cpu::QuantizedActs* a = &acts.back();
      const bool inter = mode == Rows8Mode::interleaved;
      entries.push_back({t.name, [&, a, inter, gemv = int4 ? t.gemv4 : t.gemv8] {
                           for (int64_t c = 0; c < copies; ++c) {
                             const cpu::PackedRows w{codes[c].data(), row_bytes,
                                                     reinterpret_cast<const float*>(scales[c].data()), nullptr,
                                                     bb.data(), G, nullptr,
                                                     inter ? copies8[c].codes.data() : nullptr,
                                                     inter ? copies8[c].scales.data() : nullptr};
                             gemv(w, *a, 0, s.N, y.data());
                           }
                         }});
    }
  }
  // W8A8 decode (one activation scale per token): dot8_i8 row by row, as the
  // provider runs it without a copy, against the eight-row kernel on the copy.
  std::vector<int8_t> q8(static_cast<size_t>(nblk * 32));
  std::vector<int32_t> qsum(static_cast<size_t>(G));
  if (!int4) {
    for (size_t i = 0; i < q8.size(); ++i) q8[i] = static_cast<int8_t>(static_cast<int>(x[i] * 127.0f));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t i = bb[g] * 32; i < bb[g + 1] * 32; ++i) qsum[g] += q8[i];
  }
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (int4 || !cpu::cpu_has(isa)) continue;
    const cpu::QKernels& k = cpu::kernels_of(isa);
    entries.push_back({std::string(k.name) + " w8a8 per-row", [&, dot8 = k.dot8_i8_a127] {
                         for (int64_t c = 0; c < copies; ++c)
                           for (int64_t n = 0; n < s.N; ++n)
                             y[n] = dot8(reinterpret_cast<const int8_t*>(codes[c].data() + n * row_bytes), q8.data(),
                                         bb.data(), G, reinterpret_cast<const float*>(scales[c].data()) + n * G);
                       }});
    if (isa == Isa::avx512)
      entries.push_back({"avx512 w8a8 rows8i", [&] {
                           for (int64_t c = 0; c < copies; ++c)
                             cpu::w8a8_rows8_interleaved_avx512(copies8[c].codes.data(), copies8[c].scales.data(),
                                                                bb.data(), G, q8.data(), nblk * 32, qsum.data(), 1, 0,
                                                                s.N / 8, y.data(), s.N);
                         }});
  }
  char what[128];
  std::snprintf(what, sizeof what, "%s cpu.int-blocks, K %lld x N %lld, %lld copies", int4 ? "INT4 g128" : "INT8 channel",
                static_cast<long long>(s.K), static_cast<long long>(s.N), static_cast<long long>(copies));
  run_entries(what, entries, one * static_cast<double>(copies), rounds);
}

// Enough copies of an N-row GGUF weight (random bytes, rows of row_bytes) to
// fill `mb` MiB, with each `block`-byte block's f16 scales (at the byte
// offsets scale_at) set to 0.01 so every value is finite.
std::vector<std::vector<uint8_t>> random_block_weights(int64_t N, uint64_t row_bytes, int64_t mb, uint64_t block,
                                                       std::initializer_list<uint64_t> scale_at, std::mt19937& rng) {
  const double one = static_cast<double>(static_cast<uint64_t>(N) * row_bytes);
  const int64_t copies = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(mb << 20) / one));
  std::vector<std::vector<uint8_t>> w(static_cast<size_t>(copies));
  std::uniform_int_distribution<int> byte(0, 255);
  const uint16_t h = sdk::f32_to_f16(0.01f);
  for (auto& m : w) {
    m.resize(static_cast<size_t>(static_cast<uint64_t>(N) * row_bytes));
    for (auto& b : m) b = static_cast<uint8_t>(byte(rng));
    for (size_t b = 0; b < m.size(); b += block)
      for (uint64_t at : scale_at) std::memcpy(m.data() + b + at, &h, 2);
  }
  return w;
}

// What the legacy 32-column GGUF block types' benchmarks share: copies of
// random rows (block_bytes per block, the f16 scale first), one quantized
// activation row, and the entries, the read loop first. Entries capture
// this object, so it stays where it was made.
struct LegacyBlockBench {
  const Shape s;
  const int64_t nb;
  const uint64_t row_bytes;
  const std::vector<std::vector<uint8_t>> w;
  std::vector<int8_t> q;
  std::vector<float> d32;
  std::vector<int16_t> sum32;
  cpu::QuantizedRow a{};
  std::vector<float> y;
  std::vector<Entry> entries;
  std::vector<std::vector<uint8_t>> copies8;  // interleaved copies, if an entry reads them

  // with_min: the block holds a second f16 (m) after d (Q4_1, Q5_1).
  LegacyBlockBench(const Shape& shape, uint64_t block_bytes, int64_t mb, std::mt19937& rng, bool with_min = false)
      : s(shape), nb(shape.K / 32), row_bytes(static_cast<uint64_t>(shape.K / 32) * block_bytes),
        w(with_min ? random_block_weights(shape.N, row_bytes, mb, block_bytes, {0, 2}, rng)
                   : random_block_weights(shape.N, row_bytes, mb, block_bytes, {0}, rng)),
        q(static_cast<size_t>(shape.K)),
        d32(static_cast<size_t>(nb)), sum32(static_cast<size_t>(nb)), y(static_cast<size_t>(shape.N)) {
    std::vector<float> x(static_cast<size_t>(s.K));
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (auto& v : x) v = d(rng);
    cpu::quantize_row_blocks(x.data(), s.K, q.data(), d32.data(), sum32.data(), nullptr, nullptr, nullptr);
    a = cpu::QuantizedRow{q.data(), d32.data(), nullptr, nullptr, nullptr, sum32.data()};
    entries.push_back({"read loop", [this] { g_sink = read_pass(w); }});
  }
  // A row-range kernel over every copy.
  void add(const std::string& label, cpu::BlockRowsKernel k) {
    entries.push_back({label, [this, k] {
                         for (const auto& m : w) k(m.data(), row_bytes, s.N, a, nb, y.data(), nullptr);
                       }});
  }
  // A row-at-a-time block kernel (BlockKernels) over every row of every copy.
  void add_per_row(const std::string& label, float (*dot)(const uint8_t*, const cpu::QuantizedRow&, int64_t)) {
    entries.push_back({label, [this, dot] {
                         for (const auto& m : w)
                           for (int64_t r = 0; r < s.N; ++r)
                             y[r] = dot(m.data() + static_cast<uint64_t>(r) * row_bytes, a, nb);
                       }});
  }
  // An eight-row kernel over every copy's interleaved copy (copies8).
  void add_rows8(const std::string& label, cpu::BlockRows8Kernel k) {
    entries.push_back({label, [this, k] {
                         for (size_t c = 0; c < w.size(); ++c)
                           k(w[c].data(), row_bytes, copies8[c].data(), nullptr, 0, s.N, a, nb, y.data(), nullptr);
                       }});
  }
  void run(const char* type, int rounds) {
    char what[128];
    std::snprintf(what, sizeof what, "GGUF %s, K %lld x N %lld, %lld copies", type, static_cast<long long>(s.K),
                  static_cast<long long>(s.N), static_cast<long long>(w.size()));
    run_entries(what, entries, static_cast<double>(static_cast<uint64_t>(s.N) * row_bytes * w.size()), rounds);
  }
};

// GGUF Q4_0 rows (block_q4_0, 18 bytes per 32 columns).
void bench_q4_0(const Shape& s, int64_t mb, int rounds, std::mt19937& rng) {
  LegacyBlockBench b(s, 18, mb, rng);
  std::vector<cpu::Q4_0Rows8Copy> copies8;  // made once, as the provider does at prepare time
  for (const auto& m : b.w) copies8.push_back(cpu::interleave_q4_0_rows8(m.data(), b.row_bytes, s.N, b.nb));
  auto add8 = [&](const std::string& label, cpu::BlockRows8Kernel k) {
    b.entries.push_back({label, [&b, &copies8, k] {
                           for (size_t c = 0; c < b.w.size(); ++c)
                             k(b.w[c].data(), b.row_bytes, copies8[c].codes.data(), copies8[c].scales.data(), 0,
                               b.s.N, b.a, b.nb, b.y.data(), nullptr);
                         }});
  };
  if (cpu::cpu_has(Isa::avx512)) {
    b.add("avx512 one-row", cpu::block_rows_kernel(Isa::avx512, 2, false));
    b.add("avx512 rows8", cpu::block_rows_kernel(Isa::avx512, 2, true));
    add8("avx512 rows8i", cpu::block_rows8_kernel(Isa::avx512, 2));
  }
  if (cpu::cpu_has(Isa::avx2)) {
    b.add_per_row("avx2 per-row", cpu::kAvx2BlockKernels.q4_0);
    b.add("avx2 rows8", cpu::block_rows_kernel(Isa::avx2, 2, true));
    add8("avx2 rows8i", cpu::block_rows8_kernel(Isa::avx2, 2));
  }
  b.run("Q4_0", rounds);
}

// GGUF Q8_0 rows (block_q8_0, 34 bytes per 32 columns): what a quantized
// checkpoint's embedding / lm_head table runs as (XQUANT_TABLES=auto) and a
// GGUF Q8_0 file's Linears; the row-at-a-time block kernel against the
// row-range kernels (gguf_gemv_rows.hpp).
void bench_q8_0(const Shape& s, int64_t mb, int rounds, std::mt19937& rng) {
  LegacyBlockBench b(s, 34, mb, rng);
  std::vector<cpu::Q4_0Rows8Copy> copies8;  // made once, as the provider does at prepare time
  for (const auto& m : b.w) copies8.push_back(cpu::interleave_q8_0_rows8(m.data(), b.row_bytes, s.N, b.nb));
  if (cpu::cpu_has(Isa::avx512)) {
    b.add("avx512 one-row", cpu::block_rows_kernel(Isa::avx512, 8, false));
    cpu::BlockRows8Kernel k = cpu::block_rows8_kernel(Isa::avx512, 8);
    b.entries.push_back({"avx512 rows8i", [&b, &copies8, k] {
                           for (size_t c = 0; c < b.w.size(); ++c)
                             k(b.w[c].data(), b.row_bytes, copies8[c].codes.data(), copies8[c].scales.data(), 0,
                               b.s.N, b.a, b.nb, b.y.data(), nullptr);
                         }});
  }
  if (cpu::cpu_has(Isa::avx2)) {
    b.add_per_row("avx2 per-row", cpu::kAvx2BlockKernels.q8_0);
    if (cpu::BlockRowsKernel k = cpu::block_rows_kernel(Isa::avx2, 8, false)) b.add("avx2 row-range", k);
  }
  b.run("Q8_0", rounds);
}

const char* gguf_name(uint32_t type) { return type == 3 ? "Q4_1" : type == 6 ? "Q5_0" : "Q5_1"; }

// GGUF Q4_1, Q5_0 and Q5_1 rows (20, 22 and 24 bytes per 32 columns; what
// llama.cpp's Q4_K_M / Q5_K_M files store the tensors whose rows are not a
// multiple of 256 as): the per-row block kernels against the eight-row ones
// on the interleaved copy (gguf_legacy_rows8.inc).
void bench_legacy(const Shape& s, uint32_t type, int64_t mb, int rounds, std::mt19937& rng) {
  const cpu::LegacyRows8Layout L = cpu::legacy_rows8_layout(type);
  LegacyBlockBench b(s, static_cast<uint64_t>(L.stored_bytes), mb, rng, L.has_min);
  for (const auto& m : b.w) b.copies8.push_back(cpu::interleave_legacy_rows8(type, m.data(), b.row_bytes, s.N, b.nb));
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (!cpu::cpu_has(isa)) continue;
    b.add_per_row(std::string(cpu::isa_name(isa)) + " per-row",
                  cpu::block_kernel(isa == Isa::avx512 ? cpu::kAvx512BlockKernels : cpu::kAvx2BlockKernels, type));
    b.add_rows8(std::string(cpu::isa_name(isa)) + " rows8i", cpu::block_rows8_kernel(isa, type));
  }
  b.run(gguf_name(type), rounds);
}

// GGUF K-quant rows (Q4_K: 144 bytes, Q6_K: 210 bytes per 256 columns): the
// AVX2 one-row kernels and the eight-row ones on the interleaved copy
// (gguf_q4_k_rows8.inc, gguf_q6_k_rows8.inc). Shapes with K not a multiple
// of 256 are skipped.
void bench_k_quant(const Shape& s, uint32_t type, int64_t mb, int rounds, std::mt19937& rng) {
  if (s.K % 256 != 0 || !cpu::cpu_has(Isa::avx2)) return;
  const bool q4k = type == 12;  // GGML_TYPE_Q4_K; else GGML_TYPE_Q6_K (14)
  const int64_t nb = s.K / 256;
  const uint64_t block = q4k ? 144 : 210, row_bytes = static_cast<uint64_t>(nb) * block;
  const double one = static_cast<double>(static_cast<uint64_t>(s.N) * row_bytes);
  // Finite f16 d (and Q4_K's dmin).
  const std::vector<std::vector<uint8_t>> w =
      q4k ? random_block_weights(s.N, row_bytes, mb, block, {0, 2}, rng) : random_block_weights(s.N, row_bytes, mb, block, {208}, rng);
  const int64_t copies = static_cast<int64_t>(w.size());
  std::vector<float> x(static_cast<size_t>(s.K));
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& v : x) v = d(rng);
  std::vector<int8_t> q(static_cast<size_t>(s.K)), q256(static_cast<size_t>(s.K));
  std::vector<float> d32(static_cast<size_t>(s.K / 32)), d256(static_cast<size_t>(nb));
  std::vector<int16_t> sum32(static_cast<size_t>(s.K / 32)), bsum16(static_cast<size_t>(s.K / 16));
  cpu::quantize_row_blocks(x.data(), s.K, q.data(), d32.data(), sum32.data(), q256.data(), d256.data(), bsum16.data());
  const cpu::QuantizedRow a{q.data(), d32.data(), d256.data(), q256.data(), bsum16.data(), sum32.data()};
  std::vector<float> y(static_cast<size_t>(s.N));
  std::vector<std::vector<uint8_t>> copies8;  // made once, as the provider does at prepare time
  for (const auto& m : w)
    copies8.push_back(q4k ? cpu::interleave_q4_k_rows8(m.data(), row_bytes, s.N, nb)
                          : cpu::interleave_q6_k_rows8(m.data(), row_bytes, s.N, nb));
  const auto per_row = cpu::block_kernel(cpu::kAvx2BlockKernels, type);
  const cpu::BlockRows8Kernel rows8 = q4k ? cpu::kAvx2Q4_KRows8i : cpu::kAvx2Q6_KRows8i;
  std::vector<Entry> entries{{"read loop", [&] { g_sink = read_pass(w); }},
                             {"avx2 one-row", [&] {
                                for (const auto& m : w)
                                  for (int64_t r = 0; r < s.N; ++r)
                                    y[r] = per_row(m.data() + static_cast<uint64_t>(r) * row_bytes, a, nb);
                              }},
                             {"avx2 rows8i", [&] {
                                for (size_t c = 0; c < w.size(); ++c)
                                  rows8(w[c].data(), row_bytes, copies8[c].data(), nullptr, 0, s.N, a, nb, y.data(), nullptr);
                              }}};
  const cpu::BlockRows8Kernel rows8_avx512 = q4k ? cpu::kAvx512Q4_KRows8i : cpu::kAvx512Q6_KRows8i;
  if (cpu::cpu_has(Isa::avx512))
    entries.push_back({"avx512 rows8i", [&] {
                         for (size_t c = 0; c < w.size(); ++c)
                           rows8_avx512(w[c].data(), row_bytes, copies8[c].data(), nullptr, 0, s.N, a, nb, y.data(), nullptr);
                       }});
  if (q4k)  // the row-range Q4_K kernel (gguf_gemv_rows_q4k.inc), decode's before the copy
    entries.insert(entries.begin() + 2, {"avx2 row-range", [&] {
                                            const cpu::BlockRowsKernel k = cpu::block_rows_kernel(Isa::avx2, type, false);
                                            for (const auto& m : w) k(m.data(), row_bytes, s.N, a, nb, y.data(), nullptr);
                                          }});
  char what[128];
  std::snprintf(what, sizeof what, "GGUF %s, K %lld x N %lld, %lld copies", q4k ? "Q4_K" : "Q6_K",
                static_cast<long long>(s.K), static_cast<long long>(s.N), static_cast<long long>(copies));
  run_entries(what, entries, one * static_cast<double>(copies), rounds);
}

double load1() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mb = 256;
  int rounds = 5;
  int read_threads = 0;
  std::string shapes = "1536x8960,8960x1536,576x1536,1536x576";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_gemv_rows: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--mb") mb = std::stoll(next());
    else if (a == "--rounds") rounds = std::stoi(next());
    else if (a == "--shapes") shapes = next();
    else if (a == "--read-bandwidth") read_threads = std::stoi(next());
    else {
      std::fprintf(stderr, "bench_gemv_rows: unknown option '%s' (see the header of bench/engine/bench_gemv_rows.cpp)\n",
                   a.c_str());
      return 2;
    }
  }
  if (read_threads > 0) {
    ThreadPool pool(static_cast<unsigned>(read_threads));
    const double bps = bench::read_bandwidth(pool, static_cast<size_t>(std::max<int64_t>(mb, 512)) << 20, rounds);
    std::printf("{\"threads\": %d, \"read_bytes_per_s\": %.0f}\n", read_threads, bps);
    return 0;
  }
  std::printf("bench_gemv_rows: one thread, best of %d interleaved rounds; load average %.2f\n", rounds, load1());
  std::mt19937 rng(20261201);
  for (const Shape& s : parse_shapes(shapes)) {
    bench_int(s, true, mb, rounds, rng);
    bench_int(s, false, mb, rounds, rng);
    bench_q4_0(s, mb, rounds, rng);
    bench_q8_0(s, mb, rounds, rng);
    for (uint32_t type : {3u, 6u, 7u}) bench_legacy(s, type, mb, rounds, rng);  // Q4_1, Q5_0, Q5_1
    bench_k_quant(s, 12, mb, rounds, rng);
    bench_k_quant(s, 14, mb, rounds, rng);
  }
  std::printf("load average after: %.2f\n", load1());
  return 0;
}
