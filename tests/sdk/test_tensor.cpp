// test_tensor.cpp: the view builders and the quantized-tensor owner of
// sdk/tensor.hpp.
#include "fake_host.hpp"

#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_algorithm.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace sdk = xquant::sdk;

TEST(SdkViews, TensorViewFillsShapeAndBytes) {
  std::vector<uint16_t> data(6);
  xq_tensor_view v = sdk::tensor_view(XQ_DTYPE_BF16, {2, 3}, data.data());
  EXPECT_EQ(v.struct_size, sizeof(xq_tensor_view));
  EXPECT_EQ(v.dtype, XQ_DTYPE_BF16);
  EXPECT_EQ(v.ndim, 2u);
  EXPECT_EQ(v.shape[0], 2);
  EXPECT_EQ(v.shape[1], 3);
  EXPECT_EQ(v.shape[2], 0);
  EXPECT_EQ(v.data, data.data());
  EXPECT_EQ(v.nbytes, 12u);
}

TEST(SdkViews, F32ViewOfAVector) {
  std::vector<float> w(12);
  xq_tensor_view v = sdk::f32_view(w, {3, 4});
  EXPECT_EQ(v.dtype, XQ_DTYPE_F32);
  EXPECT_EQ(v.nbytes, 48u);
  xq_tensor_view all = sdk::f32_view(w);
  EXPECT_EQ(all.ndim, 1u);
  EXPECT_EQ(all.shape[0], 12);
}

TEST(SdkViews, RefusesAShapeLargerThanTheVector) {
  std::vector<float> w(11);
  try {
    sdk::f32_view(w, {3, 4});
    FAIL() << "accepted a 12-element shape over 11 floats";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("12 floats"), std::string::npos) << e.what();
  }
}

TEST(SdkViews, RefusesMoreDimsThanTheStructHoldsAndNegativeDims) {
  float x = 0;
  EXPECT_THROW(sdk::tensor_view(XQ_DTYPE_F32, {1, 1, 1, 1, 1, 1, 1, 1, 1}, &x), sdk::Error);
  EXPECT_THROW(sdk::device_tensor(XQ_DTYPE_F32, {1, 1, 1, 1, 1}, &x), sdk::Error);
  EXPECT_THROW(sdk::tensor_view(XQ_DTYPE_F32, {2, -1}, &x), sdk::Error);
}

TEST(SdkViews, DeviceTensorAndOp) {
  std::vector<int32_t> ids(5);
  xq_device_tensor t = sdk::device_tensor(XQ_DTYPE_I32, {5}, ids.data());
  EXPECT_EQ(t.struct_size, sizeof(xq_device_tensor));
  EXPECT_EQ(t.ndim, 1u);
  EXPECT_EQ(t.shape[0], 5);
  EXPECT_EQ(t.strides[0], 0);
  xq_op op = sdk::make_op(XQ_OP_GET_ROWS);
  EXPECT_EQ(op.struct_size, sizeof(xq_op));
  EXPECT_EQ(op.type, XQ_OP_GET_ROWS);
  EXPECT_EQ(op.src[3].struct_size, sizeof(xq_device_tensor));
  EXPECT_EQ(op.src[3].data, nullptr);
  EXPECT_EQ(sdk::empty_view().data, nullptr);
  EXPECT_EQ(sdk::make_struct<xq_layer_group>().struct_size, sizeof(xq_layer_group));
}

// A fake host and a 2x4 group-quantized tensor allocated through it.
class SdkQuantTensor : public ::testing::Test {
 protected:
  FakeHost fake;
  sdk::Host host{&fake.api};

  sdk::QuantTensor filled() {
    sdk::QuantTensor t(host);
    xq_quant_tensor& q = t.get();
    q.rows = 2;
    q.cols = 4;
    q.strategy = XQ_STRATEGY_GROUP;
    q.group_size = 2;
    q.n_groups = 2;
    q.codes = host.alloc<int8_t>(8);
    q.scales = host.alloc<float>(4);
    q.zero_points = host.alloc<int8_t>(4);
    for (int i = 0; i < 8; ++i) q.codes[i] = static_cast<int8_t>(i - 4);
    for (int i = 0; i < 4; ++i) {
      q.scales[i] = 0.5f * static_cast<float>(i + 1);
      q.zero_points[i] = 1;
    }
    return t;
  }
};

TEST_F(SdkQuantTensor, FreesItsBuffersThroughTheHost) {
  { sdk::QuantTensor q = filled(); }
  EXPECT_EQ(fake.allocs, 3);
  EXPECT_EQ(fake.frees, 3);
}

TEST_F(SdkQuantTensor, ReleaseHandsTheBuffersOver) {
  sdk::QuantTensor q = filled();
  xq_quant_tensor out = q.release();
  EXPECT_EQ(q->codes, nullptr);
  EXPECT_EQ(q->struct_size, sizeof(xq_quant_tensor));
  q.reset();
  EXPECT_EQ(fake.frees, 0);
  ASSERT_NE(out.codes, nullptr);
  sdk::QuantTensor back(out, fake.api.free, fake.api.ctx);
  back.reset();
  EXPECT_EQ(fake.frees, 3);
}

TEST_F(SdkQuantTensor, MovesOwnershipOnce) {
  {
    sdk::QuantTensor a = filled();
    sdk::QuantTensor b(std::move(a));
    sdk::QuantTensor c;
    c = std::move(b);
    EXPECT_EQ(a->codes, nullptr);
    EXPECT_NE(c->codes, nullptr);
  }
  EXPECT_EQ(fake.frees, 3);
}

TEST_F(SdkQuantTensor, DequantizesARowWithGroupsAndZeroPoints) {
  sdk::QuantTensor q = filled();
  float row[4];
  q.dequantize_row(1, row);
  // row 1: codes 0..3, groups {0,1} -> scales[2]=1.5, scales[3]=2.0, zp 1
  EXPECT_FLOAT_EQ(row[0], (0 - 1) * 1.5f);
  EXPECT_FLOAT_EQ(row[1], (1 - 1) * 1.5f);
  EXPECT_FLOAT_EQ(row[2], (2 - 1) * 2.0f);
  EXPECT_FLOAT_EQ(row[3], (3 - 1) * 2.0f);
}

TEST(SdkDeviceShapes, CountsRowsColsAndContiguity) {
  float x = 0;
  xq_device_tensor t = sdk::device_tensor(XQ_DTYPE_F32, {2, 3, 4}, &x);
  EXPECT_EQ(sdk::numel(t), 24);
  EXPECT_EQ(sdk::rows_of(t), 6);
  EXPECT_EQ(sdk::cols_of(t), 4);
  EXPECT_TRUE(sdk::is_contiguous(t));  // strides all zero
  t.strides[0] = 12;
  t.strides[1] = 4;
  t.strides[2] = 1;
  EXPECT_TRUE(sdk::is_contiguous(t));
  t.strides[1] = 8;  // a row gap
  EXPECT_FALSE(sdk::is_contiguous(t));
  t.ndim = 5;  // more dims than the struct holds: never read past shape[3]
  EXPECT_FALSE(sdk::is_contiguous(t));
  EXPECT_EQ(sdk::numel(t), 24 * t.shape[3]);
}
