// error.hpp: how the runtime reports failure.
//
// Inside the runtime, failures are exceptions of one type (xquant::Error, the
// SDK's type, so plugins and runtime share one concept) carrying an
// xq_status. At every C boundary (plugin host API, xquant.h, callbacks handed
// to plugins) sdk::call_with_status turns them into a status plus, through
// record_last_error, a thread-local message readable with last_error().
#pragma once

#include <xquant/sdk/host.hpp>

#include <fmt/format.h>

#include <string>

namespace xquant {

using sdk::Error;
using sdk::status_name;

template <class... Args>
[[noreturn]] void fail(xq_status status, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(status, fmt::format(f, std::forward<Args>(args)...));
}

// The message of the last failure on this thread (C boundary).
void set_last_error(const std::string& message);
const std::string& last_error();

// The recorder for sdk::call_with_status at the runtime's own boundaries:
// keeps the message as this thread's last error and returns the status.
xq_status record_last_error(xq_status status, const char* message);

}  // namespace xquant
