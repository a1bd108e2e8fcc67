// scheme.cpp: see scheme.hpp.
#include "scheme.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/target_regex.hpp>

#include <cctype>
#include <cstdlib>

namespace xquant::ct {
namespace {

[[noreturn]] void bad(const std::string& what) {
  throw sdk::Error(XQ_ERR_MALFORMED, "quantization_config: " + what);
}

Args parse_args(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) bad(where + " is not an object");
  Args a;
  if (auto it = j.find("num_bits"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 32)
      bad(where + ".num_bits must be an integer in 1..32");
    a.num_bits = it->get<uint32_t>();
  }
  if (auto it = j.find("type"); it != j.end() && it->is_string()) a.type = it->get<std::string>();
  if (auto it = j.find("symmetric"); it != j.end() && it->is_boolean()) a.symmetric = it->get<bool>();
  if (auto it = j.find("group_size"); it != j.end() && it->is_number_integer()) a.group_size = it->get<int64_t>();
  if (auto it = j.find("strategy"); it != j.end() && it->is_string()) a.strategy = it->get<std::string>();
  if (a.strategy.empty()) {  // the library infers it from group_size
    a.strategy = a.group_size > 0 ? "group" : a.group_size == -1 ? "channel" : "tensor";
  }
  if (auto it = j.find("dynamic"); it != j.end()) {
    if (it->is_boolean()) a.dynamic = it->get<bool>();
    else if (it->is_string()) a.dynamic = true;  // "local"
  }
  if (auto it = j.find("actorder"); it != j.end() && it->is_string()) {
    a.actorder = it->get<std::string>();
    if (a.actorder == "dynamic") a.actorder = "group";
    if (a.actorder == "static") a.actorder = "weight";
  }
  return a;
}

Matcher compile(const std::string& target, const std::string& where) {
  Matcher m;
  m.text = target;
  if (target.rfind("re:", 0) == 0) {
    m.kind = Matcher::kRegex;
    std::string why;
    if (!sdk::compile_target_regex(target.substr(3), &m.re, &why))
      bad(where + ": invalid regex '" + target + "': " + why);
  } else if (target.find('.') == std::string::npos && !target.empty() &&
             std::isupper(static_cast<unsigned char>(target[0]))) {
    // A class name ("Linear"); module names are lower-case dotted paths.
    m.kind = Matcher::kClass;
  } else {
    m.kind = Matcher::kExact;
  }
  return m;
}

}  // namespace

bool Matcher::matches(const std::string& module) const {
  switch (kind) {
    case kExact: return module == text;
    // Python re.match: anchored at the start, not at the end.
    case kRegex: return sdk::target_regex_matches(re, module);
    // Only Linear modules are ever quantized here, so "Linear" (and
    // vLLM's LinearBase alias) matches every module asked about.
    case kClass: return text == "Linear" || text == "LinearBase";
  }
  return false;
}

bool is_legacy_version(const std::string& version) {
  if (version.empty()) return true;
  char* end = nullptr;
  long major = std::strtol(version.c_str(), &end, 10);
  if (end == version.c_str() || *end != '.') return true;
  long minor = std::strtol(end + 1, nullptr, 10);
  return major == 0 && minor < 18;
}

QuantConfig parse_quant_config(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad("not an object");
  QuantConfig qc;
  if (auto it = j.find("format"); it != j.end() && it->is_string()) qc.format = it->get<std::string>();
  if (auto it = j.find("version"); it != j.end() && it->is_string()) qc.version = it->get<std::string>();
  qc.legacy_packing = is_legacy_version(qc.version);
  if (auto it = j.find("transform_config"); it != j.end() && it->is_object() && !it->empty())
    qc.has_transforms = true;
  auto groups = j.find("config_groups");
  if (groups == j.end() || !groups->is_object()) bad("no config_groups object");
  for (auto g = groups->begin(); g != groups->end(); ++g) {
    const std::string where = "config_groups." + g.key();
    if (!g.value().is_object()) bad(where + " is not a scheme object (preset names are not supported)");
    Scheme s;
    s.name = g.key();
    auto targets = g.value().find("targets");
    if (targets == g.value().end() || !targets->is_array()) bad(where + " has no targets list");
    std::vector<Matcher> compiled;
    for (const auto& t : *targets) {
      if (!t.is_string()) bad(where + ".targets holds a non-string");
      s.targets.push_back(t.get<std::string>());
      compiled.push_back(compile(t.get<std::string>(), where));
    }
    if (auto w = g.value().find("weights"); w != g.value().end() && !w->is_null())
      s.weights = parse_args(*w, where + ".weights");
    if (auto a = g.value().find("input_activations"); a != g.value().end() && !a->is_null())
      s.input_activations = parse_args(*a, where + ".input_activations");
    if (auto o = g.value().find("output_activations"); o != g.value().end() && !o->is_null())
      s.output_activations = true;
    if (auto f = g.value().find("format"); f != g.value().end() && f->is_string()) s.format = f->get<std::string>();
    qc.groups.push_back(std::move(s));
    qc.group_targets.push_back(std::move(compiled));
  }
  if (auto ig = j.find("ignore"); ig != j.end() && ig->is_array())
    for (const auto& t : *ig) {
      if (!t.is_string()) bad("ignore holds a non-string");
      qc.ignore.push_back(compile(t.get<std::string>(), "ignore"));
    }
  return qc;
}

const Scheme* match_module(const QuantConfig& qc, const std::string& module, bool* ignored) {
  *ignored = false;
  for (const auto& m : qc.ignore)
    if (m.matches(module)) {
      *ignored = true;
      return nullptr;
    }
  // vLLM's priority: an exact name beats a regex, which beats a class name.
  for (auto kind : {Matcher::kExact, Matcher::kRegex, Matcher::kClass})
    for (size_t g = 0; g < qc.groups.size(); ++g)
      for (const auto& m : qc.group_targets[g])
        if (m.kind == kind && m.matches(module)) return &qc.groups[g];
  return nullptr;
}

nlohmann::json weight_args_json(const xq_quant_tensor& q) {
  nlohmann::json a;
  a["num_bits"] = sdk::code_width(q.bits);
  a["type"] = sdk::is_float_code(q.bits) ? "float" : "int";
  a["symmetric"] = q.symmetric != 0;
  a["strategy"] = q.strategy == XQ_STRATEGY_GROUP ? "group" : q.strategy == XQ_STRATEGY_CHANNEL ? "channel" : "tensor";
  a["group_size"] = q.strategy == XQ_STRATEGY_GROUP ? nlohmann::json(q.group_size) : nlohmann::json(nullptr);
  a["block_structure"] = nullptr;
  a["dynamic"] = false;
  // g_idx is the "group" activation order's stored artefact (vLLM reads
  // weight_g_idx only for actorder == "group").
  a["actorder"] = q.g_idx ? nlohmann::json("group") : nlohmann::json(nullptr);
  a["observer"] = "minmax";
  a["observer_kwargs"] = nlohmann::json::object();
  return a;
}

nlohmann::json activation_args_json(const xq_quant_tensor& q) {
  if (q.act_scheme == XQ_ACT_NONE) return nullptr;
  nlohmann::json a;
  a["num_bits"] = sdk::code_width(q.act_bits);
  a["type"] = sdk::is_float_code(q.act_bits) ? "float" : "int";
  a["symmetric"] = true;
  a["group_size"] = nullptr;
  a["block_structure"] = nullptr;
  a["actorder"] = nullptr;
  a["observer_kwargs"] = nlohmann::json::object();
  if (q.act_scheme == XQ_ACT_DYNAMIC_TOKEN) {
    a["strategy"] = "token";
    a["dynamic"] = true;
    a["observer"] = nullptr;
  } else {
    a["strategy"] = "tensor";
    a["dynamic"] = false;
    a["observer"] = "minmax";
  }
  return a;
}

const char* format_of(const xq_quant_tensor& q) {
  if (sdk::is_float_code(q.bits)) return "float-quantized";
  // W4AFP8 (int4 weights, FP8 activations) stays packed: vLLM's
  // CompressedTensorsW4A8Fp8 loads weight_packed (8 codes per int32).
  const bool int_activations = q.act_scheme != XQ_ACT_NONE && !sdk::is_float_code(q.act_bits);
  return int_activations ? "int-quantized" : "pack-quantized";
}

}  // namespace xquant::ct
