// mapped_file.hpp: a read-only, private memory map of one whole file.
//
// The loader maps every safetensors file once at open so raw() can hand out
// borrowed views that stay valid while the model is open, and read() converts
// straight from the page cache without an extra copy.
#pragma once

#include <xquant/sdk/host.hpp>

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace xquant::st {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `size` bytes of the open descriptor `fd` (the descriptor may be
  // closed afterwards; the mapping keeps the file alive).
  MappedFile(int fd, uint64_t size, const std::string& path) : size_(size) {
    if (size == 0) return;
    void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw sdk::Error(XQ_ERR_IO, path + ": mmap failed: " + std::strerror(errno));
    base_ = static_cast<const unsigned char*>(p);
  }
  ~MappedFile() { reset(); }
  MappedFile(MappedFile&& o) noexcept : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      reset();
      base_ = std::exchange(o.base_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return base_; }
  uint64_t size() const { return size_; }

 private:
  void reset() {
    if (base_) ::munmap(const_cast<unsigned char*>(base_), static_cast<size_t>(size_));
    base_ = nullptr;
    size_ = 0;
  }
  const unsigned char* base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace xquant::st
