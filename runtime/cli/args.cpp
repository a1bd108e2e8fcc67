#include "cli/args.hpp"

#include "pipeline/nearest.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <stdexcept>

namespace xquant::cli {

std::vector<std::pair<std::string, std::string>> split_params(const std::string& list) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos && !out.empty()) {
      out.back().second += "," + item;
    } else if (eq == std::string::npos || eq == 0) {
      throw UsageError(fmt::format("--param expects KEY=VALUE[,KEY=VALUE...], got '{}'", item));
    } else {
      out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
  }
  return out;
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  return nearest_word(word, candidates);
}

Args::Args(std::string command, std::string summary, std::vector<OptionSpec> options,
           std::vector<std::string> positionals)
    : command_(std::move(command)), summary_(std::move(summary)), options_(std::move(options)),
      positional_names_(std::move(positionals)) {
  options_.push_back({"help", "", "show this help and exit", false, 'h'});
}

bool Args::parse(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const OptionSpec* spec = nullptr;
    std::string inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_inline = true;
      }
      for (const auto& o : options_)
        if (o.name == name) spec = &o;
      if (!spec) {
        std::vector<std::string> names;
        for (const auto& o : options_) names.push_back(o.name);
        std::string near = nearest(name, names);
        throw UsageError(fmt::format("unknown option '--{}'{}", name, near.empty() ? "" : fmt::format("; did you mean '--{}'?", near)));
      }
    } else if (a.size() == 2 && a[0] == '-' && a[1] != '-') {
      for (const auto& o : options_)
        if (o.short_name == a[1]) spec = &o;
      if (!spec) throw UsageError(fmt::format("unknown option '{}'", a));
    } else {
      positional_values_.push_back(a);
      continue;
    }
    if (spec->name == "help") {
      std::fputs(usage().c_str(), stdout);
      return false;
    }
    if (spec->value.empty()) {
      if (has_inline) throw UsageError(fmt::format("option '--{}' takes no value", spec->name));
      values_[spec->name] = "1";
      continue;
    }
    if (!has_inline && i + 1 >= argc)
      throw UsageError(fmt::format("option '--{}' needs a value ({})", spec->name, spec->value));
    store_value(*spec, has_inline ? inline_value : std::string(argv[++i]));
  }
  for (const auto& o : options_)
    if (o.required && !values_.count(o.name)) throw UsageError(fmt::format("missing required option '--{}'", o.name));
  if (positional_values_.size() > positional_names_.size())
    throw UsageError(fmt::format("unexpected argument '{}'", positional_values_[positional_names_.size()]));
  if (positional_values_.size() < positional_names_.size())
    throw UsageError(fmt::format("missing argument {}", positional_names_[positional_values_.size()]));
  return true;
}

void Args::store_value(const OptionSpec& spec, const std::string& value) {
  auto [it, first] = values_.emplace(spec.name, value);
  if (first) return;
  if (!spec.repeatable)
    throw UsageError(fmt::format("option '--{}' given twice ('{}', then '{}'); give it once", spec.name, it->second,
                                 value));
  it->second += "," + value;
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

long long Args::get_int(const std::string& name, long long fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    long long x = std::stoll(*v, &used);
    if (used != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw UsageError(fmt::format("option '--{}' expects an integer, got '{}'", name, *v));
  }
}

double Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    double x = std::stod(*v, &used);
    if (used != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw UsageError(fmt::format("option '--{}' expects a number, got '{}'", name, *v));
  }
}

std::string Args::usage() const {
  std::string out = fmt::format("usage: xquant {}", command_);
  for (const auto& p : positional_names_) out += " " + p;
  out += " [options]\n\n" + summary_ + "\n\noptions:\n";
  for (const auto& o : options_) {
    std::string left = o.short_name ? fmt::format("-{}, --{}", o.short_name, o.name) : fmt::format("    --{}", o.name);
    if (!o.value.empty()) left += " " + o.value;
    out += fmt::format("  {:<28} {}{}\n", left, o.help, o.required ? " (required)" : "");
  }
  out += "\ncommon: -v/--verbose (debug log), -q/--quiet (warnings and errors only), --threads N, --plugin-path DIR\n";
  return out;
}

}  // namespace xquant::cli
