// mapped_upload.hpp: copying a tensor straight from the loader's mapped file
// into provider memory (mapped_upload.cpp).
#pragma once

#include "engine/kernels.hpp"

#include <cstdint>

namespace xquant {

// Uploads src[0..nbytes) (a checkpoint view, typically a mapped file) to
// provider memory dst, `part` bytes at a time: the next part is paged in on
// a helper thread while the current one uploads, and each part's whole
// pages are given back once uploaded (page_out_range), so the mapped tensor
// is never resident in full. Returns the bytes given back.
uint64_t upload_and_release(const Kernels& k, void* dst, const void* src, uint64_t nbytes,
                            uint64_t part = uint64_t{64} << 20);

}  // namespace xquant
