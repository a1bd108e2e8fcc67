// release_source.cpp: giving back the pages of checkpoint tensors the engine
// has copied out (Model::release_source, release_module_source).
//
// Loaders map their files (plugins/safetensors/src/mapped_file.hpp), so
// every page a load reads stays in the process's resident set for as long as
// the checkpoint is open, beside the copy the engine made of it: the packed
// weight of a repacked Linear, the F32 vector of a dense one. Once the copy
// is made, those pages leave this process:
//   - file pages (what the loaders' read-only maps hold):
//     madvise(MADV_DONTNEED) unmaps them and leaves them in the page cache;
//     a later read faults the very same file bytes back in, and the next
//     process to load the model reads them from memory, not from the disk;
//   - anything else (a loader's view into memory of its own, pages it
//     wrote): madvise(MADV_PAGEOUT) (Linux 5.4), which never changes memory
//     contents, where MADV_DONTNEED would zero them.
//     MADV_PAGEOUT is not used on file mappings: it also evicts clean file
//     pages from the page cache (mm/madvise.c, madvise_cold_or_pageout_pte_range
//     -> reclaim_pages), so every load of a model re-read its tables from
//     disk.
// Pages the tensor shares with a neighbour at either end are kept. Where the
// kernel refuses, the pages simply stay (one debug line says so).
#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/model.hpp"
#include "engine/release_source.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace xquant {

namespace {

// Whether madvise(MADV_DONTNEED) leaves every page of [begin, end) (page
// aligned) reading as it does now, per /proc/self/pagemap (the kernel's
// Documentation/admin-guide/mm/pagemap.rst: bit 63 present, 62 swapped, 61
// file page or shared anonymous): each page is either not present and not
// swapped (a file page not mapped in yet, or anonymous memory never written,
// which reads zero either way) or a present file / shared page (dropped from
// this process only; a private page the process wrote is anonymous and
// fails the test). False when pagemap cannot be read.
bool dontneed_keeps_contents(uint64_t begin, uint64_t end, uint64_t page) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);  // per call: "self" is fixed at open
  if (fd < 0) return false;
  constexpr uint64_t kPresent = uint64_t{1} << 63, kSwapped = uint64_t{1} << 62, kFileOrShared = uint64_t{1} << 61;
  uint64_t entries[512];
  bool ok = true;
  for (uint64_t p = begin; ok && p < end;) {
    const uint64_t n = std::min<uint64_t>(512, (end - p) / page);
    const ssize_t want = static_cast<ssize_t>(n * sizeof(uint64_t));
    if (::pread(fd, entries, static_cast<size_t>(want), static_cast<off_t>(p / page * sizeof(uint64_t))) != want) {
      ok = false;
      break;
    }
    for (uint64_t i = 0; i < n && ok; ++i)
      ok = !(entries[i] & kSwapped) && (!(entries[i] & kPresent) || (entries[i] & kFileOrShared));
    p += n * page;
  }
  ::close(fd);
  return ok;
}

// madvise, tried again while the kernel answers EAGAIN (a resource
// temporarily unavailable, seen on a loaded machine) or EINTR; 0 or errno.
int advise(void* at, size_t len, int advice) {
  for (int attempt = 0;; ++attempt) {
    if (::madvise(at, len, advice) == 0) return 0;
    if ((errno != EAGAIN && errno != EINTR) || attempt == 3) return errno;
  }
}

// Bytes given back, or 0 when nothing whole-page was inside [data, data + n)
// or the kernel refused.
uint64_t page_out(const void* data, uint64_t n) {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (!data || n < page) return 0;
  const uint64_t begin = (reinterpret_cast<uint64_t>(data) + page - 1) / page * page;
  const uint64_t end = (reinterpret_cast<uint64_t>(data) + n) / page * page;
  if (end <= begin) return 0;
  void* const at = reinterpret_cast<void*>(begin);
  const size_t len = static_cast<size_t>(end - begin);
  if (dontneed_keeps_contents(begin, end, page)) {
    if (const int e = advise(at, len, MADV_DONTNEED); e != 0) {
      logger().debug("madvise(MADV_DONTNEED) failed ({}): checkpoint pages stay resident after load", std::strerror(e));
      return 0;
    }
    return end - begin;
  }
#ifdef MADV_PAGEOUT
  // EINVAL (a kernel before Linux 5.4, or locked / huge pages: madvise(2))
  // stops further tries, as before; any other refusal (EAGAIN after the
  // retries, ENOMEM) concerns this range alone.
  static std::atomic<bool> supported{true};
  if (!supported.load(std::memory_order_relaxed)) return 0;
  if (const int e = advise(at, len, MADV_PAGEOUT); e != 0) {
    logger().debug("madvise(MADV_PAGEOUT) failed ({}): checkpoint pages stay resident after load", std::strerror(e));
    if (e == EINVAL) supported.store(false, std::memory_order_relaxed);
    return 0;
  }
  return end - begin;
#else
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
