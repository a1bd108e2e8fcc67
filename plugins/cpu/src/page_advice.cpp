// page_advice.cpp: madvise on prepared weights' memory (page_advice.hpp).
#include "page_advice.hpp"

#include <xquant/sdk/error.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace xquant::cpu {

namespace {

// The whole pages inside [p, p + n), or an empty range.
struct PageRange {
  uintptr_t begin, end;
};
PageRange whole_pages(const void* p, uint64_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto a = reinterpret_cast<uintptr_t>(p);
  return {(a + page - 1) / page * page, (a + n) / page * page};
}

}  // namespace

bool selected_huge_pages() {
  const char* env = std::getenv("XQUANT_CPU_HUGE_PAGES");
  if (!env || !*env || std::string(env) == "on") return true;
  if (std::string(env) == "off") return false;
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, std::string("cpu provider: XQUANT_CPU_HUGE_PAGES=") + env + " is not on or off");
}

void advise_huge_pages(const void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHugePage = size_t{2} << 20;
  if (!selected_huge_pages() || bytes < kHugePage || !p) return;  // a bad setting fails every prepare that copies
  const PageRange r = whole_pages(p, bytes);
  if (r.end > r.begin) (void)madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

void release_pages(const uint8_t* p, uint64_t n, bool disposable) {
#ifdef __linux__
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21  // linux/mman.h (5.4)
#endif
  const PageRange r = whole_pages(p, n);
  if (r.end > r.begin) (void)madvise(reinterpret_cast<void*>(r.begin), r.end - r.begin, disposable ? MADV_DONTNEED : MADV_PAGEOUT);
#else
  (void)p, (void)n, (void)disposable;
#endif
}

}  // namespace xquant::cpu
