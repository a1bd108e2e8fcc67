// test_dtype.cpp: the one dtype table (sdk/dtype.hpp) and the names the
// runtime and the safetensors helpers give through it.
#include "core/dtype.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/safetensors.hpp>

#include <gtest/gtest.h>

namespace sdk = xquant::sdk;

TEST(SdkDtype, EveryDtypeOfTheEnumHasOneRowAndItsNameRoundTrips) {
  for (int t = XQ_DTYPE_F32; t <= XQ_DTYPE_BLOCKS; ++t) {
    const auto d = static_cast<xq_dtype>(t);
    ASSERT_NE(sdk::dtype_info(d), nullptr) << t;
    EXPECT_EQ(sdk::dtype_from_name(sdk::dtype_name(d)), d) << sdk::dtype_name(d);
  }
  EXPECT_STREQ(sdk::dtype_name(XQ_DTYPE_INVALID), "INVALID");
  EXPECT_STREQ(sdk::dtype_name(static_cast<xq_dtype>(77)), "INVALID");
  EXPECT_EQ(sdk::dtype_from_name("bf16"), XQ_DTYPE_INVALID);  // names are exact
}

TEST(SdkDtype, SizesAndTorchNames) {
  EXPECT_EQ(sdk::dtype_size(XQ_DTYPE_F32), 4u);
  EXPECT_EQ(sdk::dtype_size(XQ_DTYPE_BF16), 2u);
  EXPECT_EQ(sdk::dtype_size(XQ_DTYPE_U64), 8u);
  EXPECT_EQ(sdk::dtype_size(XQ_DTYPE_F8_E4M3), 1u);
  EXPECT_EQ(sdk::dtype_size(XQ_DTYPE_BLOCKS), 0u);
  EXPECT_STREQ(sdk::torch_dtype_name(XQ_DTYPE_BF16), "bfloat16");
  EXPECT_STREQ(sdk::torch_dtype_name(XQ_DTYPE_I8), "");
}

TEST(SdkDtype, RuntimeAndSafetensorsNamesAreTheTable) {
  for (int t = XQ_DTYPE_F32; t < XQ_DTYPE_BLOCKS; ++t) {
    const auto d = static_cast<xq_dtype>(t);
    EXPECT_STREQ(xquant::dtype_name(d), sdk::dtype_name(d));
    ASSERT_NE(sdk::safetensors::dtype_name(d), nullptr) << t;
    EXPECT_STREQ(sdk::safetensors::dtype_name(d), sdk::dtype_name(d));
    // and the safetensors format's own table agrees on the bit width
    const auto* st = sdk::safetensors::find_dtype(sdk::dtype_name(d));
    ASSERT_NE(st, nullptr) << sdk::dtype_name(d);
    EXPECT_EQ(st->bits, 8 * sdk::dtype_size(d)) << sdk::dtype_name(d);
  }
  EXPECT_EQ(sdk::safetensors::dtype_name(XQ_DTYPE_BLOCKS), nullptr);
}
