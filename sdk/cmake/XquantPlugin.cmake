# xquant_add_plugin(<name> SOURCES <files...> [LIBRARIES <libs...>])
#
# Builds one plugin as a MODULE library with hidden visibility (only the
# entry symbol is exported), against the ABI and SDK headers alone, and places
# it where the runtime discovers plugins: <build>/lib/xquant/plugins in the
# tree and <prefix>/lib/xquant/plugins when installed. Used by the in-tree
# plugins and, through find_package(xquant), by out-of-tree ones.
function(xquant_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  set(target xquant_plugin_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME xquant-${name}
    PREFIX "lib"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(TARGET xquant::sdk)
    target_link_libraries(${target} PRIVATE xquant::sdk)
  endif()
  if(ARG_LIBRARIES)
    target_link_libraries(${target} PRIVATE ${ARG_LIBRARIES})
  endif()
  if(DEFINED XQUANT_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${XQUANT_PLUGIN_OUTPUT_DIR})
  endif()
  if(DEFINED XQUANT_PLUGIN_SUBDIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${XQUANT_PLUGIN_SUBDIR})
  endif()
endfunction()
