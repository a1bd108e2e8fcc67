// canonical_codec.cpp: see canonical_codec.hpp.
#include "canonical_codec.hpp"

#include "code_formats.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <cstring>

namespace xquant::xqc {

using sdk::format;

namespace {

size_t scale_size(xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F32: return 4;
    case XQ_DTYPE_F16:
    case XQ_DTYPE_BF16: return 2;
    default: throw sdk::Error(XQ_ERR_UNSUPPORTED, format("scale dtype %d is not F32, F16 or BF16", static_cast<int>(t)));
  }
}

void put_scale(uint8_t* dst, xq_dtype t, float v) {
  if (t == XQ_DTYPE_F32) {
    std::memcpy(dst, &v, 4);
    return;
  }
  const uint16_t h = t == XQ_DTYPE_F16 ? sdk::f32_to_f16(v) : sdk::f32_to_bf16(v);
  std::memcpy(dst, &h, 2);
}

float get_scale(const uint8_t* src, xq_dtype t) {
  if (t == XQ_DTYPE_F32) {
    float v;
    std::memcpy(&v, src, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, src, 2);
  return t == XQ_DTYPE_F16 ? sdk::f16_to_f32(h) : sdk::bf16_to_f32(h);
}

}  // namespace

namespace {

// Codes as the canonical segment stores them: bits <= 4 two per byte
// (element 2k in the low nibble, each as code + 8), 5..8 bits one int8 each,
// FP8 E4M3 one E4M3FN byte each, as they are (the bytes of safetensors'
// F8_E4M3 and of compressed-tensors' float-quantized weight).
void encode_codes(const xq_quant_tensor& q, uint8_t* out) {
  const uint64_t n = static_cast<uint64_t>(q.rows * q.cols);
  if (sdk::is_e4m3_code(q.bits)) {
    // 0x7f and 0xff are E4M3FN's NaNs: no quantizer makes them, and
    // compressed-tensors' writer refuses them too.
    for (uint64_t i = 0; i < n; ++i)
      if ((static_cast<uint8_t>(q.codes[i]) & 0x7F) == 0x7F)
        throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, format("FP8 E4M3 code at element %llu is NaN",
                                                         static_cast<unsigned long long>(i)));
    std::memcpy(out, q.codes, static_cast<size_t>(n));
    return;
  }
  const int lo = -(1 << (q.bits - 1)), hi = (1 << (q.bits - 1)) - 1;
  for (uint64_t i = 0; i < n; ++i) {
    const int v = q.codes[i];
    if (v < lo || v > hi)
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, format("code %d at element %llu outside the %u-bit range", v,
                                                       static_cast<unsigned long long>(i), q.bits));
    if (q.bits <= 4) out[i / 2] |= static_cast<uint8_t>((v + 8) << (i % 2 ? 4 : 0));
    else out[i] = static_cast<uint8_t>(static_cast<int8_t>(v));
  }
}

}  // namespace

std::vector<uint8_t> encode_canonical(const xq_quant_tensor& q) {
  if (!q.codes || !q.scales) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "codes or scales missing");
  if (const std::string why = code_format_problem(q.bits, q.zero_points != nullptr, q.g_idx != nullptr, q.strategy);
      !why.empty())
    throw sdk::Error(XQ_ERR_UNSUPPORTED, why);
  const size_t ss = scale_size(q.scale_dtype);
  const int64_t ns = scale_count_of(q);
  const CanonicalParts p = canonical_parts(q.rows, q.cols, q.bits, ns, ss, q.zero_points != nullptr, q.g_idx != nullptr);
  std::vector<uint8_t> out(static_cast<size_t>(p.total), 0);
  encode_codes(q, out.data());
  for (int64_t i = 0; i < ns; ++i) put_scale(out.data() + p.scales_at + i * ss, q.scale_dtype, q.scales[i]);
  if (q.zero_points) std::memcpy(out.data() + p.zeros_at, q.zero_points, static_cast<size_t>(ns));
  if (q.g_idx) std::memcpy(out.data() + p.g_idx_at, q.g_idx, 4 * static_cast<size_t>(q.cols));
  return out;
}

void decode_canonical(const sdk::Host& host, const std::string& name, const xq_quant_tensor& desc, bool has_g_idx,
                      const uint8_t* data, uint64_t size, sdk::QuantTensor& out) {
  const size_t ss = scale_size(desc.scale_dtype);
  const int64_t ns = scale_count_of(desc);
  const CanonicalParts p = canonical_parts(desc.rows, desc.cols, desc.bits, ns, ss, !desc.symmetric, has_g_idx);
  if (p.total != size)
    throw sdk::Error(XQ_ERR_MALFORMED, format("tensor '%s': canonical segment is %llu bytes, its description needs %llu",
                                              name.c_str(), static_cast<unsigned long long>(size),
                                              static_cast<unsigned long long>(p.total)));
  xq_quant_tensor& q = out.get();
  const xq_quant_tensor keep = desc;
  q = keep;
  q.struct_size = sizeof(q);
  q.codes = nullptr;
  q.scales = nullptr;
  q.zero_points = nullptr;
  q.g_idx = nullptr;
  const uint64_t n = static_cast<uint64_t>(desc.rows * desc.cols);
  q.codes = host.alloc<int8_t>(static_cast<size_t>(n));
  if (desc.bits <= 4) {
    for (uint64_t i = 0; i < n; ++i) q.codes[i] = static_cast<int8_t>(((data[i / 2] >> (i % 2 ? 4 : 0)) & 0x0F) - 8);
  } else {
    std::memcpy(q.codes, data, static_cast<size_t>(n));
  }
  // The writer never stores E4M3FN's NaN codes (encode_codes): one in a file
  // is damage, refused here rather than carried into every logit.
  if (sdk::is_e4m3_code(desc.bits))
    for (uint64_t i = 0; i < n; ++i)
      if ((data[i] & 0x7F) == 0x7F)
        throw sdk::Error(XQ_ERR_MALFORMED, format("tensor '%s': FP8 E4M3 code at element %llu is NaN (0x%02x)",
                                                  name.c_str(), static_cast<unsigned long long>(i), data[i]));
  q.scales = host.alloc<float>(static_cast<size_t>(ns));
  for (int64_t i = 0; i < ns; ++i) q.scales[i] = get_scale(data + p.scales_at + i * ss, desc.scale_dtype);
  if (!desc.symmetric) {
    q.zero_points = host.alloc<int8_t>(static_cast<size_t>(ns));
    std::memcpy(q.zero_points, data + p.zeros_at, static_cast<size_t>(ns));
  }
  if (has_g_idx) {
    q.g_idx = host.alloc<int32_t>(static_cast<size_t>(desc.cols));
    std::memcpy(q.g_idx, data + p.g_idx_at, 4 * static_cast<size_t>(desc.cols));
    for (int64_t c = 0; c < desc.cols; ++c)
      if (q.g_idx[c] < 0 || q.g_idx[c] >= desc.n_groups)
        throw sdk::Error(XQ_ERR_MALFORMED, format("tensor '%s': g_idx[%lld] = %d outside [0, %lld)", name.c_str(),
                                                  static_cast<long long>(c), q.g_idx[c],
                                                  static_cast<long long>(desc.n_groups)));
  }
}

}  // namespace xquant::xqc
