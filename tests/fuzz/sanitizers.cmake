# Included by the top-level CMakeLists when XQUANT_FUZZ=ON: every target
# (libxquant, the plugins, the fuzz targets) is compiled with AddressSanitizer,
# UndefinedBehaviorSanitizer and libFuzzer's coverage instrumentation, so a
# fuzz target sees coverage in the plugins it dlopens too. Clang only
# (libFuzzer ships with it; Debian: clang, libclang-rt-<N>-dev). Use its own
# build folder (scripts/fuzz.sh uses build-fuzz); the gcc build is untouched.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "XQUANT_FUZZ=ON needs clang (libFuzzer): configure with "
                      "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
endif()
# UBSan findings abort (no recover) so libFuzzer records them as crashes.
set(XQUANT_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g)
add_compile_options(${XQUANT_SANITIZE_FLAGS} -fsanitize=fuzzer-no-link)
add_link_options(-fsanitize=address,undefined)
