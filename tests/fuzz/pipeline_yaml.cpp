// pipeline_yaml.cpp: the fuzz target for pipeline files (runtime/pipeline:
// parse.cpp, yaml_checker.cpp, validate.cpp): parse_pipeline_text() as
// `xquant run` calls it, then the checks against the loaded plugins.
#include "fuzz_targets.hpp"

#include "fuzz_runtime.hpp"

#include "pipeline/pipeline.hpp"

#include <string>

namespace xquant::fuzz {

void pipeline_yaml(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Pipeline p = parse_pipeline_text(text, "<fuzz>.yaml", "/nonexistent-fuzz-base");
  validate_with_plugins(p, fuzz_runtime());
  // Every target pattern is matched, as the runners match module names.
  for (const auto& rule : p.rules)
    for (const auto& t : rule.targets) (void)t.matches("model.layers.0.self_attn.q_proj");
  for (const auto& t : p.ignore) (void)t.matches("lm_head");
}

}  // namespace xquant::fuzz
