// cpu_layout.hpp: the `cpu` kernel provider's packed quantized-weight layout,
// "cpu.int-blocks.v1", as pure host code: packing a canonical quantized
// tensor, its serialized form, and a checked view over serialized bytes.
//
// It lives in the SDK (header-only, no provider code) so that both the `cpu`
// provider (plugins/cpu/src/qweight.cpp: prepare packs with it, adopt reads
// stored bytes through view()) and the `xq` format writer (plugins/xq: stores
// the packed bytes beside the canonical tensor) use one definition without
// either plugin linking the other. The layout (plugins/cpu/src/qkernels.hpp):
// columns in the weight's permuted order (identity unless act-order g_idx),
// each group padded with code 0 to whole 32-column blocks; bits <= 4: 16
// bytes per block, byte i holds column i in its low nibble and column 16 + i
// in its high nibble as code + 8 (llama.cpp's block_q4_0 order); bits 5..8:
// one signed byte per code. f32 scales and zero points per row and group.
//
// Serialized bytes (each part starts at a multiple of 64 from the start;
// the small index parts first, so a reader finds every offset from them):
//   header       64 bytes: "XQCPU1\0\0", u32 flags (1: act-order perm
//                present, 2: zeros present), u32 bits, i64 rows, cols,
//                n_groups (little-endian; checked against the description)
//   group_begin  n_groups + 1 int64          (column ranges, permuted order)
//   perm         cols int32                  (act-order only)
//   codes        rows * row_bytes
//   scales       rows * n_groups f32
//   zeros        rows * n_groups f32        (asymmetric only)
#pragma once

#include <xquant/sdk/error.hpp>
#include <xquant/xq_tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace xquant::sdk::cpu_layout {

inline constexpr const char* kName = "cpu.int-blocks.v1";
inline constexpr int64_t kBlock = 32;    // columns per block (qkernels.hpp kBlock)
inline constexpr uint64_t kAlign = 64;   // part alignment inside the serialized bytes

inline constexpr char kMagic[8] = {'X', 'Q', 'C', 'P', 'U', '1', 0, 0};
inline uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The serialized header (first 64 bytes of the serialized form).
struct Header {
  char magic[8];
  uint32_t flags;  // 1: perm present (act-order), 2: zeros present
  uint32_t bits;
  int64_t rows, cols, n_groups;
  uint8_t zero[24];
};
static_assert(sizeof(Header) == 64, "cpu layout header is 64 bytes");

// The shape of a packed weight: everything but the data.
struct Geometry {
  int64_t rows = 0, cols = 0, n_groups = 0;
  uint32_t bits = 0;
  bool int4 = false;       // two codes per byte
  bool has_zeros = false;  // asymmetric
  bool has_perm = false;   // act-order
  int64_t padded_cols = 0, row_bytes = 0;
  std::vector<int64_t> group_begin;  // [n_groups + 1]
  std::vector<int64_t> block_begin;  // [n_groups + 1]

  uint64_t codes_bytes() const { return static_cast<uint64_t>(rows * row_bytes); }
  uint64_t scale_count() const { return static_cast<uint64_t>(rows * n_groups); }
  // Offsets of the parts in the serialized bytes, and the total size.
  static constexpr uint64_t kHeaderBytes = 64;
  uint64_t perm_at() const { return align_up(kHeaderBytes + 8 * static_cast<uint64_t>(n_groups + 1)); }
  uint64_t codes_at() const { return has_perm ? align_up(perm_at() + 4 * static_cast<uint64_t>(cols)) : perm_at(); }
  uint64_t scales_at() const { return align_up(codes_at() + codes_bytes()); }
  uint64_t zeros_at() const { return align_up(scales_at() + 4 * scale_count()); }
  uint64_t total_bytes() const { return has_zeros ? align_up(zeros_at() + 4 * scale_count()) : zeros_at(); }
};

[[noreturn]] inline void unsupported(const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, "cpu layout: quantized weight: " + why);
}

// Checks a canonical description (buffers not read) and returns n_groups
// and group_size as the layout uses them.
inline void check_description(const xq_quant_tensor& q, int64_t& n_groups, int64_t& group_size) {
  if (q.struct_size < sizeof(xq_quant_tensor)) unsupported("struct_size too small");
  if (q.bits < 2 || q.bits > 8) unsupported(format("bits %u outside 2..8", q.bits));
  if (q.rows <= 0 || q.cols <= 0) unsupported("rows and cols must be positive");
  n_groups = 1;
  group_size = q.cols;
  switch (q.strategy) {
    case XQ_STRATEGY_TENSOR:
    case XQ_STRATEGY_CHANNEL: break;
    case XQ_STRATEGY_GROUP:
      if (q.group_size <= 0) unsupported("group_size must be positive");
      group_size = q.group_size;
      n_groups = (q.cols + group_size - 1) / group_size;
      if (q.n_groups != n_groups)
        unsupported(format("n_groups %lld != ceil(cols/group_size) %lld", static_cast<long long>(q.n_groups),
                           static_cast<long long>(n_groups)));
      break;
    default: unsupported("strategy BLOCK (or unknown) is not supported");
  }
  if (q.act_scheme != XQ_ACT_NONE) {
    if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN && q.act_scheme != XQ_ACT_STATIC_TENSOR) unsupported("unknown act_scheme");
    // FP8 E4M3 activations only dynamic per token (W4AFP8); else int8.
    const bool fp8_dynamic = q.act_bits == XQ_BITS_F8_E4M3 && q.act_scheme == XQ_ACT_DYNAMIC_TOKEN;
    if (q.act_bits != 8 && !fp8_dynamic)
      unsupported(format("act_bits 0x%x (int8 activations, or FP8 E4M3 dynamic per token)", q.act_bits));
    if (q.act_scheme == XQ_ACT_STATIC_TENSOR && !(q.input_scale > 0.0f))
      unsupported("static activation scale must be > 0");
  }
}

// Block ranges and padded widths from the group column ranges.
inline void finish_geometry(Geometry& g) {
  g.block_begin.assign(static_cast<size_t>(g.n_groups + 1), 0);
  for (int64_t i = 0; i < g.n_groups; ++i)
    g.block_begin[i + 1] = g.block_begin[i] + (g.group_begin[i + 1] - g.group_begin[i] + kBlock - 1) / kBlock;
  g.padded_cols = g.block_begin[g.n_groups] * kBlock;
  g.row_bytes = g.int4 ? g.padded_cols / 2 : g.padded_cols;
}

// Byte and nibble of padded column p in an INT4 row.
inline int64_t int4_byte(int64_t p) { return (p / kBlock) * 16 + (p % 16); }
inline bool int4_high(int64_t p) { return p % kBlock >= 16; }

struct Packed {
  Geometry geo;
  std::vector<uint8_t> codes;  // [rows * row_bytes]
  std::vector<float> scales;   // [rows * n_groups]
  std::vector<float> zeros;    // [rows * n_groups] or empty
  std::vector<int32_t> perm;   // [cols] or empty
};

// Packs a canonical quantized tensor (codes range-checked, scales finite),
// the work `cpu`'s qweight_prepare does at load. Throws
// Error(XQ_ERR_UNSUPPORTED) naming what does not fit.
inline Packed pack(const xq_quant_tensor& q) {
  int64_t n_groups = 0, group_size = 0;
  check_description(q, n_groups, group_size);
  if (!q.codes || !q.scales) unsupported("codes or scales missing");
  if (q.g_idx && q.strategy != XQ_STRATEGY_GROUP) unsupported("g_idx needs GROUP strategy");
  Packed p;
  Geometry& g = p.geo;
  g.rows = q.rows;
  g.cols = q.cols;
  g.n_groups = n_groups;
  g.bits = q.bits;
  g.int4 = q.bits <= 4;
  g.has_zeros = q.zero_points != nullptr;
  g.has_perm = q.g_idx != nullptr;
  const int lo = -(1 << (q.bits - 1)), hi = (1 << (q.bits - 1)) - 1;

  // Column order and group ranges.
  g.group_begin.assign(static_cast<size_t>(n_groups + 1), 0);
  if (q.g_idx) {
    std::vector<int64_t> count(static_cast<size_t>(n_groups), 0);
    for (int64_t c = 0; c < q.cols; ++c) {
      if (q.g_idx[c] < 0 || q.g_idx[c] >= n_groups)
        unsupported(format("g_idx[%lld] = %d outside [0, %lld)", static_cast<long long>(c), q.g_idx[c],
                           static_cast<long long>(n_groups)));
      ++count[q.g_idx[c]];
    }
    for (int64_t i = 0; i < n_groups; ++i) g.group_begin[i + 1] = g.group_begin[i] + count[i];
    p.perm.resize(static_cast<size_t>(q.cols));
    std::iota(p.perm.begin(), p.perm.end(), 0);
    std::stable_sort(p.perm.begin(), p.perm.end(), [&](int32_t a, int32_t b) { return q.g_idx[a] < q.g_idx[b]; });
  } else {
    for (int64_t i = 0; i <= n_groups; ++i) g.group_begin[i] = std::min(q.cols, i * group_size);
  }
  finish_geometry(g);

  // Codes (permuted, padded, packed). Padding holds code 0.
  p.codes.assign(static_cast<size_t>(g.codes_bytes()), g.int4 ? 0x88 : 0);
  for (int64_t r = 0; r < q.rows; ++r) {
    const int8_t* src = q.codes + r * q.cols;
    uint8_t* dst = p.codes.data() + r * g.row_bytes;
    for (int64_t gi = 0; gi < n_groups; ++gi) {
      const int64_t p0 = g.block_begin[gi] * kBlock - g.group_begin[gi];
      for (int64_t j = g.group_begin[gi]; j < g.group_begin[gi + 1]; ++j) {
        int8_t v = src[p.perm.empty() ? j : p.perm[j]];
        if (v < lo || v > hi)
          unsupported(format("code %d at row %lld outside the %u-bit range [%d, %d]", v, static_cast<long long>(r),
                             q.bits, lo, hi));
        const int64_t pc = p0 + j;
        if (!g.int4) {
          dst[pc] = static_cast<uint8_t>(v);
        } else {
          uint8_t& b = dst[int4_byte(pc)];
          const uint8_t u = static_cast<uint8_t>(v + 8);
          b = int4_high(pc) ? static_cast<uint8_t>((b & 0x0F) | (u << 4)) : static_cast<uint8_t>((b & 0xF0) | u);
        }
      }
    }
  }
  // Scales and zero points, expanded to [rows * n_groups].
  const size_t ns = static_cast<size_t>(g.scale_count());
  p.scales.resize(ns);
  if (q.zero_points) p.zeros.resize(ns);
  for (size_t i = 0; i < ns; ++i) {
    const size_t src = q.strategy == XQ_STRATEGY_TENSOR ? 0 : i;
    p.scales[i] = q.scales[src];
    if (!std::isfinite(p.scales[i])) unsupported(format("scale #%zu is not finite", src));
    if (q.zero_points) p.zeros[i] = static_cast<float>(q.zero_points[src]);
  }
  return p;
}

// The serialized bytes of a packed weight (the "cpu.int-blocks.v1" segment
// of an xq file).
inline std::vector<uint8_t> serialize(const Packed& p) {
  const Geometry& g = p.geo;
  std::vector<uint8_t> out(static_cast<size_t>(g.total_bytes()), 0);
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.flags = (g.has_perm ? 1u : 0u) | (g.has_zeros ? 2u : 0u);
  h.bits = g.bits;
  h.rows = g.rows;
  h.cols = g.cols;
  h.n_groups = g.n_groups;
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + Geometry::kHeaderBytes, g.group_begin.data(), 8 * g.group_begin.size());
  if (g.has_perm) std::memcpy(out.data() + g.perm_at(), p.perm.data(), 4 * p.perm.size());
  std::memcpy(out.data() + g.codes_at(), p.codes.data(), p.codes.size());
  std::memcpy(out.data() + g.scales_at(), p.scales.data(), 4 * p.scales.size());
  if (g.has_zeros) std::memcpy(out.data() + g.zeros_at(), p.zeros.data(), 4 * p.zeros.size());
  return out;
}

// Serialized bytes, checked, read in place. The large parts (codes, scales,
// zeros) are pointers into the bytes; group ranges and the permutation are
// copied (a few numbers per group / column).
struct View {
  Geometry geo;
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  const float* zeros = nullptr;  // NULL when symmetric
  std::vector<int32_t> perm;     // empty = identity
};

[[noreturn]] inline void malformed(const std::string& why) {
  throw Error(XQ_ERR_MALFORMED, std::string("cpu layout '") + kName + "': " + why);
}

// Checks `nbytes` at `data` against the description `desc` (buffers not
// read): the header, the size each part needs, 4-byte alignment of the floats, group
// ranges that cover the columns in order, a permutation that is one, finite
// scales. Throws Error(XQ_ERR_MALFORMED) naming the part that does not fit.
inline View view(const xq_quant_tensor& desc, const void* data, uint64_t nbytes) {
  int64_t n_groups = 0, group_size = 0;
  check_description(desc, n_groups, group_size);
  View v;
  Geometry& g = v.geo;
  g.rows = desc.rows;
  g.cols = desc.cols;
  g.n_groups = n_groups;
  g.bits = desc.bits;
  g.int4 = desc.bits <= 4;
  const auto* base = static_cast<const uint8_t*>(data);
  if (reinterpret_cast<uintptr_t>(base) % 8 != 0) malformed("data is not 8-byte aligned");
  Header h{};
  if (nbytes < sizeof h) malformed(format("%llu bytes cannot hold the header", static_cast<unsigned long long>(nbytes)));
  std::memcpy(&h, base, sizeof h);
  if (std::memcmp(h.magic, kMagic, 8) != 0) malformed("header magic is not XQCPU1");
  if ((h.flags & ~3u) != 0) malformed(format("header flags 0x%x has unknown bits", h.flags));
  if (h.bits != desc.bits || h.rows != desc.rows || h.cols != desc.cols || h.n_groups != n_groups)
    malformed(format("header (bits %u, rows %lld, cols %lld, n_groups %lld) differs from the tensor's description",
                     h.bits, static_cast<long long>(h.rows), static_cast<long long>(h.cols),
                     static_cast<long long>(h.n_groups)));
  g.has_zeros = (h.flags & 2u) != 0;
  g.has_perm = (h.flags & 1u) != 0;
  const bool has_g_idx = g.has_perm;
  if (g.has_zeros == (desc.symmetric != 0)) malformed("zeros part present/absent against the description's symmetric flag");
  if (has_g_idx && desc.strategy != XQ_STRATEGY_GROUP) malformed("act-order perm needs GROUP strategy");
  // The group ranges come first; every other offset follows from them.
  g.group_begin.assign(static_cast<size_t>(n_groups + 1), 0);
  if ((nbytes - sizeof h) / 8 < g.group_begin.size())
    malformed(format("%llu bytes cannot hold group_begin", static_cast<unsigned long long>(nbytes)));
  std::memcpy(g.group_begin.data(), base + sizeof h, 8 * g.group_begin.size());
  if (g.group_begin[0] != 0 || g.group_begin[n_groups] != g.cols) malformed("group_begin does not span [0, cols]");
  for (int64_t i = 0; i < n_groups; ++i) {
    const int64_t width = g.group_begin[i + 1] - g.group_begin[i];
    // Without act-order the ranges are the description's own grouping.
    if (width < 0 || (!has_g_idx && g.group_begin[i] != std::min(g.cols, i * group_size)))
      malformed(format("group_begin[%lld] = %lld does not fit the grouping", static_cast<long long>(i),
                       static_cast<long long>(g.group_begin[i])));
  }
  finish_geometry(g);
  if (g.total_bytes() != nbytes)
    malformed(format("%llu bytes, but group ranges%s, rows %lld x row_bytes %lld, scales%s need %llu",
                     static_cast<unsigned long long>(nbytes), g.has_perm ? ", perm" : "",
                     static_cast<long long>(g.rows), static_cast<long long>(g.row_bytes),
                     g.has_zeros ? ", zeros" : "", static_cast<unsigned long long>(g.total_bytes())));
  v.codes = base + g.codes_at();
  v.scales = reinterpret_cast<const float*>(base + g.scales_at());
  if (g.has_zeros) v.zeros = reinterpret_cast<const float*>(base + g.zeros_at());
  for (uint64_t i = 0; i < g.scale_count(); ++i)
    if (!std::isfinite(v.scales[i])) malformed(format("scale #%llu is not finite", static_cast<unsigned long long>(i)));
  if (g.has_perm) {
    v.perm.resize(static_cast<size_t>(g.cols));
    std::memcpy(v.perm.data(), base + g.perm_at(), 4 * v.perm.size());
    std::vector<uint8_t> seen(static_cast<size_t>(g.cols), 0);
    for (int64_t j = 0; j < g.cols; ++j) {
      const int32_t c = v.perm[j];
      if (c < 0 || c >= g.cols || seen[c]) malformed(format("perm[%lld] = %d is not a permutation entry", static_cast<long long>(j), c));
      seen[c] = 1;
    }
  }
  return v;
}

}  // namespace xquant::sdk::cpu_layout
