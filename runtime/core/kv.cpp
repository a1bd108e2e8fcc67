#include "core/kv.hpp"

#include <fmt/format.h>

namespace xquant {

KvValue& KvValue::operator=(const KvValue& o) {
  if (this == &o) return *this;
  type_ = o.type_;
  i_ = o.i_;
  f_ = o.f_;
  s_ = o.s_;
  ints_ = o.ints_;
  floats_ = o.floats_;
  strings_ = o.strings_;
  refresh_view();
  return *this;
}

void KvValue::refresh_view() {
  view_ = xq_value{};
  view_.type = type_;
  view_.i = i_;
  view_.f = f_;
  view_.s = s_.c_str();
  string_ptrs_.clear();
  switch (type_) {
    case XQ_VALUE_INT_ARRAY:
      view_.count = ints_.size();
      view_.ints = ints_.data();
      break;
    case XQ_VALUE_FLOAT_ARRAY:
      view_.count = floats_.size();
      view_.floats = floats_.data();
      break;
    case XQ_VALUE_STRING_ARRAY:
      string_ptrs_.reserve(strings_.size());
      for (const auto& s : strings_) string_ptrs_.push_back(s.c_str());
      view_.count = strings_.size();
      view_.strings = string_ptrs_.data();
      break;
    default:
      break;
  }
}

KvValue KvValue::from_view(const xq_value& v) {
  KvValue out;
  out.type_ = v.type;
  switch (v.type) {
    case XQ_VALUE_BOOL: out.i_ = v.i ? 1 : 0; break;
    case XQ_VALUE_INT: out.i_ = v.i; break;
    case XQ_VALUE_FLOAT: out.f_ = v.f; break;
    case XQ_VALUE_STRING: out.s_ = v.s ? v.s : ""; break;
    case XQ_VALUE_INT_ARRAY: out.ints_.assign(v.ints, v.ints + v.count); break;
    case XQ_VALUE_FLOAT_ARRAY: out.floats_.assign(v.floats, v.floats + v.count); break;
    case XQ_VALUE_STRING_ARRAY:
      out.strings_.reserve(v.count);
      for (uint64_t k = 0; k < v.count; ++k) out.strings_.emplace_back(v.strings[k] ? v.strings[k] : "");
      break;
    default: out.type_ = XQ_VALUE_NONE; break;
  }
  out.refresh_view();
  return out;
}

KvValue KvValue::boolean(bool b) {
  KvValue v;
  v.type_ = XQ_VALUE_BOOL;
  v.i_ = b ? 1 : 0;
  v.refresh_view();
  return v;
}
KvValue KvValue::integer(int64_t i) {
  KvValue v;
  v.type_ = XQ_VALUE_INT;
  v.i_ = i;
  v.refresh_view();
  return v;
}
KvValue KvValue::number(double f) {
  KvValue v;
  v.type_ = XQ_VALUE_FLOAT;
  v.f_ = f;
  v.refresh_view();
  return v;
}
KvValue KvValue::string(std::string s) {
  KvValue v;
  v.type_ = XQ_VALUE_STRING;
  v.s_ = std::move(s);
  v.refresh_view();
  return v;
}
KvValue KvValue::strings(std::vector<std::string> s) {
  KvValue v;
  v.type_ = XQ_VALUE_STRING_ARRAY;
  v.strings_ = std::move(s);
  v.refresh_view();
  return v;
}
KvValue KvValue::integers(std::vector<int64_t> s) {
  KvValue v;
  v.type_ = XQ_VALUE_INT_ARRAY;
  v.ints_ = std::move(s);
  v.refresh_view();
  return v;
}
KvValue KvValue::numbers(std::vector<double> s) {
  KvValue v;
  v.type_ = XQ_VALUE_FLOAT_ARRAY;
  v.floats_ = std::move(s);
  v.refresh_view();
  return v;
}

std::string KvValue::to_string() const {
  switch (type_) {
    case XQ_VALUE_BOOL: return i_ ? "true" : "false";
    case XQ_VALUE_INT: return std::to_string(i_);
    case XQ_VALUE_FLOAT: return fmt::format("{}", f_);
    case XQ_VALUE_STRING: return s_.size() > 80 ? fmt::format("\"{}...\" ({} chars)", s_.substr(0, 60), s_.size()) : "\"" + s_ + "\"";
    case XQ_VALUE_INT_ARRAY:
      return ints_.size() <= 8 ? fmt::format("[{}]", fmt::join(ints_, ", ")) : fmt::format("[{} ints]", ints_.size());
    case XQ_VALUE_FLOAT_ARRAY:
      return floats_.size() <= 8 ? fmt::format("[{}]", fmt::join(floats_, ", ")) : fmt::format("[{} floats]", floats_.size());
    case XQ_VALUE_STRING_ARRAY:
      return strings_.size() <= 4 ? fmt::format("[{}]", fmt::join(strings_, ", ")) : fmt::format("[{} strings]", strings_.size());
    default: return "null";
  }
}

const char* value_type_name(xq_value_type t) {
  switch (t) {
    case XQ_VALUE_BOOL: return "bool";
    case XQ_VALUE_INT: return "int";
    case XQ_VALUE_FLOAT: return "float";
    case XQ_VALUE_STRING: return "string";
    case XQ_VALUE_INT_ARRAY: return "int list";
    case XQ_VALUE_FLOAT_ARRAY: return "float list";
    case XQ_VALUE_STRING_ARRAY: return "string list";
    default: return "none";
  }
}

}  // namespace xquant

int64_t xq_kv::get_int(const std::string& key, int64_t fallback) const {
  const auto* v = find(key);
  return v && (v->type() == XQ_VALUE_INT || v->type() == XQ_VALUE_BOOL) ? v->as_int() : fallback;
}
double xq_kv::get_float(const std::string& key, double fallback) const {
  const auto* v = find(key);
  return v && (v->type() == XQ_VALUE_FLOAT || v->type() == XQ_VALUE_INT) ? v->as_float() : fallback;
}
bool xq_kv::get_bool(const std::string& key, bool fallback) const {
  const auto* v = find(key);
  return v && (v->type() == XQ_VALUE_BOOL || v->type() == XQ_VALUE_INT) ? v->as_int() != 0 : fallback;
}
std::string xq_kv::get_string(const std::string& key, const std::string& fallback) const {
  const auto* v = find(key);
  return v && v->type() == XQ_VALUE_STRING ? v->as_string() : fallback;
}
