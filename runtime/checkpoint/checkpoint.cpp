#include "checkpoint/checkpoint.hpp"

#include "core/dtype.hpp"
#include "core/log.hpp"
#include "plugins/call.hpp"

#include <algorithm>
#include <iterator>

namespace fs = std::filesystem;

namespace xquant {

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorEntry::shape_text() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::unique_ptr<Checkpoint> Checkpoint::open(Runtime& runtime, const fs::path& path, const std::string& loader_name) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(XQ_ERR_NOT_FOUND, "model path '{}' does not exist", path.string());
  LoadedPlugin* loader = nullptr;
  if (!loader_name.empty()) {
    loader = &runtime.plugins().require(XQ_PLUGIN_LOADER, loader_name);
  } else {
    uint32_t best = 0;
    for (auto* p : runtime.plugins().of_kind(XQ_PLUGIN_LOADER)) {
      uint32_t score = p->loader().probe(p->state, path.c_str());
      if (score > best) {
        best = score;
        loader = p;
      }
    }
    if (!loader) {
      std::vector<std::string> names;
      for (auto* p : runtime.plugins().of_kind(XQ_PLUGIN_LOADER)) names.push_back(p->name());
      fail(XQ_ERR_UNSUPPORTED, "no loader recognises '{}' (loaders tried: {})", path.string(),
           names.empty() ? std::string("none loaded") : fmt::format("{}", fmt::join(names, ", ")));
    }
  }
  void* handle = nullptr;
  check_plugin_call(loader->loader().open(loader->state, path.c_str(), &handle),
                    fmt::format("{} loader cannot open '{}'", loader->name(), path.string()));
  std::unique_ptr<Checkpoint> cp(new Checkpoint(runtime, path, *loader, handle));
  return cp;
}

Checkpoint::Checkpoint(Runtime& runtime, fs::path path, LoadedPlugin& loader, void* handle)
    : runtime_(runtime), path_(std::move(path)), loader_(&loader), handle_(handle) {
  const auto& vt = loader_->loader();
  try {
    check_plugin_call(vt.config(handle_, &config_), "reading the model configuration");
    uint64_t n = vt.tensor_count(handle_);
    tensors_.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      auto info = sdk::make_struct<xq_tensor_info>();
      check_plugin_call(vt.tensor_info(handle_, i, &info), fmt::format("reading tensor #{} info", i));
      TensorEntry e;
      e.index = i;
      e.name = info.name ? info.name : "";
      e.dtype = info.dtype;
      e.shape.assign(info.shape, info.shape + std::min<uint32_t>(info.ndim, XQ_MAX_DIMS));
      e.nbytes = info.nbytes;
      e.storage_type = info.storage_type_name ? info.storage_type_name : dtype_name(info.dtype);
      e.has_quantized = info.has_quantized != 0;
      tensors_.push_back(std::move(e));
    }
  } catch (...) {
    vt.close(handle_);
    throw;
  }
  by_name_.resize(tensors_.size());
  for (size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
  std::sort(by_name_.begin(), by_name_.end(), [&](size_t a, size_t b) { return tensors_[a].name < tensors_[b].name; });

  uint32_t best = 0;
  for (auto* p : runtime_.plugins().of_kind(XQ_PLUGIN_FORMAT)) {
    uint32_t score = p->format().detect(p->state, &config_);
    if (score > best) {
      best = score;
      quant_format_ = p;
    }
  }
  if (quant_format_) logger().debug("'{}' is a {} checkpoint", path_.string(), quant_format_->name());
}

Checkpoint::~Checkpoint() { loader_->loader().close(handle_); }

void Checkpoint::drop_vocabulary() {
  for (auto it = config_.values.begin(); it != config_.values.end();) {
    const bool vocabulary = it->first.rfind("tokenizer.", 0) == 0 &&
                            (it->second.type() == XQ_VALUE_STRING_ARRAY || it->second.type() == XQ_VALUE_INT_ARRAY ||
                             it->second.type() == XQ_VALUE_FLOAT_ARRAY || it->first == "tokenizer.huggingface_json");
    it = vocabulary ? config_.values.erase(it) : std::next(it);
  }
}

const TensorEntry* Checkpoint::find(const std::string& name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [&](size_t i, const std::string& n) { return tensors_[i].name < n; });
  if (it == by_name_.end() || tensors_[*it].name != name) return nullptr;
  return &tensors_[*it];
}

const TensorEntry& Checkpoint::require(const std::string& name) const {
  if (const auto* t = find(name)) return *t;
  fail(XQ_ERR_NOT_FOUND, "tensor '{}' not found in '{}'", name, path_.string());
}

void Checkpoint::read(const TensorEntry& t, xq_dtype dtype, void* dst, uint64_t nbytes) const {
  check_plugin_call(loader_->loader().read(handle_, t.index, dtype, dst, nbytes),
                    fmt::format("reading tensor '{}'", t.name));
}

std::vector<float> Checkpoint::read_f32(const TensorEntry& t) const {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  read(t, XQ_DTYPE_F32, out.data(), out.size() * sizeof(float));
  return out;
}

xq_tensor_view Checkpoint::raw(const TensorEntry& t) const {
  auto v = sdk::make_struct<xq_tensor_view>();
  check_plugin_call(loader_->loader().raw(handle_, t.index, &v), fmt::format("mapping tensor '{}'", t.name));
  return v;
}

QuantTensor Checkpoint::read_quantized(const TensorEntry& t) const {
  const auto& vt = loader_->loader();
  // The loader explains why a tensor is not canonical (e.g. GGUF Q4_1's
  // float minimum), so ask it rather than answering for it.
  if (!vt.read_quantized)
    fail(XQ_ERR_UNSUPPORTED, "tensor '{}' ({}): the {} loader reads no quantized tensors", t.name, t.storage_type,
         loader_->name());
  auto q = sdk::make_struct<xq_quant_tensor>();
  check_plugin_call(vt.read_quantized(handle_, t.index, &q), fmt::format("reading quantized tensor '{}'", t.name));
  return adopt_quant_tensor(q);
}

bool Checkpoint::read_packed(const TensorEntry& t, const std::string& layout, xq_quant_tensor& desc,
                             xq_tensor_view& bytes) const {
  const auto& vt = loader_->loader();
  if (!XQ_HAS_FIELD(&vt, xq_loader_vtable, read_packed) || !vt.read_packed || !t.has_quantized) return false;
  desc = sdk::make_struct<xq_quant_tensor>();
  bytes = sdk::make_struct<xq_tensor_view>();
  xq_status s = vt.read_packed(handle_, t.index, layout.c_str(), &desc, &bytes);
  if (s == XQ_ERR_NOT_FOUND) {
    set_last_error("");
    return false;
  }
  check_plugin_call(s, fmt::format("reading the '{}' bytes of '{}'", layout, t.name));
  return true;
}

namespace {
xq_status source_find(void* ctx, const char* name, xq_tensor_view* out) {
  const auto* cp = static_cast<const Checkpoint*>(ctx);
  const TensorEntry* t = cp->find(name);
  if (!t) return XQ_ERR_NOT_FOUND;
  return sdk::call_with_status(record_last_error, [&] { *out = cp->raw(*t); });
}
}  // namespace

xq_tensor_source Checkpoint::tensor_source() const {
  auto src = sdk::make_struct<xq_tensor_source>();
  src.ctx = const_cast<Checkpoint*>(this);
  src.find = source_find;
  return src;
}

std::optional<QuantTensor> Checkpoint::read_module(const std::string& module) const {
  if (!quant_format_) return std::nullopt;
  xq_tensor_source src = tensor_source();
  auto q = sdk::make_struct<xq_quant_tensor>();
  xq_status s = quant_format_->format().read_module(quant_format_->state, &config_, &src, module.c_str(), &q);
  if (s == XQ_ERR_NOT_FOUND) {
    set_last_error("");
    return std::nullopt;
  }
  check_plugin_call(s, fmt::format("{}: reading quantized module '{}'", quant_format_->name(), module));
  return adopt_quant_tensor(q);
}

}  // namespace xquant
