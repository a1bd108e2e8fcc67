// module_error.hpp: the two errors the reader and the float-quantized decoder
// throw about one compressed-tensors module, worded alike in both.
#pragma once

#include <xquant/sdk/error.hpp>

#include <string>

namespace xquant::ct {

// The module's stored tensors or config contradict the format.
[[noreturn]] inline void bad(const std::string& module, const std::string& what) {
  throw sdk::Error(XQ_ERR_MALFORMED, "compressed-tensors module '" + module + "': " + what);
}

// Well-formed, but a form this reader does not run.
[[noreturn]] inline void unsupported(const std::string& module, const std::string& what) {
  throw sdk::Error(XQ_ERR_UNSUPPORTED, "compressed-tensors module '" + module + "': " + what);
}

}  // namespace xquant::ct
