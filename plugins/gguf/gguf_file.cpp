// gguf_file.cpp: the GGUF container reader (see gguf_file.hpp). Follows
// ggml's rules (ggml docs/gguf.md; src/gguf.cpp gguf_init_from_file_impl):
// v1 rejected, nested arrays rejected, duplicate keys / tensor names rejected,
// names under 64 bytes, n_dims <= 4, ne[0] a multiple of the block size,
// offsets multiples of general.alignment (u32, power of two, default 32),
// tensor data inside the file.
#include "gguf_file.hpp"

#include "gguf_types.hpp"

#include <xquant/sdk/host.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace xquant::gguf {

using sdk::Error;
using sdk::format;

const char* vtype_name(uint32_t t) {
  static constexpr const char* kNames[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                           "bool", "string", "array", "u64", "i64", "f64"};
  return t < 13 ? kNames[t] : "unknown";
}

bool Value::is_int() const {
  switch (type) {
    case VType::U8: case VType::I8: case VType::U16: case VType::I16: case VType::U32:
    case VType::I32: case VType::U64: case VType::I64: case VType::BOOL:
      return true;
    default:
      return false;
  }
}

uint64_t TensorInfo::row_bytes() const {
  const TypeInfo* t = type_info(type);
  return t ? static_cast<uint64_t>(ne[0] / t->block_size) * t->type_size : 0;
}

namespace {

// Bounds-checked little-endian cursor over the mapped file.
struct Reader {
  const std::string& path;
  const uint8_t* base;
  uint64_t size;
  uint64_t pos = 0;

  [[noreturn]] void malformed(uint64_t at, const std::string& field, const std::string& what) const {
    throw Error(XQ_ERR_MALFORMED,
                format("%s: %s at byte offset %llu: %s", path.c_str(), field.c_str(),
                       static_cast<unsigned long long>(at), what.c_str()));
  }
  uint64_t left() const { return size - pos; }
  void need(uint64_t n, const std::string& field) const {
    if (n > left())
      malformed(pos, field,
                format("needs %llu bytes but only %llu remain in the file (truncated or corrupt)",
                       static_cast<unsigned long long>(n), static_cast<unsigned long long>(left())));
  }
  template <class T>
  T get(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, base + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const std::string& field) {
    const uint64_t len = str_length(field);
    std::string s(reinterpret_cast<const char*>(base + pos), static_cast<size_t>(len));
    pos += len;
    return s;
  }
  // Checks a string as str() does and steps over it.
  void skip_str(const std::string& field) { pos += str_length(field); }
  uint64_t str_length(const std::string& field) {
    const uint64_t at = pos;
    const uint64_t len = get<uint64_t>(field + " length");
    if (len > left())
      malformed(at, field,
                format("string length %llu runs past the end of the file (%llu bytes remain)",
                       static_cast<unsigned long long>(len), static_cast<unsigned long long>(left())));
    return len;
  }
};

size_t scalar_size(VType t) {
  switch (t) {
    case VType::U8: case VType::I8: case VType::BOOL: return 1;
    case VType::U16: case VType::I16: return 2;
    case VType::U32: case VType::I32: case VType::F32: return 4;
    case VType::U64: case VType::I64: case VType::F64: return 8;
    default: return 0;
  }
}

// Reads one scalar of type t; integer kinds go to *i, float kinds to *f.
void read_scalar(Reader& r, VType t, const std::string& field, int64_t* i, double* f) {
  switch (t) {
    case VType::U8: *i = r.get<uint8_t>(field); break;
    case VType::I8: *i = r.get<int8_t>(field); break;
    case VType::U16: *i = r.get<uint16_t>(field); break;
    case VType::I16: *i = r.get<int16_t>(field); break;
    case VType::U32: *i = r.get<uint32_t>(field); break;
    case VType::I32: *i = r.get<int32_t>(field); break;
    case VType::U64: *i = static_cast<int64_t>(r.get<uint64_t>(field)); break;
    case VType::I64: *i = r.get<int64_t>(field); break;
    case VType::F32: *f = r.get<float>(field); break;
    case VType::F64: *f = r.get<double>(field); break;
    case VType::BOOL: {
      const uint64_t at = r.pos;
      uint8_t b = r.get<uint8_t>(field);
      if (b > 1) r.malformed(at, field, format("bool value %u is neither 0 nor 1", b));
      *i = b;
      break;
    }
    default:
      r.malformed(r.pos, field, "not a scalar type");
  }
}

bool is_float_type(VType t) { return t == VType::F32 || t == VType::F64; }

Value read_value(Reader& r, uint32_t raw_type, const std::string& key, uint64_t type_at) {
  Value v;
  v.offset = r.pos;
  if (raw_type > 12)
    r.malformed(type_at, "value type of key '" + key + "'", format("unknown GGUF value type %u", raw_type));
  v.type = static_cast<VType>(raw_type);
  const std::string field = "value of key '" + key + "'";
  if (v.type == VType::STRING) {
    v.s = r.str(field);
  } else if (v.type == VType::ARRAY) {
    const uint64_t et_at = r.pos;
    uint32_t et = r.get<uint32_t>("array element type of key '" + key + "'");
    if (et == static_cast<uint32_t>(VType::ARRAY))
      r.malformed(et_at, "array element type of key '" + key + "'", "nested arrays are not supported (ggml rejects them)");
    if (et > 12)
      r.malformed(et_at, "array element type of key '" + key + "'", format("unknown GGUF value type %u", et));
    v.elem = static_cast<VType>(et);
    const uint64_t n_at = r.pos;
    v.count = r.get<uint64_t>("array length of key '" + key + "'");
    // Each element takes at least 1 byte (8 for a string's length), so a
    // count beyond what is left is corrupt: reject before allocating.
    const uint64_t min_elem = v.elem == VType::STRING ? 8 : scalar_size(v.elem);
    if (v.count > r.left() / min_elem)
      r.malformed(n_at, "array length of key '" + key + "'",
                  format("%llu elements of %s cannot fit in the %llu bytes left in the file",
                         static_cast<unsigned long long>(v.count), vtype_name(et),
                         static_cast<unsigned long long>(r.left())));
    v.elements_at = r.pos;
    if (v.elem == VType::STRING) {
      const bool keep = v.count <= kKeptStrings;
      if (keep) v.strings.reserve(static_cast<size_t>(v.count));
      for (uint64_t k = 0; k < v.count; ++k) {
        const std::string field = format("element %llu of key '%s'", static_cast<unsigned long long>(k), key.c_str());
        if (keep) v.strings.push_back(r.str(field));
        else r.skip_str(field);
      }
    } else if (is_float_type(v.elem)) {
      v.floats.resize(static_cast<size_t>(v.count));
      int64_t dummy = 0;
      for (uint64_t k = 0; k < v.count; ++k) read_scalar(r, v.elem, field, &dummy, &v.floats[k]);
    } else {
      v.ints.resize(static_cast<size_t>(v.count));
      double dummy = 0;
      for (uint64_t k = 0; k < v.count; ++k) read_scalar(r, v.elem, field, &v.ints[k], &dummy);
    }
  } else {
    read_scalar(r, v.type, field, &v.i, &v.f);
  }
  return v;
}

}  // namespace

bool File::has_magic(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char m[4] = {0, 0, 0, 0};
  ssize_t n = ::read(fd, m, 4);
  ::close(fd);
  return n == 4 && std::memcmp(m, "GGUF", 4) == 0;
}

const Value* File::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::vector<std::string> File::strings(const Value& v) const {
  if (v.elem != VType::STRING || v.count <= kKeptStrings) return v.strings;
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(v.count));
  uint64_t at = v.elements_at;  // every length was checked against the file's size by parse()
  for (uint64_t k = 0; k < v.count; ++k) {
    uint64_t len = 0;
    std::memcpy(&len, base_ + at, sizeof len);
    out.emplace_back(reinterpret_cast<const char*>(base_ + at + sizeof len), static_cast<size_t>(len));
    at += sizeof len + len;
  }
  return out;
}

File::~File() {
  if (base_) ::munmap(base_, static_cast<size_t>(size_));
}

File::File(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(errno == ENOENT ? XQ_ERR_NOT_FOUND : XQ_ERR_IO, format("%s: cannot open: %s", path.c_str(), std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(XQ_ERR_IO, format("%s: cannot stat: %s", path.c_str(), std::strerror(e)));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    throw Error(XQ_ERR_MALFORMED, format("%s: magic at byte offset 0: the file is empty", path.c_str()));
  }
  void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw Error(XQ_ERR_IO, format("%s: cannot mmap: %s", path.c_str(), std::strerror(e)));
  base_ = static_cast<uint8_t*>(p);
  // A throwing constructor runs no destructor: unmap here on failure.
  try {
    parse();
  } catch (...) {
    ::munmap(base_, static_cast<size_t>(size_));
    base_ = nullptr;
    throw;
  }
}

void File::parse() {
  Reader r{path_, base_, size_};
  // Header.
  r.need(4, "magic");
  if (std::memcmp(base_, "GGUF", 4) != 0) r.malformed(0, "magic", "not a GGUF file (the first 4 bytes are not 'GGUF')");
  r.pos = 4;
  version_ = r.get<uint32_t>("version");
  if ((version_ & 0xFFFFu) == 0)
    r.malformed(4, "version", format("version 0x%08x looks byte-swapped: a big-endian GGUF file, which is not supported", version_));
  if (version_ == 1) r.malformed(4, "version", "GGUF version 1 is not supported (it used 32-bit lengths); re-convert the file to v3");
  if (version_ != 2 && version_ != 3)
    throw Error(XQ_ERR_UNSUPPORTED, format("%s: version at byte offset 4: GGUF version %u is not supported (2 and 3 are)", path_.c_str(), version_));
  const uint64_t nt_at = r.pos;
  const uint64_t n_tensors = r.get<uint64_t>("tensor count");
  const uint64_t nkv_at = r.pos;
  const uint64_t n_kv = r.get<uint64_t>("metadata count");
  // A key/value takes >= 13 bytes (8 key length + 4 type + 1 value); a
  // tensor info >= 24 (8 name length + 4 n_dims + 4 type + 8 offset).
  if (n_kv > r.left() / 13)
    r.malformed(nkv_at, "metadata count", format("%llu key/value pairs cannot fit in a %llu-byte file",
                                                  static_cast<unsigned long long>(n_kv), static_cast<unsigned long long>(size_)));
  if (n_tensors > r.left() / 24)
    r.malformed(nt_at, "tensor count", format("%llu tensor infos cannot fit in a %llu-byte file",
                                               static_cast<unsigned long long>(n_tensors), static_cast<unsigned long long>(size_)));

  // Metadata.
  kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t key_at = r.pos;
    std::string key = r.str(format("key of metadata entry %llu", static_cast<unsigned long long>(k)));
    const uint64_t type_at = r.pos;
    uint32_t vt = r.get<uint32_t>("value type of key '" + key + "'");
    Value v = read_value(r, vt, key, type_at);
    if (kv_index_.count(key)) r.malformed(key_at, "key '" + key + "'", "duplicate metadata key");
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const Value* a = find("general.alignment")) {
    if (a->type != VType::U32)
      r.malformed(a->offset, "general.alignment", format("must be a u32, found %s", vtype_name(static_cast<uint32_t>(a->type))));
    if (a->i == 0 || (a->i & (a->i - 1)) != 0)
      r.malformed(a->offset, "general.alignment", format("%lld is not a power of two", static_cast<long long>(a->i)));
    alignment_ = static_cast<uint32_t>(a->i);
  }

  // Tensor infos.
  std::set<std::string> names;
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.info_offset = r.pos;
    t.name = r.str(format("name of tensor %llu", static_cast<unsigned long long>(k)));
    const std::string tf = "tensor '" + t.name + "'";
    if (t.name.size() >= 64)
      r.malformed(t.info_offset, tf + " name", format("name is %zu bytes; ggml allows at most 63", t.name.size()));
    if (!names.insert(t.name).second) r.malformed(t.info_offset, tf, "duplicate tensor name");
    const uint64_t nd_at = r.pos;
    t.n_dims = r.get<uint32_t>(tf + " n_dims");
    if (t.n_dims > 4) r.malformed(nd_at, tf + " n_dims", format("%u dimensions; at most 4 are allowed", t.n_dims));
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      const uint64_t at = r.pos;
      uint64_t ne = r.get<uint64_t>(tf + " ne");
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        r.malformed(at, format("%s ne[%u]", tf.c_str(), d), format("dimension %llu is out of range", static_cast<unsigned long long>(ne)));
      t.ne[d] = static_cast<int64_t>(ne);
    }
    const uint64_t type_at = r.pos;
    t.type = r.get<uint32_t>(tf + " type");
    const TypeInfo* ti = type_info(t.type);
    if (!ti) r.malformed(type_at, tf + " type", format("unknown ggml type %u", t.type));
    const uint64_t off_at = r.pos;
    t.offset = r.get<uint64_t>(tf + " offset");
    if (t.offset % alignment_ != 0)
      r.malformed(off_at, tf + " offset", format("data offset %llu is not a multiple of the alignment %u",
                                                 static_cast<unsigned long long>(t.offset), alignment_));
    if (t.ne[0] % ti->block_size != 0)
      r.malformed(t.info_offset, tf + " ne[0]", format("%lld is not a multiple of the %s block size %u",
                                                       static_cast<long long>(t.ne[0]), ti->name, ti->block_size));
    // Size with overflow checks: every factor is < 2^63.
    uint64_t nbytes = static_cast<uint64_t>(t.ne[0] / ti->block_size) * ti->type_size;
    if (t.ne[0] != 0 && nbytes / ti->type_size != static_cast<uint64_t>(t.ne[0] / ti->block_size))
      r.malformed(t.info_offset, tf, "tensor size overflows");
    for (int d = 1; d < 4; ++d) {
      uint64_t f = static_cast<uint64_t>(t.ne[d]);
      if (f != 0 && nbytes > std::numeric_limits<uint64_t>::max() / f)
        r.malformed(t.info_offset, tf, "tensor size overflows");
      nbytes *= f;
    }
    t.nbytes = nbytes;
    tensors_.push_back(std::move(t));
  }

  // Data section: aligned after the infos.
  data_offset_ = r.pos + (alignment_ - r.pos % alignment_) % alignment_;
  for (auto& t : tensors_) {
    const std::string tf = "tensor '" + t.name + "'";
    if (t.offset > size_ || data_offset_ > size_ - t.offset || t.nbytes > size_ - data_offset_ - t.offset)
      r.malformed(t.info_offset, tf + " data",
                  format("%llu bytes at data offset %llu (file offset %llu) run past the end of the %llu-byte file",
                         static_cast<unsigned long long>(t.nbytes), static_cast<unsigned long long>(t.offset),
                         static_cast<unsigned long long>(data_offset_ + t.offset), static_cast<unsigned long long>(size_)));
    t.file_offset = data_offset_ + t.offset;
  }
}

}  // namespace xquant::gguf
