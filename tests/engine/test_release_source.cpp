// test_release_source.cpp: once the engine holds its own copy of a tensor
// (an F32 vector, a packed weight), the checkpoint's mapped pages of it are
// given back (engine/release_source.cpp): exactly the whole pages inside
// every copied tensor, and the model still computes the same logits.
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "engine/release_source.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kHf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K-hf";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Bytes of the whole pages inside [data, data + n).
uint64_t whole_pages(const void* data, uint64_t n) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t a = reinterpret_cast<uint64_t>(data), begin = (a + page - 1) / page * page, end = (a + n) / page * page;
  return end > begin ? end - begin : 0;
}

}  // namespace

TEST(ReleaseSource, CopiedTensorsGiveBackTheirWholePages) {
  Runtime rt{RuntimeOptions{}};
  auto model = Model::open(rt, kHf);
  // The file is mapped whole at a page boundary, so a second mapping puts
  // every tensor at the same offset within its page.
  auto cp = Checkpoint::open(rt, kHf);
  uint64_t expect = 0;
  for (const TensorEntry& t : cp->tensors()) {
    const bool copied = t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight" || ends_with(t.name, "_proj.weight");
    if (!copied) continue;
    const xq_tensor_view v = cp->raw(t);
    expect += whole_pages(v.data, v.nbytes);
  }
  ASSERT_GT(expect, 100000u) << "stories260K-hf's embeddings alone span whole pages";
  EXPECT_EQ(model->load_stats().source_bytes_released, expect);

  // Re-reading a released tensor faults its bytes back in unchanged (the
  // engine's other tests check its logits against references with every
  // Linear's pages released).
  const TensorEntry& e = model->checkpoint().require("model.embed_tokens.weight");
  std::vector<float> again = model->checkpoint().read_f32(e), direct = cp->read_f32(cp->require("model.embed_tokens.weight"));
  EXPECT_EQ(again, direct);
}

namespace {

uint64_t resident_pages(const fs::path& file) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const int fd = ::open(file.c_str(), O_RDONLY);
  const uint64_t size = fs::file_size(file);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return 0;
  std::vector<unsigned char> v((size + page - 1) / page);
  uint64_t r = 0;
  if (::mincore(p, size, v.data()) == 0)
    for (unsigned char c : v) r += c & 1;
  ::munmap(p, size);
  return r;
}

}  // namespace

// The pages leave the process but not the page cache: the next load of the
// same file reads memory, not the disk (MADV_PAGEOUT, used before, evicted
// clean file pages too). The copy is this process's own file, synced, which
// MADV_PAGEOUT would have evicted.
TEST(ReleaseSource, ReleasedPagesOfAFileStayInThePageCache) {
  const fs::path dir = fs::temp_directory_path() / ("xquant_release_cache_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(kHf / f, dir / f, fs::copy_options::overwrite_existing);
  const fs::path weights = dir / "model.safetensors";
  {
    const int fd = ::open(weights.c_str(), O_RDONLY);
    ::fsync(fd);
    ::close(fd);
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pages = (fs::file_size(weights) + page - 1) / page;
  ASSERT_EQ(resident_pages(weights), pages) << "the copy just written is cached";
  {
    Runtime rt{RuntimeOptions{}};
    auto model = Model::open(rt, dir);
    EXPECT_GT(model->load_stats().source_bytes_released, 100000u);
    EXPECT_EQ(resident_pages(weights), pages);
  }
  fs::remove_all(dir);
}

// A view into memory of a loader's own (anonymous pages it wrote) keeps its
// contents when released: MADV_PAGEOUT there (MADV_DONTNEED would zero them).
TEST(ReleaseSource, AnonymousMemoryKeepsItsContents) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const size_t n = static_cast<size_t>(16 * page);
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(i * 7 + 1);
  page_out_range(b + 10, n - 20);
  size_t same = 0;
  for (size_t i = 0; i < n; ++i) same += b[i] == static_cast<unsigned char>(i * 7 + 1);
  EXPECT_EQ(same, n);
  ::munmap(p, n);
}

// Pages a process wrote in a private file mapping are its own (anonymous
// copies): releasing keeps what it wrote (MADV_DONTNEED would bring the
// file's bytes back), and the untouched pages still read the file.
TEST(ReleaseSource, WrittenPagesOfAPrivateFileMappingKeepTheirContents) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const size_t n = static_cast<size_t>(8 * page);
  const fs::path file = fs::temp_directory_path() / ("xquant_release_written_" + std::to_string(::getpid()));
  std::vector<unsigned char> bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(i * 13 + 5);
  {
    std::ofstream f(file, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
  }
  const int fd = ::open(file.c_str(), O_RDONLY);
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED);
  auto* b = static_cast<unsigned char*>(p);
  size_t read_sum = 0;
  for (size_t i = 0; i < n; i += static_cast<size_t>(page)) read_sum += b[i];  // every page mapped in from the file
  std::memset(b + 3 * page, 0xAB, static_cast<size_t>(page));
  page_out_range(b, n);
  std::vector<unsigned char> expect = bytes;
  std::memset(expect.data() + 3 * page, 0xAB, static_cast<size_t>(page));
  EXPECT_EQ(std::memcmp(b, expect.data(), n), 0) << read_sum;
  ::munmap(p, n);
  fs::remove(file);
}
