// group_targets.cpp: see group_targets.hpp.
#include "group_targets.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace xquant::ct {
namespace {

constexpr const char kExperts[] = ".experts.";

struct ExpertName {
  std::string prefix;  // up to and including "experts."
  std::string index;   // decimal
  std::string projection;
};

bool split_expert(const std::string& m, ExpertName* out) {
  const size_t at = m.rfind(kExperts);
  if (at == std::string::npos) return false;
  const size_t begin = at + sizeof(kExperts) - 1;
  const size_t dot = m.find('.', begin);
  if (dot == std::string::npos || dot == begin || dot + 1 >= m.size()) return false;
  for (size_t i = begin; i < dot; ++i)
    if (m[i] < '0' || m[i] > '9') return false;
  *out = {m.substr(0, begin), m.substr(begin, dot - begin), m.substr(dot + 1)};
  return true;
}

// Python re and ECMAScript agree on backslash-escaping these.
std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string("\\.^$|?*+()[]{}").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string alternatives(const std::set<std::string>& items, bool escape) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : "|") + (escape ? escaped(i) : i);
  return items.size() > 1 ? "(" + out + ")" : out;
}

// Sorted numerically, so the patterns read 0|1|2|...|10.
struct ByNumber {
  bool operator()(const std::string& a, const std::string& b) const {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  }
};

}  // namespace

bool is_routed_expert(const std::string& module) {
  ExpertName e;
  return split_expert(module, &e);
}

std::vector<std::string> group_targets(const std::vector<std::string>& modules, bool experts) {
  std::vector<std::string> out;
  if (!experts) {
    out = modules;
    std::sort(out.begin(), out.end());
    return out;
  }
  // prefix -> projection -> expert indices, then projections that share one
  // set of indices go in one pattern.
  std::map<std::string, std::map<std::string, std::set<std::string, ByNumber>>> by_prefix;
  for (const auto& m : modules) {
    ExpertName e;
    if (!split_expert(m, &e)) {  // the caller groups only experts here; a plain name if not
      out.push_back(m);
      continue;
    }
    by_prefix[e.prefix][e.projection].insert(e.index);
  }
  for (const auto& [prefix, projections] : by_prefix) {
    std::map<std::set<std::string, ByNumber>, std::set<std::string>> by_indices;
    for (const auto& [projection, indices] : projections) by_indices[indices].insert(projection);
    for (const auto& [indices, projs] : by_indices) {
      std::string in_order;
      for (const auto& i : indices) in_order += (in_order.empty() ? "" : "|") + i;
      const std::string index_part = indices.size() > 1 ? "(" + in_order + ")" : in_order;
      out.push_back("re:^" + escaped(prefix) + index_part + "\\." + alternatives(projs, true) + "$");
    }
  }
  return out;
}

}  // namespace xquant::ct
