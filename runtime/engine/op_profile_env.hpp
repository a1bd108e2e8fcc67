// op_profile_env.hpp: the op profile (op_profile.hpp) switched on from the
// environment for one scope: with XQUANT_OP_PROFILE=1 the scope's ops are
// timed one by one (each waits for the device, so the scope runs slower)
// and a table of time per op label goes to stderr when the scope ends.
// Off by default; `xquant bench` wraps each measured run in one.
#pragma once

#include <string>

namespace xquant {

class OpProfileFromEnv {
 public:
  explicit OpProfileFromEnv(std::string title);
  ~OpProfileFromEnv();
  OpProfileFromEnv(const OpProfileFromEnv&) = delete;
  OpProfileFromEnv& operator=(const OpProfileFromEnv&) = delete;

 private:
  bool on_ = false;
  std::string title_;
};

}  // namespace xquant
