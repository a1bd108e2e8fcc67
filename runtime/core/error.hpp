// error.hpp: how the runtime reports failure.
//
// Inside the runtime, failures are exceptions of one type (xquant::Error, the
// SDK's type, so plugins and runtime share one concept) carrying an
// xq_status. At every C boundary (plugin host API, xquant.h) they become a
// status plus a thread-local message readable with last_error().
#pragma once

#include <xquant/sdk/host.hpp>

#include <fmt/format.h>

#include <string>

namespace xquant {

using sdk::Error;

template <class... Args>
[[noreturn]] void fail(xq_status status, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(status, fmt::format(f, std::forward<Args>(args)...));
}

// The message of the last failure on this thread (C boundary).
void set_last_error(const std::string& message);
const std::string& last_error();

const char* status_name(xq_status status);

}  // namespace xquant
