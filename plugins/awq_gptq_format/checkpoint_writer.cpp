// checkpoint_writer.cpp: see checkpoint_writer.hpp.
#include "checkpoint_writer.hpp"

#include <hf_folder_stage.hpp>  // ../compressed_tensors/src

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace xquant::hfq {
namespace {

[[noreturn]] void refuse(Kind k, const std::string& module, const std::string& why) {
  throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module + "' cannot be stored in " + (k == Kind::kAwq ? std::string("AWQ") : std::string("GPTQ")) + ": " + why);
}

// Scales in their stored dtype; they must already be representable there
// (xq_tensor.h), so a write/read round trip is bit-exact. Stored [groups, out].
std::vector<unsigned char> encode_scales(const xq_quant_tensor& q, const std::string& module) {
  const size_t width = q.scale_dtype == XQ_DTYPE_F32 ? 4 : 2;
  std::vector<unsigned char> out(static_cast<size_t>(q.rows * q.n_groups) * width);
  for (int64_t g = 0; g < q.n_groups; ++g)
    for (int64_t r = 0; r < q.rows; ++r) {
      const float s = q.scales[r * q.n_groups + g];
      unsigned char* dst = out.data() + static_cast<size_t>(g * q.rows + r) * width;
      if (width == 4) {
        std::memcpy(dst, &s, 4);
        continue;
      }
      uint16_t h = q.scale_dtype == XQ_DTYPE_F16 ? sdk::f32_to_f16(s) : sdk::f32_to_bf16(s);
      float back = q.scale_dtype == XQ_DTYPE_F16 ? sdk::f16_to_f32(h) : sdk::bf16_to_f32(h);
      if (!(back == s))
        throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, sdk::format("module '%s': scale (%.9g) is not representable in its "
                                                              "scale_dtype", module.c_str(), s));
      std::memcpy(dst, &h, 2);
    }
  return out;
}

template <class T>
void add_tensor(sdk::safetensors::Writer& w, const std::string& name, const char* dtype, std::vector<int64_t> shape,
                const std::vector<T>& data) {
  w.add(name, dtype, shape, data.data(), data.size() * sizeof(T));
}

}  // namespace

Writer::Writer(const sdk::Host& host, const xq_writer_options& o, Kind kind) : sdk::WriterBase(host), kind_(kind) {
  if (!o.out_dir || !*o.out_dir)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, std::string(kind_name(kind)) + " writer: no out_dir");
  out_dir_ = o.out_dir;
  if (o.source_path) source_ = o.source_path;
  sdk::KvReader params(host, o.params);
  if (auto v = params.get("checkpoint_format"); v && v->type == XQ_VALUE_STRING) {
    const std::string f = v->s;
    if (f != "gptq" && f != "gptq_v2")
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "gptq writer: checkpoint_format must be gptq or gptq_v2, got '" + f + "'");
    v2_ = f == "gptq_v2";
  }
  model_ = ct::read_source_model(host, o.model_config);
  // A GGUF source carries its vocabulary, not a tokenizer.json: write one so
  // the checkpoint runs without --tokenizer (compressed_tensors/src/hf_synth.cpp).
  if (model_.tokenizer_json.empty()) model_.synthesized_tokenizer_files = ct::tokenizer_files_for_gguf_source(host, source_);
  for (const char* const* p = o.ignored_modules; p && *p; ++p) ignored_.insert(*p);

  stage_ = std::make_unique<ct::HfFolderStage>(out_dir_);
  shard_ = std::make_unique<sdk::safetensors::Writer>(out_dir_ / "model.safetensors");
  shard_->add_metadata("format", "pt");
}

Writer::~Writer() { abort(); }

void Writer::add_dense(const char* name_c, const xq_tensor_view& t) {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "writer already finished");
  const std::string name = name_c;
  const char* dt = sdk::safetensors::dtype_name(t.dtype);
  if (!dt) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + name + "': dtype has no safetensors equivalent");
  if (t.ndim > XQ_MAX_DIMS) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + name + "': too many dimensions");
  if (shard_->has(name)) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + name + "' was already written");
  shard_->add(name, dt, std::vector<int64_t>(t.shape, t.shape + t.ndim), t.data, t.nbytes);
  if (t.ndim == 2 && name.ends_with(".weight") && name.find("embed") == std::string::npos)
    dense_linears_.insert(name.substr(0, name.size() - 7));
  if (name == "model.embed_tokens.weight") embed_dtype_ = sdk::torch_dtype_name(t.dtype);
}

// What the layout can hold exactly; anything else is refused with the way out.
void Writer::check_layout(const std::string& m, const xq_quant_tensor& q) {
  if (sdk::is_float_code(q.bits))
    refuse(kind_, m, sdk::code_format_name(q.bits) + " codes; AWQ and GPTQ store integer codes (write "
                     "compressed-tensors or xq)");
  if (q.act_scheme != XQ_ACT_NONE)
    refuse(kind_, m, "activations are quantized (W8A8); AWQ and GPTQ checkpoints are weight-only "
                     "(write compressed-tensors)");
  if (q.bits < 2 || q.bits > 8 || !q.codes || !q.scales || q.rows <= 0 || q.cols <= 0)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': not a valid canonical quantized tensor");
  if (!q.symmetric && !q.zero_points)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': asymmetric tensor without zero_points");
  if (q.scale_dtype != XQ_DTYPE_F16 && q.scale_dtype != XQ_DTYPE_BF16 && q.scale_dtype != XQ_DTYPE_F32)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': scale_dtype must be F16, BF16 or F32");
  const int64_t per = pack_factor(q.bits);
  if (kind_ == Kind::kAwq) {
    if (q.bits != 4) refuse(kind_, m, std::to_string(q.bits) + "-bit codes; AWQ's GEMM layout is 4-bit only");
    if (q.strategy != XQ_STRATEGY_GROUP)
      refuse(kind_, m, "AWQ stores group-wise scales only (this tensor is per-channel or per-tensor; write gptq, "
                       "whose group_size -1 is per-channel)");
    if (q.g_idx) refuse(kind_, m, "act-order (g_idx) cannot be stored in AWQ (write gptq with desc_act)");
  } else {
    if (q.bits != 2 && q.bits != 4 && q.bits != 8)
      refuse(kind_, m, std::to_string(q.bits) + "-bit codes; GPTQ is written for 2, 4 and 8 bits");
    if (q.strategy != XQ_STRATEGY_GROUP && q.strategy != XQ_STRATEGY_CHANNEL)
      refuse(kind_, m, "per-tensor scales cannot be stored in GPTQ (group or channel only)");
    if (q.cols % per != 0)
      refuse(kind_, m, std::to_string(q.cols) + " input columns are not a multiple of " + std::to_string(per) +
                           " (qweight packs them)");
  }
  if (q.rows % per != 0)
    refuse(kind_, m, std::to_string(q.rows) + " output rows are not a multiple of " + std::to_string(per) +
                         " (qzeros packs them)");
  if (q.strategy == XQ_STRATEGY_GROUP && (q.group_size <= 0 || q.cols % q.group_size != 0))
    refuse(kind_, m, std::to_string(q.cols) + " input columns are not a multiple of group_size " +
                         std::to_string(q.group_size) + " (AutoAWQ, GPTQ kernels and vLLM need whole groups)");
  const int lo = -(1 << (q.bits - 1)), hi = (1 << (q.bits - 1)) - 1;
  if (!q.symmetric)
    for (int64_t i = 0; i < q.rows * q.n_groups; ++i) {
      if (q.zero_points[i] < lo || q.zero_points[i] > hi)
        throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': zero point out of range");
      // v1 stores zu - 1, so zu = 0 has no encoding (AutoGPTQ's pack() wraps it).
      if (kind_ == Kind::kGptq && !v2_ && q.zero_points[i] == lo)
        refuse(kind_, m, "a zero point of 0 (unsigned) cannot be stored in GPTQ v1, which stores z - 1; "
                         "write with checkpoint_format: gptq_v2");
    }
  for (int64_t i = 0; i < q.rows * q.cols; ++i)
    if (q.codes[i] < lo || q.codes[i] > hi)
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': code " + std::to_string(q.codes[i]) +
                                                    " at element " + std::to_string(i) + " is out of range");
  if (q.g_idx)
    for (int64_t c = 0; c < q.cols; ++c)
      if (q.g_idx[c] < 0 || q.g_idx[c] >= q.n_groups)
        throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': g_idx[" + std::to_string(c) + "] is not a group");
}

// quantization_config is global: one bit width and group size.
void Writer::check_uniform(const std::string& m, const xq_quant_tensor& q) {
  const int64_t gs = q.strategy == XQ_STRATEGY_CHANNEL ? -1 : q.group_size;
  if (!settings_) {
    Settings s;
    s.kind = kind_;
    s.bits = q.bits;
    s.group_size = gs;
    s.v2 = v2_;
    settings_ = s;
    first_module_ = m;
  } else if (settings_->bits != q.bits || settings_->group_size != gs) {
    refuse(kind_, m, sdk::format("%u-bit group_size %lld differs from '%s' (%u-bit group_size %lld); the "
                                 "quantization_config holds one scheme (write compressed-tensors for mixed schemes)",
                                 q.bits, static_cast<long long>(gs), first_module_.c_str(), settings_->bits,
                                 static_cast<long long>(settings_->group_size)));
  }
  settings_->sym = settings_->sym && q.symmetric;
  settings_->desc_act = settings_->desc_act || q.g_idx != nullptr;
}

void Writer::add_quantized(const char* module_c, const xq_quant_tensor& q) {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "writer already finished");
  const std::string m = module_c;
  if (quantized_.count(m)) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "' was already written");
  if (ignored_.count(m))
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "' is in the ignore list but was given quantized");
  check_layout(m, q);
  check_uniform(m, q);
  const int64_t O = q.rows, I = q.cols, G = q.n_groups;
  const int mid = 1 << (q.bits - 1);
  // Transposed unsigned codes u[c][r] ([in, out], as both libraries store them).
  std::vector<uint8_t> u(static_cast<size_t>(O * I));
  for (int64_t r = 0; r < O; ++r)
    for (int64_t c = 0; c < I; ++c) u[static_cast<size_t>(c * O + r)] = static_cast<uint8_t>(q.codes[r * I + c] + mid);
  // Unsigned zero points [groups, out]; symmetric is the midpoint, less 1 in GPTQ v1.
  const int v1_offset = kind_ == Kind::kGptq && !v2_ ? 1 : 0;
  std::vector<uint8_t> zu(static_cast<size_t>(G * O));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = 0; r < O; ++r)
      zu[static_cast<size_t>(g * O + r)] =
          static_cast<uint8_t>((q.symmetric ? 0 : q.zero_points[r * G + g]) + mid - v1_offset);

  const int64_t per = pack_factor(q.bits);
  const char* sdt = sdk::safetensors::dtype_name(q.scale_dtype);
  std::vector<unsigned char> scales = encode_scales(q, m);
  if (kind_ == Kind::kAwq) {
    add_tensor(*shard_, m + ".qweight", "I32", {I, O / per}, pack_columns(u, I, O, q.bits, true));
  } else {
    add_tensor(*shard_, m + ".qweight", "I32", {I / per, O}, pack_rows(u, I, O, q.bits));
  }
  add_tensor(*shard_, m + ".qzeros", "I32", {G, O / per}, pack_columns(zu, G, O, q.bits, kind_ == Kind::kAwq));
  shard_->add(m + ".scales", sdt, {G, O}, scales.data(), scales.size());
  if (kind_ == Kind::kGptq) {
    std::vector<int32_t> g_idx(static_cast<size_t>(I));
    for (int64_t c = 0; c < I; ++c) g_idx[static_cast<size_t>(c)] = q.g_idx ? q.g_idx[c] : static_cast<int32_t>(c / q.group_size);
    add_tensor(*shard_, m + ".g_idx", "I32", {I}, g_idx);
  }
  quantized_.insert(m);
  if (scale_dtype_.empty()) scale_dtype_ = sdk::torch_dtype_name(q.scale_dtype);
}

void Writer::finish() {
  if (done_) throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "writer already finished");
  if (quantized_.empty())
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, std::string(kind_name(kind_)) +
                                                  " output: no quantized module was written (write a dense "
                                                  "checkpoint with compressed-tensors or convert --format f16)");
  shard_->stage();
  // Linears written dense, in the order transformers and vLLM skip them.
  std::set<std::string> dense(ignored_);
  for (const auto& d : dense_linears_)
    if (!quantized_.count(d)) dense.insert(d);
  std::vector<std::string> not_converted(dense.begin(), dense.end());
  nlohmann::json config;
  if (!model_.config_json.empty()) config = nlohmann::json::parse(model_.config_json);
  else config = ct::synthesize_hf_config(model_, embed_dtype_.empty() ? scale_dtype_ : embed_dtype_);
  config.erase("compression_config");
  config["quantization_config"] = settings_json(*settings_, not_converted, quantized_.count("lm_head") > 0);
  stage_->stage_text("config.json", config.dump(2) + "\n");

  stage_->stage_companions(source_, model_);
  stage_->publish({"model.safetensors"}, [&] { shard_->commit(); });
  done_ = true;
  host.info(sdk::format("wrote %zu quantized modules to %s (%s)", quantized_.size(), out_dir_.c_str(),
                        kind_ == Kind::kAwq ? "AWQ GEMM" : (v2_ ? "GPTQ v2" : "GPTQ v1")));
}

void Writer::abort() noexcept {
  if (done_) return;
  if (shard_) shard_->abort();
  shard_.reset();
  if (stage_) stage_->abort();
  done_ = true;
}

}  // namespace xquant::hfq
