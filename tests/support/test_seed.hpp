// test_seed.hpp: the seed of a test binary's fresh random inputs: a new one
// every run (std::random_device), or XQUANT_TEST_SEED's value to replay a
// failure; printed once with the binary's name so a failing log carries it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace xquant::test {

inline uint32_t seed_from_env_or_fresh(const char* binary) {
  const char* e = std::getenv("XQUANT_TEST_SEED");
  const uint32_t s = e && *e ? static_cast<uint32_t>(std::strtoul(e, nullptr, 10)) : std::random_device{}();
  std::fprintf(stderr, "%s: random seed %u (XQUANT_TEST_SEED=%u replays it)\n", binary, s, s);
  return s;
}

}  // namespace xquant::test
