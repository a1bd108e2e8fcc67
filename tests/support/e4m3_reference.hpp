// e4m3_reference.hpp: FP8 E4M3 (OCP "e4m3fn": no infinities, 0x7F/0xFF NaN,
// largest finite 448) decoded and rounded by brute force in double, as the
// tests' independent reference for the providers' FP8 arithmetic (the SDK's
// own conversion, sdk/fp8.hpp, is what they check).
#pragma once

#include <cmath>

namespace xquant::test {

// The value of E4M3 code c (0..255; not for the NaN codes).
inline double e4m3_value(int c) {
  const int exp = (c >> 3) & 15, mant = c & 7;
  const double mag = exp == 0 ? mant * std::ldexp(1.0, -9) : (1.0 + mant / 8.0) * std::ldexp(1.0, exp - 7);
  return c & 0x80 ? -mag : mag;
}

// The value of the nearest finite E4M3 code to v after clamping to +-448
// (ties: the even code), found by trying every code.
inline double nearest_e4m3(double v) {
  v = std::fmax(-448.0, std::fmin(448.0, v));
  int best = 0;
  double bd = INFINITY;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    const double d = std::fabs(e4m3_value(c) - v);
    if (d < bd || (d == bd && (c & 1) == 0)) best = c, bd = d;
  }
  return e4m3_value(best);
}

}  // namespace xquant::test
