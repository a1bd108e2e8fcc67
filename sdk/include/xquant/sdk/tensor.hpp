// tensor.hpp: building and owning the tensors that cross the ABI, so no
// caller fills struct_size, shape loops and nbytes by hand.
//
//   xq_tensor_view w = sdk::f32_view(weights, {rows, cols});
//   xq_tensor_view t = sdk::tensor_view(XQ_DTYPE_BF16, {n}, data);
//   xq_device_tensor d = sdk::device_tensor(XQ_DTYPE_F32, {m, k}, ptr);
//   sdk::QuantTensor q(host);            // owns host-allocated buffers
//   ... fill q.get() ...; out.quant = q.release();
//
// The builders check what a hand-filled struct silently got wrong: more dims
// than the struct holds, negative dims, a vector shorter than the shape.
#pragma once

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/error.hpp>
#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/host.hpp>
#include <xquant/xq_kernel.h>
#include <xquant/xq_tensor.h>

#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace xquant::sdk {

// Any ABI struct, zeroed, with struct_size set (xq_linear_output,
// xq_layer_group, ...): fields added later read as zero/NULL.
template <class T>
constexpr T make_struct() noexcept {
  T t{};
  t.struct_size = sizeof(T);
  return t;
}

namespace detail {
// Copies dims into `shape` (capacity `cap`) and returns the element count.
inline int64_t fill_shape(const int64_t* dims, size_t ndim, int64_t* shape, size_t cap, const char* what) {
  if (ndim > cap) fail(XQ_ERR_INVALID_ARGUMENT, format("%s: %zu dims, at most %zu", what, ndim, cap));
  int64_t numel = 1;
  for (size_t i = 0; i < ndim; ++i) {
    if (dims[i] < 0) fail(XQ_ERR_INVALID_ARGUMENT, format("%s: dim %zu is negative (%lld)", what, i,
                                                         static_cast<long long>(dims[i])));
    shape[i] = dims[i];
    numel *= dims[i];
  }
  return numel;
}
}  // namespace detail

// A borrowed dense view of `data` (row-major, contiguous); nbytes follows
// from shape and dtype (0 for BLOCKS: set it when the bytes are known).
inline xq_tensor_view tensor_view(xq_dtype dtype, const int64_t* dims, size_t ndim, const void* data) {
  xq_tensor_view v = make_struct<xq_tensor_view>();
  v.dtype = dtype;
  v.ndim = static_cast<uint32_t>(ndim);
  const int64_t numel = detail::fill_shape(dims, ndim, v.shape, XQ_MAX_DIMS, "tensor view");
  v.data = const_cast<void*>(data);
  v.nbytes = static_cast<uint64_t>(numel) * dtype_size(dtype);
  return v;
}
inline xq_tensor_view tensor_view(xq_dtype dtype, std::initializer_list<int64_t> shape, const void* data) {
  return tensor_view(dtype, shape.begin(), shape.size(), data);
}
inline xq_tensor_view tensor_view(xq_dtype dtype, const std::vector<int64_t>& shape, const void* data) {
  return tensor_view(dtype, shape.data(), shape.size(), data);
}

// An F32 view of `values` (writable when the call says so) with `shape`,
// whose element count must not exceed values.size().
inline xq_tensor_view f32_view(const std::vector<float>& values, std::initializer_list<int64_t> shape) {
  xq_tensor_view v = tensor_view(XQ_DTYPE_F32, shape, values.data());
  if (v.nbytes > values.size() * sizeof(float))
    fail(XQ_ERR_INVALID_ARGUMENT, format("f32 view: the shape needs %llu floats, the vector holds %zu",
                                         static_cast<unsigned long long>(v.nbytes / sizeof(float)), values.size()));
  return v;
}
// A 1-D F32 view of all of `values`.
inline xq_tensor_view f32_view(const std::vector<float>& values) {
  return f32_view(values, {static_cast<int64_t>(values.size())});
}

// A view with no data (an absent optional input, e.g. no bias).
inline xq_tensor_view empty_view() noexcept { return make_struct<xq_tensor_view>(); }

// A contiguous tensor in a provider's memory (strides all zero).
inline xq_device_tensor device_tensor(xq_dtype dtype, std::initializer_list<int64_t> shape, const void* data) {
  xq_device_tensor t = make_struct<xq_device_tensor>();
  t.dtype = dtype;
  t.ndim = static_cast<uint32_t>(shape.size());
  detail::fill_shape(shape.begin(), shape.size(), t.shape, 4, "device tensor");
  t.data = const_cast<void*>(data);
  return t;
}

// Shape questions about a device tensor, shared by the kernel providers.
// Element count (1 for ndim 0).
inline int64_t numel(const xq_device_tensor& t) noexcept {
  int64_t n = 1;
  for (uint32_t d = 0; d < t.ndim && d < 4; ++d) n *= t.shape[d];
  return n;
}
// Rows = product of all dims but the last; cols = the last dim (1 for ndim 0).
inline int64_t rows_of(const xq_device_tensor& t) noexcept {
  int64_t n = 1;
  for (uint32_t d = 0; d + 1 < t.ndim && d < 4; ++d) n *= t.shape[d];
  return n;
}
inline int64_t cols_of(const xq_device_tensor& t) noexcept {
  return t.ndim && t.ndim <= 4 ? t.shape[t.ndim - 1] : 1;
}
// Row-major contiguous: strides all zero, or equal to the packed strides
// (a dim of size 1 may carry any stride).
inline bool is_contiguous(const xq_device_tensor& t) noexcept {
  if (t.ndim > 4) return false;
  bool all_zero = true;
  for (uint32_t d = 0; d < t.ndim; ++d) all_zero = all_zero && t.strides[d] == 0;
  if (all_zero) return true;
  int64_t expect = 1;
  for (int d = static_cast<int>(t.ndim) - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != expect) return false;
    expect *= t.shape[d];
  }
  return true;
}

// An op of `type` with every struct_size set and no operands yet.
inline xq_op make_op(xq_op_type type) {
  xq_op op = make_struct<xq_op>();
  op.type = type;
  op.dst.struct_size = sizeof(op.dst);
  for (auto& s : op.src) s.struct_size = sizeof(s);
  return op;
}

// The one owner of a canonical quantized tensor (xq_quant_tensor) and its
// buffers, used by plugins (buffers from host->alloc) and the runtime
// (its allocator) alike. Move-only; frees its buffers unless release()d.
class QuantTensor {
 public:
  // How the buffers go back: the allocator's free (ctx first, as the host API's).
  using FreeFn = void (*)(void* ctx, void* p);

  QuantTensor() noexcept : t_(make_struct<xq_quant_tensor>()) {}
  // Empty; buffers attached later must come from host.alloc.
  explicit QuantTensor(const Host& host) noexcept : QuantTensor() {
    free_ = host.api()->free;
    ctx_ = host.api()->ctx;
  }
  // Takes over the buffers of `t`, returned with free_fn(ctx, p).
  QuantTensor(const xq_quant_tensor& t, FreeFn free_fn, void* ctx) noexcept : t_(t), free_(free_fn), ctx_(ctx) {
    t_.struct_size = sizeof(t_);
  }
  ~QuantTensor() { reset(); }
  QuantTensor(QuantTensor&& o) noexcept : t_(o.t_), free_(o.free_), ctx_(o.ctx_) { o.forget(); }
  QuantTensor& operator=(QuantTensor&& o) noexcept {
    if (this != &o) {
      reset();
      t_ = o.t_;
      free_ = o.free_;
      ctx_ = o.ctx_;
      o.forget();
    }
    return *this;
  }
  QuantTensor(const QuantTensor&) = delete;
  QuantTensor& operator=(const QuantTensor&) = delete;

  xq_quant_tensor& get() noexcept { return t_; }
  const xq_quant_tensor& get() const noexcept { return t_; }
  xq_quant_tensor* operator->() noexcept { return &t_; }
  const xq_quant_tensor* operator->() const noexcept { return &t_; }

  // Hands the tensor and its buffers to the caller (e.g. into an output
  // struct the host frees); this owner is empty afterwards.
  xq_quant_tensor release() noexcept {
    xq_quant_tensor out = t_;
    forget();
    return out;
  }
  // Frees the buffers and nulls the pointers (metadata stays).
  void reset() noexcept {
    if (free_) {
      for (void* p : {static_cast<void*>(t_.codes), static_cast<void*>(t_.scales),
                      static_cast<void*>(t_.zero_points), static_cast<void*>(t_.g_idx)})
        if (p) free_(ctx_, p);
    }
    t_.codes = nullptr;
    t_.scales = nullptr;
    t_.zero_points = nullptr;
    t_.g_idx = nullptr;
  }

  // Index into scales/zero_points of element (r, c).
  int64_t group_index(int64_t r, int64_t c) const noexcept {
    if (t_.strategy == XQ_STRATEGY_TENSOR) return 0;
    int64_t g = 0;
    if (t_.strategy == XQ_STRATEGY_GROUP) g = t_.g_idx ? t_.g_idx[c] : c / t_.group_size;
    return r * t_.n_groups + g;
  }
  // Dequantizes row r into out[cols]: (code - zp) * scale, or for FP8 codes
  // (XQ_BITS_F8_E4M3) e4m3 value * scale.
  void dequantize_row(int64_t r, float* out) const noexcept {
    const int8_t* codes = t_.codes + r * t_.cols;
    if (is_e4m3_code(t_.bits)) {
      for (int64_t c = 0; c < t_.cols; ++c)
        out[c] = e4m3_to_f32(static_cast<uint8_t>(codes[c])) * t_.scales[group_index(r, c)];
      return;
    }
    for (int64_t c = 0; c < t_.cols; ++c) {
      const int64_t gi = group_index(r, c);
      const float zp = t_.zero_points ? static_cast<float>(t_.zero_points[gi]) : 0.0f;
      out[c] = (static_cast<float>(codes[c]) - zp) * t_.scales[gi];
    }
  }

 private:
  void forget() noexcept { t_ = make_struct<xq_quant_tensor>(); }
  xq_quant_tensor t_;
  FreeFn free_ = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace xquant::sdk
