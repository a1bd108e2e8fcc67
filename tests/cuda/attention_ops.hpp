// attention_ops.hpp: inputs for the attention tests and ATTENTION run through
// the provider's ABI (test_decode_attention.cpp, test_split_k_attention.cpp).
#pragma once

#include <xquant/sdk/half.hpp>

#include <cstring>

#include "attention_reference.hpp"
#include "test_host.hpp"

namespace xqtest {

// Values in [-2, 2): scores spread enough that the softmax is not flat.
inline std::vector<float> random_values(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = uniform(-2.f, 2.f);
  return v;
}

// Host bytes of `v` in dtype t; `v` becomes the values stored.
inline std::vector<uint8_t> stored(std::vector<float>& v, xq_dtype t) {
  std::vector<uint8_t> b(v.size() * (t == XQ_DTYPE_F32 ? 4 : 2));
  if (t == XQ_DTYPE_F32) {
    std::memcpy(b.data(), v.data(), b.size());
  } else {
    const auto bits = to_half_bits(v, t, &v);
    std::memcpy(b.data(), bits.data(), b.size());
  }
  return b;
}

// Runs ATTENTION (contiguous cache) through the provider's ABI with k `k_offset`
// bytes into its buffer; q, k and v become the values stored in `in_t`.
// Returns the output as floats.
inline std::vector<float> run_attention(const AttentionShape& s, xq_dtype in_t, xq_dtype out_t, std::vector<float>& q, std::vector<float>& k,
                       std::vector<float>& v, double scale, size_t k_offset = 0) {
  auto& P = Plugin::get();
  const auto qb = stored(q, in_t), kb = stored(k, in_t), vb = stored(v, in_t);
  DevBuf dq(qb.size()), dk(kb.size() + k_offset), dv(vb.size()), dout(static_cast<size_t>(s.T * s.H * s.D) * 4);
  dq.put(qb);
  std::vector<uint8_t> kpad(k_offset, 0);
  kpad.insert(kpad.end(), kb.begin(), kb.end());
  dk.put(kpad);
  dv.put(vb);
  dout.poison();
  const int64_t S = s.start + s.T;
  xq_op op = make_op(XQ_OP_ATTENTION);
  op.src[0] = xquant::sdk::device_tensor(in_t, {s.T, s.H, s.D}, dq.p);
  op.src[1] = xquant::sdk::device_tensor(in_t, {S, s.KVH, s.D}, static_cast<char*>(dk.p) + k_offset);
  op.src[2] = xquant::sdk::device_tensor(in_t, {S, s.KVH, s.D}, dv.p);
  op.dst = xquant::sdk::device_tensor(out_t, {s.T, s.H, s.D}, dout.p);
  op.f[0] = scale;
  op.i[0] = s.start;
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  const size_t n = static_cast<size_t>(s.T * s.H * s.D);
  if (out_t == XQ_DTYPE_F32) return dout.get<float>(n);
  std::vector<float> out;
  for (uint16_t b : dout.get<uint16_t>(n)) out.push_back(half_bits_to_f32(b, out_t));
  return out;
}

}  // namespace xqtest
