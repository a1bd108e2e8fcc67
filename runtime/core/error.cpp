#include "core/error.hpp"

namespace xquant {

namespace {
thread_local std::string t_last_error;
}

void set_last_error(const std::string& message) { t_last_error = message; }
const std::string& last_error() { return t_last_error; }

xq_status record_last_error(xq_status status, const char* message) {
  set_last_error(message ? message : status_name(status));
  return status;
}

}  // namespace xquant
