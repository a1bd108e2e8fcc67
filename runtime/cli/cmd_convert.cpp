// cmd_convert.cpp: `xquant convert --model IN --out OUT --format F`: rewrites
// a checkpoint in another format without quantizing again.
//
// Every quantized Linear of IN (read as the canonical tensor through the
// format plugin that recognises IN, or a GGUF block tensor through its
// loader) goes to F's writer as is; dense tensors are copied. F is a format
// plugin (compressed-tensors, awq, gptq, gguf, ...) or a dense dtype (f32,
// f16, bf16: dequantized weights, written by compressed-tensors). A writer
// that cannot hold a tensor exactly either refuses it with the reason (AWQ,
// GPTQ, compressed-tensors: nothing is written) or requantizes it (gguf).
// Afterwards OUT is opened and every Linear compared with IN: the report
// says per tensor whether it is exact (the same canonical codes, or the same
// dequantized weights) or requantized, with the error.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "checkpoint/checkpoint.hpp"
#include "checkpoint/linear_modules.hpp"
#include "plugins/call.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

namespace xquant::cli {
namespace {

// Stored tensors that are parts of a quantized Linear in the formats the
// plugins read (compressed-tensors, AWQ, GPTQ), by suffix after the module.
const std::set<std::string> kQuantParts = {"weight",      "weight_packed", "weight_scale", "weight_shape",
                                           "weight_zero_point", "weight_g_idx", "input_scale", "qweight",
                                           "qzeros",      "scales",        "g_idx"};

struct Target {
  std::string format;  // the writer plugin
  xq_dtype dense = XQ_DTYPE_INVALID;  // f32/f16/bf16: dequantize everything to this
};

Target target_of(const std::string& f) {
  if (f == "f32" || f == "F32") return {"compressed-tensors", XQ_DTYPE_F32};
  if (f == "f16" || f == "F16") return {"compressed-tensors", XQ_DTYPE_F16};
  if (f == "bf16" || f == "BF16") return {"compressed-tensors", XQ_DTYPE_BF16};
  return {f, XQ_DTYPE_INVALID};
}

// --param k=v, typed by the writer's parameter specs (defaults filled in).
Kv writer_params(const LoadedPlugin& plugin, const std::vector<std::pair<std::string, std::string>>& given) {
  std::map<std::string, std::string> values;
  for (const auto& [key, value] : given) values[key] = value;
  Kv out;
  std::vector<std::string> names;
  for (const auto* s = plugin.descriptor->params; s && s->name; ++s) {
    names.emplace_back(s->name);
    auto it = values.find(s->name);
    const char* text = it != values.end() ? it->second.c_str() : s->default_value;
    if (!text) continue;
    const std::string v = text;
    try {
      if (s->type == XQ_VALUE_BOOL) {
        if (v != "true" && v != "false") throw std::invalid_argument("not true/false");
        out.set(s->name, KvValue::boolean(v == "true"));
      } else if (s->type == XQ_VALUE_INT) {
        out.set(s->name, KvValue::integer(std::stoll(v)));
      } else if (s->type == XQ_VALUE_FLOAT) {
        out.set(s->name, KvValue::number(std::stod(v)));
      } else {
        out.set(s->name, KvValue::string(v));
      }
    } catch (const std::exception&) {
      throw UsageError(fmt::format("--param {}={}: not a valid value for '{}'", s->name, v, plugin.name()));
    }
    if (it != values.end()) values.erase(it);
  }
  if (!values.empty())
    throw UsageError(fmt::format("'{}' has no parameter '{}' (it takes: {})", plugin.name(), values.begin()->first,
                                 names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "))));
  return out;
}

// The canonical quantized tensor of `module` in `cp`: through its format
// plugin, or a block-quantized (GGUF) weight through the loader.
std::optional<QuantTensor> quantized_module(const Checkpoint& cp, const std::string& module) {
  if (auto q = cp.read_module(module)) return q;
  const TensorEntry* t = cp.find(module + ".weight");
  if (t && t->has_quantized && !linear_module_of(*t).empty()) return cp.read_quantized(*t);
  return std::nullopt;
}

std::vector<float> dequantized(const QuantTensor& q) {
  std::vector<float> w(static_cast<size_t>(q->rows * q->cols));
  for (int64_t r = 0; r < q->rows; ++r) q.dequantize_row(r, w.data() + r * q->cols);
  return w;
}

bool same_canonical(const xq_quant_tensor& a, const xq_quant_tensor& b) {
  if (a.bits != b.bits || a.symmetric != b.symmetric || a.strategy != b.strategy || a.rows != b.rows ||
      a.cols != b.cols || a.group_size != b.group_size || a.n_groups != b.n_groups || (a.g_idx == nullptr) != (b.g_idx == nullptr))
    return false;
  const size_t n = static_cast<size_t>(a.rows * a.cols);
  const size_t ns = static_cast<size_t>(a.strategy == XQ_STRATEGY_TENSOR ? 1 : a.rows * a.n_groups);
  if (std::memcmp(a.codes, b.codes, n) != 0 || std::memcmp(a.scales, b.scales, ns * 4) != 0) return false;
  if (a.zero_points && std::memcmp(a.zero_points, b.zero_points, ns) != 0) return false;
  return !a.g_idx || std::memcmp(a.g_idx, b.g_idx, static_cast<size_t>(a.cols) * 4) == 0;
}

struct Outcome {
  std::string module, source, result;
  double max_abs = 0, rel_rms = 0;
  bool exact = false;
};

std::string scheme_text(const xq_quant_tensor& q) {
  std::string g = q.strategy == XQ_STRATEGY_GROUP    ? fmt::format("g{}", q.group_size)
                  : q.strategy == XQ_STRATEGY_CHANNEL ? std::string("channel")
                                                     : std::string("tensor");
  return fmt::format("int{} {} {}{}", q.bits, q.symmetric ? "sym" : "asym", g, q.g_idx ? " act-order" : "");
}

// Compares the written Linear with the source one.
Outcome verify(const Checkpoint& in, const Checkpoint& out, const std::string& module) {
  Outcome o;
  o.module = module;
  std::optional<QuantTensor> src = quantized_module(in, module);
  o.source = scheme_text(src->get());
  std::vector<float> want = dequantized(*src), got;
  std::string dense;  // the dtype when the output stores the module dense
  if (auto q = quantized_module(out, module)) {
    if (same_canonical(src->get(), q->get())) {
      o.exact = true;
      o.result = "exact (same codes, scales, zero points, g_idx)";
      return o;
    }
    got = dequantized(*q);
  } else if (const TensorEntry* t = out.find(module + ".weight")) {
    got = out.read_f32(*t);
    dense = dtype_name(t->dtype);
  } else {
    o.result = "NOT VERIFIED: the output has no tensor for this module";
    return o;
  }
  if (got.size() != want.size()) {
    o.result = fmt::format("MISMATCH: {} elements written, {} expected", got.size(), want.size());
    return o;
  }
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    o.max_abs = std::max(o.max_abs, std::fabs(d));
    err2 += d * d;
    ref2 += static_cast<double>(want[i]) * want[i];
  }
  o.rel_rms = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  o.exact = o.max_abs == 0;
  o.result = o.exact ? "exact (same dequantized weights)" : dense.empty() ? "requantized" : "dense " + dense;
  return o;
}

void write_dense_view(const LoadedPlugin& f, void* writer, const std::string& name, xq_dtype dtype,
                      const std::vector<int64_t>& shape, const void* data, uint64_t nbytes) {
  xq_tensor_view v{};
  v.struct_size = sizeof(v);
  v.dtype = dtype;
  v.ndim = static_cast<uint32_t>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) v.shape[d] = shape[d];
  v.data = const_cast<void*>(data);
  v.nbytes = nbytes;
  check_plugin_call(f.format().writer_add_dense(writer, name.c_str(), &v), fmt::format("{}: writing '{}'", f.name(), name));
}

// Floats in `dtype` (F32/F16/BF16) as bytes.
std::vector<unsigned char> encode_floats(const std::vector<float>& w, xq_dtype dtype) {
  std::vector<unsigned char> bytes(w.size() * dtype_size(dtype));
  convert_from_f32(w.data(), dtype, bytes.data(), w.size());
  return bytes;
}

// Streams IN's tensors into the writer; returns the quantized Linears written.
std::vector<std::string> copy_tensors(const Checkpoint& cp, const LoadedPlugin& f, void* writer, const Target& target) {
  std::vector<std::string> linears;
  std::set<std::string> done;  // modules written from their quantized parts
  for (const TensorEntry& t : cp.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // GGUF-only; HF derives it from rope_scaling
    const auto dot = t.name.rfind('.');
    const std::string module = dot == std::string::npos ? "" : t.name.substr(0, dot);
    const bool part = dot != std::string::npos && kQuantParts.count(t.name.substr(dot + 1));
    if (part && done.count(module)) continue;
    if (part) {
      if (auto q = quantized_module(cp, module)) {
        if (target.dense != XQ_DTYPE_INVALID) {
          auto bytes = encode_floats(dequantized(*q), target.dense);
          write_dense_view(f, writer, module + ".weight", target.dense, {q->get().rows, q->get().cols}, bytes.data(), bytes.size());
        } else {
          check_plugin_call(f.format().writer_add_quantized(writer, module.c_str(), &q->get()),
                            fmt::format("{}: writing '{}'", f.name(), module));
        }
        done.insert(module);
        linears.push_back(module);
        continue;
      }
    }
    const bool is_float = t.dtype == XQ_DTYPE_F32 || t.dtype == XQ_DTYPE_F16 || t.dtype == XQ_DTYPE_BF16;
    if (t.dtype == XQ_DTYPE_BLOCKS || (target.dense != XQ_DTYPE_INVALID && is_float && t.dtype != target.dense)) {
      const xq_dtype want = target.dense != XQ_DTYPE_INVALID ? target.dense : XQ_DTYPE_F32;
      auto bytes = encode_floats(cp.read_f32(t), want);
      write_dense_view(f, writer, t.name, want, t.shape, bytes.data(), bytes.size());
    } else {
      xq_tensor_view v = cp.raw(t);
      check_plugin_call(f.format().writer_add_dense(writer, t.name.c_str(), &v),
                        fmt::format("{}: writing '{}'", f.name(), t.name));
    }
  }
  return linears;
}

}  // namespace

int cmd_convert(const RuntimeOptions& options, int argc, char** argv) {
  Args args("convert",
            "Rewrite a checkpoint in another format without quantizing again; report per Linear whether the "
            "result is exact.",
            {{"model", "PATH", "input checkpoint (file or directory)", true},
             {"out", "PATH", "output folder (gguf: output file)", true},
             {"format", "F", "compressed-tensors, awq, gptq, gguf (or another format plugin), or f32, f16, bf16 "
                             "(dense, dequantized)", true},
             {"param", "KEY=VALUE", "a parameter of the output format, e.g. checkpoint_format=gptq_v2 (gptq) or "
                                    "type=Q4_0 (gguf), layouts=cpu,cuda,cuda-wgmma (xq); comma-separated or repeated for several",
              false, 0, true},
             {"json", "", "print the report as JSON"}});
  if (!args.parse(argc, argv)) return 0;
  Runtime runtime(options);
  const Target target = target_of(*args.get("format"));
  LoadedPlugin& f = runtime.plugins().require(XQ_PLUGIN_FORMAT, target.format);
  const auto given = args.get("param") ? split_params(*args.get("param"))
                                       : std::vector<std::pair<std::string, std::string>>{};
  const Kv params = writer_params(f, given);
  auto cp = Checkpoint::open(runtime, *args.get("model"));

  // The writer: Linears the source stores dense stay dense (and are listed
  // as such in the output's quantization_config).
  std::vector<std::string> dense = linear_modules(*cp);
  // A tied lm_head has no tensor of its own but is a Linear to vLLM and
  // transformers: list it as dense, as `xquant quantize` does.
  if (cp->config().get_bool("tie_word_embeddings", false) && !cp->find("lm_head.weight") &&
      !quantized_module(*cp, "lm_head"))
    dense.push_back("lm_head");
  std::vector<const char*> ignored;
  for (const auto& m : dense)
    if (!quantized_module(*cp, m)) ignored.push_back(m.c_str());
  ignored.push_back(nullptr);
  const std::string out_path = *args.get("out"), source = cp->path().string();
  xq_writer_options wo{};
  wo.struct_size = sizeof(wo);
  wo.out_dir = out_path.c_str();
  wo.source_path = source.c_str();
  wo.model_config = &cp->config();
  wo.params = &params;
  wo.ignored_modules = ignored.data();
  void* writer = nullptr;
  check_plugin_call(f.format().writer_open(f.state, &wo, &writer),
                    fmt::format("{}: opening '{}' for writing", f.name(), out_path));
  std::vector<std::string> linears;
  try {
    linears = copy_tensors(*cp, f, writer, target);
  } catch (...) {
    f.format().writer_abort(writer);
    throw;
  }
  check_plugin_call(f.format().writer_finish(writer), fmt::format("{}: finishing '{}'", f.name(), out_path));

  auto out = Checkpoint::open(runtime, out_path);
  std::vector<Outcome> report;
  size_t n_exact = 0, n_broken = 0;
  for (const auto& m : linears) {
    report.push_back(verify(*cp, *out, m));
    n_exact += report.back().exact ? 1 : 0;
    n_broken += report.back().result.rfind("MISMATCH", 0) == 0 ? 1 : 0;
  }
  if (args.flag("json")) {
    nlohmann::json j{{"model", source}, {"out", out_path}, {"format", *args.get("format")},
                     {"output_format", out->quant_format() ? out->quant_format()->name() : std::string("dense")},
                     {"linears", linears.size()}, {"exact", n_exact}};
    j["tensors"] = nlohmann::json::array();
    for (const auto& o : report)
      j["tensors"].push_back({{"module", o.module}, {"source", o.source}, {"result", o.result}, {"exact", o.exact},
                              {"max_abs_error", o.max_abs}, {"rel_rms_error", o.rel_rms}});
    std::printf("%s\n", j.dump(2).c_str());
    return n_broken ? 1 : 0;
  }
  std::printf("%-36s %-24s %s\n", "module", "source scheme", "result");
  for (const auto& o : report)
    std::printf("%-36s %-24s %s%s\n", o.module.c_str(), o.source.c_str(), o.result.c_str(),
                o.exact || o.result.rfind("NOT", 0) == 0 || o.result.rfind("MISMATCH", 0) == 0
                    ? ""
                    : fmt::format(": max |dw| {:.3g}, rel. RMS {:.3g}", o.max_abs, o.rel_rms).c_str());
  std::printf("\n%s: %zu quantized Linears, %zu exact, %zu not exact\n", out_path.c_str(), linears.size(), n_exact,
              linears.size() - n_exact);
  if (n_broken) std::fprintf(stderr, "xquant: error: %zu Linears of '%s' do not match the source's shape\n", n_broken, out_path.c_str());
  return n_broken ? 1 : 0;
}

}  // namespace xquant::cli
