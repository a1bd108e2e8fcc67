// test_bf16_embedding.cpp: a BF16-stored embedding table stays BF16 on the
// cpu provider (engine/bf16_embedding.cpp, plugins/cpu/src/bf16_matmul.cpp)
// and changes nothing but the bytes: stories260K-hf is written here twice,
// every tensor in BF16, and every tensor in F32 holding the same
// BF16-rounded values; the two models' logits (prefill of 8 rows through the
// SGEMM path, then decode steps through the GEMV) are bit-identical, and the
// BF16 model's tied lm_head reads half the bytes. The same two copies pin
// what `--device-weights auto` resolves to (engine/device_weights.cpp).
#include "checkpoint/checkpoint.hpp"
#include "core/runtime.hpp"
#include "engine/device_weights.hpp"
#include "engine/model.hpp"
#include "../support/safetensors_file.hpp"

#include <xquant/sdk/half.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kHf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K-hf";

// Rewrites stories260K-hf (all F32) into `dir` with every tensor as BF16
// (bf16 = true) or as F32 of the BF16-rounded values.
void write_rounded_copy(const fs::path& dir, bool bf16) {
  fs::create_directories(dir);
  fs::copy_file(kHf / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  const test::SafetensorsFile src = test::read_safetensors(kHf / "model.safetensors");
  test::SafetensorsWriter out;
  for (auto& [name, t] : src.header.items()) {
    if (name == "__metadata__") continue;
    ASSERT_EQ(t["dtype"], "F32") << name;
    std::string bytes;
    for (float v : src.f32(t)) {
      const uint16_t h = sdk::f32_to_bf16(v);
      if (bf16) {
        bytes.append(reinterpret_cast<const char*>(&h), 2);
      } else {
        const float r = sdk::bf16_to_f32(h);
        bytes.append(reinterpret_cast<const char*>(&r), 4);
      }
    }
    out.add(name, bf16 ? "BF16" : "F32", t["shape"], bytes.data(), bytes.size());
  }
  out.write(dir / "model.safetensors");
}

}  // namespace

TEST(Bf16Embedding, KeptAsStoredWithTheF32ModelsLogits) {
  const fs::path tmp = fs::temp_directory_path() / ("xquant_bf16_embedding_" + std::to_string(::getpid()));
  write_rounded_copy(tmp / "bf16", true);
  write_rounded_copy(tmp / "f32", false);
  Runtime rt{RuntimeOptions{}};
  auto mb = Model::open(rt, tmp / "bf16");
  // F32 values on the BF16 grid would be held in BF16 too (compact_tables.cpp);
  // dequantize_all keeps every table in F32, so the F32 kernels run here.
  ModelOptions wide;
  wide.dequantize_all = true;
  auto mf = Model::open(rt, tmp / "f32", wide);
  EXPECT_EQ(mb->lm_head().layout, "bf16 (tied embeddings)");
  EXPECT_EQ(mf->lm_head().layout, "f32 (tied embeddings)");
  const uint64_t table = static_cast<uint64_t>(mb->arch().vocab * mb->arch().hidden);
  EXPECT_EQ(mf->weight_bytes_per_token() - mb->weight_bytes_per_token(), table * 2);

  std::vector<int32_t> ids = {1, 403, 407, 261, 378, 1, 200, 17};
  KvCache cb(mb->arch(), 32), cf(mf->arch(), 32);
  EXPECT_EQ(mb->forward({{&cb, ids.data(), 8, true}}), mf->forward({{&cf, ids.data(), 8, true}}));
  for (int32_t t : {5, 99, 511}) EXPECT_EQ(mb->forward({{&cb, &t, 1, false}}), mf->forward({{&cf, &t, 1, false}})) << t;
  fs::remove_all(tmp);
}

TEST(DeviceWeights, AutoKeepsTheStoredFloatWidth) {
  const fs::path tmp = fs::temp_directory_path() / ("xquant_device_weights_" + std::to_string(::getpid()));
  write_rounded_copy(tmp / "bf16", true);
  Runtime rt{RuntimeOptions{}};
  EXPECT_EQ(stored_float_weights(*Checkpoint::open(rt, tmp / "bf16")), XQ_DTYPE_BF16);
  EXPECT_EQ(stored_float_weights(*Checkpoint::open(rt, kHf)), XQ_DTYPE_F32);  // stored F32: stays exact
  fs::remove_all(tmp);

  EXPECT_EQ(device_weights_from_name("auto", "--device-weights"), XQ_DTYPE_INVALID);
  EXPECT_EQ(device_weights_from_name("BF16", "--device-weights"), XQ_DTYPE_BF16);
  EXPECT_EQ(device_weights_from_name("f32", "--device-weights"), XQ_DTYPE_F32);
  try {
    device_weights_from_name("fp16", "--device-weights");
    ADD_FAILURE() << "fp16 was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("--device-weights must be auto, bf16 or f32, got 'fp16'"), std::string::npos)
        << e.what();
  }
}
