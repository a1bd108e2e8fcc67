// output_writer.cpp: see output_writer.hpp.
#include "pipeline/output_writer.hpp"

#include "core/dtype.hpp"
#include "plugins/call.hpp"

#include <fmt/format.h>

namespace xquant {

OutputWriter::OutputWriter(LoadedPlugin& format, const std::filesystem::path& out_dir,
                           const std::filesystem::path& source, const Kv& model_config, const Kv& params,
                           const std::vector<std::string>& ignored_modules, const std::string& recipe_yaml)
    : format_(format) {
  std::vector<const char*> ignored_c;
  for (const auto& m : ignored_modules) ignored_c.push_back(m.c_str());
  ignored_c.push_back(nullptr);
  const std::string out = out_dir.string(), src = source.string();
  xq_writer_options wo{};
  wo.struct_size = sizeof(wo);
  wo.out_dir = out.c_str();
  wo.source_path = src.c_str();
  wo.model_config = &model_config;
  wo.params = &params;
  wo.ignored_modules = ignored_c.data();
  wo.recipe_yaml = recipe_yaml.empty() ? nullptr : recipe_yaml.c_str();
  check_plugin_call(format_.format().writer_open(format_.state, &wo, &handle_),
                    fmt::format("{}: opening '{}' for writing", format_.name(), out));
}

OutputWriter::~OutputWriter() {
  if (handle_) format_.format().writer_abort(handle_);
}

void OutputWriter::add_dense(const std::string& name, const xq_tensor_view& given) {
  xq_tensor_view view = given;
  std::vector<uint16_t> bf16;
  if (bf16_tensors_.count(name) && (view.dtype == XQ_DTYPE_F32 || view.dtype == XQ_DTYPE_F16)) {
    const size_t n = view.nbytes / dtype_size(view.dtype);
    std::vector<float> f32(n);
    convert_to_f32(view.dtype, view.data, f32.data(), n);
    bf16.resize(n);
    convert_from_f32(f32.data(), XQ_DTYPE_BF16, bf16.data(), n);
    view.dtype = XQ_DTYPE_BF16;
    view.data = bf16.data();
    view.nbytes = n * sizeof(uint16_t);
  }
  check_plugin_call(format_.format().writer_add_dense(handle_, name.c_str(), &view),
                    fmt::format("{}: writing '{}'", format_.name(), name));
  ++tensors_written_;
  if (record_dense_) record_dense_(name, view);
}

void OutputWriter::add_quantized(const std::string& module, const xq_quant_tensor& q) {
  check_plugin_call(format_.format().writer_add_quantized(handle_, module.c_str(), &q),
                    fmt::format("{}: writing '{}'", format_.name(), module));
  ++tensors_written_;
  if (record_quant_) record_quant_(module, q);
}

void OutputWriter::set_report(const std::string& report_json) {
  const xq_format_vtable& vt = format_.format();
  if (!XQ_HAS_FIELD(&vt, xq_format_vtable, writer_set_report) || !vt.writer_set_report) return;
  check_plugin_call(vt.writer_set_report(handle_, report_json.c_str()),
                    fmt::format("{}: storing the quantization report", format_.name()));
}

void OutputWriter::finish() {
  void* h = handle_;
  handle_ = nullptr;  // finish frees the writer, also on failure
  check_plugin_call(format_.format().writer_finish(h), fmt::format("{}: finishing the checkpoint", format_.name()));
}

void OutputWriter::set_recorder(DenseRecorder dense, QuantRecorder quant) {
  record_dense_ = std::move(dense);
  record_quant_ = std::move(quant);
}

}  // namespace xquant
