// writer.cpp: see writer.hpp.
#include "writer.hpp"

#include "block_encode.hpp"
#include "gguf_types.hpp"
#include "vocab_meta.hpp"
#include "weighted_encode.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace xquant::gguf {

using sdk::Error;
using sdk::format;

namespace {

constexpr uint32_t kAuto = UINT32_MAX;

uint32_t type_by_name(const std::string& s) {
  if (s == "auto") return kAuto;
  for (uint32_t t : {kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ4_K, kQ5_K, kQ6_K})
    if (s == type_info(t)->name) return t;
  throw Error(XQ_ERR_INVALID_ARGUMENT, "gguf writer: param 'type' is '" + s +
                                           "'; expected auto, F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, "
                                           "Q5_K or Q6_K");
}

bool is_float_type(uint32_t t) { return t == kF32 || t == kF16 || t == kBF16; }

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(XQ_ERR_IO, p.string() + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The text of the tokenizer_config.json beside a tokenizer.json, "" if none.
std::string tokenizer_config_beside(const std::filesystem::path& tokenizer_json) {
  const std::filesystem::path p = tokenizer_json.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) ? read_text(p) : std::string();
}

// Canonical dequantization, w = (code - zero) * scale, one row.
void dequantize_canonical(const xq_quant_tensor& q, int64_t r, float* out) {
  for (int64_t c = 0; c < q.cols; ++c) {
    int64_t k = 0;
    if (q.strategy != XQ_STRATEGY_TENSOR) {
      const int64_t g = q.strategy == XQ_STRATEGY_GROUP ? (q.g_idx ? q.g_idx[c] : c / q.group_size) : 0;
      k = r * q.n_groups + g;
    }
    const int z = q.zero_points ? q.zero_points[k] : 0;
    out[c] = static_cast<float>(q.codes[r * q.cols + c] - z) * q.scales[k];
  }
}

// One row of codes as blocks of `type`: one scale (and zero) per 32 columns.
void encode_row_codes(const xq_quant_tensor& q, uint32_t type, int64_t r, uint8_t* out) {
  const int64_t nb = q.cols / 32;
  std::vector<float> sc(static_cast<size_t>(nb));
  std::vector<int8_t> zp(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t k = q.strategy == XQ_STRATEGY_TENSOR    ? 0
                      : q.strategy == XQ_STRATEGY_CHANNEL ? r
                                                         : r * q.n_groups + b * 32 / q.group_size;
    sc[b] = q.scales[k];
    zp[b] = q.zero_points ? q.zero_points[k] : 0;
  }
  encode_codes(type, q.codes + r * q.cols, sc.data(), zp.data(), q.cols, out);
}

struct Agreement {
  bool exact = true;  // every decoded value equals ours
  double rel = 0;     // ||decoded - ours|| / ||ours||
};

// Decodes `bytes` (rows of `type`) with the loader's decoders and compares
// them with `ours`.
Agreement compare_decoded(const sdk::Host& host, uint32_t type, const std::vector<uint8_t>& bytes,
                          const std::vector<float>& ours, int64_t rows, int64_t cols) {
  const TypeInfo* ti = type_info(type);
  const uint64_t row_bytes = static_cast<uint64_t>(cols / ti->block_size) * ti->type_size;
  std::vector<double> err2(static_cast<size_t>(rows)), ref2(static_cast<size_t>(rows));
  std::vector<char> same(static_cast<size_t>(rows), 1);
  host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
    std::vector<float> back(static_cast<size_t>(cols));
    for (uint64_t r = b; r < e; ++r) {
      dequantize_row(type, bytes.data() + r * row_bytes, back.data(), cols);
      for (int64_t c = 0; c < cols; ++c) {
        const float w = ours[r * cols + c];
        const double d = double(back[c]) - w;
        same[r] = same[r] && back[c] == w;
        err2[r] += d * d;
        ref2[r] += double(w) * w;
      }
    }
  });
  Agreement a;
  double e = 0, n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    a.exact = a.exact && same[r];
    e += err2[r];
    n += ref2[r];
  }
  a.rel = n > 0 ? std::sqrt(e / n) : std::sqrt(e);
  return a;
}

// Bytes of `rows` rows of `cols` floats in float type t.
std::vector<uint8_t> encode_float_rows(uint32_t t, const float* x, int64_t n) {
  const size_t es = t == kF32 ? 4 : 2;
  std::vector<uint8_t> out(static_cast<size_t>(n) * es);
  for (int64_t i = 0; i < n; ++i) {
    if (t == kF32) {
      std::memcpy(out.data() + 4 * i, x + i, 4);
    } else {
      const uint16_t h = t == kF16 ? sdk::f32_to_f16(x[i]) : sdk::f32_to_bf16(x[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// Floats of a dense view as F32.
std::vector<float> to_f32(const xq_tensor_view& t, uint64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (uint64_t i = 0; i < n; ++i) {
    if (t.dtype == XQ_DTYPE_F32) {
      std::memcpy(&out[i], p + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = t.dtype == XQ_DTYPE_F16 ? sdk::f16_to_f32(h) : sdk::bf16_to_f32(h);
    }
  }
  return out;
}

// The canonical tensor's own consistency: counts and indices that the
// conversion below relies on (a plugin bug upstream must not become an
// out-of-bounds read here).
void validate(const char* module, const xq_quant_tensor& q) {
  auto bad = [&](const std::string& why) {
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: quantized tensor '%s': %s", module, why.c_str()));
  };
  if (!q.codes || !q.scales || q.rows <= 0 || q.cols <= 0) bad("no codes or scales, or an empty shape");
  if (q.bits < 2 || q.bits > 8)
    throw Error(XQ_ERR_UNSUPPORTED, format("gguf writer: quantized tensor '%s': %s codes; the GGUF writer takes 2..8-bit "
                                           "integer codes (write compressed-tensors or xq)",
                                           module, sdk::code_format_name(q.bits).c_str()));
  if (!q.symmetric && !q.zero_points) bad("asymmetric without zero points");
  if (q.strategy == XQ_STRATEGY_GROUP) {
    if (q.group_size <= 0 || q.n_groups != (q.cols + q.group_size - 1) / q.group_size)
      bad(format("group_size %lld and n_groups %lld do not fit %lld columns", static_cast<long long>(q.group_size),
                 static_cast<long long>(q.n_groups), static_cast<long long>(q.cols)));
    if (q.g_idx)
      for (int64_t c = 0; c < q.cols; ++c)
        if (q.g_idx[c] < 0 || q.g_idx[c] >= q.n_groups) bad(format("g_idx[%lld] = %d is no group", static_cast<long long>(c), q.g_idx[c]));
  } else if (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR) {
    bad("strategy has no GGUF form (tensor, channel or group expected)");
  }
}

const char* scheme_text(const xq_quant_tensor& q, std::string* buf) {
  *buf = format("int%u %s %s", q.bits, q.symmetric ? "sym" : "asym",
                q.strategy == XQ_STRATEGY_GROUP ? format("g%lld", static_cast<long long>(q.group_size)).c_str()
                : q.strategy == XQ_STRATEGY_CHANNEL ? "per-channel" : "per-tensor");
  if (q.g_idx) *buf += " act-order";
  return buf->c_str();
}

}  // namespace

Writer::Writer(const sdk::Host& h, const xq_writer_options& o) : WriterBase(h) {
  const sdk::KvReader params(host, o.params), config(host, o.model_config);
  const std::filesystem::path path = o.out_dir ? o.out_dir : "";
  if (path.extension() != ".gguf")
    throw Error(XQ_ERR_INVALID_ARGUMENT, "gguf writer: output.path '" + path.string() +
                                             "' must name the .gguf file to write (e.g. out/model.gguf)");
  wanted_type_ = type_by_name(params.get_string("type", "auto"));
  require_exact_ = params.get_bool("exact", false);
  use_calibration_importance_ = params.get_bool("importance", true);
  imatrix_out_path_ = params.get_string("imatrix_out", "");
  if (params.has("imatrix")) {
    imatrix_in_path_ = params.get_string("imatrix");
    imatrix_in_ = read_imatrix(imatrix_in_path_);
    host.info(format("gguf: importance matrix %s: %zu entries", imatrix_in_path_.c_str(), imatrix_in_.entries.size()));
  }
  arch_ = gguf_architecture(config.get_string("architecture", "(none)"));
  model_name_ = config.get_string("gguf.general.name", std::filesystem::path(o.source_path ? o.source_path : "model")
                                                          .filename()
                                                          .replace_extension()
                                                          .string());
  n_head_ = config.get_int("num_attention_heads", 0);
  n_head_kv_ = config.get_int("num_key_value_heads", n_head_);
  n_experts_ = expert_count(config);
  expert_stacks_ = ExpertStacks(n_experts_);
  if (n_experts_ > 0 && config.has("norm_topk_prob") &&
      config.get_bool("norm_topk_prob") != llama_cpp_renormalises_top_k(arch_))
    host.warn(format("gguf: norm_topk_prob is %s, but llama.cpp's %s graph always %s the top-k expert weights: "
                     "llama.cpp will not compute this model as trained (our loader honours %s.expert_weights_norm)",
                     config.get_bool("norm_topk_prob") ? "true" : "false", arch_.c_str(),
                     llama_cpp_renormalises_top_k(arch_) ? "renormalises" : "keeps", arch_.c_str()));

  std::error_code ec;
  if (path.has_parent_path() && !std::filesystem::exists(path.parent_path(), ec)) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw Error(XQ_ERR_IO, path.parent_path().string() + ": cannot create: " + ec.message());
    created_dir_ = path.parent_path();
  }
  try {
    out_ = std::make_unique<Emitter>(path);
    out_->set("general.name", str_value(model_name_));
    write_hparams(*out_, arch_, config);
    write_tokenizer(o, config);
    if (auto factors = llama3_rope_factors(config); !factors.empty())
      out_->add_tensor("rope_freqs.weight", kF32, {static_cast<int64_t>(factors.size())}, factors.data(),
                       factors.size() * sizeof(float));
  } catch (...) {
    abort();  // no writer handle exists yet for the host to abort
    throw;
  }
}

void Writer::write_tokenizer(const xq_writer_options& o, const sdk::KvReader& config) {
  const sdk::KvReader params(host, o.params);
  const int64_t bos = config.get_int("bos_token_id", -1), eos = config.get_int("eos_token_id", -1);
  auto from_path = [&](const std::filesystem::path& p) {
    if (File::has_magic(p.string())) {
      if (!copy_gguf_tokenizer(*out_, p.string()))
        throw Error(XQ_ERR_INVALID_ARGUMENT, "gguf writer: '" + p.string() + "' has no tokenizer.* metadata");
      return;
    }
    const std::filesystem::path json = std::filesystem::is_directory(p) ? p / "tokenizer.json" : p;
    write_hf_tokenizer(*out_, read_text(json), json.string(), bos, eos, tokenizer_config_beside(json));
  };
  if (params.has("tokenizer")) return from_path(params.get_string("tokenizer"));
  const std::string source = o.source_path ? o.source_path : "";
  if (!source.empty() && !std::filesystem::is_directory(source) && File::has_magic(source) &&
      copy_gguf_tokenizer(*out_, source))
    return;
  if (write_config_tokenizer(*out_, host, o.model_config)) return;
  if (config.has("tokenizer.huggingface_json"))
    return write_hf_tokenizer(*out_, config.get_string("tokenizer.huggingface_json"), source + " (tokenizer.json)",
                              bos, eos, tokenizer_config_beside(std::filesystem::path(source) / "tokenizer.json"));
  throw Error(XQ_ERR_INVALID_ARGUMENT,
              "gguf writer: '" + source + "' carries no tokenizer, and llama.cpp cannot run a GGUF without one; "
              "set output.params.tokenizer to a .gguf file, a tokenizer.json or a folder holding one");
}

Writer::Target Writer::plan(const xq_quant_tensor& q, uint32_t wanted) const {
  Target t;
  std::string scheme;
  scheme_text(q, &scheme);
  // The natural type for the codes under `auto`.
  if (wanted == kAuto) {
    if (q.symmetric) wanted = q.bits <= 4 ? kQ4_0 : q.bits == 5 ? kQ5_0 : kQ8_0;
    else wanted = q.bits <= 4 ? kQ4_1 : q.bits == 5 ? kQ5_1 : kQ8_0;
  }
  // llama.cpp's fallback for rows that are not whole super-blocks
  // (llama-quant.cpp, llama_tensor_get_type), then F32 (kept exact, where
  // llama.cpp would take F16) for rows that are not whole 32-blocks.
  if (q.cols % 256 != 0) {
    if (wanted == kQ4_K) wanted = kQ5_0;
    else if (wanted == kQ5_K) wanted = kQ5_1;
    else if (wanted == kQ6_K) wanted = kQ8_0;
  }
  if (!is_float_type(wanted) && q.cols % 32 != 0) wanted = kF32;
  t.type = wanted;
  if (is_float_type(wanted)) return t;

  const bool sym_type = wanted == kQ4_0 || wanted == kQ5_0 || wanted == kQ8_0;
  const bool asym_type = wanted == kQ4_1 || wanted == kQ5_1;
  const uint32_t type_bits = wanted == kQ8_0 ? 8 : (wanted == kQ5_0 || wanted == kQ5_1) ? 5 : 4;
  const char* name = type_info(wanted)->name;
  if (!sym_type && !asym_type)
    t.why_not = format("%s is a K-quant, whose sub-block scales are 6-bit fits, not our scales", name);
  else if (!q.symmetric && !asym_type)
    t.why_not = format("%s has no zero point, and %s codes have one", name, scheme.c_str());
  else if (q.bits > type_bits)
    t.why_not = format("%s holds %u-bit codes, these are %u-bit", name, type_bits, q.bits);
  else if (q.g_idx)
    t.why_not = format("act-order (g_idx) groups are not runs of 32 columns");
  else if (q.strategy == XQ_STRATEGY_GROUP && q.group_size % 32 != 0)
    t.why_not = format("%s blocks are 32 columns with one scale, and group %lld does not split into them", name,
                       static_cast<long long>(q.group_size));
  t.from_codes = t.why_not.empty();
  return t;
}

void Writer::emit(const std::string& gguf_name, const std::string& base, uint32_t type, int64_t rows, int64_t cols,
                  uint32_t ndim, const std::vector<uint8_t>& bytes) {
  const TypeInfo* ti = type_info(type);
  const int64_t heads = base == "attn_q" ? n_head_ : base == "attn_k" ? n_head_kv_ : 0;
  std::vector<int64_t> ne = ndim == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{cols, rows};
  if (arch_ != "llama" || heads == 0) return out_->add_tensor(gguf_name, type, ne, bytes.data(), bytes.size());
  // llama.cpp's llama graph applies RoPE to adjacent pairs; convert_hf_to_gguf.py
  // permutes q/k rows (biases: elements) from HF's half-split order to match.
  const int64_t units = ndim == 1 ? cols : rows;
  const uint64_t unit_bytes = bytes.size() / static_cast<uint64_t>(units);
  if (units % heads != 0 || (units / heads) % 2 != 0 || (ndim == 1 && ti->block_size != 1))
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: '%s': %lld rows do not split into %lld heads of even size",
                                                gguf_name.c_str(), static_cast<long long>(units),
                                                static_cast<long long>(heads)));
  std::vector<uint8_t> permuted(bytes.size());
  for (int64_t r = 0; r < units; ++r)
    std::memcpy(permuted.data() + gguf_row(r, units, heads) * unit_bytes, bytes.data() + r * unit_bytes, unit_bytes);
  out_->add_tensor(gguf_name, type, ne, permuted.data(), permuted.size());
}

void Writer::place(const GgufName& g, uint32_t type, int64_t rows, int64_t cols, uint32_t ndim,
                   std::vector<uint8_t> bytes) {
  if (g.expert < 0) return emit(g.name, g.base, type, rows, cols, ndim, bytes);
  if (n_experts_ <= 0)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: %s: expert %lld of a model whose config has no "
                                                "num_experts / num_local_experts",
                                                g.name.c_str(), static_cast<long long>(g.expert)));
  if (ndim != 2)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: %s: expert %lld has %u dimensions (2 expected)",
                                                g.name.c_str(), static_cast<long long>(g.expert), ndim));
  auto stack = expert_stacks_.add(g.name, g.expert, type, rows, cols, std::move(bytes));
  if (stack) out_->add_tensor(stack->name, stack->type, {stack->cols, stack->rows, n_experts_}, stack->bytes.data(),
                              stack->bytes.size());
}

void Writer::add_dense(const char* name, const xq_tensor_view& t) {
  const auto g = gguf_tensor_name(name);
  if (!g)
    throw Error(XQ_ERR_UNSUPPORTED, format("gguf writer: tensor '%s' has no GGUF name that llama.cpp reads", name));
  if (t.dtype != XQ_DTYPE_F32 && t.dtype != XQ_DTYPE_F16 && t.dtype != XQ_DTYPE_BF16)
    throw Error(XQ_ERR_UNSUPPORTED, format("gguf writer: tensor '%s': dtype %d is not F32, F16 or BF16", name, t.dtype));
  if (t.ndim < 1 || t.ndim > 2)
    throw Error(XQ_ERR_UNSUPPORTED, format("gguf writer: tensor '%s' has %u dimensions (1 or 2 expected)", name, t.ndim));
  const int64_t rows = t.ndim == 2 ? t.shape[0] : 1, cols = t.shape[t.ndim - 1];
  const uint64_t n = static_cast<uint64_t>(rows * cols), es = t.dtype == XQ_DTYPE_F32 ? 4 : 2;
  if (t.nbytes != n * es)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: tensor '%s': %llu bytes for %llu elements", name,
                                                static_cast<unsigned long long>(t.nbytes), static_cast<unsigned long long>(n)));
  uint32_t type = t.dtype == XQ_DTYPE_F32 ? kF32 : t.dtype == XQ_DTYPE_F16 ? kF16 : kBF16;
  std::vector<uint8_t> bytes;
  // MoE routers stay F32 (convert_hf_to_gguf.py's prepare_tensors keeps
  // FFN_GATE_INP and FFN_GATE_INP_SHEXP in float32); Qwen2-MoE's shared
  // expert gate [1, hidden] is the 1-D {n_embd} llama.cpp's qwen2moe creates.
  const bool router = g->base == "ffn_gate_inp" || g->base == "ffn_gate_inp_shexp";
  uint32_t ndim = t.ndim;
  if (g->base == "ffn_gate_inp_shexp" && ndim == 2 && rows == 1) ndim = 1;
  if ((t.ndim == 1 || router) && type != kF32) {  // ggml's norm and bias ops take F32 (convert_hf_to_gguf.py keeps 1-D F32)
    const std::vector<float> f = to_f32(t, n);
    bytes = encode_float_rows(kF32, f.data(), static_cast<int64_t>(n));
    type = kF32;
  } else {
    bytes.assign(static_cast<const uint8_t*>(t.data), static_cast<const uint8_t*>(t.data) + t.nbytes);
  }
  place(*g, type, rows, cols, ndim, std::move(bytes));
  ++dense_;
}

void Writer::add_quantized(const char* module, const xq_quant_tensor& q) {
  const std::string hf = std::string(module) + ".weight";
  const auto g = gguf_tensor_name(hf);
  if (!g)
    throw Error(XQ_ERR_UNSUPPORTED, format("gguf writer: Linear '%s' has no GGUF name that llama.cpp reads", module));
  validate(module, q);
  if (q.act_scheme != XQ_ACT_NONE)
    host.warn(format("gguf: %s: GGUF has no activation quantization; only the weights are written", g->name.c_str()));
  const Target t = plan(q, wanted_type_);
  std::string scheme;
  scheme_text(q, &scheme);
  const TypeInfo* ti = type_info(t.type);
  const int64_t rows = q.rows, cols = q.cols;
  const uint64_t row_bytes = static_cast<uint64_t>(cols / ti->block_size) * ti->type_size;
  std::vector<float> canonical(static_cast<size_t>(rows * cols));
  host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) dequantize_canonical(q, static_cast<int64_t>(r), canonical.data() + r * cols);
  });

  std::vector<uint8_t> bytes(static_cast<size_t>(row_bytes * rows));
  std::string importance_source;
  if (is_float_type(t.type)) {
    bytes = encode_float_rows(t.type, canonical.data(), rows * cols);
  } else if (t.from_codes) {
    host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
      for (uint64_t r = b; r < e; ++r) encode_row_codes(q, t.type, static_cast<int64_t>(r), bytes.data() + r * row_bytes);
    });
  } else {
    if (require_exact_)
      throw Error(XQ_ERR_UNSUPPORTED, format("gguf writer: %s (%s) cannot be written to %s without requantizing: %s "
                                             "(param exact: true)",
                                             module, scheme.c_str(), ti->name, t.why_not.c_str()));
    const std::vector<float> importance =
        uses_importance(t.type) ? importance_for(module, *g, cols, &importance_source) : std::vector<float>();
    host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
      for (uint64_t r = b; r < e; ++r) {
        const float* x = canonical.data() + r * cols;
        uint8_t* out = bytes.data() + r * row_bytes;
        if (importance.empty()) encode_floats(t.type, x, cols, out);
        else encode_row_weighted(t.type, x, cols, importance.data(), out);
      }
    });
    if (!importance.empty()) ++weighted_;
  }

  // Decode what will be stored and compare with our dequantization.
  const Agreement a = compare_decoded(host, t.type, bytes, canonical, rows, cols);
  const bool exact = a.exact;
  const double rel = a.rel;
  if (require_exact_ && !exact)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("gguf writer: %s (%s) is not exact as %s (relative error %.3g): %s (param exact: true)", module,
                       scheme.c_str(), ti->name, rel,
                       t.from_codes ? "a scale or zero-point offset is not representable in f16" : t.why_not.c_str()));
  const std::string shown = g->expert < 0 ? g->name : format("%s[expert %lld]", g->name.c_str(),
                                                            static_cast<long long>(g->expert));
  host.info(format("gguf: %s: %s %s (from %s)%s%s", shown.c_str(), exact ? "exact" : "requantized", ti->name,
                   scheme.c_str(), exact ? "" : format(", relative error %.3g", rel).c_str(),
                   importance_source.empty() ? "" : (", weighted by " + importance_source).c_str()));
  ++(exact ? exact_ : requantized_);
  ++linear_types_[t.type];
  place(*g, t.type, rows, cols, 2, std::move(bytes));
}

namespace {

// llama.cpp's llama_ftype for the type most Linears have (general.file_type,
// which llama.cpp shows as the model's "file type"; K-quants as the _S mix).
int64_t file_type_of(uint32_t t) {
  switch (t) {
    case kF32: return 0;
    case kF16: return 1;
    case kQ4_0: return 2;
    case kQ4_1: return 3;
    case kQ8_0: return 7;
    case kQ5_0: return 8;
    case kQ5_1: return 9;
    case kQ4_K: return 14;
    case kQ5_K: return 16;
    case kQ6_K: return 18;
    case kBF16: return 32;
    default: return 0;
  }
}

}  // namespace

void Writer::finish() {
  uint32_t main_type = kF32;
  size_t most = 0;
  for (const auto& [type, n] : linear_types_)
    if (n > most) {
      most = n;
      main_type = type;
    }
  out_->set("general.file_type", u32_value(file_type_of(main_type)));
  expert_stacks_.require_complete();
  out_->finish();
  host.info(format("gguf: wrote %s: %zu quantized weights exact, %zu requantized (%zu weighted by importance), "
                   "%zu dense tensors",
                   out_->final_path().c_str(), exact_, requantized_, weighted_, dense_));
  if (!imatrix_out_path_.empty()) {
    if (imatrix_out_.entries.empty())
      throw Error(XQ_ERR_INVALID_ARGUMENT, "gguf writer: param imatrix_out '" + imatrix_out_path_ +
                                               "': the run gave no calibration statistics (only calibrated "
                                               "pipelines, e.g. gptq or awq rules, have them)");
    imatrix_out_.datasets = {"xquant calibration"};
    write_imatrix(imatrix_out_path_, imatrix_out_);
    host.info(format("gguf: wrote importance matrix %s: %zu entries", imatrix_out_path_.c_str(),
                     imatrix_out_.entries.size()));
  }
}

void Writer::set_importance(const char* module, const float* sum_sq, int64_t n_cols, uint64_t tokens) {
  if (!module || !sum_sq || n_cols <= 0)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: importance of '%s': no values", module ? module : "(null)"));
  ImatrixEntry e;
  e.sums.assign(sum_sq, sum_sq + n_cols);
  for (int64_t c = 0; c < n_cols; ++c)
    if (!std::isfinite(e.sums[c]) || e.sums[c] < 0)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: importance of '%s': column %lld is %g (finite, >= 0 "
                                                  "expected)", module, static_cast<long long>(c),
                                                  static_cast<double>(e.sums[c])));
  e.counts = {static_cast<float>(tokens)};
  if (const auto g = gguf_tensor_name(std::string(module) + ".weight")) {
    if (g->expert < 0) {
      imatrix_out_.entries[g->name] = e;
    } else if (g->expert < n_experts_) {
      // llama.cpp's imatrix keeps one entry per stacked tensor: every
      // expert's sums one after another, and one token count per expert
      // (experts that saw no token keep count 0).
      ImatrixEntry& all = imatrix_out_.entries[g->name];
      if (!all.sums.empty() && static_cast<int64_t>(all.sums.size()) != n_experts_ * n_cols)
        throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: importance of '%s': %lld columns, unlike the "
                                                    "layer's other experts", module, static_cast<long long>(n_cols)));
      all.sums.resize(static_cast<size_t>(n_experts_ * n_cols), 0.f);
      all.counts.resize(static_cast<size_t>(n_experts_), 0.f);
      std::copy(e.sums.begin(), e.sums.end(), all.sums.begin() + g->expert * n_cols);
      all.counts[static_cast<size_t>(g->expert)] = static_cast<float>(tokens);
    }
  }
  calibration_importance_[module] = std::move(e);
}

std::vector<float> Writer::importance_for(const std::string& module, const GgufName& g, int64_t cols,
                                          std::string* source) const {
  const std::string& gguf_name = g.name;
  auto checked = [&](std::vector<float> v, const std::string& from) {
    if (static_cast<int64_t>(v.size()) != cols)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: %s: the importance from %s has %zu values for %lld "
                                                  "columns", gguf_name.c_str(), from.c_str(), v.size(),
                                                  static_cast<long long>(cols)));
    *source = from;
    return v;
  };
  if (!imatrix_in_path_.empty()) {
    std::vector<float> v = imatrix_in_.mean_squares(gguf_name);
    // A stacked expert tensor's entry holds every expert's columns in turn.
    if (g.expert >= 0 && static_cast<int64_t>(v.size()) == n_experts_ * cols)
      v = std::vector<float>(v.begin() + g.expert * cols, v.begin() + (g.expert + 1) * cols);
    if (!v.empty()) return checked(std::move(v), "imatrix " + imatrix_in_path_);
    host.warn(format("gguf: %s: not in imatrix %s; requantized without importance", gguf_name.c_str(),
                     imatrix_in_path_.c_str()));
    return {};
  }
  if (!use_calibration_importance_) return {};
  const auto it = calibration_importance_.find(module);
  if (it == calibration_importance_.end()) return {};
  ImportanceMatrix one;
  one.entries.emplace(gguf_name, it->second);
  return checked(one.mean_squares(gguf_name), "calibration");
}

void Writer::abort() noexcept {
  if (out_) out_->abort();
  std::error_code ec;
  if (!created_dir_.empty()) std::filesystem::remove(created_dir_, ec);  // only if still empty
}

}  // namespace xquant::gguf
