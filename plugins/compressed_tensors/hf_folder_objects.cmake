# xquant_hf_folder_objects: the sources the compressed-tensors, awq-format and
# gptq-format plugins share (config.json / tokenizer.json synthesis for
# sources without them, the folder's staging, and the gguf loader's parser
# that reads a GGUF source's vocabulary), compiled once and linked into each
# plugin module (each still holds its own hidden copy). Included by those
# plugins' CMakeLists.txt; defined by whichever comes first.
include_guard(GLOBAL)
set(_hf_ct_src ${CMAKE_CURRENT_LIST_DIR}/src)
set(_hf_gguf_src ${CMAKE_CURRENT_LIST_DIR}/../gguf)
add_library(xquant_hf_folder_objects OBJECT
  ${_hf_ct_src}/hf_synth.cpp ${_hf_ct_src}/hf_folder_stage.cpp
  ${_hf_gguf_src}/gguf_file.cpp ${_hf_gguf_src}/gguf_types.cpp ${_hf_gguf_src}/gguf_vocabulary.cpp)
# As xquant_add_plugin sets for the modules these objects go into.
set_target_properties(xquant_hf_folder_objects PROPERTIES
  POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
target_link_libraries(xquant_hf_folder_objects PRIVATE xquant::sdk nlohmann_json::nlohmann_json)
target_include_directories(xquant_hf_folder_objects PRIVATE ${_hf_ct_src} ${_hf_gguf_src})
