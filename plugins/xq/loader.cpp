// loader.cpp: the `xq` loader plugin: opens an .xq file (or a folder holding
// model.xq), maps it, checks everything it says (manifest_check.cpp) before
// anything is read, and exposes:
//   - the model configuration stored in the manifest (tokenizer included);
//   - dense tensors as stored (read converts, raw maps);
//   - quantized Linear weights as XQ_DTYPE_BLOCKS tensors with has_quantized:
//     read_quantized decodes the canonical segment, read() dequantizes, and
//     read_packed hands out a provider layout's stored bytes in place, so a
//     provider that takes the layout loads the weight without repacking.
#include "canonical_codec.hpp"
#include "manifest_check.hpp"

#include "convert.hpp"      // ../safetensors/src: element conversion
#include "mapped_file.hpp"  // ../safetensors/src: the read-only map

#include <xquant/sdk/plugin.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace xquant::xqc {

using sdk::format;

namespace {

class Model : public sdk::ModelBase {
 public:
  Model(const sdk::Host& h, const std::string& path) : sdk::ModelBase(h), path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw sdk::Error(XQ_ERR_IO, format("cannot open '%s': %s", path.c_str(), std::strerror(errno)));
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw sdk::Error(XQ_ERR_IO, format("cannot stat '%s'", path.c_str()));
    }
    try {
      map_ = st::MappedFile(fd, static_cast<uint64_t>(st.st_size), path);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    contents_ = check_file(map_.data(), map_.size(), path);
    storage_names_.reserve(contents_.tensors.size());
    for (const auto& t : contents_.tensors) storage_names_.push_back(storage_name(t));
  }

  void config(const sdk::KvWriter& out) const {
    const auto* cfg = contents_.manifest->config();
    if (cfg)
      for (const auto* kv : *cfg) set_value(out, kv);
    out.set_int("xq.format_version", contents_.manifest->format_version());
    out.set_int("xq.alignment", contents_.alignment);
    std::vector<std::string> files;
    for (const auto& f : contents_.files) files.push_back(f.name);
    out.set_strings("xq.files", files);
    if (const auto* r = contents_.manifest->recipe_yaml()) out.set_string("xq.recipe_yaml", r->str());
    if (const auto* r = contents_.manifest->report_json()) out.set_string("xq.report_json", r->str());
  }

  uint64_t tensor_count() const { return contents_.tensors.size(); }

  void tensor_info(uint64_t i, xq_tensor_info& out) const {
    const TensorRecord& t = at(i);
    out.dtype = t.quantized ? XQ_DTYPE_BLOCKS : t.dtype;
    out.ndim = static_cast<uint32_t>(t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) out.shape[d] = t.shape[d];
    out.name = t.name.c_str();
    out.nbytes = t.canonical.size;
    out.storage_type_name = storage_names_[i].c_str();
    out.has_quantized = t.quantized ? 1 : 0;
  }

  void read(uint64_t i, xq_dtype dtype, void* dst, uint64_t n) const {
    const TensorRecord& t = at(i);
    if (dtype != XQ_DTYPE_F32 && dtype != XQ_DTYPE_F16 && dtype != XQ_DTYPE_BF16 && dtype != t.dtype)
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "tensor '" + t.name + "': reads convert to F32, F16, BF16 or the stored type");
    uint64_t numel = 1;
    for (auto d : t.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t need = numel * st::element_size(dtype);
    if (n != need)
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, format("tensor '%s': destination has %llu bytes, %llu needed",
                                                       t.name.c_str(), static_cast<unsigned long long>(n),
                                                       static_cast<unsigned long long>(need)));
    if (!t.quantized) {
      st::convert(t.dtype, map_.data() + t.canonical.offset, numel, dtype, dst);
      return;
    }
    if (dtype == XQ_DTYPE_I8) throw sdk::Error(XQ_ERR_UNSUPPORTED, "tensor '" + t.name + "': codes are read with read_quantized");
    sdk::QuantTensor q(host);
    read_quantized(i, q.get());
    std::vector<float> row(static_cast<size_t>(t.desc.cols));
    for (int64_t r = 0; r < t.desc.rows; ++r) {
      q.dequantize_row(r, row.data());
      st::convert(XQ_DTYPE_F32, reinterpret_cast<const unsigned char*>(row.data()), row.size(), dtype,
                  static_cast<unsigned char*>(dst) + r * t.desc.cols * st::element_size(dtype));
    }
  }

  void raw(uint64_t i, xq_tensor_view& out) const {
    const TensorRecord& t = at(i);
    out.dtype = t.quantized ? XQ_DTYPE_BLOCKS : t.dtype;
    out.ndim = static_cast<uint32_t>(t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) out.shape[d] = t.shape[d];
    out.data = const_cast<unsigned char*>(map_.data() + t.canonical.offset);
    out.nbytes = t.canonical.size;
  }

  void read_quantized(uint64_t i, xq_quant_tensor& out) const {
    const TensorRecord& t = at(i);
    if (!t.quantized) throw sdk::Error(XQ_ERR_UNSUPPORTED, "tensor '" + t.name + "' is stored dense");
    sdk::QuantTensor q(host);
    decode_canonical(host, t.name, t.desc, t.has_g_idx, map_.data() + t.canonical.offset, t.canonical.size, q);
    out = q.release();
  }

  void read_packed(uint64_t i, const char* layout, xq_quant_tensor& desc, xq_tensor_view& out) const {
    const TensorRecord& t = at(i);
    const SegmentRef* s = t.quantized ? t.find(layout) : nullptr;
    if (!s) throw sdk::Error(XQ_ERR_NOT_FOUND, format("tensor '%s' has no '%s' segment", t.name.c_str(), layout));
    desc = t.desc;
    out.dtype = XQ_DTYPE_U8;
    out.ndim = 1;
    out.shape[0] = static_cast<int64_t>(s->size);
    out.data = const_cast<unsigned char*>(map_.data() + s->offset);
    out.nbytes = s->size;
  }

  const Contents& contents() const { return contents_; }

 private:
  const TensorRecord& at(uint64_t i) const {
    if (i >= contents_.tensors.size())
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, format("tensor index %llu out of range", static_cast<unsigned long long>(i)));
    return contents_.tensors[i];
  }

  // "F16", or for a quantized weight e.g. "xq W4 group128 sym [canonical, cpu.int-blocks.v1]".
  static std::string storage_name(const TensorRecord& t) {
    if (!t.quantized) return sdk::dtype_name(t.dtype);
    const xq_quant_tensor& q = t.desc;
    std::string s = format("xq W%u ", q.bits);
    if (q.strategy == XQ_STRATEGY_GROUP) s += format("group%lld", static_cast<long long>(q.group_size));
    else s += q.strategy == XQ_STRATEGY_CHANNEL ? "channel" : "tensor";
    s += q.symmetric ? " sym" : " asym";
    if (t.has_g_idx) s += " act-order";
    if (q.act_scheme != XQ_ACT_NONE) s += " A8";
    s += " [";
    for (size_t k = 0; k < t.segments.size(); ++k) s += (k ? ", " : "") + t.segments[k].layout;
    return s + "]";
  }

  static void set_value(const sdk::KvWriter& out, const xqfile::KeyValue* kv) {
    const char* key = kv->key()->c_str();
    switch (kv->type()) {
      case xqfile::ValueType::Bool: out.set_bool(key, kv->i() != 0); break;
      case xqfile::ValueType::Int: out.set_int(key, kv->i()); break;
      case xqfile::ValueType::Float: out.set_float(key, kv->f()); break;
      case xqfile::ValueType::String: out.set_string(key, kv->s()->str()); break;
      case xqfile::ValueType::IntArray: out.set_ints(key, std::vector<int64_t>(kv->ints()->begin(), kv->ints()->end())); break;
      case xqfile::ValueType::FloatArray:
        out.set_floats(key, std::vector<double>(kv->floats()->begin(), kv->floats()->end()));
        break;
      case xqfile::ValueType::StringArray: {
        std::vector<std::string> v;
        v.reserve(kv->strings()->size());
        for (const auto* s : *kv->strings()) v.push_back(s->str());
        out.set_strings(key, v);
        break;
      }
      default: break;  // check_file refused other types
    }
  }

  std::string path_;
  st::MappedFile map_;
  Contents contents_;
  std::vector<std::string> storage_names_;
};

class Loader : public sdk::PluginBase {
 public:
  using Model = xqc::Model;
  using sdk::PluginBase::PluginBase;

  uint32_t probe(const char* path) const {
    const std::filesystem::path file = file_of(path);
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char magic[8] = {};
    const ssize_t n = ::pread(fd, magic, sizeof magic, 0);
    ::close(fd);
    return n == static_cast<ssize_t>(sizeof magic) && std::memcmp(magic, kMagic, 8) == 0 ? 100 : 0;
  }

  std::unique_ptr<Model> open(const char* path) const {
    return std::make_unique<Model>(host, file_of(path).string());
  }
};

constexpr const char* kCapabilities[] = {"read:xq", "layout:canonical", "layout:cpu.int-blocks.v1",
                                         "layout:cuda.w4a16-mma.v1", "layout:cuda.w8a8-int8-nk.v1",
                                         "layout:cuda.w8a8-fp8-nk.v1", "mmap", nullptr};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<Loader>(
    XQ_PLUGIN_LOADER, "xq", "1.0.0",
    "the native xq container: FlatBuffers manifest, aligned mmap-able segments, weights stored in provider layouts",
    kCapabilities, nullptr, &sdk::LoaderAdapter<Loader>::vtable);

}  // namespace
}  // namespace xquant::xqc

XQ_SDK_ENTRY(xquant::xqc::kDescriptor)
