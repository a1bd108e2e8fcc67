// manifest_check.cpp: see manifest_check.hpp.
#include "manifest_check.hpp"

#include "code_formats.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/tensor.hpp>

#include <set>

namespace xquant::xqc {

using sdk::format;

namespace {

class Checker {
 public:
  Checker(const uint8_t* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  Contents run() {
    check_header();
    verify_manifest();
    check_config();
    check_tensors();
    check_files();
    return std::move(out_);
  }

 private:
  [[noreturn]] void bad(const std::string& field, const std::string& why) const {
    throw sdk::Error(XQ_ERR_MALFORMED, format("'%s': %s: %s", path_.c_str(), field.c_str(), why.c_str()));
  }

  void check_header() {
    if (size_ < sizeof(FileHeader))
      bad("header", format("the file is %llu bytes, shorter than the 64-byte header", static_cast<unsigned long long>(size_)));
    std::memcpy(&h_, data_, sizeof h_);
    if (std::memcmp(h_.magic, kMagic, 8) != 0) bad("header.magic", "not an xq file (magic is not XQUANT)");
    if (h_.version != kContainerVersion)
      bad("header.version", format("container version %u, this reader knows %u", h_.version, kContainerVersion));
    if (h_.alignment < kMinAlignment || h_.alignment > kMaxAlignment || (h_.alignment & (h_.alignment - 1)) != 0)
      bad("header.alignment", format("%u is not a power of two in [%u, %u]", h_.alignment, kMinAlignment, kMaxAlignment));
    if (h_.manifest_offset < sizeof(FileHeader) || h_.manifest_offset % 8 != 0)
      bad("header.manifest_offset", format("%llu is inside the header or not 8-byte aligned",
                                           static_cast<unsigned long long>(h_.manifest_offset)));
    if (h_.manifest_offset > size_ || h_.manifest_size > size_ - h_.manifest_offset)
      bad("header.manifest_size", format("manifest [%llu, +%llu) runs past the end of the %llu-byte file (truncated?)",
                                         static_cast<unsigned long long>(h_.manifest_offset),
                                         static_cast<unsigned long long>(h_.manifest_size),
                                         static_cast<unsigned long long>(size_)));
    out_.alignment = h_.alignment;
    out_.data_end = h_.manifest_offset;
  }

  void verify_manifest() {
    const uint8_t* buf = data_ + h_.manifest_offset;
    flatbuffers::Verifier v(buf, static_cast<size_t>(h_.manifest_size));
    if (!xqfile::VerifyManifestBuffer(v))
      bad("manifest", "fails the FlatBuffers verifier (wrong identifier, or a table, vector or string out of bounds)");
    m_ = xqfile::GetManifest(buf);
    out_.manifest = m_;
    if (m_->format_version() != kManifestVersion)
      bad("manifest.format_version", format("%u, this reader knows %u", m_->format_version(), kManifestVersion));
  }

  void check_config() {
    if (!m_->config()) return;
    std::set<std::string> keys;
    for (flatbuffers::uoffset_t i = 0; i < m_->config()->size(); ++i) {
      const auto* kv = m_->config()->Get(i);
      const std::string field = format("config[%u]", i);
      const std::string key = kv->key()->str();
      if (key.empty()) bad(field + ".key", "empty");
      if (!keys.insert(key).second) bad(field + ".key", "'" + key + "' appears twice");
      const auto t = static_cast<int>(kv->type());
      if (t < 1 || t > 7) bad(field + ".type", format("value type %d of key '%s' is not 1..7", t, key.c_str()));
      using VT = xqfile::ValueType;
      if (kv->type() == VT::String && !kv->s()) bad(field + ".s", "string value missing for '" + key + "'");
      if (kv->type() == VT::IntArray && !kv->ints()) bad(field + ".ints", "missing for '" + key + "'");
      if (kv->type() == VT::FloatArray && !kv->floats()) bad(field + ".floats", "missing for '" + key + "'");
      if (kv->type() == VT::StringArray && !kv->strings()) bad(field + ".strings", "missing for '" + key + "'");
    }
  }

  // A byte range inside the data area (after the header, before the
  // manifest) starting at a multiple of the alignment.
  void check_range(const std::string& field, uint64_t offset, uint64_t size) const {
    if (offset % h_.alignment != 0)
      bad(field + ".offset", format("%llu is not a multiple of the alignment %u", static_cast<unsigned long long>(offset),
                                    h_.alignment));
    if (offset < sizeof(FileHeader) || offset > h_.manifest_offset || size > h_.manifest_offset - offset)
      bad(field, format("[%llu, +%llu) is outside the data area [64, %llu)", static_cast<unsigned long long>(offset),
                        static_cast<unsigned long long>(size), static_cast<unsigned long long>(h_.manifest_offset)));
  }

  void check_tensors() {
    std::set<std::string> names;
    const auto* ts = m_->tensors();
    out_.tensors.reserve(ts->size());
    for (flatbuffers::uoffset_t i = 0; i < ts->size(); ++i) {
      const auto* t = ts->Get(i);
      TensorRecord r;
      r.name = t->name()->str();
      const std::string field = format("tensors[%u] '%s'", i, r.name.c_str());
      if (r.name.empty()) bad(field + ".name", "empty");
      if (!names.insert(r.name).second) bad(field + ".name", "appears twice");
      const int dt = static_cast<int>(t->dtype());
      if (dt < XQ_DTYPE_F32 || dt > XQ_DTYPE_F8_E5M2) bad(field + ".dtype", format("%d is not a known element type", dt));
      r.dtype = static_cast<xq_dtype>(dt);
      if (t->shape()->size() > XQ_MAX_DIMS) bad(field + ".shape", format("%u dims, at most %d", t->shape()->size(), XQ_MAX_DIMS));
      uint64_t numel = 1;
      for (auto d : *t->shape()) {
        if (d < 0 || d > (int64_t{1} << 40)) bad(field + ".shape", format("dim %lld out of range", static_cast<long long>(d)));
        if (d && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(d)) bad(field + ".shape", "element count overflows");
        numel *= static_cast<uint64_t>(d);
        r.shape.push_back(d);
      }
      check_segments(field, t, r);
      if (t->quant()) check_quant(field, t->quant(), numel, r);
      else check_dense(field, numel, r);
      out_.tensors.push_back(std::move(r));
    }
  }

  void check_segments(const std::string& field, const xqfile::Tensor* t, TensorRecord& r) const {
    const auto* segs = t->segments();
    if (segs->size() == 0) bad(field + ".segments", "empty");
    std::set<std::string> seen;  // every name, known or not
    for (flatbuffers::uoffset_t j = 0; j < segs->size(); ++j) {
      const auto* s = segs->Get(j);
      const std::string sf = field + format(".segments[%u]", j);
      SegmentRef ref{s->layout()->str(), s->range()->offset(), s->range()->size()};
      if (ref.layout.empty()) bad(sf + ".layout", "empty");
      if (!seen.insert(ref.layout).second) bad(sf + ".layout", "'" + ref.layout + "' appears twice");
      check_range(sf + ".range", ref.offset, ref.size);
      if (known_layout(ref.layout)) r.segments.push_back(ref);  // others: a newer provider's, ignored
    }
    const SegmentRef* c = r.find(kCanonical);
    if (!c) bad(field + ".segments", "no 'canonical' segment");
    r.canonical = *c;
  }

  void check_dense(const std::string& field, uint64_t numel, const TensorRecord& r) const {
    if (r.segments.size() != 1) bad(field + ".segments", "a dense tensor has only its canonical segment");
    const size_t es = sdk::dtype_size(r.dtype);
    if (es == 0) bad(field + ".dtype", "has no element size");
    if (numel * es != r.canonical.size)
      bad(field + ".segments[canonical].size", format("%llu bytes, but shape x %s is %llu",
                                                      static_cast<unsigned long long>(r.canonical.size),
                                                      sdk::dtype_name(r.dtype), static_cast<unsigned long long>(numel * es)));
  }

  void check_quant(const std::string& field, const xqfile::QuantDesc* qd, uint64_t numel, TensorRecord& r) const {
    const std::string qf = field + ".quant";
    if (r.dtype != XQ_DTYPE_I8) bad(field + ".dtype", format("a quantized tensor's dtype is I8 (its codes), not %s", sdk::dtype_name(r.dtype)));
    // The enum fields are checked as the bytes they are before they become
    // C enums: a value outside an enum's range is undefined behaviour once
    // loaded as that enum (UBSan's -fsanitize=enum found it, fuzz target xq).
    const int strategy = static_cast<int>(qd->strategy()), scale_dtype = static_cast<int>(qd->scale_dtype()),
              act_scheme = static_cast<int>(qd->act_scheme());
    if (strategy != XQ_STRATEGY_TENSOR && strategy != XQ_STRATEGY_CHANNEL && strategy != XQ_STRATEGY_GROUP)
      bad(qf + ".strategy", format("%d is not tensor, channel or group", strategy));
    if (scale_dtype != XQ_DTYPE_F32 && scale_dtype != XQ_DTYPE_F16 && scale_dtype != XQ_DTYPE_BF16)
      bad(qf + ".scale_dtype", format("%d is not F32, F16 or BF16", scale_dtype));
    if (act_scheme != XQ_ACT_NONE && act_scheme != XQ_ACT_STATIC_TENSOR && act_scheme != XQ_ACT_DYNAMIC_TOKEN)
      bad(qf + ".act_scheme", format("%d is not none, static-tensor or dynamic-token", act_scheme));
    xq_quant_tensor& q = r.desc;
    q = sdk::make_struct<xq_quant_tensor>();
    q.bits = qd->bits();
    q.symmetric = qd->symmetric() ? 1 : 0;
    q.strategy = static_cast<xq_strategy>(strategy);
    q.rows = qd->rows();
    q.cols = qd->cols();
    q.group_size = qd->group_size();
    q.n_groups = qd->n_groups();
    q.scale_dtype = static_cast<xq_dtype>(scale_dtype);
    q.act_scheme = static_cast<xq_act_scheme>(act_scheme);
    q.act_bits = qd->act_bits();
    q.input_scale = qd->input_scale();
    r.has_g_idx = qd->has_g_idx();
    r.quantized = true;
    if (r.shape.size() != 2 || r.shape[0] != q.rows || r.shape[1] != q.cols || q.rows <= 0 || q.cols <= 0)
      bad(qf + ".rows/cols", format("[%lld, %lld] is not the tensor's 2-D shape", static_cast<long long>(q.rows),
                                    static_cast<long long>(q.cols)));
    (void)numel;
    switch (q.strategy) {
      case XQ_STRATEGY_TENSOR:
      case XQ_STRATEGY_CHANNEL:
        if (q.n_groups != 1) bad(qf + ".n_groups", format("%lld, 1 for tensor/channel", static_cast<long long>(q.n_groups)));
        break;
      case XQ_STRATEGY_GROUP:
        if (q.group_size <= 0) bad(qf + ".group_size", "must be positive");
        if (q.n_groups != (q.cols + q.group_size - 1) / q.group_size)
          bad(qf + ".n_groups", format("%lld != ceil(cols / group_size)", static_cast<long long>(q.n_groups)));
        break;
      default: bad(qf + ".strategy", format("%d is not tensor, channel or group", static_cast<int>(q.strategy)));
    }
    if (r.has_g_idx && q.strategy != XQ_STRATEGY_GROUP) bad(qf + ".has_g_idx", "act-order needs the group strategy");
    if (const std::string why = code_format_problem(q.bits, !q.symmetric, r.has_g_idx, q.strategy); !why.empty())
      bad(qf + format(".bits (0x%04x)", q.bits), why);
    if (q.act_scheme != XQ_ACT_NONE && !act_bits_stored(q.act_bits))
      bad(qf + ".act_bits", format("0x%04x is neither 8 (int8) nor FP8 E4M3 (0x0e08)", q.act_bits));
    const CanonicalParts p = canonical_parts(q.rows, q.cols, q.bits, scale_count_of(q), sdk::dtype_size(q.scale_dtype),
                                             !q.symmetric, r.has_g_idx);
    if (p.total != r.canonical.size)
      bad(field + ".segments[canonical].size", format("%llu bytes, but the description needs %llu",
                                                      static_cast<unsigned long long>(r.canonical.size),
                                                      static_cast<unsigned long long>(p.total)));
    if (const SegmentRef* s = r.find(kCpuLayout)) {
      try {
        (void)sdk::cpu_layout::view(q, data_ + s->offset, s->size);
      } catch (const sdk::Error& e) {
        bad(field + ".segments[" + kCpuLayout + "]", e.what());
      }
    }
    for (const SegmentRef& s : r.segments) {
      if (!sdk::cuda_layout::is_layout_name(s.layout)) continue;
      const std::string sf = field + ".segments[" + s.layout + "]";
      sdk::cuda_layout::View v;
      try {
        v = sdk::cuda_layout::view(q, data_ + s.offset, s.size);
      } catch (const sdk::Error& e) {
        bad(sf, e.what());
      }
      if (s.layout != sdk::cuda_layout::name_of(v.g.kind)) bad(sf, "holds another cuda layout");
      if (v.g.has_perm && !r.has_g_idx) bad(sf, "an act-order permutation, but the tensor has no g_idx");
    }
    if (const SegmentRef* s = r.find(sdk::cuda_wgmma_layout::kName)) {
      const std::string sf = field + ".segments[" + sdk::cuda_wgmma_layout::kName + "]";
      sdk::cuda_wgmma_layout::View v;
      try {
        v = sdk::cuda_wgmma_layout::view(q, data_ + s->offset, s->size);
      } catch (const sdk::Error& e) {
        bad(sf, e.what());
      }
      if (v.g.sorted && !r.has_g_idx) bad(sf, "act-order columns, but the tensor has no g_idx");
    }
  }

  void check_files() {
    if (!m_->files()) return;
    std::set<std::string> names;
    for (flatbuffers::uoffset_t i = 0; i < m_->files()->size(); ++i) {
      const auto* f = m_->files()->Get(i);
      FileRecord r{f->name()->str(), f->range()->offset(), f->range()->size()};
      const std::string field = format("files[%u] '%s'", i, r.name.c_str());
      if (r.name.empty() || r.name.find('/') != std::string::npos || r.name.find('\\') != std::string::npos ||
          r.name == "." || r.name == "..")
        bad(field + ".name", "must be a plain file name");
      if (!names.insert(r.name).second) bad(field + ".name", "appears twice");
      check_range(field + ".range", r.offset, r.size);
      out_.files.push_back(std::move(r));
    }
  }

  const uint8_t* data_;
  uint64_t size_;
  const std::string& path_;
  FileHeader h_{};
  const xqfile::Manifest* m_ = nullptr;
  Contents out_;
};

}  // namespace

Contents check_file(const uint8_t* data, uint64_t size, const std::string& path) {
  return Checker(data, size, path).run();
}

}  // namespace xquant::xqc
