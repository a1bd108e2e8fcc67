// safetensors.hpp: a validating reader of safetensors headers and a
// streaming, atomic safetensors writer (huggingface/safetensors README and safetensors/src/tensor.rs).
//
// Header-only because two plugins (the `safetensors` loader and the
// `compressed-tensors` writer) and the tests that build malformed fixtures
// all need the same rules, and plugins link nothing from the runtime.
//
// Reader: `read_header(path)` / `parse_header(...)` apply exactly the checks
// of the reference reader (safetensors/src/tensor.rs) and report each
// violation as Error(XQ_ERR_MALFORMED) naming the file, the tensor and the
// offsets involved:
//   * N (the u64 header length) <= 100,000,000 and 8 + N <= file size;
//   * the header is UTF-8 JSON starting with '{' (leading whitespace allowed);
//   * no duplicate keys; `__metadata__` maps strings to strings;
//   * every tensor has a known dtype, a shape of non-negative ints and
//     data_offsets [BEGIN, END] with BEGIN <= END;
//   * sorted by offset, tensors are contiguous from 0 (no holes, no overlaps);
//   * END - BEGIN == prod(shape) * bits / 8 (whole bytes);
//   * the last END + 8 + N == file size.
//
// Writer: tensors are appended to a temporary data file as they arrive (so
// memory stays flat whatever the checkpoint size); `finish` writes the final
// file = u64 N + JSON header (space-padded to a multiple of 8) + data under a
// temporary name, fsyncs it, renames it over the final name and fsyncs the
// directory. Tensor order in the file follows the reference writer: dtype
// descending (the reference enum order, i.e. widest/most-aligned first), then
// name ascending, so every tensor is naturally aligned as in files written by
// the `safetensors` Python package. `abort` (and the destructor of an
// unfinished writer) removes every temporary; the temporaries of a writer
// whose process was killed are removed by the next writer into the folder.
#pragma once

#include <xquant/sdk/host.hpp>
#include <xquant/xq_abi.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xquant::sdk::safetensors {

// ---- dtypes -----------------------------------------------------------------

struct DtypeDesc {
  const char* name;
  uint32_t bits;
  xq_dtype dtype;  // XQ_DTYPE_BLOCKS where xquant has no element type for it
  int rank;        // the reference Dtype enum order (the writer sorts by it)
};

// The full reference enum in declaration order (safetensors 2026 snapshot).
inline constexpr DtypeDesc kDtypes[] = {
    {"BOOL", 8, XQ_DTYPE_BOOL, 0},          {"F4", 4, XQ_DTYPE_BLOCKS, 1},
    {"F6_E2M3", 6, XQ_DTYPE_BLOCKS, 2},     {"F6_E3M2", 6, XQ_DTYPE_BLOCKS, 3},
    {"U8", 8, XQ_DTYPE_U8, 4},              {"I8", 8, XQ_DTYPE_I8, 5},
    {"F8_E5M2", 8, XQ_DTYPE_F8_E5M2, 6},    {"F8_E4M3", 8, XQ_DTYPE_F8_E4M3, 7},
    {"F8_E8M0", 8, XQ_DTYPE_BLOCKS, 8},     {"F8_E4M3FNUZ", 8, XQ_DTYPE_BLOCKS, 9},
    {"F8_E5M2FNUZ", 8, XQ_DTYPE_BLOCKS, 10}, {"I16", 16, XQ_DTYPE_I16, 11},
    {"U16", 16, XQ_DTYPE_U16, 12},          {"F16", 16, XQ_DTYPE_F16, 13},
    {"BF16", 16, XQ_DTYPE_BF16, 14},        {"I32", 32, XQ_DTYPE_I32, 15},
    {"U32", 32, XQ_DTYPE_U32, 16},          {"F32", 32, XQ_DTYPE_F32, 17},
    {"C64", 64, XQ_DTYPE_BLOCKS, 18},       {"F64", 64, XQ_DTYPE_F64, 19},
    {"I64", 64, XQ_DTYPE_I64, 20},          {"U64", 64, XQ_DTYPE_U64, 21},
};

inline const DtypeDesc* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

// The safetensors name of an xquant element type (nullptr for BLOCKS/INVALID).
inline const char* dtype_name(xq_dtype t) {
  if (t == XQ_DTYPE_BLOCKS || t == XQ_DTYPE_INVALID) return nullptr;
  for (const auto& d : kDtypes)
    if (d.dtype == t) return d.name;
  return nullptr;
}

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// ---- the catalog ------------------------------------------------------------

struct TensorEntry {
  std::string name;
  std::string dtype;  // as written ("BF16")
  uint32_t bits = 0;
  xq_dtype xdtype = XQ_DTYPE_INVALID;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // relative to the data section (8 + N)
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
  uint64_t numel() const {
    uint64_t n = 1;
    for (auto d : shape) n *= static_cast<uint64_t>(d);
    return n;
  }
};

struct Header {
  uint64_t header_bytes = 0;  // N
  uint64_t data_offset = 0;   // 8 + N: where data_offsets count from
  uint64_t file_size = 0;
  std::vector<TensorEntry> tensors;  // sorted by offset (file order)
  std::vector<std::pair<std::string, std::string>> metadata;
};

namespace detail {

[[noreturn]] inline void malformed(const std::string& file, const std::string& what) {
  throw Error(XQ_ERR_MALFORMED, file + ": " + what);
}

inline std::string errno_text() { return std::strerror(errno); }

// Strict UTF-8 check (the reference decodes the header with from_utf8).
inline bool valid_utf8(std::string_view s, size_t* bad_at) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) break;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if (!ok || (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      break;
    i += len;
  }
  if (i < s.size()) {
    *bad_at = i;
    return false;
  }
  return true;
}

// JSON parse that rejects duplicate keys at any depth (nlohmann keeps the
// last one silently; the reference's serde map rejects them).
inline nlohmann::ordered_json parse_json_strict(const std::string& file, std::string_view text) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto cb = [&](int, nlohmann::ordered_json::parse_event_t ev, nlohmann::ordered_json& parsed) {
    using E = nlohmann::ordered_json::parse_event_t;
    if (ev == E::object_start) keys.emplace_back();
    else if (ev == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == E::key && !keys.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text.begin(), text.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    malformed(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) malformed(file, "header has a duplicate key '" + duplicate + "'");
  return j;
}

inline uint64_t get_u64(const std::string& file, const std::string& tensor, const char* field,
                        const nlohmann::ordered_json& v) {
  if (!v.is_number_unsigned())
    malformed(file, "tensor '" + tensor + "': " + field + " must hold non-negative integers, got " + v.dump());
  return v.get<uint64_t>();
}

}  // namespace detail

// Checks the u64 header length N against the limits and the file size.
inline void check_header_length(const std::string& file, uint64_t n, uint64_t file_size) {
  if (n > kMaxHeaderBytes)
    detail::malformed(file, format("header length %llu exceeds the 100,000,000-byte limit",
                                   static_cast<unsigned long long>(n)));
  if (file_size < 8 || n > file_size - 8)
    detail::malformed(file, format("header length %llu runs past the end of the file (file size %llu)",
                                   static_cast<unsigned long long>(n),
                                   static_cast<unsigned long long>(file_size)));
}

// Parses and validates header text `json` (the N bytes after the length) of
// a file of `file_size` bytes. `file` names the file in messages.
inline Header parse_header(const std::string& file, std::string_view json, uint64_t file_size) {
  Header h;
  h.header_bytes = json.size();
  h.data_offset = 8 + json.size();
  h.file_size = file_size;
  check_header_length(file, json.size(), file_size);
  size_t bad = 0;
  if (!detail::valid_utf8(json, &bad))
    detail::malformed(file, format("header is not valid UTF-8 (byte %zu of the header)", bad));
  size_t first = json.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || json[first] != '{')
    detail::malformed(file, "header does not start with '{' (not a safetensors file, or a corrupt header)");

  nlohmann::ordered_json j = detail::parse_json_strict(file, json);
  if (!j.is_object()) detail::malformed(file, "header JSON is not an object");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) detail::malformed(file, "__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          detail::malformed(file, "__metadata__ value of '" + m.key() + "' is not a string: " + m.value().dump());
        h.metadata.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) detail::malformed(file, "tensor '" + name + "': entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || sh == v.end() || off == v.end())
      detail::malformed(file, "tensor '" + name + "': entry needs dtype, shape and data_offsets");
    if (!dt->is_string()) detail::malformed(file, "tensor '" + name + "': dtype is not a string");
    const DtypeDesc* desc = find_dtype(dt->get<std::string>());
    if (!desc) detail::malformed(file, "tensor '" + name + "': unknown dtype '" + dt->get<std::string>() + "'");
    if (!sh->is_array()) detail::malformed(file, "tensor '" + name + "': shape is not an array");
    if (!off->is_array() || off->size() != 2)
      detail::malformed(file, "tensor '" + name + "': data_offsets must be [BEGIN, END]");
    TensorEntry t;
    t.name = name;
    t.dtype = desc->name;
    t.bits = desc->bits;
    t.xdtype = desc->dtype;
    for (const auto& d : *sh) {
      uint64_t dim = detail::get_u64(file, name, "shape", d);
      if (dim > static_cast<uint64_t>(INT64_MAX)) detail::malformed(file, "tensor '" + name + "': dimension too large");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    t.begin = detail::get_u64(file, name, "data_offsets", (*off)[0]);
    t.end = detail::get_u64(file, name, "data_offsets", (*off)[1]);
    if (t.end < t.begin)
      detail::malformed(file, format("tensor '%s': data_offsets [%llu, %llu] end before they begin", name.c_str(),
                                     static_cast<unsigned long long>(t.begin),
                                     static_cast<unsigned long long>(t.end)));
    h.tensors.push_back(std::move(t));
  }

  // Reference order of checks: contiguity per sorted tensor, then size, then
  // the file-size match after the last one.
  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  std::string prev = "(start of data)";
  for (const auto& t : h.tensors) {
    if (t.begin != expected) {
      const char* kind = t.begin > expected ? "a hole before" : "an overlap with the previous tensor at";
      detail::malformed(file, format("tensor '%s': data_offsets [%llu, %llu] leave %s offset %llu "
                                     "(previous tensor '%s' ends at %llu)",
                                     t.name.c_str(), static_cast<unsigned long long>(t.begin),
                                     static_cast<unsigned long long>(t.end), kind,
                                     static_cast<unsigned long long>(t.begin), prev.c_str(),
                                     static_cast<unsigned long long>(expected)));
    }
    // prod(shape) * bits without overflow.
    unsigned __int128 nbits = t.bits;
    for (auto d : t.shape) {
      nbits *= static_cast<uint64_t>(d);
      if (nbits > (static_cast<unsigned __int128>(1) << 100)) break;
    }
    if (nbits % 8 != 0)
      detail::malformed(file, "tensor '" + t.name + "': element count times " + std::to_string(t.bits) +
                                  " bits is not a whole number of bytes");
    if (nbits / 8 != t.end - t.begin)
      detail::malformed(file, format("tensor '%s': dtype %s with shape of %llu elements needs %s bytes but "
                                     "data_offsets [%llu, %llu] hold %llu",
                                     t.name.c_str(), t.dtype.c_str(), static_cast<unsigned long long>(t.numel()),
                                     nbits / 8 > UINT64_MAX ? "too many"
                                                            : std::to_string(static_cast<uint64_t>(nbits / 8)).c_str(),
                                     static_cast<unsigned long long>(t.begin), static_cast<unsigned long long>(t.end),
                                     static_cast<unsigned long long>(t.end - t.begin)));
    expected = t.end;
    prev = t.name;
  }
  if (h.data_offset + expected != file_size)
    detail::malformed(file, format("tensor data ends at byte %llu of the file (8 + header %llu + %llu) but the "
                                   "file has %llu bytes (truncated file or trailing data)",
                                   static_cast<unsigned long long>(h.data_offset + expected),
                                   static_cast<unsigned long long>(h.header_bytes),
                                   static_cast<unsigned long long>(expected),
                                   static_cast<unsigned long long>(file_size)));
  return h;
}

// RAII file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Reads exactly n bytes at `offset` or throws (short read = truncated file).
inline void pread_all(int fd, void* dst, size_t n, uint64_t offset, const std::string& file) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(XQ_ERR_IO, file + ": read failed: " + detail::errno_text());
    }
    if (r == 0) detail::malformed(file, "unexpected end of file");
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

inline void write_all(int fd, const void* src, size_t n, const std::string& file) {
  const auto* p = static_cast<const char*>(src);
  while (n > 0) {
    ssize_t r = ::write(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(XQ_ERR_IO, file + ": write failed: " + detail::errno_text());
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
}

inline uint64_t read_u64_le(const unsigned char* b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

// Opens `path`, reads and validates its header. The open descriptor is
// returned through `fd_out` when given (the loader maps it next).
inline Header read_header(const std::filesystem::path& path, Fd* fd_out = nullptr) {
  const std::string file = path.string();
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    xq_status s = errno == ENOENT ? XQ_ERR_NOT_FOUND : XQ_ERR_IO;
    throw Error(s, file + ": cannot open: " + detail::errno_text());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(XQ_ERR_IO, file + ": cannot stat: " + detail::errno_text());
  if (!S_ISREG(st.st_mode)) throw Error(XQ_ERR_INVALID_ARGUMENT, file + ": not a regular file");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8)
    detail::malformed(file, format("file has %llu bytes, fewer than the 8-byte header length",
                                   static_cast<unsigned long long>(size)));
  unsigned char lenbuf[8];
  pread_all(fd.get(), lenbuf, 8, 0, file);
  uint64_t n = read_u64_le(lenbuf);
  check_header_length(file, n, size);
  std::string json(static_cast<size_t>(n), '\0');
  pread_all(fd.get(), json.data(), json.size(), 8, file);
  Header h = parse_header(file, json, size);
  if (fd_out) *fd_out = std::move(fd);
  return h;
}

// ---- writer -----------------------------------------------------------------

// Builds the header text for `tensors` (offsets as given), padded with spaces
// to a multiple of 8. Metadata goes first, then tensors in the given order.
inline std::string build_header(const std::vector<TensorEntry>& tensors,
                                const std::vector<std::pair<std::string, std::string>>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    j["__metadata__"] = std::move(m);
  }
  for (const auto& t : tensors) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = t.dtype;
    e["shape"] = t.shape;
    e["data_offsets"] = {t.begin, t.end};
    j[t.name] = std::move(e);
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// ---- temporaries of writers that died ---------------------------------------

// A writer's temporaries are named ".<final file name>.<pid>.<n>.data" (the
// appended tensor data) and ".<final file name>.<pid>.<n>.tmp" (the staged
// file), see Writer::temp_name. A writer killed before it could abort
// (kill -9, power loss) leaves them; the next writer into the folder removes
// those whose process is gone (remove_stale_temporaries).
struct TempFileName {
  std::string final_name;  // "model.safetensors"
  long pid = 0;
  unsigned long long counter = 0;
  std::string suffix;  // ".data" or ".tmp"
};

// Parses a temporary's file name; false for anything else. Only temporaries
// of safetensors files match, so no other dot-file is ever taken for one.
inline bool parse_temp_file_name(const std::string& name, TempFileName& out) {
  std::string rest;
  for (const char* suffix : {".data", ".tmp"}) {
    std::string_view sv(suffix);
    if (name.size() > sv.size() && name.compare(name.size() - sv.size(), sv.size(), sv) == 0) {
      out.suffix = suffix;
      rest = name.substr(0, name.size() - sv.size());
    }
  }
  if (rest.empty() || rest[0] != '.') return false;
  auto take_number = [&rest](unsigned long long& value) {
    size_t dot = rest.rfind('.');
    if (dot == std::string::npos || dot + 1 == rest.size() || rest.size() - dot - 1 > 19) return false;
    for (size_t i = dot + 1; i < rest.size(); ++i)
      if (rest[i] < '0' || rest[i] > '9') return false;
    value = std::stoull(rest.substr(dot + 1));
    rest.resize(dot);
    return true;
  };
  unsigned long long pid = 0;
  if (!take_number(out.counter) || !take_number(pid) || pid == 0 || pid > 0x7fffffffull) return false;
  out.pid = static_cast<long>(pid);
  out.final_name = rest.substr(1);
  const std::string_view ext(".safetensors");
  return out.final_name.size() > ext.size() &&
         out.final_name.compare(out.final_name.size() - ext.size(), ext.size(), ext) == 0;
}

// Whether a process with this id exists (EPERM: it does, owned by another user).
inline bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// Removes the temporaries in `dir` left by writers whose process no longer
// runs; a live process's (this one's included) are never touched. Returns
// the paths removed. Best effort: an unreadable folder removes nothing.
inline std::vector<std::filesystem::path> remove_stale_temporaries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> removed;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir.empty() ? std::filesystem::path(".") : dir, ec);
  if (ec) return removed;
  for (const auto& entry : it) {
    TempFileName t;
    if (!entry.is_regular_file(ec) || !parse_temp_file_name(entry.path().filename().string(), t)) continue;
    if (t.pid == static_cast<long>(::getpid()) || process_alive(t.pid)) continue;
    if (std::filesystem::remove(entry.path(), ec)) removed.push_back(entry.path());
  }
  return removed;
}

class Writer {
 public:
  // `final_path` may be changed until finish (sharded writers learn their
  // final names only when the shard count is known).
  explicit Writer(std::filesystem::path final_path) : final_(std::move(final_path)) {}
  ~Writer() { abort(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void set_final_path(std::filesystem::path p) { final_ = std::move(p); }
  const std::filesystem::path& final_path() const { return final_; }
  void add_metadata(const std::string& key, const std::string& value) { metadata_.emplace_back(key, value); }

  // Appends one tensor; `data` holds exactly prod(shape)*bits/8 bytes.
  void add(const std::string& name, std::string_view dtype, const std::vector<int64_t>& shape, const void* data,
           uint64_t nbytes) {
    if (staged_) throw Error(XQ_ERR_INVALID_ARGUMENT, "safetensors writer: add after finish");
    const DtypeDesc* d = find_dtype(dtype);
    if (!d) throw Error(XQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '" + name + "': unknown dtype '" +
                                                     std::string(dtype) + "'");
    if (name.empty() || name == "__metadata__")
      throw Error(XQ_ERR_INVALID_ARGUMENT, "safetensors writer: invalid tensor name '" + name + "'");
    if (names_.count(name))
      throw Error(XQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '" + name + "' added twice");
    unsigned __int128 nbits = d->bits;
    for (auto s : shape) {
      if (s < 0) throw Error(XQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '" + name + "': negative dimension");
      nbits *= static_cast<uint64_t>(s);
    }
    if (nbits % 8 != 0 || nbits / 8 != nbytes)
      throw Error(XQ_ERR_INVALID_ARGUMENT,
                  format("safetensors writer: tensor '%s': %llu bytes given, dtype %s and its shape need %llu",
                         name.c_str(), static_cast<unsigned long long>(nbytes), d->name,
                         static_cast<unsigned long long>(nbits / 8)));
    if (failed_) throw Error(XQ_ERR_IO, final_.string() + ": an earlier write failed; the writer must be aborted");
    open_data();
    failed_ = true;  // until the bytes are all down: a partial write would shift every later offset
    write_all(data_fd_.get(), data, static_cast<size_t>(nbytes), data_path_.string());
    failed_ = false;
    TensorEntry t;
    t.name = name;
    t.dtype = d->name;
    t.bits = d->bits;
    t.xdtype = d->dtype;
    t.shape = shape;
    t.begin = data_bytes_;
    t.end = data_bytes_ + nbytes;
    entries_.push_back(std::move(t));
    names_.insert(name);
    data_bytes_ += nbytes;
  }

  uint64_t data_bytes() const { return data_bytes_; }
  size_t tensor_count() const { return entries_.size(); }
  bool has(const std::string& name) const { return names_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& t : entries_) out.push_back(t.name);
    return out;
  }

  // Writes the complete file under a temporary name beside the final path
  // and fsyncs it; returns that name. The writer still owns it (abort
  // removes it) until commit().
  std::filesystem::path stage() {
    if (staged_) return staged_path_;
    if (failed_) throw Error(XQ_ERR_IO, final_.string() + ": an earlier write failed; the writer must be aborted");
    open_data();  // an empty file is still a valid safetensors file
    std::vector<TensorEntry> order = entries_;
    std::stable_sort(order.begin(), order.end(), [](const TensorEntry& a, const TensorEntry& b) {
      int ra = find_dtype(a.dtype)->rank, rb = find_dtype(b.dtype)->rank;
      return ra != rb ? ra > rb : a.name < b.name;
    });
    std::vector<TensorEntry> placed = order;
    uint64_t off = 0;
    for (auto& t : placed) {
      uint64_t n = t.end - t.begin;
      t.begin = off;
      t.end = off + n;
      off += n;
    }
    std::string header = build_header(placed, metadata_);
    if (header.size() > kMaxHeaderBytes)
      throw Error(XQ_ERR_INVALID_ARGUMENT, final_.string() + ": header would exceed 100,000,000 bytes");

    staged_path_ = temp_name(".tmp");
    const std::string out_name = staged_path_.string();
    Fd out(::open(out_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!out) throw Error(XQ_ERR_IO, out_name + ": cannot create: " + detail::errno_text());
    staged_ = true;  // from here abort() removes staged_path_
    try {
      unsigned char lenbuf[8];
      uint64_t n = header.size();
      for (int i = 0; i < 8; ++i) lenbuf[i] = static_cast<unsigned char>(n >> (8 * i));
      write_all(out.get(), lenbuf, 8, out_name);
      write_all(out.get(), header.data(), header.size(), out_name);
      std::vector<char> buf(std::min<uint64_t>(std::max<uint64_t>(data_bytes_, 1), 8u << 20));
      for (const auto& t : order) {
        uint64_t pos = t.begin, left = t.end - t.begin;
        while (left > 0) {
          size_t chunk = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
          pread_all(data_fd_.get(), buf.data(), chunk, pos, data_path_.string());
          write_all(out.get(), buf.data(), chunk, out_name);
          pos += chunk;
          left -= chunk;
        }
      }
      if (::fsync(out.get()) != 0) throw Error(XQ_ERR_IO, out_name + ": fsync failed: " + detail::errno_text());
    } catch (...) {
      out.reset();
      ::unlink(staged_path_.c_str());  // never leave a partial file that a retry would take as complete
      staged_ = false;
      throw;
    }
    remove_data();
    return staged_path_;
  }

  // Renames the staged file over the final path and fsyncs the directory.
  void commit() {
    if (!staged_) stage();
    std::error_code ec;
    std::filesystem::rename(staged_path_, final_, ec);
    if (ec) throw Error(XQ_ERR_IO, "cannot rename '" + staged_path_.string() + "' to '" + final_.string() +
                                       "': " + ec.message());
    staged_ = false;
    committed_ = true;
    fsync_dir(final_.parent_path());
  }

  void finish() {
    stage();
    commit();
  }

  // Removes every temporary; never throws. A committed file stays.
  void abort() noexcept {
    remove_data();
    if (staged_) {
      ::unlink(staged_path_.c_str());
      staged_ = false;
    }
  }

  static void fsync_dir(const std::filesystem::path& dir) {
    std::string d = dir.empty() ? std::string(".") : dir.string();
    Fd fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd) (void)::fsync(fd.get());  // best effort: some filesystems refuse directory fsync
  }

 private:
  std::filesystem::path temp_name(const char* suffix) const {
    static std::atomic<uint64_t> counter{0};  // constant-initialised
    auto name = format(".%s.%ld.%llu%s", final_.filename().c_str(), static_cast<long>(::getpid()),
                       static_cast<unsigned long long>(counter.fetch_add(1)), suffix);
    return final_.parent_path() / name;
  }
  void open_data() {
    if (data_fd_) return;
    remove_stale_temporaries(final_.parent_path());  // left by an earlier run that was killed
    data_path_ = temp_name(".data");
    data_fd_ = Fd(::open(data_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!data_fd_) throw Error(XQ_ERR_IO, data_path_.string() + ": cannot create: " + detail::errno_text());
  }
  void remove_data() noexcept {
    if (data_fd_) {
      data_fd_.reset();
      ::unlink(data_path_.c_str());
    }
  }

  std::filesystem::path final_;
  std::filesystem::path data_path_;
  std::filesystem::path staged_path_;
  Fd data_fd_;
  bool staged_ = false;
  bool committed_ = false;
  bool failed_ = false;
  uint64_t data_bytes_ = 0;
  std::vector<TensorEntry> entries_;
  std::set<std::string> names_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace xquant::sdk::safetensors
