// release_source.hpp: giving memory back after a model load
// (release_source.cpp; the per-tensor page release is Model::release_source).
#pragma once

#include "checkpoint/checkpoint.hpp"

#include <cstdint>

namespace xquant {

// Reads tensor `t` of `cp` as `dtype` into dst[0..nbytes) and gives its mapped
// pages back as it goes: when the loader's view already holds `dtype`, 8 MiB
// at a time, each part given back once copied, so the copy and the mapped
// tensor are never both resident in full (SmolLM2's F32 embedding table
// alone is 113 MB); otherwise read whole, then given back. Returns the bytes
// given back (the whole pages inside the tensor's bytes, as
// Model::release_source).
uint64_t read_and_release(const Checkpoint& cp, const TensorEntry& t, xq_dtype dtype, void* dst, uint64_t nbytes);

// Gives back the whole pages inside [data, data + n) of a mapped checkpoint
// view (MADV_DONTNEED when every page is a file page or untouched: they
// stay in the page cache; MADV_PAGEOUT otherwise); returns the bytes given
// back (0 where the kernel refused).
uint64_t page_out_range(const void* data, uint64_t n);

// Returns the heap's free pages to the system (glibc malloc_trim; nothing
// elsewhere).
void release_free_heap();

}  // namespace xquant
