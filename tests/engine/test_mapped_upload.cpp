// test_mapped_upload.cpp: a mapped tensor uploaded part by part
// (engine/mapped_upload.cpp) arrives byte for byte, from an address inside
// a page and with a ragged last part; exactly its whole pages are given back
// (they leave the process), and they stay in the page cache, so the next
// load of the file reads memory, not the disk.
#include "core/runtime.hpp"
#include "engine/kernels.hpp"
#include "engine/mapped_upload.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

// Pages of [p, p + n) (page-aligned p) resident in this process's page tables
// or the page cache, per mincore(2).
uint64_t resident_pages(const void* p, uint64_t n) {
  std::vector<unsigned char> v((n + kPage - 1) / kPage);
  if (::mincore(const_cast<void*>(p), n, v.data()) != 0) return ~uint64_t{0};
  uint64_t r = 0;
  for (unsigned char c : v) r += c & 1;
  return r;
}

struct MappedTemp {
  fs::path path;
  int fd = -1;
  void* base = MAP_FAILED;
  uint64_t size = 0;
  explicit MappedTemp(const std::vector<unsigned char>& bytes) : size(bytes.size()) {
    path = fs::temp_directory_path() / ("xquant_mapped_upload_" + std::to_string(::getpid()));
    {
      std::ofstream f(path, std::ios::binary);
      f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    fd = ::open(path.c_str(), O_RDONLY);
    ::fsync(fd);  // clean pages: the kernel could drop them at once if asked to
    base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  ~MappedTemp() {
    if (base != MAP_FAILED) ::munmap(base, size);
    if (fd >= 0) ::close(fd);
    fs::remove(path);
  }
};

}  // namespace

TEST(MappedUpload, ArrivesWholeAndGivesBackExactlyItsPagesKeepingThemCached) {
  std::vector<unsigned char> bytes(3 * 1024 * 1024 + 4321);
  std::mt19937 rng(7);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng());
  MappedTemp file(bytes);
  ASSERT_NE(file.base, MAP_FAILED);
  Runtime rt{RuntimeOptions{}};
  Kernels k(rt.plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"));
  // The tensor starts 100 bytes into a page and ends 4321 - 200 bytes into one.
  const uint64_t offset = 100, n = bytes.size() - 200;
  const auto* src = static_cast<const unsigned char*>(file.base) + offset;
  std::vector<unsigned char> dst(n);
  const uint64_t released = upload_and_release(k, dst.data(), src, n, 64 * 1024 + 5);  // parts round down to pages
  EXPECT_EQ(std::memcmp(dst.data(), bytes.data() + offset, n), 0);
  const uint64_t first = (offset + kPage - 1) / kPage * kPage, last = (offset + n) / kPage * kPage;
  EXPECT_EQ(released, last - first);
  // Still in the page cache: a second mapping of the file finds every page.
  void* again = ::mmap(nullptr, file.size, PROT_READ, MAP_PRIVATE, file.fd, 0);
  ASSERT_NE(again, MAP_FAILED);
  EXPECT_EQ(resident_pages(again, file.size), (file.size + kPage - 1) / kPage);
  ::munmap(again, file.size);
  // And the bytes read back unchanged through the released mapping.
  EXPECT_EQ(std::memcmp(src, bytes.data() + offset, n), 0);
}

TEST(MappedUpload, EmptyAndSinglePartTensors) {
  std::vector<unsigned char> bytes(10000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 31);
  MappedTemp file(bytes);
  ASSERT_NE(file.base, MAP_FAILED);
  Runtime rt{RuntimeOptions{}};
  Kernels k(rt.plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"));
  std::vector<unsigned char> dst(bytes.size());
  EXPECT_EQ(upload_and_release(k, dst.data(), file.base, 0), 0u);
  upload_and_release(k, dst.data(), file.base, bytes.size());
  EXPECT_EQ(dst, bytes);
}
