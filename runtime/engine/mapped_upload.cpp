// mapped_upload.cpp: a mapped checkpoint tensor uploaded part by part
// (mapped_upload.hpp).
//
// A provider's upload of pageable memory (cuda: cudaMemcpy through the
// driver's staging buffers) takes a page fault for every 4 KiB page of a
// mapped file it has not touched yet, on the uploading thread. Paging the
// next part in ahead (madvise(MADV_POPULATE_READ), Linux 5.14: the page
// tables filled in one call; touching one byte per page elsewhere) on a
// second thread takes those faults off the upload's path.
#include "engine/mapped_upload.hpp"

#include "engine/release_source.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // include/uapi/asm-generic/mman-common.h (Linux 5.14)
#endif

namespace xquant {

namespace {

void page_in(const unsigned char* p, uint64_t n) {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (n == 0) return;
  const uint64_t begin = reinterpret_cast<uint64_t>(p) / page * page;
  const uint64_t end = reinterpret_cast<uint64_t>(p) + n;
  if (::madvise(reinterpret_cast<void*>(begin), static_cast<size_t>(end - begin), MADV_POPULATE_READ) == 0) return;
  // EINVAL before Linux 5.14: fault the pages in by reading a byte of each.
  for (uint64_t a = begin; a < end; a += page)
    (void)*reinterpret_cast<const volatile unsigned char*>(std::max(a, reinterpret_cast<uint64_t>(p)));
}

}  // namespace

uint64_t upload_and_release(const Kernels& k, void* dst, const void* src, uint64_t nbytes, uint64_t part) {
  if (nbytes == 0) return 0;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  part = std::max(page, part / page * page);
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  // Parts end on page boundaries, so the pages they give back add up to
  // exactly the tensor's whole pages.
  const uint64_t head = (reinterpret_cast<uint64_t>(s) + page - 1) / page * page - reinterpret_cast<uint64_t>(s);
  auto part_end = [&](uint64_t from) {
    const uint64_t e = from < head ? head + part : head + ((from - head) / part + 1) * part;
    return std::min(nbytes, e);
  };
  uint64_t released = 0;
  uint64_t at = 0, end = part_end(0);
  page_in(s, end);
  while (at < nbytes) {
    const uint64_t next_end = end < nbytes ? part_end(end) : end;
    std::thread ahead;
    if (end < nbytes) ahead = std::thread(page_in, s + end, next_end - end);
    try {
      k.upload(d + at, s + at, end - at);
    } catch (...) {
      if (ahead.joinable()) ahead.join();
      throw;
    }
    if (ahead.joinable()) ahead.join();
    released += page_out_range(s + at, end - at);
    at = end;
    end = next_end;
  }
  return released;
}

}  // namespace xquant
