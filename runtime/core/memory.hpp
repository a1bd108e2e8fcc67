// memory.hpp: the host allocator (64-byte aligned) and an owner for
// canonical quantized tensors whose buffers came from it.
#pragma once

#include <xquant/xq_tensor.h>

#include <cstddef>
#include <cstdint>

namespace xquant {

void* host_alloc(size_t nbytes);  // nullptr only on exhaustion
void host_free(void* p);

// Owns the host-allocated buffers of an xq_quant_tensor.
class QuantTensor {
 public:
  QuantTensor() { t_.struct_size = sizeof(t_); }
  explicit QuantTensor(const xq_quant_tensor& t) : t_(t) {}
  ~QuantTensor() { reset(); }
  QuantTensor(QuantTensor&& o) noexcept : t_(o.t_) { o.t_ = xq_quant_tensor{}; o.t_.struct_size = sizeof(o.t_); }
  QuantTensor& operator=(QuantTensor&& o) noexcept;
  QuantTensor(const QuantTensor&) = delete;
  QuantTensor& operator=(const QuantTensor&) = delete;

  xq_quant_tensor& get() { return t_; }
  const xq_quant_tensor& get() const { return t_; }
  xq_quant_tensor* operator->() { return &t_; }
  const xq_quant_tensor* operator->() const { return &t_; }
  void reset();

  // Scale/zero index of element (r, c).
  int64_t group_index(int64_t r, int64_t c) const;
  // Dequantizes row r into out[cols].
  void dequantize_row(int64_t r, float* out) const;

 private:
  xq_quant_tensor t_{};
};

// Frees every buffer of `t` (host-allocated) and nulls the pointers.
void release_quant_buffers(xq_quant_tensor& t);

}  // namespace xquant
