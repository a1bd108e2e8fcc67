// writer.cpp: see writer.hpp.
#include "writer.hpp"

#include "hf_folder_stage.hpp"

#include "float_quantized.hpp"
#include "group_targets.hpp"

#include "packing.hpp"
#include "scheme.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace fs = std::filesystem;

namespace xquant::ct {
namespace {

const char* st_dtype(xq_dtype t, const std::string& what) {
  const char* n = sdk::safetensors::dtype_name(t);
  if (!n) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, what + ": dtype has no safetensors equivalent");
  return n;
}

// Scales in their stored dtype; they must already be representable there
// (xq_tensor.h), so a write/read round trip is bit-exact.
std::vector<unsigned char> encode_scales(const float* s, int64_t n, xq_dtype t, const std::string& module) {
  std::vector<unsigned char> out;
  if (t == XQ_DTYPE_F32) {
    out.resize(static_cast<size_t>(n) * 4);
    std::memcpy(out.data(), s, out.size());
    return out;
  }
  if (t != XQ_DTYPE_F16 && t != XQ_DTYPE_BF16)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + module + "': scale_dtype must be F32, F16 or BF16");
  out.resize(static_cast<size_t>(n) * 2);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h = t == XQ_DTYPE_F16 ? sdk::f32_to_f16(s[i]) : sdk::f32_to_bf16(s[i]);
    float back = t == XQ_DTYPE_F16 ? sdk::f16_to_f32(h) : sdk::bf16_to_f32(h);
    if (!(back == s[i]) && !(std::isnan(back) && std::isnan(s[i])))
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                       sdk::format("module '%s': scale %d (%.9g) is not representable in %s", module.c_str(),
                                   static_cast<int>(i), s[i], t == XQ_DTYPE_F16 ? "F16" : "BF16"));
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

template <class T>
std::vector<unsigned char> bytes_of(const T* p, size_t n) {
  std::vector<unsigned char> out(n * sizeof(T));
  if (n) std::memcpy(out.data(), p, out.size());
  return out;
}

void validate(const xq_quant_tensor& q, const std::string& m) {
  auto fail = [&](const std::string& what) {
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': " + what);
  };
  if (sdk::is_float_code(q.bits)) return validate_float_quantized(q, m);
  if (q.bits < 2 || q.bits > 8) fail("bits must be 2..8 (or FP8 E4M3), got " + std::to_string(q.bits));
  if (q.rows <= 0 || q.cols <= 0) fail("rows and cols must be positive");
  if (!q.codes || !q.scales) fail("codes and scales are required");
  if (q.strategy == XQ_STRATEGY_GROUP) {
    if (q.group_size <= 0) fail("group strategy needs a positive group_size");
    if (q.n_groups != (q.cols + q.group_size - 1) / q.group_size)
      fail("n_groups " + std::to_string(q.n_groups) + " != ceil(cols / group_size)");
  } else if (q.strategy == XQ_STRATEGY_CHANNEL || q.strategy == XQ_STRATEGY_TENSOR) {
    if (q.n_groups != 1) fail("channel/tensor strategy needs n_groups == 1");
  } else {
    fail("strategy " + std::to_string(q.strategy) + " is not supported by compressed-tensors output");
  }
  if (!q.symmetric && !q.zero_points) fail("asymmetric tensor without zero_points");
  // FP8 activations beside int weights: compressed-tensors' W4AFP8 preset
  // (int4 symmetric weights, dynamic per-token FP8 E4M3 activations).
  if (q.act_bits == XQ_BITS_F8_E4M3 && q.act_scheme != XQ_ACT_NONE) {
    if (q.bits != 4 || !q.symmetric) fail("FP8 activations need int4 symmetric weights (W4AFP8)");
    if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN) fail("FP8 activations with int4 weights must be dynamic per token (W4AFP8)");
  } else if (q.act_scheme != XQ_ACT_NONE && q.act_bits != 8) {
    fail("only 8-bit activation quantization is supported");
  }
  if (q.act_scheme != XQ_ACT_NONE && q.act_scheme != XQ_ACT_STATIC_TENSOR && q.act_scheme != XQ_ACT_DYNAMIC_TOKEN)
    fail("unknown activation scheme");
  const int lo = -(1 << (q.bits - 1)), hi = (1 << (q.bits - 1)) - 1;
  for (int64_t i = 0; i < q.rows * q.cols; ++i)
    if (q.codes[i] < lo || q.codes[i] > hi)
      fail("code " + std::to_string(q.codes[i]) + " at element " + std::to_string(i) + " is outside [" +
           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  int64_t ns = q.strategy == XQ_STRATEGY_TENSOR ? 1 : q.rows * q.n_groups;
  if (!q.symmetric)
    for (int64_t i = 0; i < ns; ++i)
      if (q.zero_points[i] < lo || q.zero_points[i] > hi)
        fail("zero point " + std::to_string(q.zero_points[i]) + " is outside the " + std::to_string(q.bits) +
             "-bit range");
  if (q.g_idx)
    for (int64_t c = 0; c < q.cols; ++c)
      if (q.g_idx[c] < 0 || q.g_idx[c] >= q.n_groups) fail("g_idx[" + std::to_string(c) + "] is not a valid group");
  if (q.g_idx && q.strategy != XQ_STRATEGY_GROUP) fail("g_idx needs group strategy");
}

}  // namespace

Writer::Writer(const sdk::Host& host, const xq_writer_options& o) : sdk::WriterBase(host) {
  if (!o.out_dir || !*o.out_dir) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "compressed-tensors writer: no out_dir");
  out_dir_ = o.out_dir;
  if (o.source_path) source_ = o.source_path;
  sdk::KvReader params(host, o.params);
  if (auto v = params.get("allow_ragged_groups"); v && v->type == XQ_VALUE_BOOL) allow_ragged_ = v->i != 0;
  if (auto v = params.get("max_shard_bytes"); v && v->type == XQ_VALUE_INT) {
    if (v->i < 0) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "max_shard_bytes must be >= 0");
    max_shard_bytes_ = v->i;
  }
  model_ = read_source_model(host, o.model_config);
  // A GGUF source carries its vocabulary, not a tokenizer.json: write one so
  // the checkpoint runs without --tokenizer.
  if (model_.tokenizer_json.empty()) model_.synthesized_tokenizer_files = tokenizer_files_for_gguf_source(host, source_);
  for (const char* const* p = o.ignored_modules; p && *p; ++p)
    if (ignored_.insert(*p).second) ignored_order_.push_back(*p);

  stage_ = std::make_unique<HfFolderStage>(out_dir_);
  shards_.push_back(std::make_unique<sdk::safetensors::Writer>(out_dir_ / "model.safetensors"));
  shards_.back()->add_metadata("format", "pt");
}

Writer::~Writer() { abort(); }

void Writer::make_room(const std::vector<std::string>& names, uint64_t total) {
  for (const auto& s : shards_)
    for (const auto& n : names)
      if (s->has(n)) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + n + "' was already written");
  // A new shard starts when this batch would overflow a non-empty one; a
  // module's tensors stay together in one shard.
  if (max_shard_bytes_ > 0 && shards_.back()->tensor_count() > 0 &&
      shards_.back()->data_bytes() + total > static_cast<uint64_t>(max_shard_bytes_)) {
    // A placeholder name; finish() renames shards once their count is known.
    shards_.push_back(std::make_unique<sdk::safetensors::Writer>(
        out_dir_ / ("model-shard" + std::to_string(shards_.size()) + ".safetensors")));
    shards_.back()->add_metadata("format", "pt");
  }
}

void Writer::write_tensors(const std::vector<Pending>& tensors) {
  uint64_t total = 0;
  std::vector<std::string> names;
  for (const auto& t : tensors) {
    total += t.bytes.size();
    names.push_back(t.name);
  }
  make_room(names, total);
  for (const auto& t : tensors) shards_.back()->add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
}

void Writer::add_dense(const char* name_c, const xq_tensor_view& t) {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "writer already finished");
  std::string name = name_c;
  const char* dt = st_dtype(t.dtype, "tensor '" + name + "'");
  if (t.ndim > XQ_MAX_DIMS) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + name + "': too many dimensions");
  std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
  if (t.nbytes && !t.data) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + name + "': no data");
  // The view's bytes go straight to the shard (no intermediate copy).
  make_room({name}, t.nbytes);
  shards_.back()->add(name, dt, shape, t.data, t.nbytes);

  static constexpr const char kSuffix[] = ".weight";
  if (t.ndim == 2 && name.size() > 7 && name.compare(name.size() - 7, 7, kSuffix) == 0 &&
      name.find("embed") == std::string::npos)
    dense_linears_.insert(name.substr(0, name.size() - 7));
  if (name == "model.embed_tokens.weight") embed_dtype_ = sdk::torch_dtype_name(t.dtype);
}

void Writer::add_quantized(const char* module_c, const xq_quant_tensor& q) {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "writer already finished");
  const std::string m = module_c;
  validate(q, m);
  // compressed-tensors (>= 0.20 refuses in dequantize) and vLLM's kernels
  // need whole groups; xquant's own reader handles ragged ones.
  if (q.strategy == XQ_STRATEGY_GROUP && q.cols % q.group_size != 0 && !allow_ragged_)
    throw sdk::Error(XQ_ERR_UNSUPPORTED,
                     sdk::format("module '%s': %lld input columns are not a multiple of group_size %lld; "
                                 "compressed-tensors and vLLM require whole groups (use a group size that divides "
                                 "%lld, per-channel, or ignore the module; the output param "
                                 "allow_ragged_groups: true writes it anyway, for xquant's own reader)",
                                 m.c_str(), static_cast<long long>(q.cols), static_cast<long long>(q.group_size),
                                 static_cast<long long>(q.cols)));
  if (ignored_.count(m))
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "' is in the ignore list but was given quantized");
  if (quantized_.count(m)) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "' was already written");
  const int64_t O = q.rows, I = q.cols;
  const int64_t ns = q.strategy == XQ_STRATEGY_TENSOR ? 1 : O * q.n_groups;
  const char* sdt = st_dtype(q.scale_dtype, "module '" + m + "' scales");
  std::vector<int64_t> scale_shape =
      q.strategy == XQ_STRATEGY_TENSOR ? std::vector<int64_t>{1} : std::vector<int64_t>{O, q.n_groups};

  std::vector<Pending> out;
  const std::string format = format_of(q);
  if (format == std::string("float-quantized")) {
    // FP8 E4M3 bytes as they are (F8_E4M3 is torch.float8_e4m3fn's safetensors dtype).
    out.push_back({m + ".weight", "F8_E4M3", {O, I}, bytes_of(q.codes, static_cast<size_t>(O * I))});
    out.push_back({m + ".weight_scale", sdt, scale_shape, encode_scales(q.scales, ns, q.scale_dtype, m)});
  } else if (format == std::string("int-quantized")) {
    // Unpacked int8 codes (int-quantized/naive layout).
    out.push_back({m + ".weight", "I8", {O, I}, bytes_of(q.codes, static_cast<size_t>(O * I))});
    out.push_back({m + ".weight_scale", sdt, scale_shape, encode_scales(q.scales, ns, q.scale_dtype, m)});
    if (!q.symmetric) out.push_back({m + ".weight_zero_point", "I8", scale_shape, bytes_of(q.zero_points, ns)});
    if (q.act_scheme == XQ_ACT_STATIC_TENSOR)
      out.push_back({m + ".input_scale", "F32", {1}, bytes_of(&q.input_scale, 1)});
  } else {
    const int64_t words = packed_words(I, q.bits, false);
    std::vector<uint32_t> packed(static_cast<size_t>(O * words), 0u);
    // Rows pack independently: spread them over the host's threads.
    host.parallel_for(static_cast<uint64_t>(O), 16, [&](uint64_t b, uint64_t e) {
      for (auto r = static_cast<int64_t>(b); r < static_cast<int64_t>(e); ++r)
        pack_run(q.codes + r * I, 1, I, q.bits, false, packed.data() + r * words, 1);
    });
    out.push_back({m + ".weight_packed", "I32", {O, words}, bytes_of(packed.data(), packed.size())});
    out.push_back({m + ".weight_scale", sdt, scale_shape, encode_scales(q.scales, ns, q.scale_dtype, m)});
    const int64_t shape[2] = {O, I};
    out.push_back({m + ".weight_shape", "I64", {2}, bytes_of(shape, 2)});
    if (!q.symmetric) {
      if (q.strategy == XQ_STRATEGY_TENSOR) {
        // The library packs zero points only for group/channel.
        out.push_back({m + ".weight_zero_point", "I8", {1}, bytes_of(q.zero_points, 1)});
      } else {
        const int64_t G = q.n_groups, zw = packed_words(O, q.bits, false);
        std::vector<uint32_t> zp(static_cast<size_t>(zw * G), 0u);
        for (int64_t g = 0; g < G; ++g) pack_run(q.zero_points + g, G, O, q.bits, false, zp.data() + g, G);
        out.push_back({m + ".weight_zero_point", "I32", {zw, G}, bytes_of(zp.data(), zp.size())});
      }
    }
    if (q.g_idx) out.push_back({m + ".weight_g_idx", "I32", {I}, bytes_of(q.g_idx, static_cast<size_t>(I))});
  }
  write_tensors(out);
  quantized_.insert(m);
  if (first_scale_dtype_.empty()) first_scale_dtype_ = sdk::torch_dtype_name(q.scale_dtype);

  nlohmann::json wa = weight_args_json(q), aa = activation_args_json(q);
  const bool expert = is_routed_expert(m);
  auto it = std::find_if(groups_.begin(), groups_.end(), [&](const Group& g) {
    return g.weights == wa && g.activations == aa && g.format == format && g.experts == expert;
  });
  if (it == groups_.end()) {
    groups_.push_back(Group{wa, aa, format, expert, {}});
    it = groups_.end() - 1;
  }
  it->modules.push_back(m);
}

nlohmann::json Writer::quantization_config() const {
  // Linears written dense but not in the ignore list still have to be
  // ignored, or a "Linear" target would claim them.
  std::vector<std::string> ignore = ignored_order_;
  for (const auto& d : dense_linears_)
    if (!quantized_.count(d) && !ignored_.count(d)) ignore.push_back(d);

  nlohmann::json groups = nlohmann::json::object();
  std::set<std::string> formats;
  for (size_t i = 0; i < groups_.size(); ++i) {
    const Group& g = groups_[i];
    nlohmann::json s;
    if (groups_.size() == 1) {
      s["targets"] = {"Linear"};  // the llm-compressor shape of a uniform scheme
    } else {
      s["targets"] = group_targets(g.modules, g.experts);
    }
    s["weights"] = g.weights;
    s["input_activations"] = g.activations;
    s["output_activations"] = nullptr;
    s["format"] = g.format;
    groups["group_" + std::to_string(i)] = s;
    formats.insert(g.format);
  }
  nlohmann::json qc;
  qc["config_groups"] = groups;
  qc["format"] = formats.size() == 1 ? *formats.begin() : std::string("mixed-precision");
  qc["global_compression_ratio"] = nullptr;
  qc["ignore"] = ignore;
  qc["kv_cache_scheme"] = nullptr;
  qc["quant_method"] = "compressed-tensors";
  qc["quantization_status"] = "compressed";
  qc["sparsity_config"] = nlohmann::json::object();
  qc["transform_config"] = nlohmann::json::object();
  qc["version"] = kWriterVersion;
  return qc;
}

void Writer::finish() {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "writer already finished");
  // Shard names are final only now that their count is known.
  const size_t n = shards_.size();
  std::vector<std::string> shard_names;
  for (size_t i = 0; i < n; ++i) {
    std::string name = n == 1 ? std::string("model.safetensors")
                              : sdk::format("model-%05zu-of-%05zu.safetensors", i + 1, n);
    shards_[i]->set_final_path(out_dir_ / name);
    shards_[i]->stage();
    shard_names.push_back(name);
  }
  if (n > 1) {
    nlohmann::json index;
    uint64_t total = 0;
    nlohmann::json wm = nlohmann::json::object();
    for (size_t i = 0; i < n; ++i) {
      total += shards_[i]->data_bytes();
      for (const auto& t : shards_[i]->names()) wm[t] = shard_names[i];
    }
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = wm;
    stage_->stage_text("model.safetensors.index.json", index.dump(2) + "\n");
  }

  nlohmann::json config;
  std::string dtype = embed_dtype_.empty() ? first_scale_dtype_ : embed_dtype_;
  if (!model_.config_json.empty()) config = nlohmann::json::parse(model_.config_json);
  else config = synthesize_hf_config(model_, dtype.empty() ? "float16" : dtype);
  config.erase("compression_config");
  if (!quantized_.empty()) config["quantization_config"] = quantization_config();
  else config.erase("quantization_config");
  stage_->stage_text("config.json", config.dump(2) + "\n");

  stage_->stage_companions(source_, model_);
  // Everything is durable under temporary names; now make it visible.
  stage_->publish(shard_names, [&] {
    for (auto& s : shards_) s->commit();
  });
  done_ = true;
  host.info(sdk::format("wrote %zu quantized modules to %s (%zu shard%s)", quantized_.size(), out_dir_.c_str(), n,
                        n == 1 ? "" : "s"));
}

void Writer::abort() noexcept {
  if (done_) return;
  for (auto& s : shards_) s->abort();
  shards_.clear();
  if (stage_) stage_->abort();
  done_ = true;
}

}  // namespace xquant::ct
