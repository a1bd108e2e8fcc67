// cmd_inspect.cpp: `xquant inspect PATH [--json]`: which loader opened the
// checkpoint, whether a format plugin recognises it as quantized, the
// canonical configuration, the quantization config, and every stored
// tensor with dtype and shape.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/stored_report.hpp"
#include "core/dtype.hpp"
#include "checkpoint/checkpoint.hpp"
#include "checkpoint/linear_modules.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace xquant::cli {

namespace {

nlohmann::json value_json(const KvValue& v) {
  switch (v.type()) {
    case XQ_VALUE_BOOL: return v.as_bool();
    case XQ_VALUE_INT: return v.as_int();
    case XQ_VALUE_FLOAT: return v.as_float();
    case XQ_VALUE_STRING: return v.as_string();
    case XQ_VALUE_INT_ARRAY: return v.as_ints();
    case XQ_VALUE_FLOAT_ARRAY: return v.as_floats();
    case XQ_VALUE_STRING_ARRAY: return v.as_strings();
    default: return nullptr;
  }
}

// Keys too bulky for a listing (vocabularies, raw JSON documents).
bool bulky(const std::string& key, const KvValue& v) {
  if (key == "config_json" || key == "quantization_config" || key == "tokenizer.huggingface_json" ||
      key == "xq.recipe_yaml" || key == "xq.report_json")
    return true;
  return (v.type() == XQ_VALUE_STRING_ARRAY || v.type() == XQ_VALUE_FLOAT_ARRAY || v.type() == XQ_VALUE_INT_ARRAY) &&
         v.view().count > 16;
}

// What an AWQ or GPTQ checkpoint's quantization_config means for its
// tensors (plugins/awq_gptq_format/layout.hpp describes the layouts).
std::string awq_gptq_specifics(const std::string& format, const nlohmann::json& q, size_t n_qweight) {
  if (!q.is_object()) return "";
  auto get = [&](std::initializer_list<const char*> keys) {
    for (const char* k : keys)
      if (q.contains(k)) return q[k].dump();
    return std::string("?");
  };
  if (format == "awq")
    return fmt::format("AWQ GEMM: {}-bit, group_size {}, zero points stored (qzeros); qweight [in, out/8] with "
                       "nibble order 0,2,4,6,1,3,5,7; {} quantized Linears",
                       get({"bits", "w_bit"}), get({"group_size", "q_group_size"}), n_qweight);
  if (format == "gptq") {
    const bool v2 = q.value("checkpoint_format", std::string("gptq")) == "gptq_v2";
    return fmt::format("GPTQ {}: {}-bit, group_size {}, sym {}, desc_act {} (g_idx); qweight [in/(32/bits), out]; "
                       "qzeros hold {}; {} quantized Linears",
                       v2 ? "v2" : "v1", get({"bits"}), get({"group_size"}), get({"sym"}), get({"desc_act"}),
                       v2 ? "z" : "z - 1", n_qweight);
  }
  return "";
}

// What an xq container holds beyond its tensors (docs/formats.md): the
// per-tensor layouts are in each tensor's storage column.
std::string xq_specifics(const Checkpoint& cp) {
  if (cp.loader().name() != "xq") return "";
  const Kv& c = cp.config();
  size_t quantized = 0, cpu = 0, cuda = 0, hopper = 0;
  for (const auto& t : cp.tensors()) {
    quantized += t.has_quantized ? 1 : 0;
    cpu += t.storage_type.find("cpu.int-blocks.v1") != std::string::npos ? 1 : 0;
    cuda += t.storage_type.find(", cuda.") != std::string::npos ? 1 : 0;
    hopper += t.storage_type.find("cuda.w4a16-wgmma.v1") != std::string::npos ? 1 : 0;
  }
  const auto* files = c.find("xq.files");
  return fmt::format("xq container v{}: segments aligned to {} bytes; {} quantized tensors, {} with the cpu layout "
                     "cpu.int-blocks.v1, {} with a cuda layout{} (the rest canonical only); files: {}; recipe {}; "
                     "report {}",
                     c.get_int("xq.format_version", 0), c.get_int("xq.alignment", 0), quantized, cpu, cuda,
                     hopper ? fmt::format(" ({} also with the Hopper GEMM's cuda.w4a16-wgmma.v1)", hopper) : "",
                     files && !files->as_strings().empty() ? fmt::format("{}", fmt::join(files->as_strings(), ", ")) : "none",
                     c.find("xq.recipe_yaml") ? "present" : "absent", c.find("xq.report_json") ? "present" : "absent");
}

}  // namespace

int cmd_inspect(const RuntimeOptions& options, int argc, char** argv) {
  Args args("inspect", "Show a checkpoint: loader, quantization format and config, and its tensors.",
            {{"json", "", "print JSON"}, {"loader", "NAME", "loader plugin (default: detected)"}}, {"PATH"});
  if (!args.parse(argc, argv)) return 0;
  Runtime runtime(options);
  auto cp = Checkpoint::open(runtime, args.positionals()[0], args.get_or("loader", ""));
  const Kv& cfg = cp->config();
  nlohmann::json qcfg;
  if (const auto* q = cfg.find("quantization_config"))
    qcfg = nlohmann::json::parse(q->as_string(), nullptr, /*allow_exceptions=*/false);
  // Linear weights stored as floats (an int-quantized I8 or float-quantized
  // F8_E4M3 `.weight` is a quantized module, not a dense one).
  size_t n_linear = 0;
  for (const auto& t : cp->tensors())
    n_linear += !linear_module_of(t).empty() &&
                (t.dtype == XQ_DTYPE_F32 || t.dtype == XQ_DTYPE_F16 || t.dtype == XQ_DTYPE_BF16);
  size_t n_qweight = 0;
  for (const auto& t : cp->tensors()) n_qweight += t.name.ends_with(".qweight") ? 1 : 0;
  const std::string specifics =
      cp->quant_format() ? awq_gptq_specifics(cp->quant_format()->name(), qcfg, n_qweight) : xq_specifics(*cp);

  if (args.flag("json")) {
    nlohmann::json j;
    j["path"] = cp->path().string();
    j["loader"] = cp->loader().name();
    j["quantization_format"] = cp->quant_format() ? nlohmann::json(cp->quant_format()->name()) : nlohmann::json();
    j["quantization_config"] = qcfg;
    if (!specifics.empty()) j["format_specifics"] = specifics;
    nlohmann::json c = nlohmann::json::object();
    for (const auto& [k, v] : cfg.values)
      c[k] = bulky(k, v) ? nlohmann::json(v.to_string()) : value_json(v);
    j["config"] = c;
    if (const auto* r = cfg.find("xq.report_json")) {
      const nlohmann::json parsed = parse_stored_report(r->as_string());
      j["report"] = parsed.is_discarded() ? nlohmann::json(r->as_string()) : parsed;
    }
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : cp->tensors())
      j["tensors"].push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"storage", t.storage_type},
                              {"shape", t.shape}, {"nbytes", t.nbytes}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  uint64_t total = 0;
  for (const auto& t : cp->tensors()) total += t.nbytes;
  std::printf("path:        %s\n", cp->path().string().c_str());
  std::printf("loader:      %s\n", cp->loader().name().c_str());
  std::printf("format:      %s\n", cp->quant_format()               ? cp->quant_format()->name().c_str()
                                    : cp->loader().name() == "xq" ? "xq"
                                                                  : "dense (not quantized)");
  if (!specifics.empty()) std::printf("             %s\n", specifics.c_str());
  std::printf("tensors:     %zu (%.2f MB), %zu Linear weights stored dense\n", cp->tensors().size(), total / 1e6, n_linear);
  std::printf("\nconfig:\n");
  for (const auto& [k, v] : cfg.values)
    if (!bulky(k, v)) std::printf("  %-40s %s\n", k.c_str(), v.to_string().c_str());
    else std::printf("  %-40s %s\n", k.c_str(), v.type() == XQ_VALUE_STRING ? fmt::format("({} chars)", v.as_string().size()).c_str() : v.to_string().c_str());
  if (!qcfg.is_null()) std::printf("\nquantization_config:\n%s\n", qcfg.dump(2).c_str());
  if (const auto* r = cfg.find("xq.report_json"))
    std::printf("\nquantization report:\n%s", stored_report_text(parse_stored_report(r->as_string())).c_str());
  std::printf("\n%-60s %-8s %-8s %s\n", "tensor", "dtype", "storage", "shape");
  for (const auto& t : cp->tensors())
    std::printf("%-60s %-8s %-8s %s\n", t.name.c_str(), dtype_name(t.dtype), t.storage_type.c_str(), t.shape_text().c_str());
  return 0;
}

}  // namespace xquant::cli
