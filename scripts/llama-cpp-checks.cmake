# llama-cpp-checks.cmake: the optimization levels and unity batches of the llama.cpp build that
# the interop checks run (scripts/fetch-llama-cpp.sh --checks passes it as
# CMAKE_PROJECT_INCLUDE, so CMake reads it after llama.cpp's project() call).
#
# What computes stays at llama.cpp's own -O3: ggml, ggml-base, ggml-cpu (every
# matrix product, quantizer and the importance collection are there) and the
# tools' own files (llama-perplexity's log-softmax, llama-imatrix's
# accumulation). What only loads, plans and parses gets less:
#   llama        (model loading, graph building, KV cache, tokenizer)  -O1
#   llama-common (argument parsing, chat templates, JSON, downloads)   -O0
#   cpp-httplib  (linked by llama-common; never used by the checks)    -O0
# On the 2-core dev VM, arg.cpp alone compiles in 37.9 s at -O3, 24.4 at -O1
# and 14.3 at -O0; with only the checks' three tools, llama.cpp's build went
# from 903 CPU-seconds of compilation to 688 in all (docs/testing.md). No float
# result moves: nothing is built with -ffast-math, and what computes is not
# touched. GCC takes the last -O on the command line, and target options come
# after the build type's -O3.
#
# The same two targets and cpp-httplib are also unity-built (CMake's
# UNITY_BUILD, batches of 8 files): their files each parse the same standard
# library and JSON headers. common/json.cpp stays out of the batches (its
# explicit specializations of common_json::get come after uses in other
# files of its batch: "specialization after instantiation"). On the 2-core dev
# VM the checks' build (configure included, ccache off) took 548 CPU-seconds
# and 312 s of wall time this way, against 688 and 398 without (session
# fourteen), and llama-perplexity printed the same 75 chunk perplexities on
# stories260K as the benchmark's -O3 build.
#
# The benchmark's build (scripts/fetch-llama-cpp.sh without --checks, the
# speed baseline of bench/engine/llamacpp_compare.sh) never reads this file.
include_guard(GLOBAL)

function(xquant_llama_cpp_checks_targets)
  foreach(_target_level IN ITEMS "llama:-O1" "llama-common:-O0" "cpp-httplib:-O0")
    string(REPLACE ":" ";" _pair "${_target_level}")
    list(GET _pair 0 _target)
    list(GET _pair 1 _level)
    if(TARGET ${_target})
      target_compile_options(${_target} PRIVATE ${_level})
      set_target_properties(${_target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
    else()
      message(WARNING "llama-cpp-checks.cmake: no target ${_target} in this llama.cpp; it keeps its -O3")
    endif()
  endforeach()
  if(TARGET llama-common)
    set_source_files_properties("${CMAKE_SOURCE_DIR}/common/json.cpp" TARGET_DIRECTORY llama-common
                                PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
  endif()
endfunction()

# Deferred to the end of the top-level directory, when every target exists.
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL xquant_llama_cpp_checks_targets)
