#include "core/memory.hpp"

#include <cstdlib>

namespace xquant {

void* host_alloc(size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  size_t rounded = (nbytes + 63) / 64 * 64;
  return std::aligned_alloc(64, rounded);
}

void host_free(void* p) { std::free(p); }

QuantTensor adopt_quant_tensor(const xq_quant_tensor& t) {
  return QuantTensor(t, [](void*, void* p) { host_free(p); }, nullptr);
}

}  // namespace xquant
