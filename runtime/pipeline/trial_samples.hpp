// trial_samples.hpp: which calibration samples AWQ's trials rerun (the
// module forwards of pipeline/group_forward.hpp): whole samples from the
// first, until they hold max_rows rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace xquant {

struct TrialSamples {
  std::vector<int64_t> first_row, n_rows;  // per chosen sample: its rows in the layer input, how many
  int64_t rows = 0, longest = 0;           // all chosen rows; the longest sample's

  // offsets: sample s is rows offsets[s]..offsets[s+1] (LayerStats::offsets).
  static TrialSamples choose(const std::vector<int64_t>& offsets, int64_t max_rows) {
    TrialSamples t;
    for (size_t s = 0; s + 1 < offsets.size() && t.rows < max_rows; ++s) {
      const int64_t n = offsets[s + 1] - offsets[s];
      t.first_row.push_back(offsets[s]);
      t.n_rows.push_back(n);
      t.rows += n;
      t.longest = std::max(t.longest, n);
    }
    return t;
  }
};

}  // namespace xquant
