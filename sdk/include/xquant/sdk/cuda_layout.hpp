// cuda_layout.hpp: the `cuda` kernel provider's packed quantized-weight
// layouts as pure host code: the description checks, the host packing of a
// canonical tensor (byte-identical to what the provider's prepare packs on
// the device: plugins/cuda/src/w4a16_layout.cu k_w4_pack and
// k_w4_pack_scales), the serialized form and a checked view over it.
//
// It lives in the SDK (header-only, no CUDA) so that the `xq` writer stores
// the bytes and the `cuda` provider adopts them (qweight_adopt: uploaded as
// they are) without either plugin linking the other.
//
// Layouts (plugins/cuda/src/kernels.hpp documents the W4 one):
//   cuda.w4a16-mma.v1      weight-only 2..4-bit: uint4 words
//                          [n_blocks][chunks][8 tiles][32 lanes] (the lane's
//                          four mma.m16n8k16 A fragments as unsigned nibbles
//                          code + 8), scale/zero words uint2
//                          [n_blocks][n_groups][8][8] once in bf16 and once in
//                          f16, and the act-order column permutation.
//   cuda.w8a8-int8-nk.v1   W8A8 INT8: int8 codes [N][K], f32 row scales [N].
//   cuda.w8a8-fp8-nk.v1    W8A8 FP8: E4M3 bytes [N][K], f32 row scales [N].
//
// Serialized bytes (each part at a multiple of 64 from the start):
//   header   64 bytes: "XQCUDA1\0", u32 kind (1 W4, 2 INT8, 3 FP8), u32 flags
//            (1: act-order perm present, 2: F32 DEQUANTIZE reads the f16
//            scale words), i64 rows, cols, n_groups, i32 gs_shift
//            (little-endian; checked against the description)
//   W4:      qw, sz_bf16, sz_f16, perm (cols int32, act-order only)
//   W8/FP8:  codes (rows * cols bytes), row scales (rows f32)
#pragma once

#include <xquant/sdk/error.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/xq_tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace xquant::sdk::cuda_layout {

inline constexpr const char* kW4Name = "cuda.w4a16-mma.v1";
inline constexpr const char* kInt8Name = "cuda.w8a8-int8-nk.v1";
inline constexpr const char* kFp8Name = "cuda.w8a8-fp8-nk.v1";
inline constexpr uint64_t kAlign = 64;
inline constexpr char kMagic[8] = {'X', 'Q', 'C', 'U', 'D', 'A', '1', 0};

inline bool is_layout_name(const std::string& s) { return s == kW4Name || s == kInt8Name || s == kFp8Name; }
inline uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

enum class Kind : uint32_t { W4 = 1, Int8 = 2, Fp8 = 3 };
inline constexpr uint32_t kFlagPerm = 1, kFlagF32DequantF16 = 2;

struct Header {
  char magic[8];
  uint32_t kind;
  uint32_t flags;
  int64_t rows, cols, n_groups;
  int32_t gs_shift;
  uint8_t zero[20];
};
static_assert(sizeof(Header) == 64, "cuda layout header is 64 bytes");

// Everything but the data: the kernels' W4Layout fields plus part offsets.
struct Geometry {
  Kind kind = Kind::W4;
  int64_t N = 0, K = 0;
  int64_t n_tiles = 0, n_blocks = 0, chunks = 0, n_groups = 1;
  int gs_shift = 31;  // log2(group size); 31 for one group per row
  bool has_perm = false;

  uint64_t qw_words() const { return static_cast<uint64_t>(n_blocks * 8 * chunks * 32); }  // uint4 words
  uint64_t sz_words() const { return static_cast<uint64_t>(n_groups * n_blocks * 64); }    // uint2 words
  static constexpr uint64_t kHeaderBytes = 64;
  // W4 parts.
  uint64_t qw_at() const { return kHeaderBytes; }
  uint64_t sz_bf16_at() const { return align_up(qw_at() + 16 * qw_words()); }
  uint64_t sz_f16_at() const { return align_up(sz_bf16_at() + 8 * sz_words()); }
  uint64_t perm_at() const { return align_up(sz_f16_at() + 8 * sz_words()); }
  // W8/FP8 parts.
  uint64_t codes_at() const { return kHeaderBytes; }
  uint64_t row_scales_at() const { return align_up(codes_at() + static_cast<uint64_t>(N * K)); }
  uint64_t total_bytes() const {
    if (kind == Kind::W4) return has_perm ? align_up(perm_at() + 4 * static_cast<uint64_t>(K)) : perm_at();
    return align_up(row_scales_at() + 4 * static_cast<uint64_t>(N));
  }
};

[[noreturn]] inline void unsupported(const std::string& why) { throw Error(XQ_ERR_UNSUPPORTED, "cuda: " + why); }

inline std::string shape_text(int64_t n, int64_t k) {
  return "[" + std::to_string(n) + "," + std::to_string(k) + "]";
}

// The layout the provider packs `q` into, from its description only (no
// buffer is read except g_idx when present, to tell a trivial act-order
// from a real one): the same refusals as the provider's prepare
// (plugins/cuda/src/provider.cpp), with the same reasons.
inline Geometry geometry(const xq_quant_tensor& q, bool has_act_order_perm) {
  if (q.rows <= 0 || q.cols <= 0) throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: quant tensor with an empty shape");
  Geometry g;
  g.N = q.rows;
  g.K = q.cols;
  g.n_groups = q.strategy == XQ_STRATEGY_TENSOR ? 1 : q.n_groups;
  if (q.act_scheme == XQ_ACT_NONE) {
    if (q.bits == XQ_BITS_F8_E4M3) unsupported("FP8 weight-only has no kernel here (FP8 runs as W8A8 dynamic)");
    if (q.bits < 2 || q.bits > 4)
      unsupported("weight-only " + std::to_string(q.bits) + "-bit weights unsupported (" + kW4Name + " takes 2-4 bits)");
    if (q.strategy == XQ_STRATEGY_GROUP && g.n_groups > 1) {
      const int64_t gs = q.group_size;
      if (gs < 16 || (gs & (gs - 1)) != 0)
        unsupported(std::string(kW4Name) + " needs a power-of-two group size >= 16, got " + std::to_string(gs));
      g.gs_shift = 0;
      while ((int64_t{1} << g.gs_shift) < gs) ++g.gs_shift;
      if (g.n_groups != (g.K + gs - 1) / gs)
        throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: n_groups != ceil(cols / group_size)");
    } else if (q.strategy == XQ_STRATEGY_BLOCK) {
      unsupported("block strategy unsupported");
    }
    g.kind = Kind::W4;
    g.n_tiles = (g.N + 15) / 16;
    g.n_blocks = (g.n_tiles + 7) / 8;
    g.chunks = (g.K + 63) / 64;
    g.has_perm = has_act_order_perm && g.gs_shift < 31;
    return g;
  }
  if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN && q.act_scheme != XQ_ACT_STATIC_TENSOR)
    unsupported("activation scheme " + std::to_string(static_cast<int>(q.act_scheme)) + " unsupported");
  const bool fp8 = q.bits == XQ_BITS_F8_E4M3;
  const char* name = fp8 ? kFp8Name : kInt8Name;
  if (fp8) {
    if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN || q.act_bits != XQ_BITS_F8_E4M3)
      unsupported("FP8 weights run with dynamic per-token FP8 activations only");
    if (!q.symmetric || has_act_order_perm || (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR))
      unsupported(std::string(name) + " takes symmetric per-channel or per-tensor FP8 weights");
  } else {
    if (q.act_bits != 8) unsupported(std::to_string(q.act_bits) + "-bit activations unsupported (W8A8 only)");
    if (q.bits < 2 || q.bits > 8 || !q.symmetric || has_act_order_perm)
      unsupported(std::string(name) + " takes symmetric 2-8 bit weights without act-order");
    if (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR)
      unsupported(std::string(name) + " takes per-channel or per-tensor weight scales");
    if (q.act_scheme == XQ_ACT_STATIC_TENSOR && !(q.input_scale > 0.f))
      throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: static activation scheme needs input_scale > 0");
  }
  if (g.K % 16 != 0 || g.N % 16 != 0)
    unsupported(std::string(name) + " needs K and N multiples of 16 (cuBLASLt " + (fp8 ? "FP8" : "INT8") + "), got " +
                shape_text(g.N, g.K));
  g.kind = fp8 ? Kind::Fp8 : Kind::Int8;
  g.n_groups = 1;
  return g;
}

inline const char* name_of(Kind k) { return k == Kind::W4 ? kW4Name : k == Kind::Int8 ? kInt8Name : kFp8Name; }

// The act-order permutation of a W4 weight: native column c reads canonical
// column perm[c] (columns stably sorted by group); empty when g_idx is
// absent or already in group order.
inline std::vector<int32_t> act_order_perm(const xq_quant_tensor& q, int gs_shift) {
  std::vector<int32_t> perm;
  if (!q.g_idx || gs_shift >= 31) return perm;
  bool trivial = true;
  for (int64_t c = 0; c < q.cols; ++c) trivial = trivial && q.g_idx[c] == (c >> gs_shift);
  if (trivial) return perm;
  perm.resize(static_cast<size_t>(q.cols));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return q.g_idx[a] < q.g_idx[b]; });
  for (int64_t c = 0; c < q.cols; ++c)
    if (q.g_idx[perm[c]] != (c >> gs_shift))
      unsupported("act-order g_idx must give every group exactly group_size columns (group " +
                  std::to_string(q.g_idx[perm[c]]) + " at sorted column " + std::to_string(c) + ")");
  return perm;
}

// The packed weight: geometry, flags and the serialized bytes.
struct Packed {
  Geometry g;
  uint32_t flags = 0;
  std::vector<uint8_t> bytes;
};

namespace detail {

inline void write_header(const Geometry& g, uint32_t flags, uint8_t* out) {
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.kind = static_cast<uint32_t>(g.kind);
  h.flags = flags;
  h.rows = g.N;
  h.cols = g.K;
  h.n_groups = g.n_groups;
  h.gs_shift = g.gs_shift;
  std::memcpy(out, &h, sizeof h);
}

inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// k_w4_pack: lane `lane` of tile (n-block, t8) in chunk `chunk` holds, for
// k-tile kt, the word whose nibble 4j + 16e is the code at row
// nt*16 + gid + 8*(j&1), native column chunk*64 + kt*16 + 2*tig + 8*(j>>1) + e.
inline void pack_w4_codes(const Geometry& g, const int8_t* codes, const int32_t* perm, uint8_t* qw) {
  for (int64_t nb = 0; nb < g.n_blocks; ++nb)
    for (int64_t chunk = 0; chunk < g.chunks; ++chunk)
      for (int t8 = 0; t8 < 8; ++t8) {
        const int64_t nt = nb * 8 + t8;
        for (int lane = 0; lane < 32; ++lane) {
          const int gid = lane >> 2, tig = lane & 3;
          const uint64_t idx = static_cast<uint64_t>(((nb * g.chunks + chunk) * 8 + t8) * 32 + lane);
          for (int kt = 0; kt < 4; ++kt) {
            uint32_t w = 0;
            for (int j = 0; j < 4; ++j)
              for (int e = 0; e < 2; ++e) {
                const int64_t row = nt * 16 + gid + 8 * (j & 1);
                const int64_t col = chunk * 64 + kt * 16 + 2 * tig + 8 * (j >> 1) + e;
                int code = 0;
                if (row < g.N && col < g.K) code = codes[row * g.K + (perm ? perm[col] : col)];
                w |= (static_cast<uint32_t>(code + 8) & 0xFu) << (4 * j + 16 * e);
              }
            store_u32(qw + idx * 16 + 4 * kt, w);
          }
        }
      }
}

// k_w4_pack_scales: word (n-block, group, t8, gid) holds rows r = nt*16 + gid
// and r + 8: {scale_r | scale_r8 << 16, zb_r | zb_r8 << 16}, zb = 136 + z in
// bf16 and 1032 + z in f16 (round to nearest even, as __float2bfloat16_rn
// and __float2half_rn).
inline void pack_w4_scales(const Geometry& g, const std::vector<float>& scales, const std::vector<int8_t>& zps,
                           uint8_t* sz_bf16, uint8_t* sz_f16) {
  for (int64_t nb = 0; nb < g.n_blocks; ++nb)
    for (int64_t grp = 0; grp < g.n_groups; ++grp)
      for (int t8 = 0; t8 < 8; ++t8)
        for (int gid = 0; gid < 8; ++gid) {
          const int64_t nt = nb * 8 + t8;
          float s[2];
          int z[2];
          for (int h = 0; h < 2; ++h) {
            const int64_t row = nt * 16 + gid + 8 * h;
            s[h] = row < g.N ? scales[static_cast<size_t>(row * g.n_groups + grp)] : 0.f;
            z[h] = (row < g.N && !zps.empty()) ? zps[static_cast<size_t>(row * g.n_groups + grp)] : 0;
          }
          const uint64_t idx = static_cast<uint64_t>(((nb * g.n_groups + grp) * 8 + t8) * 8 + gid);
          auto pair = [](uint16_t lo, uint16_t hi) { return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16); };
          store_u32(sz_bf16 + idx * 8, pair(f32_to_bf16(s[0]), f32_to_bf16(s[1])));
          store_u32(sz_bf16 + idx * 8 + 4, pair(f32_to_bf16(136.f + z[0]), f32_to_bf16(136.f + z[1])));
          store_u32(sz_f16 + idx * 8, pair(f32_to_f16(s[0]), f32_to_f16(s[1])));
          store_u32(sz_f16 + idx * 8 + 4, pair(f32_to_f16(1032.f + z[0]), f32_to_f16(1032.f + z[1])));
        }
}

}  // namespace detail

// Packs canonical `q` (codes, scales, zero points, g_idx read) into the
// layout the provider's prepare would use; throws Error(XQ_ERR_UNSUPPORTED)
// for a tensor the provider refuses, naming why.
inline Packed pack(const xq_quant_tensor& q) {
  if (!q.codes || !q.scales) throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: quant tensor without codes/scales");
  // Zero points count when present and not declared symmetric (as prepare reads them).
  xq_quant_tensor d = q;
  d.symmetric = (!q.symmetric && q.zero_points) ? 0 : 1;
  Geometry g = geometry(d, q.g_idx != nullptr);
  const int64_t N = g.N, K = g.K, G = g.n_groups;
  // Scales and zero points per row ([N][G]); TENSOR broadcasts its one value.
  std::vector<float> scales(static_cast<size_t>(N * G));
  std::vector<int8_t> zps;
  const bool tensor = q.strategy == XQ_STRATEGY_TENSOR;
  for (int64_t i = 0; i < N * G; ++i) scales[static_cast<size_t>(i)] = tensor ? q.scales[0] : q.scales[i];
  if (!q.symmetric && q.zero_points) {
    zps.resize(scales.size());
    for (int64_t i = 0; i < N * G; ++i) zps[static_cast<size_t>(i)] = tensor ? q.zero_points[0] : q.zero_points[i];
  }
  Packed p;
  if (g.kind == Kind::W4) {
    for (int64_t i = 0; i < N * K; ++i)
      if (q.codes[i] < -8 || q.codes[i] > 7)
        throw Error(XQ_ERR_INVALID_ARGUMENT,
                    "cuda: code " + std::to_string(q.codes[i]) + " outside the 4-bit range at " + std::to_string(i));
    for (int8_t z : zps)
      if (z < -64 || z > 64) unsupported("zero point " + std::to_string(z) + " outside [-64, 64]");
    const std::vector<int32_t> perm = act_order_perm(q, g.gs_shift);
    g.has_perm = !perm.empty();
    bool scales_fit_f16 = true;
    for (float s : scales) scales_fit_f16 = scales_fit_f16 && std::fabs(s) < 65504.f && (s == 0.f || std::fabs(s) >= 6.2e-5f);
    const bool f32_uses_f16 = q.scale_dtype == XQ_DTYPE_F16 || (q.scale_dtype == XQ_DTYPE_F32 && scales_fit_f16);
    p.flags = (g.has_perm ? kFlagPerm : 0u) | (f32_uses_f16 ? kFlagF32DequantF16 : 0u);
    p.bytes.assign(g.total_bytes(), 0);
    detail::pack_w4_codes(g, q.codes, perm.empty() ? nullptr : perm.data(), p.bytes.data() + g.qw_at());
    detail::pack_w4_scales(g, scales, zps, p.bytes.data() + g.sz_bf16_at(), p.bytes.data() + g.sz_f16_at());
    if (g.has_perm) std::memcpy(p.bytes.data() + g.perm_at(), perm.data(), perm.size() * 4);
  } else {
    if (g.kind == Kind::Fp8)
      for (int64_t i = 0; i < N * K; ++i)
        if ((static_cast<uint8_t>(q.codes[i]) & 0x7F) == 0x7F)
          throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: NaN FP8 code at element " + std::to_string(i));
    p.bytes.assign(g.total_bytes(), 0);
    std::memcpy(p.bytes.data() + g.codes_at(), q.codes, static_cast<size_t>(N * K));
    std::memcpy(p.bytes.data() + g.row_scales_at(), scales.data(), static_cast<size_t>(N) * 4);
  }
  detail::write_header(g, p.flags, p.bytes.data());
  p.g = g;
  return p;
}

// A checked view over serialized bytes for the tensor `desc` describes
// (buffers unread). Pointers point into `data`.
struct View {
  Geometry g;
  uint32_t flags = 0;
  const uint8_t* qw = nullptr;
  const uint8_t* sz_bf16 = nullptr;
  const uint8_t* sz_f16 = nullptr;
  const int32_t* perm = nullptr;
  const uint8_t* codes = nullptr;
  const float* row_scales = nullptr;
};

[[noreturn]] inline void malformed(const std::string& layout, const std::string& part, const std::string& why) {
  throw Error(XQ_ERR_MALFORMED, layout + " " + part + ": " + why);
}

// Checks the header against `desc` (shape, groups, kind), the total size and
// the act-order permutation (a permutation of 0..cols-1 that keeps every
// group's columns contiguous in native order); never reads past `nbytes`.
inline View view(const xq_quant_tensor& desc, const void* data, uint64_t nbytes) {
  const auto* b = static_cast<const uint8_t*>(data);
  Header h{};
  if (!b || nbytes < sizeof h) malformed("cuda layout", "header", "needs 64 bytes, got " + std::to_string(nbytes));
  std::memcpy(&h, b, sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) malformed("cuda layout", "header.magic", "not XQCUDA1");
  if (h.kind < 1 || h.kind > 3) malformed("cuda layout", "header.kind", std::to_string(h.kind) + " is not 1, 2 or 3");
  const char* name = name_of(static_cast<Kind>(h.kind));
  if (h.flags & ~(kFlagPerm | kFlagF32DequantF16)) malformed(name, "header.flags", "unknown bits " + std::to_string(h.flags));
  Geometry g = geometry(desc, (h.flags & kFlagPerm) != 0);
  if (static_cast<uint32_t>(g.kind) != h.kind)
    malformed(name, "header.kind", std::string("the description packs into ") + name_of(g.kind));
  if (h.rows != g.N || h.cols != g.K || h.n_groups != g.n_groups || h.gs_shift != g.gs_shift)
    malformed(name, "header", "shape " + shape_text(h.rows, h.cols) + ", " + std::to_string(h.n_groups) +
                                  " groups, gs_shift " + std::to_string(h.gs_shift) + " do not match the description " +
                                  shape_text(g.N, g.K) + ", " + std::to_string(g.n_groups) + ", " + std::to_string(g.gs_shift));
  if ((h.flags & kFlagPerm) && g.kind != Kind::W4) malformed(name, "header.flags", "a permutation without act-order");
  if ((h.flags & kFlagPerm) && !g.has_perm) malformed(name, "header.flags", "a permutation with one group per row");
  if (nbytes != g.total_bytes())
    malformed(name, "size", std::to_string(nbytes) + " bytes, the description needs " + std::to_string(g.total_bytes()));
  View v;
  v.g = g;
  v.flags = h.flags;
  if (g.kind != Kind::W4) {
    v.codes = b + g.codes_at();
    v.row_scales = reinterpret_cast<const float*>(b + g.row_scales_at());
    return v;
  }
  v.qw = b + g.qw_at();
  v.sz_bf16 = b + g.sz_bf16_at();
  v.sz_f16 = b + g.sz_f16_at();
  if (g.has_perm) {
    v.perm = reinterpret_cast<const int32_t*>(b + g.perm_at());
    std::vector<uint8_t> seen(static_cast<size_t>(g.K), 0);
    for (int64_t c = 0; c < g.K; ++c) {
      const int32_t p = v.perm[c];
      if (p < 0 || p >= g.K || seen[static_cast<size_t>(p)]++)
        malformed(name, "perm", "entry " + std::to_string(c) + " (" + std::to_string(p) + ") is not a permutation of 0.." +
                                    std::to_string(g.K - 1));
    }
  }
  return v;
}

// ---- several stored weights as one, by placement --------------------------
// The weight whose rows are parts[0]'s, then parts[1]'s, ... (a q|k|v or
// gate|up GEMM) in this layout is the parts' arrays placed one after another:
// W4 weights are n-block-major (tile words [n_blocks][chunks][8][32], scale
// words [n_blocks][n_groups][8][8]), so a part whose rows fill whole n-blocks
// (a multiple of 128) ends where the next begins; W8A8 weights are row-major.
// So a provider adopts stored parts stacked by copying each to its offset,
// nothing re-encoded, and gets the bytes pack() gives for the rows stacked in
// the canonical form (tests/formats/test_xq_cuda_layout.cpp checks that).
// Refused (Error XQ_ERR_UNSUPPORTED naming why) where placement cannot do
// it: different kinds, columns or groups; an act-order permutation (one per
// part, as the engine's canonical stacking refuses too); a part before the
// last whose rows end inside an n-block.
struct StackPlan {
  Geometry g;                 // the stacked weight
  uint32_t flags = 0;         // its header flags
  std::vector<int64_t> row0;  // each part's first row in it
};

inline StackPlan stack_plan(const std::vector<View>& parts) {
  if (parts.empty()) unsupported("stacking: no parts");
  const Geometry& a = parts[0].g;
  StackPlan plan;
  plan.g = a;
  plan.g.N = 0;
  plan.flags = parts[0].flags;
  for (size_t p = 0; p < parts.size(); ++p) {
    const Geometry& g = parts[p].g;
    const std::string at = "stacking part " + std::to_string(p) + ": ";
    if (g.kind != a.kind || g.K != a.K || g.n_groups != a.n_groups || g.gs_shift != a.gs_shift)
      unsupported(at + "another kind, column count or grouping than part 0");
    if (parts[p].flags & kFlagPerm) unsupported(at + "an act-order permutation (each part has its own)");
    if (a.kind == Kind::W4 && p + 1 < parts.size() && g.N % 128 != 0)
      unsupported(at + std::to_string(g.N) + " rows end inside a 128-row n-block");
    plan.row0.push_back(plan.g.N);
    plan.g.N += g.N;
    plan.flags &= parts[p].flags;  // F32 DEQUANTIZE reads the f16 words only where every part's fit
  }
  plan.g.n_tiles = (plan.g.N + 15) / 16;
  plan.g.n_blocks = (plan.g.n_tiles + 7) / 8;
  return plan;
}

// Where part p's arrays start inside the stacked weight's (bytes from the
// start of each array, not of the serialized form).
inline uint64_t stacked_qw_offset(const Geometry& g, int64_t row0) {
  return static_cast<uint64_t>(row0 / 128 * g.chunks * 8 * 32) * 16;
}
inline uint64_t stacked_sz_offset(const Geometry& g, int64_t row0) {
  return static_cast<uint64_t>(row0 / 128 * g.n_groups * 64) * 8;
}

// The stacked weight serialized, by placement (the host reference of what a
// provider does on its device with the same offsets).
inline Packed stack(const std::vector<View>& parts, const StackPlan& plan) {
  const Geometry& g = plan.g;
  Packed out;
  out.g = g;
  out.flags = plan.flags;
  out.bytes.assign(g.total_bytes(), 0);
  uint8_t* b = out.bytes.data();
  for (size_t p = 0; p < parts.size(); ++p) {
    const View& v = parts[p];
    const int64_t r0 = plan.row0[p];
    if (g.kind == Kind::W4) {
      std::memcpy(b + g.qw_at() + stacked_qw_offset(g, r0), v.qw, 16 * v.g.qw_words());
      std::memcpy(b + g.sz_bf16_at() + stacked_sz_offset(g, r0), v.sz_bf16, 8 * v.g.sz_words());
      std::memcpy(b + g.sz_f16_at() + stacked_sz_offset(g, r0), v.sz_f16, 8 * v.g.sz_words());
    } else {
      std::memcpy(b + g.codes_at() + static_cast<uint64_t>(r0 * g.K), v.codes, static_cast<size_t>(v.g.N * v.g.K));
      std::memcpy(b + g.row_scales_at() + 4 * static_cast<uint64_t>(r0), v.row_scales, 4 * static_cast<size_t>(v.g.N));
    }
  }
  detail::write_header(g, plan.flags, b);
  return out;
}

}  // namespace xquant::sdk::cuda_layout
