// gguf_emit.cpp: see gguf_emit.hpp. The byte layout is the GGUF v3 one the
// parser in ../gguf/gguf_file.cpp reads (ggml/docs/gguf.md upstream):
// magic, version, tensor count, kv count, key/value pairs, tensor infos,
// padding to the alignment, tensor data.
#include "gguf_emit.hpp"

#include "gguf_types.hpp"

#include <atomic>
#include <cstring>

namespace xquant::gguf {

using sdk::Error;
using sdk::format;
namespace st = sdk::safetensors;

namespace {

class Bytes {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void f64(double v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    out_.append(s);
  }
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void pad_to(uint64_t alignment) { out_.append((alignment - out_.size() % alignment) % alignment, '\0'); }
  std::string take() { return std::move(out_); }
  size_t size() const { return out_.size(); }

  // One scalar of type t from an integer or a float.
  void scalar(VType t, int64_t i, double f) {
    switch (t) {
      case VType::U8: case VType::I8: case VType::BOOL: { uint8_t v = static_cast<uint8_t>(i); raw(&v, 1); break; }
      case VType::U16: case VType::I16: { uint16_t v = static_cast<uint16_t>(i); raw(&v, 2); break; }
      case VType::U32: case VType::I32: u32(static_cast<uint32_t>(i)); break;
      case VType::U64: case VType::I64: i64(i); break;
      case VType::F32: f32(static_cast<float>(f)); break;
      case VType::F64: f64(f); break;
      default: throw Error(XQ_ERR_INTERNAL, "gguf writer: not a scalar type");
    }
  }

 private:
  std::string out_;
};

void put_value(Bytes& b, const Value& v) {
  b.u32(static_cast<uint32_t>(v.type));
  if (v.type == VType::STRING) return b.str(v.s);
  if (v.type != VType::ARRAY) return b.scalar(v.type, v.i, v.f);
  b.u32(static_cast<uint32_t>(v.elem));
  if (v.elem == VType::STRING) {
    b.u64(v.strings.size());
    for (const auto& s : v.strings) b.str(s);
  } else if (v.elem == VType::F32 || v.elem == VType::F64) {
    b.u64(v.floats.size());
    for (double f : v.floats) b.scalar(v.elem, 0, f);
  } else {
    b.u64(v.ints.size());
    for (int64_t i : v.ints) b.scalar(v.elem, i, 0);
  }
}

Value scalar(VType t) {
  Value v;
  v.type = t;
  return v;
}

}  // namespace

Value str_value(const std::string& s) { Value v = scalar(VType::STRING); v.s = s; return v; }
Value u32_value(int64_t i) { Value v = scalar(VType::U32); v.i = i; return v; }
Value f32_value(double f) { Value v = scalar(VType::F32); v.f = f; return v; }
Value bool_value(bool b) { Value v = scalar(VType::BOOL); v.i = b; return v; }
Value strings_value(const std::vector<std::string>& s) {
  Value v = scalar(VType::ARRAY);
  v.elem = VType::STRING;
  v.strings = s;
  v.count = s.size();
  return v;
}
Value f32s_value(const std::vector<double>& f) {
  Value v = scalar(VType::ARRAY);
  v.elem = VType::F32;
  v.floats = f;
  v.count = f.size();
  return v;
}
Value i32s_value(const std::vector<int64_t>& i) {
  Value v = scalar(VType::ARRAY);
  v.elem = VType::I32;
  v.ints = i;
  v.count = i.size();
  return v;
}

// Temporaries of this final file left by a writer that was killed before it
// could abort (".<file>.<pid>.<n>.data|.tmp", as temp_name makes them): those
// of dead processes go; a live process's are left alone. The safetensors
// writers do the same for theirs (sdk/safetensors.hpp remove_stale_temporaries).
void remove_stale_temporaries(const std::filesystem::path& final_path) {
  const std::string prefix = "." + final_path.filename().string() + ".";
  std::error_code ec;
  const std::filesystem::path dir = final_path.has_parent_path() ? final_path.parent_path() : ".";
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || !entry.is_regular_file(ec)) continue;
    std::string rest = name.substr(prefix.size());  // "<pid>.<n>.data"
    const size_t dot1 = rest.find('.'), dot2 = dot1 == std::string::npos ? dot1 : rest.find('.', dot1 + 1);
    if (dot2 == std::string::npos) continue;
    const std::string pid = rest.substr(0, dot1), n = rest.substr(dot1 + 1, dot2 - dot1 - 1), suffix = rest.substr(dot2);
    auto digits = [](const std::string& v) {
      return !v.empty() && v.size() <= 10 && v.find_first_not_of("0123456789") == std::string::npos;
    };
    if (!digits(pid) || !digits(n) || (suffix != ".data" && suffix != ".tmp")) continue;
    const long p = std::stol(pid);
    if (p <= 0 || p == static_cast<long>(::getpid()) || st::process_alive(p)) continue;
    std::filesystem::remove(entry.path(), ec);
  }
}

Emitter::Emitter(std::filesystem::path final_path) : final_(std::move(final_path)) {
  remove_stale_temporaries(final_);
}

std::filesystem::path Emitter::temp_name(const char* suffix) const {
  static std::atomic<uint64_t> counter{0};
  return final_.parent_path() / format(".%s.%ld.%llu%s", final_.filename().c_str(), static_cast<long>(::getpid()),
                                       static_cast<unsigned long long>(counter.fetch_add(1)), suffix);
}

void Emitter::set(const std::string& key, Value v) {
  if (!keys_.insert(key).second) throw Error(XQ_ERR_INTERNAL, "gguf writer: metadata key '" + key + "' set twice");
  kv_.emplace_back(key, std::move(v));
}

void Emitter::add_tensor(const std::string& name, uint32_t type, const std::vector<int64_t>& ne, const void* bytes,
                         uint64_t nbytes) {
  const TypeInfo* ti = type_info(type);
  if (!ti || ne.empty() || ne.size() > 4) throw Error(XQ_ERR_INTERNAL, "gguf writer: bad tensor '" + name + "'");
  if (!tensor_names_.insert(name).second)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("%s: two tensors map to the GGUF name '%s'", final_.c_str(), name.c_str()));
  uint64_t numel = 1;
  for (int64_t d : ne) numel *= static_cast<uint64_t>(d);
  if (ne[0] % ti->block_size != 0 || numel / ti->block_size * ti->type_size != nbytes)
    throw Error(XQ_ERR_INTERNAL, format("gguf writer: tensor '%s': %llu bytes do not match its %s shape", name.c_str(),
                                        static_cast<unsigned long long>(nbytes), ti->name));
  if (failed_) throw Error(XQ_ERR_IO, final_.string() + ": an earlier write failed; the writer must be aborted");
  if (!data_fd_) {
    data_path_ = temp_name(".data");
    data_fd_ = st::Fd(::open(data_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!data_fd_) throw Error(XQ_ERR_IO, data_path_.string() + ": cannot create: " + std::strerror(errno));
  }
  failed_ = true;
  const uint64_t pad = (kAlignment - data_bytes_ % kAlignment) % kAlignment;
  static const char zeros[kAlignment] = {};
  st::write_all(data_fd_.get(), zeros, static_cast<size_t>(pad), data_path_.string());
  data_bytes_ += pad;
  st::write_all(data_fd_.get(), bytes, static_cast<size_t>(nbytes), data_path_.string());
  failed_ = false;
  tensors_.push_back({name, type, ne, data_bytes_});
  data_bytes_ += nbytes;
}

std::string Emitter::header_bytes() const {
  Bytes b;
  b.raw("GGUF", 4);
  b.u32(3);
  b.u64(tensors_.size());
  b.u64(kv_.size());
  for (const auto& [k, v] : kv_) {
    b.str(k);
    put_value(b, v);
  }
  for (const auto& t : tensors_) {
    b.str(t.name);
    b.u32(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) b.u64(static_cast<uint64_t>(d));
    b.u32(t.type);
    b.u64(t.offset);
  }
  b.pad_to(kAlignment);
  return b.take();
}

void Emitter::finish() {
  if (failed_) throw Error(XQ_ERR_IO, final_.string() + ": an earlier write failed; the writer must be aborted");
  const std::string header = header_bytes();
  staged_path_ = temp_name(".tmp");
  st::Fd out(::open(staged_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) throw Error(XQ_ERR_IO, staged_path_.string() + ": cannot create: " + std::strerror(errno));
  staged_ = true;  // from here abort() removes it
  st::write_all(out.get(), header.data(), header.size(), staged_path_.string());
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(data_bytes_, 1), 8u << 20)));
  for (uint64_t pos = 0; pos < data_bytes_;) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(data_bytes_ - pos, buf.size()));
    st::pread_all(data_fd_.get(), buf.data(), chunk, pos, data_path_.string());
    st::write_all(out.get(), buf.data(), chunk, staged_path_.string());
    pos += chunk;
  }
  // The data section ends padded to the alignment, as ggml's gguf writer
  // leaves it (gguf_write_to_buf pads after every tensor, the last one too):
  // gguf_init_from_file with no_alloc = false (llama-quantize reading an
  // imatrix) reads that whole padded blob and refuses a shorter file.
  static const char zeros[kAlignment] = {};
  st::write_all(out.get(), zeros, static_cast<size_t>((kAlignment - data_bytes_ % kAlignment) % kAlignment),
                staged_path_.string());
  if (::fsync(out.get()) != 0) throw Error(XQ_ERR_IO, staged_path_.string() + ": fsync failed: " + std::strerror(errno));
  out.reset();
  std::error_code ec;
  std::filesystem::rename(staged_path_, final_, ec);
  if (ec) throw Error(XQ_ERR_IO, "cannot rename '" + staged_path_.string() + "' to '" + final_.string() + "': " + ec.message());
  staged_ = false;
  st::Writer::fsync_dir(final_.parent_path());
  abort();  // the data temporary
}

void Emitter::abort() noexcept {
  if (data_fd_) {
    data_fd_.reset();
    ::unlink(data_path_.c_str());
  }
  if (staged_) {
    ::unlink(staged_path_.c_str());
    staged_ = false;
  }
}

}  // namespace xquant::gguf
