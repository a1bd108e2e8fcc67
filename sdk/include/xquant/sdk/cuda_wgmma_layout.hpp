// cuda_wgmma_layout.hpp: the `cuda` provider's Hopper copy of a W4A16 weight
// ("cuda-w4a16-wgmma", docs/cuda.md) as pure host code: which weights have
// one, the host packing (the same bytes the provider's device packing
// writes: plugins/cuda/src/w4a16_hopper.cu k_w4h_pack and
// k_w4h_pack_scales), the serialized form and a checked view over it.
//
// The Hopper GEMM (CUTLASS's mixed-input wgmma collective) reads its codes
// in the order its register fragments take them. The provider builds that
// order with CuTe layouts (w4a16_hopper_gemm.cuh, weight_layout: CUTLASS
// example 55_hopper_mixed_dtype_gemm's compute_memory_reordering_atom for a
// bf16 register-sourced wgmma, values in the order 0,2,4,6,1,3,5,7); here it
// is written out. For weight row n and native column c (act-order columns
// sorted by group, as the mma layout's permutation gives them) the code's
// nibble index is
//   atom(n % 16, c % 16) + 256 (n / 16) + 16 N (c / 16),
//   atom(r, k) = 32 (r % 8) + (r / 8) + 4 (k % 2) + 8 ((k / 2) % 4) + 2 (k / 8),
// i.e. 16 x 16 atoms of 256 nibbles, row atoms adjacent, then column atoms.
// The formula was checked against CuTe's own layout (CUTLASS 4.2.0) at
// several shapes; tests/formats/test_cuda_wgmma_layout.cpp pins values
// CuTe printed, and tests/cuda/test_stored_layout.cpp compares these bytes
// with the device packing on a GPU.
//
// Serialized bytes (each part at a multiple of 64 from the start):
//   header   64 bytes: "XQWGMMA1", u32 flags (1: columns in act-order
//            (sorted) order), u32 0, i64 rows, cols, n_groups, group_size
//            (little-endian; checked against the description)
//   codes    rows * cols / 2 bytes: signed 4-bit codes, nibble i of the
//            buffer at byte i / 2, bits 4 (i % 2)
//   scales   bf16 [n_groups][rows]
//   offsets  bf16 [n_groups][rows]: -scale * zero point (the collective
//            dequantizes w = scale * q + offset), -0 for symmetric weights
//            as the device computes it
#pragma once

#include <xquant/sdk/cuda_layout.hpp>
#include <xquant/sdk/error.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/xq_tensor.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace xquant::sdk::cuda_wgmma_layout {

inline constexpr const char* kName = "cuda.w4a16-wgmma.v1";
inline constexpr char kMagic[8] = {'X', 'Q', 'W', 'G', 'M', 'M', 'A', '1'};
inline constexpr uint32_t kFlagSortedColumns = 1;

struct Header {
  char magic[8];
  uint32_t flags;
  uint32_t zero0;
  int64_t rows, cols, n_groups, group_size;
  uint8_t zero[16];
};
static_assert(sizeof(Header) == 64, "cuda wgmma layout header is 64 bytes");

struct Geometry {
  int64_t N = 0, K = 0, n_groups = 1, group_size = 0;
  bool sorted = false;  // act-order: codes in the mma layout's permuted column order

  static constexpr uint64_t kHeaderBytes = 64;
  uint64_t codes_at() const { return kHeaderBytes; }
  uint64_t scales_at() const { return cuda_layout::align_up(codes_at() + static_cast<uint64_t>(N * K / 2)); }
  uint64_t offsets_at() const { return cuda_layout::align_up(scales_at() + 2 * static_cast<uint64_t>(n_groups * N)); }
  uint64_t total_bytes() const { return cuda_layout::align_up(offsets_at() + 2 * static_cast<uint64_t>(n_groups * N)); }
};

// The nibble index of weight row n, native column c (header comment).
inline int64_t nibble_at(int64_t N, int64_t n, int64_t c) {
  const int64_t r = n % 16, k = c % 16;
  const int64_t atom = 32 * (r % 8) + r / 8 + 4 * (k % 2) + 8 * ((k / 2) % 4) + 2 * (k / 8);
  return atom + 256 * (n / 16) + 16 * N * (c / 16);
}

// Why the Hopper GEMM does not take an [N, K] weight with this group size
// (plugins/cuda/src/w4a16_hopper.cpp w4h_supported, the same rules and
// words), or "" when it does.
inline std::string unsupported_reason(int64_t N, int64_t K, int64_t group_size) {
  if (N <= 0 || K <= 0 || N % 16 != 0) return "N must be a positive multiple of 16";
  if (K % 64 != 0) return "K must be a multiple of 64";
  if (group_size != K && group_size % 64 != 0) return "the group size must be K or a multiple of 64";
  if (N * K > INT32_MAX) return "N*K must be below 2^31 (the layout's offsets are 32-bit)";
  return "";
}

// The copy's geometry for a weight the cuda provider packs as W4 (2..4-bit
// weight-only: cuda_layout::geometry), from its description; throws
// Error(XQ_ERR_UNSUPPORTED) naming why where there is no copy.
inline Geometry geometry(const xq_quant_tensor& q, bool sorted_columns) {
  const cuda_layout::Geometry m = cuda_layout::geometry(q, sorted_columns);
  if (m.kind != cuda_layout::Kind::W4) cuda_layout::unsupported(std::string(kName) + " holds W4A16 weights only");
  Geometry g;
  g.N = m.N;
  g.K = m.K;
  g.n_groups = m.n_groups;
  g.group_size = m.gs_shift >= 31 ? m.K : (int64_t{1} << m.gs_shift);
  g.sorted = m.has_perm;
  if (const std::string why = unsupported_reason(g.N, g.K, g.group_size); !why.empty())
    cuda_layout::unsupported(std::string(kName) + ": " + why);
  return g;
}

namespace detail {

inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

}  // namespace detail

// Packs canonical `q` as the provider's prepare does (codes in the mma
// layout's column order, then placed by nibble_at; bf16 scales and offsets
// [G][N]); throws Error(XQ_ERR_UNSUPPORTED) where there is no copy.
inline std::vector<uint8_t> pack(const xq_quant_tensor& q) {
  if (!q.codes || !q.scales) throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: quant tensor without codes/scales");
  xq_quant_tensor d = q;
  d.symmetric = (!q.symmetric && q.zero_points) ? 0 : 1;  // as cuda_layout::pack reads them
  const cuda_layout::Geometry m = cuda_layout::geometry(d, q.g_idx != nullptr);
  const std::vector<int32_t> perm = cuda_layout::act_order_perm(q, m.gs_shift);
  Geometry g = geometry(d, !perm.empty());
  const int64_t N = g.N, K = g.K, G = g.n_groups;
  for (int64_t i = 0; i < N * K; ++i)
    if (q.codes[i] < -8 || q.codes[i] > 7)
      throw Error(XQ_ERR_INVALID_ARGUMENT,
                  "cuda: code " + std::to_string(q.codes[i]) + " outside the 4-bit range at " + std::to_string(i));
  std::vector<uint8_t> out(g.total_bytes(), 0);
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.flags = g.sorted ? kFlagSortedColumns : 0u;
  h.rows = N;
  h.cols = K;
  h.n_groups = G;
  h.group_size = g.group_size;
  std::memcpy(out.data(), &h, sizeof h);
  uint8_t* codes = out.data() + g.codes_at();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < K; ++c) {
      const int code = q.codes[n * K + (perm.empty() ? c : perm[static_cast<size_t>(c)])];
      const int64_t at = nibble_at(N, n, c);
      codes[at >> 1] |= static_cast<uint8_t>((static_cast<uint32_t>(code) & 0xFu) << (4 * (at & 1)));
    }
  const bool tensor = q.strategy == XQ_STRATEGY_TENSOR;
  const bool asym = !d.symmetric;
  for (int64_t grp = 0; grp < G; ++grp)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = n * G + grp;
      const uint16_t s = f32_to_bf16(tensor ? q.scales[0] : q.scales[i]);
      const float zero = asym ? static_cast<float>(tensor ? q.zero_points[0] : q.zero_points[i]) : 0.f;
      const uint64_t at = 2 * static_cast<uint64_t>(grp * N + n);
      detail::store_u16(out.data() + g.scales_at() + at, s);
      detail::store_u16(out.data() + g.offsets_at() + at, f32_to_bf16(-bf16_to_f32(s) * zero));
    }
  return out;
}

// A checked view over serialized bytes for the tensor `desc` describes
// (buffers unread): header against the description, sizes. Pointers point
// into `data`.
struct View {
  Geometry g;
  const uint8_t* codes = nullptr;
  const uint8_t* scales = nullptr;
  const uint8_t* offsets = nullptr;
};

inline View view(const xq_quant_tensor& desc, const void* data, uint64_t nbytes) {
  const auto* b = static_cast<const uint8_t*>(data);
  Header h{};
  if (!b || nbytes < sizeof h) cuda_layout::malformed(kName, "header", "needs 64 bytes, got " + std::to_string(nbytes));
  std::memcpy(&h, b, sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) cuda_layout::malformed(kName, "header.magic", "not XQWGMMA1");
  if (h.flags & ~kFlagSortedColumns) cuda_layout::malformed(kName, "header.flags", "unknown bits " + std::to_string(h.flags));
  const Geometry g = geometry(desc, (h.flags & kFlagSortedColumns) != 0);
  if ((h.flags & kFlagSortedColumns) && !g.sorted)
    cuda_layout::malformed(kName, "header.flags", "act-order columns with one group per row");
  if (h.rows != g.N || h.cols != g.K || h.n_groups != g.n_groups || h.group_size != g.group_size)
    cuda_layout::malformed(kName, "header",
                           "shape " + cuda_layout::shape_text(h.rows, h.cols) + ", " + std::to_string(h.n_groups) +
                               " groups of " + std::to_string(h.group_size) + " do not match the description " +
                               cuda_layout::shape_text(g.N, g.K) + ", " + std::to_string(g.n_groups) + " of " +
                               std::to_string(g.group_size));
  if (nbytes != g.total_bytes())
    cuda_layout::malformed(kName, "size",
                           std::to_string(nbytes) + " bytes, the description needs " + std::to_string(g.total_bytes()));
  View v;
  v.g = g;
  v.codes = b + g.codes_at();
  v.scales = b + g.scales_at();
  v.offsets = b + g.offsets_at();
  return v;
}

// ---- several stored copies as one, by placement ----------------------------
// The copy of the weight whose rows are parts[0]'s, then parts[1]'s, ...:
// for each 16-column block the codes are a run of N / 16 atoms of 128 bytes
// (8 N bytes), rows in order, and scales and offsets are [G][N], so part p
// (rows from row0, a multiple of 16) is a 2-D placement: its run of 8 N_p
// bytes a column block into the stacked run at 8 row0 (pitch 8 N), its
// scales' and offsets' rows of 2 N_p bytes at 2 row0 (pitch 2 N). Refused
// (Error XQ_ERR_UNSUPPORTED) for other columns or groups, act-order columns,
// or a stacked shape the GEMM does not take.
struct StackPlan {
  Geometry g;
  std::vector<int64_t> row0;
};

inline StackPlan stack_plan(const std::vector<View>& parts) {
  if (parts.empty()) cuda_layout::unsupported(std::string(kName) + " stacking: no parts");
  const Geometry& a = parts[0].g;
  StackPlan plan;
  plan.g = a;
  plan.g.N = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    const Geometry& g = parts[p].g;
    const std::string at = std::string(kName) + " stacking part " + std::to_string(p) + ": ";
    if (g.K != a.K || g.n_groups != a.n_groups || g.group_size != a.group_size)
      cuda_layout::unsupported(at + "another column count or grouping than part 0");
    if (g.sorted) cuda_layout::unsupported(at + "act-order columns (each part has its own order)");
    plan.row0.push_back(plan.g.N);
    plan.g.N += g.N;
  }
  if (const std::string why = unsupported_reason(plan.g.N, plan.g.K, plan.g.group_size); !why.empty())
    cuda_layout::unsupported(std::string(kName) + " stacked: " + why);
  return plan;
}

// The stacked copy serialized, by placement (the host reference of the
// provider's 2-D copies).
inline std::vector<uint8_t> stack(const std::vector<View>& parts, const StackPlan& plan) {
  const Geometry& g = plan.g;
  std::vector<uint8_t> out(g.total_bytes(), 0);
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.rows = g.N;
  h.cols = g.K;
  h.n_groups = g.n_groups;
  h.group_size = g.group_size;
  std::memcpy(out.data(), &h, sizeof h);
  for (size_t p = 0; p < parts.size(); ++p) {
    const View& v = parts[p];
    const int64_t r0 = plan.row0[p], n = v.g.N;
    for (int64_t cb = 0; cb < g.K / 16; ++cb)
      std::memcpy(out.data() + g.codes_at() + static_cast<uint64_t>(8 * g.N * cb + 8 * r0), v.codes + 8 * n * cb,
                  static_cast<size_t>(8 * n));
    for (int64_t grp = 0; grp < g.n_groups; ++grp) {
      const uint64_t dst = 2 * static_cast<uint64_t>(grp * g.N + r0), src = 2 * static_cast<uint64_t>(grp * n);
      std::memcpy(out.data() + g.scales_at() + dst, v.scales + src, static_cast<size_t>(2 * n));
      std::memcpy(out.data() + g.offsets_at() + dst, v.offsets + src, static_cast<size_t>(2 * n));
    }
  }
  return out;
}

}  // namespace xquant::sdk::cuda_wgmma_layout
