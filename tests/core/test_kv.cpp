// test_kv.cpp: the typed dictionary behind xq_kv: values are copied, views
// stay valid, typed getters fall back on absence or type mismatch.
#include "core/kv.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace xquant;

TEST(Kv, CopiesValuesAndKeepsViewsValid) {
  Kv kv;
  std::string s = "gpt2";
  kv.set("tokenizer.model", KvValue::string(s));
  s = "changed";
  kv.set("tokenizer.tokens", KvValue::strings({"a", "b", "c"}));
  const KvValue* v = kv.find("tokenizer.model");
  ASSERT_NE(v, nullptr);
  EXPECT_STREQ(v->view().s, "gpt2");
  const xq_value& arr = kv.find("tokenizer.tokens")->view();
  ASSERT_EQ(arr.count, 3u);
  kv.set("other", KvValue::integer(3));  // other insertions do not move existing values
  EXPECT_STREQ(arr.strings[2], "c");
}

TEST(Kv, RoundTripsThroughTheCView) {
  KvValue a = KvValue::numbers({1.5, -2.0});
  KvValue b = KvValue::from_view(a.view());
  EXPECT_EQ(b.as_floats(), (std::vector<double>{1.5, -2.0}));
  KvValue c = b;  // copies re-point their views
  EXPECT_NE(c.view().floats, b.view().floats);
  EXPECT_EQ(c.view().floats[1], -2.0);
}

TEST(Kv, TypedGettersFallBack) {
  Kv kv;
  kv.set("n", KvValue::integer(4));
  kv.set("f", KvValue::number(0.5));
  kv.set("b", KvValue::boolean(true));
  EXPECT_EQ(kv.get_int("n", 0), 4);
  EXPECT_EQ(kv.get_int("f", -1), -1);  // a float is not an int
  EXPECT_DOUBLE_EQ(kv.get_float("n", 0), 4.0);  // an int is a number
  EXPECT_TRUE(kv.get_bool("b", false));
  EXPECT_EQ(kv.get_string("missing", "dflt"), "dflt");
}
