#include "core/memory.hpp"

#include <cstdlib>

namespace xquant {

void* host_alloc(size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  size_t rounded = (nbytes + 63) / 64 * 64;
  return std::aligned_alloc(64, rounded);
}

void host_free(void* p) { std::free(p); }

void release_quant_buffers(xq_quant_tensor& t) {
  host_free(t.codes);
  host_free(t.scales);
  host_free(t.zero_points);
  host_free(t.g_idx);
  t.codes = nullptr;
  t.scales = nullptr;
  t.zero_points = nullptr;
  t.g_idx = nullptr;
}

QuantTensor& QuantTensor::operator=(QuantTensor&& o) noexcept {
  if (this != &o) {
    reset();
    t_ = o.t_;
    o.t_ = xq_quant_tensor{};
    o.t_.struct_size = sizeof(o.t_);
  }
  return *this;
}

void QuantTensor::reset() { release_quant_buffers(t_); }

int64_t QuantTensor::group_index(int64_t r, int64_t c) const {
  if (t_.granularity == XQ_GRAN_TENSOR) return 0;
  int64_t g = 0;
  if (t_.granularity == XQ_GRAN_GROUP) g = t_.g_idx ? t_.g_idx[c] : c / t_.group_size;
  return r * t_.n_groups + g;
}

void QuantTensor::dequantize_row(int64_t r, float* out) const {
  const int8_t* codes = t_.codes + r * t_.cols;
  for (int64_t c = 0; c < t_.cols; ++c) {
    int64_t gi = group_index(r, c);
    float zp = t_.zero_points ? static_cast<float>(t_.zero_points[gi]) : 0.0f;
    out[c] = (static_cast<float>(codes[c]) - zp) * t_.scales[gi];
  }
}

}  // namespace xquant
