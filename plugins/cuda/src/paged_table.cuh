// paged_table.cuh: PAGED_ATTENTION's src[3] as the kernels read it, in
// either form (abi/include/xquant/xq_kernel.h, docs/abi.md): per row
// (n_seq = 0) I32 [T, ld] with ld = 1 + MB, each row its position then its
// sequence's blocks; per sequence (n_seq > 0) I32 [2T + n_seq * ld] with
// ld = MB, the rows' positions, the rows' sequence indices, then one table
// of MB blocks per sequence. Indices are trusted here; the engine builds
// them (the cpu provider validates the same layout).
#pragma once

#include <cstdint>

namespace xqcuda {

struct RowTables {
  const int32_t* data;
  int64_t ld;
  int64_t T;
  int64_t n_seq;

  // Row t sees keys 0..position(t) of its sequence.
  __device__ __forceinline__ int32_t position(int64_t t) const { return n_seq > 0 ? data[t] : data[t * ld]; }
  // Row t's sequence's block ids: key position j sits in block blocks(t)[j / BS].
  __device__ __forceinline__ const int32_t* blocks(int64_t t) const {
    return n_seq > 0 ? data + 2 * T + static_cast<int64_t>(data[T + t]) * ld : data + t * ld + 1;
  }
  // Block ids in one table (MB).
  __device__ __forceinline__ int64_t width() const { return n_seq > 0 ? ld : ld - 1; }
};

}  // namespace xqcuda
