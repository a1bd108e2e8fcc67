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

#include <sys/mman.h>
#include <unistd.h>

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

}  // namespace

void Model::release_source(const TensorEntry& t) {
  xq_tensor_view v{};
  try {
    v = checkpoint_->raw(t);
  } catch (const Error&) {
    return;  // a loader that maps no bytes for this tensor holds none resident for it either
  }
  load_stats_.source_bytes_released += page_out(v.data, v.nbytes);
}

void Model::release_module_source(const std::string& module) {
  const std::string prefix = module + ".";
  for (const TensorEntry& t : checkpoint_->tensors())
    if (t.name.compare(0, prefix.size(), prefix) == 0) release_source(t);
}

}  // namespace xquant
