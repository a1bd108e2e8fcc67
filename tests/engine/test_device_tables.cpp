// test_device_tables.cpp: BF16 embedding and lm_head tables uploaded to the
// device as stored (engine/device_tables.cpp) give the very logits the host
// route gave (read to F32, uploaded, or narrowed back to BF16 first:
// XQUANT_DEVICE_TABLES=host), bit for bit: stories260K-hf is written here
// with every tensor in BF16, once tied and once with its own lm_head, and
// each copy runs on `cuda` both ways with F32 and with BF16 dense device
// weights (prefill of 8 rows, then decode steps). The stored route uploads
// exactly the tables' bytes and holds the same lm_head layout and bytes per
// token. Skips without a usable GPU.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "../support/safetensors_file.hpp"

#include <xquant/sdk/half.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace xquant;
namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_device_tables {

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kHf = kShared / "models/stories260K-hf";

Runtime& runtime() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

// stories260K-hf with every tensor in BF16; with `own_lm_head` also an
// lm_head.weight (the embedding rows in reverse order) and the tie off.
void write_bf16_copy(const fs::path& dir, bool own_lm_head) {
  fs::create_directories(dir);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(kHf / "config.json"));
  config["tie_word_embeddings"] = !own_lm_head;
  config["torch_dtype"] = "bfloat16";
  std::ofstream(dir / "config.json") << config.dump(2);
  const test::SafetensorsFile src = test::read_safetensors(kHf / "model.safetensors");
  test::SafetensorsWriter out;
  for (auto& [name, t] : src.header.items()) {
    if (name == "__metadata__") continue;
    const std::vector<float> f = src.f32(t);
    std::vector<uint16_t> v(f.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = sdk::f32_to_bf16(f[i]);
    out.add(name, "BF16", t["shape"], v.data(), v.size() * 2);
    if (own_lm_head && name == "model.embed_tokens.weight") {
      const int64_t rows = t["shape"][0], cols = t["shape"][1];
      std::vector<uint16_t> r(v.size());
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(&r[static_cast<size_t>(i * cols)], &v[static_cast<size_t>((rows - 1 - i) * cols)], static_cast<size_t>(cols) * 2);
      out.add("lm_head.weight", "BF16", t["shape"], r.data(), r.size() * 2);
    }
  }
  out.write(dir / "model.safetensors");
}

// The model on cuda with the tables taken by `route` (stored or host) and
// dense weights in `weights` (f32 or bf16); nullptr with *why without a GPU.
std::unique_ptr<Model> open_cuda(const fs::path& dir, const char* route, const char* weights, std::string* why) {
  ::setenv("XQUANT_DEVICE_TABLES", route, 1);
  ::setenv("XQUANT_DEVICE_WEIGHTS", weights, 1);
  ModelOptions o;
  o.provider = "cuda";
  o.tokenizer_from = kShared / "models/stories260K/stories260K.gguf";
  std::unique_ptr<Model> m;
  try {
    m = Model::open(runtime(), dir, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    *why = e.what();
  }
  ::unsetenv("XQUANT_DEVICE_TABLES");
  ::unsetenv("XQUANT_DEVICE_WEIGHTS");
  return m;
}

void expect_same_logits(bool own_lm_head) {
  const fs::path dir = fs::temp_directory_path() /
                       ("xquant_device_tables_" + std::to_string(::getpid()) + (own_lm_head ? "_untied" : "_tied"));
  write_bf16_copy(dir, own_lm_head);
  for (const char* weights : {"f32", "bf16"}) {
    SCOPED_TRACE(std::string("dense device weights ") + weights + (own_lm_head ? ", own lm_head" : ", tied lm_head"));
    std::string why;
    auto stored = open_cuda(dir, "stored", weights, &why);
    if (!stored) {
      fs::remove_all(dir);
      GTEST_SKIP() << "cuda provider unusable here: " << why;
    }
    auto host = open_cuda(dir, "host", weights, &why);
    ASSERT_TRUE(host);
    const uint64_t table = static_cast<uint64_t>(stored->arch().vocab * stored->arch().hidden) * 2;
    EXPECT_EQ(stored->load_stats().tables_stored_bytes, own_lm_head ? 2 * table : table);
    EXPECT_EQ(host->load_stats().tables_stored_bytes, 0u);
    EXPECT_EQ(stored->lm_head().layout, host->lm_head().layout);
    EXPECT_EQ(stored->weight_bytes_per_token(), host->weight_bytes_per_token());
    std::vector<int32_t> ids = {1, 403, 407, 261, 378, 1, 200, 17};
    KvCache cs(*stored, 32), ch(*host, 32);
    EXPECT_EQ(stored->forward({{&cs, ids.data(), 8, true}}), host->forward({{&ch, ids.data(), 8, true}}));
    for (int32_t t : {5, 99, 511})
      EXPECT_EQ(stored->forward({{&cs, &t, 1, false}}), host->forward({{&ch, &t, 1, false}})) << "token " << t;
  }
  fs::remove_all(dir);
}

}  // namespace

TEST(DeviceTables, OwnLmHeadAsStoredGivesTheHostRoutesLogits) { expect_same_logits(true); }

TEST(DeviceTables, TiedTableAsStoredGivesTheHostRoutesLogits) { expect_same_logits(false); }

TEST(DeviceTables, UnknownRouteIsRefusedByName) {
  const fs::path dir = fs::temp_directory_path() / ("xquant_device_tables_route_" + std::to_string(::getpid()));
  write_bf16_copy(dir, true);
  std::string why;
  try {
    auto m = open_cuda(dir, "pinned", "f32", &why);
    if (!m && !why.empty()) {
      fs::remove_all(dir);
      GTEST_SKIP() << "cuda provider unusable here: " << why;
    }
    ADD_FAILURE() << "XQUANT_DEVICE_TABLES=pinned was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("XQUANT_DEVICE_TABLES must be stored or host, got 'pinned'"), std::string::npos)
        << e.what();
  }
  ::unsetenv("XQUANT_DEVICE_TABLES");
  ::unsetenv("XQUANT_DEVICE_WEIGHTS");
  fs::remove_all(dir);
}

}  // namespace test_device_tables
