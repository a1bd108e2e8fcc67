// error.hpp: failures on both sides of the ABI, and the one place where a
// C++ exception becomes an xq_status.
//
// Inside C++ (plugins and the runtime alike) a failure is an exception of one
// type, `Error`, carrying an xq_status. At every C boundary (a plugin's
// vtable entry, a host API function, the embedding API of xquant.h, a
// callback such as xq_group_forward.run) `call_with_status` runs the body and
// maps whatever it throws to a status, handing the message to a recorder the
// boundary chooses (host->set_error, the thread's last error, ...). As
// ONNX Runtime's C++ wrapper does with Ort::Exception (onnxruntime_cxx_api.h),
// the mapping is written once so every boundary has the same coverage.
#pragma once

#include <xquant/xq_abi.h>

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>

namespace xquant::sdk {

class Error : public std::runtime_error {
 public:
  Error(xq_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  xq_status status() const noexcept { return status_; }

 private:
  xq_status status_;
};

// printf-style formatting into std::string (no fmt dependency in the SDK).
inline std::string format(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, args);
  va_end(args);
  return out;
}

[[noreturn]] inline void fail(xq_status status, const std::string& message) { throw Error(status, message); }

// The one table of status names; the C API exports it as xq_status_string().
constexpr const char* status_name(xq_status status) noexcept {
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

// Maps the exception being handled (call it only inside a catch block) to
// its status and passes (status, message) to `record`, whose return value is
// returned: xquant Error -> its own status; std::bad_alloc -> out of memory;
// any other std::exception or a foreign throw -> internal error. A recorder
// that throws itself (it cannot store the message) still yields the status.
template <class Record>
xq_status status_of_current_exception(Record&& record) noexcept {
  xq_status status = XQ_ERR_INTERNAL;
  const char* message = "unknown exception";
  try {
    throw;
  } catch (const Error& e) {
    status = e.status();
    message = e.what();
  } catch (const std::bad_alloc&) {
    status = XQ_ERR_OUT_OF_MEMORY;
    message = "out of memory";
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
  }
  try {
    return record(status, message);
  } catch (...) {
    return status;
  }
}

// Runs `body` at a C boundary: XQ_OK when it returns, else the status of
// what it threw (see status_of_current_exception). Never lets one out.
template <class Record, class F>
xq_status call_with_status(Record&& record, F&& body) noexcept {
  try {
    body();
    return XQ_OK;
  } catch (...) {
    return status_of_current_exception(record);
  }
}

// A recorder that keeps nothing: for callers that only need the status.
inline xq_status ignore_message(xq_status status, const char*) noexcept { return status; }

}  // namespace xquant::sdk
