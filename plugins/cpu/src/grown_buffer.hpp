// grown_buffer.hpp: the `cpu` provider's grow-only scratch: a buffer resized
// only when a call needs more than it holds, so once the largest shape has
// been seen a call allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xquant::cpu {

// v's storage with room for at least n elements (contents not kept meaningful).
template <class T>
T* grown(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace xquant::cpu
