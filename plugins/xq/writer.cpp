// writer.cpp: see writer.hpp.
#include "writer.hpp"

#include "canonical_codec.hpp"
#include "code_formats.hpp"
#include "manifest_check.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/xq_generated.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace xquant::xqc {

using sdk::format;

namespace {

// The most bytes of quantized tensors held for one batch (their copies).
constexpr uint64_t kMaxHeldBytes = 1ull << 30;

// Files a Hugging Face checkpoint folder carries beside its weights that a
// consumer of the model needs (the tokenizer and generation defaults),
// stored in the container so an .xq file converts back to a full HF folder.
constexpr const char* kCompanionFiles[] = {
    "config.json",       "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "tokenizer.model",   "vocab.json",     "merges.txt",            "added_tokens.json",       "chat_template.jinja"};

std::string errno_text() { return std::strerror(errno); }

std::string read_whole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw sdk::Error(XQ_ERR_IO, "cannot read '" + p.string() + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Writer::Writer(const sdk::Host& host, const xq_writer_options& o) : sdk::WriterBase(host) {
  if (!o.out_dir || !*o.out_dir) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "no output path");
  sdk::KvReader params(host, o.params);
  const int64_t align = params.get_int("alignment", kMinAlignment);
  if (align < kMinAlignment || align > kMaxAlignment || (align & (align - 1)) != 0)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                     format("alignment %lld is not a power of two in [%u, %u]", static_cast<long long>(align),
                            kMinAlignment, kMaxAlignment));
  alignment_ = static_cast<uint32_t>(align);
  store_layouts_ = params.get_bool("provider_layouts", true);
  const int64_t batch = params.get_int("pack_batch", 0);
  if (batch < 0) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, format("pack_batch %lld is negative", static_cast<long long>(batch)));
  pack_batch_ = batch > 0 ? static_cast<uint64_t>(batch) : 2ull * std::max<uint32_t>(1, host.num_threads());
  layouts_ = parse_layout_choice(params.get_string("layouts", "cpu,cuda"));
  const fs::path out = o.out_dir;
  // OUT ending in .xq is the file itself; otherwise a folder holding model.xq.
  if (out.extension() == ".xq") {
    final_ = out;
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
  } else {
    fs::create_directories(out);
    final_ = out / kFileName;
  }
  if (o.source_path) source_ = o.source_path;
  if (XQ_HAS_FIELD(&o, xq_writer_options, recipe_yaml) && o.recipe_yaml) recipe_ = o.recipe_yaml;
  copy_config(o.model_config);
  temp_ = final_;
  temp_ += format(".tmp-%d", static_cast<int>(::getpid()));
  fd_ = ::open(temp_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw sdk::Error(XQ_ERR_IO, "cannot create '" + temp_.string() + "': " + errno_text());
  const FileHeader zero{};
  write_at(0, &zero, sizeof zero);
}

Writer::~Writer() { abort(); }

void Writer::copy_config(const xq_kv* config) {
  if (!config) return;
  const xq_host_api* api = host.api();
  const uint64_t n = api->kv_count(api->ctx, config);
  for (uint64_t i = 0; i < n; ++i) {
    const char* key = api->kv_key_at(api->ctx, config, i);
    // The source's quantization_config described the source's tensors; the
    // manifest describes ours.
    if (!key || std::strcmp(key, "quantization_config") == 0) continue;
    xq_value v{};
    if (api->kv_get(api->ctx, config, key, &v) != XQ_OK) continue;
    // An .xq source's own keys (the xq loader derives them from its
    // manifest); its recipe and report carry over (a run's own report
    // replaces the source's through set_report).
    if (std::strncmp(key, "xq.", 3) == 0) {
      if (std::strcmp(key, "xq.recipe_yaml") == 0 && v.type == XQ_VALUE_STRING && recipe_.empty()) recipe_ = v.s;
      if (std::strcmp(key, "xq.report_json") == 0 && v.type == XQ_VALUE_STRING && v.s) report_ = v.s;
      continue;
    }
    ConfigValue c;
    c.key = key;
    c.type = v.type;
    c.i = v.i;
    c.f = v.f;
    if (v.type == XQ_VALUE_STRING && v.s) c.s = v.s;
    if (v.type == XQ_VALUE_INT_ARRAY) c.ints.assign(v.ints, v.ints + v.count);
    if (v.type == XQ_VALUE_FLOAT_ARRAY) c.floats.assign(v.floats, v.floats + v.count);
    if (v.type == XQ_VALUE_STRING_ARRAY)
      for (uint64_t k = 0; k < v.count; ++k) c.strings.emplace_back(v.strings[k] ? v.strings[k] : "");
    config_.push_back(std::move(c));
  }
}

void Writer::write_at(uint64_t offset, const void* data, uint64_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t w = ::pwrite(fd_, p, static_cast<size_t>(std::min<uint64_t>(size, 1u << 30)), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw sdk::Error(XQ_ERR_IO, "writing '" + temp_.string() + "' failed: " + errno_text());
    }
    p += w;
    offset += static_cast<uint64_t>(w);
    size -= static_cast<uint64_t>(w);
  }
}

Writer::Segment Writer::append(const std::string& layout, const void* data, uint64_t size) {
  const uint64_t at = align_up(end_, alignment_);
  if (at > end_) {
    const std::vector<uint8_t> pad(static_cast<size_t>(at - end_), 0);
    write_at(end_, pad.data(), pad.size());
  }
  write_at(at, data, size);
  end_ = at + size;
  return Segment{layout, at, size};
}

void Writer::start_name(const std::string& name) {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "the writer is finished");
  if (!names_.insert(name).second) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + name + "' added twice");
}

void Writer::add_dense(const char* name, const xq_tensor_view& t) {
  // Refused before anything is written for it: the reader checks the same.
  const size_t es = sdk::dtype_size(t.dtype);
  if (es == 0 || t.ndim > XQ_MAX_DIMS)
    throw sdk::Error(XQ_ERR_UNSUPPORTED, format("tensor '%s': dtype %s has no element size (block-quantized "
                                                "tensors are stored as canonical quantized tensors)",
                                                name, sdk::dtype_name(t.dtype)));
  uint64_t numel = 1;
  for (uint32_t d = 0; d < t.ndim; ++d) numel *= static_cast<uint64_t>(t.shape[d]);
  if (numel * es != t.nbytes)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, format("tensor '%s': %llu bytes for a shape of %llu %s elements", name,
                                                     static_cast<unsigned long long>(t.nbytes),
                                                     static_cast<unsigned long long>(numel), sdk::dtype_name(t.dtype)));
  start_name(name);
  Entry e;
  e.name = name;
  e.dtype = t.dtype;
  e.shape.assign(t.shape, t.shape + t.ndim);
  batch_entries_.push_back(entries_.size());
  entries_.push_back(std::move(e));
  batch_.add_dense(t.data, t.nbytes);
  if (batch_.held_bytes() >= kMaxHeldBytes) flush_batch();
}

void Writer::add_quantized(const char* module, const xq_quant_tensor& q) {
  const std::string name = std::string(module) + ".weight";
  // What the reader requires of a description (manifest_check.cpp), so no
  // file this writer finishes is one the reader refuses.
  const bool grouped = q.strategy == XQ_STRATEGY_GROUP;
  const bool fits = q.rows > 0 && q.cols > 0 &&
                    (grouped ? q.group_size > 0 && q.n_groups == (q.cols + q.group_size - 1) / q.group_size
                             : (q.strategy == XQ_STRATEGY_TENSOR || q.strategy == XQ_STRATEGY_CHANNEL) && q.n_groups == 1) &&
                    (!q.g_idx || grouped) && (q.act_scheme == XQ_ACT_NONE || act_bits_stored(q.act_bits));
  if (!fits)
    throw sdk::Error(XQ_ERR_UNSUPPORTED, format("'%s': [%lld, %lld], strategy %d, group_size %lld, n_groups %lld%s is "
                                                "not a canonical quantized tensor xq stores", module,
                                                static_cast<long long>(q.rows), static_cast<long long>(q.cols),
                                                static_cast<int>(q.strategy), static_cast<long long>(q.group_size),
                                                static_cast<long long>(q.n_groups), q.g_idx ? " with g_idx" : ""));
  if (const std::string why = code_format_problem(q.bits, q.zero_points != nullptr, q.g_idx != nullptr, q.strategy);
      !why.empty())
    throw sdk::Error(XQ_ERR_UNSUPPORTED, format("'%s': %s", module, why.c_str()));
  start_name(name);
  std::vector<uint8_t> canonical = encode_canonical(q);  // validates the codes, before anything is held
  Entry e;
  e.name = name;
  e.dtype = XQ_DTYPE_I8;
  e.shape = {q.rows, q.cols};
  e.quantized = true;
  e.desc = q;
  e.desc.symmetric = q.zero_points ? 0 : 1;  // the zero-point part is present exactly when this says so
  e.has_g_idx = q.g_idx != nullptr;
  batch_entries_.push_back(entries_.size());
  entries_.push_back(std::move(e));
  batch_.add(module, q, std::move(canonical));
  if (batch_.quantized() >= pack_batch_ || batch_.held_bytes() >= kMaxHeldBytes) flush_batch();
}

void Writer::flush_batch() {
  if (batch_.empty()) return;
  const size_t quantized = batch_.quantized();
  std::vector<PackBatch::Packed> packed = batch_.pack(host, layouts_, store_layouts_);
  for (size_t i = 0; i < packed.size(); ++i) {
    Entry& e = entries_[batch_entries_[i]];
    e.segments.push_back(append(kCanonical, packed[i].canonical.data(), packed[i].canonical.size()));
    for (const PackedSegment& p : packed[i].layouts) e.segments.push_back(append(p.layout, p.bytes.data(), p.bytes.size()));
  }
  batch_entries_.clear();
  quantized_written_ += quantized;
  host.log(XQ_LOG_INFO, format("xq: %llu quantized tensors packed and written (%.1f MiB so far)",
                               static_cast<unsigned long long>(quantized_written_), static_cast<double>(end_) / 1048576.0));
}

void Writer::set_report(const char* json) {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "the writer is finished");
  report_ = json;
}

void Writer::add_companion_files() {
  if (source_.empty()) return;
  std::error_code ec;
  if (fs::is_directory(source_, ec)) {
    for (const char* name : kCompanionFiles) {
      const fs::path p = source_ / name;
      if (!fs::is_regular_file(p, ec)) continue;
      const std::string bytes = read_whole(p);
      Segment s = append("file", bytes.data(), bytes.size());
      files_.push_back(File{name, s.offset, s.size});
    }
    return;
  }
  // An .xq source: carry its stored files over.
  const fs::path file = file_of(source_);
  if (file.extension() != ".xq") return;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    return;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return;
  try {
    const auto* base = static_cast<const uint8_t*>(p);
    const Contents c = check_file(base, size, file.string());
    for (const auto& f : c.files) {
      Segment s = append("file", base + f.offset, f.size);
      files_.push_back(File{f.name, s.offset, s.size});
    }
  } catch (...) {
    ::munmap(p, static_cast<size_t>(size));
    throw;
  }
  ::munmap(p, static_cast<size_t>(size));
}

std::vector<uint8_t> Writer::build_manifest() {
  namespace xf = xqfile;
  flatbuffers::FlatBufferBuilder b(1 << 16);
  std::vector<flatbuffers::Offset<xf::KeyValue>> config;
  for (const auto& c : config_) {
    auto key = b.CreateString(c.key);
    flatbuffers::Offset<flatbuffers::String> s;
    flatbuffers::Offset<flatbuffers::Vector<int64_t>> ints;
    flatbuffers::Offset<flatbuffers::Vector<double>> floats;
    flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>> strings;
    if (c.type == XQ_VALUE_STRING) s = b.CreateString(c.s);
    if (c.type == XQ_VALUE_INT_ARRAY) ints = b.CreateVector(c.ints);
    if (c.type == XQ_VALUE_FLOAT_ARRAY) floats = b.CreateVector(c.floats);
    if (c.type == XQ_VALUE_STRING_ARRAY) strings = b.CreateVectorOfStrings(c.strings);
    config.push_back(xf::CreateKeyValue(b, key, static_cast<xf::ValueType>(c.type), c.i, c.f, s, ints, floats, strings));
  }
  std::vector<flatbuffers::Offset<xf::Blob>> files;
  for (const auto& f : files_) {
    const xf::Range r(f.offset, f.size);
    files.push_back(xf::CreateBlob(b, b.CreateString(f.name), &r));
  }
  std::vector<flatbuffers::Offset<xf::Tensor>> tensors;
  for (const auto& e : entries_) {
    std::vector<flatbuffers::Offset<xf::Segment>> segs;
    for (const auto& s : e.segments) {
      const xf::Range r(s.offset, s.size);
      segs.push_back(xf::CreateSegment(b, b.CreateString(s.layout), &r));
    }
    flatbuffers::Offset<xf::QuantDesc> quant;
    if (e.quantized) {
      const xq_quant_tensor& q = e.desc;
      quant = xf::CreateQuantDesc(b, q.bits, q.symmetric != 0, static_cast<xf::Strategy>(q.strategy), q.rows, q.cols,
                                  q.group_size, q.n_groups, static_cast<xf::DType>(q.scale_dtype), e.has_g_idx,
                                  static_cast<xf::ActScheme>(q.act_scheme), q.act_bits, q.input_scale);
    }
    auto name = b.CreateString(e.name);
    auto shape = b.CreateVector(e.shape);
    auto segv = b.CreateVector(segs);
    tensors.push_back(xf::CreateTensor(b, name, static_cast<xf::DType>(e.dtype), shape, quant, segv));
  }
  auto writer = b.CreateString("xquant xq writer 1.0.0");
  auto configv = b.CreateVector(config);
  auto filesv = b.CreateVector(files);
  auto recipe = recipe_.empty() ? flatbuffers::Offset<flatbuffers::String>() : b.CreateString(recipe_);
  auto report = report_.empty() ? flatbuffers::Offset<flatbuffers::String>() : b.CreateString(report_);
  auto tensorsv = b.CreateVector(tensors);
  b.Finish(xf::CreateManifest(b, kManifestVersion, writer, configv, filesv, recipe, report, tensorsv),
           xf::ManifestIdentifier());
  return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

void Writer::finish() {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "the writer is finished");
  flush_batch();
  add_companion_files();
  const std::vector<uint8_t> manifest = build_manifest();
  Segment m = append("manifest", manifest.data(), manifest.size());
  FileHeader h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kContainerVersion;
  h.alignment = alignment_;
  h.manifest_offset = m.offset;
  h.manifest_size = m.size;
  write_at(0, &h, sizeof h);
  if (::fsync(fd_) != 0) throw sdk::Error(XQ_ERR_IO, "fsync of '" + temp_.string() + "' failed: " + errno_text());
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  fs::rename(temp_, final_, ec);
  if (ec) throw sdk::Error(XQ_ERR_IO, "cannot rename '" + temp_.string() + "' to '" + final_.string() + "': " + ec.message());
  const int dfd = ::open(final_.parent_path().empty() ? "." : final_.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);  // best effort: some filesystems refuse directory fsync
    ::close(dfd);
  }
  done_ = true;
  host.log(XQ_LOG_INFO, format("wrote '%s' (%zu tensors, %zu files, %llu bytes)", final_.c_str(), entries_.size(),
                               files_.size(), static_cast<unsigned long long>(end_)));
}

void Writer::abort() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!done_ && !temp_.empty()) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
  done_ = true;
}

}  // namespace xquant::xqc
