// runtime_api.hpp: what an xq_runtime handle of the C API (xquant.h) is,
// and the helper that turns C++ exceptions into a status + last error at
// that boundary. Shared by runtime_api.cpp and model_api.cpp.
#pragma once

#include "core/error.hpp"
#include "core/runtime.hpp"

#include <xquant/xquant.h>

#include <memory>
#include <string>
#include <vector>

struct xq_runtime {
  std::unique_ptr<xquant::Runtime> runtime;
  std::vector<std::string> plugin_json;  // cached one-line descriptions
};

namespace xquant::capi {

// Runs `body`; any exception becomes a status with its message recorded for
// xq_last_error() (sdk::call_with_status, the one mapping). Never lets an
// exception out.
template <class F>
xq_status boundary(F&& body) noexcept {
  set_last_error("");
  return sdk::call_with_status(record_last_error, std::forward<F>(body));
}

}  // namespace xquant::capi
