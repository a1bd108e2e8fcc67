// test_cpu_page_advice.cpp: the decode copies ask the kernel for transparent
// huge pages (plugins/cpu/src/page_advice.hpp): the mapping holding a copy
// made by the eight-row interleavers carries the "hg" flag
// (/proc/self/smaps VmFlags: MADV_HUGEPAGE) unless XQUANT_CPU_HUGE_PAGES=off,
// and a bad value of that variable is refused naming it. A kernel built
// without transparent huge pages (no /sys/kernel/mm/transparent_hugepage)
// skips, saying so.
#include "../support/scoped_env.hpp"
#include "page_advice.hpp"
#include "qgemv_rows8.hpp"

#include <xquant/sdk/error.hpp>

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace xquant;

namespace {

bool kernel_has_thp() { return std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good(); }

// The VmFlags of the mapping that holds address p ("" when none does).
std::string vm_flags_at(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

bool advised(const void* p) { return vm_flags_at(p).find(" hg") != std::string::npos; }

// A GGUF Q5_0 part of 8192 rows x 1024 columns: a 5.8 MB stored part whose
// copy (interleave_legacy_rows8) spans at least two whole 2 MB pages. Large
// blocks are mapped afresh for each copy (a fixed mmap threshold: glibc's
// dynamic one would serve a later copy from heap memory an earlier test
// advised, so the tests would depend on their order).
std::vector<uint8_t> q5_0_copy() {
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const int64_t rows = 8192, nb = 32;
  const std::vector<uint8_t> blocks(static_cast<size_t>(rows * nb * 22), 0x11);
  return cpu::interleave_legacy_rows8(6, blocks.data(), 22 * nb, rows, nb);
}

TEST(CpuPageAdvice, DecodeCopiesAskForHugePages) {
  if (!kernel_has_thp()) GTEST_SKIP() << "this kernel has no transparent huge pages: the advice is not checked";
  const std::vector<uint8_t> copy = q5_0_copy();
  // The middle of the copy: a whole page the advice covered.
  EXPECT_TRUE(advised(copy.data() + copy.size() / 2)) << vm_flags_at(copy.data() + copy.size() / 2);
  std::vector<uint8_t> small;
  cpu::reserve_on_huge_pages(small, 64 << 10);  // under 2 MB: not worth a huge page, no advice
  EXPECT_FALSE(advised(small.data())) << vm_flags_at(small.data());
}

TEST(CpuPageAdvice, OffLeavesTheCopiesOnSmallPages) {
  if (!kernel_has_thp()) GTEST_SKIP() << "this kernel has no transparent huge pages: the advice is not checked";
  test::ScopedEnv off("XQUANT_CPU_HUGE_PAGES", "off");
  const std::vector<uint8_t> copy = q5_0_copy();
  EXPECT_FALSE(advised(copy.data() + copy.size() / 2)) << vm_flags_at(copy.data() + copy.size() / 2);
}

TEST(CpuPageAdvice, ABadSettingIsRefusedNamingIt) {
  test::ScopedEnv bad("XQUANT_CPU_HUGE_PAGES", "sometimes");
  try {
    (void)q5_0_copy();
    FAIL() << "XQUANT_CPU_HUGE_PAGES=sometimes was accepted";
  } catch (const sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("XQUANT_CPU_HUGE_PAGES=sometimes"), std::string::npos) << e.what();
  }
}

}  // namespace
