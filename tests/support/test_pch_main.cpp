// test_pch_main.cpp: the target that compiles tests/support/test_pch.hpp once
// for every test executable (tests/CMakeLists.txt). It runs no test.
int main() { return 0; }
