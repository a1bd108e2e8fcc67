// cutlass_w8a8_configs.cpp: the CUTLASS W8A8 kernel configurations by name,
// and the one auto runs for a problem (or none: cuBLASLt + scaling pass).
// The choice is by M bucket, then N, K or the problem's size; the buckets
// and thresholds come from bench/cuda/bench_w8a8.py on an H200 (one run,
// 2026-12-01; docs/cuda.md, "W8A8 GEMM routes", has the table).
#include <cstring>

#include "cutlass_w8a8.hpp"

namespace xqcuda {
namespace {

constexpr W8ConfigInfo kConfigs[] = {
    {W8Config::I8_64x64_c1x8, "i8_64x64_c1x8", DType::I8, true, false},
    {W8Config::I8_64x128_c2x1_pp, "i8_64x128_c2x1_pp", DType::I8, true, false},
    {W8Config::I8_128x128_c2x1_coop, "i8_128x128_c2x1_coop", DType::I8, true, false},
    {W8Config::I8_128x128_c1x1_sk, "i8_128x128_c1x1_sk", DType::I8, false, false},
    {W8Config::I8_128x256_c2x1_coop, "i8_128x256_c2x1_coop", DType::I8, false, false},
    {W8Config::I8_256x128_c2x1_coop, "i8_256x128_c2x1_coop", DType::I8, false, false},
    {W8Config::I8_128x128_c2x1_pp, "i8_128x128_c2x1_pp", DType::I8, false, false},
    {W8Config::F8_64x64_c1x8, "f8_64x64_c1x8", DType::F8E4M3, true, false},
    {W8Config::F8_64x128_c2x1_pp, "f8_64x128_c2x1_pp", DType::F8E4M3, true, false},
    {W8Config::F8_128x128_c2x1_coop, "f8_128x128_c2x1_coop", DType::F8E4M3, true, false},
    {W8Config::F8_128x128_c1x1_sk, "f8_128x128_c1x1_sk", DType::F8E4M3, false, false},
    {W8Config::F8_128x128_c2x1_pp_fast, "f8_128x128_c2x1_pp_fast", DType::F8E4M3, false, true},
};
static_assert(sizeof(kConfigs) / sizeof(kConfigs[0]) == static_cast<size_t>(W8Config::Count),
              "one table row per W8Config, in order");

// Weights of at least 32 Mi elements (4096 x 14336 and up, not 4096 x 4096).
bool large_weight(const ScaledMM& p) { return p.N * p.K >= (int64_t{32} << 20); }

// INT8, from the H200 sweep (every configuration forced on four Llama shapes,
// M = 1..4096, docs/cuda.md):
// - M <= 64: the 64x64 tile over a 1x8 cluster was fastest on every shape
//   (stream-K over 128-row tiles, tried for N = 4096, was 1.4-1.7x slower);
// - M <= 128: stream-K where the weight is large (8192 x 28672: 71.6 against
//   80.1 us), the 64x128 ping-pong tile otherwise (4096 x 4096: 14.1 vs 18.1);
// - M <= 256: the 64x128 ping-pong tile for N <= 4096 (more CTAs), the
//   128x128 ping-pong tile above;
// - larger M: the 128x128 ping-pong tile (vLLM's large-M choice; ahead of the
//   cooperative one by 1-10% at M = 1024), except at M > 2048 with K >= 8192,
//   where the wide tiles led (8192 x 28672: 128x256 1402 vs 1507 us;
//   14336 x 4096: 256x128 352 vs 375 us).
// F16 output takes the nearest of the three configurations built for it.
W8Config pick_i8(const ScaledMM& p) {
  const bool bf16 = p.y_type == DType::BF16;
  if (p.M <= 64) return W8Config::I8_64x64_c1x8;
  if (p.M <= 128)
    return bf16 && large_weight(p) ? W8Config::I8_128x128_c1x1_sk : W8Config::I8_64x128_c2x1_pp;
  if (p.M <= 256 && p.N <= 4096) return W8Config::I8_64x128_c2x1_pp;
  if (!bf16) return W8Config::I8_128x128_c2x1_coop;
  if (p.M > 2048 && p.K >= 8192) return p.N <= 4096 ? W8Config::I8_256x128_c2x1_coop : W8Config::I8_128x256_c2x1_coop;
  return W8Config::I8_128x128_c2x1_pp;
}

// FP8 E4M3 (accurate accumulation; fast accumulation is never picked). Per-
// tensor scales fold into cuBLASLt's alpha (one pass), and cuBLASLt was as
// fast as or faster than every CUTLASS configuration there, so it keeps them.
// Row-wise scales cost cuBLASLt a second pass; CUTLASS won where:
// - 64 < M <= 256 with N >= 8192: stream-K (4096 x 14336 M = 128: 23.4 vs
//   27.0 us; 8192 x 28672 M = 256: 125.7 vs 129.7);
// - M > 256: the cooperative 128x128 tile (7-27% ahead), up to M*N*K of
//   5e11: at 4096 x 8192 x 28672 cuBLASLt + pass took 1796 us, CUTLASS 1959.
// At M <= 64 cuBLASLt led on three shapes of four (by up to 16%; CUTLASS led
// 4096 x 4096 by up to 8%).
bool pick_fp8(const ScaledMM& p, W8Config* out) {
  const bool row_wise = p.sx != nullptr || p.sw != nullptr;
  if (!row_wise || p.M <= 64) return false;
  if (p.M <= 256) {
    if (p.N < 8192 || p.y_type != DType::BF16) return false;
    *out = W8Config::F8_128x128_c1x1_sk;
    return true;
  }
  if (static_cast<double>(p.M) * static_cast<double>(p.N) * static_cast<double>(p.K) >= 5e11) return false;
  *out = W8Config::F8_128x128_c2x1_coop;
  return true;
}

}  // namespace

const W8ConfigInfo& w8_config_info(W8Config c) { return kConfigs[static_cast<int>(c)]; }

bool w8_config_from_name(const char* name, W8Config* out) {
  for (const W8ConfigInfo& c : kConfigs)
    if (std::strcmp(c.name, name) == 0) {
      *out = c.id;
      return true;
    }
  return false;
}

bool w8_config_takes(W8Config c, const ScaledMM& p) {
  const W8ConfigInfo& i = w8_config_info(c);
  return i.ab == p.ab && (p.y_type == DType::BF16 || (p.y_type == DType::F16 && i.f16_out));
}

bool cutlass_scaled_mm_auto(const ScaledMM& p, W8Config* out) {
  if (!cutlass_scaled_mm_fits(p)) return false;
  if (p.ab == DType::I8) {
    *out = pick_i8(p);
  } else if (!pick_fp8(p, out)) {
    return false;
  }
  return w8_config_takes(*out, p);
}

}  // namespace xqcuda
