// rule_assignment.hpp: which rule quantizes each Linear of a checkpoint,
// with which weight scheme, and which Linears stay dense.
#pragma once

#include "checkpoint/checkpoint.hpp"
#include "pipeline/pipeline.hpp"

#include <map>
#include <string>
#include <vector>

namespace xquant {

struct ModuleAssignment {
  const QuantRule* rule = nullptr;
  WeightScheme weights;  // the rule's, or its per-channel fallback
};

struct RuleAssignment {
  std::map<std::string, ModuleAssignment> assigned;  // quantized Linear modules
  std::vector<std::string> dense;                    // Linear modules left unquantized
  bool calibrated = false;  // some rule needs statistics or a static activation scale
};

// Assigns each Linear to the first rule that targets it (the global ignore
// and the rule's own ignore win), resolves each module's weight scheme
// against the output format (`format_takes_ragged`: capability
// "ragged-groups"), and warns once about every fallback to per-channel and
// about rules that matched nothing. Throws when nothing matched.
RuleAssignment assign_rules(Runtime& runtime, const Pipeline& pipeline, const Checkpoint& checkpoint,
                            bool format_takes_ragged);

}  // namespace xquant
