// format_plugin.hpp: the format-plugin class both descriptors (awq_plugin.cpp,
// gptq_plugin.cpp) instantiate: detect by quant_method, read per module,
// write through checkpoint_writer.cpp.
#pragma once

#include "checkpoint_writer.hpp"
#include "layout.hpp"
#include "reader.hpp"

#include <xquant/sdk/plugin.hpp>

#include <cctype>
#include <memory>
#include <mutex>

namespace xquant::hfq {

template <Kind K>
class Format : public sdk::PluginBase {
 public:
  struct Writer : hfq::Writer {
    Writer(const sdk::Host& h, const xq_writer_options& o) : hfq::Writer(h, o, K) {}
  };
  using sdk::PluginBase::PluginBase;

  std::unique_ptr<Writer> open_writer(const xq_writer_options& o) { return std::make_unique<Writer>(host, o); }

  uint32_t detect(const sdk::KvReader& config) {
    auto v = config.get("quantization_config");
    if (!v || v->type != XQ_VALUE_STRING) return 0;
    try {
      auto j = nlohmann::json::parse(v->s);
      if (!j.is_object()) return 0;
      std::string method = j.value("quant_method", std::string());
      for (auto& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (method == kind_name(K)) return 90;
    } catch (const nlohmann::json::exception&) {
    }
    return 0;
  }

  void read_module(const sdk::KvReader& config, const xq_tensor_source& src, const char* module, xq_quant_tensor& out) {
    auto v = config.get("quantization_config");
    if (!v || v->type != XQ_VALUE_STRING)
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "the checkpoint has no quantization_config");
    hfq::read_module(host, settings(v->s), src, module, out);
  }

 private:
  // read_module runs once per Linear: parse the config once per text.
  Settings settings(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    if (text != cache_text_ || !cache_) {
      cache_ = std::make_unique<Settings>(parse_settings(K, text));
      cache_text_ = text;
    }
    return *cache_;
  }
  std::mutex mu_;
  std::string cache_text_;
  std::unique_ptr<Settings> cache_;
};

}  // namespace xquant::hfq
