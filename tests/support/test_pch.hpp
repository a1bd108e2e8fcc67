// test_pch.hpp: the headers most test files include, compiled once into a
// precompiled header that every test executable reuses (tests/CMakeLists.txt,
// xquant_test_pch). Parsing them took ~5 s of a ~9 s test file's compile on
// CI's 2 cores; loading the precompiled form takes ~1.9 s
// (test_paged_engine.cpp 8.8 -> 5.8 s). Only headers that
// a test file may include without changing what its own code means belong
// here: the standard library, GoogleTest, nlohmann-json and the core's error
// and runtime headers, never a test's own helpers.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/runtime.hpp"
