// kv.hpp: the host-owned typed dictionary behind the ABI's opaque xq_kv.
//
// One concept for plugin parameters (from pipeline YAML) and model
// configuration (from loaders). Values are stored by copy; xq_value views
// handed out stay valid until the key is set again or the Kv is destroyed.
#pragma once

#include <xquant/xq_abi.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xquant {

class KvValue {
 public:
  KvValue() = default;
  static KvValue from_view(const xq_value& v);
  static KvValue boolean(bool b);
  static KvValue integer(int64_t i);
  static KvValue number(double f);
  static KvValue string(std::string s);
  static KvValue strings(std::vector<std::string> v);
  static KvValue integers(std::vector<int64_t> v);
  static KvValue numbers(std::vector<double> v);

  xq_value_type type() const { return type_; }
  const xq_value& view() const { return view_; }
  int64_t as_int() const { return i_; }
  double as_float() const { return type_ == XQ_VALUE_INT ? static_cast<double>(i_) : f_; }
  bool as_bool() const { return i_ != 0; }
  const std::string& as_string() const { return s_; }
  const std::vector<std::string>& as_strings() const { return strings_; }
  const std::vector<int64_t>& as_ints() const { return ints_; }
  const std::vector<double>& as_floats() const { return floats_; }
  // Short human-readable rendering (arrays are summarised).
  std::string to_string() const;

  KvValue(const KvValue& o) { *this = o; }
  KvValue& operator=(const KvValue& o);

 private:
  void refresh_view();
  xq_value_type type_ = XQ_VALUE_NONE;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::vector<int64_t> ints_;
  std::vector<double> floats_;
  std::vector<std::string> strings_;
  std::vector<const char*> string_ptrs_;
  xq_value view_{};
};

const char* value_type_name(xq_value_type t);

}  // namespace xquant

// The ABI's opaque type, defined here as an ordered map of values.
struct xq_kv {
  std::map<std::string, xquant::KvValue> values;

  void set(const std::string& key, xquant::KvValue v) { values[key] = std::move(v); }
  const xquant::KvValue* find(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? nullptr : &it->second;
  }
  bool has(const std::string& key) const { return values.count(key) != 0; }
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
};

namespace xquant {
using Kv = ::xq_kv;
}
