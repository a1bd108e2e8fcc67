// args.hpp: a small command-line parser for the xquant subcommands.
//
// Each subcommand declares its options (name, value or flag, help); parsing
// rejects unknown options (suggesting the nearest), missing values and
// missing required options with a message and exit code 2. `--help` prints
// the generated usage.
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace xquant::cli {

struct OptionSpec {
  std::string name;   // without leading dashes, e.g. "group-size"
  std::string value;  // placeholder like "N"; empty for a flag
  std::string help;
  bool required = false;
  char short_name = 0;  // e.g. 'n' for -n
  // A comma-list option (--param K=V,...) may be given several times: the
  // values are joined with ','. Any other value option given twice is a
  // usage error rather than the last one silently winning.
  bool repeatable = false;
};

class Args {
 public:
  Args(std::string command, std::string summary, std::vector<OptionSpec> options,
       std::vector<std::string> positionals = {});
  // Parses argv after the subcommand. Returns false when --help was given
  // (usage already printed). Throws UsageError on bad input.
  bool parse(int argc, char** argv);

  bool flag(const std::string& name) const { return values_.count(name) != 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positionals() const { return positional_values_; }
  std::string usage() const;

 private:
  // Records a value option; a repeat joins (repeatable) or is refused.
  void store_value(const OptionSpec& spec, const std::string& value);
  std::string command_, summary_;
  std::vector<OptionSpec> options_;
  std::vector<std::string> positional_names_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_values_;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The KEY=VALUE items of a --param list ("a=1,b=2"). A piece without '='
// continues the value before it, so a value may hold commas itself
// ("layouts=cpu,cuda,b=2" gives layouts = "cpu,cuda" and b = "2"); a first
// piece without '=' (or one starting with it) is a UsageError naming it.
std::vector<std::pair<std::string, std::string>> split_params(const std::string& list);

// The closest candidate within a small edit distance, or "".
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace xquant::cli
