// release_source.cpp: giving back the pages of checkpoint tensors the engine
// has copied out (Model::release_source, release_module_source).
//
// Loaders map their files (plugins/safetensors/src/mapped_file.hpp), so
// every page a load reads stays in the process's resident set for as long as
// the checkpoint is open, beside the copy the engine made of it: the packed
// weight of a repacked Linear, the F32 vector of a dense one. Once the copy
// is made, madvise(MADV_PAGEOUT) (Linux 5.4) drops those pages from this
// process. It never changes the memory's contents (a later read of the same
// tensor faults the pages back in from the file), so it is safe whatever the
// loader does with the view; pages the tensor shares with a neighbour at
// either end are kept. Where the kernel has no MADV_PAGEOUT the pages simply
// stay (one debug line says so).
#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/model.hpp"
#include "engine/release_source.hpp"

#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace xquant {

namespace {

// Bytes given back, or 0 when nothing whole-page was inside [data, data + n)
// or the kernel refused.
uint64_t page_out(const void* data, uint64_t n) {
#ifdef MADV_PAGEOUT
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  static bool supported = true;
  if (!supported || !data || n < page) return 0;
  const uint64_t begin = (reinterpret_cast<uint64_t>(data) + page - 1) / page * page;
  const uint64_t end = (reinterpret_cast<uint64_t>(data) + n) / page * page;
  if (end <= begin) return 0;
  if (::madvise(reinterpret_cast<void*>(begin), static_cast<size_t>(end - begin), MADV_PAGEOUT) != 0) {
    logger().debug("madvise(MADV_PAGEOUT) failed ({}): checkpoint pages stay resident after load", std::strerror(errno));
    supported = false;
    return 0;
  }
  return end - begin;
#else
  (void)data;
  (void)n;
  return 0;
#endif
}

xq_tensor_view view_of(const Checkpoint& cp, const TensorEntry& t) {
  try {
    return cp.raw(t);
  } catch (const Error&) {
    return xq_tensor_view{};  // a loader that maps no bytes for this tensor holds none resident for it either
  }
}

}  // namespace

uint64_t page_out_range(const void* data, uint64_t n) { return page_out(data, n); }

uint64_t read_and_release(const Checkpoint& cp, const TensorEntry& t, xq_dtype dtype, void* dst, uint64_t nbytes) {
  const xq_tensor_view v = view_of(cp, t);
  if (!v.data || v.dtype != dtype || v.nbytes != nbytes) {
    cp.read(t, dtype, dst, nbytes);
    return page_out(v.data, v.nbytes);
  }
  // Parts end on page boundaries, so their whole pages are exactly the tensor's.
  constexpr uint64_t kPart = uint64_t{8} << 20;
  const auto* src = static_cast<const unsigned char*>(v.data);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t first_page = (reinterpret_cast<uint64_t>(src) + page - 1) / page * page;
  uint64_t done = 0, released = 0;
  while (done < nbytes) {
    const uint64_t part_end = std::min(nbytes, first_page - reinterpret_cast<uint64_t>(src) + (done / kPart + 1) * kPart);
    std::memcpy(static_cast<unsigned char*>(dst) + done, src + done, part_end - done);
    released += page_out(src + done, part_end - done);
    done = part_end;
  }
  return released;
}

void Model::release_source(const TensorEntry& t) {
  const xq_tensor_view v = view_of(*checkpoint_, t);
  load_stats_.source_bytes_released += page_out(v.data, v.nbytes);
}

// Loading frees many short-lived buffers (each Linear's unpacked codes, the
// stacked copies of q|k|v and gate|up); glibc keeps freed heap memory in its
// arenas, resident, unless asked to return it (malloc_trim).
void release_free_heap() {
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

void Model::release_module_source(const std::string& module) {
  const std::string prefix = module + ".";
  for (const TensorEntry& t : checkpoint_->tensors())
    if (t.name.compare(0, prefix.size(), prefix) == 0) release_source(t);
}

}  // namespace xquant
