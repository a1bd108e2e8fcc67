#include "core/error.hpp"

namespace xquant {

namespace {
thread_local std::string t_last_error;
}

void set_last_error(const std::string& message) { t_last_error = message; }
const std::string& last_error() { return t_last_error; }

const char* status_name(xq_status status) {
  switch (status) {
    case XQ_OK: return "ok";
    case XQ_ERR_INVALID_ARGUMENT: return "invalid argument";
    case XQ_ERR_NOT_FOUND: return "not found";
    case XQ_ERR_TYPE_MISMATCH: return "type mismatch";
    case XQ_ERR_UNSUPPORTED: return "unsupported";
    case XQ_ERR_MALFORMED: return "malformed input";
    case XQ_ERR_IO: return "I/O error";
    case XQ_ERR_OUT_OF_MEMORY: return "out of memory";
    case XQ_ERR_ABI_MISMATCH: return "ABI mismatch";
    case XQ_ERR_CANCELLED: return "cancelled";
    case XQ_ERR_DEVICE: return "device error";
    case XQ_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

}  // namespace xquant
