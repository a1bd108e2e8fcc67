// op_profile_env.cpp: XQUANT_OP_PROFILE=1 around a scope (op_profile_env.hpp).
#include "engine/op_profile_env.hpp"

#include "engine/op_profile.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace xquant {

OpProfileFromEnv::OpProfileFromEnv(std::string title) : title_(std::move(title)) {
  const char* v = std::getenv("XQUANT_OP_PROFILE");
  on_ = v && v[0] == '1' && !op_profile_enabled();
  if (!on_) return;
  op_profile_take();  // start from zero
  op_profile_enable(true);
}

OpProfileFromEnv::~OpProfileFromEnv() {
  if (!on_) return;
  op_profile_enable(false);
  const auto totals = op_profile_take();
  std::vector<std::pair<std::string, OpTime>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double all = 0;
  for (const auto& r : rows) all += r.second.seconds;
  std::fprintf(stderr, "op profile (%s; each op waited for, so launches are serialised): %.3f ms in ops\n",
               title_.c_str(), all * 1e3);
  std::fprintf(stderr, "  %-32s %8s %12s %7s\n", "op", "calls", "ms", "share");
  for (const auto& [label, t] : rows)
    std::fprintf(stderr, "  %-32s %8llu %12.3f %6.1f%%\n", label.c_str(), static_cast<unsigned long long>(t.calls),
                 t.seconds * 1e3, all > 0 ? 100.0 * t.seconds / all : 0.0);
}

}  // namespace xquant
