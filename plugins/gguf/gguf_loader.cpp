// gguf_loader.cpp: the `gguf` loader plugin. Presents a GGUF file (llama,
// qwen2, qwen3, and the MoE qwen3moe, qwen2moe; Mistral and Mixtral arrive
// as llama; stacked ffn_*_exps expert tensors appear as one 2-D tensor per
// expert under the HF per-expert names) as the canonical
// model view of docs/abi.md: Hugging Face tensor names, PyTorch shapes
// (ne reversed), Q/K rows of NORM-RoPE (`llama`) files un-permuted back to
// HF's half-split order (docs/references.md), canonical config keys and the tokenizer
// vocabulary. Tensors stay in the read-only mmap; permutation and
// dequantization happen per read. Vocabulary-only files (zero tensors) open
// too, whatever their architecture, so tokenizers can be built from them.
//
// read_quantized(): Q8_0 and Q4_0 are exactly canonical (symmetric, group
// 32, f16 scale `d`, codes qs / q-8). Q4_1 is NOT: its per-block min `m` is
// an arbitrary float, not an integer zero point (w = d*q + m), so it is
// reported unsupported there and must be read dequantized.
#include "gguf_file.hpp"
#include "gguf_types.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace xquant::gguf {

using sdk::Error;
using sdk::format;

namespace {

struct NameRule {
  const char* gguf;
  const char* hf;
};
// blk.N.<gguf> -> model.layers.N.<hf>
constexpr NameRule kLayerNames[] = {
    {"attn_norm", "input_layernorm"},        {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},          {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},     {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"},     {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},           {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    // Mixture of experts (llama.cpp gguf-py constants.py MODEL_TENSOR.FFN_*_EXP /
    // *_SHEXP): the router, the shared expert and its gate. The stacked
    // ffn_{gate,up,down}_exps tensors are split per expert in build().
    {"ffn_gate_inp", "mlp.gate"},            {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
    {"ffn_up_shexp", "mlp.shared_expert.up_proj"}, {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
    {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"},
    {"ffn_gate_exps", "mlp.experts"},        {"ffn_up_exps", "mlp.experts"},
    {"ffn_down_exps", "mlp.experts"},
};
constexpr NameRule kGlobalNames[] = {
    {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"},
    {"output", "lm_head"},                {"rope_freqs", "rope_freqs"},
};

// Canonical name of a GGUF tensor; `base` receives the GGUF base name
// ("attn_q", "token_embd", ...) for the rules that depend on it. Names we
// do not know are kept unchanged.
std::string canonical_name(const std::string& g, std::string* base) {
  std::string stem = g, suffix;
  for (const char* s : {".weight", ".bias"}) {
    size_t n = std::strlen(s);
    if (g.size() > n && g.compare(g.size() - n, n, s) == 0) {
      stem = g.substr(0, g.size() - n);
      suffix = s;
      break;
    }
  }
  base->clear();
  if (suffix.empty()) return g;
  for (const auto& r : kGlobalNames)
    if (stem == r.gguf) {
      *base = r.gguf;
      return std::string(r.hf) + suffix;
    }
  if (stem.rfind("blk.", 0) == 0) {
    size_t dot = stem.find('.', 4);
    if (dot == std::string::npos || dot == 4) return g;
    std::string layer = stem.substr(4, dot - 4);
    for (char c : layer)
      if (c < '0' || c > '9') return g;
    std::string rest = stem.substr(dot + 1);
    for (const auto& r : kLayerNames)
      if (rest == r.gguf) {
        *base = r.gguf;
        return "model.layers." + layer + "." + r.hf + suffix;
      }
  }
  return g;
}

xq_dtype stored_dtype(uint32_t type) {
  switch (type) {
    case kF32: return XQ_DTYPE_F32;
    case kF16: return XQ_DTYPE_F16;
    case kBF16: return XQ_DTYPE_BF16;
    case 24: return XQ_DTYPE_I8;
    case 25: return XQ_DTYPE_I16;
    case 26: return XQ_DTYPE_I32;
    case 27: return XQ_DTYPE_I64;
    case 28: return XQ_DTYPE_F64;
    default: return XQ_DTYPE_BLOCKS;
  }
}

size_t out_size(xq_dtype d) {
  switch (d) {
    case XQ_DTYPE_F32: return 4;
    case XQ_DTYPE_F16: case XQ_DTYPE_BF16: return 2;
    default: return 0;
  }
}

// Decodes n elements of any readable type (block types via gguf_types, plain
// integer/f64 types here).
bool decode(uint32_t type, const uint8_t* src, float* dst, int64_t n) {
  if (dequantize_row(type, src, dst, n)) return true;
  switch (type) {
    case 24: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(reinterpret_cast<const int8_t*>(src)[i]); return true;
    case 25: for (int64_t i = 0; i < n; ++i) { int16_t v; std::memcpy(&v, src + 2 * i, 2); dst[i] = v; } return true;
    case 26: for (int64_t i = 0; i < n; ++i) { int32_t v; std::memcpy(&v, src + 4 * i, 4); dst[i] = static_cast<float>(v); } return true;
    case 27: for (int64_t i = 0; i < n; ++i) { int64_t v; std::memcpy(&v, src + 8 * i, 8); dst[i] = static_cast<float>(v); } return true;
    case 28: for (int64_t i = 0; i < n; ++i) { double v; std::memcpy(&v, src + 8 * i, 8); dst[i] = static_cast<float>(v); } return true;
    default: return false;
  }
}

struct Entry {
  size_t gguf_index = 0;
  std::string name;  // canonical
  std::string base;  // GGUF base name
  xq_dtype dtype = XQ_DTYPE_INVALID;
  uint32_t ndim = 0;
  int64_t shape[4] = {0, 0, 0, 0};
  // Row geometry for permuted reads: `rows` units of `row_elems` elements /
  // `row_bytes` bytes. A 1-D tensor (a bias) permutes single elements.
  int64_t rows = 0, row_elems = 0;
  uint64_t row_bytes = 0;
  int64_t perm_heads = 0;  // >0: un-permute rows in this many heads (convert_hf_to_gguf.py permute)
  // One expert of a stacked [experts, rows, cols] tensor: its `rows` rows
  // start at row `first_row` of the GGUF tensor (experts are outermost).
  bool slice = false;
  int64_t first_row = 0;
};

int64_t source_row(const Entry& e, int64_t r) {
  if (e.perm_heads <= 0) return r;
  const int64_t hd = e.rows / e.perm_heads;
  const int64_t h = r / hd, i = r % hd, half = hd / 2;
  return h * hd + (i < half ? 2 * i : 2 * (i - half) + 1);
}

class GgufModel : public sdk::ModelBase {
 public:
  GgufModel(const sdk::Host& h, const std::string& path) : ModelBase(h), file_(path) { build(); }

  void config(const sdk::KvWriter& out) const;
  uint64_t tensor_count() const { return entries_.size(); }
  void tensor_info(uint64_t i, xq_tensor_info& info) const;
  void read(uint64_t i, xq_dtype dtype, void* dst, uint64_t n) const;
  void raw(uint64_t i, xq_tensor_view& v) const;
  void read_quantized(uint64_t i, xq_quant_tensor& q) const;

 private:
  void build();
  const Entry& entry(uint64_t i) const {
    if (i >= entries_.size())
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("%s: tensor index %llu out of range (%zu tensors)", file_.path().c_str(),
                                                  static_cast<unsigned long long>(i), entries_.size()));
    return entries_[i];
  }
  const TensorInfo& info(const Entry& e) const { return file_.tensors()[e.gguf_index]; }
  // The entry's bytes, size and element count (an expert slice's, or the whole tensor's).
  const uint8_t* data(const Entry& e) const {
    return file_.tensor_data(info(e)) + static_cast<uint64_t>(e.first_row) * e.row_bytes;
  }
  uint64_t nbytes(const Entry& e) const { return e.slice ? static_cast<uint64_t>(e.rows) * e.row_bytes : info(e).nbytes; }
  int64_t numel(const Entry& e) const { return e.slice ? e.rows * e.row_elems : info(e).numel(); }
  // The canonical model_type: llama.cpp names the MoE architectures
  // qwen3moe / qwen2moe and writes Mixtral as llama with experts.
  std::string canonical_arch() const;
  void add_expert_slices(const TensorInfo& t, Entry e, std::map<std::string, size_t>& seen);
  int64_t meta_int(const std::string& key, int64_t fallback) const;
  double meta_float(const std::string& key, double fallback) const;

  File file_;
  std::string arch_;
  std::vector<Entry> entries_;
  mutable std::mutex raw_mutex_;
  // raw() copies of permuted tensors, each starting on a page boundary: the
  // engine gives back the whole pages of a view once it has copied it out
  // (runtime/engine/release_source.cpp), and a vector's start moved that count
  // by a page with the heap's layout from one run to the next.
  struct FreeBytes {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  mutable std::map<uint64_t, std::unique_ptr<uint8_t, FreeBytes>> permuted_;
};

// The file pages of a permuted tensor's stored bytes, read once into its
// un-permuted copy and never again: dropped from this process
// (madvise(MADV_DONTNEED) on the read-only private map unmaps them and leaves
// them in the page cache; a later read faults the same bytes back in), so
// the tensor is not resident twice (SmolLM2-135M's Q8_0 file kept 14 MB of
// q/k pages). Pages shared with a neighbouring tensor are kept; best effort.
void release_mapped_pages(const uint8_t* p, uint64_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (e > b) (void)::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

int64_t GgufModel::meta_int(const std::string& key, int64_t fallback) const {
  const Value* v = file_.find(key);
  if (!v) return fallback;
  if (v->is_int()) return v->i;
  if (v->type == VType::ARRAY && !v->ints.empty()) return v->ints[0];  // per-layer arrays: first layer
  // A float outside int64's range (or NaN) has no integer value; converting
  // it would be undefined behaviour (found by fuzzing).
  if (v->is_float() && std::isfinite(v->f) && std::fabs(v->f) < 9.2e18) return static_cast<int64_t>(v->f);
  throw Error(XQ_ERR_MALFORMED, format("%s: metadata '%s' at byte offset %llu must be an integer, found %s",
                                       file_.path().c_str(), key.c_str(), static_cast<unsigned long long>(v->offset),
                                       vtype_name(static_cast<uint32_t>(v->type))));
}

double GgufModel::meta_float(const std::string& key, double fallback) const {
  const Value* v = file_.find(key);
  if (!v) return fallback;
  if (v->is_float()) return v->f;
  if (v->is_int()) return static_cast<double>(v->i);
  throw Error(XQ_ERR_MALFORMED, format("%s: metadata '%s' at byte offset %llu must be a number, found %s",
                                       file_.path().c_str(), key.c_str(), static_cast<unsigned long long>(v->offset),
                                       vtype_name(static_cast<uint32_t>(v->type))));
}

void GgufModel::build() {
  const Value* a = file_.find("general.architecture");
  if (a && a->type == VType::STRING) arch_ = a->s;
  const bool supported =
      arch_ == "llama" || arch_ == "qwen2" || arch_ == "qwen3" || arch_ == "qwen3moe" || arch_ == "qwen2moe";
  if (!file_.tensors().empty() && !supported)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("%s: general.architecture '%s' is not supported (llama, qwen2, qwen3, qwen3moe, qwen2moe; "
                       "Mistral and Mixtral convert as llama)",
                       file_.path().c_str(), a ? arch_.c_str() : "(missing)"));
  const bool mixtral = canonical_arch() == "mixtral";
  const int64_t n_head = meta_int(arch_ + ".attention.head_count", 0);
  const int64_t n_head_kv = meta_int(arch_ + ".attention.head_count_kv", n_head);
  std::map<std::string, size_t> seen;
  for (size_t k = 0; k < file_.tensors().size(); ++k) {
    const TensorInfo& t = file_.tensors()[k];
    Entry e;
    e.gguf_index = k;
    e.name = canonical_name(t.name, &e.base);
    e.dtype = stored_dtype(t.type);
    e.ndim = t.n_dims;
    for (uint32_t d = 0; d < t.n_dims; ++d) e.shape[d] = t.ne[t.n_dims - 1 - d];
    e.rows = t.rows();
    e.row_elems = t.ne[0];
    e.row_bytes = t.row_bytes();
    // NORM-RoPE files store q/k rows interleaved per head; undo it (llama.cpp
    // convert_hf_to_gguf.py LlamaModel.permute; docs/references.md).
    if (arch_ == "llama" && (e.base == "attn_q" || e.base == "attn_k")) {
      const int64_t heads = e.base == "attn_q" ? n_head : n_head_kv;
      const TypeInfo* ti = type_info(t.type);
      const int64_t out_rows = t.n_dims <= 1 ? t.ne[0] : t.rows();
      if (heads <= 0 || out_rows % heads != 0 || (out_rows / heads) % 2 != 0)
        throw Error(XQ_ERR_MALFORMED,
                    format("%s: tensor '%s' at byte offset %llu: %lld rows cannot be split into %lld heads of even size "
                           "(needed to undo the llama RoPE permutation)",
                           file_.path().c_str(), t.name.c_str(), static_cast<unsigned long long>(t.info_offset),
                           static_cast<long long>(out_rows), static_cast<long long>(heads)));
      if (t.n_dims <= 1) {
        // A bias: its "rows" are single elements.
        if (ti->block_size != 1)
          throw Error(XQ_ERR_UNSUPPORTED, format("%s: tensor '%s': a block-quantized 1-D q/k tensor cannot be un-permuted",
                                                 file_.path().c_str(), t.name.c_str()));
        e.rows = t.ne[0];
        e.row_elems = 1;
        e.row_bytes = ti->type_size;
      }
      e.perm_heads = heads;
    }
    if (e.base == "ffn_gate_exps" || e.base == "ffn_up_exps" || e.base == "ffn_down_exps") {
      add_expert_slices(t, std::move(e), seen);
      continue;
    }
    // Mixtral's router keeps its HF name; Qwen2-MoE's shared_expert_gate is
    // stored 1-D ([hidden]) but is the Linear [1, hidden].
    if (mixtral && e.base == "ffn_gate_inp") e.name.replace(e.name.find(".mlp.gate."), 10, ".block_sparse_moe.gate.");
    if (e.base == "ffn_gate_inp_shexp" && e.ndim == 1) {
      e.ndim = 2;
      e.shape[1] = e.shape[0];
      e.shape[0] = 1;
    }
    if (seen.count(e.name))
      throw Error(XQ_ERR_MALFORMED, format("%s: tensors '%s' and '%s' both map to '%s'", file_.path().c_str(),
                                           file_.tensors()[seen[e.name]].name.c_str(), t.name.c_str(), e.name.c_str()));
    seen[e.name] = entries_.size();
    entries_.push_back(std::move(e));
  }
}

std::string GgufModel::canonical_arch() const {
  if (arch_ == "qwen3moe") return "qwen3_moe";
  if (arch_ == "qwen2moe") return "qwen2_moe";
  if (arch_ == "llama" && meta_int("llama.expert_count", 0) > 0) return "mixtral";
  return arch_;
}

// blk.N.ffn_{gate,up,down}_exps [experts, rows, cols] -> one 2-D entry per
// expert under the HF per-expert name (model.layers.N.mlp.experts.E.gate_proj,
// Mixtral's block_sparse_moe.experts.E.w1/w3/w2).
void GgufModel::add_expert_slices(const TensorInfo& t, Entry e, std::map<std::string, size_t>& seen) {
  if (t.n_dims != 3)
    throw Error(XQ_ERR_MALFORMED, format("%s: tensor '%s' at byte offset %llu has %u dimensions; stacked experts need 3",
                                         file_.path().c_str(), t.name.c_str(),
                                         static_cast<unsigned long long>(t.info_offset), t.n_dims));
  const bool mixtral = canonical_arch() == "mixtral";
  const std::string layer = t.name.substr(4, t.name.find('.', 4) - 4);
  const char* which = e.base == "ffn_gate_exps" ? (mixtral ? "w1" : "gate_proj")
                      : e.base == "ffn_up_exps" ? (mixtral ? "w3" : "up_proj")
                                                : (mixtral ? "w2" : "down_proj");
  const int64_t experts = t.ne[2], rows = t.ne[1];
  for (int64_t x = 0; x < experts; ++x) {
    Entry s = e;
    s.name = "model.layers." + layer + (mixtral ? ".block_sparse_moe.experts." : ".mlp.experts.") + std::to_string(x) +
             "." + which + ".weight";
    s.ndim = 2;
    s.shape[0] = rows;
    s.shape[1] = t.ne[0];
    s.shape[2] = 0;
    s.rows = rows;
    s.slice = true;
    s.first_row = x * rows;
    if (seen.count(s.name))
      throw Error(XQ_ERR_MALFORMED, format("%s: tensor '%s' maps to '%s' twice", file_.path().c_str(), t.name.c_str(),
                                           s.name.c_str()));
    seen[s.name] = entries_.size();
    entries_.push_back(std::move(s));
  }
}

void GgufModel::tensor_info(uint64_t i, xq_tensor_info& out) const {
  const Entry& e = entry(i);
  const TensorInfo& t = info(e);
  out.dtype = e.dtype;
  out.ndim = e.ndim;
  for (uint32_t d = 0; d < e.ndim; ++d) out.shape[d] = e.shape[d];
  out.name = e.name.c_str();
  out.nbytes = nbytes(e);
  out.storage_type_name = type_info(t.type)->name;
  out.has_quantized = (t.type == kQ8_0 || t.type == kQ4_0) && t.n_dims >= 1 ? 1u : 0u;
}

void GgufModel::read(uint64_t i, xq_dtype dtype, void* dst, uint64_t n) const {
  const Entry& e = entry(i);
  const TensorInfo& t = info(e);
  const size_t es = out_size(dtype);
  if (es == 0)
    throw Error(XQ_ERR_UNSUPPORTED, format("%s: tensor '%s': read() converts to F32, F16 or BF16 only", file_.path().c_str(), e.name.c_str()));
  const uint64_t want = static_cast<uint64_t>(numel(e)) * es;
  if (n != want)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("%s: tensor '%s': destination holds %llu bytes, %llu needed", file_.path().c_str(),
                                                e.name.c_str(), static_cast<unsigned long long>(n), static_cast<unsigned long long>(want)));
  if (numel(e) == 0) return;
  const TypeInfo* ti = type_info(t.type);
  const uint8_t* src = data(e);
  uint8_t* out = static_cast<uint8_t*>(dst);
  // Same stored and requested type: copy rows (in HF order).
  if (e.dtype == dtype) {
    host.parallel_for(static_cast<uint64_t>(e.rows), 256, [&](uint64_t b, uint64_t end) {
      for (uint64_t r = b; r < end; ++r)
        std::memcpy(out + r * e.row_bytes, src + source_row(e, static_cast<int64_t>(r)) * e.row_bytes, e.row_bytes);
    });
    return;
  }
  float probe;
  if (!decode(t.type, src, &probe, 0))
    throw Error(XQ_ERR_UNSUPPORTED, format("%s: tensor '%s': dequantizing ggml type %s is not supported",
                                           file_.path().c_str(), e.name.c_str(), ti->name));
  // Decode per row; 1-D tensors are one "row" of row_elems=1 per element.
  const uint64_t grain = e.row_elems >= 4096 ? 1 : static_cast<uint64_t>(4096 / std::max<int64_t>(e.row_elems, 1));
  host.parallel_for(static_cast<uint64_t>(e.rows), grain, [&](uint64_t b, uint64_t end) {
    std::vector<float> row(static_cast<size_t>(e.row_elems));
    for (uint64_t r = b; r < end; ++r) {
      decode(t.type, src + source_row(e, static_cast<int64_t>(r)) * e.row_bytes, row.data(), e.row_elems);
      uint8_t* o = out + r * e.row_elems * es;
      if (dtype == XQ_DTYPE_F32) {
        std::memcpy(o, row.data(), row.size() * 4);
      } else {
        for (int64_t k = 0; k < e.row_elems; ++k) {
          uint16_t h = dtype == XQ_DTYPE_F16 ? sdk::f32_to_f16(row[k]) : sdk::f32_to_bf16(row[k]);
          std::memcpy(o + 2 * k, &h, 2);
        }
      }
    }
  });
}

void GgufModel::raw(uint64_t i, xq_tensor_view& v) const {
  const Entry& e = entry(i);
  const TensorInfo& t = info(e);
  v.dtype = e.dtype;
  v.ndim = e.ndim;
  for (uint32_t d = 0; d < e.ndim; ++d) v.shape[d] = e.shape[d];
  v.nbytes = nbytes(e);
  if (e.perm_heads == 0) {
    v.data = const_cast<uint8_t*>(data(e));  // read-only mapping: callers treat raw views as const
    return;
  }
  // The stored bytes in canonical (HF) row order: a copy made once, kept
  // while the model is open (only q/k projections need one).
  std::lock_guard<std::mutex> lock(raw_mutex_);
  auto it = permuted_.find(i);
  if (it == permuted_.end()) {
    static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t capacity = (static_cast<size_t>(t.nbytes) + page - 1) / page * page;
    std::unique_ptr<uint8_t, FreeBytes> buf(
        capacity ? static_cast<uint8_t*>(std::aligned_alloc(page, capacity)) : nullptr);
    if (capacity && !buf)
      throw Error(XQ_ERR_OUT_OF_MEMORY,
                  format("%s: no memory for the un-permuted copy of tensor '%s' (%zu bytes)", file_.path().c_str(),
                         t.name.c_str(), capacity));
    const uint8_t* src = file_.tensor_data(t);
    // An empty tensor has no buffer: memcpy must not see its null pointer,
    // even for 0 bytes (found by fuzzing).
    for (int64_t r = 0; t.nbytes != 0 && r < e.rows; ++r)
      std::memcpy(buf.get() + r * e.row_bytes, src + source_row(e, r) * e.row_bytes, e.row_bytes);
    release_mapped_pages(src, t.nbytes);
    it = permuted_.emplace(i, std::move(buf)).first;
  }
  v.data = it->second.get();
}

void GgufModel::read_quantized(uint64_t i, xq_quant_tensor& q) const {
  const Entry& e = entry(i);
  const TensorInfo& t = info(e);
  if (t.type == kQ4_1)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("%s: tensor '%s' is Q4_1, whose per-block min is a float (w = d*q + m), not an integer zero point; "
                       "it has no exact canonical quantized form, read it dequantized instead",
                       file_.path().c_str(), e.name.c_str()));
  if (t.type != kQ8_0 && t.type != kQ4_0)
    throw Error(XQ_ERR_UNSUPPORTED, format("%s: tensor '%s' (%s): only Q8_0 and Q4_0 tensors can be read as canonical quantized tensors",
                                           file_.path().c_str(), e.name.c_str(), type_info(t.type)->name));
  if (t.n_dims < 1 || e.row_elems < 32)
    throw Error(XQ_ERR_UNSUPPORTED, format("%s: tensor '%s': a canonical quantized tensor needs a 2-D weight", file_.path().c_str(), e.name.c_str()));
  const int64_t rows = e.slice ? e.rows : t.rows(), cols = t.ne[0], ng = cols / 32;
  // q is owned by LoaderAdapter::read_quantized, which frees its buffers if this throws.
  q.bits = t.type == kQ8_0 ? 8 : 4;
  q.symmetric = 1;
  q.strategy = XQ_STRATEGY_GROUP;
  q.rows = rows;
  q.cols = cols;
  q.group_size = 32;
  q.n_groups = ng;
  q.scale_dtype = XQ_DTYPE_F16;
  q.act_scheme = XQ_ACT_NONE;
  q.codes = host.alloc<int8_t>(static_cast<size_t>(rows * cols));
  q.scales = host.alloc<float>(static_cast<size_t>(rows * ng));
  const uint8_t* src = data(e);
  const uint64_t tsz = type_info(t.type)->type_size;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = src + source_row(e, r) * e.row_bytes;
    for (int64_t g = 0; g < ng; ++g) {
      const uint8_t* b = row + g * tsz;
      uint16_t d;
      std::memcpy(&d, b, 2);
      q.scales[r * ng + g] = sdk::f16_to_f32(d);
      int8_t* c = q.codes + r * cols + g * 32;
      if (t.type == kQ8_0) {
        std::memcpy(c, b + 2, 32);
      } else {
        for (int j = 0; j < 16; ++j) {
          c[j] = static_cast<int8_t>((b[2 + j] & 0xF) - 8);
          c[j + 16] = static_cast<int8_t>((b[2 + j] >> 4) - 8);
        }
      }
    }
  }
}

void GgufModel::config(const sdk::KvWriter& out) const {
  const std::string& A = arch_;
  out.set_string("source.format", "gguf");
  out.set_string("architecture", A.empty() ? "unknown" : canonical_arch());
  auto has_tensor = [&](const char* n) {
    for (const auto& e : entries_)
      if (e.name == n) return true;
    return false;
  };
  const Value* toks = file_.find("tokenizer.ggml.tokens");
  if (A == "llama" || A == "qwen2" || A == "qwen3" || A == "qwen3moe" || A == "qwen2moe") {
    if (file_.find(A + ".expert_count") && meta_int(A + ".expert_count", 0) > 0) {
      // llama.cpp's MoE keys (gguf-py constants.py Keys.LLM.EXPERT_*); its
      // qwen3moe and llama (Mixtral) graphs normalise the top-k weights,
      // qwen2moe's does not (llama-model.cpp build_moe_ffn norm_w).
      out.set_int("num_experts", meta_int(A + ".expert_count", 0));
      out.set_int("num_experts_per_tok", meta_int(A + ".expert_used_count", 0));
      if (file_.find(A + ".expert_feed_forward_length"))
        out.set_int("moe_intermediate_size", meta_int(A + ".expert_feed_forward_length", 0));
      if (file_.find(A + ".expert_shared_feed_forward_length"))
        out.set_int("shared_expert_intermediate_size", meta_int(A + ".expert_shared_feed_forward_length", 0));
      const Value* nw = file_.find(A + ".expert_weights_norm");
      out.set_bool("norm_topk_prob", nw && nw->type == VType::BOOL ? nw->i != 0 : A != "qwen2moe");
      // GGUF has no mlp_only_layers key: the layers stored with a dense FFN.
      std::string dense;
      for (int64_t l = 0; l < meta_int(A + ".block_count", 0); ++l)
        if (has_tensor(("model.layers." + std::to_string(l) + ".mlp.gate_proj.weight").c_str()))
          dense += (dense.empty() ? "" : ",") + std::to_string(l);
      if (!dense.empty()) out.set_string("mlp_only_layers", dense);
    }
    const int64_t hidden = meta_int(A + ".embedding_length", 0);
    const int64_t heads = meta_int(A + ".attention.head_count", 0);
    if (hidden) out.set_int("hidden_size", hidden);
    if (file_.find(A + ".feed_forward_length")) out.set_int("intermediate_size", meta_int(A + ".feed_forward_length", 0));
    if (file_.find(A + ".block_count")) out.set_int("num_hidden_layers", meta_int(A + ".block_count", 0));
    if (heads) {
      out.set_int("num_attention_heads", heads);
      out.set_int("num_key_value_heads", meta_int(A + ".attention.head_count_kv", heads));
    }
    const int64_t hd = meta_int(A + ".attention.key_length", heads ? hidden / heads : 0);
    if (hd) out.set_int("head_dim", hd);
    int64_t vocab = meta_int(A + ".vocab_size", toks && toks->type == VType::ARRAY ? static_cast<int64_t>(toks->count) : 0);
    for (const auto& e : entries_)
      if (e.name == "model.embed_tokens.weight" && e.ndim == 2) vocab = e.shape[0];
    if (vocab) out.set_int("vocab_size", vocab);
    if (file_.find(A + ".context_length")) out.set_int("max_position_embeddings", meta_int(A + ".context_length", 0));
    out.set_float("rms_norm_eps", meta_float(A + ".attention.layer_norm_rms_epsilon", 1e-6));
    out.set_float("rope_theta", meta_float(A + ".rope.freq_base", 10000.0));
    if (!entries_.empty()) {
      out.set_bool("tie_word_embeddings", !has_tensor("lm_head.weight"));
      out.set_bool("attention_bias", has_tensor("model.layers.0.self_attn.q_proj.bias"));
    }
    const Value* st = file_.find(A + ".rope.scaling.type");
    if (st && st->type == VType::STRING && st->s != "none") {
      out.set_string("rope_scaling.type", st->s);
      if (file_.find(A + ".rope.scaling.factor")) out.set_float("rope_scaling.factor", meta_float(A + ".rope.scaling.factor", 1.0));
      if (file_.find(A + ".rope.scaling.original_context_length"))
        out.set_int("rope_scaling.original_max_position_embeddings", meta_int(A + ".rope.scaling.original_context_length", 0));
    }
    // The float type the weights were converted from, as far as GGUF says.
    std::string td = "float16";
    for (const auto& e : entries_)
      if (e.name == "model.embed_tokens.weight")
        td = e.dtype == XQ_DTYPE_F32 ? "float32" : e.dtype == XQ_DTYPE_BF16 ? "bfloat16" : "float16";
    out.set_string("torch_dtype", td);
  }
  if (const Value* v = file_.find("tokenizer.ggml.bos_token_id"); v && v->is_int()) out.set_int("bos_token_id", v->i);
  if (const Value* v = file_.find("tokenizer.ggml.eos_token_id"); v && v->is_int()) out.set_int("eos_token_id", v->i);

  // Tokenizer keys: tokenizer.ggml.X -> tokenizer.X (full arrays), the HF
  // json under tokenizer.huggingface_json; raw metadata under gguf.<key>.
  for (const auto& [key, v] : file_.kv()) {
    std::string tk;
    if (key.rfind("tokenizer.ggml.", 0) == 0) tk = "tokenizer." + key.substr(15);
    else if (key == "tokenizer.huggingface.json") tk = "tokenizer.huggingface_json";
    else if (key.rfind("tokenizer.", 0) == 0) tk = key;
    const bool big = v.type == VType::ARRAY && v.count > 1024;
    for (const std::string& k : {tk, big ? std::string() : "gguf." + key}) {
      if (k.empty()) continue;
      if (v.type == VType::STRING) out.set_string(k.c_str(), v.s);
      else if (v.type == VType::BOOL) out.set_bool(k.c_str(), v.i != 0);
      else if (v.is_int()) out.set_int(k.c_str(), v.i);
      else if (v.is_float()) out.set_float(k.c_str(), v.f);
      else if (v.elem == VType::STRING) out.set_strings(k.c_str(), file_.strings(v));
      else if (v.elem == VType::F32 || v.elem == VType::F64) out.set_floats(k.c_str(), v.floats);
      else out.set_ints(k.c_str(), v.ints);
    }
  }
}

class GgufLoader : public sdk::PluginBase {
 public:
  using Model = GgufModel;
  using PluginBase::PluginBase;
  uint32_t probe(const std::string& path) const { return File::has_magic(path) ? 100 : 0; }
  std::unique_ptr<GgufModel> open(const std::string& path) const { return std::make_unique<GgufModel>(host, path); }
};

constexpr const char* kCaps[] = {"container:gguf", "arch:llama", "arch:qwen2", "arch:qwen3", "arch:mistral", "arch:qwen3moe", "arch:qwen2moe", "arch:mixtral",
                                 "quantized:Q8_0", "quantized:Q4_0", nullptr};
constexpr xq_plugin_descriptor kDescriptor = sdk::describe<GgufLoader>(
    XQ_PLUGIN_LOADER, "gguf", "1.0.0",
    "GGUF v2/v3 (llama/qwen2/qwen3/qwen3moe/qwen2moe; Mixtral as llama): canonical HF names (stacked experts split per expert), un-permuted Q/K, F32/F16/BF16/Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K",
    kCaps, nullptr, &sdk::LoaderAdapter<GgufLoader>::vtable);

}  // namespace
}  // namespace xquant::gguf

XQ_SDK_ENTRY(xquant::gguf::kDescriptor)
