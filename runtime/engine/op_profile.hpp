// op_profile.hpp: where a step's time goes, op by op. While enabled, every
// Kernels::run waits for its op to finish (the provider's synchronize) and
// adds the wall time from the call to the end of that wait to the op's
// label ("q|k|v_proj", "ATTENTION", ...). Each number is then the op's
// device time plus one launch and one synchronisation: a diagnostic for the
// decode benchmark (tests/engine/test_device_engine.cpp), never on in normal
// runs since it serialises host and device. Process-wide, one thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace xquant {

struct OpTime {
  uint64_t calls = 0;
  double seconds = 0;
};

void op_profile_enable(bool on);
bool op_profile_enabled();
// The totals since the last take, by label; resets them.
std::map<std::string, OpTime> op_profile_take();
// Called by Kernels::run.
void op_profile_add(const char* label, double seconds);

}  // namespace xquant
