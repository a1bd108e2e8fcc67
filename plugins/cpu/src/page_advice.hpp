// page_advice.hpp: what the cpu provider tells the kernel about the memory
// of prepared weights (madvise): back the copies the decode GEMVs stream
// through with transparent huge pages, and release the stored bytes a copy
// replaced (page_advice.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xquant::cpu {

// Whether prepared weights ask for huge pages: XQUANT_CPU_HUGE_PAGES = on
// (default) | off (for comparisons, or a machine short of memory); another
// value throws.
bool selected_huge_pages();

// Asks for 2 MB transparent huge pages on the whole pages inside [p, p +
// bytes) (MADV_HUGEPAGE), under selected_huge_pages() and for at least 2 MB.
// Why: where the kernel hands out huge pages only on request
// (/sys/kernel/mm/transparent_hugepage/enabled = madvise, as on this
// project's Intel Xeon VM), a decode GEMV streaming a 4 KB-paged copy takes
// a TLB miss every 4 KB, each a nested page walk in a VM: Qwen2.5-1.5B
// Q4_K_M decode ran 9.7 / 17.8 tok/s at 1 / 2 threads with 4 KB pages and
// 11.5 / 20.5 with its copies on huge pages (docs/engine.md "Weight copies on
// huge pages"). Pages already touched are left to khugepaged; so callers
// advise before they write (reserve_on_huge_pages). A kernel without THP,
// or with it off, ignores the advice.
void advise_huge_pages(const void* p, size_t bytes);

// v.reserve(n), its new storage advised as above before anything touches it.
template <class T>
void reserve_on_huge_pages(std::vector<T>& v, size_t n) {
  v.reserve(n);
  advise_huge_pages(v.data(), v.capacity() * sizeof(T));
}

// Asks the kernel to drop the resident pages inside [p, p + n)
// (MADV_PAGEOUT, Linux 5.4): clean pages of a mapped file are dropped (read
// again from the file if touched), anonymous ones swapped out or left, so it
// is safe whatever memory the loader handed over. Without it a GGUF model's
// K-quant parts would stay resident twice, mapped and copied (Qwen2.5-1.5B
// Q4_K_M peak RSS 2217 MB, 1310 with it; the one-row kernels' 1017).
// Best effort: an older kernel refuses it, and the pages then stay.
// Bytes the caller marked XQ_BLOCKS_DISPOSABLE (its scratch copy, e.g. the
// engine's Q8_0 tables, anonymous memory that PAGEOUT cannot drop without
// swap) are discarded instead (MADV_DONTNEED: they read as zeros after).
void release_pages(const uint8_t* p, uint64_t n, bool disposable);

}  // namespace xquant::cpu
