// reader.cpp: see reader.hpp.
#include "reader.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/tensor.hpp>

#include <cstring>
#include <optional>

namespace xquant::hfq {
namespace {

struct Stored {
  std::string name;
  xq_tensor_view v{};
  const unsigned char* bytes() const { return static_cast<const unsigned char*>(v.data); }
  std::string shape_text() const {
    std::string s = "[";
    for (uint32_t d = 0; d < v.ndim; ++d) s += (d ? ", " : "") + std::to_string(v.shape[d]);
    return s + "]";
  }
};

std::optional<Stored> find(const xq_tensor_source& src, const std::string& name) {
  Stored out;
  out.name = name;
  out.v.struct_size = sizeof(out.v);
  xq_status s = src.find(src.ctx, name.c_str(), &out.v);
  if (s == XQ_ERR_NOT_FOUND) return std::nullopt;
  if (s != XQ_OK) throw sdk::Error(s, "cannot read stored tensor '" + name + "'");
  return out;
}

const char* dtype_text(xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F32: return "F32";
    case XQ_DTYPE_F16: return "F16";
    case XQ_DTYPE_BF16: return "BF16";
    case XQ_DTYPE_I8: return "I8";
    case XQ_DTYPE_I32: return "I32";
    case XQ_DTYPE_I64: return "I64";
    default: return "another dtype";
  }
}

[[noreturn]] void bad(Kind k, const std::string& tensor, const std::string& what) {
  throw sdk::Error(XQ_ERR_MALFORMED, std::string(kind_name(k)) + " tensor '" + tensor + "': " + what);
}

std::string dims(int64_t a, int64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }

// A 2-D tensor of `dtype_ok` and exactly [a, b].
void expect_2d(Kind k, const Stored& t, bool dtype_ok, const char* dtype_want, int64_t a, int64_t b) {
  if (!dtype_ok) bad(k, t.name, std::string("must be ") + dtype_want + ", got " + dtype_text(t.v.dtype));
  if (t.v.ndim != 2 || t.v.shape[0] != a || t.v.shape[1] != b)
    bad(k, t.name, "is " + t.shape_text() + ", expected " + dims(a, b));
}

bool is_float(xq_dtype t) { return t == XQ_DTYPE_F32 || t == XQ_DTYPE_F16 || t == XQ_DTYPE_BF16; }

float float_at(const Stored& t, int64_t i) {
  uint16_t h;
  if (t.v.dtype == XQ_DTYPE_F32) {
    float f;
    std::memcpy(&f, t.bytes() + 4 * i, 4);
    return f;
  }
  std::memcpy(&h, t.bytes() + 2 * i, 2);
  return t.v.dtype == XQ_DTYPE_F16 ? sdk::f16_to_f32(h) : sdk::bf16_to_f32(h);
}

}  // namespace

void read_module(const sdk::Host& host, const Settings& s, const xq_tensor_source& src, const std::string& module,
                 xq_quant_tensor& out) {
  const Kind k = s.kind;
  auto qweight = find(src, module + ".qweight");
  if (!qweight) throw sdk::Error(XQ_ERR_NOT_FOUND, "module '" + module + "' is stored dense");
  auto qzeros = find(src, module + ".qzeros");
  auto scales = find(src, module + ".scales");
  if (!qzeros) bad(k, module + ".qzeros", "is missing (every " + std::string(kind_name(k)) + " Linear stores one)");
  if (!scales) bad(k, module + ".scales", "is missing");
  const uint32_t bits = s.bits;
  const int64_t per = pack_factor(bits);

  // Logical [rows = out, cols = in] from qweight.
  if (qweight->v.dtype != XQ_DTYPE_I32 || qweight->v.ndim != 2)
    bad(k, qweight->name, std::string("must be a 2-D I32 tensor, got ") + dtype_text(qweight->v.dtype) + " " +
                              qweight->shape_text());
  const int64_t rows = k == Kind::kAwq ? qweight->v.shape[1] * per : qweight->v.shape[1];
  const int64_t cols = k == Kind::kAwq ? qweight->v.shape[0] : qweight->v.shape[0] * per;
  if (rows <= 0 || cols <= 0) bad(k, qweight->name, "has an empty dimension: " + qweight->shape_text());
  const bool channel = s.group_size == -1;
  const int64_t group_size = channel ? cols : s.group_size;
  const int64_t n_groups = (cols + group_size - 1) / group_size;
  if (rows % per != 0) bad(k, qzeros->name, "output width " + std::to_string(rows) + " is not a multiple of " +
                                                std::to_string(per) + " (qzeros packs it)");
  expect_2d(k, *scales, is_float(scales->v.dtype), "F16, BF16 or F32", n_groups, rows);
  expect_2d(k, *qzeros, qzeros->v.dtype == XQ_DTYPE_I32, "I32", n_groups, rows / per);

  sdk::QuantTensor owner(host);  // frees the buffers if reading fails halfway
  xq_quant_tensor& q = owner.get();
  q.bits = bits;
  q.strategy = channel ? XQ_STRATEGY_CHANNEL : XQ_STRATEGY_GROUP;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group_size;
  q.n_groups = n_groups;
  q.scale_dtype = scales->v.dtype;
  q.act_scheme = XQ_ACT_NONE;
  const int mid = 1 << (bits - 1);

  // Codes: stored transposed ([in, out]); canonical is [out, in], signed.
  std::vector<uint8_t> u = k == Kind::kAwq ? unpack_columns(qweight->bytes(), cols, rows, bits, true)
                                           : unpack_rows(qweight->bytes(), cols, rows, bits);
  q.codes = host.alloc<int8_t>(static_cast<size_t>(rows * cols));
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r)
      q.codes[r * cols + c] = static_cast<int8_t>(static_cast<int>(u[static_cast<size_t>(c * rows + r)]) - mid);

  // Scales and zero points: stored [groups, out]; canonical [out, groups].
  q.scales = host.alloc<float>(static_cast<size_t>(rows * n_groups));
  for (int64_t g = 0; g < n_groups; ++g)
    for (int64_t r = 0; r < rows; ++r) q.scales[r * n_groups + g] = float_at(*scales, g * rows + r);
  std::vector<uint8_t> zu = unpack_columns(qzeros->bytes(), n_groups, rows, bits, k == Kind::kAwq);
  const int v1_offset = k == Kind::kGptq && !s.v2 ? 1 : 0;
  q.zero_points = host.alloc<int8_t>(static_cast<size_t>(rows * n_groups));
  bool all_mid = true;
  for (int64_t g = 0; g < n_groups; ++g)
    for (int64_t r = 0; r < rows; ++r) {
      const int z = zu[static_cast<size_t>(g * rows + r)] + v1_offset;
      if (z >= (1 << bits))
        bad(k, qzeros->name, "stored zero point " + std::to_string(z - v1_offset) + " at group " + std::to_string(g) +
                                 ", output " + std::to_string(r) + " is " + std::to_string(z) +
                                 " after the GPTQ v1 offset of 1, outside the " + std::to_string(bits) +
                                 "-bit range (is the checkpoint gptq_v2?)");
      q.zero_points[r * n_groups + g] = static_cast<int8_t>(z - mid);
      all_mid = all_mid && z == mid;
    }
  if (all_mid) {
    host.free(q.zero_points);
    q.zero_points = nullptr;
  }
  q.symmetric = q.zero_points ? 0 : 1;

  // g_idx (GPTQ): NULL when it is the plain c / group_size grouping.
  if (k == Kind::kGptq) {
    if (auto gi = find(src, module + ".g_idx")) {
      const bool dtype_ok = gi->v.dtype == XQ_DTYPE_I32 || gi->v.dtype == XQ_DTYPE_I64;
      if (!dtype_ok || gi->v.ndim != 1 || gi->v.shape[0] != cols)
        bad(k, gi->name, "must be I32 [" + std::to_string(cols) + "], got " + dtype_text(gi->v.dtype) + " " +
                             gi->shape_text());
      std::vector<int32_t> g_idx(static_cast<size_t>(cols));
      bool trivial = true;
      for (int64_t c = 0; c < cols; ++c) {
        int64_t v;
        if (gi->v.dtype == XQ_DTYPE_I64) std::memcpy(&v, gi->bytes() + 8 * c, 8);
        else {
          int32_t v32;
          std::memcpy(&v32, gi->bytes() + 4 * c, 4);
          v = v32;
        }
        if (v < 0 || v >= n_groups)
          bad(k, gi->name, "entry " + std::to_string(c) + " = " + std::to_string(v) + " is not a group of " +
                               std::to_string(n_groups));
        g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(v);
        trivial = trivial && v == c / group_size;
      }
      if (!trivial && !s.desc_act)
        bad(k, gi->name, "is an act-order permutation but quantization_config.desc_act is false");
      if (!trivial) {
        q.g_idx = host.alloc<int32_t>(static_cast<size_t>(cols));
        std::memcpy(q.g_idx, g_idx.data(), static_cast<size_t>(cols) * 4);
      }
    }
  }
  out = owner.release();  // ownership passed to `out`
}

}  // namespace xquant::hfq
