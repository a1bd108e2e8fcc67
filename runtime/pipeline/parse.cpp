// parse.cpp: YAML text -> Pipeline, checking the schema of docs/pipeline.md.
#include "core/error.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/yaml_checker.hpp"

#include <xquant/sdk/target_regex.hpp>

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace xquant {

namespace {

const std::vector<std::string> kTopKeys = {"model", "plugins", "calibration", "quantize", "ignore", "output",
                                          "accuracy", "report"};
const std::vector<std::string> kAccuracyKeys = {"text",       "metric",    "max_increase",    "fallback",
                                                "max_tokens", "max_bytes", "compare_baseline"};
const std::vector<std::string> kModelKeys = {"path", "loader"};
const std::vector<std::string> kPluginKeys = {"paths"};
const std::vector<std::string> kCalibKeys = {"text", "samples", "seq_len", "seed", "tokenizer", "moe"};
const std::vector<std::string> kMoeKeys = {"calibrate_all_experts", "min_tokens", "experts_per_pass"};
const std::vector<std::string> kRuleKeys = {"targets", "ignore", "algorithm", "weights", "activations", "params"};
const std::vector<std::string> kWeightKeys = {"type", "bits", "symmetric", "strategy", "group_size", "scale_dtype"};
const std::vector<std::string> kActKeys = {"type", "bits", "dynamic", "strategy"};
const std::vector<std::string> kOutputKeys = {"format", "path", "params"};

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path : (base / path).lexically_normal();
}

std::vector<TargetPattern> parse_targets(YamlChecker& c, const YAML::Node& node, const std::string& path) {
  std::vector<TargetPattern> out;
  YAML::Node list = node;
  if (node.IsScalar()) {  // a single target is accepted without brackets
    list = YAML::Node(YAML::NodeType::Sequence);
    list.push_back(node);
  }
  if (!c.expect_sequence(list, path)) return out;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string key = fmt::format("{}[{}]", path, i);
    auto s = c.get_string(list[i], key);
    if (!s) continue;
    TargetPattern t;
    t.text = *s;
    if (s->rfind("re:", 0) == 0) {
      t.is_regex = true;
      std::string why;
      if (!sdk::compile_target_regex(s->substr(3), &t.regex, &why)) {
        c.error(list[i], key, fmt::format("invalid regular expression '{}': {}", s->substr(3), why));
        continue;
      }
    } else if (*s == "Linear") {
      t.is_class = true;
    } else if (s->empty()) {
      c.error(list[i], key, "empty target");
      continue;
    }
    out.push_back(std::move(t));
  }
  return out;
}

void parse_weights(YamlChecker& c, const YAML::Node& node, const std::string& path, WeightScheme& w) {
  if (!c.expect_map(node, path)) return;
  c.check_keys(node, path, kWeightKeys);
  if (node["type"])
    if (auto v = c.get_choice(node["type"], path + ".type", {"int", "float"})) w.type = *v;
  if (node["bits"]) {
    if (auto v = c.get_int(node["bits"], path + ".bits", 2, 8)) w.bits = static_cast<int>(*v);
  } else {
    c.error(node, path, "missing 'bits' (2..8)");
  }
  if (node["symmetric"])
    if (auto v = c.get_bool(node["symmetric"], path + ".symmetric")) w.symmetric = *v;
  bool has_group = static_cast<bool>(node["group_size"]);
  std::string strategy = has_group ? "group" : "channel";
  if (node["strategy"])
    if (auto v = c.get_choice(node["strategy"], path + ".strategy", {"tensor", "channel", "group"})) strategy = *v;
  w.strategy = strategy == "tensor" ? XQ_STRATEGY_TENSOR : strategy == "channel" ? XQ_STRATEGY_CHANNEL : XQ_STRATEGY_GROUP;
  if (w.strategy == XQ_STRATEGY_GROUP) {
    if (!has_group) {
      c.error(node, path, "strategy 'group' needs 'group_size'");
    } else if (auto v = c.get_int(node["group_size"], path + ".group_size", 1, 1 << 20)) {
      w.group_size = *v;
    }
  } else if (has_group) {
    c.error(node["group_size"], path + ".group_size", fmt::format("group_size only applies to strategy 'group', not '{}'", strategy));
  }
  if (node["scale_dtype"])
    if (auto v = c.get_choice(node["scale_dtype"], path + ".scale_dtype", {"auto", "float32", "float16", "bfloat16"}))
      w.scale_dtype = *v;
  // Float weights are FP8 E4M3 (compressed-tensors' type float, num_bits 8) with one
  // scale per channel or per tensor, no zero point.
  if (w.type == "float") {
    if (w.bits != 8) c.error(node, path, fmt::format("type 'float' weights are FP8 (E4M3): bits must be 8, not {}", w.bits));
    if (!w.symmetric) c.error(node["symmetric"], path + ".symmetric", "type 'float' (FP8) weights are symmetric");
    if (w.strategy == XQ_STRATEGY_GROUP)
      c.error(node, path, "type 'float' (FP8) weights take strategy 'channel' or 'tensor'");
  }
}

void parse_activations(YamlChecker& c, const YAML::Node& node, const std::string& path, ActivationScheme& a) {
  if (!c.expect_map(node, path)) return;
  c.check_keys(node, path, kActKeys);
  a.enabled = true;
  a.type = "";  // the weights' type unless given (set by the rule)
  if (node["type"])
    if (auto v = c.get_choice(node["type"], path + ".type", {"int", "float"})) a.type = *v;
  if (node["bits"])
    if (auto v = c.get_int(node["bits"], path + ".bits", 8, 8)) a.bits = static_cast<int>(*v);
  if (node["strategy"])
    if (auto v = c.get_choice(node["strategy"], path + ".strategy", {"token", "tensor"})) a.strategy = *v;
  a.dynamic = a.strategy == "token";
  if (node["dynamic"])
    if (auto v = c.get_bool(node["dynamic"], path + ".dynamic")) a.dynamic = *v;
  if (a.strategy == "token" && !a.dynamic)
    c.error(node, path, "per-token activation scales are dynamic (computed at run time); use strategy 'tensor' for a static scale");
  if (a.strategy == "tensor" && a.dynamic)
    c.error(node, path, "strategy 'tensor' with dynamic: true is not supported; use 'token' for dynamic activations");
}

// W4AFP8 (compressed-tensors' preset of that name, served by vLLM's
// CompressedTensorsW4A8Fp8): int weights with dynamic per-token FP8
// activations. The preset is 4-bit symmetric weights; FP8 activations beside
// any other integer width have no kernel that reads them.
bool is_w4afp8(const QuantRule& rule) {
  return rule.activations.enabled && rule.activations.type == "float" && rule.weights.type == "int";
}

void check_w4afp8(YamlChecker& c, const YAML::Node& r, const std::string& path, const QuantRule& rule) {
  const std::string where = path + ".weights";
  if (rule.weights.bits != 4)
    c.error(r["weights"], where,
            fmt::format("FP8 activations with int weights are W4AFP8: the weights must be 4 bits, not {}", rule.weights.bits));
  if (!rule.weights.symmetric)
    c.error(r["weights"], where, "W4AFP8 (FP8 activations with int4 weights) needs symmetric weights");
  if (rule.weights.strategy == XQ_STRATEGY_TENSOR)
    c.error(r["weights"], where, "W4AFP8 weights take strategy 'group' or 'channel'");
}

// `accuracy: {text, metric, max_increase, fallback, max_tokens, max_bytes,
// compare_baseline}`.
// max_increase takes a number or "N%" (N/100).
void parse_accuracy(YamlChecker& c, const YAML::Node& a, const fs::path& base_dir, AccuracySpec& out) {
  out.mark = c.mark(a, "accuracy");
  if (!c.expect_map(a, "accuracy")) return;
  c.check_keys(a, "accuracy", kAccuracyKeys);
  out.enabled = true;
  std::error_code ec;
  if (!a["text"]) c.error(a, "accuracy", "missing 'text' (held-out evaluation text, not the calibration text)");
  else if (auto s = c.get_string(a["text"], "accuracy.text")) {
    out.text = resolve(base_dir, *s);
    if (!fs::is_regular_file(out.text, ec)) c.error(a["text"], "accuracy.text", fmt::format("'{}' is not a file", out.text.string()));
  }
  if (a["metric"])
    if (auto s = c.get_choice(a["metric"], "accuracy.metric", {"kld", "ppl"})) out.metric = *s;
  if (a["max_increase"]) {
    if (auto s = c.get_string(a["max_increase"], "accuracy.max_increase")) {
      try {
        size_t used = 0;
        const bool percent = !s->empty() && s->back() == '%';
        double v = std::stod(percent ? s->substr(0, s->size() - 1) : *s, &used);
        if (used != s->size() - (percent ? 1 : 0) || !(v >= 0)) throw std::invalid_argument("");
        out.max_increase = percent ? v / 100.0 : v;
      } catch (const std::exception&) {
        c.error(a["max_increase"], "accuracy.max_increase", fmt::format("expected a number >= 0 or 'N%', got '{}'", *s));
      }
    }
  }
  if (a["fallback"] && c.expect_sequence(a["fallback"], "accuracy.fallback")) {
    out.fallback.clear();
    for (size_t i = 0; i < a["fallback"].size(); ++i)
      if (auto s = c.get_choice(a["fallback"][i], fmt::format("accuracy.fallback[{}]", i), {"int8", "bf16"}))
        out.fallback.push_back(*s);
  }
  if (a["max_tokens"])
    if (auto v = c.get_int(a["max_tokens"], "accuracy.max_tokens", 16, int64_t(1) << 30)) out.max_tokens = *v;
  if (a["max_bytes"])
    if (auto v = c.get_int(a["max_bytes"], "accuracy.max_bytes", 1, int64_t(1) << 62)) out.max_bytes = static_cast<uint64_t>(*v);
  if (a["compare_baseline"])
    if (auto v = c.get_bool(a["compare_baseline"], "accuracy.compare_baseline")) out.compare_baseline = *v;
}

}  // namespace

Pipeline parse_pipeline_text(const std::string& yaml, const std::string& display_name, const fs::path& base_dir) {
  YamlChecker c(display_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::ParserException& e) {
    throw Error(XQ_ERR_INVALID_ARGUMENT, fmt::format("invalid pipeline:\n  {}:{}:{}: YAML syntax error: {}", display_name,
                                                     e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  Pipeline p;
  p.file = display_name;
  p.base_dir = base_dir;
  p.source_text = yaml;
  if (!root.IsMap()) {
    c.error(root, "(top level)", "a pipeline is a mapping with keys model, quantize, output, ...");
    c.throw_if_errors();
  }
  c.check_keys(root, "", kTopKeys);

  // model
  if (auto m = root["model"]; !m) {
    c.error(root, "model", "missing 'model' (model: {path: ...})");
  } else if (m.IsScalar()) {
    p.model_path = resolve(base_dir, m.Scalar());
  } else if (c.expect_map(m, "model")) {
    c.check_keys(m, "model", kModelKeys);
    if (!m["path"]) c.error(m, "model", "missing 'path'");
    else if (auto s = c.get_string(m["path"], "model.path")) p.model_path = resolve(base_dir, *s);
    if (m["loader"])
      if (auto s = c.get_string(m["loader"], "model.loader")) {
        p.loader = *s;
        p.loader_mark = c.mark(m["loader"], "model.loader");
      }
  }

  // plugins
  if (auto pl = root["plugins"]) {
    if (c.expect_map(pl, "plugins")) {
      c.check_keys(pl, "plugins", kPluginKeys);
      if (pl["paths"] && c.expect_sequence(pl["paths"], "plugins.paths"))
        for (size_t i = 0; i < pl["paths"].size(); ++i)
          if (auto s = c.get_string(pl["paths"][i], fmt::format("plugins.paths[{}]", i)))
            p.plugin_paths.push_back(resolve(base_dir, *s));
    }
  }

  // calibration
  if (auto cal = root["calibration"]) {
    p.calibration.mark = c.mark(cal, "calibration");
    if (c.expect_map(cal, "calibration")) {
      c.check_keys(cal, "calibration", kCalibKeys);
      p.calibration.enabled = true;
      if (!cal["text"]) c.error(cal, "calibration", "missing 'text' (a text file of calibration data)");
      else if (auto s = c.get_string(cal["text"], "calibration.text")) p.calibration.text = resolve(base_dir, *s);
      if (cal["tokenizer"])
        if (auto s = c.get_string(cal["tokenizer"], "calibration.tokenizer")) p.calibration.tokenizer = resolve(base_dir, *s);
      if (cal["samples"])
        if (auto v = c.get_int(cal["samples"], "calibration.samples", 1, 1 << 20)) p.calibration.samples = *v;
      if (cal["seq_len"])
        if (auto v = c.get_int(cal["seq_len"], "calibration.seq_len", 2, 1 << 20)) p.calibration.seq_len = *v;
      if (cal["seed"])
        if (auto v = c.get_int(cal["seed"], "calibration.seed", 0, INT64_MAX)) p.calibration.seed = static_cast<uint64_t>(*v);
      if (auto moe = cal["moe"]; moe && c.expect_map(moe, "calibration.moe")) {
        c.check_keys(moe, "calibration.moe", kMoeKeys);
        if (moe["calibrate_all_experts"])
          if (auto v = c.get_bool(moe["calibrate_all_experts"], "calibration.moe.calibrate_all_experts"))
            p.calibration.moe.all_experts = *v;
        if (moe["min_tokens"])
          if (auto v = c.get_int(moe["min_tokens"], "calibration.moe.min_tokens", 0, INT64_MAX))
            p.calibration.moe.min_tokens = *v;
        if (moe["experts_per_pass"])
          if (auto v = c.get_int(moe["experts_per_pass"], "calibration.moe.experts_per_pass", 0, INT64_MAX))
            p.calibration.moe.experts_per_pass = *v;
      }
    }
  }

  // quantize
  if (auto q = root["quantize"]; !q) {
    c.error(root, "quantize", "missing 'quantize' (a list of rules)");
  } else {
    YAML::Node rules = q;
    if (q.IsMap()) {  // a single rule is accepted without the list
      rules = YAML::Node(YAML::NodeType::Sequence);
      rules.push_back(q);
    }
    if (c.expect_sequence(rules, "quantize")) {
      if (rules.size() == 0) c.error(rules, "quantize", "needs at least one rule");
      for (size_t i = 0; i < rules.size(); ++i) {
        std::string path = fmt::format("quantize[{}]", i);
        const YAML::Node& r = rules[i];
        if (!c.expect_map(r, path)) continue;
        c.check_keys(r, path, kRuleKeys);
        QuantRule rule;
        rule.mark = c.mark(r, path);
        if (!r["algorithm"]) {
          c.error(r, path, "missing 'algorithm' (e.g. rtn)");
        } else if (r["algorithm"].IsSequence()) {
          for (size_t k = 0; k < r["algorithm"].size(); ++k) {
            std::string key = fmt::format("{}.algorithm[{}]", path, k);
            if (auto s = c.get_string(r["algorithm"][k], key)) rule.stages.push_back({*s, c.mark(r["algorithm"][k], key), {}, {}});
          }
          if (rule.stages.empty()) c.error(r["algorithm"], path + ".algorithm", "needs at least one algorithm");
        } else if (auto s = c.get_string(r["algorithm"], path + ".algorithm"); s && *s == "auto") {
          rule.automatic = true;
        } else if (s) {
          rule.stages.push_back({*s, c.mark(r["algorithm"], path + ".algorithm"), {}, {}});
        }
        if (r["targets"]) rule.targets = parse_targets(c, r["targets"], path + ".targets");
        else rule.targets = parse_targets(c, YAML::Load("[Linear]"), path + ".targets");
        if (r["ignore"]) rule.ignore = parse_targets(c, r["ignore"], path + ".ignore");
        if (!r["weights"]) c.error(r, path, "missing 'weights' (e.g. {bits: 4, group_size: 128})");
        else parse_weights(c, r["weights"], path + ".weights", rule.weights);
        if (r["activations"]) parse_activations(c, r["activations"], path + ".activations", rule.activations);
        if (rule.activations.enabled && rule.activations.type.empty()) rule.activations.type = rule.weights.type;
        const bool w4afp8 = is_w4afp8(rule);
        if (w4afp8) check_w4afp8(c, r, path, rule);
        if (rule.activations.enabled && !w4afp8 && rule.weights.bits != 8)
          c.error(r["activations"], path + ".activations", "activation quantization (W8A8) needs 8-bit weights");
        if (rule.automatic && (rule.weights.type == "float" || w4afp8))
          c.error(r["weights"], path + ".weights", "algorithm 'auto' chooses among integer schemes; use rtn for type 'float' (FP8)");
        if (rule.activations.enabled && !w4afp8 && rule.activations.type != rule.weights.type)
          c.error(r["activations"], path + ".activations",
                  fmt::format("{} activations with {} weights are not supported (FP8 W8A8 or INT8 W8A8)",
                              rule.activations.type, rule.weights.type));
        if (rule.activations.enabled && rule.activations.type == "float" && !rule.activations.dynamic)
          c.error(r["activations"], path + ".activations",
                  "static FP8 activation scales are not supported; use dynamic per-token (strategy: token)");
        if (r["params"] && c.expect_map(r["params"], path + ".params")) {
          if (rule.automatic) {  // params: {candidates: [rtn, awq, smoothquant+gptq]}
            c.check_keys(r["params"], path + ".params", {"candidates"});
            const std::string key = path + ".params.candidates";
            if (r["params"]["candidates"] && c.expect_sequence(r["params"]["candidates"], key)) {
              for (size_t k = 0; k < r["params"]["candidates"].size(); ++k)
                if (auto s = c.get_string(r["params"]["candidates"][k], fmt::format("{}[{}]", key, k)))
                  rule.candidates.push_back(*s);
              if (rule.candidates.empty()) c.error(r["params"]["candidates"], key, "needs at least one algorithm");
            }
          } else if (rule.stages.size() == 1) {
            rule.stages[0].params = r["params"];
          } else {  // a chain: params are keyed by algorithm name
            std::vector<std::string> names;
            for (const auto& st : rule.stages) names.push_back(st.name);
            c.check_keys(r["params"], path + ".params", names);
            for (auto& st : rule.stages)
              if (r["params"][st.name] && c.expect_map(r["params"][st.name], path + ".params." + st.name))
                st.params = r["params"][st.name];
          }
        }
        p.rules.push_back(std::move(rule));
      }
    }
  }
  if (auto ig = root["ignore"]) p.ignore = parse_targets(c, ig, "ignore");

  // output
  if (auto o = root["output"]; !o) {
    c.error(root, "output", "missing 'output' (output: {format: compressed-tensors, path: ...})");
  } else if (c.expect_map(o, "output")) {
    c.check_keys(o, "output", kOutputKeys);
    p.output_mark = c.mark(o, "output");
    p.format_mark = c.mark(o["format"] ? o["format"] : o, "output.format");
    if (o["format"])
      if (auto s = c.get_string(o["format"], "output.format")) p.output_format = *s;
    if (!o["path"]) c.error(o, "output", "missing 'path' (the output folder)");
    else if (auto s = c.get_string(o["path"], "output.path")) p.output_path = resolve(base_dir, *s);
    if (o["params"] && c.expect_map(o["params"], "output.params")) p.output_params = o["params"];
  }

  if (auto a = root["accuracy"]) parse_accuracy(c, a, base_dir, p.accuracy);
  if (auto r = root["report"])
    if (auto s = c.get_string(r, "report")) p.report_path = resolve(base_dir, *s);
  if (p.accuracy.enabled && !p.has_automatic_rule())
    c.error(root["accuracy"], "accuracy", "an accuracy target needs a rule with 'algorithm: auto' (the decision engine)");

  // Cross-field checks that need no plugins.
  std::error_code ec;
  if (!p.model_path.empty() && !fs::exists(p.model_path, ec))
    c.error(root["model"], "model.path", fmt::format("'{}' does not exist", p.model_path.string()));
  if (p.calibration.enabled && !p.calibration.text.empty() && !fs::is_regular_file(p.calibration.text, ec))
    c.error(root["calibration"]["text"], "calibration.text", fmt::format("'{}' is not a file", p.calibration.text.string()));
  if (!p.output_path.empty() && !p.model_path.empty() &&
      fs::weakly_canonical(p.output_path, ec) == fs::weakly_canonical(p.model_path, ec))
    c.error(root["output"]["path"], "output.path", "the output folder must not be the model's own folder");
  c.throw_if_errors();
  return p;
}

Pipeline parse_pipeline_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) fail(XQ_ERR_NOT_FOUND, "cannot read pipeline '{}'", file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  fs::path base = fs::absolute(file).parent_path();
  return parse_pipeline_text(ss.str(), file.string(), base);
}

bool Pipeline::has_automatic_rule() const {
  for (const auto& r : rules)
    if (r.automatic) return true;
  return false;
}

std::string QuantRule::algorithm_names() const {
  if (automatic) return "auto";
  std::string out;
  for (const auto& s : stages) out += (out.empty() ? "" : "+") + s.name;
  return out;
}

bool TargetPattern::matches(const std::string& module) const {
  if (is_class) return true;  // callers only ask about Linear modules
  if (is_regex) return sdk::target_regex_matches(regex, module);
  return module == text;
}

}  // namespace xquant
