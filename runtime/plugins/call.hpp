// call.hpp: calling into a plugin. A non-OK status becomes an Error carrying
// the message the plugin recorded through host->set_error.
#pragma once

#include "core/error.hpp"

#include <string>

namespace xquant {

inline void check_plugin_call(xq_status status, const std::string& what) {
  if (status == XQ_OK) return;
  std::string msg = last_error();
  set_last_error("");
  if (msg.empty()) msg = status_name(status);
  throw Error(status, what.empty() ? msg : what + ": " + msg);
}

}  // namespace xquant
