// run_report_json.cpp: see run_report_json.hpp.
#include "pipeline/run_report_json.hpp"

namespace xquant {

nlohmann::json run_report_json(const RunReport& r) {
  nlohmann::json j;
  j["output"] = r.output.string();
  j["format"] = r.format;
  j["seconds"] = r.seconds;
  j["tensors_written"] = r.tensors_written;
  j["input_bytes"] = r.input_bytes;
  j["dense_linears"] = r.dense_linears;
  j["experts"] = nlohmann::json::array();
  for (const auto& e : r.experts)
    j["experts"].push_back({{"layer", e.layer}, {"expert", e.expert}, {"routed_tokens", e.routed_tokens},
                            {"statistics", e.statistics}});
  j["layers"] = nlohmann::json::array();
  for (const auto& l : r.layers)
    j["layers"].push_back({{"module", l.module}, {"algorithm", l.algorithm}, {"scheme", l.scheme},
                           {"shape", {l.rows, l.cols}}, {"rel_error", l.rel_error}});
  return j;
}

}  // namespace xquant
